//! `bootstrapsigner`: keeps `kube-public/cluster-info` signed with every
//! signing bootstrap token.
//!
//! Joining nodes fetch `cluster-info` anonymously and trust it only if it
//! carries `jws-kubeconfig-<token-id>`, a detached HS256 JWS over
//! `data["kubeconfig"]` keyed by their token's secret. Like Kubernetes'
//! controller, each pass recomputes the complete set of signatures from
//! the tokens that are valid now (type, name, `usage-bootstrap-signing:
//! "true"`, not expired) and writes the ConfigMap only when that set
//! differs from what is stored; signatures of tokens that are gone,
//! expired or no longer signing are removed. The write is a replace with
//! the resourceVersion just read, retried from a fresh read on 409.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use super::api::Watched;
use super::api::{ApiError, ClusterApi};
use super::runner::Controller;
use super::tokens::{Expiration, SYSTEM_NAMESPACE, TokenSecret, parse_token_secret};

pub const CLUSTER_INFO_NAMESPACE: &str = "kube-public";
pub const CLUSTER_INFO_NAME: &str = "cluster-info";
pub const KUBECONFIG_KEY: &str = "kubeconfig";
pub const SIGNATURE_PREFIX: &str = "jws-kubeconfig-";

/// How many times one pass re-reads and retries after a 409.
const CONFLICT_RETRIES: usize = 5;

/// What a pass should do with `cluster-info`'s data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignaturePlan {
    /// No `kubeconfig` key: nothing to sign.
    NoKubeconfig,
    UpToDate,
    Update {
        data: BTreeMap<String, String>,
        /// Token ids whose signature is new or changed.
        signed: Vec<String>,
        /// Token ids whose signature is removed.
        removed: Vec<String>,
    },
}

/// Computes the signatures `cluster-info` should carry for `tokens`
/// (already filtered to usable signing tokens) and compares them with
/// `data`. `sign` is `cairn_cluster::jws::sign_detached`, deterministic
/// for a given payload and key, so equal text means an equal signature.
pub fn plan_signatures(
    data: &BTreeMap<String, String>,
    tokens: &[TokenSecret],
    sign: impl Fn(&str, &str, &str) -> String,
) -> SignaturePlan {
    let Some(kubeconfig) = data.get(KUBECONFIG_KEY) else {
        return SignaturePlan::NoKubeconfig;
    };
    let mut new_data: BTreeMap<String, String> = data
        .iter()
        .filter(|(key, _)| !key.starts_with(SIGNATURE_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut signed = Vec::new();
    let mut kept = BTreeSet::new();
    for token in tokens {
        let key = format!("{SIGNATURE_PREFIX}{}", token.token_id);
        let signature = sign(kubeconfig, &token.token_id, &token.token_secret);
        if data.get(&key) != Some(&signature) {
            signed.push(token.token_id.clone());
        }
        kept.insert(key.clone());
        new_data.insert(key, signature);
    }
    let removed: Vec<String> = data
        .keys()
        .filter(|key| key.starts_with(SIGNATURE_PREFIX) && !kept.contains(*key))
        .map(|key| key.trim_start_matches(SIGNATURE_PREFIX).to_owned())
        .collect();
    if signed.is_empty() && removed.is_empty() {
        SignaturePlan::UpToDate
    } else {
        SignaturePlan::Update {
            data: new_data,
            signed,
            removed,
        }
    }
}

/// The controller: state is only the set of problems already logged, so
/// a broken token Secret is reported once, not every second.
#[derive(Debug, Default)]
pub struct BootstrapSigner {
    reported: BTreeSet<String>,
}

impl BootstrapSigner {
    pub fn new() -> Self {
        Self::default()
    }

    fn signing_tokens(
        &mut self,
        api: &dyn ClusterApi,
        now: OffsetDateTime,
    ) -> Result<Vec<TokenSecret>, ApiError> {
        let mut tokens = Vec::new();
        for secret in api.list_secrets(SYSTEM_NAMESPACE)? {
            match parse_token_secret(&secret) {
                Ok(Some(token)) if token.signing && !token.is_expired(now) => tokens.push(token),
                Ok(_) => {}
                Err(problem) => {
                    let message = problem.to_string();
                    if self.reported.insert(message.clone()) {
                        tracing::warn!(controller = "bootstrapsigner", "ignoring token: {message}");
                    }
                }
            }
        }
        tokens.sort_by(|a, b| a.token_id.cmp(&b.token_id));
        Ok(tokens)
    }

    /// One pass: read tokens and `cluster-info`, write if needed. Returns
    /// when the next signing token expires (its signature must go then).
    pub fn sync(
        &mut self,
        api: &dyn ClusterApi,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, ApiError> {
        for _ in 0..CONFLICT_RETRIES {
            let tokens = self.signing_tokens(api, now)?;
            let next_expiry = tokens
                .iter()
                .filter_map(|t| match t.expiration {
                    Expiration::At(at) => Some(at),
                    _ => None,
                })
                .min();
            let Some(mut config_map) =
                api.get_config_map(CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME)?
            else {
                tracing::debug!("no {CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO_NAME} ConfigMap yet");
                return Ok(next_expiry);
            };
            let data = config_map.data.clone().unwrap_or_default();
            match plan_signatures(&data, &tokens, cairn_cluster::jws::sign_detached) {
                SignaturePlan::NoKubeconfig => {
                    let message = format!(
                        "{CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO_NAME} has no data[{KUBECONFIG_KEY}]; nothing to sign"
                    );
                    if self.reported.insert(message.clone()) {
                        tracing::warn!(controller = "bootstrapsigner", "{message}");
                    }
                    return Ok(next_expiry);
                }
                SignaturePlan::UpToDate => return Ok(next_expiry),
                SignaturePlan::Update {
                    data,
                    signed,
                    removed,
                } => {
                    config_map.data = Some(data);
                    match api.replace_config_map(&config_map) {
                        Ok(_) => {
                            tracing::info!(
                                controller = "bootstrapsigner",
                                signed = ?signed,
                                removed = ?removed,
                                "signed {CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO_NAME}"
                            );
                            return Ok(next_expiry);
                        }
                        Err(e) if e.is_conflict() => {
                            tracing::debug!("cluster-info changed while signing, retrying: {e}");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(ApiError::new(
            super::api::ApiErrorKind::Conflict,
            format!("update {CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO_NAME}"),
            format!(
                "still conflicting after {CONFLICT_RETRIES} attempts; retrying on the next pass"
            ),
        ))
    }
}

impl Controller for BootstrapSigner {
    fn name(&self) -> &'static str {
        "bootstrapsigner"
    }

    fn watches(&self) -> &'static [Watched] {
        &[Watched::SystemSecrets, Watched::PublicConfigMaps]
    }

    fn sync(
        &mut self,
        api: &dyn ClusterApi,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, ApiError> {
        BootstrapSigner::sync(self, api, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sign(payload: &str, id: &str, secret: &str) -> String {
        format!("sig({payload},{id},{secret})")
    }

    fn token(id: &str) -> TokenSecret {
        TokenSecret {
            name: format!("bootstrap-token-{id}"),
            uid: None,
            token_id: id.into(),
            token_secret: format!("{id}{id}{}", &id[..4]),
            signing: true,
            expiration: Expiration::Never,
        }
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn adds_missing_signatures_and_keeps_other_keys() {
        let current = data(&[("kubeconfig", "KC"), ("other", "x")]);
        let plan = plan_signatures(&current, &[token("aaaaaa")], fake_sign);
        let SignaturePlan::Update {
            data,
            signed,
            removed,
        } = plan
        else {
            panic!("expected an update, got {plan:?}");
        };
        assert_eq!(signed, ["aaaaaa"]);
        assert!(removed.is_empty());
        assert_eq!(data["other"], "x");
        assert_eq!(
            data["jws-kubeconfig-aaaaaa"],
            fake_sign("KC", "aaaaaa", &token("aaaaaa").token_secret)
        );
    }

    #[test]
    fn unchanged_when_signatures_match() {
        let t = token("aaaaaa");
        let current = data(&[
            ("kubeconfig", "KC"),
            (
                "jws-kubeconfig-aaaaaa",
                &fake_sign("KC", "aaaaaa", &t.token_secret),
            ),
        ]);
        assert_eq!(
            plan_signatures(&current, &[t], fake_sign),
            SignaturePlan::UpToDate
        );
    }

    #[test]
    fn removes_stale_and_refreshes_changed_signatures() {
        let t = token("aaaaaa");
        let current = data(&[
            ("kubeconfig", "NEW"),
            (
                "jws-kubeconfig-aaaaaa",
                &fake_sign("OLD", "aaaaaa", &t.token_secret),
            ),
            ("jws-kubeconfig-gone00", "whatever"),
        ]);
        let SignaturePlan::Update {
            data,
            signed,
            removed,
        } = plan_signatures(&current, std::slice::from_ref(&t), fake_sign)
        else {
            panic!("expected an update");
        };
        assert_eq!(signed, ["aaaaaa"]);
        assert_eq!(removed, ["gone00"]);
        assert!(!data.contains_key("jws-kubeconfig-gone00"));
        assert_eq!(
            data["jws-kubeconfig-aaaaaa"],
            fake_sign("NEW", "aaaaaa", &t.token_secret)
        );
    }

    #[test]
    fn nothing_to_sign_without_kubeconfig() {
        assert_eq!(
            plan_signatures(&data(&[("x", "y")]), &[token("aaaaaa")], fake_sign),
            SignaturePlan::NoKubeconfig
        );
    }

    #[test]
    fn sync_signs_once_and_unsigns_expired_tokens() {
        use crate::controllers::testing::FakeApi;
        use crate::controllers::tokens::tests::token_secret;
        use k8s_openapi::api::core::v1::ConfigMap;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

        let api = FakeApi::default();
        api.put_config_map(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CLUSTER_INFO_NAME.into()),
                namespace: Some(CLUSTER_INFO_NAMESPACE.into()),
                ..ObjectMeta::default()
            },
            data: Some(data(&[("kubeconfig", "KC")])),
            ..ConfigMap::default()
        });
        api.put_secret(token_secret(
            "abcdef",
            "0123456789abcdef",
            &[
                ("usage-bootstrap-signing", "true"),
                ("expiration", "2030-01-01T00:00:00Z"),
            ],
        ));
        api.put_secret(token_secret("zzzzzz", "0123456789abcdef", &[]));
        let mut signer = BootstrapSigner::new();
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(365 * 50);
        let next = signer.sync(&api, now).expect("sync");
        assert_eq!(
            next.map(|t| t.year()),
            Some(2030),
            "wakes up when the token expires"
        );
        let stored = api
            .config_map(CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME)
            .expect("cluster-info");
        let version = stored.metadata.resource_version.clone();
        let data = stored.data.expect("data");
        let signature = data.get("jws-kubeconfig-abcdef").expect("signed");
        cairn_cluster::jws::verify_detached("KC", signature, "abcdef", "0123456789abcdef")
            .expect("verifies");
        assert!(
            !data.contains_key("jws-kubeconfig-zzzzzz"),
            "not a signing token"
        );
        // Nothing changed: no write.
        signer.sync(&api, now).expect("sync");
        let again = api
            .config_map(CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME)
            .expect("cluster-info");
        assert_eq!(again.metadata.resource_version, version);
        // After the expiration the signature goes.
        let later = OffsetDateTime::UNIX_EPOCH + time::Duration::days(365 * 61);
        signer.sync(&api, later).expect("sync");
        let data = api
            .config_map(CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME)
            .and_then(|c| c.data)
            .expect("data");
        assert!(!data.contains_key("jws-kubeconfig-abcdef"), "{data:?}");
    }
}
