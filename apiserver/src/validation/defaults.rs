//! Defaulting: the values kube-apiserver's `SetDefaults_*` functions fill
//! in, applied to absent or null fields only.

use serde_json::{Map, Value, json};

use super::quantity::Quantity;
use crate::openapi::GroupVersionKind;

/// Applies the Kubernetes defaults of kind `gvk` to `object` in place.
/// Unknown kinds and values of unexpected shape are left alone (validation
/// reports them).
pub fn default_object(gvk: &GroupVersionKind, object: &mut Value) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    match (gvk.group.as_str(), gvk.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = child(obj, "spec") {
                default_pod_spec(spec);
                set(spec, "enableServiceLinks", json!(true));
                default_requests_from_limits(spec);
            }
        }
        ("", "PodTemplate") => default_template(obj, "template"),
        ("", "ReplicationController") => {
            if let Some(spec) = child(obj, "spec") {
                set(spec, "replicas", json!(1));
                default_template(spec, "template");
            }
        }
        ("", "Service") => {
            if let Some(spec) = child(obj, "spec") {
                default_service_spec(spec);
            }
        }
        ("", "Namespace") => default_namespace(obj),
        ("", "Secret") => set(obj, "type", json!("Opaque")),
        ("", "Endpoints") => {
            if let Some(Value::Array(subsets)) = obj.get_mut("subsets") {
                for subset in subsets.iter_mut().filter_map(Value::as_object_mut) {
                    default_port_protocols(subset, "ports");
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            if let Some(Value::Array(ports)) = obj.get_mut("ports") {
                for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                    set(port, "name", json!(""));
                    set(port, "protocol", json!("TCP"));
                }
            }
        }
        ("apps", "Deployment") => {
            if let Some(spec) = child(obj, "spec") {
                set(spec, "replicas", json!(1));
                if let Some(strategy) = child_or_new(spec, "strategy") {
                    set(strategy, "type", json!("RollingUpdate"));
                    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                        && let Some(ru) = child_or_new(strategy, "rollingUpdate")
                    {
                        set(ru, "maxUnavailable", json!("25%"));
                        set(ru, "maxSurge", json!("25%"));
                    }
                }
                set(spec, "revisionHistoryLimit", json!(10));
                set(spec, "progressDeadlineSeconds", json!(600));
                default_template(spec, "template");
            }
        }
        ("apps", "ReplicaSet") => {
            if let Some(spec) = child(obj, "spec") {
                set(spec, "replicas", json!(1));
                default_template(spec, "template");
            }
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = child(obj, "spec") {
                if let Some(strategy) = child_or_new(spec, "updateStrategy") {
                    set(strategy, "type", json!("RollingUpdate"));
                    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                        && let Some(ru) = child_or_new(strategy, "rollingUpdate")
                    {
                        set(ru, "maxUnavailable", json!(1));
                        set(ru, "maxSurge", json!(0));
                    }
                }
                set(spec, "revisionHistoryLimit", json!(10));
                default_template(spec, "template");
            }
        }
        ("apps", "StatefulSet") => {
            if let Some(spec) = child(obj, "spec") {
                set(spec, "replicas", json!(1));
                set(spec, "podManagementPolicy", json!("OrderedReady"));
                if let Some(strategy) = child_or_new(spec, "updateStrategy") {
                    set(strategy, "type", json!("RollingUpdate"));
                    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                        && let Some(ru) = child_or_new(strategy, "rollingUpdate")
                    {
                        set(ru, "partition", json!(0));
                    }
                }
                set(spec, "revisionHistoryLimit", json!(10));
                if let Some(retention) = child_or_new(spec, "persistentVolumeClaimRetentionPolicy")
                {
                    set(retention, "whenDeleted", json!("Retain"));
                    set(retention, "whenScaled", json!("Retain"));
                }
                if let Some(Value::Array(claims)) = spec.get_mut("volumeClaimTemplates") {
                    for claim in claims.iter_mut().filter_map(Value::as_object_mut) {
                        set(claim, "apiVersion", json!("v1"));
                        set(claim, "kind", json!("PersistentVolumeClaim"));
                        if let Some(cs) = child(claim, "spec") {
                            set(cs, "volumeMode", json!("Filesystem"));
                        }
                        if let Some(status) = child_or_new(claim, "status") {
                            set(status, "phase", json!("Pending"));
                        }
                    }
                }
                default_template(spec, "template");
            }
        }
        ("batch", "Job") => {
            if let Some(spec) = child(obj, "spec") {
                default_job_spec(spec);
            }
        }
        ("batch", "CronJob") => {
            if let Some(spec) = child(obj, "spec") {
                set(spec, "concurrencyPolicy", json!("Allow"));
                set(spec, "suspend", json!(false));
                set(spec, "successfulJobsHistoryLimit", json!(3));
                set(spec, "failedJobsHistoryLimit", json!(1));
                if let Some(jt) = child(spec, "jobTemplate")
                    && let Some(js) = child(jt, "spec")
                {
                    default_template(js, "template");
                }
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            if let Some(Value::Array(subjects)) = obj.get_mut("subjects") {
                for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
                    let group = match s.get("kind").and_then(Value::as_str) {
                        Some("ServiceAccount") => "",
                        Some("User" | "Group") => "rbac.authorization.k8s.io",
                        _ => continue,
                    };
                    set(s, "apiGroup", json!(group));
                }
            }
        }
        _ => {}
    }
}

/// Sets `key` to `value` when absent or null.
fn set(obj: &mut Map<String, Value>, key: &str, value: Value) {
    match obj.get(key) {
        None | Some(Value::Null) => {
            obj.insert(key.to_owned(), value);
        }
        Some(_) => {}
    }
}

/// The object at `key`, if it is one.
fn child<'a>(obj: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    obj.get_mut(key).and_then(Value::as_object_mut)
}

/// The object at `key`, created when absent or null; `None` when the field
/// holds another type (validation reports it).
fn child_or_new<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    set(obj, key, Value::Object(Map::new()));
    obj.get_mut(key).and_then(Value::as_object_mut)
}

fn default_template(parent: &mut Map<String, Value>, key: &str) {
    if let Some(template) = child(parent, key)
        && let Some(spec) = child(template, "spec")
    {
        default_pod_spec(spec);
    }
}

fn default_job_spec(spec: &mut Map<String, Value>) {
    let has = |s: &Map<String, Value>, k: &str| s.get(k).is_some_and(|v| !v.is_null());
    if !has(spec, "completions") && !has(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set(spec, "parallelism", json!(1));
    let backoff = if has(spec, "backoffLimitPerIndex") {
        i64::from(i32::MAX)
    } else {
        6
    };
    set(spec, "backoffLimit", json!(backoff));
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    if !has(spec, "podFailurePolicy") {
        set(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    } else {
        set(spec, "podReplacementPolicy", json!("Failed"));
    }
    default_template(spec, "template");
}

fn default_namespace(obj: &mut Map<String, Value>) {
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(name) = name
        && let Some(meta) = child(obj, "metadata")
        && let Some(labels) = child_or_new(meta, "labels")
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(spec) = child_or_new(obj, "spec") {
        set(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child_or_new(obj, "status") {
        set(status, "phase", json!("Active"));
    }
}

fn default_service_spec(spec: &mut Map<String, Value>) {
    set(spec, "type", json!("ClusterIP"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    set(spec, "sessionAffinity", json!("None"));
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP")
        && let Some(client) = child_or_new(spec, "sessionAffinityConfig")
            .and_then(|cfg| child_or_new(cfg, "clientIP"))
    {
        set(client, "timeoutSeconds", json!(10800));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            set(port, "protocol", json!("TCP"));
            if let Some(p) = port.get("port").cloned() {
                let empty = port
                    .get("targetPort")
                    .is_none_or(|t| t.is_null() || t.as_i64() == Some(0) || t.as_str() == Some(""));
                if empty {
                    port.insert("targetPort".into(), p);
                }
            }
        }
    }
    if ty == "ExternalName" {
        return;
    }
    let cluster_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if !cluster_ip.is_empty() {
        set(spec, "clusterIPs", json!([cluster_ip.clone()]));
    }
    if cluster_ip != "None"
        || spec
            .get("selector")
            .is_some_and(|s| s.as_object().is_some_and(|m| !m.is_empty()))
    {
        set(spec, "ipFamilyPolicy", json!("SingleStack"));
        let family = if cluster_ip.contains(':') {
            "IPv6"
        } else {
            "IPv4"
        };
        set(spec, "ipFamilies", json!([family]));
    }
    set(spec, "internalTrafficPolicy", json!("Cluster"));
    if ty == "NodePort" || ty == "LoadBalancer" {
        set(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

fn default_port_protocols(obj: &mut Map<String, Value>, key: &str) {
    if let Some(Value::Array(ports)) = obj.get_mut(key) {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            set(port, "protocol", json!("TCP"));
        }
    }
}

/// The pull policy Kubernetes picks from the image reference.
fn pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_pod_spec(spec: &mut Map<String, Value>) {
    set(spec, "restartPolicy", json!("Always"));
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "schedulerName", json!("default-scheduler"));
    set(spec, "securityContext", json!({}));
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default_container(c);
            }
        }
    }
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        for v in volumes.iter_mut().filter_map(Value::as_object_mut) {
            for source in ["secret", "configMap", "projected", "downwardAPI"] {
                if let Some(s) = child(v, source) {
                    set(s, "defaultMode", json!(420));
                }
            }
            if let Some(h) = child(v, "hostPath") {
                set(h, "type", json!(""));
            }
        }
    }
}

fn default_container(c: &mut Map<String, Value>) {
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    let policy = pull_policy(c.get("image").and_then(Value::as_str).unwrap_or(""));
    set(c, "imagePullPolicy", json!(policy));
    set(c, "resources", json!({}));
    default_port_protocols(c, "ports");
    if let Some(Value::Array(env)) = c.get_mut("env") {
        for e in env.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(from) = child(e, "valueFrom")
                && let Some(f) = child(from, "fieldRef")
            {
                set(f, "apiVersion", json!("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child(c, probe) {
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
            if let Some(h) = child(p, "httpGet") {
                set(h, "path", json!("/"));
                set(h, "scheme", json!("HTTP"));
            }
        }
    }
    if let Some(l) = child(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = child(l, hook).and_then(|h| child(h, "httpGet")) {
                set(h, "path", json!("/"));
                set(h, "scheme", json!("HTTP"));
            }
        }
    }
}

/// Pods only: a container with limits and no request for a resource gets
/// the limit as its request.
fn default_requests_from_limits(spec: &mut Map<String, Value>) {
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                let Some(res) = child(c, "resources") else {
                    continue;
                };
                let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
                    continue;
                };
                if let Some(requests) = child_or_new(res, "requests") {
                    // Unparsable limits are left for validation to report once.
                    for (k, v) in limits {
                        let parses =
                            v.as_str().is_some_and(|q| Quantity::parse(q).is_ok()) || v.is_number();
                        if parses {
                            requests.entry(k).or_insert(v);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pull_policy;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy("registry:5000/app"), "Always");
        assert_eq!(pull_policy("registry:5000/app:v1"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:abcd"), "IfNotPresent");
    }
}
