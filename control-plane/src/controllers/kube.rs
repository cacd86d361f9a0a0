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
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

use super::api::{ApiError, ApiErrorKind, ClusterApi, Watched};
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
