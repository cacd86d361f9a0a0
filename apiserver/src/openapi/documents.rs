//! The OpenAPI documents kubectl downloads: `/openapi/v3` (root and one
//! document per group-version) and `/openapi/v2`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::OpenApiError;
use super::convert::{Flavor, convert_definition};
use super::definitions::{Definitions, EMBEDDED_KUBERNETES_VERSION, GroupVersionKind};

/// Content type of `/openapi/v3` and its group-version documents.
pub const V3_CONTENT_TYPE: &str = "application/json";
/// Content type of the JSON Swagger 2.0 document.
pub const V2_JSON_CONTENT_TYPE: &str = "application/json";
/// The protobuf media type kubectl 1.27/1.28 ask for in `Accept`
/// (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).
pub const V2_PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2";
/// Content type answered for the protobuf v2 request. It must be a valid
/// MIME type: the `@` form of the Accept value makes Go's mime parser fail.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

pub use crate::resources::{ResourceDescriptor, SubresourceDescriptor};

/// `api/v1` for the core group, else `apis/<group>/<version>`.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// One rendered document and its content hash.
#[derive(Clone, Debug)]
pub struct RenderedDocument {
    /// The JSON bytes.
    pub body: Arc<[u8]>,
    /// Upper-case hex sha256 of `body`; changes whenever the content does.
    pub hash: String,
}

impl RenderedDocument {
    fn new(value: &Value) -> Result<Self, OpenApiError> {
        let body = serde_json::to_vec(value).map_err(|e| OpenApiError::Render {
            message: e.to_string(),
        })?;
        let hash = hex::encode_upper(Sha256::digest(&body));
        Ok(Self {
            body: body.into(),
            hash,
        })
    }
}

/// An answer for an `/openapi/...` request.
#[derive(Clone, Debug)]
pub struct OpenApiResponse {
    /// HTTP status (200).
    pub status: u16,
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// `Cache-Control` header.
    pub cache_control: &'static str,
    /// Body bytes.
    pub body: Arc<[u8]>,
}

/// The rendered OpenAPI documents for a set of resources. Group-version
/// documents and the root are rendered when built; the v2 document on
/// first use. All are kept.
#[derive(Debug)]
pub struct OpenApiDocuments {
    defs: &'static Definitions,
    resources: Vec<ResourceDescriptor>,
    root: RenderedDocument,
    group_versions: BTreeMap<String, RenderedDocument>,
    v2: OnceLock<Result<RenderedDocument, OpenApiError>>,
}

impl OpenApiDocuments {
    /// Renders the documents for `resources`. Fails if a kind (or a
    /// subresource's kind) has no definition.
    pub fn new(
        defs: &'static Definitions,
        resources: &[ResourceDescriptor],
    ) -> Result<Self, OpenApiError> {
        let mut by_gv: BTreeMap<String, Vec<&ResourceDescriptor>> = BTreeMap::new();
        for r in resources {
            by_gv.entry(r.group_version_path()).or_default().push(r);
        }
        let mut group_versions = BTreeMap::new();
        for (gv, list) in &by_gv {
            let doc = render_v3_group_version(defs, list)?;
            group_versions.insert(gv.clone(), RenderedDocument::new(&doc)?);
        }
        let paths: Map<String, Value> = group_versions
            .iter()
            .map(|(gv, doc)| {
                (
                    gv.clone(),
                    json!({ "serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", doc.hash) }),
                )
            })
            .collect();
        let root = RenderedDocument::new(&json!({ "paths": paths }))?;
        Ok(Self {
            defs,
            resources: resources.to_vec(),
            root,
            group_versions,
            v2: OnceLock::new(),
        })
    }

    /// The `/openapi/v3` root: `{"paths": {"apis/apps/v1":
    /// {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=..."}}}`.
    pub fn v3_root(&self) -> &RenderedDocument {
        &self.root
    }

    /// A group-version document by its root key (`api/v1`,
    /// `apis/apps/v1`).
    pub fn v3_group_version(&self, group_version_path: &str) -> Option<&RenderedDocument> {
        self.group_versions.get(group_version_path)
    }

    /// The group-version keys served.
    pub fn group_version_paths(&self) -> impl Iterator<Item = &str> {
        self.group_versions.keys().map(String::as_str)
    }

    /// The Swagger 2.0 JSON document: every definition plus the paths of
    /// the resources.
    pub fn v2(&self) -> Result<&RenderedDocument, OpenApiError> {
        self.v2
            .get_or_init(|| RenderedDocument::new(&render_v2(self.defs, &self.resources)))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Answers `GET path?query` with the given `Accept` header, or `None`
    /// when the path is not an OpenAPI document (the caller answers 404).
    ///
    /// `/openapi/v2` with a protobuf Accept (kubectl 1.27/1.28) gets an
    /// empty body with [`V2_PROTOBUF_CONTENT_TYPE`]: an empty protobuf
    /// message is a valid empty Document, which those kubectl versions
    /// accept (they then fall back to their compiled-in patch metadata).
    /// Any other Accept gets the JSON document.
    pub fn serve(
        &self,
        path: &str,
        query: Option<&str>,
        accept: Option<&str>,
    ) -> Result<Option<OpenApiResponse>, OpenApiError> {
        let path = path.trim_end_matches('/');
        if path == "/openapi/v3" {
            return Ok(Some(OpenApiResponse {
                status: 200,
                content_type: V3_CONTENT_TYPE,
                cache_control: "no-cache, private",
                body: self.root.body.clone(),
            }));
        }
        if let Some(gv) = path.strip_prefix("/openapi/v3/") {
            let Some(doc) = self.group_versions.get(gv) else {
                return Ok(None);
            };
            let hash_matches = query
                .unwrap_or("")
                .split('&')
                .any(|kv| kv.strip_prefix("hash=") == Some(doc.hash.as_str()));
            return Ok(Some(OpenApiResponse {
                status: 200,
                content_type: V3_CONTENT_TYPE,
                cache_control: if hash_matches {
                    "public, immutable"
                } else {
                    "no-cache, private"
                },
                body: doc.body.clone(),
            }));
        }
        if path == "/openapi/v2" {
            let wants_protobuf = accept.is_some_and(|a| {
                a.split(',')
                    .next()
                    .is_some_and(|first| first.trim().starts_with(V2_PROTOBUF_ACCEPT))
            });
            if wants_protobuf {
                return Ok(Some(OpenApiResponse {
                    status: 200,
                    content_type: V2_PROTOBUF_CONTENT_TYPE,
                    cache_control: "no-cache, private",
                    body: Arc::from(&[][..]),
                }));
            }
            return Ok(Some(OpenApiResponse {
                status: 200,
                content_type: V2_JSON_CONTENT_TYPE,
                cache_control: "no-cache, private",
                body: self.v2()?.body.clone(),
            }));
        }
        Ok(None)
    }
}

/// Definition name of a GVK, or an error naming it.
fn kind_definition<'d>(
    defs: &'d Definitions,
    gvk: &GroupVersionKind,
) -> Result<&'d str, OpenApiError> {
    defs.name_for_gvk(gvk)
        .ok_or_else(|| OpenApiError::UnknownKind { gvk: gvk.clone() })
}

/// `<Kind>List` next to the kind's definition, when it exists.
fn list_definition(defs: &Definitions, kind_def: &str) -> Option<String> {
    let name = format!("{kind_def}List");
    defs.raw(&name).is_some().then_some(name)
}

/// The definitions a group-version document needs at its roots.
fn schema_roots(
    defs: &Definitions,
    resources: &[&ResourceDescriptor],
) -> Result<Vec<String>, OpenApiError> {
    let mut roots: Vec<String> = ["Patch", "DeleteOptions", "Status"]
        .iter()
        .map(|k| format!("{META}.{k}"))
        .collect();
    for r in resources {
        let kind_def = kind_definition(defs, &r.gvk())?;
        roots.push(kind_def.to_owned());
        roots.extend(list_definition(defs, kind_def));
        for s in &r.subresources {
            roots.push(kind_definition(defs, &s.gvk(r))?.to_owned());
        }
    }
    Ok(roots)
}

fn render_v3_group_version(
    defs: &Definitions,
    resources: &[&ResourceDescriptor],
) -> Result<Value, OpenApiError> {
    let roots = schema_roots(defs, resources)?;
    let mut schemas = Map::new();
    for name in defs.closure(roots.iter().map(String::as_str)) {
        if let Some(raw) = defs.raw(&name) {
            schemas.insert(name.clone(), convert_definition(&name, raw, Flavor::V3));
        }
    }
    let mut paths = Map::new();
    for r in resources {
        add_resource_paths(defs, r, Flavor::V3, &mut paths)?;
    }
    Ok(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": EMBEDDED_KUBERNETES_VERSION },
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}

fn render_v2(defs: &Definitions, resources: &[ResourceDescriptor]) -> Value {
    let definitions: Map<String, Value> = defs
        .names()
        .filter_map(|name| {
            defs.raw(name)
                .map(|raw| (name.to_owned(), convert_definition(name, raw, Flavor::V2)))
        })
        .collect();
    let mut paths = Map::new();
    for r in resources {
        // A resource whose kind has no definition is left out of v2 (v3
        // rendering already reported it).
        let _ = add_resource_paths(defs, r, Flavor::V2, &mut paths);
    }
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": EMBEDDED_KUBERNETES_VERSION },
        "paths": paths,
        "definitions": definitions,
    })
}

/// `Apps`, `Core`, `RbacAuthorization`: the group part of operation ids.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .map(capitalize)
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// What one operation does, for building its JSON.
struct Operation<'a> {
    method: &'static str,
    action: &'static str,
    id_verb: &'static str,
    description: String,
    id_suffix: String,
    gvk: &'a GroupVersionKind,
    request: Option<Body>,
    response: Option<String>,
    response_code: &'static str,
    query: &'static [&'static str],
    path_params: &'a [&'static str],
}

#[derive(Clone, Copy)]
enum Body {
    Object,
    Patch,
    DeleteOptions,
}

const OBJECT_TYPES: [&str; 3] = [
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
const WRITE_QUERY: &[&str] = &["pretty", "dryRun", "fieldManager", "fieldValidation"];
const PATCH_QUERY: &[&str] = &[
    "pretty",
    "dryRun",
    "fieldManager",
    "fieldValidation",
    "force",
];
const READ_QUERY: &[&str] = &["pretty"];
const LIST_QUERY: &[&str] = &[
    "pretty",
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const DELETE_QUERY: &[&str] = &[
    "pretty",
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
];

fn query_param(name: &str, flavor: Flavor) -> Value {
    let (ty, description) = match name {
        "pretty" => ("string", "If 'true', then the output is pretty printed."),
        "dryRun" => (
            "string",
            "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
        ),
        "fieldManager" => (
            "string",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        "fieldValidation" => (
            "string",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
        ),
        "force" => (
            "boolean",
            "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.",
        ),
        "limit" | "timeoutSeconds" | "gracePeriodSeconds" => ("integer", ""),
        "allowWatchBookmarks"
        | "sendInitialEvents"
        | "watch"
        | "orphanDependents"
        | "ignoreStoreReadErrorWithClusterBreakingPotential" => ("boolean", ""),
        _ => ("string", ""),
    };
    let mut p = json!({ "name": name, "in": "query", "uniqueItems": true });
    if !description.is_empty() {
        p["description"] = json!(description);
    }
    match flavor {
        Flavor::V3 => p["schema"] = json!({ "type": ty, "uniqueItems": true }),
        Flavor::V2 => p["type"] = json!(ty),
    }
    p
}

fn path_param(name: &str, what: &str, flavor: Flavor) -> Value {
    let description = match name {
        "namespace" => "object name and auth scope, such as for teams and projects".to_owned(),
        _ => format!("name of the {what}"),
    };
    let mut p = json!({
        "name": name,
        "in": "path",
        "required": true,
        "description": description,
        "uniqueItems": true,
    });
    match flavor {
        Flavor::V3 => p["schema"] = json!({ "type": "string", "uniqueItems": true }),
        Flavor::V2 => p["type"] = json!("string"),
    }
    p
}

fn render_operation(op: &Operation<'_>, r: &ResourceDescriptor, flavor: Flavor) -> Value {
    let namespaced = if r.namespaced && op.path_params.contains(&"namespace") {
        "Namespaced"
    } else {
        ""
    };
    let operation_id = format!(
        "{}{}{}{}{}",
        op.id_verb,
        group_camel(&r.group),
        capitalize(&r.version),
        namespaced,
        op.id_suffix,
    );
    let tag = format!(
        "{}_{}",
        if r.group.is_empty() {
            "core".to_owned()
        } else {
            r.group.trim_end_matches(".k8s.io").replace('.', "_")
        },
        r.version
    );
    let mut parameters: Vec<Value> = op
        .path_params
        .iter()
        .map(|p| path_param(p, &r.kind, flavor))
        .collect();
    parameters.extend(op.query.iter().map(|q| query_param(q, flavor)));
    let mut out = json!({
        "tags": [tag],
        "description": op.description,
        "operationId": operation_id,
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": {
            "group": op.gvk.group,
            "version": op.gvk.version,
            "kind": op.gvk.kind,
        },
    });
    let request_schema = op.request.map(|b| match b {
        Body::Object => (
            flavor.reference(&op.response.clone().unwrap_or_default()),
            &OBJECT_TYPES[..],
        ),
        Body::Patch => (flavor.reference(&format!("{META}.Patch")), &PATCH_TYPES[..]),
        Body::DeleteOptions => (
            flavor.reference(&format!("{META}.DeleteOptions")),
            &OBJECT_TYPES[..],
        ),
    });
    let response_types: &[&str] = if op.action == "list" {
        &[
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
            "application/json;stream=watch",
            "application/vnd.kubernetes.protobuf;stream=watch",
        ]
    } else {
        &OBJECT_TYPES
    };
    let response_schema = op.response.as_deref().map(|name| flavor.reference(name));
    match flavor {
        Flavor::V3 => {
            if let Some((schema, types)) = &request_schema {
                let content: Map<String, Value> = types
                    .iter()
                    .map(|t| ((*t).to_owned(), json!({ "schema": schema })))
                    .collect();
                out["requestBody"] = json!({ "content": content, "required": !matches!(op.request, Some(Body::DeleteOptions)) });
            }
            let mut ok = json!({ "description": "OK" });
            if let Some(schema) = &response_schema {
                let content: Map<String, Value> = response_types
                    .iter()
                    .map(|t| ((*t).to_owned(), json!({ "schema": schema })))
                    .collect();
                ok["content"] = Value::Object(content);
            }
            out["responses"] = json!({
                op.response_code: ok,
                "401": { "description": "Unauthorized" },
            });
        }
        Flavor::V2 => {
            if let Some((schema, types)) = &request_schema {
                out["consumes"] = json!(types);
                parameters.push(
                    json!({ "name": "body", "in": "body", "required": true, "schema": schema }),
                );
            } else {
                out["consumes"] = json!(["*/*"]);
            }
            out["produces"] = json!(response_types);
            out["schemes"] = json!(["https"]);
            let mut ok = json!({ "description": "OK" });
            if let Some(schema) = &response_schema {
                ok["schema"] = schema.clone();
            }
            out["responses"] = json!({
                op.response_code: ok,
                "401": { "description": "Unauthorized" },
            });
        }
    }
    out["parameters"] = Value::Array(parameters);
    out
}

/// An operation on one object (or one of its subresources).
struct ItemVerb {
    verb: &'static str,
    method: &'static str,
    action: &'static str,
    id_verb: &'static str,
    describe: &'static str,
    body: Option<Body>,
    query: &'static [&'static str],
}

const ITEM_VERBS: [ItemVerb; 4] = [
    ItemVerb {
        verb: "get",
        method: "get",
        action: "get",
        id_verb: "read",
        describe: "read the specified",
        body: None,
        query: READ_QUERY,
    },
    ItemVerb {
        verb: "update",
        method: "put",
        action: "put",
        id_verb: "replace",
        describe: "replace the specified",
        body: Some(Body::Object),
        query: WRITE_QUERY,
    },
    ItemVerb {
        verb: "patch",
        method: "patch",
        action: "patch",
        id_verb: "patch",
        describe: "partially update the specified",
        body: Some(Body::Patch),
        query: PATCH_QUERY,
    },
    ItemVerb {
        verb: "delete",
        method: "delete",
        action: "delete",
        id_verb: "delete",
        describe: "delete a",
        body: Some(Body::DeleteOptions),
        query: DELETE_QUERY,
    },
];

const SUBRESOURCE_VERBS: [ItemVerb; 4] = [
    ItemVerb {
        verb: "get",
        method: "get",
        action: "get",
        id_verb: "read",
        describe: "read",
        body: None,
        query: READ_QUERY,
    },
    ItemVerb {
        verb: "update",
        method: "put",
        action: "put",
        id_verb: "replace",
        describe: "replace",
        body: Some(Body::Object),
        query: WRITE_QUERY,
    },
    ItemVerb {
        verb: "patch",
        method: "patch",
        action: "patch",
        id_verb: "patch",
        describe: "partially update",
        body: Some(Body::Patch),
        query: PATCH_QUERY,
    },
    ItemVerb {
        verb: "create",
        method: "post",
        action: "post",
        id_verb: "create",
        describe: "create",
        body: Some(Body::Object),
        query: WRITE_QUERY,
    },
];

/// Adds the collection, item and subresource paths of one resource.
fn add_resource_paths(
    defs: &Definitions,
    r: &ResourceDescriptor,
    flavor: Flavor,
    paths: &mut Map<String, Value>,
) -> Result<(), OpenApiError> {
    let gvk = r.gvk();
    let kind_def = kind_definition(defs, &gvk)?.to_owned();
    let list_def = list_definition(defs, &kind_def);
    let prefix = format!("/{}", r.group_version_path());
    let (collection, item, ns_params, item_params): (String, String, &[&str], &[&str]) =
        if r.namespaced {
            (
                format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
                format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
                &["namespace"],
                &["name", "namespace"],
            )
        } else {
            (
                format!("{prefix}/{}", r.plural),
                format!("{prefix}/{}/{{name}}", r.plural),
                &[],
                &["name"],
            )
        };
    let kind = &r.kind;
    let mut insert = |path: &str, op: Operation<'_>| {
        let rendered = render_operation(&op, r, flavor);
        let entry = paths
            .entry(path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(op.method.to_owned(), rendered);
        }
    };
    let obj = Some(kind_def.clone());
    if r.has("list") {
        insert(
            &collection,
            Operation {
                method: "get",
                action: "list",
                id_verb: "list",
                description: format!("list or watch objects of kind {kind}"),
                id_suffix: kind.clone(),
                gvk: &gvk,
                request: None,
                response: list_def.clone(),
                response_code: "200",
                query: LIST_QUERY,
                path_params: ns_params,
            },
        );
        if r.namespaced {
            insert(
                &format!("{prefix}/{}", r.plural),
                Operation {
                    method: "get",
                    action: "list",
                    id_verb: "list",
                    description: format!("list or watch objects of kind {kind}"),
                    id_suffix: format!("{kind}ForAllNamespaces"),
                    gvk: &gvk,
                    request: None,
                    response: list_def.clone(),
                    response_code: "200",
                    query: LIST_QUERY,
                    path_params: &[],
                },
            );
        }
    }
    if r.has("create") {
        insert(
            &collection,
            Operation {
                method: "post",
                action: "post",
                id_verb: "create",
                description: format!("create a {kind}"),
                id_suffix: kind.clone(),
                gvk: &gvk,
                request: Some(Body::Object),
                response: obj.clone(),
                response_code: "201",
                query: WRITE_QUERY,
                path_params: ns_params,
            },
        );
    }
    if r.has("deletecollection") {
        insert(
            &collection,
            Operation {
                method: "delete",
                action: "deletecollection",
                id_verb: "deleteCollection",
                description: format!("delete collection of {kind}"),
                id_suffix: kind.clone(),
                gvk: &gvk,
                request: Some(Body::DeleteOptions),
                response: Some(format!("{META}.Status")),
                response_code: "200",
                query: DELETE_QUERY,
                path_params: ns_params,
            },
        );
    }
    for v in ITEM_VERBS.iter().filter(|v| r.has(v.verb)) {
        let response = match v.body {
            Some(Body::DeleteOptions) => Some(format!("{META}.Status")),
            _ => obj.clone(),
        };
        insert(
            &item,
            Operation {
                method: v.method,
                action: v.action,
                id_verb: v.id_verb,
                description: format!("{} {kind}", v.describe),
                id_suffix: kind.clone(),
                gvk: &gvk,
                request: v.body,
                response,
                response_code: "200",
                query: v.query,
                path_params: item_params,
            },
        );
    }
    for s in &r.subresources {
        let sub_gvk = s.gvk(r);
        let sub_obj = Some(kind_definition(defs, &sub_gvk)?.to_owned());
        let sub_path = format!("{item}/{}", s.name);
        for v in SUBRESOURCE_VERBS
            .iter()
            .filter(|v| s.verbs.iter().any(|x| x == v.verb))
        {
            insert(
                &sub_path,
                Operation {
                    method: v.method,
                    action: v.action,
                    id_verb: v.id_verb,
                    description: format!("{} {} of the specified {kind}", v.describe, s.name),
                    id_suffix: format!("{kind}{}", capitalize(&s.name)),
                    gvk: &sub_gvk,
                    request: v.body,
                    response: sub_obj.clone(),
                    response_code: if v.verb == "create" { "201" } else { "200" },
                    query: v.query,
                    path_params: item_params,
                },
            );
        }
    }
    Ok(())
}
