//! Service-account tokens: verifying JWTs against `--service-account-key-file`
//! and issuing bound tokens with `--service-account-signing-key-file`.
//!
//! Tokens are JWS compact serialisations signed RS256 (RSA PKCS#1 v1.5,
//! SHA-256) or ES256 (ECDSA P-256, SHA-256, fixed `r||s` signature), both
//! through ring. Two claim shapes are accepted, as kube-apiserver does:
//!
//! - bound tokens (TokenRequest, projected volumes): the `kubernetes.io`
//!   claim with namespace, service account and optionally pod and node;
//!   `iss` must be one of the configured issuers, `aud` must share an entry
//!   with the API audiences and `exp` is mandatory;
//! - legacy Secret-based tokens: issuer `kubernetes/serviceaccount` and the
//!   `kubernetes.io/serviceaccount/*` claims; no audience, no expiry. When a
//!   [`SecretSource`] is attached, the referenced Secret must still exist and
//!   hold this very token.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Value, json};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::authn::{constant_time_eq, secret_value};
use super::{SERVICE_ACCOUNTS_GROUP, SecretSource, UserInfo, service_account_user_name};

/// The issuer of legacy Secret-based service-account tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: i64 = 60;

const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading service-account key file {path}: {source}")]
    ReadKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{context}: no PEM block found")]
    NoPem { context: String },
    #[error("{context}: unusable key: {reason}")]
    UnusableKey { context: String, reason: String },
    #[error("{context}: no public key found")]
    NoKeys { context: String },
    #[error("signing the token failed: {0}")]
    Sign(String),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("unsupported token algorithm {0:?} (RS256 and ES256 are accepted)")]
    Algorithm(String),
    #[error("token signature does not match any service-account key")]
    BadSignature,
    #[error("token issuer {0:?} is not accepted")]
    Issuer(String),
    #[error("token audiences {got:?} include none of {accepted:?}")]
    Audience {
        got: Vec<String>,
        accepted: Vec<String>,
    },
    #[error("token has no expiry (exp)")]
    NoExpiry,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token claims: {0}")]
    Claims(String),
    #[error("legacy token: {0}")]
    Legacy(String),
}

/// A JWS algorithm this module signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Es256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

/// A verification key: the raw public key ring wants plus its JWK key id.
#[derive(Clone, PartialEq, Eq)]
struct VerifyKey {
    algorithm: Algorithm,
    /// PKCS#1 `RSAPublicKey` DER for RSA, the uncompressed point for EC.
    raw: Vec<u8>,
    key_id: Option<String>,
}

impl VerifyKey {
    fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.algorithm {
            Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        };
        UnparsedPublicKey::new(alg, &self.raw)
            .verify(message, sig)
            .is_ok()
    }

    fn from_spki_der(der: &[u8], context: &str) -> Result<Self, TokenError> {
        let unusable = |reason: String| TokenError::UnusableKey {
            context: context.to_owned(),
            reason,
        };
        let (_, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| unusable(format!("not a SubjectPublicKeyInfo: {e}")))?;
        let oid = &spki.algorithm.algorithm;
        let algorithm = if *oid == OID_PKCS1_RSAENCRYPTION {
            Algorithm::Rs256
        } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if curve.as_ref() != Some(&OID_EC_P256) {
                return Err(unusable(
                    "only the P-256 curve is supported for EC keys".to_owned(),
                ));
            }
            Algorithm::Es256
        } else {
            return Err(unusable(format!("unsupported key algorithm {oid}")));
        };
        Ok(Self {
            algorithm,
            raw: spki.subject_public_key.data.to_vec(),
            key_id: Some(key_id(der)),
        })
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// kube-apiserver's key id: unpadded base64url of SHA-256 over the DER
/// SubjectPublicKeyInfo.
fn key_id(spki_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, spki_der))
}

/// The public keys of `--service-account-key-file` (any number of files,
/// each with any number of PEM blocks).
#[derive(Debug, Clone, Default)]
pub struct PublicKeySet {
    keys: Vec<VerifyKey>,
}

impl PublicKeySet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every key of a PEM file: `PUBLIC KEY`, `RSA PUBLIC KEY`,
    /// `CERTIFICATE`, or a private key (`PRIVATE KEY`, `EC PRIVATE KEY`,
    /// `RSA PRIVATE KEY`) whose public half is used.
    pub fn add_file(&mut self, path: &Path) -> Result<(), TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::ReadKeyFile {
            path: path.to_owned(),
            source,
        })?;
        self.add_pem(&text, &path.display().to_string())
    }

    /// Loads the keys of several files.
    pub fn from_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self, TokenError> {
        let mut set = Self::new();
        for path in paths {
            set.add_file(path.as_ref())?;
        }
        Ok(set)
    }

    /// Adds every key found in a PEM text; `context` names it in errors.
    pub fn add_pem(&mut self, text: &str, context: &str) -> Result<(), TokenError> {
        let blocks = pem::parse_many(text).map_err(|e| TokenError::UnusableKey {
            context: context.to_owned(),
            reason: e.to_string(),
        })?;
        if blocks.is_empty() {
            return Err(TokenError::NoPem {
                context: context.to_owned(),
            });
        }
        let before = self.keys.len();
        for block in &blocks {
            let unusable = |reason: String| TokenError::UnusableKey {
                context: context.to_owned(),
                reason,
            };
            match block.tag() {
                "PUBLIC KEY" => self
                    .keys
                    .push(VerifyKey::from_spki_der(block.contents(), context)?),
                "RSA PUBLIC KEY" => self.keys.push(VerifyKey {
                    algorithm: Algorithm::Rs256,
                    raw: block.contents().to_vec(),
                    key_id: None,
                }),
                "CERTIFICATE" => {
                    let (_, cert) = X509Certificate::from_der(block.contents())
                        .map_err(|e| unusable(format!("bad certificate: {e}")))?;
                    self.keys.push(VerifyKey::from_spki_der(
                        cert.tbs_certificate.subject_pki.raw,
                        context,
                    )?);
                }
                "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
                    let key = cairn_pki::PrivateKey::from_pem(&pem::encode(block))
                        .map_err(|e| unusable(e.to_string()))?;
                    self.keys.push(VerifyKey::from_spki_der(
                        &key.public_key_spki_der(),
                        context,
                    )?);
                }
                // Other blocks (e.g. EC PARAMETERS) carry no key.
                _ => {}
            }
        }
        if self.keys.len() == before {
            return Err(TokenError::NoKeys {
                context: context.to_owned(),
            });
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids (kube-apiserver's `kid`), for the JWKS document.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().filter_map(|k| k.key_id.clone()).collect()
    }

    fn verify(&self, algorithm: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        self.keys
            .iter()
            .filter(|k| k.algorithm == algorithm)
            .any(|k| k.verifies(message, sig))
    }
}

/// A token whose signature has been checked, with its parsed claims.
struct SignedToken {
    claims: Claims,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<PrivateClaims>,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace")]
    legacy_namespace: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name")]
    legacy_name: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    legacy_uid: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name")]
    legacy_secret: Option<String>,
}

impl Claims {
    fn audiences(&self) -> Vec<String> {
        match &self.aud {
            None => Vec::new(),
            Some(Audience::One(a)) => vec![a.clone()],
            Some(Audience::Many(list)) => list.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct PrivateClaims {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    serviceaccount: ObjectRef,
    pod: Option<ObjectRef>,
    node: Option<ObjectRef>,
}

#[derive(Debug, Default, Deserialize)]
struct ObjectRef {
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
}

fn split_token(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    let header = parts.next()?;
    let payload = parts.next()?;
    let sig = parts.next()?;
    if parts.next().is_some() || header.is_empty() || payload.is_empty() {
        return None;
    }
    Some((header, payload, sig))
}

fn decode_part(part: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| TokenError::Malformed(format!("{what} is not base64url: {e}")))
}

/// Checks service-account JWTs (`--service-account-key-file`,
/// `--service-account-issuer`, `--api-audiences`).
#[derive(Clone)]
pub struct ServiceAccountVerifier {
    keys: PublicKeySet,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: i64,
    secrets: Option<Arc<dyn SecretSource>>,
}

impl fmt::Debug for ServiceAccountVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountVerifier")
            .field("keys", &self.keys)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .field("legacy_secret_lookup", &self.secrets.is_some())
            .finish()
    }
}

impl ServiceAccountVerifier {
    /// `audiences` empty means kube-apiserver's default: the first issuer.
    pub fn new(keys: PublicKeySet, issuers: Vec<String>, audiences: Vec<String>) -> Self {
        let audiences = if audiences.is_empty() {
            issuers.iter().take(1).cloned().collect()
        } else {
            audiences
        };
        Self {
            keys,
            issuers,
            audiences,
            leeway: DEFAULT_LEEWAY_SECONDS,
            secrets: None,
        }
    }

    /// Legacy tokens are then only accepted while their Secret exists and
    /// still holds them (kube-apiserver's `--service-account-lookup`).
    pub fn with_secret_lookup(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    pub fn with_leeway(mut self, seconds: i64) -> Self {
        self.leeway = seconds.max(0);
        self
    }

    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// Whether the token looks like a JWT at all; other bearer tokens belong
    /// to other authenticators.
    pub fn is_jwt(token: &str) -> bool {
        split_token(token).is_some_and(|(header, _, _)| {
            URL_SAFE_NO_PAD
                .decode(header)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Header>(&bytes).ok())
                .is_some()
        })
    }

    /// Verifies a token at `now` (seconds since the Unix epoch).
    pub async fn verify(&self, token: &str, now: i64) -> Result<UserInfo, TokenError> {
        let signed = self.check_signature(token)?;
        let claims = &signed.claims;
        let issuer = claims.iss.clone().unwrap_or_default();
        if let Some(private) = &claims.kubernetes {
            if !self.issuers.contains(&issuer) {
                return Err(TokenError::Issuer(issuer));
            }
            self.check_times(claims, now, true)?;
            let got = claims.audiences();
            if !got.iter().any(|a| self.audiences.contains(a)) {
                return Err(TokenError::Audience {
                    got,
                    accepted: self.audiences.clone(),
                });
            }
            bound_user(claims, private)
        } else if issuer == LEGACY_ISSUER {
            self.check_times(claims, now, false)?;
            self.legacy_user(claims, token).await
        } else if !self.issuers.contains(&issuer) {
            Err(TokenError::Issuer(issuer))
        } else {
            Err(TokenError::Claims(
                "neither the kubernetes.io claim nor the legacy service-account claims".to_owned(),
            ))
        }
    }

    fn check_signature(&self, token: &str) -> Result<SignedToken, TokenError> {
        let (header_b64, payload_b64, sig_b64) = split_token(token).ok_or_else(|| {
            TokenError::Malformed("expected three dot-separated parts".to_owned())
        })?;
        let header: Header = serde_json::from_slice(&decode_part(header_b64, "header")?)
            .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
        let algorithm = match header.alg.as_str() {
            "RS256" => Algorithm::Rs256,
            "ES256" => Algorithm::Es256,
            other => return Err(TokenError::Algorithm(other.to_owned())),
        };
        let sig = decode_part(sig_b64, "signature")?;
        let message_len = header_b64.len() + 1 + payload_b64.len();
        let message = &token.as_bytes()[..message_len];
        if !self.keys.verify(algorithm, message, &sig) {
            return Err(TokenError::BadSignature);
        }
        let claims: Claims = serde_json::from_slice(&decode_part(payload_b64, "payload")?)
            .map_err(|e| TokenError::Claims(e.to_string()))?;
        Ok(SignedToken { claims })
    }

    fn check_times(&self, claims: &Claims, now: i64, require_exp: bool) -> Result<(), TokenError> {
        match claims.exp {
            Some(exp) if now > exp.saturating_add(self.leeway) => return Err(TokenError::Expired),
            None if require_exp => return Err(TokenError::NoExpiry),
            _ => {}
        }
        let starts = claims.nbf.into_iter().chain(claims.iat);
        if starts
            .into_iter()
            .any(|t| now < t.saturating_sub(self.leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    async fn legacy_user(&self, claims: &Claims, token: &str) -> Result<UserInfo, TokenError> {
        let missing = |claim: &str| TokenError::Legacy(format!("the {claim} claim is missing"));
        let namespace = claims
            .legacy_namespace
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("namespace"))?;
        let name = claims
            .legacy_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("service-account.name"))?;
        let uid = claims.legacy_uid.clone().unwrap_or_default();
        let secret_name = claims
            .legacy_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("secret.name"))?;
        if claims.sub.as_deref() != Some(service_account_user_name(namespace, name).as_str()) {
            return Err(TokenError::Legacy(
                "sub does not name the service account".to_owned(),
            ));
        }
        if let Some(secrets) = &self.secrets {
            let secret = secrets
                .get_secret(namespace, secret_name)
                .await
                .map_err(|e| TokenError::Legacy(format!("looking up the token Secret: {e}")))?
                .ok_or_else(|| {
                    TokenError::Legacy(format!("Secret {namespace}/{secret_name} no longer exists"))
                })?;
            if secret.metadata.deletion_timestamp.is_some() {
                return Err(TokenError::Legacy(format!(
                    "Secret {namespace}/{secret_name} is being deleted"
                )));
            }
            let stored = secret_value(&secret, "token").unwrap_or_default();
            if !constant_time_eq(stored.as_bytes(), token.as_bytes()) {
                return Err(TokenError::Legacy(format!(
                    "Secret {namespace}/{secret_name} holds a different token"
                )));
            }
        }
        let mut user = service_account_user(namespace, name, &uid);
        if let Some(jti) = &claims.jti {
            user.extra
                .insert(EXTRA_CREDENTIAL_ID.to_owned(), vec![format!("JTI={jti}")]);
        }
        Ok(user.with_authenticated_group())
    }
}

fn service_account_user(namespace: &str, name: &str, uid: &str) -> UserInfo {
    UserInfo {
        name: service_account_user_name(namespace, name),
        uid: uid.to_owned(),
        groups: vec![
            SERVICE_ACCOUNTS_GROUP.to_owned(),
            format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
        ],
        extra: BTreeMap::new(),
    }
}

fn bound_user(claims: &Claims, private: &PrivateClaims) -> Result<UserInfo, TokenError> {
    let namespace = private.namespace.as_str();
    let name = private.serviceaccount.name.as_str();
    if namespace.is_empty() || name.is_empty() {
        return Err(TokenError::Claims(
            "kubernetes.io claim lacks the namespace or the service account name".to_owned(),
        ));
    }
    let expected_sub = service_account_user_name(namespace, name);
    if claims.sub.as_deref().is_some_and(|sub| sub != expected_sub) {
        return Err(TokenError::Claims(format!(
            "sub {:?} does not name {expected_sub}",
            claims.sub.as_deref().unwrap_or_default()
        )));
    }
    let mut user = service_account_user(namespace, name, &private.serviceaccount.uid);
    if let Some(pod) = &private.pod {
        user.extra
            .insert(EXTRA_POD_NAME.to_owned(), vec![pod.name.clone()]);
        user.extra
            .insert(EXTRA_POD_UID.to_owned(), vec![pod.uid.clone()]);
    }
    if let Some(node) = &private.node {
        user.extra
            .insert(EXTRA_NODE_NAME.to_owned(), vec![node.name.clone()]);
        user.extra
            .insert(EXTRA_NODE_UID.to_owned(), vec![node.uid.clone()]);
    }
    if let Some(jti) = &claims.jti {
        user.extra
            .insert(EXTRA_CREDENTIAL_ID.to_owned(), vec![format!("JTI={jti}")]);
    }
    Ok(user.with_authenticated_group())
}

/// The object a bound token is tied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
}

/// What a TokenRequest asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundTokenRequest {
    pub namespace: String,
    pub service_account_name: String,
    pub service_account_uid: String,
    /// Empty means the issuer's default audiences.
    pub audiences: Vec<String>,
    pub pod: Option<PodRef>,
    /// Seconds since the Unix epoch.
    pub issued_at: i64,
    pub expiration_seconds: i64,
}

enum SigningKey {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// Signs service-account tokens with `--service-account-signing-key-file`
/// (`sa.key`: ECDSA P-256 by default, RSA with `--key-type rsa-2048`).
pub struct TokenIssuer {
    key: SigningKey,
    key_id: String,
    issuer: String,
    default_audiences: Vec<String>,
    rng: SystemRandom,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("algorithm", &self.algorithm())
            .field("key_id", &self.key_id)
            .field("issuer", &self.issuer)
            .field("default_audiences", &self.default_audiences)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Loads a PEM private key (PKCS#8, SEC1 or PKCS#1). The default
    /// audience is the issuer, as with kube-apiserver's `--api-audiences`
    /// unset.
    pub fn from_pem(key_pem: &str, issuer: impl Into<String>) -> Result<Self, TokenError> {
        let context = "service-account signing key";
        let unusable = |reason: String| TokenError::UnusableKey {
            context: context.to_owned(),
            reason,
        };
        let key = cairn_pki::PrivateKey::from_pem(key_pem).map_err(|e| unusable(e.to_string()))?;
        let pkcs8 = pem::parse(key.to_pem()).map_err(|e| unusable(e.to_string()))?;
        let rng = SystemRandom::new();
        let signing = match key.key_type() {
            Some(cairn_pki::KeyType::EcdsaP256) => SigningKey::Ecdsa(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.contents(),
                    &rng,
                )
                .map_err(|e| unusable(e.to_string()))?,
            ),
            Some(cairn_pki::KeyType::Rsa2048) => SigningKey::Rsa(
                RsaKeyPair::from_pkcs8(pkcs8.contents()).map_err(|e| unusable(e.to_string()))?,
            ),
            None => {
                return Err(unusable(
                    "only ECDSA P-256 and RSA keys sign tokens".to_owned(),
                ));
            }
        };
        let issuer = issuer.into();
        Ok(Self {
            key: signing,
            key_id: key_id(&key.public_key_spki_der()),
            default_audiences: vec![issuer.clone()],
            issuer,
            rng,
        })
    }

    pub fn from_file(path: &Path, issuer: impl Into<String>) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::ReadKeyFile {
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&text, issuer)
    }

    pub fn with_default_audiences(mut self, audiences: Vec<String>) -> Self {
        if !audiences.is_empty() {
            self.default_audiences = audiences;
        }
        self
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.key {
            SigningKey::Ecdsa(_) => Algorithm::Es256,
            SigningKey::Rsa(_) => Algorithm::Rs256,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs arbitrary claims (a JSON object) into a compact JWS.
    pub fn sign(&self, claims: &Value) -> Result<String, TokenError> {
        let header = json!({"alg": self.algorithm().name(), "kid": self.key_id});
        let encode = |v: &Value| -> Result<String, TokenError> {
            let bytes = serde_json::to_vec(v).map_err(|e| TokenError::Sign(e.to_string()))?;
            Ok(URL_SAFE_NO_PAD.encode(bytes))
        };
        let signing_input = format!("{}.{}", encode(&header)?, encode(claims)?);
        let sig = match &self.key {
            SigningKey::Ecdsa(key) => key
                .sign(&self.rng, signing_input.as_bytes())
                .map_err(|e| TokenError::Sign(e.to_string()))?
                .as_ref()
                .to_vec(),
            SigningKey::Rsa(key) => {
                let mut sig = vec![0u8; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    signing_input.as_bytes(),
                    &mut sig,
                )
                .map_err(|e| TokenError::Sign(e.to_string()))?;
                sig
            }
        };
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// A bound token as TokenRequest returns it.
    pub fn issue_bound(&self, request: &BoundTokenRequest) -> Result<String, TokenError> {
        let audiences = if request.audiences.is_empty() {
            &self.default_audiences
        } else {
            &request.audiences
        };
        let mut private = json!({
            "namespace": request.namespace,
            "serviceaccount": {
                "name": request.service_account_name,
                "uid": request.service_account_uid,
            },
        });
        if let Some(pod) = &request.pod {
            private["pod"] = json!({"name": pod.name, "uid": pod.uid});
        }
        let claims = json!({
            "aud": audiences,
            "exp": request.issued_at.saturating_add(request.expiration_seconds),
            "iat": request.issued_at,
            "nbf": request.issued_at,
            "iss": self.issuer,
            "jti": self.random_uuid()?,
            "kubernetes.io": private,
            "sub": service_account_user_name(&request.namespace, &request.service_account_name),
        });
        self.sign(&claims)
    }

    fn random_uuid(&self) -> Result<String, TokenError> {
        let mut b = [0u8; 16];
        self.rng
            .fill(&mut b)
            .map_err(|_| TokenError::Sign("no randomness for the token id".to_owned()))?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Ok(format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rejects_wrong_shapes() {
        assert!(split_token("a.b.c").is_some());
        assert!(split_token("a.b").is_none());
        assert!(split_token("a.b.c.d").is_none());
        assert!(split_token(".b.c").is_none());
        assert!(!ServiceAccountVerifier::is_jwt("abcdef.0123456789abcdef"));
    }

    #[test]
    fn audience_claim_accepts_string_or_list() {
        let one: Claims = serde_json::from_value(json!({"aud": "x"})).expect("claims");
        assert_eq!(one.audiences(), ["x"]);
        let many: Claims = serde_json::from_value(json!({"aud": ["x", "y"]})).expect("claims");
        assert_eq!(many.audiences(), ["x", "y"]);
    }

    #[test]
    fn keys_load_from_public_private_and_pkcs1_forms() {
        let ec = cairn_pki::PrivateKey::generate(cairn_pki::KeyType::EcdsaP256).expect("key");
        let mut set = PublicKeySet::new();
        set.add_pem(&ec.public_key_pem(), "sa.pub").expect("public");
        set.add_pem(&ec.to_pem(), "sa.key").expect("private");
        assert_eq!(set.len(), 2);
        assert_eq!(set.key_ids()[0], set.key_ids()[1]);
        assert!(matches!(
            set.add_pem("-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", "x"),
            Err(TokenError::NoKeys { .. })
        ));
        assert!(matches!(
            set.add_pem("nothing", "y"),
            Err(TokenError::NoPem { .. })
        ));
    }
}
