//! Strategic merge patch against the embedded Kubernetes schemas, with the
//! patch bodies kubectl sends (captured from kubectl 1.33 talking to the
//! test server of `openapi_kubectl.rs`) and expected objects written from
//! the Kubernetes semantics.

use cairn_apiserver::openapi::{Definitions, GroupVersionKind, Schema};
use cairn_apiserver::patch::{PatchError, strategic_merge_patch};
use serde_json::{Value, json};

fn schema(api_version: &str, kind: &str) -> Schema<'static> {
    let defs = Definitions::embedded().expect("embedded definitions");
    defs.for_gvk(&GroupVersionKind::from_api_version(api_version, kind))
        .expect("kind is defined")
}

fn deployment() -> Schema<'static> {
    schema("apps/v1", "Deployment")
}

fn smp(live: &Value, patch: &Value, s: Schema<'static>) -> Value {
    strategic_merge_patch(live, patch, Some(s)).expect("patch applies")
}

/// The live Deployment after `kubectl apply` of the first manifest, plus
/// server-side defaults and a label added by someone else.
fn live_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "team": "blue"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"},
            "uid": "u1",
            "resourceVersion": "7"
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [
                                {"containerPort": 80, "protocol": "TCP"},
                                {"containerPort": 443, "protocol": "TCP"}
                            ],
                            "env": [{"name": "A", "value": "1"}]
                        },
                        {
                            "name": "sidecar",
                            "image": "busybox:1",
                            "command": ["sleep", "infinity"]
                        }
                    ],
                    "restartPolicy": "Always",
                    "volumes": [{"name": "cache", "emptyDir": {}}]
                }
            }
        },
        "status": {"replicas": 1}
    })
}

/// Captured from `kubectl apply` (see `openapi_kubectl.rs`).
const APPLY_PATCH: &str = r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"labels\":{\"app\":\"web\"},\"name\":\"web\",\"namespace\":\"v133\"},\"spec\":{\"replicas\":1,\"selector\":{\"matchLabels\":{\"app\":\"web\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":[{\"command\":[\"sleep\",\"infinity\"],\"image\":\"busybox:1\",\"name\":\"sidecar\"},{\"env\":[{\"name\":\"A\",\"value\":\"1\"},{\"name\":\"B\",\"value\":\"2\"}],\"image\":\"nginx:2\",\"name\":\"app\",\"ports\":[{\"containerPort\":80}]}]}}}}\n"}},"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"sidecar"},{"name":"app"}],"containers":[{"$setElementOrder/env":[{"name":"A"},{"name":"B"}],"$setElementOrder/ports":[{"containerPort":80}],"env":[{"name":"B","value":"2"}],"image":"nginx:2","name":"app","ports":[{"$patch":"delete","containerPort":443}]}]}}}}"#;

#[test]
fn three_way_apply_patch_changes_image_adds_env_removes_port_reorders_containers() {
    // What `kubectl apply` (1.27, 1.29 and 1.33 alike) sent when the
    // manifest changed the app image, added env B, dropped port 443 and
    // listed sidecar first.
    let patch: Value = serde_json::from_str(APPLY_PATCH).expect("fixture");
    let out = smp(&live_deployment(), &patch, deployment());
    let mut want = live_deployment();
    want["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        patch["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .clone();
    want["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "sidecar", "image": "busybox:1", "command": ["sleep", "infinity"]},
        {
            "name": "app",
            "image": "nginx:2",
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
        }
    ]);
    assert_eq!(out, want);
}

#[test]
fn kubectl_set_image_patch() {
    // As captured from `kubectl set image deployment/web app=nginx:3`.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
        "containers": [{"image": "nginx:3", "name": "app"}]
    }}}});
    let out = smp(&live_deployment(), &patch, deployment());
    let mut want = live_deployment();
    want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:3");
    assert_eq!(out, want);
}

#[test]
fn kubectl_patch_of_one_container_keeps_the_rest() {
    let patch = json!({"spec":{"template":{"spec":{"containers":[{"name":"app","image":"x"}]}}}});
    let out = smp(&live_deployment(), &patch, deployment());
    let mut want = live_deployment();
    want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("x");
    assert_eq!(out, want);
}

#[test]
fn a_new_container_without_set_element_order_goes_first() {
    // As the Kubernetes documentation of `kubectl patch` shows: the added
    // container is listed before the existing one.
    let patch =
        json!({"spec":{"template":{"spec":{"containers":[{"name":"new","image":"redis"}]}}}});
    let out = smp(&live_deployment(), &patch, deployment());
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["new", "app", "sidecar"]);
}

#[test]
fn patch_delete_directive_removes_a_list_item() {
    let patch =
        json!({"spec":{"template":{"spec":{"containers":[{"$patch":"delete","name":"sidecar"}]}}}});
    let out = smp(&live_deployment(), &patch, deployment());
    let containers = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("list");
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["name"], "app");
}

#[test]
fn env_and_volume_mounts_merge_by_their_keys() {
    let live = json!({"spec": {"containers": [{
        "name": "app",
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cache", "mountPath": "/cache"}]
    }]}});
    let patch = json!({"spec": {"containers": [{
        "name": "app",
        "env": [{"name": "B", "value": "3"}],
        "volumeMounts": [{"mountPath": "/data", "readOnly": true}]
    }]}});
    let out = smp(&live, &patch, schema("v1", "Pod"));
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}])
    );
    assert_eq!(
        out["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": "data", "mountPath": "/data", "readOnly": true}, {"name": "cache", "mountPath": "/cache"}])
    );
}

#[test]
fn service_port_change_merges_by_port() {
    let live = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}
            ]
        }
    });
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
    let out = smp(&live, &patch, schema("v1", "Service"));
    assert_eq!(
        out["spec"]["ports"],
        json!([
            {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
            {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}
        ])
    );
}

#[test]
fn configmap_data_key_deleted_with_null() {
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
        "data": {"a": "1", "b": "2"}});
    let patch = json!({"data": {"a": null, "c": "3"}});
    let out = smp(&live, &patch, schema("v1", "ConfigMap"));
    assert_eq!(out["data"], json!({"b": "2", "c": "3"}));
}

#[test]
fn retain_keys_switches_deployment_strategy() {
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let out = smp(&live_deployment(), &patch, deployment());
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_switches_a_volume_source() {
    let patch = json!({"spec": {"template": {"spec": {"volumes": [
        {"$retainKeys": ["name", "secret"], "name": "cache", "secret": {"secretName": "s"}}
    ]}}}});
    let out = smp(&live_deployment(), &patch, deployment());
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "cache", "secret": {"secretName": "s"}}])
    );
}

#[test]
fn replace_directive_on_a_list_and_on_a_map() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"},
        {"name": "only", "image": "x"}
    ]}}}});
    let out = smp(&live_deployment(), &patch, deployment());
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "x"}])
    );

    let patch = json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"tier": "x"}}}});
    let out = smp(&live_deployment(), &patch, deployment());
    assert_eq!(
        out["spec"]["selector"],
        json!({"matchLabels": {"tier": "x"}})
    );

    let patch = json!({"metadata": {"labels": {"$patch": "delete"}}});
    let out = smp(&live_deployment(), &patch, deployment());
    assert_eq!(out["metadata"]["labels"], json!({}));
}

#[test]
fn primitive_merge_list_is_a_set_and_supports_delete_from_primitive_list() {
    let live = json!({"metadata": {"name": "x", "finalizers": ["a", "b"]}});
    let out = smp(
        &live,
        &json!({"metadata": {"finalizers": ["b", "c"]}}),
        deployment(),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));

    let patch = json!({"metadata": {
        "$deleteFromPrimitiveList/finalizers": ["a"],
        "$setElementOrder/finalizers": ["b", "c"],
        "finalizers": ["c"]
    }});
    let out = smp(&live, &patch, deployment());
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
}

#[test]
fn lists_without_merge_strategy_are_replaced() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "command": ["sh"]}
    ]}}}});
    let out = smp(&live_deployment(), &patch, deployment());
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][1]["command"],
        json!(["sh"])
    );
}

#[test]
fn set_element_order_alone_reorders_the_live_list() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]
    }}}});
    let out = smp(&live_deployment(), &patch, deployment());
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["name"],
        "sidecar"
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][1]["name"],
        "app"
    );
}

#[test]
fn server_only_items_are_interleaved_by_live_position() {
    // Live [a, x, b]; x was added by someone else. The patch orders b, a:
    // x was live before b, so it stays before b.
    let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "x"}, {"name": "b"}]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
        "containers": [{"name": "b", "image": "new"}]
    }});
    let out = smp(&live, &patch, schema("v1", "Pod"));
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["x", "b", "a"]);
}

#[test]
fn new_subtrees_are_cleaned_of_nulls_and_directives() {
    let live = json!({"metadata": {"name": "p"}, "spec": {}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "a", "image": "i", "workingDir": null,
            "$setElementOrder/env": [{"name": "E"}], "env": [{"name": "E", "value": "v"}]}]
    }});
    let out = smp(&live, &patch, schema("v1", "Pod"));
    assert_eq!(
        out["spec"],
        json!({"containers": [{"name": "a", "image": "i", "env": [{"name": "E", "value": "v"}]}]})
    );
}

#[test]
fn missing_merge_key_is_reported_with_its_path() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    let err =
        strategic_merge_patch(&live_deployment(), &patch, Some(deployment())).expect_err("no name");
    assert_eq!(
        err,
        PatchError::MissingMergeKey {
            path: "spec.template.spec.containers[0]".into(),
            key: "name".into()
        }
    );
}

#[test]
fn invalid_directive_is_reported_with_its_path() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "explode", "name": "app"}]}}}});
    let err = strategic_merge_patch(&live_deployment(), &patch, Some(deployment()))
        .expect_err("bad directive");
    assert!(
        matches!(&err, PatchError::InvalidDirective { path, .. } if path == "spec.template.spec.containers[0]"),
        "{err:?}"
    );
}

#[test]
fn without_schema_lists_are_replaced_and_maps_merged() {
    let live = json!({"spec": {"items": [{"name": "a"}, {"name": "b"}], "m": {"x": 1, "y": 2}}});
    let patch = json!({"spec": {"items": [{"name": "c"}], "m": {"x": null, "z": 3}}});
    let out = strategic_merge_patch(&live, &patch, None).expect("applies");
    assert_eq!(
        out,
        json!({"spec": {"items": [{"name": "c"}], "m": {"y": 2, "z": 3}}})
    );
}

#[test]
fn patch_must_be_an_object() {
    assert!(matches!(
        strategic_merge_patch(&json!({}), &json!([1]), None),
        Err(PatchError::NotAnObject { .. })
    ));
}
