//! Endpoints, EndpointSlice, Lease, CertificateSigningRequest and RBAC.

use base64::Engine as _;
use serde_json::Value;

use super::FieldError;
use super::names::{IP_MSG, is_dns1123_label, is_dns1123_subdomain, is_valid_port, parse_ip};
use super::path::{
    Errs, Path, array_field, enum_field, field, int_field, non_negative, positive, str_field,
};
use super::pod::PROTOCOLS;

fn validate_ports(
    list: Option<&Vec<Value>>,
    path: &Path,
    name_required_many: bool,
    errs: &mut Errs,
) {
    let list = list.cloned().unwrap_or_default();
    let mut names = Vec::new();
    for (i, port) in list.iter().enumerate() {
        let pp = path.index(i);
        let name = str_field(port, "name", &pp, errs).unwrap_or("");
        if name.is_empty() {
            if name_required_many && list.len() > 1 {
                errs.push(FieldError::required(pp.child("name"), ""));
            }
        } else {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(
                    pp.child("name"),
                    &Value::from(name),
                    &msg,
                ));
            }
            if names.contains(&name.to_owned()) {
                errs.push(FieldError::duplicate(pp.child("name"), &Value::from(name)));
            }
            names.push(name.to_owned());
        }
        if let Some(n) = int_field(port, "port", &pp, errs) {
            for msg in is_valid_port(n) {
                errs.push(FieldError::invalid(pp.child("port"), &Value::from(n), &msg));
            }
        } else if name_required_many {
            errs.push(FieldError::required(pp.child("port"), ""));
        }
        enum_field(port, "protocol", &pp, PROTOCOLS, true, errs);
    }
}

pub(crate) fn validate_endpoints(object: &Value, errs: &mut Errs) {
    let root = Path::default();
    for (i, subset) in array_field(object, "subsets", &root, errs)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let sp = Path::root("subsets").index(i);
        for key in ["addresses", "notReadyAddresses"] {
            for (j, a) in array_field(subset, key, &sp, errs)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let ap = sp.child(key).index(j);
                match str_field(a, "ip", &ap, errs) {
                    Some(ip) if parse_ip(ip).is_some() => {}
                    Some(ip) => errs.push(FieldError::invalid(
                        ap.child("ip"),
                        &Value::from(ip),
                        IP_MSG,
                    )),
                    None => errs.push(FieldError::required(ap.child("ip"), "")),
                }
            }
        }
        let ports = array_field(subset, "ports", &sp, errs);
        validate_ports(ports, &sp.child("ports"), true, errs);
    }
}

pub(crate) fn validate_endpoint_slice(object: &Value, old: Option<&Value>, errs: &mut Errs) {
    let root = Path::default();
    const TYPES: &[&str] = &["IPv4", "IPv6", "FQDN"];
    enum_field(object, "addressType", &root, TYPES, true, errs);
    let ty = object
        .get("addressType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let endpoints = array_field(object, "endpoints", &root, errs);
    if endpoints.is_some_and(|e| e.len() > 1000) {
        errs.push(FieldError::too_many("endpoints", 1000));
    }
    for (i, ep) in endpoints.into_iter().flatten().enumerate() {
        let epp = Path::root("endpoints").index(i);
        let addrs = array_field(ep, "addresses", &epp, errs);
        match addrs.map_or(0, Vec::len) {
            0 => errs.push(FieldError::required(
                epp.child("addresses"),
                "must contain at least 1 address",
            )),
            1..=100 => {}
            _ => errs.push(FieldError::too_many(epp.child("addresses"), 100)),
        }
        for (j, a) in addrs.into_iter().flatten().enumerate() {
            let ap = epp.child("addresses").index(j);
            let s = a.as_str().unwrap_or("");
            let ok = match ty {
                "IPv4" => matches!(parse_ip(s), Some(std::net::IpAddr::V4(_))),
                "IPv6" => matches!(parse_ip(s), Some(std::net::IpAddr::V6(_))),
                "FQDN" => is_dns1123_subdomain(s).is_empty(),
                _ => true,
            };
            if !ok {
                let msg = match ty {
                    "IPv4" => "must be a valid IPv4 address",
                    "IPv6" => "must be a valid IPv6 address",
                    _ => "must be a valid DNS subdomain",
                };
                errs.push(FieldError::invalid(&ap, a, msg));
            }
        }
    }
    let ports = array_field(object, "ports", &root, errs);
    validate_ports(ports, &Path::root("ports"), false, errs);
    if let Some(old) = old {
        super::path::immutable(object, old, "addressType", &root, errs);
    }
}

pub(crate) fn validate_lease(object: &Value, errs: &mut Errs) {
    let path = Path::root("spec");
    let spec = field(object, "spec");
    positive(spec, "leaseDurationSeconds", &path, errs);
    non_negative(spec, "leaseTransitions", &path, errs);
    enum_field(
        spec,
        "strategy",
        &path,
        &["OldestEmulationVersion"],
        false,
        errs,
    );
}

const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

pub(crate) fn validate_csr(object: &Value, old: Option<&Value>, errs: &mut Errs) {
    let path = Path::root("spec");
    let spec = field(object, "spec");
    match str_field(spec, "request", &path, errs) {
        None | Some("") => errs.push(FieldError::required(path.child("request"), "")),
        Some(b64) => {
            let pem = base64::engine::general_purpose::STANDARD.decode(b64).ok();
            let text = pem
                .as_deref()
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or("");
            if !text.contains("-----BEGIN CERTIFICATE REQUEST-----") {
                errs.push(FieldError::invalid(
                    path.child("request"),
                    &Value::from("<omitted>"),
                    "PEM block type must be CERTIFICATE REQUEST",
                ));
            }
        }
    }
    match str_field(spec, "signerName", &path, errs) {
        None | Some("") => errs.push(FieldError::required(path.child("signerName"), "")),
        Some(signer) => {
            let ok = signer.split_once('/').is_some_and(|(domain, name)| {
                is_dns1123_subdomain(domain).is_empty() && domain.contains('.') && !name.is_empty()
            });
            if !ok {
                errs.push(FieldError::invalid(
                    path.child("signerName"),
                    &Value::from(signer),
                    "must be a fully qualified domain and path of the form 'example.com/signer-name'",
                ));
            }
        }
    }
    let usages = array_field(spec, "usages", &path, errs);
    if usages.is_none_or(Vec::is_empty) {
        errs.push(FieldError::required(
            path.child("usages"),
            "usages must be provided",
        ));
    }
    for (i, u) in usages.into_iter().flatten().enumerate() {
        if !u.as_str().is_some_and(|s| USAGES.contains(&s)) {
            errs.push(FieldError::not_supported(
                path.child("usages").index(i),
                u,
                USAGES,
            ));
        }
    }
    if let Some(secs) = int_field(spec, "expirationSeconds", &path, errs)
        && secs < 600
    {
        errs.push(FieldError::invalid(
            path.child("expirationSeconds"),
            &Value::from(secs),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    if let Some(old) = old {
        let old_spec = field(old, "spec");
        for key in ["request", "signerName", "usages", "expirationSeconds"] {
            super::path::immutable(spec, old_spec, key, &path, errs);
        }
    }
}

pub(crate) fn validate_role(object: &Value, namespaced: bool, errs: &mut Errs) {
    let root = Path::default();
    for (i, rule) in array_field(object, "rules", &root, errs)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let rp = Path::root("rules").index(i);
        let len = |k: &str| rule.get(k).and_then(Value::as_array).map_or(0, Vec::len);
        if len("verbs") == 0 {
            errs.push(FieldError::required(
                rp.child("verbs"),
                "verbs must contain at least one value",
            ));
        }
        if len("nonResourceURLs") > 0 {
            if namespaced {
                errs.push(FieldError::invalid(
                    rp.child("nonResourceURLs"),
                    field(rule, "nonResourceURLs"),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if len("apiGroups") > 0 || len("resources") > 0 || len("resourceNames") > 0 {
                errs.push(FieldError::invalid(
                    rp.child("nonResourceURLs"),
                    field(rule, "nonResourceURLs"),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if len("apiGroups") == 0 {
            errs.push(FieldError::required(
                rp.child("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if len("resources") == 0 {
            errs.push(FieldError::required(
                rp.child("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    if !namespaced {
        let agg = field(object, "aggregationRule");
        if agg.is_object() {
            let sels = agg.get("clusterRoleSelectors").and_then(Value::as_array);
            if sels.is_none_or(Vec::is_empty) {
                errs.push(FieldError::required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
            for (i, s) in sels.into_iter().flatten().enumerate() {
                super::apps::validate_label_selector(
                    s,
                    &Path::root("aggregationRule.clusterRoleSelectors").index(i),
                    errs,
                );
            }
        }
    }
}

pub(crate) fn validate_binding(
    object: &Value,
    old: Option<&Value>,
    namespaced: bool,
    errs: &mut Errs,
) {
    let rp = Path::root("roleRef");
    let role_ref = field(object, "roleRef");
    enum_field(
        role_ref,
        "apiGroup",
        &rp,
        &["rbac.authorization.k8s.io"],
        false,
        errs,
    );
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    enum_field(role_ref, "kind", &rp, kinds, true, errs);
    match str_field(role_ref, "name", &rp, errs) {
        None | Some("") => errs.push(FieldError::required(rp.child("name"), "")),
        Some(name) => {
            for msg in super::names::is_path_segment_name(name) {
                errs.push(FieldError::invalid(
                    rp.child("name"),
                    &Value::from(name),
                    &msg,
                ));
            }
        }
    }
    let root = Path::default();
    for (i, s) in array_field(object, "subjects", &root, errs)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let sp = Path::root("subjects").index(i);
        let name = str_field(s, "name", &sp, errs).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(sp.child("name"), ""));
        }
        match str_field(s, "kind", &sp, errs).unwrap_or("") {
            "ServiceAccount" => {
                if !name.is_empty() {
                    for msg in is_dns1123_subdomain(name) {
                        errs.push(FieldError::invalid(
                            sp.child("name"),
                            &Value::from(name),
                            &msg,
                        ));
                    }
                }
                enum_field(s, "apiGroup", &sp, &[""], false, errs);
                if !namespaced
                    && str_field(s, "namespace", &sp, errs)
                        .unwrap_or("")
                        .is_empty()
                {
                    errs.push(FieldError::required(sp.child("namespace"), ""));
                }
            }
            "User" | "Group" => {
                enum_field(
                    s,
                    "apiGroup",
                    &sp,
                    &["rbac.authorization.k8s.io"],
                    false,
                    errs,
                );
            }
            other => errs.push(FieldError::not_supported(
                sp.child("kind"),
                &Value::from(other),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    if let Some(old) = old
        && field(old, "roleRef") != role_ref
    {
        errs.push(FieldError::invalid(
            "roleRef",
            role_ref,
            "cannot change roleRef",
        ));
    }
}
