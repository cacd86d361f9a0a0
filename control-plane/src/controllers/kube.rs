//! [`ClusterApi`] over the real client,
//! [`cairn_cluster::client::KubeClient`], and the watches that wake the
//! controllers up.
//!
//! Each watched resource gets one thread running list → watch from the
//! list's resourceVersion → re-watch from the last seen version when the
//! server ends the stream → re-list after an error (410 Gone included),
//! with a short backoff. Watch events only *wake* controllers: every pass
//! reads the full current state, so a missed or duplicated event can never
//! make a controller act on stale data, and a periodic resync covers the
//! time a watch is down.

use std::sync::Arc;
use std::time::Duration;

use cairn_cluster::client::{Error as ClientError, KubeClient, ListParams, WatchEvent};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

use super::api::{
    ApiError, ApiErrorKind, ApiResource, ClusterApi, MetadataUpdate, Propagation, Watched,
};
use super::bootstrapsigner::CLUSTER_INFO_NAMESPACE;
use super::runner::Events;
use super::tokens::SYSTEM_NAMESPACE;

/// How long one watch request lasts before the server ends it.
const WATCH_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause after a failed list or watch before trying again.
const WATCH_BACKOFF: Duration = Duration::from_secs(2);

fn convert(operation: String, error: ClientError) -> ApiError {
    let kind = if error.is_not_found() {
        ApiErrorKind::NotFound
    } else if error.status() == Some(409) {
        ApiErrorKind::Conflict
    } else {
        ApiErrorKind::Other
    };
    ApiError::new(kind, operation, error.to_string())
}

/// How many objects one page of a metadata list holds.
const LIST_PAGE: usize = 500;

/// `/api/v1` or `/apis/<group>/<version>`.
fn group_version_path(resource: &ApiResource) -> String {
    if resource.group.is_empty() {
        format!("/api/{}", resource.version)
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    }
}

/// The path of one object of `resource`.
fn generic_object_path(resource: &ApiResource, namespace: &str, name: &str) -> String {
    if resource.namespaced {
        format!(
            "{}/namespaces/{namespace}/{}/{name}",
            group_version_path(resource),
            resource.plural
        )
    } else {
        format!(
            "{}/{}/{name}",
            group_version_path(resource),
            resource.plural
        )
    }
}

/// Percent-encodes a query value (continue tokens are base64).
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The kind of failure an HTTP status means.
fn status_kind(status: u16) -> ApiErrorKind {
    match status {
        404 => ApiErrorKind::NotFound,
        409 => ApiErrorKind::Conflict,
        _ => ApiErrorKind::Other,
    }
}

/// The `message` of a Status answer, or the start of the body.
fn answer_message(answer: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(answer).chars().take(200).collect())
}

/// One page of a list, metadata only.
#[derive(serde::Deserialize)]
struct MetadataList {
    #[serde(default)]
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta,
    #[serde(default)]
    items: Vec<MetadataOnly>,
}

#[derive(serde::Deserialize)]
struct MetadataOnly {
    #[serde(default)]
    metadata: ObjectMeta,
}

/// The controller manager's view of the API server.
#[derive(Debug, Clone)]
pub struct KubeApi {
    client: KubeClient,
}

impl KubeApi {
    pub fn new(client: KubeClient) -> Self {
        Self { client }
    }
}

fn object_name<T>(name: &Option<T>) -> &str
where
    T: AsRef<str>,
{
    name.as_ref().map_or("", AsRef::as_ref)
}

impl KubeApi {
    /// A request whose 2xx answer is decoded as JSON `T`; other statuses
    /// become errors of their kind.
    fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        operation: &str,
    ) -> Result<T, ApiError> {
        let (status, answer) = self
            .client
            .request(method, path, body)
            .map_err(|e| convert(operation.to_owned(), e))?;
        if !(200..300).contains(&status) {
            return Err(ApiError::new(
                status_kind(status),
                operation,
                format!("{status}: {}", answer_message(&answer)),
            ));
        }
        serde_json::from_slice(&answer).map_err(|e| {
            ApiError::new(
                ApiErrorKind::Other,
                operation,
                format!("undecodable answer: {e}"),
            )
        })
    }

    /// The listable, deletable resources of one group version.
    fn resources_of(&self, group: &str, group_version: &str) -> Result<Vec<ApiResource>, ApiError> {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
        let path = if group.is_empty() {
            format!("/api/{group_version}")
        } else {
            format!("/apis/{group_version}")
        };
        let list: APIResourceList =
            self.json("GET", &path, None, &format!("discover {group_version}"))?;
        let version = group_version.rsplit('/').next().unwrap_or(group_version);
        Ok(list
            .resources
            .into_iter()
            .filter(|r| {
                !r.name.contains('/')
                    && ["list", "get", "delete"]
                        .iter()
                        .all(|verb| r.verbs.iter().any(|v| v == verb))
            })
            .map(|r| ApiResource {
                group: group.to_owned(),
                version: version.to_owned(),
                kind: r.kind,
                plural: r.name,
                namespaced: r.namespaced,
            })
            .collect())
    }
}

impl ClusterApi for KubeApi {
    fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>, ApiError> {
        self.client
            .list::<Secret>(Some(namespace), &ListParams::default())
            .map(|list| list.items)
            .map_err(|e| convert(format!("list secrets in {namespace}"), e))
    }

    fn delete_secret(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ApiError> {
        let operation = format!("delete secret {namespace}/{name}");
        let path = cairn_cluster::client::object_path::<Secret>(Some(namespace), name);
        let mut options = serde_json::json!({"apiVersion": "v1", "kind": "DeleteOptions"});
        if let Some(uid) = uid {
            options["preconditions"] = serde_json::json!({"uid": uid});
        }
        let body = serde_json::to_vec(&options)
            .map_err(|e| ApiError::new(ApiErrorKind::Other, operation.clone(), e.to_string()))?;
        let (status, answer) = self
            .client
            .request("DELETE", &path, Some(&body))
            .map_err(|e| convert(operation.clone(), e))?;
        let kind = match status {
            200..=299 => return Ok(()),
            404 => ApiErrorKind::NotFound,
            409 => ApiErrorKind::Conflict,
            _ => ApiErrorKind::Other,
        };
        let message = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&answer).chars().take(200).collect());
        Err(ApiError::new(
            kind,
            operation,
            format!("{status}: {message}"),
        ))
    }

    fn get_config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError> {
        self.client
            .get_opt::<ConfigMap>(Some(namespace), name)
            .map_err(|e| convert(format!("get configmap {namespace}/{name}"), e))
    }

    fn replace_config_map(&self, config_map: &ConfigMap) -> Result<ConfigMap, ApiError> {
        let namespace = object_name(&config_map.metadata.namespace);
        let name = object_name(&config_map.metadata.name);
        self.client
            .replace(Some(namespace), name, config_map)
            .map_err(|e| convert(format!("update configmap {namespace}/{name}"), e))
    }

    fn list_csrs(&self) -> Result<Vec<CertificateSigningRequest>, ApiError> {
        self.client
            .list::<CertificateSigningRequest>(None, &ListParams::default())
            .map(|list| list.items)
            .map_err(|e| convert("list certificatesigningrequests".into(), e))
    }

    fn replace_csr_approval(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest, ApiError> {
        let name = object_name(&csr.metadata.name);
        self.client
            .replace_subresource(None, name, Some("approval"), csr)
            .map_err(|e| convert(format!("approve certificatesigningrequest {name}"), e))
    }

    fn replace_csr_status(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest, ApiError> {
        let name = object_name(&csr.metadata.name);
        self.client.replace_status(None, name, csr).map_err(|e| {
            convert(
                format!("update status of certificatesigningrequest {name}"),
                e,
            )
        })
    }

    fn create_subject_access_review(
        &self,
        review: &SubjectAccessReview,
    ) -> Result<SubjectAccessReview, ApiError> {
        self.client
            .create(None, review)
            .map_err(|e| convert("create subjectaccessreview".into(), e))
    }

    fn get_lease(&self, namespace: &str, name: &str) -> Result<Option<Lease>, ApiError> {
        self.client
            .get_opt::<Lease>(Some(namespace), name)
            .map_err(|e| convert(format!("get lease {namespace}/{name}"), e))
    }

    fn create_lease(&self, lease: &Lease) -> Result<Lease, ApiError> {
        let namespace = object_name(&lease.metadata.namespace);
        self.client.create(Some(namespace), lease).map_err(|e| {
            convert(
                format!(
                    "create lease {namespace}/{}",
                    object_name(&lease.metadata.name)
                ),
                e,
            )
        })
    }

    fn replace_lease(&self, lease: &Lease) -> Result<Lease, ApiError> {
        let namespace = object_name(&lease.metadata.namespace);
        let name = object_name(&lease.metadata.name);
        self.client
            .replace(Some(namespace), name, lease)
            .map_err(|e| convert(format!("update lease {namespace}/{name}"), e))
    }

    fn discover_resources(&self) -> Result<Vec<ApiResource>, ApiError> {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList;
        let mut resources = self.resources_of("", "v1")?;
        let groups: APIGroupList = self.json("GET", "/apis", None, "discover /apis")?;
        for group in groups.groups {
            let Some(preferred) = group
                .preferred_version
                .map(|v| v.group_version)
                .or_else(|| group.versions.first().map(|v| v.group_version.clone()))
            else {
                continue;
            };
            resources.extend(self.resources_of(&group.name, &preferred)?);
        }
        Ok(resources)
    }

    fn list_metadata(&self, resource: &ApiResource) -> Result<Vec<ObjectMeta>, ApiError> {
        let operation = format!("list {}", resource.plural);
        let collection = format!("{}/{}", group_version_path(resource), resource.plural);
        let mut items = Vec::new();
        let mut continue_token = String::new();
        loop {
            let mut path = format!("{collection}?limit={LIST_PAGE}");
            if !continue_token.is_empty() {
                path.push_str("&continue=");
                path.push_str(&query_escape(&continue_token));
            }
            let page: MetadataList = self.json("GET", &path, None, &operation)?;
            items.extend(page.items.into_iter().map(|i| i.metadata));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(next) => continue_token = next,
                None => return Ok(items),
            }
        }
    }

    fn get_metadata(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, ApiError> {
        let path = generic_object_path(resource, namespace, name);
        match self.json::<MetadataOnly>("GET", &path, None, &format!("get {path}")) {
            Ok(object) => Ok(Some(object.metadata)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn update_metadata(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        update: &MetadataUpdate,
    ) -> Result<(), ApiError> {
        // GET then PUT of the whole object: the PUT carries the
        // resourceVersion, so a concurrent write makes it a 409.
        let path = generic_object_path(resource, namespace, name);
        let operation = format!("update {path}");
        let mut object: serde_json::Value = self.json("GET", &path, None, &operation)?;
        let current = object
            .pointer("/metadata/resourceVersion")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        if current != update.resource_version {
            return Err(ApiError::new(
                ApiErrorKind::Conflict,
                operation,
                format!(
                    "resourceVersion is {current}, not {}",
                    update.resource_version
                ),
            ));
        }
        let encode = |e: serde_json::Error| {
            ApiError::new(ApiErrorKind::Other, operation.clone(), e.to_string())
        };
        let Some(metadata) = object
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut)
        else {
            return Err(ApiError::new(
                ApiErrorKind::Other,
                operation,
                "the object has no metadata",
            ));
        };
        if let Some(finalizers) = &update.finalizers {
            if finalizers.is_empty() {
                metadata.remove("finalizers");
            } else {
                metadata.insert(
                    "finalizers".into(),
                    serde_json::to_value(finalizers).map_err(encode)?,
                );
            }
        }
        if let Some(references) = &update.owner_references {
            if references.is_empty() {
                metadata.remove("ownerReferences");
            } else {
                metadata.insert(
                    "ownerReferences".into(),
                    serde_json::to_value(references).map_err(encode)?,
                );
            }
        }
        let body = serde_json::to_vec(&object).map_err(encode)?;
        self.json::<serde_json::Value>("PUT", &path, Some(&body), &operation)
            .map(|_| ())
    }

    fn delete_object(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        uid: &str,
        propagation: Propagation,
    ) -> Result<(), ApiError> {
        let path = generic_object_path(resource, namespace, name);
        let options = serde_json::json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": propagation.as_str(),
            "preconditions": {"uid": uid},
        });
        let body = serde_json::to_vec(&options).map_err(|e| {
            ApiError::new(ApiErrorKind::Other, format!("delete {path}"), e.to_string())
        })?;
        self.json::<serde_json::Value>("DELETE", &path, Some(&body), &format!("delete {path}"))
            .map(|_| ())
    }
}

/// Starts the watch thread for `watched`; it runs until `events` is
/// stopped (checked between requests; the process does not wait for a
/// watch that is blocked reading).
pub fn spawn_watch(
    client: KubeClient,
    watched: Watched,
    events: Arc<Events>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("watch-{watched:?}"))
        .spawn(move || match watched {
            Watched::SystemSecrets => {
                watch_loop::<Secret>(&client, Some(SYSTEM_NAMESPACE), watched, &events)
            }
            Watched::PublicConfigMaps => {
                watch_loop::<ConfigMap>(&client, Some(CLUSTER_INFO_NAMESPACE), watched, &events);
            }
            Watched::CertificateSigningRequests => {
                watch_loop::<CertificateSigningRequest>(&client, None, watched, &events);
            }
            Watched::Deployments => watch_loop::<Deployment>(&client, None, watched, &events),
            Watched::ReplicaSets => watch_loop::<ReplicaSet>(&client, None, watched, &events),
            Watched::Pods => watch_loop::<Pod>(&client, None, watched, &events),
        })
        .map(|_| ())
}

fn watch_loop<K>(client: &KubeClient, namespace: Option<&str>, watched: Watched, events: &Events)
where
    K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta> + DeserializeOwned,
{
    let mut reported = None::<String>;
    let mut report = |message: String| {
        // One line per distinct failure, not one per retry.
        if reported.as_deref() != Some(message.as_str()) {
            tracing::warn!(watch = ?watched, "{message}; retrying (controllers still resync periodically)");
            reported = Some(message);
        }
    };
    while !events.is_stopped() {
        let mut version = match client.list::<K>(namespace, &ListParams::default()) {
            Ok(list) => list.resource_version,
            Err(e) => {
                report(format!("list {}: {e}", K::KIND));
                events.sleep(WATCH_BACKOFF);
                continue;
            }
        };
        // Whatever happened while no watch was open is picked up now.
        events.notify(watched);
        'watching: while !events.is_stopped() {
            let stream =
                match client.watch::<K>(namespace, &ListParams::default(), &version, WATCH_TIMEOUT)
                {
                    Ok(stream) => stream,
                    Err(e) => {
                        report(format!("watch {}: {e}", K::KIND));
                        events.sleep(WATCH_BACKOFF);
                        break 'watching;
                    }
                };
            for event in stream {
                if events.is_stopped() {
                    return;
                }
                match event {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)) => {
                        if let Some(v) =
                            k8s_openapi::Metadata::metadata(&o).resource_version.clone()
                        {
                            version = v;
                        }
                        events.notify(watched);
                    }
                    Ok(WatchEvent::Bookmark {
                        resource_version, ..
                    }) => version = resource_version,
                    Ok(WatchEvent::ErrorStatus(status)) => {
                        // 410 Gone (compacted) or anything else: re-list.
                        report(format!(
                            "watch {} ended: {} {}",
                            K::KIND,
                            status.code.unwrap_or_default(),
                            status.message.unwrap_or_default()
                        ));
                        events.sleep(WATCH_BACKOFF);
                        break 'watching;
                    }
                    Ok(WatchEvent::ErrorOther(_)) | Err(_) => {
                        report(format!("watch {} broke", K::KIND));
                        events.sleep(WATCH_BACKOFF);
                        break 'watching;
                    }
                }
            }
        }
    }
}
