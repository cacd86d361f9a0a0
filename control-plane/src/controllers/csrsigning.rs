//! `csrsigning`: issues certificates for approved CSRs with the cluster CA.
//!
//! Signers handled: `kubernetes.io/kube-apiserver-client-kubelet`,
//! `kubernetes.io/kube-apiserver-client` and `kubernetes.io/kubelet-serving`
//! (others are left to whoever implements them). A CSR is signed when it
//! is Approved, not Denied, not Failed and has no certificate yet. Like
//! Kubernetes' signer: the request's own signature is verified, the
//! per-signer rules are checked ([`super::csr::validate_for_signer`]), the
//! subject and subjectAltNames are copied from the request, key usage and
//! extended key usage come from `spec.usages`, validity is
//! `spec.expirationSeconds` (at least 10 minutes) capped by
//! `--cluster-signing-duration`, `notBefore` is backdated 5 minutes and,
//! for certificates of 8 hours or more, `notAfter` is pulled in by the
//! same 5 minutes; nothing outlives the CA. The PEM goes into
//! `status.certificate` through `/status`. A request that cannot be signed
//! gets a Failed condition with the reason instead.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration as StdDuration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use rand::RngCore as _;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::api::{ApiError, ClusterApi, Watched};
use super::csr::{
    CONDITION_APPROVED, CONDITION_DENIED, CONDITION_FAILED, ParsedCsr, append_condition,
    has_condition, has_true_condition, is_issued, name_of, parse_csr, validate_for_signer,
};
use super::runner::Controller;

/// How far back `notBefore` goes (and `notAfter` for long certificates).
pub const BACKDATE: Duration = Duration::minutes(5);
/// Certificates shorter than this keep their full requested end.
pub const SHORT_LIVED: Duration = Duration::hours(8);
/// The shortest validity honoured from `spec.expirationSeconds`.
pub const MIN_REQUESTED: StdDuration = StdDuration::from_secs(600);

/// Why the CA cannot be loaded or a certificate cannot be issued.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: not a usable CA certificate: {reason}")]
    CaCertificate { path: String, reason: String },
    #[error("{path}: not a usable CA private key: {reason}")]
    CaKey { path: String, reason: String },
    #[error("{key} does not belong to the certificate {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("unknown usage {0:?}")]
    UnknownUsage(String),
    #[error("the signing CA expired at {0}")]
    CaExpired(OffsetDateTime),
    #[error("cannot issue the certificate: {0}")]
    Issue(String),
}

/// The cluster CA (certificate + key) that signs CSRs.
pub struct ClusterCa {
    cert_der: Vec<u8>,
    not_after: OffsetDateTime,
    key: KeyPair,
    /// The longest validity handed out (`--cluster-signing-duration`).
    max_duration: StdDuration,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("not_after", &self.not_after)
            .field("max_duration", &self.max_duration)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Loads `ca.crt` and `ca.key` (PKCS#8, SEC1 or PKCS#1 PEM) and checks
    /// that they belong together and form a CA.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        max_duration: StdDuration,
    ) -> Result<Self, SigningError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|error| SigningError::Read {
                path: path.display().to_string(),
                error,
            })
        };
        let cert_path_text = cert_path.display().to_string();
        let key_path_text = key_path.display().to_string();
        let cert_der = cairn_pki::cert::pem_to_der(&read(cert_path)?).map_err(|e| {
            SigningError::CaCertificate {
                path: cert_path_text.clone(),
                reason: e.to_string(),
            }
        })?;
        let info = cairn_pki::cert::CertInfo::from_der(&cert_der).map_err(|e| {
            SigningError::CaCertificate {
                path: cert_path_text.clone(),
                reason: e.to_string(),
            }
        })?;
        if !info.is_ca {
            return Err(SigningError::CaCertificate {
                path: cert_path_text,
                reason: "basicConstraints does not say CA:TRUE".into(),
            });
        }
        let private_key =
            cairn_pki::PrivateKey::from_pem(&read(key_path)?).map_err(|e| SigningError::CaKey {
                path: key_path_text.clone(),
                reason: e.to_string(),
            })?;
        if !info.matches_key(&private_key) {
            return Err(SigningError::KeyMismatch {
                cert: cert_path_text,
                key: key_path_text,
            });
        }
        // cairn-pki normalises every accepted key form to PKCS#8, which is
        // what rcgen reads.
        let key = KeyPair::from_pem(&private_key.to_pem()).map_err(|e| SigningError::CaKey {
            path: key_path_text,
            reason: e.to_string(),
        })?;
        Ok(Self {
            cert_der,
            not_after: info.not_after,
            key,
            max_duration,
        })
    }

    /// The validity a CSR gets: its `expirationSeconds` if set (at least
    /// 10 minutes), never more than `--cluster-signing-duration`.
    pub fn validity(&self, expiration_seconds: Option<i32>) -> StdDuration {
        requested_validity(expiration_seconds, self.max_duration)
    }

    /// Issues a certificate for a parsed request.
    pub fn sign(
        &self,
        csr: &ParsedCsr,
        usages: &[String],
        expiration_seconds: Option<i32>,
        now: OffsetDateTime,
    ) -> Result<String, SigningError> {
        if now >= self.not_after {
            return Err(SigningError::CaExpired(self.not_after));
        }
        let ttl = Duration::try_from(self.validity(expiration_seconds))
            .map_err(|e| SigningError::Issue(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        for (oid, value) in &csr.subject {
            subject.push(DnType::from_oid(oid), value.as_str());
        }
        params.distinguished_name = subject;
        params.subject_alt_names = subject_alt_names(csr)?;
        let (key_usages, extended) = key_usages(usages)?;
        params.key_usages = key_usages;
        params.extended_key_usages = extended;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = now - BACKDATE;
        let not_after = if ttl < SHORT_LIVED {
            now + ttl
        } else {
            now + ttl - BACKDATE
        };
        params.not_after = not_after.min(self.not_after);
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der)
            .map_err(|e| SigningError::Issue(format!("the request's public key: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&self.cert_der.clone().into(), &self.key)
            .map_err(|e| SigningError::Issue(e.to_string()))?;
        let certificate = params
            .signed_by(&public_key, &issuer)
            .map_err(|e| SigningError::Issue(e.to_string()))?;
        Ok(certificate.pem())
    }
}

/// `min(max(expirationSeconds, 10 min), max_duration)`; `max_duration`
/// alone when the request names no duration.
pub fn requested_validity(
    expiration_seconds: Option<i32>,
    max_duration: StdDuration,
) -> StdDuration {
    match expiration_seconds {
        None => max_duration,
        Some(seconds) => {
            let requested = StdDuration::from_secs(u64::try_from(seconds).unwrap_or(0));
            requested.max(MIN_REQUESTED).min(max_duration)
        }
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    // Positive and never zero-led, as RFC 5280 wants.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn subject_alt_names(csr: &ParsedCsr) -> Result<Vec<SanType>, SigningError> {
    let ia5 = |text: &str| {
        rcgen::string::Ia5String::try_from(text)
            .map_err(|e| SigningError::Issue(format!("subjectAltName {text:?}: {e}")))
    };
    let mut sans = Vec::new();
    for dns in &csr.dns_names {
        sans.push(SanType::DnsName(ia5(dns)?));
    }
    for ip in &csr.ip_addresses {
        sans.push(SanType::IpAddress(*ip));
    }
    for email in &csr.emails {
        sans.push(SanType::Rfc822Name(ia5(email)?));
    }
    for uri in &csr.uris {
        sans.push(SanType::URI(ia5(uri)?));
    }
    Ok(sans)
}

/// Maps Kubernetes' usage names (`certificates.k8s.io/v1` KeyUsage) to
/// X.509 key usage bits and extended key usages.
pub fn key_usages(
    usages: &[String],
) -> Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>), SigningError> {
    let mut key = Vec::new();
    let mut extended = Vec::new();
    for usage in usages {
        match usage.as_str() {
            "signing" | "digital signature" => key.push(KeyUsagePurpose::DigitalSignature),
            "content commitment" => key.push(KeyUsagePurpose::ContentCommitment),
            "key encipherment" => key.push(KeyUsagePurpose::KeyEncipherment),
            "key agreement" => key.push(KeyUsagePurpose::KeyAgreement),
            "data encipherment" => key.push(KeyUsagePurpose::DataEncipherment),
            "cert sign" => key.push(KeyUsagePurpose::KeyCertSign),
            "crl sign" => key.push(KeyUsagePurpose::CrlSign),
            "encipher only" => key.push(KeyUsagePurpose::EncipherOnly),
            "decipher only" => key.push(KeyUsagePurpose::DecipherOnly),
            "any" => extended.push(ExtendedKeyUsagePurpose::Any),
            "server auth" => extended.push(ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => extended.push(ExtendedKeyUsagePurpose::ClientAuth),
            "code signing" => extended.push(ExtendedKeyUsagePurpose::CodeSigning),
            "email protection" | "s/mime" => {
                extended.push(ExtendedKeyUsagePurpose::EmailProtection)
            }
            "timestamping" => extended.push(ExtendedKeyUsagePurpose::TimeStamping),
            "ocsp signing" => extended.push(ExtendedKeyUsagePurpose::OcspSigning),
            "ipsec end system" => {
                extended.push(ExtendedKeyUsagePurpose::Other(vec![
                    1, 3, 6, 1, 5, 5, 7, 3, 5,
                ]));
            }
            "ipsec tunnel" => {
                extended.push(ExtendedKeyUsagePurpose::Other(vec![
                    1, 3, 6, 1, 5, 5, 7, 3, 6,
                ]));
            }
            "ipsec user" => {
                extended.push(ExtendedKeyUsagePurpose::Other(vec![
                    1, 3, 6, 1, 5, 5, 7, 3, 7,
                ]));
            }
            "microsoft sgc" => extended.push(ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 4, 1, 311, 10, 3, 3,
            ])),
            "netscape sgc" => {
                extended.push(ExtendedKeyUsagePurpose::Other(vec![
                    2, 16, 840, 1, 113730, 4, 1,
                ]));
            }
            other => return Err(SigningError::UnknownUsage(other.to_owned())),
        }
    }
    key.dedup();
    extended.dedup();
    Ok((key, extended))
}

/// What the signer does with one CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignDecision {
    /// Not approved, denied, failed, issued, or another signer.
    Skip,
    /// Mark Failed with this reason and message.
    Fail {
        reason: &'static str,
        message: String,
    },
    /// Sign this request.
    Sign(Box<ParsedCsr>),
}

/// Decides, without side effects, whether to sign a CSR.
pub fn decide(csr: &CertificateSigningRequest) -> SignDecision {
    if is_issued(csr)
        || !has_condition(csr, CONDITION_APPROVED)
        || has_condition(csr, CONDITION_DENIED)
        || has_true_condition(csr, CONDITION_FAILED)
    {
        return SignDecision::Skip;
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    // Fast path: signers not handled here are never parsed.
    if !matches!(
        csr.spec.signer_name.as_str(),
        super::csr::SIGNER_KUBELET_CLIENT
            | super::csr::SIGNER_APISERVER_CLIENT
            | super::csr::SIGNER_KUBELET_SERVING
    ) {
        return SignDecision::Skip;
    }
    let parsed = match parse_csr(&csr.spec.request.0) {
        Ok(parsed) => parsed,
        Err(e) => {
            return SignDecision::Fail {
                reason: "SignerValidationFailure",
                message: e.to_string(),
            };
        }
    };
    match validate_for_signer(&csr.spec.signer_name, &parsed, &usages) {
        None => SignDecision::Skip,
        Some(Err(e)) => SignDecision::Fail {
            reason: "SignerValidationFailure",
            message: e.to_string(),
        },
        Some(Ok(())) => SignDecision::Sign(Box::new(parsed)),
    }
}

/// The controller.
#[derive(Debug)]
pub struct CsrSigner {
    ca: ClusterCa,
    reported: BTreeSet<String>,
}

impl CsrSigner {
    pub fn new(ca: ClusterCa) -> Self {
        Self {
            ca,
            reported: BTreeSet::new(),
        }
    }

    /// One pass over all CSRs.
    pub fn sync(&mut self, api: &dyn ClusterApi, now: OffsetDateTime) -> Result<(), ApiError> {
        let mut first_error = None;
        for csr in api.list_csrs()? {
            if let Err(e) = self.handle(api, csr, now) {
                if self.reported.insert(e.to_string()) {
                    tracing::warn!(controller = "csrsigning", "{e}");
                }
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn handle(
        &mut self,
        api: &dyn ClusterApi,
        mut csr: CertificateSigningRequest,
        now: OffsetDateTime,
    ) -> Result<(), ApiError> {
        let outcome = match decide(&csr) {
            SignDecision::Skip => return Ok(()),
            SignDecision::Fail { reason, message } => Err((reason, message)),
            SignDecision::Sign(parsed) => {
                let usages = csr.spec.usages.clone().unwrap_or_default();
                self.ca
                    .sign(&parsed, &usages, csr.spec.expiration_seconds, now)
                    .map_err(|e| ("SigningFailed", e.to_string()))
            }
        };
        match outcome {
            Ok(pem) => {
                csr.status.get_or_insert_with(Default::default).certificate =
                    Some(ByteString(pem.into_bytes()));
                match api.replace_csr_status(&csr) {
                    Ok(_) => {
                        tracing::info!(
                            controller = "csrsigning",
                            csr = name_of(&csr),
                            signer = csr.spec.signer_name.as_str(),
                            validity = %super::duration::GoDuration(self.ca.validity(csr.spec.expiration_seconds)),
                            "signed certificate"
                        );
                        Ok(())
                    }
                    Err(e) if e.is_conflict() || e.is_not_found() => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err((reason, message)) => {
                append_condition(&mut csr, CONDITION_FAILED, reason, &message);
                match api.replace_csr_status(&csr) {
                    Ok(_) => {
                        tracing::warn!(
                            controller = "csrsigning",
                            csr = name_of(&csr),
                            signer = csr.spec.signer_name.as_str(),
                            "marked Failed ({reason}): {message}"
                        );
                        Ok(())
                    }
                    Err(e) if e.is_conflict() || e.is_not_found() => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

impl Controller for CsrSigner {
    fn name(&self) -> &'static str {
        "csrsigning"
    }

    fn watches(&self) -> &'static [Watched] {
        &[Watched::CertificateSigningRequests]
    }

    fn sync(
        &mut self,
        api: &dyn ClusterApi,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, ApiError> {
        CsrSigner::sync(self, api, now).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::csr::tests::{make_csr, usages};
    use cairn_pki::{KeyType, PrivateKey};

    fn ca(dir: &Path, max: StdDuration) -> (ClusterCa, Vec<u8>) {
        let key = PrivateKey::generate(KeyType::EcdsaP256).expect("key");
        let pem = cairn_pki::cert::self_signed_ca("kubernetes", &key, OffsetDateTime::now_utc())
            .expect("ca");
        std::fs::write(dir.join("ca.crt"), &pem).expect("write");
        std::fs::write(dir.join("ca.key"), key.to_pem()).expect("write");
        (
            ClusterCa::load(&dir.join("ca.crt"), &dir.join("ca.key"), max).expect("load"),
            cairn_pki::cert::pem_to_der(&pem).expect("der"),
        )
    }

    #[test]
    fn validity_is_clamped() {
        let year = StdDuration::from_secs(8760 * 3600);
        assert_eq!(requested_validity(None, year), year);
        assert_eq!(requested_validity(Some(60), year), MIN_REQUESTED);
        assert_eq!(requested_validity(Some(-5), year), MIN_REQUESTED);
        assert_eq!(
            requested_validity(Some(3600), year),
            StdDuration::from_secs(3600)
        );
        assert_eq!(requested_validity(Some(i32::MAX), year), year);
    }

    #[test]
    fn signs_with_subject_usages_and_validity() {
        let dir = tempfile::tempdir().expect("tmp");
        let (ca, ca_der) = ca(dir.path(), StdDuration::from_secs(24 * 3600));
        let parsed =
            parse_csr(make_csr("system:node:w1", &["system:nodes"], Vec::new()).as_bytes())
                .expect("parse");
        let now = OffsetDateTime::now_utc();
        let pem = ca
            .sign(
                &parsed,
                &usages(&["digital signature", "key encipherment", "client auth"]),
                Some(3600),
                now,
            )
            .expect("sign");
        let der = cairn_pki::cert::pem_to_der(&pem).expect("der");
        assert!(cairn_pki::cert::is_signed_by(&der, &ca_der));
        let info = cairn_pki::cert::CertInfo::from_der(&der).expect("info");
        assert_eq!(info.common_name, "system:node:w1");
        assert_eq!(info.organizations, ["system:nodes"]);
        assert!(info.client_auth && !info.server_auth && !info.is_ca);
        let slack = Duration::seconds(2);
        assert!((info.not_before - (now - BACKDATE)).abs() < slack);
        // One hour is "short": its end is not pulled in.
        assert!((info.not_after - (now + Duration::hours(1))).abs() < slack);

        let long = ca
            .sign(&parsed, &usages(&["client auth"]), None, now)
            .expect("sign");
        let info = cairn_pki::cert::CertInfo::from_pem(&long).expect("info");
        assert!((info.not_after - (now + Duration::hours(24) - BACKDATE)).abs() < slack);
    }

    #[test]
    fn unknown_usage_is_an_error() {
        assert!(matches!(
            key_usages(&usages(&["flying"])),
            Err(SigningError::UnknownUsage(_))
        ));
    }

    #[test]
    fn rejects_a_key_that_is_not_the_cas() {
        let dir = tempfile::tempdir().expect("tmp");
        let _ = ca(dir.path(), StdDuration::from_secs(3600));
        let other = PrivateKey::generate(KeyType::EcdsaP256).expect("key");
        std::fs::write(dir.path().join("other.key"), other.to_pem()).expect("write");
        assert!(matches!(
            ClusterCa::load(
                &dir.path().join("ca.crt"),
                &dir.path().join("other.key"),
                StdDuration::from_secs(3600)
            ),
            Err(SigningError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn sync_signs_approved_and_fails_invalid_requests() {
        use crate::controllers::csr::SIGNER_KUBELET_SERVING;
        use crate::controllers::testing::FakeApi;
        use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

        let dir = tempfile::tempdir().expect("tmp");
        let (ca, ca_der) = ca(dir.path(), StdDuration::from_secs(24 * 3600));
        let api = FakeApi::default();
        let request = |name: &str, pem: String, signer: &str, list: &[&str], approve: bool| {
            let mut csr = CertificateSigningRequest {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                spec: CertificateSigningRequestSpec {
                    request: ByteString(pem.into_bytes()),
                    signer_name: signer.into(),
                    usages: Some(usages(list)),
                    ..CertificateSigningRequestSpec::default()
                },
                status: None,
            };
            if approve {
                append_condition(&mut csr, CONDITION_APPROVED, "Test", "approved");
            }
            csr
        };
        let node = || make_csr("system:node:w1", &["system:nodes"], Vec::new());
        let client_usages = ["digital signature", "key encipherment", "client auth"];
        api.put_csr(request(
            "good",
            node(),
            crate::controllers::csr::SIGNER_KUBELET_CLIENT,
            &client_usages,
            true,
        ));
        api.put_csr(request(
            "pending",
            node(),
            crate::controllers::csr::SIGNER_KUBELET_CLIENT,
            &client_usages,
            false,
        ));
        api.put_csr(request(
            "foreign",
            node(),
            "example.com/x",
            &client_usages,
            true,
        ));
        api.put_csr(request(
            "no-san",
            node(),
            SIGNER_KUBELET_SERVING,
            &["digital signature", "server auth"],
            true,
        ));
        let mut signer = CsrSigner::new(ca);
        signer.sync(&api, OffsetDateTime::now_utc()).expect("sync");

        let good = api.csr("good").expect("csr");
        let pem = good
            .status
            .and_then(|s| s.certificate)
            .map(|c| String::from_utf8(c.0).expect("utf8"))
            .expect("certificate");
        let der = cairn_pki::cert::pem_to_der(&pem).expect("der");
        assert!(cairn_pki::cert::is_signed_by(&der, &ca_der));
        assert!(!is_issued(&api.csr("pending").expect("csr")));
        assert!(!is_issued(&api.csr("foreign").expect("csr")));
        let failed = api.csr("no-san").expect("csr");
        assert!(has_true_condition(&failed, CONDITION_FAILED));
        assert!(!is_issued(&failed));
        // Signed and failed requests are not touched again.
        signer.sync(&api, OffsetDateTime::now_utc()).expect("sync");
        assert_eq!(api.write_counts(), (0, 2));
    }
}
