//! `tokencleaner`: deletes bootstrap-token Secrets whose `expiration` has
//! passed.
//!
//! As in Kubernetes, any Secret of type `bootstrap.kubernetes.io/token` in
//! `kube-system` qualifies (the name is not checked), an `expiration` that
//! does not parse as RFC 3339 counts as expired, and the delete carries the
//! Secret's uid as a precondition so a token recreated under the same name
//! in the meantime survives. A Secret already gone (404) is success.
//!
//! It also collects the Secrets that only expired tokens owned: kubeadm
//! gives `kube-system/kubeadm-certs` (the encrypted CA keys for
//! control-plane joins) an owner reference to a token with a two-hour TTL
//! and leaves the deletion to the garbage collector; a Secret in
//! `kube-system` whose owner references all name Secrets that no longer
//! exist is deleted here, with the same uid precondition.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use super::api::{ApiError, ClusterApi, Watched};
use super::runner::Controller;
use super::tokens::{Expiration, SYSTEM_NAMESPACE, TOKEN_SECRET_TYPE, secret_expiration};

/// The controller: remembers what it reported so each problem is logged
/// once.
#[derive(Debug, Default)]
pub struct TokenCleaner {
    reported: BTreeSet<String>,
}

impl TokenCleaner {
    pub fn new() -> Self {
        Self::default()
    }

    /// One pass over the token Secrets; returns when the next one expires.
    pub fn sync(
        &mut self,
        api: &dyn ClusterApi,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, ApiError> {
        let mut first_error = None;
        let mut next_expiry: Option<OffsetDateTime> = None;
        for secret in api.list_secrets(SYSTEM_NAMESPACE)? {
            if secret.type_.as_deref() != Some(TOKEN_SECRET_TYPE) {
                continue;
            }
            let name = secret.metadata.name.clone().unwrap_or_default();
            let expired_at = match secret_expiration(&secret) {
                Expiration::Never => continue,
                Expiration::At(at) if at > now => {
                    next_expiry = Some(next_expiry.map_or(at, |next| next.min(at)));
                    continue;
                }
                Expiration::At(at) => at.to_string(),
                Expiration::Unparsable(text) => format!("unparsable expiration {text:?}"),
            };
            match api.delete_secret(SYSTEM_NAMESPACE, &name, secret.metadata.uid.as_deref()) {
                Ok(()) => tracing::info!(
                    controller = "tokencleaner",
                    "deleted expired bootstrap token {SYSTEM_NAMESPACE}/{name} (expiration {expired_at})"
                ),
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    if self.reported.insert(format!("{name}: {e}")) {
                        tracing::warn!(controller = "tokencleaner", "cannot delete {name}: {e}");
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Err(e) = self.collect_orphans(api) {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(next_expiry), Err)
    }

    /// Deletes Secrets whose owners are all Secrets that are gone.
    fn collect_orphans(&mut self, api: &dyn ClusterApi) -> Result<(), ApiError> {
        let secrets = api.list_secrets(SYSTEM_NAMESPACE)?;
        let present: BTreeSet<&str> = secrets
            .iter()
            .filter_map(|s| s.metadata.uid.as_deref())
            .collect();
        let mut first_error = None;
        for secret in &secrets {
            let Some(owners) = secret.metadata.owner_references.as_ref() else {
                continue;
            };
            let orphaned = !owners.is_empty()
                && owners
                    .iter()
                    .all(|o| o.kind == "Secret" && !present.contains(o.uid.as_str()));
            if !orphaned {
                continue;
            }
            let name = secret.metadata.name.clone().unwrap_or_default();
            match api.delete_secret(SYSTEM_NAMESPACE, &name, secret.metadata.uid.as_deref()) {
                Ok(()) => tracing::info!(
                    controller = "tokencleaner",
                    "deleted {SYSTEM_NAMESPACE}/{name}: its owner {} is gone",
                    owners
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    if self.reported.insert(format!("{name}: {e}")) {
                        tracing::warn!(controller = "tokencleaner", "cannot delete {name}: {e}");
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Controller for TokenCleaner {
    fn name(&self) -> &'static str {
        "tokencleaner"
    }

    fn watches(&self) -> &'static [Watched] {
        &[Watched::SystemSecrets]
    }

    fn sync(
        &mut self,
        api: &dyn ClusterApi,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, ApiError> {
        TokenCleaner::sync(self, api, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testing::FakeApi;
    use crate::controllers::tokens::tests::token_secret;

    #[test]
    fn deletes_only_expired_token_secrets() {
        let api = FakeApi::default();
        api.put_secret(token_secret(
            "old000",
            "0123456789abcdef",
            &[("expiration", "2001-01-01T00:00:00Z")],
        ));
        api.put_secret(token_secret(
            "bad000",
            "0123456789abcdef",
            &[("expiration", "soon")],
        ));
        api.put_secret(token_secret(
            "new000",
            "0123456789abcdef",
            &[("expiration", "2099-01-01T00:00:00Z")],
        ));
        api.put_secret(token_secret("ever00", "0123456789abcdef", &[]));
        let mut opaque = token_secret(
            "opaque",
            "0123456789abcdef",
            &[("expiration", "2001-01-01T00:00:00Z")],
        );
        opaque.type_ = Some("Opaque".into());
        api.put_secret(opaque);
        let next = TokenCleaner::new()
            .sync(&api, OffsetDateTime::now_utc())
            .expect("sync");
        assert_eq!(
            api.secret_names(),
            [
                "bootstrap-token-ever00",
                "bootstrap-token-new000",
                "bootstrap-token-opaque"
            ]
        );
        assert_eq!(next.map(|t| t.year()), Some(2099));
    }

    #[test]
    fn secrets_owned_only_by_an_expired_token_go_with_it() {
        use k8s_openapi::api::core::v1::Secret;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
        let api = FakeApi::default();
        let mut proxy = token_secret(
            "ttl000",
            "0123456789abcdef",
            &[("expiration", "2001-01-01T00:00:00Z")],
        );
        proxy.metadata.uid = Some("uid-proxy".into());
        api.put_secret(proxy);
        let mut live = token_secret(
            "live00",
            "0123456789abcdef",
            &[("expiration", "2099-01-01T00:00:00Z")],
        );
        live.metadata.uid = Some("uid-live".into());
        api.put_secret(live);
        let owned_by = |name: &str, owner: &str, uid: &str| Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(SYSTEM_NAMESPACE.into()),
                uid: Some(format!("uid-{name}")),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Secret".into(),
                    name: owner.into(),
                    uid: uid.into(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            ..Secret::default()
        };
        api.put_secret(owned_by(
            "kubeadm-certs",
            "bootstrap-token-ttl000",
            "uid-proxy",
        ));
        api.put_secret(owned_by("kept", "bootstrap-token-live00", "uid-live"));
        TokenCleaner::new()
            .sync(&api, OffsetDateTime::now_utc())
            .expect("sync");
        assert_eq!(api.secret_names(), ["bootstrap-token-live00", "kept"]);
    }
}
