//! The Secret a bootstrap token lives in, in kubeadm's layout: written by
//! `bootstrap token create` and by a control plane at init, read by the
//! apiserver's token authenticator and the controller manager.

use std::collections::BTreeMap;

use cairn_pki::BootstrapToken;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The namespace of token Secrets.
pub const TOKEN_NAMESPACE: &str = "kube-system";
/// The prefix of their names (`bootstrap-token-<id>`).
pub const TOKEN_SECRET_PREFIX: &str = "bootstrap-token-";
/// Their type.
pub const TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The group of kubeadm's default node token.
pub const DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// The prefix of the usage keys (`usage-bootstrap-signing`, ...).
pub const USAGE_PREFIX: &str = "usage-bootstrap-";

/// What goes into a token's Secret.
#[derive(Debug, Clone, Copy)]
pub struct TokenSecret<'a> {
    pub token: &'a BootstrapToken,
    /// `None`: never expires.
    pub expires: Option<OffsetDateTime>,
    /// Usage names: `authentication`, `signing`.
    pub usages: &'a [&'a str],
    /// Extra groups when authenticating.
    pub groups: &'a [&'a str],
    pub description: Option<&'a str>,
}

impl TokenSecret<'_> {
    /// The Secret as kubeadm writes it.
    pub fn to_secret(&self) -> Secret {
        let mut data: BTreeMap<String, String> = BTreeMap::from([
            ("token-id".to_owned(), self.token.id().to_owned()),
            ("token-secret".to_owned(), self.token.secret().to_owned()),
        ]);
        if let Some(expires) = self.expires {
            data.insert("expiration".to_owned(), rfc3339(expires));
        }
        for usage in self.usages {
            data.insert(format!("{USAGE_PREFIX}{usage}"), "true".to_owned());
        }
        if !self.groups.is_empty() {
            data.insert("auth-extra-groups".to_owned(), self.groups.join(","));
        }
        if let Some(description) = self.description {
            data.insert("description".to_owned(), description.to_owned());
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(format!("{TOKEN_SECRET_PREFIX}{}", self.token.id())),
                namespace: Some(TOKEN_NAMESPACE.to_owned()),
                ..ObjectMeta::default()
            },
            type_: Some(TOKEN_SECRET_TYPE.to_owned()),
            data: Some(
                data.into_iter()
                    .map(|(key, value)| (key, ByteString(value.into_bytes())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }
}

/// RFC 3339 in UTC with whole seconds (`2026-11-24T07:00:00Z`).
pub fn rfc3339(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    utc.replace_nanosecond(0)
        .unwrap_or(utc)
        .format(&Rfc3339)
        // Only years outside 0..=9999 fail to format.
        .unwrap_or_else(|_| utc.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeadm_layout() {
        let token: BootstrapToken = "abcdef.0123456789abcdef".parse().expect("token");
        let secret = TokenSecret {
            token: &token,
            expires: Some(time::macros::datetime!(2030-01-02 03:04:05.678 UTC)),
            usages: &["authentication", "signing"],
            groups: &[DEFAULT_NODE_TOKEN_GROUP],
            description: Some("test"),
        }
        .to_secret();
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("bootstrap-token-abcdef")
        );
        assert_eq!(secret.type_.as_deref(), Some(TOKEN_SECRET_TYPE));
        let data = secret.data.expect("data");
        let text = |k: &str| String::from_utf8(data[k].0.clone()).expect("utf-8");
        assert_eq!(text("expiration"), "2030-01-02T03:04:05Z");
        assert_eq!(text("usage-bootstrap-signing"), "true");
        assert_eq!(text("auth-extra-groups"), DEFAULT_NODE_TOKEN_GROUP);
        assert_eq!(text("token-secret"), "0123456789abcdef");
        assert_eq!(data.len(), 7);
    }
}
