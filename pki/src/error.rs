//! The error type of every PKI operation. Each variant names the file it is
//! about and, where the user can act, what to do.

use std::path::PathBuf;

use crate::cert::CertError;
use crate::fileset::WriteError;
use crate::key::KeyError;
use crate::kubeconfig::KubeconfigError;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable certificate: {source}")]
    BadCert {
        path: PathBuf,
        #[source]
        source: CertError,
    },
    #[error("{path} is not a usable private key: {source}")]
    BadKey {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("{path} is not a usable kubeconfig: {source}")]
    BadKubeconfig {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    #[error(
        "{key} does not match {cert} (their public keys differ); restore the key that belongs to this certificate, or move both away to create a new CA"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path} is not a CA certificate (basicConstraints CA:TRUE is missing)")]
    NotACa { path: PathBuf },
    #[error(
        "{key} exists but {cert} does not; restore the certificate, or move the key away to create a new CA"
    )]
    MissingCaCert { key: PathBuf, cert: PathBuf },
    #[error(
        "cannot issue {needed_for}: {authority} has no private key at {key} (external CA); provide the key, or create {needed_for} with your CA"
    )]
    CaKeyRequired {
        authority: &'static str,
        key: PathBuf,
        needed_for: String,
    },
    #[error("{0}")]
    Generate(#[from] KeyError),
    #[error("cannot sign {name}: {source}")]
    Sign {
        name: String,
        #[source]
        source: CertError,
    },
    #[error("cannot encode {path}: {source}")]
    EncodeKubeconfig {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    #[error("{name} does not exist at {path}; run `bootstrap certs generate` first")]
    NotFound { name: String, path: PathBuf },
    #[error(
        "--apiserver-cert-extra-sans applies to the apiserver certificate; renew `apiserver` or `all`, not {0:?}"
    )]
    ExtraSansNotApplicable(String),
    #[error("unknown certificate {name:?}; expected one of: {known}")]
    UnknownName { name: String, known: String },
    #[error(transparent)]
    Write(#[from] WriteError),
}
