//! Authentication and authorization: who is calling, and what RBAC lets
//! them do.
//!
//! The flow mirrors kube-apiserver's filter chain:
//!
//! 1. [`Authenticator`] turns a request's credentials into a [`UserInfo`].
//!    The TLS layer has already verified the client certificate chain
//!    against `--client-ca-file`; the authenticator only reads the leaf.
//!    Credentials are tried in kube-apiserver's order: client certificate
//!    (CN = user, O = groups), then a bearer token (bootstrap token first,
//!    then service-account JWT), then anonymous when nothing was presented.
//!    A presented but unusable credential is a 401, never anonymous.
//!    Every authenticated user gets `system:authenticated`.
//! 2. [`RbacAuthorizer`] decides on [`Attributes`] (user, verb, namespace,
//!    group, resource, subresource, name, or a non-resource path) exactly
//!    as the RBAC authorizer does: `system:masters` is always allowed,
//!    ClusterRoleBindings grant everywhere, RoleBindings grant in their
//!    namespace, aggregated ClusterRoles are resolved by label selector.
//!    RBAC never denies; it allows or has no opinion.
//! 3. [`review`] answers `SelfSubjectAccessReview` and
//!    `SubjectAccessReview` (what `kubectl auth can-i` posts) with the same
//!    authorizer.
//! 4. [`policy::bootstrap_policy`] returns the roles and bindings a fresh
//!    kubeadm cluster has, for the server to seed into storage.
//!
//! Storage is not a dependency: bootstrap-token Secrets come through
//! [`SecretSource`] and RBAC objects through [`RbacSource`], both async
//! traits returning boxed futures (object safe, so the server can hold an
//! `Arc<dyn ...>`), with in-memory implementations for tests. The
//! authorizer reads the RBAC objects once per decision; caching across
//! requests is the storage layer's business (it sees the writes).
//!
//! Service-account tokens are JWS compact tokens signed RS256 or ES256 with
//! ring: [`ServiceAccountVerifier`] checks them against the keys of
//! `--service-account-key-file`, [`TokenIssuer`] signs bound tokens with
//! `--service-account-signing-key-file`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

pub mod authn;
pub mod policy;
pub mod rbac;
pub mod review;
pub mod serviceaccount;

pub use authn::{
    AuthError, Authenticator, BootstrapTokenAuthenticator, Credentials, InMemorySecrets,
    SecretSource,
};
pub use rbac::{Attributes, Decision, InMemoryRbac, RbacAuthorizer, RbacSource};
pub use serviceaccount::{
    BoundTokenRequest, PodRef, PublicKeySet, ServiceAccountVerifier, TokenError, TokenIssuer,
};

/// A boxed future, the return type of the storage-facing traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The group of every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The group of the anonymous user.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The anonymous user's name.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// Members of this group pass every authorization check.
pub const MASTERS_GROUP: &str = "system:masters";
/// The group of every bootstrap-token user.
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// The group of every service account.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// Prefix of service-account user names: `system:serviceaccount:<ns>:<name>`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// An error reading objects from the storage behind a source trait.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// The authenticated caller, as kube-apiserver's `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with a name and groups, no uid or extra.
    pub fn new(
        name: impl Into<String>,
        groups: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            uid: String::new(),
            groups: groups.into_iter().map(Into::into).collect(),
            extra: BTreeMap::new(),
        }
    }

    /// The anonymous user: `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> Self {
        Self::new(ANONYMOUS_USER, [UNAUTHENTICATED_GROUP])
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Adds `system:authenticated` unless the user already has it (or is
    /// anonymous), as kube-apiserver's authenticated-group adder does.
    pub(crate) fn with_authenticated_group(mut self) -> Self {
        if !self.in_group(AUTHENTICATED_GROUP) && !self.in_group(UNAUTHENTICATED_GROUP) {
            self.groups.push(AUTHENTICATED_GROUP.to_owned());
        }
        self
    }

    /// `(namespace, name)` when this is a service account's user name.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        self.name
            .strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?
            .split_once(':')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'))
    }
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_user_name(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_names_round_trip() {
        let user = UserInfo::new(service_account_user_name("kube-system", "coredns"), [""; 0]);
        assert_eq!(user.service_account(), Some(("kube-system", "coredns")));
        assert_eq!(UserInfo::new("alice", [""; 0]).service_account(), None);
        assert_eq!(
            UserInfo::new("system:serviceaccount:ns", [""; 0]).service_account(),
            None
        );
    }

    #[test]
    fn authenticated_group_added_once() {
        let user = UserInfo::new("alice", ["dev"]).with_authenticated_group();
        assert_eq!(user.groups, ["dev", AUTHENTICATED_GROUP]);
        let again = user.clone().with_authenticated_group();
        assert_eq!(again, user);
        assert_eq!(
            UserInfo::anonymous().with_authenticated_group().groups,
            [UNAUTHENTICATED_GROUP]
        );
    }
}
