//! An in-memory [`ClusterApi`] for unit tests: objects in maps,
//! resourceVersions checked on replace (409 when stale) and a fixed set of
//! (user, subresource) pairs a SubjectAccessReview allows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewStatus};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::api::{ApiError, ApiErrorKind, ApiResource, ClusterApi, MetadataUpdate, Propagation};

/// Where the fake keeps a generic object: (group/plural, namespace, name).
type ObjectKey = (String, String, String);

fn object_key(resource: &ApiResource, namespace: &str, name: &str) -> ObjectKey {
    let namespace = if resource.namespaced { namespace } else { "" };
    (
        format!("{}/{}", resource.group, resource.plural),
        namespace.to_owned(),
        name.to_owned(),
    )
}

#[derive(Debug, Default)]
struct State {
    version: u64,
    secrets: BTreeMap<String, Secret>,
    config_maps: BTreeMap<(String, String), ConfigMap>,
    csrs: BTreeMap<String, CertificateSigningRequest>,
    lease: Option<Lease>,
    allowed: BTreeSet<(String, String)>,
    conflict_next_lease_write: bool,
    approvals: usize,
    status_writes: usize,
    resources: Vec<ApiResource>,
    objects: BTreeMap<ObjectKey, ObjectMeta>,
    /// Every generic delete: (name, propagation).
    deletes: Vec<(String, Propagation)>,
    conflicting_metadata_updates: usize,
}

#[derive(Debug, Default)]
pub struct FakeApi {
    state: Mutex<State>,
}

fn conflict(operation: &str) -> ApiError {
    ApiError::new(
        ApiErrorKind::Conflict,
        operation,
        "the object has been modified",
    )
}

fn not_found(operation: &str) -> ApiError {
    ApiError::new(ApiErrorKind::NotFound, operation, "not found")
}

impl FakeApi {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next_version(state: &mut State) -> String {
        state.version += 1;
        state.version.to_string()
    }

    pub fn lease(&self) -> Option<Lease> {
        self.state().lease.clone()
    }

    pub fn fail_next_lease_write_with_conflict(&self) {
        self.state().conflict_next_lease_write = true;
    }

    pub fn put_secret(&self, mut secret: Secret) {
        let mut state = self.state();
        secret.metadata.resource_version = Some(Self::next_version(&mut state));
        let name = secret.metadata.name.clone().unwrap_or_default();
        state.secrets.insert(name, secret);
    }

    pub fn secret_names(&self) -> Vec<String> {
        self.state().secrets.keys().cloned().collect()
    }

    pub fn put_config_map(&self, mut config_map: ConfigMap) {
        let mut state = self.state();
        config_map.metadata.resource_version = Some(Self::next_version(&mut state));
        let key = (
            config_map.metadata.namespace.clone().unwrap_or_default(),
            config_map.metadata.name.clone().unwrap_or_default(),
        );
        state.config_maps.insert(key, config_map);
    }

    pub fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        self.state()
            .config_maps
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn put_csr(&self, mut csr: CertificateSigningRequest) {
        let mut state = self.state();
        csr.metadata.resource_version = Some(Self::next_version(&mut state));
        let name = csr.metadata.name.clone().unwrap_or_default();
        state.csrs.insert(name, csr);
    }

    pub fn csr(&self, name: &str) -> Option<CertificateSigningRequest> {
        self.state().csrs.get(name).cloned()
    }

    pub fn allow(&self, user: &str, subresource: &str) {
        self.state()
            .allowed
            .insert((user.to_owned(), subresource.to_owned()));
    }

    /// Serves `resource` (discovery lists it).
    pub fn serve(&self, resource: ApiResource) {
        self.state().resources.push(resource);
    }

    /// Stores a generic object's metadata with a new resourceVersion.
    pub fn put_object(&self, resource: &ApiResource, mut meta: ObjectMeta) {
        let mut state = self.state();
        meta.resource_version = Some(Self::next_version(&mut state));
        let key = object_key(
            resource,
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        state.objects.insert(key, meta);
    }

    pub fn object(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Option<ObjectMeta> {
        self.state()
            .objects
            .get(&object_key(resource, namespace, name))
            .cloned()
    }

    /// The generic deletes so far, in order.
    pub fn deletes(&self) -> Vec<(String, Propagation)> {
        self.state().deletes.clone()
    }

    /// The next `count` metadata updates fail with 409, as when another
    /// client writes first.
    pub fn conflict_metadata_updates(&self, count: usize) {
        self.state().conflicting_metadata_updates = count;
    }

    /// (approval writes, status writes) so tests can check nothing was
    /// written when nothing should be.
    pub fn write_counts(&self) -> (usize, usize) {
        let state = self.state();
        (state.approvals, state.status_writes)
    }

    fn replace_csr(
        &self,
        csr: &CertificateSigningRequest,
        operation: &str,
    ) -> Result<CertificateSigningRequest, ApiError> {
        let mut state = self.state();
        let name = csr.metadata.name.clone().unwrap_or_default();
        let stored = state.csrs.get(&name).ok_or_else(|| not_found(operation))?;
        if stored.metadata.resource_version != csr.metadata.resource_version {
            return Err(conflict(operation));
        }
        let mut updated = stored.clone();
        updated.status = csr.status.clone();
        updated.metadata.resource_version = Some(Self::next_version(&mut state));
        state.csrs.insert(name, updated.clone());
        Ok(updated)
    }
}

impl ClusterApi for FakeApi {
    fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>, ApiError> {
        Ok(self
            .state()
            .secrets
            .values()
            .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
            .cloned()
            .collect())
    }

    fn delete_secret(
        &self,
        _namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut state = self.state();
        let stored = state
            .secrets
            .get(name)
            .ok_or_else(|| not_found("delete secret"))?;
        if uid.is_some() && stored.metadata.uid.as_deref() != uid {
            return Err(conflict("delete secret"));
        }
        state.secrets.remove(name);
        Ok(())
    }

    fn get_config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError> {
        Ok(self.config_map(namespace, name))
    }

    fn replace_config_map(&self, config_map: &ConfigMap) -> Result<ConfigMap, ApiError> {
        let mut state = self.state();
        let key = (
            config_map.metadata.namespace.clone().unwrap_or_default(),
            config_map.metadata.name.clone().unwrap_or_default(),
        );
        let stored = state
            .config_maps
            .get(&key)
            .ok_or_else(|| not_found("replace configmap"))?;
        if stored.metadata.resource_version != config_map.metadata.resource_version {
            return Err(conflict("replace configmap"));
        }
        let mut updated = config_map.clone();
        updated.metadata.resource_version = Some(Self::next_version(&mut state));
        state.config_maps.insert(key, updated.clone());
        Ok(updated)
    }

    fn list_csrs(&self) -> Result<Vec<CertificateSigningRequest>, ApiError> {
        Ok(self.state().csrs.values().cloned().collect())
    }

    fn replace_csr_approval(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest, ApiError> {
        let updated = self.replace_csr(csr, "approve csr")?;
        self.state().approvals += 1;
        Ok(updated)
    }

    fn replace_csr_status(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest, ApiError> {
        let updated = self.replace_csr(csr, "csr status")?;
        self.state().status_writes += 1;
        Ok(updated)
    }

    fn create_subject_access_review(
        &self,
        review: &SubjectAccessReview,
    ) -> Result<SubjectAccessReview, ApiError> {
        let user = review.spec.user.clone().unwrap_or_default();
        let subresource = review
            .spec
            .resource_attributes
            .as_ref()
            .and_then(|r| r.subresource.clone())
            .unwrap_or_default();
        let allowed = self.state().allowed.contains(&(user, subresource));
        let mut answer = review.clone();
        answer.status = Some(SubjectAccessReviewStatus {
            allowed,
            ..SubjectAccessReviewStatus::default()
        });
        Ok(answer)
    }

    fn get_lease(&self, _namespace: &str, _name: &str) -> Result<Option<Lease>, ApiError> {
        Ok(self.lease())
    }

    fn create_lease(&self, lease: &Lease) -> Result<Lease, ApiError> {
        let mut state = self.state();
        if std::mem::take(&mut state.conflict_next_lease_write) || state.lease.is_some() {
            return Err(conflict("create lease"));
        }
        let mut created = lease.clone();
        created.metadata.resource_version = Some(Self::next_version(&mut state));
        state.lease = Some(created.clone());
        Ok(created)
    }

    fn replace_lease(&self, lease: &Lease) -> Result<Lease, ApiError> {
        let mut state = self.state();
        if std::mem::take(&mut state.conflict_next_lease_write) {
            return Err(conflict("replace lease"));
        }
        let stored = state
            .lease
            .as_ref()
            .ok_or_else(|| not_found("replace lease"))?;
        if stored.metadata.resource_version != lease.metadata.resource_version {
            return Err(conflict("replace lease"));
        }
        let mut updated = lease.clone();
        updated.metadata.resource_version = Some(Self::next_version(&mut state));
        state.lease = Some(updated.clone());
        Ok(updated)
    }
    fn discover_resources(&self) -> Result<Vec<ApiResource>, ApiError> {
        Ok(self.state().resources.clone())
    }

    fn list_metadata(&self, resource: &ApiResource) -> Result<Vec<ObjectMeta>, ApiError> {
        let prefix = format!("{}/{}", resource.group, resource.plural);
        Ok(self
            .state()
            .objects
            .iter()
            .filter(|(key, _)| key.0 == prefix)
            .map(|(_, meta)| meta.clone())
            .collect())
    }

    fn get_metadata(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, ApiError> {
        Ok(self.object(resource, namespace, name))
    }

    fn update_metadata(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        update: &MetadataUpdate,
    ) -> Result<(), ApiError> {
        let mut state = self.state();
        if state.conflicting_metadata_updates > 0 {
            state.conflicting_metadata_updates -= 1;
            // Another writer: the stored object moves on.
            let key = object_key(resource, namespace, name);
            let version = Self::next_version(&mut state);
            if let Some(stored) = state.objects.get_mut(&key) {
                stored.resource_version = Some(version);
            }
            return Err(conflict("update metadata"));
        }
        let key = object_key(resource, namespace, name);
        let stored = state
            .objects
            .get(&key)
            .ok_or_else(|| not_found("update metadata"))?;
        if stored.resource_version.as_deref() != Some(update.resource_version.as_str()) {
            return Err(conflict("update metadata"));
        }
        let mut updated = stored.clone();
        if let Some(finalizers) = &update.finalizers {
            updated.finalizers = (!finalizers.is_empty()).then(|| finalizers.clone());
        }
        if let Some(references) = &update.owner_references {
            updated.owner_references = (!references.is_empty()).then(|| references.clone());
        }
        // As the apiserver does: the last finalizer of an object being
        // deleted gone means the object is.
        if updated.deletion_timestamp.is_some() && updated.finalizers.is_none() {
            state.objects.remove(&key);
            return Ok(());
        }
        updated.resource_version = Some(Self::next_version(&mut state));
        state.objects.insert(key, updated);
        Ok(())
    }

    fn delete_object(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        uid: &str,
        propagation: Propagation,
    ) -> Result<(), ApiError> {
        let mut state = self.state();
        let key = object_key(resource, namespace, name);
        let stored = state
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found("delete object"))?;
        if stored.uid.as_deref() != Some(uid) {
            return Err(conflict("delete object"));
        }
        state.deletes.push((name.to_owned(), propagation));
        let mut marked = stored;
        let mut finalizers: Vec<String> = marked
            .finalizers
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != "orphan" && f != "foregroundDeletion")
            .collect();
        match propagation {
            Propagation::Foreground => finalizers.push("foregroundDeletion".into()),
            Propagation::Orphan => finalizers.push("orphan".into()),
            Propagation::Background => {}
        }
        if finalizers.is_empty() {
            state.objects.remove(&key);
            return Ok(());
        }
        marked.finalizers = Some(finalizers);
        marked
            .deletion_timestamp
            .get_or_insert(Time(super::api::timestamp_now()));
        marked.resource_version = Some(Self::next_version(&mut state));
        state.objects.insert(key, marked);
        Ok(())
    }
}
