//! Issuing X.509 certificates and reading them back.
//!
//! Issuing is a pure function of a [`CertRequest`], a public key, an issuer
//! and the current time; reading turns DER into a [`CertInfo`] with just the
//! fields Cairn compares when it decides whether existing material can be
//! reused. Extensions follow kubeadm: CAs carry basicConstraints CA:TRUE
//! (critical) and keyCertSign, leaves carry digitalSignature +
//! keyEncipherment and the extended key usages of their role, and every leaf
//! names its issuer through the authority key identifier.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::key::PrivateKey;
use crate::types::{DnsName, SubjectAltName};

/// How far back `notBefore` is set, so that a node whose clock lags a little
/// behind the one that issued the certificate still accepts it.
pub const BACKDATE: Duration = Duration::minutes(5);
/// CA lifetime (kubeadm: 10 years).
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Leaf lifetime (kubeadm: 1 year).
pub const LEAF_VALIDITY: Duration = Duration::days(365);

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("not a PEM certificate: {0}")]
    NotPem(String),
    #[error("cannot parse the certificate: {0}")]
    Parse(String),
    #[error("cannot sign the certificate: {0}")]
    Sign(String),
}

/// What a certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Ca,
    Server,
    Client,
    ServerAndClient,
}

impl Usage {
    fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            Self::Ca => Vec::new(),
            Self::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Self::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Self::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        }
    }
}

/// The identity a certificate should carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub usage: Usage,
    pub sans: BTreeSet<SubjectAltName>,
}

impl CertRequest {
    pub fn new(common_name: impl Into<String>, usage: Usage) -> Self {
        Self {
            common_name: common_name.into(),
            organizations: Vec::new(),
            usage,
            sans: BTreeSet::new(),
        }
    }

    pub fn with_organization(mut self, organization: impl Into<String>) -> Self {
        self.organizations.push(organization.into());
        self
    }

    pub fn with_sans(mut self, sans: impl IntoIterator<Item = SubjectAltName>) -> Self {
        self.sans.extend(sans);
        self
    }

    fn params(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<CertificateParams, CertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for organization in &self.organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, organization.as_str());
        }
        params
            .distinguished_name
            .push(DnType::CommonName, self.common_name.as_str());
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        params.subject_alt_names = self
            .sans
            .iter()
            .map(|san| match san {
                SubjectAltName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                SubjectAltName::Dns(name) => name
                    .as_str()
                    .to_owned()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e: rcgen::Error| CertError::Sign(e.to_string())),
            })
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = self.usage.extended_key_usages();
        if self.usage == Usage::Ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
                KeyUsagePurpose::KeyCertSign,
            ];
        } else {
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.use_authority_key_identifier_extension = true;
        }
        Ok(params)
    }
}

/// Serial numbers are random (RFC 5280 allows up to 20 octets; 16 keeps them
/// positive and unique without coordination between control-plane nodes).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// A self-signed CA certificate; its SAN repeats the CN as kubeadm does.
pub fn self_signed_ca(
    common_name: &str,
    key: &PrivateKey,
    now: OffsetDateTime,
) -> Result<String, CertError> {
    let mut request = CertRequest::new(common_name, Usage::Ca);
    if let Ok(name) = common_name.parse::<DnsName>() {
        request.sans.insert(SubjectAltName::Dns(name));
    }
    let params = request.params(now - BACKDATE, now + CA_VALIDITY)?;
    let cert = params
        .self_signed(key.signing_key())
        .map_err(|e| CertError::Sign(e.to_string()))?;
    Ok(cert.pem())
}

/// Signs a leaf certificate for `subject_key` with the CA. The leaf never
/// outlives its CA.
pub fn issue(
    request: &CertRequest,
    subject_key: &PrivateKey,
    ca_cert_der: &[u8],
    ca_key: &PrivateKey,
    now: OffsetDateTime,
) -> Result<String, CertError> {
    let ca_info = CertInfo::from_der(ca_cert_der)?;
    let not_after = (now + LEAF_VALIDITY).min(ca_info.not_after);
    let params = request.params(now - BACKDATE, not_after)?;
    let issuer = Issuer::from_ca_cert_der(&ca_cert_der.to_vec().into(), ca_key.signing_key())
        .map_err(|e| CertError::Sign(e.to_string()))?;
    let cert = params
        .signed_by(subject_key.signing_key(), &issuer)
        .map_err(|e| CertError::Sign(e.to_string()))?;
    Ok(cert.pem())
}

/// Decodes the first `CERTIFICATE` block of a PEM text.
pub fn pem_to_der(pem_text: &str) -> Result<Vec<u8>, CertError> {
    let block = pem::parse(pem_text).map_err(|e| CertError::NotPem(e.to_string()))?;
    if block.tag() != "CERTIFICATE" {
        return Err(CertError::NotPem(format!(
            "found a {:?} block where a CERTIFICATE was expected",
            block.tag()
        )));
    }
    Ok(block.into_contents())
}

/// The fields of a certificate that reuse decisions and reports look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub sans: BTreeSet<SubjectAltName>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    pub subject_raw: Vec<u8>,
    pub issuer_raw: Vec<u8>,
    pub spki_der: Vec<u8>,
    pub public_key_raw: Vec<u8>,
}

impl CertInfo {
    pub fn from_pem(pem_text: &str) -> Result<Self, CertError> {
        Self::from_der(&pem_to_der(pem_text)?)
    }

    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let organizations = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_owned))
            .collect();
        let mut sans = BTreeSet::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => {
                        if let Ok(parsed) = dns.parse() {
                            sans.insert(SubjectAltName::Dns(parsed));
                        }
                    }
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            sans.insert(SubjectAltName::Ip(ip));
                        }
                    }
                    _ => {}
                }
            }
        }
        let (server_auth, client_auth) = match cert.extended_key_usage() {
            Ok(Some(eku)) => (eku.value.server_auth, eku.value.client_auth),
            _ => (false, false),
        };
        let timestamp = |t: x509_parser::time::ASN1Time| t.to_datetime();
        Ok(Self {
            common_name,
            organizations,
            sans,
            not_before: timestamp(cert.validity().not_before),
            not_after: timestamp(cert.validity().not_after),
            is_ca: cert.is_ca(),
            server_auth,
            client_auth,
            subject_raw: subject.as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            spki_der: cert.public_key().raw.to_vec(),
            public_key_raw: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// Whether `key` is the private half of this certificate's public key.
    pub fn matches_key(&self, key: &PrivateKey) -> bool {
        self.public_key_raw == key.public_key_raw()
    }

    pub fn usage(&self) -> Usage {
        match (self.is_ca, self.server_auth, self.client_auth) {
            (true, _, _) => Usage::Ca,
            (false, true, true) => Usage::ServerAndClient,
            (false, true, false) => Usage::Server,
            _ => Usage::Client,
        }
    }

    /// The identity to request when this certificate is renewed.
    pub fn to_request(&self) -> CertRequest {
        CertRequest {
            common_name: self.common_name.clone(),
            organizations: self.organizations.clone(),
            usage: self.usage(),
            sans: self.sans.clone(),
        }
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Whether `cert_der` names `ca_der` as its issuer and carries a valid
/// signature by the CA's key.
pub fn is_signed_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(cert_der),
        X509Certificate::from_der(ca_der),
    ) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyType;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn leaf_carries_identity_and_chains_to_ca() {
        let ca_key = PrivateKey::generate(KeyType::EcdsaP256).expect("ca key");
        let ca_pem = self_signed_ca("kubernetes", &ca_key, now()).expect("ca");
        let ca_der = pem_to_der(&ca_pem).expect("der");
        let ca = CertInfo::from_der(&ca_der).expect("ca info");
        assert!(ca.is_ca);
        assert!(ca.matches_key(&ca_key));

        let leaf_key = PrivateKey::generate(KeyType::EcdsaP256).expect("leaf key");
        let request = CertRequest::new("kube-apiserver", Usage::Server).with_sans([
            SubjectAltName::Ip("10.96.0.1".parse().expect("ip")),
            SubjectAltName::Dns("kubernetes".parse().expect("dns")),
        ]);
        let leaf_pem = issue(&request, &leaf_key, &ca_der, &ca_key, now()).expect("leaf");
        let leaf_der = pem_to_der(&leaf_pem).expect("der");
        let leaf = CertInfo::from_der(&leaf_der).expect("leaf info");
        assert_eq!(leaf.common_name, "kube-apiserver");
        assert_eq!(leaf.sans, request.sans);
        assert_eq!(leaf.usage(), Usage::Server);
        assert!(!leaf.is_ca);
        assert!(leaf.not_after <= ca.not_after);
        assert!(is_signed_by(&leaf_der, &ca_der));

        let other_key = PrivateKey::generate(KeyType::EcdsaP256).expect("other");
        let other_ca =
            pem_to_der(&self_signed_ca("kubernetes", &other_key, now()).expect("ca")).expect("der");
        assert!(
            !is_signed_by(&leaf_der, &other_ca),
            "same DN, different key"
        );
    }

    #[test]
    fn validity_is_backdated_and_bounded() {
        let t = now();
        let key = PrivateKey::generate(KeyType::EcdsaP256).expect("key");
        let ca =
            CertInfo::from_pem(&self_signed_ca("etcd-ca", &key, t).expect("ca")).expect("info");
        let slack = Duration::seconds(2);
        assert!((ca.not_before - (t - BACKDATE)).abs() < slack);
        assert!((ca.not_after - (t + CA_VALIDITY)).abs() < slack);
    }
}
