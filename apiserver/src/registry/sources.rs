//! The authenticator's and authorizer's view of storage: bootstrap-token
//! Secrets and RBAC objects read straight from the keys the registry
//! writes, so a RoleBinding created through the API takes effect on the
//! next request. [`CachedRbacSource`] serves the RBAC objects from memory,
//! kept current by storage watches.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;

use crate::auth::{BoxFuture, RbacSource, SecretSource, SourceError};
use crate::storage::{KeyValue, ListOptions, Storage, StorageError, WatchEvent};

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

/// One directory of RBAC objects held in memory, by key; `None` while not
/// in sync with storage.
type Objects<T> = RwLock<Option<BTreeMap<String, T>>>;

/// How long a failed list or a broken watch waits before listing again.
const RESYNC_DELAY: Duration = Duration::from_millis(200);

/// RBAC objects served from memory: each directory is listed once, then
/// kept current by a watch from the list's revision (listed again after a
/// compaction or a broken watch). While a directory is not in sync, its
/// reads go to storage through [`StorageSource`].
pub struct CachedRbacSource {
    storage: StorageSource,
    cluster_roles: Arc<Objects<ClusterRole>>,
    cluster_role_bindings: Arc<Objects<ClusterRoleBinding>>,
    roles: Arc<Objects<Role>>,
    role_bindings: Arc<Objects<RoleBinding>>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for CachedRbacSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedRbacSource")
            .field("prefix", &self.storage.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for CachedRbacSource {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

impl CachedRbacSource {
    /// Starts the list-and-watch tasks on the current Tokio runtime; without
    /// one, every read goes to storage.
    pub fn new(storage: StorageSource) -> Self {
        let mut source = Self {
            storage,
            cluster_roles: Arc::default(),
            cluster_role_bindings: Arc::default(),
            roles: Arc::default(),
            role_bindings: Arc::default(),
            tasks: Vec::new(),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let s = &source.storage;
            source.tasks = vec![
                runtime
                    .spawn(sync(
                        s.clone(),
                        "clusterroles",
                        source.cluster_roles.clone(),
                    ))
                    .abort_handle(),
                runtime
                    .spawn(sync(
                        s.clone(),
                        "clusterrolebindings",
                        source.cluster_role_bindings.clone(),
                    ))
                    .abort_handle(),
                runtime
                    .spawn(sync(s.clone(), "roles", source.roles.clone()))
                    .abort_handle(),
                runtime
                    .spawn(sync(
                        s.clone(),
                        "rolebindings",
                        source.role_bindings.clone(),
                    ))
                    .abort_handle(),
            ];
        }
        source
    }

    /// Whether every directory is in sync with storage.
    pub fn synced(&self) -> bool {
        fn ready<T>(objects: &Objects<T>) -> bool {
            objects.read().is_ok_and(|o| o.is_some())
        }
        ready(&self.cluster_roles)
            && ready(&self.cluster_role_bindings)
            && ready(&self.roles)
            && ready(&self.role_bindings)
    }
}

/// The cached objects whose key starts with `prefix`, `None` when not in
/// sync.
fn cached<T: Clone>(objects: &Objects<T>, prefix: &str) -> Option<Vec<T>> {
    let guard = objects.read().ok()?;
    let map = guard.as_ref()?;
    Some(
        map.range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect(),
    )
}

fn set<T>(objects: &Objects<T>, value: Option<BTreeMap<String, T>>) {
    if let Ok(mut guard) = objects.write() {
        *guard = value;
    }
}

/// Lists `<prefix>/<dir>/` into `objects` and applies its watch, forever.
async fn sync<T: DeserializeOwned + Send + Sync + 'static>(
    source: StorageSource,
    dir: &'static str,
    objects: Arc<Objects<T>>,
) {
    let prefix = format!("{}/{dir}/", source.prefix);
    loop {
        if let Err(e) = list_and_watch(&source, &prefix, &objects).await {
            tracing::debug!(%dir, error = %e, "RBAC cache out of sync; listing again");
        }
        set(&objects, None);
        tokio::time::sleep(RESYNC_DELAY).await;
    }
}

async fn list_and_watch<T: DeserializeOwned>(
    source: &StorageSource,
    prefix: &str,
    objects: &Objects<T>,
) -> Result<(), StorageError> {
    let mut options = ListOptions::default();
    let mut map = BTreeMap::new();
    let revision = loop {
        let page = source.storage.list(prefix, options.clone()).await?;
        for kv in &page.items {
            if let Some(object) = decode(kv) {
                map.insert(kv.key.clone(), object);
            }
        }
        match page.next_page(None) {
            Some(next) => options = next,
            None => break page.revision,
        }
    };
    let mut watch = source.storage.watch(prefix, revision, false).await?;
    set(objects, Some(map));
    while let Some(event) = watch.next().await {
        let event = event?;
        let Ok(mut guard) = objects.write() else {
            break;
        };
        let Some(map) = guard.as_mut() else {
            break;
        };
        match event {
            WatchEvent::Put { kv, .. } => match decode(&kv) {
                Some(object) => {
                    map.insert(kv.key, object);
                }
                None => {
                    map.remove(&kv.key);
                }
            },
            WatchEvent::Delete { prev, .. } => {
                map.remove(&prev.key);
            }
            WatchEvent::Progress { .. } => {}
        }
    }
    Ok(())
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Option<T> {
    serde_json::from_slice(&kv.value)
        .inspect_err(|e| tracing::warn!(key = %kv.key, error = %e, "undecodable RBAC object"))
        .ok()
}

impl RbacSource for CachedRbacSource {
    fn cluster_roles(&self) -> BoxFuture<'_, Result<Vec<ClusterRole>, SourceError>> {
        match cached(&self.cluster_roles, "") {
            Some(list) => Box::pin(async move { Ok(list) }),
            None => self.storage.cluster_roles(),
        }
    }

    fn cluster_role_bindings(&self) -> BoxFuture<'_, Result<Vec<ClusterRoleBinding>, SourceError>> {
        match cached(&self.cluster_role_bindings, "") {
            Some(list) => Box::pin(async move { Ok(list) }),
            None => self.storage.cluster_role_bindings(),
        }
    }

    fn roles<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Vec<Role>, SourceError>> {
        let prefix = format!("{}/roles/{namespace}/", self.storage.prefix);
        match cached(&self.roles, &prefix) {
            Some(list) => Box::pin(async move { Ok(list) }),
            None => self.storage.roles(namespace),
        }
    }

    fn role_bindings<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RoleBinding>, SourceError>> {
        let prefix = format!("{}/rolebindings/{namespace}/", self.storage.prefix);
        match cached(&self.role_bindings, &prefix) {
            Some(list) => Box::pin(async move { Ok(list) }),
            None => self.storage.role_bindings(namespace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Attributes, RbacAuthorizer, UserInfo};
    use crate::storage::MemoryStorage;
    use bytes::Bytes;
    use serde_json::json;

    async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if check().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn cache_follows_rbac_writes() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
        });
        storage
            .create(
                "/registry/clusterroles/pod-reader",
                Bytes::from(role.to_string()),
            )
            .await
            .expect("storage");
        let source = Arc::new(CachedRbacSource::new(StorageSource::new(
            storage.clone(),
            "/registry",
        )));
        assert!(eventually(async || source.synced()).await, "never synced");
        let authorizer = RbacAuthorizer::new(source.clone());
        let user = UserInfo::new("jane", ["system:authenticated"]);
        let attrs = Attributes::resource(user, "get", "team", "", "pods");
        assert!(!authorizer.authorize(&attrs).await.allowed);

        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "jane", "namespace": "team"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}]
        });
        let key = "/registry/rolebindings/team/jane";
        storage
            .create(key, Bytes::from(binding.to_string()))
            .await
            .expect("storage");
        assert!(eventually(async || authorizer.authorize(&attrs).await.allowed).await);
        // Another namespace's bindings do not leak in.
        let other = Attributes::resource(attrs.user.clone(), "get", "other", "", "pods");
        assert!(!authorizer.authorize(&other).await.allowed);

        // A compaction leaves the live watch in place; the delete is seen.
        let revision = storage.current_revision().await.expect("storage");
        storage.compact(revision).await.expect("storage");
        storage.delete(key, None).await.expect("storage");
        assert!(eventually(async || !authorizer.authorize(&attrs).await.allowed).await);
        assert!(eventually(async || source.synced()).await);
    }
}
