//! The embedded definitions and the rendered OpenAPI documents.

use cairn_apiserver::openapi::{
    Definitions, FieldType, GroupVersionKind, ListType, OpenApiDocuments, PatchStrategy,
    ResourceDescriptor, V2_PROTOBUF_CONTENT_TYPE,
};
use serde_json::Value;

fn defs() -> &'static Definitions {
    Definitions::embedded().expect("embedded definitions load")
}

#[test]
fn embedded_definitions_load_with_the_documented_checksum() {
    let d = defs();
    assert_eq!(d.len(), 707);
    assert_eq!(
        d.source_sha256(),
        "f8dfd6a0ac279b0997b0b95cbc1867afbe321a4aa0cd3e2df7e4b49ad8bae20b"
    );
    assert!(d.get("io.k8s.api.apps.v1.Deployment").is_some());
    assert!(d.get("io.k8s.api.apps.v1.Nope").is_none());
}

#[test]
fn lookup_by_group_version_kind() {
    let d = defs();
    let cases = [
        ("apps/v1", "Deployment", "io.k8s.api.apps.v1.Deployment"),
        ("v1", "Pod", "io.k8s.api.core.v1.Pod"),
        ("v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap"),
        ("autoscaling/v1", "Scale", "io.k8s.api.autoscaling.v1.Scale"),
        (
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "io.k8s.api.rbac.v1.ClusterRole",
        ),
    ];
    for (api_version, kind, name) in cases {
        let gvk = GroupVersionKind::from_api_version(api_version, kind);
        assert_eq!(d.name_for_gvk(&gvk), Some(name), "{gvk}");
    }
    assert!(
        d.for_gvk(&GroupVersionKind::new("apps", "v1", "Nope"))
            .is_none()
    );
}

#[test]
fn refs_resolve_and_field_types() {
    let dep = defs()
        .for_gvk(&GroupVersionKind::new("apps", "v1", "Deployment"))
        .expect("deployment");
    let spec = dep.property("spec").expect("spec");
    assert_eq!(spec.ref_name(), Some("io.k8s.api.apps.v1.DeploymentSpec"));
    assert_eq!(spec.field_type(), FieldType::Object);
    let containers = dep.at("spec.template.spec.containers").expect("containers");
    assert_eq!(containers.field_type(), FieldType::Array);
    let item = containers.items().expect("items");
    assert_eq!(item.ref_name(), Some("io.k8s.api.core.v1.Container"));
    assert_eq!(item.field_type(), FieldType::Object);
    assert_eq!(
        dep.at("spec.template.spec.containers.[].image")
            .expect("image")
            .field_type(),
        FieldType::Primitive
    );
    let labels = dep.at("metadata.labels").expect("labels");
    assert_eq!(labels.field_type(), FieldType::Map);
    assert_eq!(
        labels.additional_properties().expect("values").type_name(),
        Some("string")
    );
    assert_eq!(
        dep.at("spec.strategy.rollingUpdate.maxSurge")
            .expect("maxSurge")
            .field_type(),
        FieldType::Primitive
    );
    assert!(
        containers
            .description()
            .expect("doc")
            .starts_with("List of containers")
    );
}

#[test]
fn patch_metadata_of_well_known_fields() {
    let pod = defs()
        .for_gvk(&GroupVersionKind::new("", "v1", "Pod"))
        .expect("pod");
    let cases = [
        ("spec.containers", "merge", Some("name")),
        ("spec.initContainers", "merge", Some("name")),
        ("spec.volumes", "merge,retainKeys", Some("name")),
        ("spec.containers.[].ports", "merge", Some("containerPort")),
        ("spec.containers.[].env", "merge", Some("name")),
        (
            "spec.containers.[].volumeMounts",
            "merge",
            Some("mountPath"),
        ),
        ("spec.tolerations", "", None),
        ("spec.containers.[].args", "", None),
        ("metadata.finalizers", "merge", None),
        ("metadata.ownerReferences", "merge", Some("uid")),
    ];
    for (path, strategy, key) in cases {
        let meta = pod.at(path).expect(path).patch_meta();
        assert_eq!(meta.strategy, PatchStrategy::parse(strategy), "{path}");
        assert_eq!(meta.merge_key.as_deref(), key, "{path}");
    }
    let volumes = pod.at("spec.volumes").expect("volumes").patch_meta();
    assert!(volumes.strategy.merge && volumes.strategy.retain_keys);
    assert_eq!(volumes.list_type, Some(ListType::Map));
    assert_eq!(volumes.list_map_keys, ["name"]);

    let svc = defs()
        .for_gvk(&GroupVersionKind::new("", "v1", "Service"))
        .expect("service");
    let ports = svc.at("spec.ports").expect("ports").patch_meta();
    assert_eq!(ports.merge_key.as_deref(), Some("port"));
    assert_eq!(ports.list_map_keys, ["port", "protocol"]);

    let dep = defs()
        .for_gvk(&GroupVersionKind::new("apps", "v1", "Deployment"))
        .expect("deployment");
    let strategy = dep.at("spec.strategy").expect("strategy").patch_meta();
    assert!(strategy.strategy.retain_keys && !strategy.strategy.merge);
    assert_eq!(
        PatchStrategy::parse("replace"),
        PatchStrategy {
            replace: true,
            ..PatchStrategy::default()
        }
    );
}

fn resources() -> Vec<ResourceDescriptor> {
    vec![
        ResourceDescriptor::new("apps", "v1", "Deployment", "deployments", true).scale(),
        ResourceDescriptor::new("", "v1", "Pod", "pods", true),
        ResourceDescriptor::new("", "v1", "Namespace", "namespaces", false),
    ]
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

fn all_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref"
                    && let Value::String(s) = x
                {
                    out.push(s.clone());
                } else {
                    all_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| all_refs(x, out)),
        _ => {}
    }
}

#[test]
fn v3_root_points_at_group_version_documents_by_hash() {
    let docs = OpenApiDocuments::new(defs(), &resources()).expect("render");
    let root = parse(&docs.v3_root().body);
    let paths = root["paths"].as_object().expect("paths");
    assert_eq!(paths.keys().collect::<Vec<_>>(), ["api/v1", "apis/apps/v1"]);
    let apps = docs.v3_group_version("apis/apps/v1").expect("apps doc");
    assert_eq!(
        paths["apis/apps/v1"]["serverRelativeURL"],
        format!("/openapi/v3/apis/apps/v1?hash={}", apps.hash)
    );
    // Served through `serve` with the same bytes.
    let r = docs
        .serve(
            "/openapi/v3/apis/apps/v1",
            Some(&format!("hash={}", apps.hash)),
            Some("application/json"),
        )
        .expect("serve")
        .expect("found");
    assert_eq!(r.body, apps.body);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(r.cache_control, "public, immutable");
    assert!(
        docs.serve("/openapi/v3/apis/nope/v1", None, None)
            .expect("serve")
            .is_none()
    );

    // The hash follows the content.
    let fewer = OpenApiDocuments::new(
        defs(),
        &[ResourceDescriptor::new(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
        )],
    )
    .expect("render");
    let other = fewer.v3_group_version("apis/apps/v1").expect("apps doc");
    assert_ne!(other.hash, apps.hash);
}

#[test]
fn v3_group_version_document_has_patch_operations_and_converted_schemas() {
    let docs = OpenApiDocuments::new(defs(), &resources()).expect("render");
    let doc = parse(&docs.v3_group_version("apis/apps/v1").expect("doc").body);
    assert_eq!(doc["openapi"], "3.0.0");
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        serde_json::json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    let content = patch["requestBody"]["content"]
        .as_object()
        .expect("content");
    for t in [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ] {
        assert_eq!(
            content[t]["schema"]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
        );
    }
    let params: Vec<&str> = patch["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for p in [
        "name",
        "namespace",
        "fieldValidation",
        "fieldManager",
        "dryRun",
        "force",
    ] {
        assert!(params.contains(&p), "{p} in {params:?}");
    }
    assert_eq!(item["get"]["x-kubernetes-action"], "get");
    assert_eq!(item["put"]["x-kubernetes-action"], "put");
    assert_eq!(item["delete"]["x-kubernetes-action"], "delete");
    let coll = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert_eq!(coll["get"]["x-kubernetes-action"], "list");
    assert_eq!(coll["post"]["x-kubernetes-action"], "post");
    assert_eq!(
        coll["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentList"
    );
    let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"]["kind"],
        "Scale"
    );
    assert!(doc["paths"]["/apis/apps/v1/deployments"]["get"].is_object());

    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let dep = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(dep["type"], "object");
    assert_eq!(
        dep["x-kubernetes-group-version-kind"][0]["kind"],
        "Deployment"
    );
    assert!(dep["properties"]["apiVersion"].get("enum").is_none());
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(
        schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
        "int-or-string"
    );
    assert!(schemas.contains_key("io.k8s.api.autoscaling.v1.Scale"));
    assert!(!schemas.contains_key("io.k8s.api.batch.v1.Job"));

    // Every reference points into components.schemas; no nullable types.
    let mut refs = Vec::new();
    all_refs(&doc, &mut refs);
    for r in &refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("bad ref {r}"));
        assert!(schemas.contains_key(name), "dangling {r}");
    }
    let text = String::from_utf8(
        docs.v3_group_version("apis/apps/v1")
            .expect("doc")
            .body
            .to_vec(),
    )
    .expect("utf-8");
    assert!(!text.contains("\"null\""));
    assert!(!text.contains("#/$defs/"));
}

#[test]
fn v2_json_and_protobuf_answers() {
    let docs = OpenApiDocuments::new(defs(), &resources()).expect("render");
    let pb = docs
        .serve(
            "/openapi/v2",
            None,
            Some("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
        )
        .expect("serve")
        .expect("found");
    assert_eq!(pb.content_type, V2_PROTOBUF_CONTENT_TYPE);
    assert!(pb.body.is_empty());

    let js = docs
        .serve("/openapi/v2", None, Some("application/json"))
        .expect("serve")
        .expect("found");
    assert_eq!(js.content_type, "application/json");
    let doc = parse(&js.body);
    assert_eq!(doc["swagger"], "2.0");
    let definitions = doc["definitions"].as_object().expect("definitions");
    assert_eq!(definitions.len(), 707);
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert!(
        patch["consumes"]
            .as_array()
            .expect("consumes")
            .iter()
            .any(|c| c == "application/strategic-merge-patch+json")
    );
    let mut refs = Vec::new();
    all_refs(&doc, &mut refs);
    for r in &refs {
        let name = r
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("bad ref {r}"));
        assert!(definitions.contains_key(name), "dangling {r}");
    }
}

#[test]
fn unknown_kind_is_an_error() {
    let err = OpenApiDocuments::new(
        defs(),
        &[ResourceDescriptor::new(
            "example.com",
            "v1",
            "Widget",
            "widgets",
            true,
        )],
    )
    .expect_err("no such kind");
    assert!(
        err.to_string().contains("example.com/v1, Kind=Widget"),
        "{err}"
    );
}
