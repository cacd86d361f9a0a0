//! Errors of the `bootstrap` commands.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Pki(#[from] cairn_pki::PkiError),
    #[error("{flag}: {message}")]
    InvalidFlag { flag: &'static str, message: String },
    #[error("{path}: {source}")]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: cairn_pki::cert::CertError,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Profile(#[from] cairn_images::profile::ProfileError),
    #[error("image build failed: {0}")]
    Build(#[from] cairn_images::build::BuildError),
    #[error("{0}")]
    Inspect(String),
    #[error(transparent)]
    Vm(#[from] cairn_qemu_tests::VmError),
    #[error(transparent)]
    Lab(#[from] cairn_qemu_tests::LabError),
    #[error(transparent)]
    NodeApi(#[from] cairn_node_api::ClientError),
    #[error(transparent)]
    Token(#[from] crate::commands::token::TokenError),
    #[error(transparent)]
    NodeConfig(Box<crate::commands::init::NodeConfigError>),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}
