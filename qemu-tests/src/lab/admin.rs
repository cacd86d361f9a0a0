//! The lab's admin credentials: a CA generated at `up` and a client
//! certificate it signed. Nodes trust the CA through `[api] client-ca` in
//! their machine config; the lab (and a user, through the files in
//! `<lab dir>/admin/`) authenticates to the node API with the certificate.

use std::path::{Path, PathBuf};

use cairn_pki::cert::{CertRequest, Usage, issue, pem_to_der, self_signed_ca};
use cairn_pki::{KeyType, PrivateKey};
use serde::{Deserialize, Serialize};

use super::LabError;

/// Paths of the admin material inside the lab directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminPaths {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl AdminPaths {
    pub fn in_dir(dir: &Path) -> Self {
        let admin = dir.join("admin");
        Self {
            ca_cert: admin.join("ca.crt"),
            cert: admin.join("admin.crt"),
            key: admin.join("admin.key"),
        }
    }
}

/// The admin CA and client credentials (PEM).
#[derive(Clone)]
pub struct AdminCredentials {
    pub paths: AdminPaths,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

fn pki_error(e: impl std::fmt::Display) -> LabError {
    LabError::Pki(e.to_string())
}

impl AdminCredentials {
    /// Generates a CA (`cairn-lab-<name>-admin-ca`) and a client certificate
    /// (CN `cairn-lab-admin`, O `system:masters`) and writes them to
    /// `<dir>/admin/` (the key files 0600).
    pub fn generate(lab: &str, dir: &Path) -> Result<Self, LabError> {
        let now = time::OffsetDateTime::now_utc();
        let ca_key = PrivateKey::generate(KeyType::EcdsaP256).map_err(pki_error)?;
        let ca_pem = self_signed_ca(&format!("cairn-lab-{lab}-admin-ca"), &ca_key, now)
            .map_err(pki_error)?;
        let ca_der = pem_to_der(&ca_pem).map_err(pki_error)?;
        let key = PrivateKey::generate(KeyType::EcdsaP256).map_err(pki_error)?;
        let request =
            CertRequest::new("cairn-lab-admin", Usage::Client).with_organization("system:masters");
        let cert_pem = issue(&request, &key, &ca_der, &ca_key, now).map_err(pki_error)?;
        let paths = AdminPaths::in_dir(dir);
        let admin_dir = dir.join("admin");
        std::fs::create_dir_all(&admin_dir).map_err(|e| LabError::io(&admin_dir, e))?;
        write_file(&admin_dir.join("ca.key"), &ca_key.to_pem(), 0o600)?;
        write_file(&paths.ca_cert, &ca_pem, 0o644)?;
        write_file(&paths.cert, &cert_pem, 0o644)?;
        let key_pem = key.to_pem();
        write_file(&paths.key, &key_pem, 0o600)?;
        Ok(Self {
            paths,
            ca_pem,
            cert_pem,
            key_pem,
        })
    }

    /// Reads the material written by [`AdminCredentials::generate`].
    pub fn load(dir: &Path) -> Result<Self, LabError> {
        let paths = AdminPaths::in_dir(dir);
        let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| LabError::io(path, e));
        Ok(Self {
            ca_pem: read(&paths.ca_cert)?,
            cert_pem: read(&paths.cert)?,
            key_pem: read(&paths.key)?,
            paths,
        })
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), LabError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| LabError::io(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| LabError::io(path, e))
}
