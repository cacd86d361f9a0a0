//! An in-memory [`ClusterApi`] for unit tests: objects in maps,
//! resourceVersions checked on replace (409 when stale) and a fixed set of
//! (user, subresource) pairs a SubjectAccessReview allows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewStatus};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::api::{ApiError, ApiErrorKind, ClusterApi};

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
}
