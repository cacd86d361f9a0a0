//! Authentication: client certificates, bootstrap tokens, service-account
//! tokens and the anonymous user, in kube-apiserver's order.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::serviceaccount::{ServiceAccountVerifier, TokenError};
use super::{BOOTSTRAPPERS_GROUP, BoxFuture, SourceError, UserInfo};

/// Namespace of bootstrap-token Secrets.
pub const BOOTSTRAP_TOKEN_NAMESPACE: &str = "kube-system";
/// Prefix of bootstrap-token Secret names: `bootstrap-token-<id>`.
pub const BOOTSTRAP_TOKEN_SECRET_PREFIX: &str = "bootstrap-token-";
/// Type of bootstrap-token Secrets.
pub const BOOTSTRAP_TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Prefix of bootstrap-token user names: `system:bootstrap:<id>`.
pub const BOOTSTRAP_USER_PREFIX: &str = "system:bootstrap:";

/// Why a request could not be authenticated; every variant is a 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("client certificate: {0}")]
    Certificate(String),
    #[error("bootstrap token {id}: {reason}")]
    BootstrapToken { id: String, reason: String },
    #[error("service-account token: {0}")]
    ServiceAccountToken(#[from] TokenError),
    #[error("invalid bearer token")]
    UnknownToken,
    #[error("reading credentials from storage: {0}")]
    Source(#[from] SourceError),
    #[error("anonymous requests are disabled")]
    AnonymousDisabled,
}

/// Reads Secrets for the token authenticators; storage implements it.
pub trait SecretSource: Send + Sync {
    /// The Secret `namespace/name`, or `None` when it does not exist.
    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, SourceError>>;
}

/// Secrets held in memory, keyed by namespace and name.
#[derive(Debug, Default)]
pub struct InMemorySecrets {
    secrets: RwLock<BTreeMap<(String, String), Secret>>,
}

impl InMemorySecrets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a Secret under its metadata's namespace and name.
    pub fn insert(&self, secret: Secret) {
        let key = (
            secret.metadata.namespace.clone().unwrap_or_default(),
            secret.metadata.name.clone().unwrap_or_default(),
        );
        if let Ok(mut map) = self.secrets.write() {
            map.insert(key, secret);
        }
    }

    pub fn remove(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.secrets
            .write()
            .ok()?
            .remove(&(namespace.to_owned(), name.to_owned()))
    }
}

impl SecretSource for InMemorySecrets {
    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, SourceError>> {
        let found = self
            .secrets
            .read()
            .map_err(|_| SourceError("in-memory secrets lock poisoned".to_owned()))
            .map(|map| map.get(&(namespace.to_owned(), name.to_owned())).cloned());
        Box::pin(async move { found })
    }
}

/// A Secret value from `data` (or `stringData`, for objects not yet
/// normalised by storage) as UTF-8.
pub(crate) fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(bytes.0.clone()).ok();
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credentials a request carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The leaf of the client certificate chain (DER), already verified by
    /// the TLS layer against the client CA.
    pub client_certificate: Option<&'a [u8]>,
    /// The raw `Authorization` header.
    pub authorization: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// From a verified chain (leaf first) and the `Authorization` header.
    pub fn from_chain<C: AsRef<[u8]>>(chain: &'a [C], authorization: Option<&'a str>) -> Self {
        Self {
            client_certificate: chain.first().map(AsRef::as_ref),
            authorization,
        }
    }

    /// The token of an `Authorization: Bearer <token>` header, if any.
    pub fn bearer_token(&self) -> Option<&'a str> {
        let header = self.authorization?.trim();
        let (scheme, token) = header.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    }
}

/// The user of a client certificate: CN is the name, each O a group.
pub fn user_from_certificate(der: &[u8]) -> Result<UserInfo, AuthError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| AuthError::Certificate(format!("cannot parse: {e}")))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default();
    if name.is_empty() {
        return Err(AuthError::Certificate(
            "the common name of the certificate is empty".to_owned(),
        ));
    }
    let groups = subject
        .iter_organization()
        .map(|o| {
            o.as_str()
                .map(str::to_owned)
                .map_err(|e| AuthError::Certificate(format!("unreadable organization: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(UserInfo::new(name, groups).with_authenticated_group())
}

fn is_token_part(part: &str, len: usize) -> bool {
    part.len() == len
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `(id, secret)` when the token has the bootstrap shape
/// `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn parse_bootstrap_token(token: &str) -> Option<(&str, &str)> {
    token
        .split_once('.')
        .filter(|(id, secret)| is_token_part(id, 6) && is_token_part(secret, 16))
}

/// `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`.
fn is_bootstrap_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    let bytes = rest.as_bytes();
    let Some((last, body)) = bytes.split_last() else {
        return false;
    };
    body.len() <= 255
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && body
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b':' || *b == b'-')
}

/// Seconds since the epoch of an RFC 3339 timestamp
/// (`2024-01-02T03:04:05Z`, optional fraction, `Z` or `±hh:mm`).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let number = |s: &str| -> Option<u16> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = text.split_once(['T', 't'])?;
    let mut date_parts = date.split('-');
    let year = i32::from(number(date_parts.next()?)?);
    let month = Month::try_from(u8::try_from(number(date_parts.next()?)?).ok()?).ok()?;
    let day = u8::try_from(number(date_parts.next()?)?).ok()?;
    if date_parts.next().is_some() {
        return None;
    }
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let clock = clock.split_once('.').map_or(clock, |(whole, fraction)| {
        if fraction.bytes().all(|b| b.is_ascii_digit()) {
            whole
        } else {
            ""
        }
    });
    let mut clock_parts = clock.split(':');
    let mut field = || -> Option<u8> { u8::try_from(number(clock_parts.next()?)?).ok() };
    let time = Time::from_hms(field()?, field()?, field()?).ok()?;
    let offset = match zone {
        "Z" | "z" => UtcOffset::UTC,
        _ => {
            let sign: i8 = if zone.starts_with('-') { -1 } else { 1 };
            let (hours, minutes) = zone.get(1..)?.split_once(':')?;
            let hours = i8::try_from(number(hours)?).ok()?;
            let minutes = i8::try_from(number(minutes)?).ok()?;
            UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?
        }
    };
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_offset(offset)
            .unix_timestamp(),
    )
}

/// Bootstrap tokens backed by `kube-system/bootstrap-token-<id>` Secrets.
#[derive(Clone)]
pub struct BootstrapTokenAuthenticator {
    secrets: Arc<dyn SecretSource>,
}

impl fmt::Debug for BootstrapTokenAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapTokenAuthenticator")
            .finish_non_exhaustive()
    }
}

impl BootstrapTokenAuthenticator {
    pub fn new(secrets: Arc<dyn SecretSource>) -> Self {
        Self { secrets }
    }

    /// Authenticates `<id>.<secret>` at `now` (seconds since the epoch).
    /// The caller has checked the shape with [`parse_bootstrap_token`].
    pub async fn authenticate(
        &self,
        id: &str,
        token_secret: &str,
        now: i64,
    ) -> Result<UserInfo, AuthError> {
        let fail = |reason: &str| AuthError::BootstrapToken {
            id: id.to_owned(),
            reason: reason.to_owned(),
        };
        let name = format!("{BOOTSTRAP_TOKEN_SECRET_PREFIX}{id}");
        let secret = self
            .secrets
            .get_secret(BOOTSTRAP_TOKEN_NAMESPACE, &name)
            .await?
            .ok_or_else(|| fail("no such token"))?;
        if secret.metadata.deletion_timestamp.is_some() {
            return Err(fail("the token is being deleted"));
        }
        if secret.type_.as_deref() != Some(BOOTSTRAP_TOKEN_SECRET_TYPE) {
            return Err(fail(
                "the Secret is not of type bootstrap.kubernetes.io/token",
            ));
        }
        let stored_id = secret_value(&secret, "token-id").unwrap_or_default();
        let stored_secret = secret_value(&secret, "token-secret").unwrap_or_default();
        let secret_matches = constant_time_eq(stored_secret.as_bytes(), token_secret.as_bytes());
        if stored_id != id || !secret_matches {
            return Err(fail("the token does not match"));
        }
        if let Some(expiration) = secret_value(&secret, "expiration") {
            // An unreadable expiration counts as expired, as in Kubernetes.
            let expired = parse_rfc3339(expiration.trim()).is_none_or(|at| at < now);
            if expired {
                return Err(fail("the token has expired"));
            }
        }
        if secret_value(&secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
            return Err(fail("the token may not be used for authentication"));
        }
        let mut groups = vec![BOOTSTRAPPERS_GROUP.to_owned()];
        if let Some(extra) = secret_value(&secret, "auth-extra-groups") {
            for group in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
                if !is_bootstrap_group(group) {
                    return Err(fail(&format!(
                        "extra group {group:?} does not match system:bootstrappers:*"
                    )));
                }
                if !groups.iter().any(|g| g == group) {
                    groups.push(group.to_owned());
                }
            }
        }
        Ok(
            UserInfo::new(format!("{BOOTSTRAP_USER_PREFIX}{id}"), groups)
                .with_authenticated_group(),
        )
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The authentication chain: x509, then bearer tokens (bootstrap, then
/// service account), then anonymous.
#[derive(Debug, Clone)]
pub struct Authenticator {
    bootstrap: Option<BootstrapTokenAuthenticator>,
    service_accounts: Option<ServiceAccountVerifier>,
    anonymous: bool,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl Authenticator {
    /// Client certificates and anonymous requests only.
    pub fn new() -> Self {
        Self {
            bootstrap: None,
            service_accounts: None,
            anonymous: true,
        }
    }

    /// `--enable-bootstrap-token-auth`.
    pub fn with_bootstrap_tokens(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.bootstrap = Some(BootstrapTokenAuthenticator::new(secrets));
        self
    }

    pub fn with_service_accounts(mut self, verifier: ServiceAccountVerifier) -> Self {
        self.service_accounts = Some(verifier);
        self
    }

    /// `--anonymous-auth` (on by default).
    pub fn with_anonymous(mut self, enabled: bool) -> Self {
        self.anonymous = enabled;
        self
    }

    pub async fn authenticate(&self, credentials: &Credentials<'_>) -> Result<UserInfo, AuthError> {
        self.authenticate_at(credentials, unix_now()).await
    }

    /// Authenticates at `now` (seconds since the epoch).
    pub async fn authenticate_at(
        &self,
        credentials: &Credentials<'_>,
        now: i64,
    ) -> Result<UserInfo, AuthError> {
        if let Some(der) = credentials.client_certificate {
            return user_from_certificate(der);
        }
        if let Some(token) = credentials.bearer_token() {
            return self.authenticate_token(token, now).await;
        }
        if self.anonymous {
            Ok(UserInfo::anonymous())
        } else {
            Err(AuthError::AnonymousDisabled)
        }
    }

    /// A bearer token: bootstrap-token shaped ones go to the bootstrap
    /// authenticator, JWTs to the service-account verifier; anything else,
    /// or a token no enabled authenticator accepts, is refused.
    pub async fn authenticate_token(&self, token: &str, now: i64) -> Result<UserInfo, AuthError> {
        if let (Some(bootstrap), Some((id, secret))) =
            (&self.bootstrap, parse_bootstrap_token(token))
        {
            return bootstrap.authenticate(id, secret, now).await;
        }
        if let Some(verifier) = &self.service_accounts
            && ServiceAccountVerifier::is_jwt(token)
        {
            return Ok(verifier.verify(token, now).await?);
        }
        Err(AuthError::UnknownToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_parsing() {
        let creds = |h| Credentials {
            client_certificate: None,
            authorization: Some(h),
        };
        assert_eq!(creds("Bearer abc").bearer_token(), Some("abc"));
        assert_eq!(creds("bearer  abc ").bearer_token(), Some("abc"));
        assert_eq!(creds("Basic YWxhZGRpbg==").bearer_token(), None);
        assert_eq!(creds("Bearer ").bearer_token(), None);
        assert_eq!(creds("Bearer").bearer_token(), None);
    }

    #[test]
    fn bootstrap_token_shape_and_groups() {
        assert_eq!(
            parse_bootstrap_token("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        assert_eq!(parse_bootstrap_token("ABCDEF.0123456789abcdef"), None);
        assert_eq!(parse_bootstrap_token("abcdef.0123456789abcde"), None);
        assert!(is_bootstrap_group(
            "system:bootstrappers:kubeadm:default-node-token"
        ));
        assert!(!is_bootstrap_group("system:bootstrappers:"));
        assert!(!is_bootstrap_group("system:bootstrappers:x-"));
        assert!(!is_bootstrap_group("system:masters"));
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:30:45.123Z"),
            Some(1_709_209_845)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T14:30:45+02:00"),
            Some(1_709_209_845)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T10:30:45-02:00"),
            Some(1_709_209_845)
        );
        assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-01-01 00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00"), None);
        assert_eq!(parse_rfc3339("soon"), None);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
