//! The registry: the [`ApiHandler`] that turns authenticated, authorized
//! API requests into storage operations, generic over the descriptors of
//! [`crate::resources::builtin_resources`].
//!
//! # Request path
//!
//! Every request the HTTP front hands over goes through, in order:
//!
//! 1. authentication ([`Authenticator`]: the verified client certificate
//!    chain, then bootstrap tokens read from stored Secrets, then
//!    service-account JWTs): a presented but bad credential is 401;
//! 2. readiness: while storage fails its health probe, resource requests
//!    get 503 (and `/readyz` reports the `etcd` check failing);
//! 3. authorization ([`RbacAuthorizer`] over roles and bindings held in
//!    memory by [`CachedRbacSource`], listed at startup and kept current by
//!    storage watches, read from storage while not in sync;
//!    `system:masters` always passes): 403 with kube's wording
//!    (`pods is forbidden: User "x" cannot list resource "pods" in API
//!    group "" in the namespace "default"`), or 503 when the roles and
//!    bindings could not be read because storage is down;
//! 4. the verb, in [`objects`] (get, list, watch, create, update, patch,
//!    delete, deletecollection, the status and scale subresources) or
//!    [`reviews`] (access reviews, SelfSubjectReview, TokenReview).
//!
//! # Storage layout
//!
//! Objects are stored as JSON under kube-apiserver's keys:
//! `<prefix>/<resource>/<namespace>/<name>` for namespaced kinds and
//! `<prefix>/<resource>/<name>` for cluster-scoped ones, `<resource>` being
//! the plural, except for the historical names kube keeps (`services/specs`,
//! `services/endpoints`, `minions`). The stored JSON has no
//! `metadata.resourceVersion`: it is the key's `mod_revision`, set on every
//! read, so the two can never disagree. A list's resourceVersion is the
//! revision the list was read at.
//!
//! # Defaulting and validation
//!
//! Per-kind defaulting and validation are behind the [`Admission`] trait;
//! the registry calls [`Admission::default_object`] and
//! [`Admission::validate_object`] on every create and update (and on the
//! result of every patch), after the schema-based field check:
//! `fieldValidation=Strict` refuses unknown fields (400), `Warn` (the
//! default) drops them and names each in a `Warning: 299` header, `Ignore`
//! drops them silently.
//! [`KubernetesAdmission`] (the default) runs [`crate::validation`];
//! [`NoAdmission`] accepts everything.
//!
//! # Services and Jobs
//!
//! Service writes allocate ClusterIPs and nodePorts through
//! [`ServiceAllocators`] (see [`services`]): allocation and the storage
//! write happen under one lock, a conflict with a given value is a 422
//! naming the field, deletes and type changes release. A created Job
//! gets its generated selector and labels
//! ([`crate::validation::prepare_job_selector`]) before validation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde_json::Value;

use crate::auth::{
    Attributes, Authenticator, Credentials, RbacAuthorizer, ServiceAccountVerifier, UserInfo,
};
use crate::http::status::StatusCause;
use crate::http::{ApiError, ApiHandler, ApiResponse, RequestContext, ResourceDescriptor, Verb};
use crate::openapi::{Definitions, GroupVersionKind, OpenApiDocuments, OpenApiError};
use crate::storage::{Storage, StorageError};

pub mod bootstrap;
pub mod deletion;
pub mod fields;
pub mod objects;
pub mod reviews;
pub mod services;
pub mod sources;

pub use services::ServiceAllocators;
pub use sources::{CachedRbacSource, StorageSource};

/// Per-kind defaulting and validation, called on every write.
pub trait Admission: Send + Sync + std::fmt::Debug {
    /// Fills defaults into `object` (a create, or the new state of an update).
    fn default_object(&self, gvk: &GroupVersionKind, object: &mut Value) {
        let _ = (gvk, object);
    }

    /// The problems of `object` (with `old`, the current state, on updates);
    /// any problem makes the write a 422 Invalid.
    fn validate_object(
        &self,
        gvk: &GroupVersionKind,
        object: &Value,
        old: Option<&Value>,
    ) -> Vec<StatusCause> {
        let _ = (gvk, object, old);
        Vec::new()
    }
}

/// Accepts every object as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAdmission;

impl Admission for NoAdmission {}

/// Kubernetes' defaulting and validation per kind ([`crate::validation`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct KubernetesAdmission;

impl Admission for KubernetesAdmission {
    fn default_object(&self, gvk: &GroupVersionKind, object: &mut Value) {
        crate::validation::default_object(gvk, object);
    }

    fn validate_object(
        &self,
        gvk: &GroupVersionKind,
        object: &Value,
        old: Option<&Value>,
    ) -> Vec<StatusCause> {
        crate::validation::validate_object(gvk, object, old)
            .into_iter()
            .map(|e| StatusCause {
                reason: e.reason.as_str().to_owned(),
                message: e.message,
                field: e.field,
            })
            .collect()
    }
}

/// Errors building the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    OpenApi(#[from] OpenApiError),
    #[error("seeding storage: {0}")]
    Seed(#[from] StorageError),
    #[error("service ranges: {0}")]
    ServiceRange(#[from] crate::validation::AllocationError),
}

/// How the registry is set up.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `--etcd-prefix` (`/registry`).
    pub prefix: String,
    pub resources: Vec<ResourceDescriptor>,
    /// Verifies service-account tokens (`--service-account-key-file`).
    pub service_accounts: Option<ServiceAccountVerifier>,
    pub admission: Arc<dyn Admission>,
    /// `--service-cluster-ip-range`.
    pub service_cluster_ip_range: String,
    /// `--service-node-port-range`.
    pub service_node_port_range: String,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            prefix: "/registry".to_owned(),
            resources: crate::resources::builtin_resources(),
            service_accounts: None,
            admission: Arc::new(KubernetesAdmission),
            service_cluster_ip_range: "10.96.0.0/12".to_owned(),
            service_node_port_range: "30000-32767".to_owned(),
        }
    }
}

/// The resource handler behind the HTTP front.
pub struct Registry {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) prefix: String,
    pub(crate) resources: Vec<ResourceDescriptor>,
    pub(crate) definitions: &'static Definitions,
    openapi: OpenApiDocuments,
    pub(crate) authenticator: Authenticator,
    pub(crate) authorizer: RbacAuthorizer,
    pub(crate) admission: Arc<dyn Admission>,
    pub(crate) services: ServiceAllocators,
    healthy: Arc<AtomicBool>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("prefix", &self.prefix)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(storage: Arc<dyn Storage>, options: RegistryOptions) -> Result<Self, RegistryError> {
        let definitions = Definitions::embedded()?;
        let openapi = OpenApiDocuments::new(definitions, &options.resources)?;
        let prefix = options.prefix.trim_end_matches('/').to_owned();
        let services = ServiceAllocators::new(
            &options.service_cluster_ip_range,
            &options.service_node_port_range,
        )?;
        let source = Arc::new(StorageSource::new(storage.clone(), &prefix));
        let mut authenticator = Authenticator::new().with_bootstrap_tokens(source.clone());
        if let Some(verifier) = options.service_accounts {
            authenticator =
                authenticator.with_service_accounts(verifier.with_secret_lookup(source.clone()));
        }
        Ok(Self {
            storage,
            prefix,
            resources: options.resources,
            definitions,
            openapi,
            authenticator,
            authorizer: RbacAuthorizer::new(Arc::new(CachedRbacSource::new((*source).clone()))),
            admission: options.admission,
            services,
            healthy: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The ClusterIP and NodePort allocators ([`services`]).
    pub fn service_allocators(&self) -> &ServiceAllocators {
        &self.services
    }

    /// The flag the health monitor sets; `/readyz` reads it.
    pub fn health_flag(&self) -> Arc<AtomicBool> {
        self.healthy.clone()
    }

    /// Probes storage every `interval`, forever, updating the health flag.
    pub async fn monitor_health(self: Arc<Self>, interval: std::time::Duration) {
        loop {
            let ok = self.storage.health().await.is_ok();
            let was = self.healthy.swap(ok, Ordering::Relaxed);
            if was != ok {
                if ok {
                    tracing::info!("storage is healthy again");
                } else {
                    tracing::warn!("storage health check failing");
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// The descriptor of `group`/`plural`.
    pub fn descriptor(&self, group: &str, plural: &str) -> Option<&ResourceDescriptor> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural)
    }

    /// The directory of a resource's keys: `<prefix>/<resource>`.
    pub fn resource_dir(&self, desc: &ResourceDescriptor) -> String {
        let name = match (desc.group.as_str(), desc.plural.as_str()) {
            ("", "services") => "services/specs",
            ("", "endpoints") => "services/endpoints",
            ("", "nodes") => "minions",
            (_, plural) => plural,
        };
        format!("{}/{name}", self.prefix)
    }

    /// The key of one object.
    pub fn key(&self, desc: &ResourceDescriptor, namespace: &str, name: &str) -> String {
        if desc.namespaced {
            format!("{}/{namespace}/{name}", self.resource_dir(desc))
        } else {
            format!("{}/{name}", self.resource_dir(desc))
        }
    }

    /// The prefix of a list: every namespace when `namespace` is empty.
    pub fn list_prefix(&self, desc: &ResourceDescriptor, namespace: &str) -> String {
        if desc.namespaced && !namespace.is_empty() {
            format!("{}/{namespace}/", self.resource_dir(desc))
        } else {
            format!("{}/", self.resource_dir(desc))
        }
    }

    async fn authenticate(&self, ctx: &RequestContext) -> Result<UserInfo, ApiError> {
        let authorization = ctx
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let credentials = Credentials::from_chain(&ctx.peer_certificates, authorization);
        self.authenticator
            .authenticate(&credentials)
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, remote = %ctx.remote_addr, "authentication failed");
                ApiError::unauthorized()
            })
    }

    async fn authorize(&self, user: &UserInfo, ctx: &RequestContext) -> Result<(), ApiError> {
        let a = &ctx.attributes;
        let verb = a.verb.as_str().to_owned();
        let attrs = if a.is_resource_request {
            let mut attrs = Attributes::resource(
                user.clone(),
                verb.clone(),
                a.namespace.clone().unwrap_or_default(),
                a.group.clone(),
                a.resource.clone(),
            );
            if let Some(sub) = &a.subresource {
                attrs = attrs.with_subresource(sub.clone());
            }
            if let Some(name) = &a.name {
                attrs = attrs.with_name(name.clone());
            }
            attrs
        } else {
            Attributes::non_resource(user.clone(), verb.clone(), a.path.clone())
        };
        // Roles and bindings that could not be read: when storage is down
        // the answer is 503, not a 403 the client would trust; when it
        // answers again, the decision is made once more.
        for attempt in 0..2 {
            let decision = self.authorizer.authorize(&attrs).await;
            if decision.allowed {
                return Ok(());
            }
            let Some(error) = &decision.evaluation_error else {
                break;
            };
            tracing::warn!(%error, attempt, "authorization could not read RBAC objects");
            if self.storage.health().await.is_err() {
                self.healthy.store(false, Ordering::Relaxed);
                return Err(ApiError::service_unavailable("storage is unavailable"));
            }
        }
        Err(forbidden(&attrs))
    }

    async fn serve_resource(&self, ctx: RequestContext, body: Bytes) -> ApiResponse {
        let user = match self.authenticate(&ctx).await {
            Ok(user) => user,
            Err(e) => return e.into(),
        };
        if !self.healthy.load(Ordering::Relaxed) {
            return ApiError::service_unavailable("storage is unavailable").into();
        }
        if let Err(e) = self.authorize(&user, &ctx).await {
            return e.into();
        }
        let Some(desc) = ctx.resource.clone() else {
            return ApiError::path_not_found().into();
        };
        let result = match (desc.group.as_str(), desc.plural.as_str()) {
            ("authorization.k8s.io" | "authentication.k8s.io", _) => {
                reviews::handle(self, &user, &desc, &ctx, &body).await
            }
            _ => objects::handle(self, &user, &desc, &ctx, body).await,
        };
        let response = result.unwrap_or_else(ApiResponse::from);
        if let ApiResponse::Status(e) = &response
            && e.code >= 500
        {
            tracing::warn!(verb = %ctx.attributes.verb.as_str(), path = %ctx.attributes.path, code = e.code, message = %e.message, "request failed");
        }
        response
    }

    async fn serve_non_resource(&self, ctx: RequestContext) -> ApiResponse {
        let user = match self.authenticate(&ctx).await {
            Ok(user) => user,
            Err(e) => return e.into(),
        };
        if let Err(e) = self.authorize(&user, &ctx).await {
            return e.into();
        }
        if ctx.attributes.verb != Verb::Get && ctx.method != http::Method::GET {
            return ApiError::method_not_allowed(ctx.method.as_str()).into();
        }
        let query = ctx
            .attributes
            .path
            .split_once('?')
            .map(|(_, q)| q.to_owned());
        let raw_query: Option<String> = query.or_else(|| {
            let pairs: Vec<String> = ctx
                .attributes
                .query
                .other
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            (!pairs.is_empty()).then(|| pairs.join("&"))
        });
        let accept = ctx
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        match self
            .openapi
            .serve(&ctx.attributes.path, raw_query.as_deref(), accept)
        {
            Ok(Some(doc)) => ApiResponse::Raw {
                status: doc.status,
                content_type: doc.content_type.to_owned(),
                body: Bytes::copy_from_slice(&doc.body),
            },
            Ok(None) => ApiError::path_not_found().into(),
            Err(e) => ApiError::internal(e.to_string()).into(),
        }
    }
}

impl ApiHandler for Registry {
    async fn handle(&self, ctx: RequestContext, body: Bytes) -> ApiResponse {
        self.serve_resource(ctx, body).await
    }

    async fn non_resource(&self, ctx: RequestContext, body: Bytes) -> ApiResponse {
        drop(body);
        self.serve_non_resource(ctx).await
    }

    async fn admit_discovery(&self, ctx: &RequestContext) -> Option<ApiError> {
        let user = match self.authenticate(ctx).await {
            Ok(user) => user,
            Err(e) => return Some(e),
        };
        self.authorize(&user, ctx).await.err()
    }
}

/// `<resource>[.<group>] ["<name>"] is forbidden: User "u" cannot <verb>
/// resource "<resource>" in API group "<group>" in the namespace "<ns>"`.
fn forbidden(attrs: &Attributes) -> ApiError {
    if !attrs.is_resource_request {
        return ApiError::forbidden(format!(
            "forbidden: User \"{}\" cannot {} path \"{}\"",
            attrs.user.name, attrs.verb, attrs.non_resource_path
        ));
    }
    let mut resource = attrs.resource.clone();
    if !attrs.subresource.is_empty() {
        resource = format!("{resource}/{}", attrs.subresource);
    }
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace \"{}\"", attrs.namespace)
    };
    let why = format!(
        "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        attrs.user.name, attrs.verb, attrs.api_group
    );
    let qualified = if attrs.api_group.is_empty() {
        resource.clone()
    } else {
        format!("{resource}.{}", attrs.api_group)
    };
    let message = if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} \"{}\" is forbidden: {why}", attrs.name)
    };
    ApiError::forbidden(message).with_details(&attrs.name, &attrs.api_group, &attrs.resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_messages_match_kube() {
        let user = UserInfo::new("x", ["system:authenticated"]);
        let attrs = Attributes::resource(user.clone(), "list", "default", "", "pods");
        assert_eq!(
            forbidden(&attrs).message,
            "pods is forbidden: User \"x\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let attrs = Attributes::resource(user, "get", "", "apps", "deployments").with_name("web");
        assert_eq!(
            forbidden(&attrs).message,
            "deployments.apps \"web\" is forbidden: User \"x\" cannot get resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
    }
}
