//! Bootstrap-token Secrets as the bootstrap signer and the token cleaner
//! read them.
//!
//! A token lives in `kube-system` as a Secret of type
//! `bootstrap.kubernetes.io/token` named `bootstrap-token-<id>`, with
//! `token-id`, `token-secret`, optional `expiration` (RFC 3339) and
//! `usage-bootstrap-<usage>: "true"` keys. The server only returns `data`
//! (base64 in JSON, already decoded by the k8s-openapi types), never
//! `stringData`. An `expiration` that does not parse counts as expired, as
//! in Kubernetes: a token whose lifetime cannot be known must not be
//! trusted.

use k8s_openapi::api::core::v1::Secret;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use cairn_cluster::token::{
    TOKEN_NAMESPACE as SYSTEM_NAMESPACE, TOKEN_SECRET_PREFIX, TOKEN_SECRET_TYPE,
};

/// The fields of a bootstrap-token Secret the controllers look at.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret {
    /// `metadata.name` (`bootstrap-token-<id>`).
    pub name: String,
    pub uid: Option<String>,
    pub token_id: String,
    pub token_secret: String,
    pub signing: bool,
    pub expiration: Expiration,
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSecret")
            .field("name", &self.name)
            .field("token_id", &self.token_id)
            .field("signing", &self.signing)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// The `expiration` key of a token Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiration {
    Never,
    At(OffsetDateTime),
    /// Present but not RFC 3339: treated as already expired.
    Unparsable(String),
}

impl TokenSecret {
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        match &self.expiration {
            Expiration::Never => false,
            Expiration::At(at) => *at <= now,
            Expiration::Unparsable(_) => true,
        }
    }
}

/// Why a Secret of the token type cannot be used for signing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenSecretError {
    #[error("secret {name}: data[{key}] is missing or not UTF-8")]
    Missing { name: String, key: &'static str },
    #[error("secret {name}: data[token-id] {token_id:?} must be [a-z0-9]{{6}} and match the name")]
    BadId { name: String, token_id: String },
    #[error("secret {name}: data[token-secret] must be [a-z0-9]{{16}}")]
    BadSecret { name: String },
}

fn data_string(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn is_token_part(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether a Secret is a bootstrap-token Secret at all (type and name);
/// everything else is ignored silently.
pub fn is_token_secret(secret: &Secret) -> bool {
    secret.type_.as_deref() == Some(TOKEN_SECRET_TYPE)
        && secret
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with(TOKEN_SECRET_PREFIX))
}

/// Reads a bootstrap-token Secret; `Ok(None)` for Secrets that are not
/// bootstrap tokens, `Err` for token Secrets whose content is unusable.
pub fn parse_token_secret(secret: &Secret) -> Result<Option<TokenSecret>, TokenSecretError> {
    if !is_token_secret(secret) {
        return Ok(None);
    }
    let name = secret.metadata.name.clone().unwrap_or_default();
    let name_id = name.trim_start_matches(TOKEN_SECRET_PREFIX);
    let token_id = data_string(secret, "token-id").ok_or_else(|| TokenSecretError::Missing {
        name: name.clone(),
        key: "token-id",
    })?;
    if !is_token_part(&token_id, 6) || token_id != name_id {
        return Err(TokenSecretError::BadId { name, token_id });
    }
    let token_secret =
        data_string(secret, "token-secret").ok_or_else(|| TokenSecretError::Missing {
            name: name.clone(),
            key: "token-secret",
        })?;
    if !is_token_part(&token_secret, 16) {
        return Err(TokenSecretError::BadSecret { name });
    }
    let expiration = secret_expiration(secret);
    Ok(Some(TokenSecret {
        uid: secret.metadata.uid.clone(),
        signing: data_string(secret, "usage-bootstrap-signing").as_deref() == Some("true"),
        name,
        token_id,
        token_secret,
        expiration,
    }))
}

/// The expiration of a token Secret without validating the rest (the
/// token cleaner removes expired Secrets even when their token is
/// malformed).
pub fn secret_expiration(secret: &Secret) -> Expiration {
    match data_string(secret, "expiration") {
        None => Expiration::Never,
        Some(text) if text.is_empty() => Expiration::Never,
        Some(text) => match OffsetDateTime::parse(&text, &Rfc3339) {
            Ok(at) => Expiration::At(at),
            Err(_) => Expiration::Unparsable(text),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    pub(crate) fn token_secret(id: &str, secret: &str, extra: &[(&str, &str)]) -> Secret {
        let mut data = BTreeMap::from([
            ("token-id".to_owned(), ByteString(id.as_bytes().to_vec())),
            (
                "token-secret".to_owned(),
                ByteString(secret.as_bytes().to_vec()),
            ),
        ]);
        for (key, value) in extra {
            data.insert((*key).to_owned(), ByteString(value.as_bytes().to_vec()));
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(format!("bootstrap-token-{id}")),
                namespace: Some(SYSTEM_NAMESPACE.into()),
                uid: Some(format!("uid-{id}")),
                ..ObjectMeta::default()
            },
            type_: Some(TOKEN_SECRET_TYPE.into()),
            data: Some(data),
            ..Secret::default()
        }
    }

    #[test]
    fn reads_a_signing_token() {
        let secret = token_secret(
            "abcdef",
            "0123456789abcdef",
            &[
                ("usage-bootstrap-signing", "true"),
                ("expiration", "2030-01-01T00:00:00Z"),
            ],
        );
        let token = parse_token_secret(&secret)
            .expect("valid")
            .expect("a token");
        assert_eq!(token.token_id, "abcdef");
        assert!(token.signing);
        assert!(!token.is_expired(OffsetDateTime::UNIX_EPOCH));
        assert!(!format!("{token:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn expiry_and_unparsable_expiration() {
        let past = token_secret(
            "abcdef",
            "0123456789abcdef",
            &[("expiration", "2001-01-01T00:00:00Z")],
        );
        let now = OffsetDateTime::now_utc();
        let token = parse_token_secret(&past).expect("valid").expect("token");
        assert!(token.is_expired(now));
        let garbage = token_secret("abcdef", "0123456789abcdef", &[("expiration", "tomorrow")]);
        let token = parse_token_secret(&garbage).expect("valid").expect("token");
        assert!(
            token.is_expired(now),
            "unparsable expiration counts as expired"
        );
        assert!(
            !parse_token_secret(&token_secret("abcdef", "0123456789abcdef", &[]))
                .expect("valid")
                .expect("token")
                .is_expired(now)
        );
    }

    #[test]
    fn rejects_mismatched_or_malformed_tokens() {
        let mut wrong_name = token_secret("abcdef", "0123456789abcdef", &[]);
        wrong_name.metadata.name = Some("bootstrap-token-zzzzzz".into());
        assert!(matches!(
            parse_token_secret(&wrong_name),
            Err(TokenSecretError::BadId { .. })
        ));
        let short_secret = token_secret("abcdef", "short", &[]);
        assert!(matches!(
            parse_token_secret(&short_secret),
            Err(TokenSecretError::BadSecret { .. })
        ));
        let mut other_type = token_secret("abcdef", "0123456789abcdef", &[]);
        other_type.type_ = Some("Opaque".into());
        assert_eq!(parse_token_secret(&other_type), Ok(None));
    }
}
