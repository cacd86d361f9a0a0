//! CertificateSigningRequests: the PKCS#10 inside them, their conditions,
//! and the per-signer rules Kubernetes applies.
//!
//! `spec.request` is PEM (`CERTIFICATE REQUEST`); it is parsed and its
//! self-signature verified with x509-parser before anything looks at the
//! subject, so a request whose key does not match its signature is never
//! approved or signed. The rules are Kubernetes' own
//! (`pkg/apis/certificates/helpers.go`, the signer's `isRequestForSigner`
//! functions), with the same error texts where kube has them, so users
//! can search for them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

pub const SIGNER_KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const SIGNER_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const SIGNER_KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

pub const CONDITION_APPROVED: &str = "Approved";
pub const CONDITION_DENIED: &str = "Denied";
pub const CONDITION_FAILED: &str = "Failed";

const NODES_GROUP: &str = "system:nodes";
const NODE_USER_PREFIX: &str = "system:node:";

/// A parsed and signature-checked PKCS#10 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCsr {
    pub common_name: String,
    pub organizations: Vec<String>,
    /// Every subject attribute in order (OID arcs, value), copied into the
    /// certificate's subject.
    pub subject: Vec<(Vec<u64>, String)>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    /// DER SubjectPublicKeyInfo of the requester's key.
    pub spki_der: Vec<u8>,
}

/// Why `spec.request` is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrParseError {
    #[error("spec.request is not PEM: {0}")]
    NotPem(String),
    #[error("spec.request holds a {0:?} PEM block; expected CERTIFICATE REQUEST")]
    WrongPemBlock(String),
    #[error("spec.request is not a PKCS#10 certificate request: {0}")]
    NotPkcs10(String),
    #[error("the certificate request's signature does not verify with its own public key")]
    BadSignature,
    #[error("the certificate request's subject has a non-string {0} attribute")]
    BadSubject(String),
    #[error("the certificate request's subjectAltName contains an unsupported {0} entry")]
    UnsupportedSan(&'static str),
}

fn oid_arcs(oid: &x509_parser::der_parser::oid::Oid<'_>) -> Vec<u64> {
    oid.iter().map(|arcs| arcs.collect()).unwrap_or_default()
}

/// Parses the PEM PKCS#10 in `spec.request` and verifies its signature.
pub fn parse_csr(request: &[u8]) -> Result<ParsedCsr, CsrParseError> {
    let block = pem::parse(request).map_err(|e| CsrParseError::NotPem(e.to_string()))?;
    if block.tag() != "CERTIFICATE REQUEST" {
        return Err(CsrParseError::WrongPemBlock(block.tag().to_owned()));
    }
    let (_, csr) = X509CertificationRequest::from_der(block.contents())
        .map_err(|e| CsrParseError::NotPkcs10(e.to_string()))?;
    csr.verify_signature()
        .map_err(|_| CsrParseError::BadSignature)?;
    let info = &csr.certification_request_info;
    let mut parsed = ParsedCsr {
        common_name: String::new(),
        organizations: Vec::new(),
        subject: Vec::new(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        emails: Vec::new(),
        uris: Vec::new(),
        spki_der: info.subject_pki.raw.to_vec(),
    };
    for rdn in info.subject.iter() {
        for attribute in rdn.iter() {
            let arcs = oid_arcs(attribute.attr_type());
            let value = attribute
                .as_str()
                .map_err(|_| CsrParseError::BadSubject(attribute.attr_type().to_id_string()))?
                .to_owned();
            parsed.subject.push((arcs, value));
        }
    }
    parsed.common_name = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    parsed.organizations = info
        .subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    if let Some(extensions) = csr.requested_extensions() {
        for extension in extensions {
            let ParsedExtension::SubjectAlternativeName(san) = extension else {
                continue;
            };
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(dns) => parsed.dns_names.push((*dns).to_owned()),
                    GeneralName::RFC822Name(email) => parsed.emails.push((*email).to_owned()),
                    GeneralName::URI(uri) => parsed.uris.push((*uri).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                            _ => None,
                        };
                        parsed
                            .ip_addresses
                            .push(ip.ok_or(CsrParseError::UnsupportedSan("IP address"))?);
                    }
                    GeneralName::OtherName(..) => {
                        return Err(CsrParseError::UnsupportedSan("otherName"));
                    }
                    GeneralName::DirectoryName(_) => {
                        return Err(CsrParseError::UnsupportedSan("directoryName"));
                    }
                    _ => return Err(CsrParseError::UnsupportedSan("other")),
                }
            }
        }
    }
    Ok(parsed)
}

/// Why a request does not fit its signer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrRuleError {
    #[error("subject organization is not system:nodes (found {0:?})")]
    Organization(Vec<String>),
    #[error("subject common name does not begin with system:node: (found {0:?})")]
    CommonName(String),
    #[error("{0} subjectAltNames are not allowed")]
    SanNotAllowed(&'static str),
    #[error("DNS or IP subjectAltName is required")]
    SanRequired,
    #[error("usages did not match {expected} (found {found:?})")]
    Usages {
        expected: &'static str,
        found: Vec<String>,
    },
    #[error("invalid usage for client certificate: {0}")]
    InvalidClientUsage(String),
    #[error("missing required usage for client certificate: client auth")]
    MissingClientAuth,
}

fn usage_set(usages: &[String]) -> BTreeSet<&str> {
    usages.iter().map(String::as_str).collect()
}

fn usages_are_one_of(
    usages: &[String],
    allowed: &[&[&str]],
    expected: &'static str,
) -> Result<(), CsrRuleError> {
    let found = usage_set(usages);
    if allowed
        .iter()
        .any(|set| set.iter().copied().collect::<BTreeSet<&str>>() == found)
    {
        Ok(())
    } else {
        Err(CsrRuleError::Usages {
            expected,
            found: usages.to_vec(),
        })
    }
}

fn require_nodes_organization(csr: &ParsedCsr) -> Result<(), CsrRuleError> {
    if csr.organizations != [NODES_GROUP] {
        return Err(CsrRuleError::Organization(csr.organizations.clone()));
    }
    Ok(())
}

fn require_node_common_name(csr: &ParsedCsr) -> Result<(), CsrRuleError> {
    if !csr.common_name.starts_with(NODE_USER_PREFIX) {
        return Err(CsrRuleError::CommonName(csr.common_name.clone()));
    }
    Ok(())
}

/// `kubernetes.io/kube-apiserver-client-kubelet`: O=[system:nodes], CN
/// `system:node:<name>`, no SANs, usages exactly {digital signature, key
/// encipherment, client auth} or {digital signature, client auth}.
pub fn validate_kubelet_client(csr: &ParsedCsr, usages: &[String]) -> Result<(), CsrRuleError> {
    require_nodes_organization(csr)?;
    if !csr.dns_names.is_empty() {
        return Err(CsrRuleError::SanNotAllowed("DNS"));
    }
    if !csr.emails.is_empty() {
        return Err(CsrRuleError::SanNotAllowed("Email"));
    }
    if !csr.ip_addresses.is_empty() {
        return Err(CsrRuleError::SanNotAllowed("IP"));
    }
    if !csr.uris.is_empty() {
        return Err(CsrRuleError::SanNotAllowed("URI"));
    }
    require_node_common_name(csr)?;
    usages_are_one_of(
        usages,
        &[
            &["digital signature", "key encipherment", "client auth"],
            &["digital signature", "client auth"],
        ],
        "[client auth digital signature key encipherment]",
    )
}

/// `kubernetes.io/kubelet-serving`: O=[system:nodes], CN
/// `system:node:<name>`, at least one DNS or IP SAN and no others, usages
/// exactly {digital signature, key encipherment, server auth} or {digital
/// signature, server auth}.
pub fn validate_kubelet_serving(csr: &ParsedCsr, usages: &[String]) -> Result<(), CsrRuleError> {
    require_nodes_organization(csr)?;
    if csr.dns_names.is_empty() && csr.ip_addresses.is_empty() {
        return Err(CsrRuleError::SanRequired);
    }
    if !csr.emails.is_empty() {
        return Err(CsrRuleError::SanNotAllowed("Email"));
    }
    if !csr.uris.is_empty() {
        return Err(CsrRuleError::SanNotAllowed("URI"));
    }
    usages_are_one_of(
        usages,
        &[
            &["digital signature", "key encipherment", "server auth"],
            &["digital signature", "server auth"],
        ],
        "[digital signature key encipherment server auth]",
    )?;
    require_node_common_name(csr)
}

/// `kubernetes.io/kube-apiserver-client`: any subject; usages only from
/// {digital signature, key encipherment, client auth}, client auth
/// required.
pub fn validate_apiserver_client(usages: &[String]) -> Result<(), CsrRuleError> {
    let mut client_auth = false;
    for usage in usages {
        match usage.as_str() {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(CsrRuleError::InvalidClientUsage(other.to_owned())),
        }
    }
    if !client_auth {
        return Err(CsrRuleError::MissingClientAuth);
    }
    Ok(())
}

/// The per-signer check the signer runs; `None` for signers this
/// controller manager does not sign for.
pub fn validate_for_signer(
    signer_name: &str,
    csr: &ParsedCsr,
    usages: &[String],
) -> Option<Result<(), CsrRuleError>> {
    match signer_name {
        SIGNER_KUBELET_CLIENT => Some(validate_kubelet_client(csr, usages)),
        SIGNER_APISERVER_CLIENT => Some(validate_apiserver_client(usages)),
        SIGNER_KUBELET_SERVING => Some(validate_kubelet_serving(csr, usages)),
        _ => None,
    }
}

fn conditions(csr: &CertificateSigningRequest) -> &[CertificateSigningRequestCondition] {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

/// Whether a condition of this type is present (Approved and Denied count
/// regardless of status, as in Kubernetes).
pub fn has_condition(csr: &CertificateSigningRequest, condition_type: &str) -> bool {
    conditions(csr).iter().any(|c| c.type_ == condition_type)
}

/// Whether a condition of this type is present with status "True".
pub fn has_true_condition(csr: &CertificateSigningRequest, condition_type: &str) -> bool {
    conditions(csr)
        .iter()
        .any(|c| c.type_ == condition_type && c.status == "True")
}

/// Whether `status.certificate` is already set.
pub fn is_issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

/// Appends a `True` condition stamped with the current time.
pub fn append_condition(
    csr: &mut CertificateSigningRequest,
    condition_type: &str,
    reason: &str,
    message: &str,
) {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(super::api::timestamp_now());
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: condition_type.to_owned(),
            status: "True".to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
}

/// `metadata.name` for logs.
pub fn name_of(csr: &CertificateSigningRequest) -> &str {
    csr.metadata.name.as_deref().unwrap_or("<unnamed>")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    /// A PEM CSR signed by a fresh P-256 key.
    pub(crate) fn make_csr(cn: &str, organizations: &[&str], sans: Vec<SanType>) -> String {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for o in organizations {
            dn.push(DnType::OrganizationName, *o);
        }
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    pub(crate) fn usages(list: &[&str]) -> Vec<String> {
        list.iter().map(|u| (*u).to_owned()).collect()
    }

    #[test]
    fn parses_subject_and_sans() {
        let pem = make_csr(
            "system:node:worker-1",
            &["system:nodes"],
            vec![
                SanType::DnsName("worker-1".try_into().expect("dns")),
                SanType::IpAddress("10.0.0.5".parse().expect("ip")),
            ],
        );
        let parsed = parse_csr(pem.as_bytes()).expect("parse");
        assert_eq!(parsed.common_name, "system:node:worker-1");
        assert_eq!(parsed.organizations, ["system:nodes"]);
        assert_eq!(parsed.dns_names, ["worker-1"]);
        assert_eq!(
            parsed.ip_addresses,
            ["10.0.0.5".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(parsed.subject.len(), 2);
    }

    #[test]
    fn rejects_tampered_and_non_csr_input() {
        let pem = make_csr("system:node:a", &["system:nodes"], Vec::new());
        let block = pem::parse(&pem).expect("pem");
        let mut der = block.contents().to_vec();
        // Flip a byte inside the subject: the signature no longer matches.
        let position = der
            .windows(b"system:node:a".len())
            .position(|w| w == b"system:node:a")
            .expect("cn in der");
        der[position] ^= 0x01;
        let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        assert_eq!(
            parse_csr(tampered.as_bytes()),
            Err(CsrParseError::BadSignature)
        );
        assert!(matches!(
            parse_csr(b"garbage"),
            Err(CsrParseError::NotPem(_))
        ));
        let cert_block = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert!(matches!(
            parse_csr(cert_block.as_bytes()),
            Err(CsrParseError::WrongPemBlock(_))
        ));
    }

    #[test]
    fn kubelet_client_rules() {
        let good = parse_csr(make_csr("system:node:a", &["system:nodes"], Vec::new()).as_bytes())
            .expect("parse");
        let full = usages(&["digital signature", "key encipherment", "client auth"]);
        assert_eq!(validate_kubelet_client(&good, &full), Ok(()));
        assert_eq!(
            validate_kubelet_client(&good, &usages(&["client auth", "digital signature"])),
            Ok(())
        );
        assert!(matches!(
            validate_kubelet_client(&good, &usages(&["digital signature", "key encipherment"])),
            Err(CsrRuleError::Usages { .. })
        ));
        assert!(matches!(
            validate_kubelet_client(
                &good,
                &usages(&[
                    "digital signature",
                    "key encipherment",
                    "client auth",
                    "server auth"
                ])
            ),
            Err(CsrRuleError::Usages { .. })
        ));
        let wrong_org =
            parse_csr(make_csr("system:node:a", &["system:masters"], Vec::new()).as_bytes())
                .expect("parse");
        assert!(matches!(
            validate_kubelet_client(&wrong_org, &full),
            Err(CsrRuleError::Organization(_))
        ));
        let two_orgs = parse_csr(
            make_csr(
                "system:node:a",
                &["system:nodes", "system:masters"],
                Vec::new(),
            )
            .as_bytes(),
        )
        .expect("parse");
        assert!(matches!(
            validate_kubelet_client(&two_orgs, &full),
            Err(CsrRuleError::Organization(_))
        ));
        let wrong_cn =
            parse_csr(make_csr("admin", &["system:nodes"], Vec::new()).as_bytes()).expect("parse");
        assert!(matches!(
            validate_kubelet_client(&wrong_cn, &full),
            Err(CsrRuleError::CommonName(_))
        ));
        let with_san = parse_csr(
            make_csr(
                "system:node:a",
                &["system:nodes"],
                vec![SanType::DnsName("a".try_into().expect("dns"))],
            )
            .as_bytes(),
        )
        .expect("parse");
        assert_eq!(
            validate_kubelet_client(&with_san, &full),
            Err(CsrRuleError::SanNotAllowed("DNS"))
        );
    }

    #[test]
    fn kubelet_serving_and_apiserver_client_rules() {
        let serving = parse_csr(
            make_csr(
                "system:node:a",
                &["system:nodes"],
                vec![SanType::IpAddress("10.0.0.1".parse().expect("ip"))],
            )
            .as_bytes(),
        )
        .expect("parse");
        assert_eq!(
            validate_kubelet_serving(
                &serving,
                &usages(&["digital signature", "key encipherment", "server auth"])
            ),
            Ok(())
        );
        let no_san = parse_csr(make_csr("system:node:a", &["system:nodes"], Vec::new()).as_bytes())
            .expect("parse");
        assert_eq!(
            validate_kubelet_serving(&no_san, &usages(&["digital signature", "server auth"])),
            Err(CsrRuleError::SanRequired)
        );
        assert!(matches!(
            validate_kubelet_serving(&serving, &usages(&["digital signature", "client auth"])),
            Err(CsrRuleError::Usages { .. })
        ));
        assert_eq!(validate_apiserver_client(&usages(&["client auth"])), Ok(()));
        assert_eq!(
            validate_apiserver_client(&usages(&["digital signature"])),
            Err(CsrRuleError::MissingClientAuth)
        );
        assert_eq!(
            validate_apiserver_client(&usages(&["client auth", "server auth"])),
            Err(CsrRuleError::InvalidClientUsage("server auth".into()))
        );
        assert!(validate_for_signer("example.com/other", &serving, &[]).is_none());
    }
}
