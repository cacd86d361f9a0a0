//! The few Kubernetes API operations the controllers use, as a trait.
//!
//! Controllers are written against [`ClusterApi`] rather than the HTTP
//! client so their decisions can be unit-tested with an in-memory double;
//! the binary plugs in [`cairn_cluster::client::KubeClient`] (see
//! `kube.rs`). Errors keep only what the controllers branch on: "not
//! found" (the object went away: nothing to do), "conflict" (someone else
//! wrote first: read again and retry) and everything else (log, retry on
//! the next pass).

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// What kind of failure an API call ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 404: the object does not exist (any more).
    NotFound,
    /// 409: a concurrent write won (stale resourceVersion, or the object
    /// already exists on create).
    Conflict,
    /// Anything else: transport, TLS, 403, 5xx, undecodable answers.
    Other,
}

/// A failed API call: which operation on which object, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub operation: String,
    pub message: String,
}

impl ApiError {
    pub fn new(
        kind: ApiErrorKind,
        operation: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation: operation.into(),
            message: message.into(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ApiErrorKind::NotFound
    }

    pub fn is_conflict(&self) -> bool {
        self.kind == ApiErrorKind::Conflict
    }
}

/// The resources whose changes wake a controller up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Watched {
    /// Secrets in `kube-system`.
    SystemSecrets,
    /// ConfigMaps in `kube-public`.
    PublicConfigMaps,
    /// CertificateSigningRequests (cluster-scoped).
    CertificateSigningRequests,
    /// Deployments, all namespaces (the usual owner chain the garbage
    /// collector follows, with ReplicaSets and Pods).
    Deployments,
    /// ReplicaSets, all namespaces.
    ReplicaSets,
    /// Pods, all namespaces.
    Pods,
}

/// A resource the API server serves, as discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiResource {
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
}

impl ApiResource {
    /// `v1` or `group/version`, as objects and owner references name it.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// How a DELETE treats the object's dependents (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Background => "Background",
            Self::Foreground => "Foreground",
            Self::Orphan => "Orphan",
        }
    }
}

/// A compare-and-swap change of an object's metadata: applied only while
/// the object is still at `resource_version` (409 otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataUpdate {
    pub resource_version: String,
    /// The new finalizers, when they change.
    pub finalizers: Option<Vec<String>>,
    /// The new owner references, when they change.
    pub owner_references: Option<Vec<OwnerReference>>,
}

/// The API operations the controllers and the leader election need.
pub trait ClusterApi: Send + Sync {
    fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>, ApiError>;
    /// Deletes a Secret, only if it still has `uid` (a Secret recreated
    /// under the same name in the meantime is left alone).
    fn delete_secret(&self, namespace: &str, name: &str, uid: Option<&str>)
    -> Result<(), ApiError>;
    fn get_config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError>;
    /// Replaces a ConfigMap; its `metadata.resourceVersion` makes this a
    /// compare-and-swap (409 when stale).
    fn replace_config_map(&self, config_map: &ConfigMap) -> Result<ConfigMap, ApiError>;
    fn list_csrs(&self) -> Result<Vec<CertificateSigningRequest>, ApiError>;
    /// PUT `.../certificatesigningrequests/<name>/approval`.
    fn replace_csr_approval(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest, ApiError>;
    /// PUT `.../certificatesigningrequests/<name>/status`.
    fn replace_csr_status(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest, ApiError>;
    fn create_subject_access_review(
        &self,
        review: &SubjectAccessReview,
    ) -> Result<SubjectAccessReview, ApiError>;
    fn get_lease(&self, namespace: &str, name: &str) -> Result<Option<Lease>, ApiError>;
    fn create_lease(&self, lease: &Lease) -> Result<Lease, ApiError>;
    fn replace_lease(&self, lease: &Lease) -> Result<Lease, ApiError>;
    /// Every resource served that can be listed, read and deleted
    /// (subresources excluded).
    fn discover_resources(&self) -> Result<Vec<ApiResource>, ApiError>;
    /// The metadata of every object of `resource`, all namespaces.
    fn list_metadata(&self, resource: &ApiResource) -> Result<Vec<ObjectMeta>, ApiError>;
    /// The metadata of one object (`namespace` is ignored for
    /// cluster-scoped resources); `None` when it does not exist.
    fn get_metadata(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, ApiError>;
    /// Changes finalizers and/or owner references of one object.
    fn update_metadata(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        update: &MetadataUpdate,
    ) -> Result<(), ApiError>;
    /// Deletes one object if it still has `uid`, with `propagation`.
    fn delete_object(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        uid: &str,
        propagation: Propagation,
    ) -> Result<(), ApiError>;
}

/// The current time as the k8s-openapi timestamp type (its `jiff` is built
/// without a clock, so the time comes from the `time` crate).
pub fn timestamp_now() -> k8s_openapi::jiff::Timestamp {
    let now = time::OffsetDateTime::now_utc();
    k8s_openapi::jiff::Timestamp::new(
        now.unix_timestamp(),
        i32::try_from(now.nanosecond()).unwrap_or(0),
    )
    .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}
