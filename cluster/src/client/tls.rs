//! The rustls client configuration: which server certificates are trusted
//! and how the client proves who it is.
//!
//! Only ring's provider and ALPN `http/1.1` are offered (the apiserver
//! would otherwise pick h2). [`ServerTrust::InsecureSkipVerify`] exists
//! solely for the first, anonymous read of `cluster-info` during token
//! discovery, whose content is then authenticated by the JWS and the CA
//! pin; even then the handshake signature is checked so the peer really
//! holds the key of the certificate it showed.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::Error;

/// How the client decides it talks to the right API server.
#[derive(Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Trust server certificates issued by these CAs (PEM, one or more).
    CaPem(Vec<u8>),
    /// Accept any server certificate. Only for reading `cluster-info`
    /// before the CA is known; never send credentials this way.
    InsecureSkipVerify,
}

impl fmt::Debug for ServerTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerTrust::CaPem(pem) => write!(f, "CaPem({} bytes)", pem.len()),
            ServerTrust::InsecureSkipVerify => f.write_str("InsecureSkipVerify"),
        }
    }
}

/// How the client authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials: `system:anonymous`.
    Anonymous,
    /// An X.509 client certificate (chain PEM, client first) and its key
    /// (PKCS#8, SEC1 or PKCS#1 PEM).
    ClientCertificate {
        /// Certificate chain PEM.
        cert_pem: Vec<u8>,
        /// Private key PEM.
        key_pem: Vec<u8>,
    },
    /// `Authorization: Bearer <token>` (bootstrap or service-account token).
    BearerToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::ClientCertificate { .. } => f.write_str("ClientCertificate { .. }"),
            Credentials::BearerToken(_) => f.write_str("BearerToken(<redacted>)"),
        }
    }
}

/// Accepts any certificate; still verifies the handshake signature with
/// the key in it.
#[derive(Debug)]
struct AcceptAnyServerCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Builds the rustls configuration; returns the bearer token to send, if
/// any.
pub(crate) fn client_config(
    trust: &ServerTrust,
    credentials: &Credentials,
) -> Result<(ClientConfig, Option<String>), Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Trust(e.to_string()))?;
    let builder = match trust {
        ServerTrust::CaPem(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| Error::Trust(format!("CA PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::Trust(format!("CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(Error::Trust("no CERTIFICATE block in the CA PEM".into()));
            }
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::Trust(e.to_string()))?;
            builder.with_webpki_verifier(verifier)
        }
        ServerTrust::InsecureSkipVerify => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCertificate {
                    algorithms: provider.signature_verification_algorithms,
                }))
        }
    };
    let (mut config, bearer) = match credentials {
        Credentials::Anonymous => (builder.with_no_client_auth(), None),
        Credentials::BearerToken(token) => {
            let token = token.trim();
            if token.is_empty() || token.bytes().any(|b| b.is_ascii_control()) {
                return Err(Error::Credentials(
                    "bearer token is empty or contains control characters".into(),
                ));
            }
            (builder.with_no_client_auth(), Some(token.to_owned()))
        }
        Credentials::ClientCertificate { cert_pem, key_pem } => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Credentials(format!("client certificate PEM: {e}")))?;
            if chain.is_empty() {
                return Err(Error::Credentials(
                    "no CERTIFICATE block in the client certificate PEM".into(),
                ));
            }
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| Error::Credentials(format!("client key PEM: {e}")))?;
            let config = builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Credentials(format!("client certificate and key: {e}")))?;
            (config, None)
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, bearer))
}
