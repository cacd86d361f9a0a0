//! The server's TLS identity: a key pair and its certificate.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// File name of the private key inside the identity directory.
pub const KEY_FILE: &str = "api.key";
/// File name of the certificate inside the identity directory.
pub const CERT_FILE: &str = "api.crt";
/// Common name of generated certificates.
pub const GENERATED_COMMON_NAME: &str = "cairn-node-api";

/// Why an identity could not be created, loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// rcgen refused the parameters (e.g. a malformed DNS name) or failed.
    #[error("cannot generate the node API certificate for SANs {sans:?}: {source}")]
    Generate {
        /// The requested subject alternative names.
        sans: Vec<String>,
        /// The underlying error.
        source: rcgen::Error,
    },
    /// A subject alternative name is neither an IP address nor a DNS name.
    #[error("{san:?} is neither an IP address nor a valid DNS name")]
    InvalidSan {
        /// The offending name.
        san: String,
    },
    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "create directory", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The certificate or key PEM is unusable.
    #[error("invalid node API identity{}: {reason}", origin.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Invalid {
        /// The directory it was loaded from, if any.
        origin: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
}

/// The node API server's certificate chain and private key.
///
/// Usually a self-signed ECDSA P-256 certificate that clients pin by
/// [`fingerprint`](Self::fingerprint) (`sha256:` + hex of the certificate's
/// DER), SSH-style; or a certificate issued by a CA clients trust
/// ([`from_pem`](Self::from_pem)).
pub struct ServerIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
    fingerprint: String,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("fingerprint", &self.fingerprint)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Clone for ServerIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

/// `sha256:<64 lowercase hex>` of a certificate's DER bytes: what clients
/// pin.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

impl ServerIdentity {
    /// A fresh self-signed ECDSA P-256 certificate for `sans` (IP addresses
    /// become IP SANs, anything else DNS SANs), CN `cairn-node-api`.
    ///
    /// The validity is rcgen's wide default (1975 to 4096): a node's clock
    /// may be wrong at first boot, and clients pin the certificate itself.
    pub fn generate<S: AsRef<str>>(sans: &[S]) -> Result<Self, IdentityError> {
        let sans: Vec<String> = sans.iter().map(|s| s.as_ref().to_owned()).collect();
        for san in &sans {
            let is_ip = san.parse::<std::net::IpAddr>().is_ok();
            if !is_ip && rustls::pki_types::DnsName::try_from(san.as_str()).is_err() {
                return Err(IdentityError::InvalidSan { san: san.clone() });
            }
        }
        let generate_error = |source| IdentityError::Generate {
            sans: sans.clone(),
            source,
        };
        let mut params = rcgen::CertificateParams::new(sans.clone()).map_err(generate_error)?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, GENERATED_COMMON_NAME);
        params.distinguished_name = dn;
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().map_err(generate_error)?;
        let cert = params.self_signed(&key).map_err(generate_error)?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// An identity from PEM text: `cert_pem` holds the server certificate
    /// first, then any intermediates; `key_pem` its private key (PKCS#8,
    /// SEC1 or PKCS#1). The key must match the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        Self::from_pem_at(cert_pem, key_pem, None)
    }

    fn from_pem_at(
        cert_pem: &str,
        key_pem: &str,
        origin: Option<&Path>,
    ) -> Result<Self, IdentityError> {
        let invalid = |reason: String| IdentityError::Invalid {
            origin: origin.map(Path::to_path_buf),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("certificate PEM: {e}")))?;
        let Some(leaf) = chain.first() else {
            return Err(invalid(
                "no CERTIFICATE block in the certificate PEM".into(),
            ));
        };
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| invalid(format!("private key PEM: {e}")))?;
        let provider = rustls::crypto::ring::default_provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| invalid(format!("private key: {e}")))?;
        CertifiedKey::new(chain.clone(), signing_key)
            .keys_match()
            .map_err(|e| invalid(format!("the key does not belong to the certificate: {e}")))?;
        let fingerprint = certificate_fingerprint(leaf);
        Ok(Self {
            chain,
            key,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            fingerprint,
        })
    }

    /// Loads `dir/api.key` + `dir/api.crt`, or generates a new self-signed
    /// identity for `sans` and stores it there when either file is missing.
    ///
    /// Files are written to temporaries, synced and renamed into place, the
    /// key with mode 0600, the directory created with 0700. An existing
    /// pair is kept as is even when `sans` changed (clients pin the
    /// certificate, so it must not change behind their back); an existing
    /// but unusable pair is an error rather than silently replaced.
    pub fn load_or_generate<S: AsRef<str>>(dir: &Path, sans: &[S]) -> Result<Self, IdentityError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        if key_path.exists() && cert_path.exists() {
            let read = |path: &Path| {
                fs::read_to_string(path).map_err(|source| IdentityError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                })
            };
            return Self::from_pem_at(&read(&cert_path)?, &read(&key_path)?, Some(dir));
        }
        let identity = Self::generate(sans)?;
        identity.store(dir)?;
        Ok(identity)
    }

    /// Writes `dir/api.key` (0600) and `dir/api.crt` (0644) atomically.
    pub fn store(&self, dir: &Path) -> Result<(), IdentityError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| IdentityError::Io {
                action: "create directory",
                path: dir.to_path_buf(),
                source,
            })?;
        write_atomic(dir, KEY_FILE, self.key_pem.as_bytes(), 0o600)?;
        write_atomic(dir, CERT_FILE, self.cert_pem.as_bytes(), 0o644)?;
        if let Ok(handle) = fs::File::open(dir) {
            // Best effort: makes the renames durable.
            let _ = handle.sync_all();
        }
        Ok(())
    }

    /// `sha256:<64 lowercase hex>` of the server certificate's DER.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The certificate chain in PEM (server certificate first).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The server certificate in DER.
    pub fn certificate_der(&self) -> &[u8] {
        self.chain.first().map(|c| c.as_ref()).unwrap_or_default()
    }

    pub(crate) fn certified_key(
        &self,
        provider: &CryptoProvider,
    ) -> Result<Arc<CertifiedKey>, rustls::Error> {
        let signing_key = provider
            .key_provider
            .load_private_key(self.key.clone_key())?;
        Ok(Arc::new(CertifiedKey::new(self.chain.clone(), signing_key)))
    }
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), IdentityError> {
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let io_error = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| IdentityError::Io {
            action,
            path,
            source,
        }
    };
    // A temporary left behind by a crash is ours to replace.
    let _ = fs::remove_file(&temp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .map_err(io_error("create", &temp))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &temp));
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    fs::rename(&temp, &target).map_err(|source| {
        let _ = fs::remove_file(&temp);
        IdentityError::Io {
            action: "rename into place",
            path: target.clone(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_has_a_sha256_fingerprint_of_its_der() -> Result<(), IdentityError> {
        let id = ServerIdentity::generate(&["127.0.0.1", "node-1.example"])?;
        let fp = id.fingerprint();
        assert!(fp.starts_with("sha256:"), "{fp}");
        let hex_part = &fp["sha256:".len()..];
        assert_eq!(hex_part.len(), 64, "{fp}");
        assert!(
            hex_part
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{fp}"
        );
        assert_eq!(fp, certificate_fingerprint(id.certificate_der()));
        Ok(())
    }

    #[test]
    fn bad_san_is_reported() {
        let err = ServerIdentity::generate(&["not a name\u{0}"]);
        assert!(
            matches!(err, Err(IdentityError::InvalidSan { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn debug_does_not_show_the_key() -> Result<(), IdentityError> {
        let id = ServerIdentity::generate(&["a.example"])?;
        let text = format!("{id:?}");
        assert!(
            !text.contains("PRIVATE KEY") && text.contains(id.fingerprint()),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn mismatched_key_is_refused() -> Result<(), IdentityError> {
        let a = ServerIdentity::generate(&["a.example"])?;
        let b = ServerIdentity::generate(&["b.example"])?;
        let err = ServerIdentity::from_pem(a.cert_pem(), &b.key_pem);
        match err {
            Err(IdentityError::Invalid { reason, .. }) => {
                assert!(reason.contains("does not belong"), "{reason}")
            }
            other => panic!("expected a key mismatch, got {other:?}"),
        }
        Ok(())
    }
}
