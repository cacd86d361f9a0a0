//! core/v1 Service.

use std::collections::HashSet;

use serde_json::Value;

use super::FieldError;
use super::meta::validate_labels;
use super::names::{
    IP_MSG, is_dns1123_label, is_dns1123_subdomain, is_iana_svc_name, is_valid_port, parse_ip,
};
use super::path::{Errs, Path, array_field, enum_field, field, int_field, str_field};
use super::pod::PROTOCOLS;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// On update, copies what the registry allocated (clusterIP, clusterIPs,
/// ipFamilies, ipFamilyPolicy, nodePorts, healthCheckNodePort) from the
/// stored Service into one that leaves them out, as Kubernetes does before
/// validating, so a `kubectl replace` of the original manifest keeps them.
pub fn carry_over_service_allocations(new: &mut Value, old: &Value) {
    let old_spec = field(old, "spec");
    let new_type = new
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    let old_type = old_spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if new_type != "ExternalName" && old_type != "ExternalName" {
        for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            let missing = spec.get(key).is_none_or(|v| {
                v.is_null() || v.as_str() == Some("") || v.as_array().is_some_and(Vec::is_empty)
            });
            if missing && let Some(v) = old_spec.get(key) {
                spec.insert(key.to_owned(), v.clone());
            }
        }
    }
    let wants_node_ports = new_type == "NodePort" || new_type == "LoadBalancer";
    if !wants_node_ports {
        return;
    }
    if spec.get("healthCheckNodePort").is_none_or(Value::is_null)
        && let Some(v) = old_spec.get("healthCheckNodePort")
    {
        spec.insert("healthCheckNodePort".into(), v.clone());
    }
    let old_ports = old_spec
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut() {
            let Some(p) = port.as_object_mut() else {
                continue;
            };
            if p.get("nodePort")
                .is_some_and(|v| !v.is_null() && v.as_i64() != Some(0))
            {
                continue;
            }
            let same = old_ports.iter().find(|o| {
                o.get("port") == p.get("port")
                    && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                        == p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
            });
            if let Some(np) = same
                .and_then(|o| o.get("nodePort"))
                .filter(|v| !v.is_null())
            {
                p.insert("nodePort".into(), np.clone());
            }
        }
    }
}

pub(crate) fn validate_service(object: &Value, old: Option<&Value>, errs: &mut Errs) {
    let path = Path::root("spec");
    let spec = field(object, "spec");
    enum_field(spec, "type", &path, TYPES, true, errs);
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let cluster_ip = str_field(spec, "clusterIP", &path, errs).unwrap_or("");
    let headless = cluster_ip == "None";
    let node_ports_allowed = ty == "NodePort" || ty == "LoadBalancer";

    if ty == "ExternalName" {
        match str_field(spec, "externalName", &path, errs) {
            None | Some("") => errs.push(FieldError::required(path.child("externalName"), "")),
            Some(name) => {
                let trimmed = name.strip_suffix('.').unwrap_or(name);
                for msg in is_dns1123_subdomain(trimmed) {
                    errs.push(FieldError::invalid(
                        path.child("externalName"),
                        &Value::from(name),
                        &msg,
                    ));
                }
            }
        }
        if !cluster_ip.is_empty() {
            errs.push(FieldError::forbidden(
                path.child("clusterIP"),
                "may not be set for ExternalName services",
            ));
        }
    } else if headless && ty != "ClusterIP" {
        errs.push(FieldError::invalid(
            path.child("clusterIPs").index(0),
            &Value::from("None"),
            &format!("may not be set to 'None' for {ty} services"),
        ));
    }

    // clusterIP / clusterIPs
    let ips: Vec<&str> = array_field(spec, "clusterIPs", &path, errs)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !cluster_ip.is_empty() && !ips.is_empty() && ips[0] != cluster_ip {
        errs.push(FieldError::invalid(
            path.child("clusterIPs"),
            field(spec, "clusterIPs"),
            "first value must match `spec.clusterIP`",
        ));
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            path.child("clusterIPs"),
            field(spec, "clusterIPs"),
            "may only hold up to 2 values",
        ));
    }
    let check_list: Vec<&str> = if ips.is_empty() && !cluster_ip.is_empty() {
        vec![cluster_ip]
    } else {
        ips.clone()
    };
    for (i, ip) in check_list.iter().enumerate() {
        if *ip == "None" {
            if i > 0 || (!headless && ty != "ExternalName") {
                errs.push(FieldError::invalid(
                    path.child("clusterIPs").index(i),
                    &Value::from(*ip),
                    "must be empty when the first value is not 'None'",
                ));
            }
            continue;
        }
        if !ip.is_empty() && parse_ip(ip).is_none() {
            errs.push(FieldError::invalid(
                path.child("clusterIPs").index(i),
                &Value::from(*ip),
                IP_MSG,
            ));
        }
    }
    enum_field(
        spec,
        "ipFamilyPolicy",
        &path,
        &["SingleStack", "PreferDualStack", "RequireDualStack"],
        false,
        errs,
    );
    for (i, f) in array_field(spec, "ipFamilies", &path, errs)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !f.as_str().is_some_and(|s| s == "IPv4" || s == "IPv6") {
            errs.push(FieldError::not_supported(
                path.child("ipFamilies").index(i),
                f,
                &["IPv4", "IPv6"],
            ));
        }
    }

    // ports
    let ports = array_field(spec, "ports", &path, errs)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(path.child("ports"), ""));
    }
    let mut names = HashSet::new();
    let mut node_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = path.child("ports").index(i);
        match str_field(port, "name", &pp, errs) {
            None | Some("") => {
                if ports.len() > 1 {
                    errs.push(FieldError::required(pp.child("name"), ""));
                }
            }
            Some(name) => {
                for msg in is_dns1123_label(name) {
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
        }
        match int_field(port, "port", &pp, errs) {
            None => errs.push(FieldError::required(pp.child("port"), "")),
            Some(n) => {
                for msg in is_valid_port(n) {
                    errs.push(FieldError::invalid(pp.child("port"), &Value::from(n), &msg));
                }
            }
        }
        enum_field(port, "protocol", &pp, PROTOCOLS, true, errs);
        match port.get("targetPort") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(-1);
                for msg in is_valid_port(n) {
                    errs.push(FieldError::invalid(
                        pp.child("targetPort"),
                        &Value::from(n),
                        &msg,
                    ));
                }
            }
            Some(Value::String(s)) => {
                for msg in is_iana_svc_name(s) {
                    errs.push(FieldError::invalid(
                        pp.child("targetPort"),
                        &Value::from(s.as_str()),
                        &msg,
                    ));
                }
            }
            Some(other) => errs.push(FieldError::invalid(
                pp.child("targetPort"),
                other,
                "must be an integer or string",
            )),
        }
        if let Some(np) = int_field(port, "nodePort", &pp, errs).filter(|n| *n != 0) {
            if !node_ports_allowed {
                errs.push(FieldError::forbidden(
                    pp.child("nodePort"),
                    &format!("may not be used when `type` is '{ty}'"),
                ));
            } else {
                for msg in is_valid_port(np) {
                    errs.push(FieldError::invalid(
                        pp.child("nodePort"),
                        &Value::from(np),
                        &msg,
                    ));
                }
                let proto = port
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_owned();
                if !node_ports.insert((np, proto)) {
                    errs.push(FieldError::duplicate(
                        pp.child("nodePort"),
                        &Value::from(np),
                    ));
                }
            }
        }
    }

    if ty != "ExternalName" {
        validate_labels(spec, "selector", &path, errs);
    }
    enum_field(
        spec,
        "sessionAffinity",
        &path,
        &["ClientIP", "None"],
        true,
        errs,
    );
    if let Some(t) = spec
        .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
        .and_then(Value::as_i64)
        && !(1..=86400).contains(&t)
    {
        errs.push(FieldError::invalid(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            &Value::from(t),
            "must be greater than 0 and less than 86400",
        ));
    }
    if node_ports_allowed {
        enum_field(
            spec,
            "externalTrafficPolicy",
            &path,
            &["Cluster", "Local"],
            false,
            errs,
        );
    } else if spec
        .get("externalTrafficPolicy")
        .is_some_and(|v| !v.is_null() && v != "")
    {
        errs.push(FieldError::forbidden(
            path.child("externalTrafficPolicy"),
            "may only be set for externally-accessible services",
        ));
    }
    if ty != "ExternalName" {
        enum_field(
            spec,
            "internalTrafficPolicy",
            &path,
            &["Cluster", "Local"],
            false,
            errs,
        );
    }
    for (i, ip) in array_field(spec, "externalIPs", &path, errs)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if ip.as_str().is_none_or(|s| parse_ip(s).is_none()) {
            errs.push(FieldError::invalid(
                path.child("externalIPs").index(i),
                ip,
                IP_MSG,
            ));
        }
    }

    if let Some(old) = old {
        let old_spec = field(old, "spec");
        let old_type = old_spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        let old_ip = old_spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("");
        if old_type != "ExternalName"
            && ty != "ExternalName"
            && !old_ip.is_empty()
            && old_ip != cluster_ip
        {
            errs.push(FieldError::invalid(
                path.child("clusterIPs").index(0),
                &Value::from(cluster_ip),
                "may not change once set",
            ));
        }
    }
}
