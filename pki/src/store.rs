//! Reading existing PKI material from disk and judging whether it can be
//! reused for a request.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use time::OffsetDateTime;

use crate::cert::{self, CertInfo, CertRequest};
use crate::error::PkiError;
use crate::key::PrivateKey;
use crate::layout::{Authority, PkiPaths};

/// Reads a file, treating "does not exist" as `None` and anything else
/// (permissions, a directory in the way) as an error worth stopping for.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        // A file where a parent directory should be means the file does not
        // exist either; writing will report the real problem.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(source) => Err(PkiError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub(crate) fn parse_key(path: &Path, text: &str) -> Result<PrivateKey, PkiError> {
    PrivateKey::from_pem(text).map_err(|source| PkiError::BadKey {
        path: path.to_path_buf(),
        source,
    })
}

/// A CA read from disk (or just created). Without its key it can only be
/// trusted, not sign: kubeadm's "external CA" mode.
#[derive(Debug)]
pub struct LoadedAuthority {
    pub authority: Authority,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub info: CertInfo,
    pub key: Option<PrivateKey>,
}

impl LoadedAuthority {
    pub fn from_parts(
        authority: Authority,
        cert_pem: String,
        key: Option<PrivateKey>,
    ) -> Result<Self, cert::CertError> {
        let cert_der = cert::pem_to_der(&cert_pem)?;
        let info = CertInfo::from_der(&cert_der)?;
        Ok(Self {
            authority,
            cert_pem,
            cert_der,
            info,
            key,
        })
    }

    /// Loads `<base>.crt` and `<base>.key`; `None` when neither exists.
    pub fn load(paths: &PkiPaths, authority: Authority) -> Result<Option<Self>, PkiError> {
        let cert_path = paths.cert(authority.base_path());
        let key_path = paths.key(authority.base_path());
        let cert_text = read_optional(&cert_path)?;
        let key_text = read_optional(&key_path)?;
        let cert_pem = match (cert_text, &key_text) {
            (None, None) => return Ok(None),
            (None, Some(_)) => {
                return Err(PkiError::MissingCaCert {
                    key: key_path,
                    cert: cert_path,
                });
            }
            (Some(cert_pem), _) => cert_pem,
        };
        let key = key_text
            .map(|text| parse_key(&key_path, &text))
            .transpose()?;
        let loaded =
            Self::from_parts(authority, cert_pem, key).map_err(|source| PkiError::BadCert {
                path: cert_path.clone(),
                source,
            })?;
        if !loaded.info.is_ca {
            return Err(PkiError::NotACa { path: cert_path });
        }
        if let Some(key) = &loaded.key
            && !loaded.info.matches_key(key)
        {
            return Err(PkiError::KeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        Ok(Some(loaded))
    }

    /// Signs a leaf, or explains that this CA has no key to sign with.
    pub fn sign(
        &self,
        paths: &PkiPaths,
        name: &str,
        request: &CertRequest,
        subject_key: &PrivateKey,
        now: OffsetDateTime,
    ) -> Result<String, PkiError> {
        let ca_key = self.key.as_ref().ok_or_else(|| PkiError::CaKeyRequired {
            authority: self.authority.name(),
            key: paths.key(self.authority.base_path()),
            needed_for: name.to_owned(),
        })?;
        cert::issue(request, subject_key, &self.cert_der, ca_key, now).map_err(|source| {
            PkiError::Sign {
                name: name.to_owned(),
                source,
            }
        })
    }
}

/// Why an existing certificate cannot serve `request` any more, or `None`
/// when it can be reused as it is.
pub(crate) fn staleness(
    cert_pem: &str,
    key: &PrivateKey,
    request: &CertRequest,
    ca: &LoadedAuthority,
    now: OffsetDateTime,
) -> Option<String> {
    let der = match cert::pem_to_der(cert_pem) {
        Ok(der) => der,
        Err(e) => return Some(format!("the certificate cannot be read ({e})")),
    };
    let info = match CertInfo::from_der(&der) {
        Ok(info) => info,
        Err(e) => return Some(format!("the certificate cannot be parsed ({e})")),
    };
    if !info.matches_key(key) {
        return Some("its key does not match the certificate".to_owned());
    }
    if !cert::is_signed_by(&der, &ca.cert_der) {
        return Some(format!(
            "it is not signed by the current {}",
            ca.authority.name()
        ));
    }
    if info.common_name != request.common_name || info.organizations != request.organizations {
        return Some(format!(
            "its subject changed (was CN={} O={:?}, now CN={} O={:?})",
            info.common_name, info.organizations, request.common_name, request.organizations
        ));
    }
    if info.usage() != request.usage {
        return Some(format!(
            "its key usage changed (was {:?}, now {:?})",
            info.usage(),
            request.usage
        ));
    }
    if info.sans != request.sans {
        return Some(describe_san_change(&info.sans, &request.sans));
    }
    if info.not_after <= now {
        return Some(format!("it expired on {}", info.not_after.date()));
    }
    None
}

fn describe_san_change<T: Ord + std::fmt::Display>(old: &BTreeSet<T>, new: &BTreeSet<T>) -> String {
    let join = |items: Vec<&T>| {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let added: Vec<&T> = new.difference(old).collect();
    let removed: Vec<&T> = old.difference(new).collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("added {}", join(added)));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", join(removed)));
    }
    format!("its SANs changed ({})", parts.join("; "))
}
