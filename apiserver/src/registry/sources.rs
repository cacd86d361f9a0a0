//! The authenticator's and authorizer's view of storage: bootstrap-token
//! Secrets and RBAC objects read straight from the keys the registry
//! writes, so a RoleBinding created through the API takes effect on the
//! next request.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;

use crate::auth::{BoxFuture, RbacSource, SecretSource, SourceError};
use crate::storage::{ListOptions, Storage};

/// Reads Secrets and RBAC objects from storage under `prefix`.
#[derive(Debug, Clone)]
pub struct StorageSource {
    storage: Arc<dyn Storage>,
    prefix: String,
}

impl StorageSource {
    pub fn new(storage: Arc<dyn Storage>, prefix: &str) -> Self {
        Self {
            storage,
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    async fn list<T: DeserializeOwned>(&self, dir: &str) -> Result<Vec<T>, SourceError> {
        let prefix = format!("{}/{dir}/", self.prefix);
        let mut options = ListOptions::default();
        let mut out = Vec::new();
        loop {
            let page = self
                .storage
                .list(&prefix, options.clone())
                .await
                .map_err(|e| SourceError(e.to_string()))?;
            for kv in &page.items {
                match serde_json::from_slice::<T>(&kv.value) {
                    Ok(object) => out.push(object),
                    Err(e) => tracing::warn!(key = %kv.key, error = %e, "undecodable RBAC object"),
                }
            }
            match page.next_page(None) {
                Some(next) => options = next,
                None => return Ok(out),
            }
        }
    }
}

impl SecretSource for StorageSource {
    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, SourceError>> {
        Box::pin(async move {
            let key = format!("{}/secrets/{namespace}/{name}", self.prefix);
            let Some(kv) = self
                .storage
                .get(&key)
                .await
                .map_err(|e| SourceError(e.to_string()))?
            else {
                return Ok(None);
            };
            serde_json::from_slice(&kv.value)
                .map(Some)
                .map_err(|e| SourceError(format!("{key}: {e}")))
        })
    }
}

impl RbacSource for StorageSource {
    fn cluster_roles(&self) -> BoxFuture<'_, Result<Vec<ClusterRole>, SourceError>> {
        Box::pin(self.list("clusterroles"))
    }

    fn cluster_role_bindings(&self) -> BoxFuture<'_, Result<Vec<ClusterRoleBinding>, SourceError>> {
        Box::pin(self.list("clusterrolebindings"))
    }

    fn roles<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Vec<Role>, SourceError>> {
        Box::pin(async move { self.list(&format!("roles/{namespace}")).await })
    }

    fn role_bindings<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RoleBinding>, SourceError>> {
        Box::pin(async move { self.list(&format!("rolebindings/{namespace}")).await })
    }
}
