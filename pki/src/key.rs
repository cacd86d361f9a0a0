//! Private keys: generation, PEM encoding and loading.
//!
//! Signing goes through rcgen's ring backend, which only takes PKCS#8. Keys
//! written by Cairn are PKCS#8 (`PRIVATE KEY`); keys written by kubeadm or
//! openssl as SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) are
//! converted on load so existing material can be reused as it is.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, PublicKeyData};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;

use crate::types::InvalidValue;

/// The key algorithm for newly generated keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256: fast to generate, which matters on
    /// first boot under emulation.
    #[default]
    EcdsaP256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 signatures, for clients that still
    /// insist on RSA.
    Rsa2048,
}

impl KeyType {
    pub const NAMES: [&'static str; 2] = ["ecdsa-p256", "rsa-2048"];

    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::Rsa2048 => "rsa-2048",
        }
    }
}

impl FromStr for KeyType {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "ecdsa" | "p256" => Ok(Self::EcdsaP256),
            "rsa-2048" | "rsa" | "rsa2048" => Ok(Self::Rsa2048),
            _ => Err(InvalidValue(format!(
                "{s:?}: expected one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating a {0} key failed: {1}")]
    Generate(KeyType, String),
    #[error("not a PEM private key: {0}")]
    NotPem(String),
    #[error("unsupported PEM block {0:?}; expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY")]
    UnsupportedPemTag(String),
    #[error("the key cannot be used for signing: {0}")]
    Unusable(String),
}

/// A private key that can sign certificates.
pub struct PrivateKey {
    inner: KeyPair,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm_name())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    pub fn generate(key_type: KeyType) -> Result<Self, KeyError> {
        let inner = match key_type {
            KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| KeyError::Generate(key_type, e.to_string()))?,
            KeyType::Rsa2048 => {
                let mut rng = rand::thread_rng();
                let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048)
                    .map_err(|e| KeyError::Generate(key_type, e.to_string()))?;
                let pkcs8 = rsa_key
                    .to_pkcs8_der()
                    .map_err(|e| KeyError::Generate(key_type, e.to_string()))?;
                KeyPair::from_pkcs8_der_and_sign_algo(
                    &pkcs8.as_bytes().into(),
                    &rcgen::PKCS_RSA_SHA256,
                )
                .map_err(|e| KeyError::Generate(key_type, e.to_string()))?
            }
        };
        Ok(Self { inner })
    }

    /// Loads a PEM private key in PKCS#8, SEC1 or PKCS#1 form.
    pub fn from_pem(pem_text: &str) -> Result<Self, KeyError> {
        let block = pem::parse(pem_text).map_err(|e| KeyError::NotPem(e.to_string()))?;
        let pkcs8: Vec<u8> = match block.tag() {
            "PRIVATE KEY" => block.contents().to_vec(),
            "EC PRIVATE KEY" => {
                let secret = p256::SecretKey::from_sec1_der(block.contents()).map_err(|e| {
                    KeyError::Unusable(format!("only P-256 EC keys are supported ({e})"))
                })?;
                secret
                    .to_pkcs8_der()
                    .map_err(|e| KeyError::Unusable(e.to_string()))?
                    .as_bytes()
                    .to_vec()
            }
            "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(block.contents())
                .map_err(|e| KeyError::Unusable(e.to_string()))?
                .to_pkcs8_der()
                .map_err(|e| KeyError::Unusable(e.to_string()))?
                .as_bytes()
                .to_vec(),
            other => return Err(KeyError::UnsupportedPemTag(other.to_owned())),
        };
        let inner =
            KeyPair::try_from(pkcs8.as_slice()).map_err(|e| KeyError::Unusable(e.to_string()))?;
        Ok(Self { inner })
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pem(&self) -> String {
        self.inner.serialize_pem()
    }

    /// The DER SubjectPublicKeyInfo, as it appears in a certificate.
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.inner.subject_public_key_info()
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`), e.g. `sa.pub`.
    pub fn public_key_pem(&self) -> String {
        self.inner.public_key_pem()
    }

    /// The raw public key bits (EC point or PKCS#1 RSAPublicKey); compared
    /// against a certificate's key to tell whether the two belong together.
    pub fn public_key_raw(&self) -> &[u8] {
        self.inner.public_key_raw()
    }

    pub fn key_type(&self) -> Option<KeyType> {
        let alg = self.inner.algorithm();
        if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            Some(KeyType::EcdsaP256)
        } else if alg == &rcgen::PKCS_RSA_SHA256 {
            Some(KeyType::Rsa2048)
        } else {
            None
        }
    }

    fn algorithm_name(&self) -> &'static str {
        self.key_type().map_or("other", KeyType::name)
    }

    pub(crate) fn signing_key(&self) -> &KeyPair {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_roundtrips_through_pem() {
        let key = PrivateKey::generate(KeyType::EcdsaP256).expect("generate");
        let pem_text = key.to_pem();
        assert!(pem_text.starts_with("-----BEGIN PRIVATE KEY-----"));
        let loaded = PrivateKey::from_pem(&pem_text).expect("load");
        assert_eq!(loaded.public_key_raw(), key.public_key_raw());
        assert_eq!(loaded.key_type(), Some(KeyType::EcdsaP256));
    }

    #[test]
    fn sec1_keys_are_accepted() {
        let secret = p256::SecretKey::random(&mut rand::thread_rng());
        let sec1 = secret.to_sec1_der().expect("sec1");
        let pem_text = pem::encode(&pem::Pem::new("EC PRIVATE KEY", sec1.to_vec()));
        let loaded = PrivateKey::from_pem(&pem_text).expect("load sec1");
        assert_eq!(loaded.key_type(), Some(KeyType::EcdsaP256));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            PrivateKey::from_pem("hello"),
            Err(KeyError::NotPem(_))
        ));
        let cert_block = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert!(matches!(
            PrivateKey::from_pem(&cert_block),
            Err(KeyError::UnsupportedPemTag(_))
        ));
    }

    #[test]
    fn key_type_names_parse() {
        assert_eq!(
            "rsa-2048".parse::<KeyType>().expect("rsa"),
            KeyType::Rsa2048
        );
        assert!("dsa".parse::<KeyType>().is_err());
    }
}
