//! The client the QEMU lab and `bootstrap` use.

use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, OtherError,
    RootCertStore, SignatureScheme, StreamOwned,
};
use serde::de::DeserializeOwned;

use crate::http::{self, ParsedResponse};
use crate::identity::certificate_fingerprint;
use crate::key::MaintenanceKey;
use crate::protocol::{
    ErrorBody, NodeStatus, ResetRequest, ResetResponse, RunContainerRequest, RunContainerResponse,
    paths,
};

/// Largest response body the client accepts.
const MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;
/// Largest response head the client accepts.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How the client decides that it talks to the right node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Pin the server certificate: `sha256:<64 hex>` of its DER, as
    /// node-agent prints it on the console. Names and dates are not
    /// checked; the handshake signature is.
    Fingerprint(String),
    /// Trust certificates issued by these CAs (PEM, one or more), checked
    /// for the node's address (or [`NodeClient::with_server_name`]).
    CaPem(String),
}

/// How the client authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A client certificate issued by a CA the node trusts: every endpoint.
    ClientCert {
        /// Certificate chain PEM (client certificate first).
        cert_pem: String,
        /// Private key PEM.
        key_pem: String,
    },
    /// The node's maintenance key: status and config only.
    MaintenanceKey(MaintenanceKey),
    /// No credentials (every endpoint answers 401).
    Anonymous,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ClientCert { .. } => f.write_str("ClientCert { .. }"),
            Credentials::MaintenanceKey(_) => f.write_str("MaintenanceKey(<redacted>)"),
            Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// What went wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The [`ServerTrust`] is unusable.
    #[error("invalid server trust: {0}")]
    Trust(String),
    /// The [`Credentials`] are unusable.
    #[error("invalid client credentials: {0}")]
    Credentials(String),
    /// The address did not resolve.
    #[error("cannot resolve {address}: {reason}")]
    Resolve {
        /// What was given.
        address: String,
        /// Why it failed.
        reason: String,
    },
    /// TCP connect failed or timed out.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The node.
        address: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// The node presented a certificate other than the pinned one.
    #[error(
        "{address}: the node's certificate fingerprint is {seen}, expected {expected} \
         (wrong node, or its identity was regenerated)"
    )]
    FingerprintMismatch {
        /// The node.
        address: SocketAddr,
        /// The pinned fingerprint.
        expected: String,
        /// What the node presented.
        seen: String,
    },
    /// TLS failed (untrusted server certificate, client certificate refused
    /// by the node, ...).
    #[error("{request} on {address}: TLS: {message}")]
    Tls {
        /// The node.
        address: SocketAddr,
        /// `METHOD /path`.
        request: String,
        /// rustls' error.
        message: String,
    },
    /// The connection broke or timed out.
    #[error("{request} on {address}: {source}")]
    Io {
        /// The node.
        address: SocketAddr,
        /// `METHOD /path`.
        request: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The node answered with an error status.
    #[error("{request} on {address}: HTTP {status}: {message}")]
    Status {
        /// The node.
        address: SocketAddr,
        /// `METHOD /path`.
        request: String,
        /// HTTP status.
        status: u16,
        /// The node's error text.
        message: String,
        /// Details the node sent.
        problems: Vec<String>,
    },
    /// `POST /v1/config` answered 422: the machine config has problems.
    #[error("{address}: the machine config was rejected:\n  {}", problems.join("\n  "))]
    ConfigRejected {
        /// The node.
        address: SocketAddr,
        /// One `source: key: reason` line per problem.
        problems: Vec<String>,
    },
    /// The answer is not what the protocol says.
    #[error("{request} on {address}: invalid answer: {reason}")]
    InvalidResponse {
        /// The node.
        address: SocketAddr,
        /// `METHOD /path`.
        request: String,
        /// What is wrong.
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status the node answered with, if it answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            ClientError::ConfigRejected { .. } => Some(422),
            _ => None,
        }
    }
}

/// The fingerprint mismatch, carried through rustls as the certificate
/// error's source.
#[derive(Debug)]
struct Mismatch {
    expected: String,
    seen: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate fingerprint {} is not the pinned {}",
            self.seen, self.expected
        )
    }
}

impl std::error::Error for Mismatch {}

/// Accepts exactly the end-entity certificate whose DER hashes to the
/// pinned fingerprint; handshake signatures are still verified with the
/// provider's algorithms.
#[derive(Debug)]
struct PinnedVerifier {
    expected: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = certificate_fingerprint(end_entity);
        // Both sides are public; a plain comparison is fine.
        if seen == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(Mismatch {
                    expected: self.expected.clone(),
                    seen,
                })),
            )))
        }
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

/// Normalizes and checks a `sha256:<hex>` fingerprint.
fn parse_fingerprint(text: &str) -> Result<String, ClientError> {
    let text = text.trim();
    let hex_part = text.strip_prefix("sha256:").ok_or_else(|| {
        ClientError::Trust(format!("fingerprint {text:?} does not start with sha256:"))
    })?;
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ClientError::Trust(format!(
            "fingerprint {text:?} is not sha256: followed by 64 hex digits"
        )));
    }
    Ok(format!("sha256:{}", hex_part.to_ascii_lowercase()))
}

/// A client for one node. Each call opens its own connection.
#[derive(Clone)]
pub struct NodeClient {
    address: SocketAddr,
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
    bearer: Option<String>,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeClient")
            .field("address", &self.address)
            .field("server_name", &self.server_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .finish_non_exhaustive()
    }
}

impl NodeClient {
    /// A client for the node at `address` (the first address it resolves
    /// to). Timeouts: 10 s to connect, 30 s per read or write.
    pub fn new(
        address: impl ToSocketAddrs + fmt::Debug,
        trust: ServerTrust,
        credentials: Credentials,
    ) -> Result<Self, ClientError> {
        let resolve_error = |reason: String| ClientError::Resolve {
            address: format!("{address:?}"),
            reason,
        };
        let address = address
            .to_socket_addrs()
            .map_err(|e| resolve_error(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_error("no address".into()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Trust(e.to_string()))?;
        let builder =
            match trust {
                ServerTrust::Fingerprint(text) => builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                        expected: parse_fingerprint(&text)?,
                        algorithms: provider.signature_verification_algorithms,
                    })),
                ServerTrust::CaPem(pem) => {
                    let verifier = ca_verifier(&pem, &provider)?;
                    builder.with_webpki_verifier(verifier)
                }
            };
        let (config, bearer) = match credentials {
            Credentials::ClientCert { cert_pem, key_pem } => {
                let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ClientError::Credentials(format!("certificate PEM: {e}")))?;
                if chain.is_empty() {
                    return Err(ClientError::Credentials(
                        "no CERTIFICATE block in the certificate PEM".into(),
                    ));
                }
                let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                    .map_err(|e| ClientError::Credentials(format!("private key PEM: {e}")))?;
                let config = builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| ClientError::Credentials(e.to_string()))?;
                (config, None)
            }
            Credentials::MaintenanceKey(key) => {
                (builder.with_no_client_auth(), Some(key.to_string()))
            }
            Credentials::Anonymous => (builder.with_no_client_auth(), None),
        };
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            address,
            server_name: ServerName::IpAddress(address.ip().into()),
            config: Arc::new(config),
            bearer,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
        })
    }

    /// Checks the server certificate (in [`ServerTrust::CaPem`] mode) for
    /// this DNS name or IP instead of the connection's IP address.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, ClientError> {
        self.server_name = ServerName::try_from(name.to_owned())
            .map_err(|e| ClientError::Trust(format!("server name {name:?}: {e}")))?;
        Ok(self)
    }

    /// TCP connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Timeout of each read and write.
    pub fn with_io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// The node's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<NodeStatus, ClientError> {
        let request = format!("GET {}", paths::STATUS);
        let response = self.call("GET", paths::STATUS, None, &[], self.io_timeout)?;
        self.expect(&request, &response, 200)?;
        self.decode(&request, &response)
    }

    /// `GET /v1/logs/{service}?lines=N`.
    pub fn logs(&self, service: &str, lines: usize) -> Result<String, ClientError> {
        let target = format!(
            "{}{}?lines={lines}",
            paths::LOGS_PREFIX,
            http::percent_encode(service)
        );
        let request = format!("GET {target}");
        let response = self.call("GET", &target, None, &[], self.io_timeout)?;
        self.expect(&request, &response, 200)?;
        Ok(String::from_utf8_lossy(&response.body).into_owned())
    }

    /// `GET /v1/read?path=`: the file's bytes (at most 1 MiB).
    pub fn read(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let target = format!("{}?path={}", paths::READ, http::percent_encode(path));
        let request = format!("GET {target}");
        let response = self.call("GET", &target, None, &[], self.io_timeout)?;
        self.expect(&request, &response, 200)?;
        Ok(response.body)
    }

    /// `POST /v1/config`. A config with problems is
    /// [`ClientError::ConfigRejected`].
    pub fn apply_config(&self, toml: &str) -> Result<(), ClientError> {
        let request = format!("POST {}", paths::CONFIG);
        let response = self.call(
            "POST",
            paths::CONFIG,
            Some("application/toml"),
            toml.as_bytes(),
            self.io_timeout,
        )?;
        if response.status == 422 {
            let body: ErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
            return Err(ClientError::ConfigRejected {
                address: self.address,
                problems: if body.problems.is_empty() {
                    vec![body.error]
                } else {
                    body.problems
                },
            });
        }
        self.expect(&request, &response, 202)
    }

    /// `POST /v1/reboot`.
    pub fn reboot(&self) -> Result<(), ClientError> {
        self.post_empty(paths::REBOOT)
    }

    /// `POST /v1/shutdown`.
    pub fn shutdown(&self) -> Result<(), ClientError> {
        self.post_empty(paths::SHUTDOWN)
    }

    /// `POST /v1/reset`: the node leaves the cluster (when graceful), then
    /// wipes STATE and restarts once it has answered.
    pub fn reset(&self, reset: &ResetRequest) -> Result<ResetResponse, ClientError> {
        let request = format!("POST {}", paths::RESET);
        let body = serde_json::to_vec(reset).map_err(|e| ClientError::InvalidResponse {
            address: self.address,
            request: request.clone(),
            reason: format!("cannot encode the request: {e}"),
        })?;
        // Leaving etcd and deleting the Node may take a while under
        // emulation.
        let wait = self.io_timeout.max(Duration::from_secs(90));
        let response = self.call("POST", paths::RESET, Some("application/json"), &body, wait)?;
        self.expect(&request, &response, 202)?;
        self.decode(&request, &response)
    }

    /// `POST /v1/containers/run`; waits up to the request's timeout plus
    /// the I/O timeout.
    pub fn run_container(
        &self,
        run: &RunContainerRequest,
    ) -> Result<RunContainerResponse, ClientError> {
        let request = format!("POST {}", paths::CONTAINERS_RUN);
        let body = serde_json::to_vec(run).map_err(|e| ClientError::InvalidResponse {
            address: self.address,
            request: request.clone(),
            reason: format!("cannot encode the request: {e}"),
        })?;
        let wait = self
            .io_timeout
            .saturating_add(Duration::from_secs(run.timeout_seconds));
        let response = self.call(
            "POST",
            paths::CONTAINERS_RUN,
            Some("application/json"),
            &body,
            wait,
        )?;
        self.expect(&request, &response, 200)?;
        self.decode(&request, &response)
    }

    fn post_empty(&self, path: &str) -> Result<(), ClientError> {
        let request = format!("POST {path}");
        let response = self.call("POST", path, None, &[], self.io_timeout)?;
        self.expect(&request, &response, 202)
    }

    fn expect(
        &self,
        request: &str,
        response: &ParsedResponse,
        status: u16,
    ) -> Result<(), ClientError> {
        if response.status == status {
            return Ok(());
        }
        let (message, problems) = match serde_json::from_slice::<ErrorBody>(&response.body) {
            Ok(body) if !body.error.is_empty() => (body.error, body.problems),
            _ => {
                let text = String::from_utf8_lossy(&response.body);
                (text.chars().take(500).collect(), Vec::new())
            }
        };
        Err(ClientError::Status {
            address: self.address,
            request: request.to_owned(),
            status: response.status,
            message,
            problems,
        })
    }

    fn decode<T: DeserializeOwned>(
        &self,
        request: &str,
        response: &ParsedResponse,
    ) -> Result<T, ClientError> {
        serde_json::from_slice(&response.body).map_err(|e| ClientError::InvalidResponse {
            address: self.address,
            request: request.to_owned(),
            reason: format!("bad JSON: {e}"),
        })
    }

    fn call(
        &self,
        method: &str,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
        io_timeout: Duration,
    ) -> Result<ParsedResponse, ClientError> {
        let request = format!("{method} {target}");
        let tcp =
            TcpStream::connect_timeout(&self.address, self.connect_timeout).map_err(|source| {
                ClientError::Connect {
                    address: self.address,
                    source,
                }
            })?;
        let io_error = |source: io::Error| self.classify(&request, source);
        tcp.set_read_timeout(Some(io_timeout))
            .and_then(|()| tcp.set_write_timeout(Some(io_timeout)))
            .and_then(|()| tcp.set_nodelay(true))
            .map_err(io_error)?;
        let conn =
            ClientConnection::new(self.config.clone(), self.server_name.clone()).map_err(|e| {
                ClientError::Tls {
                    address: self.address,
                    request: request.clone(),
                    message: e.to_string(),
                }
            })?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            let (read, written) = stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(io_error)?;
            if read == 0 && written == 0 && stream.conn.is_handshaking() {
                return Err(io_error(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the node closed the connection during the TLS handshake",
                )));
            }
        }

        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        if let Some(content_type) = content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        if let Some(key) = &self.bearer {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        head.push_str("\r\n");
        let sent = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .and_then(|()| stream.flush());
        // A node refusing the request (e.g. 413) may close before reading
        // all of it: still try to read its answer.
        let answer = http::read_response(&mut stream, MAX_RESPONSE_HEAD, MAX_RESPONSE_BODY);
        match (sent, answer) {
            (_, Ok(Ok(response))) => Ok(response),
            (Err(e), _) => Err(io_error(e)),
            (Ok(()), Err(e)) => Err(io_error(e)),
            (Ok(()), Ok(Err(reason))) => Err(ClientError::InvalidResponse {
                address: self.address,
                request,
                reason,
            }),
        }
    }

    /// Turns an I/O error into the most telling [`ClientError`].
    fn classify(&self, request: &str, source: io::Error) -> ClientError {
        let tls = source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match tls {
            Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
                match other.0.downcast_ref::<Mismatch>() {
                    Some(mismatch) => ClientError::FingerprintMismatch {
                        address: self.address,
                        expected: mismatch.expected.clone(),
                        seen: mismatch.seen.clone(),
                    },
                    None => ClientError::Tls {
                        address: self.address,
                        request: request.to_owned(),
                        message: other.0.to_string(),
                    },
                }
            }
            Some(e) => ClientError::Tls {
                address: self.address,
                request: request.to_owned(),
                message: e.to_string(),
            },
            None => ClientError::Io {
                address: self.address,
                request: request.to_owned(),
                source,
            },
        }
    }
}

fn ca_verifier(
    pem: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, ClientError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Trust(format!("CA PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError::Trust(
            "no CERTIFICATE block in the CA PEM".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| ClientError::Trust(format!("CA certificate #{}: {e}", i + 1)))?;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ClientError::Trust(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_checked_and_normalized() {
        let upper = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(
            parse_fingerprint(&upper).ok(),
            Some(format!("sha256:{}", "ab".repeat(32)))
        );
        for bad in [
            "",
            "sha256:abc",
            "md5:00",
            &format!("sha256:{}", "zz".repeat(32)),
        ] {
            assert!(
                matches!(parse_fingerprint(bad), Err(ClientError::Trust(_))),
                "{bad:?} accepted"
            );
        }
    }
}
