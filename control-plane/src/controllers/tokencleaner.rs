//! `tokencleaner`: deletes bootstrap-token Secrets whose `expiration` has
//! passed.
//!
//! As in Kubernetes, any Secret of type `bootstrap.kubernetes.io/token` in
//! `kube-system` qualifies (the name is not checked), an `expiration` that
//! does not parse as RFC 3339 counts as expired, and the delete carries the
//! Secret's uid as a precondition so a token recreated under the same name
//! in the meantime survives. A Secret already gone (404) is success.

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
        first_error.map_or(Ok(next_expiry), Err)
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
}
