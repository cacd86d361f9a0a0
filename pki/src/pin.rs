//! The CA pin joiners use to trust a cluster before they have any
//! credentials: `sha256:<hex>` over the CA's DER SubjectPublicKeyInfo,
//! exactly kubeadm's `--discovery-token-ca-cert-hash`.

use sha2::{Digest, Sha256};

use crate::cert::{CertError, CertInfo};
use crate::types::InvalidValue;

pub fn ca_cert_hash(ca_cert_pem: &str) -> Result<String, CertError> {
    let info = CertInfo::from_pem(ca_cert_pem)?;
    Ok(spki_hash(&info.spki_der))
}

pub fn spki_hash(spki_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(spki_der)))
}

/// Validates a pin typed by a user (`sha256:` followed by 64 hex digits)
/// and returns it in canonical lower-case form.
pub fn parse_ca_cert_hash(text: &str) -> Result<String, InvalidValue> {
    let hex_part = text
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            InvalidValue(format!(
                "{text:?}: expected sha256:<64 hex digits>, as printed by `bootstrap certs ca-hash`"
            ))
        })?;
    Ok(format!("sha256:{}", hex_part.to_ascii_lowercase()))
}
