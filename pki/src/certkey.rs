//! The certificate key and the encrypted bundle of shared CA files.
//!
//! kubeadm's `--upload-certs` puts the cluster's shared keys (CAs, service
//! account key pair) into the `kubeadm-certs` Secret, each file encrypted on
//! its own with AES-256-GCM under a 32-byte key the operator passes to
//! control-plane joiners as `--certificate-key` (64 hex digits). Each value
//! is `nonce (12 bytes) || ciphertext || tag`, and Secret keys are the file
//! paths with `/` replaced by `-` (`etcd/ca.key` → `etcd-ca.key`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroize;

use crate::types::InvalidValue;

const NONCE_LEN: usize = 12;

/// Files shared by every control-plane node, relative to the cert dir.
pub const SHARED_CA_FILES: [&str; 8] = [
    "ca.crt",
    "ca.key",
    "sa.key",
    "sa.pub",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
];

/// The Secret data key kubeadm uses for a cert-dir relative path.
pub fn secret_key_for(relative_path: &str) -> String {
    relative_path.replace('/', "-")
}

#[derive(Debug, thiserror::Error)]
pub enum CertKeyError {
    #[error("encrypting {0} failed")]
    Encrypt(String),
    #[error(
        "cannot decrypt {0}: wrong --certificate-key, or the data was altered (the certificate key printed by `bootstrap init --upload-certs` must be used unchanged)"
    )]
    Decrypt(String),
    #[error("{0} is too short to hold an encrypted file")]
    Truncated(String),
}

/// A 256-bit AES key, shown to users as 64 hex digits.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateKey([u8; 32]);

impl CertificateKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.0).into())
    }

    /// Encrypts one file; a fresh random nonce is prepended.
    pub fn encrypt(&self, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, CertKeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| CertKeyError::Encrypt(name.to_owned()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn decrypt(&self, name: &str, data: &[u8]) -> Result<Vec<u8>, CertKeyError> {
        if data.len() < NONCE_LEN {
            return Err(CertKeyError::Truncated(name.to_owned()));
        }
        let (nonce, ciphertext) = data.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CertKeyError::Decrypt(name.to_owned()))
    }

    /// Encrypts a set of named files (`name → contents`).
    pub fn encrypt_files(
        &self,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<BTreeMap<String, Vec<u8>>, CertKeyError> {
        files
            .iter()
            .map(|(name, data)| Ok((name.clone(), self.encrypt(name, data)?)))
            .collect()
    }

    /// Decrypts a set of named files; fails as a whole if any one fails, so
    /// a joiner never ends up with half of the shared keys.
    pub fn decrypt_files(
        &self,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<BTreeMap<String, Vec<u8>>, CertKeyError> {
        files
            .iter()
            .map(|(name, data)| Ok((name.clone(), self.decrypt(name, data)?)))
            .collect()
    }
}

impl Drop for CertificateKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl FromStr for CertificateKey {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected a certificate key of 64 hex digits (32 bytes), as printed by `bootstrap certs certificate-key`";
        let bytes = hex::decode(s.trim()).map_err(|_| InvalidValue(expected.to_owned()))?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| InvalidValue(expected.to_owned()))?;
        Ok(Self(array))
    }
}

impl fmt::Display for CertificateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertificateKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_roundtrips_as_hex() {
        let key = CertificateKey::generate();
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<CertificateKey>().expect("parse"), key);
        assert!("abcd".parse::<CertificateKey>().is_err());
        assert!("zz".repeat(32).parse::<CertificateKey>().is_err());
    }

    #[test]
    fn files_roundtrip_and_tampering_is_detected() {
        let key = CertificateKey::generate();
        let mut files = BTreeMap::new();
        files.insert(secret_key_for("etcd/ca.key"), b"etcd key".to_vec());
        files.insert("ca.crt".to_owned(), b"ca cert".to_vec());
        let encrypted = key.encrypt_files(&files).expect("encrypt");
        assert!(encrypted.contains_key("etcd-ca.key"));
        let blob = &encrypted["ca.crt"];
        assert_eq!(blob.len(), NONCE_LEN + b"ca cert".len() + 16);
        assert_eq!(key.decrypt_files(&encrypted).expect("decrypt"), files);

        let other = CertificateKey::generate();
        assert!(matches!(
            other.decrypt_files(&encrypted),
            Err(CertKeyError::Decrypt(_))
        ));
        let mut tampered = encrypted.clone();
        if let Some(byte) = tampered.get_mut("ca.crt").and_then(|b| b.last_mut()) {
            *byte ^= 1;
        }
        assert!(key.decrypt_files(&tampered).is_err());
    }

    #[test]
    fn interoperates_with_a_plain_aes_gcm_layout() {
        // nonce || ciphertext || tag, decrypted with the primitive directly.
        let key = CertificateKey::generate();
        let sealed = key.encrypt("sa.key", b"payload").expect("encrypt");
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let plain = Aes256Gcm::new((&key.0).into())
            .decrypt(Nonce::from_slice(nonce), rest)
            .expect("decrypt");
        assert_eq!(plain, b"payload");
    }
}
