//! Pod specs: Pods, PodTemplates and every workload's pod template.

use std::collections::HashSet;

use serde_json::Value;

use super::FieldError;
use super::meta::validate_labels;
use super::names::{
    is_dns1123_label, is_dns1123_subdomain, is_env_var_name, is_iana_svc_name, is_qualified_name,
    is_valid_port,
};
use super::path::{
    Errs, Path, array_field, enum_field, field, int_field, non_negative, object_field, str_field,
    string_map,
};
use super::quantity::{QUANTITY_MSG, Quantity};

pub(crate) const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
pub(crate) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const STANDARD_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage", "storage"];

/// A Pod object: its spec, and on update the fields Kubernetes lets change.
pub(crate) fn validate_pod(object: &Value, old: Option<&Value>, errs: &mut Errs) {
    let path = Path::root("spec");
    match object.get("spec") {
        Some(spec @ Value::Object(_)) => validate_pod_spec(spec, &path, &[], errs),
        _ => errs.push(FieldError::required("spec.containers", "")),
    }
    if let Some(old) = old {
        let mask = |v: &Value| {
            let mut spec = field(v, "spec").clone();
            if let Some(m) = spec.as_object_mut() {
                for key in [
                    "activeDeadlineSeconds",
                    "tolerations",
                    "terminationGracePeriodSeconds",
                ] {
                    m.remove(key);
                }
                for list in ["containers", "initContainers"] {
                    if let Some(Value::Array(cs)) = m.get_mut(list) {
                        for c in cs {
                            if let Some(c) = c.as_object_mut() {
                                c.remove("image");
                            }
                        }
                    }
                }
            }
            spec
        };
        if mask(object) != mask(old) {
            errs.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
    }
}

/// A PodTemplate object (`template` at the top level).
pub(crate) fn validate_pod_template_object(object: &Value, errs: &mut Errs) {
    validate_pod_template(
        field(object, "template"),
        &Path::root("template"),
        &[],
        errs,
    );
}

/// A pod template (`metadata` + `spec`) at `path`; `extra_volumes` names
/// volumes supplied by the owner (StatefulSet volumeClaimTemplates).
pub(crate) fn validate_pod_template(
    template: &Value,
    path: &Path,
    extra_volumes: &[String],
    errs: &mut Errs,
) {
    if !template.is_object() {
        errs.push(FieldError::required(
            path.child("spec").child("containers"),
            "",
        ));
        return;
    }
    let meta_path = path.child("metadata");
    let meta = field(template, "metadata");
    if meta.is_object() {
        validate_labels(meta, "labels", &meta_path, errs);
        for (k, _) in string_map(meta, "annotations", &meta_path, errs) {
            for msg in is_qualified_name(&k.to_ascii_lowercase()) {
                errs.push(FieldError::invalid(
                    meta_path.child("annotations"),
                    &Value::from(k),
                    &msg,
                ));
            }
        }
    }
    let spec = field(template, "spec");
    validate_pod_spec(spec, &path.child("spec"), extra_volumes, errs);
}

/// The template's `spec.restartPolicy` must be one of `allowed`.
pub(crate) fn require_restart_policy(
    template: &Value,
    path: &Path,
    allowed: &[&str],
    errs: &mut Errs,
) {
    let spec_path = path.child("spec");
    if let Some(policy) = str_field(field(template, "spec"), "restartPolicy", &spec_path, errs)
        && !policy.is_empty()
        && RESTART_POLICIES.contains(&policy)
        && !allowed.contains(&policy)
    {
        errs.push(FieldError::not_supported(
            spec_path.child("restartPolicy"),
            &Value::from(policy),
            allowed,
        ));
    }
}

/// A PodSpec at `path`.
pub(crate) fn validate_pod_spec(
    spec: &Value,
    path: &Path,
    extra_volumes: &[String],
    errs: &mut Errs,
) {
    let mut volumes: Vec<String> = extra_volumes.to_vec();
    volumes.extend(validate_volumes(spec, path, errs));
    let mut names = HashSet::new();
    let init = array_field(spec, "initContainers", path, errs);
    for (i, c) in init.into_iter().flatten().enumerate() {
        let cp = path.child("initContainers").index(i);
        validate_container(c, &cp, &volumes, &mut names, errs);
        enum_field(c, "restartPolicy", &cp, &["Always"], false, errs);
    }
    match array_field(spec, "containers", path, errs) {
        Some(list) if !list.is_empty() => {
            for (i, c) in list.iter().enumerate() {
                let cp = path.child("containers").index(i);
                validate_container(c, &cp, &volumes, &mut names, errs);
                if c.get("restartPolicy").is_some_and(|v| !v.is_null()) {
                    errs.push(FieldError::forbidden(
                        cp.child("restartPolicy"),
                        "may not be set for non-init containers",
                    ));
                }
            }
        }
        _ => errs.push(FieldError::required(path.child("containers"), "")),
    }
    enum_field(spec, "restartPolicy", path, RESTART_POLICIES, true, errs);
    enum_field(spec, "dnsPolicy", path, DNS_POLICIES, true, errs);
    non_negative(spec, "terminationGracePeriodSeconds", path, errs);
    if let Some(v) = int_field(spec, "activeDeadlineSeconds", path, errs)
        && !(1..=i64::from(i32::MAX)).contains(&v)
    {
        errs.push(FieldError::invalid(
            path.child("activeDeadlineSeconds"),
            &Value::from(v),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    validate_labels(spec, "nodeSelector", path, errs);
    for key in ["serviceAccountName", "nodeName"] {
        if let Some(name) = str_field(spec, key, path, errs).filter(|s| !s.is_empty()) {
            for msg in is_dns1123_subdomain(name) {
                errs.push(FieldError::invalid(
                    path.child(key),
                    &Value::from(name),
                    &msg,
                ));
            }
        }
    }
    for key in ["hostname", "subdomain"] {
        if let Some(name) = str_field(spec, key, path, errs).filter(|s| !s.is_empty()) {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(
                    path.child(key),
                    &Value::from(name),
                    &msg,
                ));
            }
        }
    }
}

fn validate_volumes(spec: &Value, path: &Path, errs: &mut Errs) -> Vec<String> {
    let mut names = Vec::new();
    let Some(list) = array_field(spec, "volumes", path, errs) else {
        return names;
    };
    for (i, v) in list.iter().enumerate() {
        let vp = path.child("volumes").index(i);
        let name = str_field(v, "name", &vp, errs).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(vp.child("name"), ""));
        } else {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(
                    vp.child("name"),
                    &Value::from(name),
                    &msg,
                ));
            }
            if names.iter().any(|n| n == name) {
                errs.push(FieldError::duplicate(vp.child("name"), &Value::from(name)));
            }
            names.push(name.to_owned());
        }
        let sources: Vec<&String> = v
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, s)| *k != "name" && !s.is_null())
                    .map(|(k, _)| k)
                    .collect()
            })
            .unwrap_or_default();
        match sources.as_slice() {
            [] => errs.push(FieldError::required(&vp, "must specify a volume type")),
            [one] => validate_volume_source(one, field(v, one), &vp.child(one), errs),
            [_, rest @ ..] => {
                for extra in rest {
                    errs.push(FieldError::forbidden(
                        vp.child(extra),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
    }
    names
}

fn validate_volume_source(kind: &str, source: &Value, path: &Path, errs: &mut Errs) {
    let required = match kind {
        "configMap" => Some("name"),
        "secret" => Some("secretName"),
        "persistentVolumeClaim" => Some("claimName"),
        "hostPath" => Some("path"),
        "nfs" => Some("server"),
        _ => None,
    };
    if let Some(key) = required
        && str_field(source, key, path, errs).unwrap_or("").is_empty()
    {
        errs.push(FieldError::required(path.child(key), ""));
    }
    if let Some(mode) = int_field(source, "defaultMode", path, errs)
        && !(0..=0o777).contains(&mode)
    {
        errs.push(FieldError::invalid(
            path.child("defaultMode"),
            &Value::from(mode),
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
    if kind == "emptyDir" {
        enum_field(
            source,
            "medium",
            path,
            &["", "Memory", "HugePages"],
            false,
            errs,
        );
        if let Some(size) = str_field(source, "sizeLimit", path, errs) {
            check_quantity(size, &path.child("sizeLimit"), errs);
        }
    }
}

fn check_quantity(text: &str, path: &Path, errs: &mut Errs) -> Option<Quantity> {
    match Quantity::parse(text) {
        Ok(q) if q.is_negative() => {
            errs.push(FieldError::invalid(
                path,
                &Value::from(text),
                "must be greater than or equal to 0",
            ));
            None
        }
        Ok(q) => Some(q),
        Err(_) => {
            errs.push(FieldError::invalid(path, &Value::from(text), QUANTITY_MSG));
            None
        }
    }
}

/// A quantity given as a JSON string or number.
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn validate_resources(c: &Value, path: &Path, errs: &mut Errs) {
    let rp = path.child("resources");
    let res = field(c, "resources");
    if !res.is_object() {
        return;
    }
    let mut parsed = Vec::new();
    for part in ["limits", "requests"] {
        let Some(map) = object_field(res, part, &rp, errs) else {
            continue;
        };
        for (name, value) in map {
            let fp = rp.child(part).key(name);
            if !STANDARD_RESOURCES.contains(&name.as_str())
                && !name.starts_with("hugepages-")
                && !name.contains('/')
            {
                errs.push(FieldError::invalid(
                    &fp,
                    &Value::from(name.as_str()),
                    "must be a standard resource type or fully qualified",
                ));
            }
            for msg in is_qualified_name(name) {
                errs.push(FieldError::invalid(&fp, &Value::from(name.as_str()), &msg));
            }
            let Some(text) = quantity_text(value) else {
                errs.push(FieldError::invalid(&fp, value, QUANTITY_MSG));
                continue;
            };
            if let Some(q) = check_quantity(&text, &fp, errs) {
                parsed.push((part, name.as_str(), text, q));
            }
        }
    }
    for (part, name, text, q) in &parsed {
        if *part != "requests" {
            continue;
        }
        if let Some((_, _, limit_text, limit)) = parsed
            .iter()
            .find(|(p, n, _, _)| *p == "limits" && n == name)
            && q > limit
        {
            errs.push(FieldError::invalid(
                rp.child("requests").key(name),
                &Value::from(text.as_str()),
                &format!("must be less than or equal to {name} limit of {limit_text}"),
            ));
        }
    }
}

fn validate_container(
    c: &Value,
    path: &Path,
    volumes: &[String],
    names: &mut HashSet<String>,
    errs: &mut Errs,
) {
    if !c.is_object() {
        errs.push(FieldError::invalid(path, c, "must be of type object"));
        return;
    }
    let name = str_field(c, "name", path, errs).unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else {
        for msg in is_dns1123_label(name) {
            errs.push(FieldError::invalid(
                path.child("name"),
                &Value::from(name),
                &msg,
            ));
        }
        if !names.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(
                path.child("name"),
                &Value::from(name),
            ));
        }
    }
    match str_field(c, "image", path, errs) {
        None | Some("") => errs.push(FieldError::required(path.child("image"), "")),
        Some(image) if image.trim() != image => errs.push(FieldError::invalid(
            path.child("image"),
            &Value::from(image),
            "must not have leading or trailing whitespace",
        )),
        Some(_) => {}
    }
    enum_field(c, "imagePullPolicy", path, PULL_POLICIES, true, errs);
    enum_field(
        c,
        "terminationMessagePolicy",
        path,
        MESSAGE_POLICIES,
        true,
        errs,
    );
    validate_container_ports(c, path, errs);
    validate_env(c, path, errs);
    validate_mounts(c, path, volumes, errs);
    validate_resources(c, path, errs);
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        validate_probe(c, probe, path, errs);
    }
}

fn validate_container_ports(c: &Value, path: &Path, errs: &mut Errs) {
    let Some(ports) = array_field(c, "ports", path, errs) else {
        return;
    };
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = path.child("ports").index(i);
        if let Some(name) = str_field(port, "name", &pp, errs).filter(|s| !s.is_empty()) {
            for msg in is_iana_svc_name(name) {
                errs.push(FieldError::invalid(
                    pp.child("name"),
                    &Value::from(name),
                    &msg,
                ));
            }
            if !names.insert(name.to_owned()) {
                errs.push(FieldError::duplicate(pp.child("name"), &Value::from(name)));
            }
        }
        match int_field(port, "containerPort", &pp, errs) {
            None | Some(0) => errs.push(FieldError::required(pp.child("containerPort"), "")),
            Some(n) => {
                for msg in is_valid_port(n) {
                    errs.push(FieldError::invalid(
                        pp.child("containerPort"),
                        &Value::from(n),
                        &msg,
                    ));
                }
            }
        }
        if let Some(n) = int_field(port, "hostPort", &pp, errs).filter(|n| *n != 0) {
            for msg in is_valid_port(n) {
                errs.push(FieldError::invalid(
                    pp.child("hostPort"),
                    &Value::from(n),
                    &msg,
                ));
            }
        }
        enum_field(port, "protocol", &pp, PROTOCOLS, true, errs);
    }
}

fn validate_env(c: &Value, path: &Path, errs: &mut Errs) {
    for (i, e) in array_field(c, "env", path, errs)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let ep = path.child("env").index(i);
        match str_field(e, "name", &ep, errs) {
            None | Some("") => errs.push(FieldError::required(ep.child("name"), "")),
            Some(name) => {
                for msg in is_env_var_name(name) {
                    errs.push(FieldError::invalid(
                        ep.child("name"),
                        &Value::from(name),
                        &msg,
                    ));
                }
            }
        }
        let value = str_field(e, "value", &ep, errs).unwrap_or("");
        if let Some(from) = object_field(e, "valueFrom", &ep, errs) {
            let fp = ep.child("valueFrom");
            let kinds: Vec<&String> = from
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
                .collect();
            if !value.is_empty() {
                errs.push(FieldError::invalid(
                    &fp,
                    &Value::from(""),
                    "may not be specified when `value` is not empty",
                ));
            }
            match kinds.len() {
                0 => errs.push(FieldError::invalid(
                    &fp,
                    &Value::from(""),
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                )),
                1 => {}
                _ => errs.push(FieldError::invalid(
                    &fp,
                    &Value::from(""),
                    "may not have more than one field specified at a time",
                )),
            }
            for key_ref in ["configMapKeyRef", "secretKeyRef"] {
                let kr = field(e.get("valueFrom").unwrap_or(&Value::Null), key_ref);
                if kr.is_object()
                    && str_field(kr, "key", &fp.child(key_ref), errs)
                        .unwrap_or("")
                        .is_empty()
                {
                    errs.push(FieldError::required(fp.child(key_ref).child("key"), ""));
                }
            }
        }
    }
}

fn validate_mounts(c: &Value, path: &Path, volumes: &[String], errs: &mut Errs) {
    let mut paths = HashSet::new();
    for (i, m) in array_field(c, "volumeMounts", path, errs)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mp = path.child("volumeMounts").index(i);
        match str_field(m, "name", &mp, errs) {
            None | Some("") => errs.push(FieldError::required(mp.child("name"), "")),
            Some(name) if !volumes.iter().any(|v| v == name) => {
                errs.push(FieldError::not_found(mp.child("name"), &Value::from(name)));
            }
            Some(_) => {}
        }
        match str_field(m, "mountPath", &mp, errs) {
            None | Some("") => errs.push(FieldError::required(mp.child("mountPath"), "")),
            Some(p) => {
                if !paths.insert(p.to_owned()) {
                    errs.push(FieldError::invalid(
                        mp.child("mountPath"),
                        &Value::from(p),
                        "must be unique",
                    ));
                }
            }
        }
    }
}

fn validate_probe(c: &Value, key: &str, path: &Path, errs: &mut Errs) {
    let Some(probe) = c.get(key).filter(|p| !p.is_null()) else {
        return;
    };
    let pp = path.child(key);
    for n in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        non_negative(probe, n, &pp, errs);
    }
    if key != "readinessProbe"
        && let Some(v) = int_field(probe, "successThreshold", &pp, errs)
        && v != 1
    {
        errs.push(FieldError::invalid(
            pp.child("successThreshold"),
            &Value::from(v),
            "must be 1",
        ));
    }
    let handlers: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .filter(|h| probe.get(*h).is_some_and(|v| !v.is_null()))
        .collect();
    match handlers.as_slice() {
        [] => errs.push(FieldError::required(&pp, "must specify a handler type")),
        [one] => {
            if *one == "httpGet" || *one == "tcpSocket" {
                let hp = pp.child(one);
                match field(field(probe, one), "port") {
                    Value::Number(n) => {
                        let n = n.as_i64().unwrap_or(0);
                        for msg in is_valid_port(n) {
                            errs.push(FieldError::invalid(hp.child("port"), &Value::from(n), &msg));
                        }
                    }
                    Value::String(s) => {
                        for msg in is_iana_svc_name(s) {
                            errs.push(FieldError::invalid(
                                hp.child("port"),
                                &Value::from(s.as_str()),
                                &msg,
                            ));
                        }
                    }
                    _ => errs.push(FieldError::required(hp.child("port"), "")),
                }
            }
        }
        [_, rest @ ..] => {
            for h in rest {
                errs.push(FieldError::forbidden(
                    pp.child(h),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
}
