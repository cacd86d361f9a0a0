//! The HTTPS server node-agent runs on :50000.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use serde::Serialize;

use crate::http::{self, Limits, ReadError, Request, Response};
use crate::identity::ServerIdentity;
use crate::key::MaintenanceKey;
use crate::protocol::{
    ApplyConfigResponse, ErrorBody, NodeStatus, ResetRequest, ResetResponse, RunContainerRequest,
    RunContainerResponse, paths,
};

/// Default number of log lines when `?lines=` is absent.
pub const DEFAULT_LOG_LINES: usize = 100;
/// Most log lines one request may ask for.
pub const MAX_LOG_LINES: usize = 100_000;
/// Largest file `GET /v1/read` returns.
pub const MAX_READ_BYTES: usize = 1024 * 1024;

/// Who made a request, as established by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A client certificate that chains to the configured client CA set.
    Certificate {
        /// The subject's first common name.
        common_name: Option<String>,
        /// The subject's organizations (Kubernetes groups).
        organizations: Vec<String>,
    },
    /// The maintenance key (status and config only).
    MaintenanceKey,
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Certificate {
                common_name,
                organizations,
            } => {
                write!(f, "CN={}", common_name.as_deref().unwrap_or("<none>"))?;
                for o in organizations {
                    write!(f, " O={o}")?;
                }
                Ok(())
            }
            Caller::MaintenanceKey => f.write_str("maintenance-key"),
        }
    }
}

impl Caller {
    fn from_certificate(der: &[u8]) -> Self {
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => {
                let subject = cert.subject();
                Caller::Certificate {
                    common_name: subject
                        .iter_common_name()
                        .next()
                        .and_then(|a| a.as_str().ok())
                        .map(str::to_owned),
                    organizations: subject
                        .iter_organization()
                        .filter_map(|a| a.as_str().ok())
                        .map(str::to_owned)
                        .collect(),
                }
            }
            // rustls already verified it; only the subject is unreadable.
            Err(_) => Caller::Certificate {
                common_name: None,
                organizations: Vec::new(),
            },
        }
    }
}

/// An error a [`NodeService`] returns; becomes an HTTP status and an
/// [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status (4xx or 5xx; anything else is sent as 500).
    pub status: u16,
    /// Human-readable reason.
    pub message: String,
    /// Details, e.g. machine config problems.
    pub problems: Vec<String>,
}

impl ApiError {
    /// Any status.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            problems: Vec::new(),
        }
    }
    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    /// 403: not allowed for this caller.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }
    /// 404: e.g. an unknown service or a missing file.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    /// 409: e.g. a config while the node is not in maintenance mode.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }
    /// 413: e.g. a file larger than the read limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, message)
    }
    /// 422: a machine config with problems (one `source: key: reason`
    /// line each).
    pub fn invalid_config(problems: Vec<String>) -> Self {
        Self {
            status: 422,
            message: format!("the machine config has {} problem(s)", problems.len()),
            problems,
        }
    }
    /// 500: the node failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    /// 503: e.g. containerd is not running yet.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }
}

/// What the node does; node-agent implements it, tests use a double.
///
/// The server authenticates and authorizes before calling any method, so
/// implementations only see allowed requests; `caller` is there for
/// logging. Methods run on the connection's thread and may block (the
/// client waits), but should not take much longer than the work needs.
pub trait NodeService: Send + Sync {
    /// `GET /v1/status`.
    fn status(&self, caller: &Caller) -> NodeStatus;

    /// `GET /v1/logs/{service}?lines=N`: the last `lines` lines of a
    /// service's log (`node-agent` included). Unknown service: 404.
    fn logs(&self, caller: &Caller, service: &str, lines: usize) -> Result<String, ApiError>;

    /// `GET /v1/read?path=`: a file's bytes. `path` is absolute. Return at
    /// most `max_bytes` (read one more to tell "too large": anything longer
    /// is answered 413 by the server).
    fn read_file(
        &self,
        caller: &Caller,
        path: &Path,
        max_bytes: usize,
    ) -> Result<Vec<u8>, ApiError>;

    /// `POST /v1/config`: validate (422 via [`ApiError::invalid_config`]),
    /// persist and start applying the machine config; return once it is
    /// accepted, not when it is fully applied. 409 when the node does not
    /// take a config now.
    fn apply_config(&self, caller: &Caller, toml: &str) -> Result<(), ApiError>;

    /// `POST /v1/reboot`: called after the 202 answer went out.
    fn reboot(&self, caller: &Caller);

    /// `POST /v1/shutdown`: called after the 202 answer went out.
    fn shutdown(&self, caller: &Caller);

    /// `POST /v1/reset`, first part: leave the cluster when
    /// `request.graceful` (an error refuses the reset and changes nothing
    /// more); the answer lists the steps. The wipe follows in
    /// [`Self::reset_finish`] once the 202 answer went out.
    fn reset(&self, caller: &Caller, request: &ResetRequest) -> Result<ResetResponse, ApiError> {
        let _ = (caller, request);
        Err(ApiError::new(501, "this node cannot be reset"))
    }

    /// `POST /v1/reset`, second part: wipe STATE and reboot or power off;
    /// called after the 202 answer went out.
    fn reset_finish(&self, caller: &Caller, request: &ResetRequest) {
        let _ = (caller, request);
    }

    /// `POST /v1/containers/run`: run a container to completion.
    fn run_container(
        &self,
        caller: &Caller,
        request: &RunContainerRequest,
    ) -> Result<RunContainerResponse, ApiError>;

    /// Every answered request and every failed connection; for logging.
    fn event(&self, event: &ApiEvent<'_>) {
        let _ = event;
    }
}

/// Something worth logging, passed to [`NodeService::event`].
#[derive(Debug)]
pub enum ApiEvent<'a> {
    /// A request was answered.
    Request {
        /// Remote address.
        peer: SocketAddr,
        /// Authenticated caller, `None` for anonymous.
        caller: Option<&'a Caller>,
        /// Request method (empty when the request was unreadable).
        method: &'a str,
        /// Request path (empty when the request was unreadable).
        path: &'a str,
        /// Status sent.
        status: u16,
    },
    /// A connection failed before an answer could be sent (TLS handshake
    /// failure, e.g. an untrusted client certificate, or I/O error).
    ConnectionFailed {
        /// Remote address.
        peer: SocketAddr,
        /// What happened.
        error: String,
    },
    /// A connection was closed at once because too many are open.
    ConnectionRejected {
        /// Remote address.
        peer: SocketAddr,
        /// Connections open at the time.
        open: usize,
    },
}

/// Why the server could not start or take a new setting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the listening socket failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The requested address.
        address: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// Starting the accept thread failed.
    #[error("cannot start the node API accept thread: {0}")]
    Thread(io::Error),
    /// The TLS configuration was refused.
    #[error("node API TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// The client CA PEM is unusable.
    #[error("invalid client CA bundle: {0}")]
    ClientCa(String),
}

/// Tunables; [`Default`] holds the production values.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once; more are closed immediately.
    pub max_connections: usize,
    /// Socket read and write timeout.
    pub io_timeout: Duration,
    /// Time allowed to receive a whole request.
    pub request_deadline: Duration,
    /// Request line plus headers.
    pub max_head_bytes: usize,
    /// Request body.
    pub max_body_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_connections: 64,
            io_timeout: Duration::from_secs(30),
            request_deadline: Duration::from_secs(60),
            max_head_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

struct Shared {
    service: Arc<dyn NodeService>,
    provider: Arc<CryptoProvider>,
    certified_key: Arc<CertifiedKey>,
    tls: RwLock<Arc<ServerConfig>>,
    maintenance_key: RwLock<Option<MaintenanceKey>>,
    stopping: AtomicBool,
    open: AtomicUsize,
    options: ServerOptions,
}

impl Shared {
    fn build_tls(
        &self,
        client_roots: Option<RootCertStore>,
    ) -> Result<Arc<ServerConfig>, ServerError> {
        build_tls(&self.provider, &self.certified_key, client_roots)
    }

    fn maintenance_key(&self) -> Option<MaintenanceKey> {
        self.maintenance_key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn build_tls(
    provider: &Arc<CryptoProvider>,
    certified_key: &Arc<CertifiedKey>,
    client_roots: Option<RootCertStore>,
) -> Result<Arc<ServerConfig>, ServerError> {
    let verifier = match client_roots {
        Some(roots) => {
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                // Certificate-less clients may still use the maintenance key;
                // the HTTP layer turns them away otherwise.
                .allow_unauthenticated()
                .build()
                .map_err(|e| ServerError::ClientCa(e.to_string()))?
        }
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified_key.clone())));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Parses a PEM bundle (one or more certificates) into a root store.
fn parse_roots(pem: &str) -> Result<RootCertStore, ServerError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::ClientCa(format!("PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ServerError::ClientCa(
            "no CERTIFICATE block in the PEM text".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| ServerError::ClientCa(format!("certificate #{}: {e}", i + 1)))?;
    }
    Ok(roots)
}

/// Starts the node API server.
#[derive(Debug)]
pub struct ApiServer;

impl ApiServer {
    /// Binds `listen` and serves with [`ServerOptions::default`]. No client
    /// CA and no maintenance key are set: every request is refused with
    /// 401 until one is (see [`ApiServerHandle`]).
    pub fn start(
        listen: SocketAddr,
        identity: ServerIdentity,
        service: Arc<dyn NodeService>,
    ) -> Result<ApiServerHandle, ServerError> {
        Self::start_with(listen, identity, service, ServerOptions::default())
    }

    /// [`start`](Self::start) with explicit options.
    pub fn start_with(
        listen: SocketAddr,
        identity: ServerIdentity,
        service: Arc<dyn NodeService>,
        options: ServerOptions,
    ) -> Result<ApiServerHandle, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified_key = identity.certified_key(&provider)?;
        let tls = build_tls(&provider, &certified_key, None)?;
        let listener = TcpListener::bind(listen).map_err(|source| ServerError::Bind {
            address: listen,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            address: listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            service,
            provider,
            certified_key,
            tls: RwLock::new(tls),
            maintenance_key: RwLock::new(None),
            stopping: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            options,
        });
        let accept_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("node-api-accept".into())
            .spawn(move || accept_loop(listener, accept_shared))
            .map_err(ServerError::Thread)?;
        Ok(ApiServerHandle {
            shared,
            local_addr,
            fingerprint: identity.fingerprint().to_owned(),
            thread: Some(thread),
        })
    }
}

/// A running server. Dropping it stops the server like
/// [`shutdown`](Self::shutdown).
pub struct ApiServerHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    fingerprint: String,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for ApiServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiServerHandle")
            .field("local_addr", &self.local_addr)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ApiServerHandle {
    /// Replaces the set of CAs whose client certificates are accepted
    /// (`pem` may hold several certificates); `None` accepts no
    /// certificate. Applies to connections opened afterwards. On error the
    /// previous set stays.
    pub fn set_client_ca(&self, pem: Option<&str>) -> Result<(), ServerError> {
        let roots = pem.map(parse_roots).transpose()?;
        let config = self.shared.build_tls(roots)?;
        *self
            .shared
            .tls
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// Sets or clears the maintenance key. node-agent sets one while it
    /// has no valid machine config and clears it once one is applied.
    pub fn set_maintenance_key(&self, key: Option<MaintenanceKey>) {
        *self
            .shared
            .maintenance_key
            .write()
            .unwrap_or_else(PoisonError::into_inner) = key;
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server certificate's `sha256:<hex>` fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Stops accepting connections and waits for the accept thread.
    /// Requests already being served finish on their own threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(2)).is_ok() {
            let _ = thread.join();
        }
        // Otherwise the thread exits at its next accept; do not hang here.
    }
}

impl Drop for ApiServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Decrements the open-connection count when the connection ends, even
/// by a panic.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(_) => {
                // E.g. out of file descriptors: back off instead of spinning.
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let open = shared.open.fetch_add(1, Ordering::SeqCst);
        let guard = OpenGuard(shared.clone());
        if open >= shared.options.max_connections {
            drop(guard);
            shared
                .service
                .event(&ApiEvent::ConnectionRejected { peer, open });
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let conn_shared = shared.clone();
        let spawned = thread::Builder::new()
            .name("node-api-conn".into())
            .spawn(move || {
                let _guard = guard;
                serve_connection(&conn_shared, stream, peer);
            });
        if let Err(e) = spawned {
            shared.service.event(&ApiEvent::ConnectionFailed {
                peer,
                error: format!("cannot start a thread: {e}"),
            });
        }
    }
}

fn serve_connection(shared: &Shared, tcp: TcpStream, peer: SocketAddr) {
    let options = &shared.options;
    let setup = tcp
        .set_read_timeout(Some(options.io_timeout))
        .and_then(|()| tcp.set_write_timeout(Some(options.io_timeout)))
        .and_then(|()| tcp.set_nodelay(true));
    if let Err(e) = setup {
        shared.service.event(&ApiEvent::ConnectionFailed {
            peer,
            error: format!("socket setup: {e}"),
        });
        return;
    }
    let config = shared
        .tls
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let conn = match ServerConnection::new(config) {
        Ok(conn) => conn,
        Err(e) => {
            shared.service.event(&ApiEvent::ConnectionFailed {
                peer,
                error: format!("TLS: {e}"),
            });
            return;
        }
    };
    let mut stream = StreamOwned::new(conn, tcp);
    let limits = Limits {
        head: options.max_head_bytes,
        body: options.max_body_bytes,
    };
    let deadline = Instant::now() + options.request_deadline;
    let request = http::read_request(&mut stream, &limits, deadline);
    let caller = stream
        .conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|der| Caller::from_certificate(der));

    let (response, after, method, path, caller) = match request {
        Ok(request) => {
            let outcome = catch_unwind(AssertUnwindSafe(|| handle(shared, &request, caller)));
            let (response, after, caller) = outcome.unwrap_or_else(|_| {
                (
                    error_response(&ApiError::internal("the request handler panicked")),
                    None,
                    None,
                )
            });
            (response, after, request.method, request.path, caller)
        }
        Err(ReadError::Closed) => return,
        Err(e) => match e.answer(&limits) {
            Some((status, message)) => (
                error_response(&ApiError::new(status, message)),
                None,
                String::new(),
                String::new(),
                caller,
            ),
            None => {
                shared.service.event(&ApiEvent::ConnectionFailed {
                    peer,
                    error: match e {
                        ReadError::Io(e) => e.to_string(),
                        other => format!("{other:?}"),
                    },
                });
                return;
            }
        },
    };

    // Recorded before the answer leaves, so whoever holds the answer can rely
    // on the request already being in the record.
    shared.service.event(&ApiEvent::Request {
        peer,
        caller: caller.as_ref(),
        method: &method,
        path: &path,
        status: response.status,
    });
    let written = response.write_to(&mut stream).and_then(|()| {
        stream.conn.send_close_notify();
        stream.flush()
    });
    if let Err(e) = written {
        shared.service.event(&ApiEvent::ConnectionFailed {
            peer,
            error: format!("writing the answer: {e}"),
        });
    }
    linger(stream.sock);
    if let (Some(action), Some(caller)) = (after, caller.as_ref()) {
        match action {
            After::Reboot => shared.service.reboot(caller),
            After::Shutdown => shared.service.shutdown(caller),
            After::Reset(request) => shared.service.reset_finish(caller, &request),
        }
    }
}

/// Closes our side, then drains what the client still sends for a moment,
/// so that closing with unread data (e.g. a refused oversized body) does
/// not reset the connection before the client has read the answer.
fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown(Shutdown::Write);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    let until = Instant::now() + Duration::from_secs(2);
    let mut sink = [0u8; 8192];
    let mut drained = 0usize;
    while Instant::now() < until && drained < 8 * 1024 * 1024 {
        match tcp.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Work to do once the answer is out.
#[derive(Debug, Clone)]
enum After {
    Reboot,
    Shutdown,
    Reset(ResetRequest),
}

enum Endpoint {
    Status,
    Logs(String),
    Read,
    Config,
    Reboot,
    Shutdown,
    Reset,
    RunContainer,
}

impl Endpoint {
    fn open_to_maintenance_key(&self) -> bool {
        matches!(self, Endpoint::Status | Endpoint::Config)
    }
}

fn route(method: &str, path: &str) -> Result<Endpoint, (ApiError, Option<&'static str>)> {
    let (endpoint, allowed) = if path == paths::STATUS {
        (Endpoint::Status, "GET")
    } else if let Some(service) = path.strip_prefix(paths::LOGS_PREFIX) {
        (Endpoint::Logs(service.to_owned()), "GET")
    } else if path == paths::READ {
        (Endpoint::Read, "GET")
    } else if path == paths::CONFIG {
        (Endpoint::Config, "POST")
    } else if path == paths::REBOOT {
        (Endpoint::Reboot, "POST")
    } else if path == paths::SHUTDOWN {
        (Endpoint::Shutdown, "POST")
    } else if path == paths::RESET {
        (Endpoint::Reset, "POST")
    } else if path == paths::CONTAINERS_RUN {
        (Endpoint::RunContainer, "POST")
    } else {
        return Err((ApiError::not_found(format!("no endpoint {path}")), None));
    };
    if method != allowed {
        return Err((
            ApiError::new(405, format!("{path} takes {allowed}, not {method}")),
            Some(allowed),
        ));
    }
    Ok(endpoint)
}

type Handled = (Response, Option<After>, Option<Caller>);

fn handle(shared: &Shared, request: &Request, cert_caller: Option<Caller>) -> Handled {
    let caller = match cert_caller {
        Some(caller) => caller,
        None => match request.header("authorization") {
            None => {
                let mut response = error_response(&ApiError::new(
                    401,
                    "authentication required: a client certificate or the maintenance key",
                ));
                response
                    .extra_headers
                    .push(("WWW-Authenticate", "Bearer realm=\"cairn\"".into()));
                return (response, None, None);
            }
            Some(value) => {
                let offered = value
                    .strip_prefix("Bearer ")
                    .and_then(|k| k.trim().parse::<MaintenanceKey>().ok());
                let accepted = match (offered, shared.maintenance_key()) {
                    (Some(offered), Some(current)) => offered.ct_eq(&current),
                    _ => false,
                };
                if !accepted {
                    let mut response = error_response(&ApiError::new(
                        401,
                        "maintenance key not accepted (wrong key, or the node takes none now)",
                    ));
                    response
                        .extra_headers
                        .push(("WWW-Authenticate", "Bearer realm=\"cairn\"".into()));
                    return (response, None, None);
                }
                Caller::MaintenanceKey
            }
        },
    };
    let endpoint = match route(&request.method, &request.path) {
        Ok(endpoint) => endpoint,
        Err((error, allow)) => {
            let mut response = error_response(&error);
            if let Some(allow) = allow {
                response.extra_headers.push(("Allow", allow.into()));
            }
            return (response, None, Some(caller));
        }
    };
    if caller == Caller::MaintenanceKey && !endpoint.open_to_maintenance_key() {
        let error = ApiError::forbidden(format!(
            "the maintenance key only allows GET {} and POST {}; {} needs a client certificate",
            paths::STATUS,
            paths::CONFIG,
            request.path
        ));
        return (error_response(&error), None, Some(caller));
    }
    let (result, after) = dispatch(shared, request, &caller, endpoint);
    let response = result.unwrap_or_else(|e| error_response(&e));
    // Only act once the answer is a success.
    let after = after.filter(|_| response.status < 300);
    (response, after, Some(caller))
}

fn dispatch(
    shared: &Shared,
    request: &Request,
    caller: &Caller,
    endpoint: Endpoint,
) -> (Result<Response, ApiError>, Option<After>) {
    let service = &shared.service;
    match endpoint {
        Endpoint::Status => (json_response(200, &service.status(caller)), None),
        Endpoint::Logs(name) => (logs(service.as_ref(), request, caller, &name), None),
        Endpoint::Read => (read(service.as_ref(), request, caller), None),
        Endpoint::Config => {
            let result = std::str::from_utf8(&request.body)
                .map_err(|e| ApiError::bad_request(format!("the machine config is not UTF-8: {e}")))
                .and_then(|toml| service.apply_config(caller, toml))
                .and_then(|()| {
                    json_response(
                        202,
                        &ApplyConfigResponse {
                            applied: true,
                            problems: Vec::new(),
                        },
                    )
                });
            (result, None)
        }
        Endpoint::Reboot => (
            json_response(202, &serde_json::json!({"accepted": "reboot"})),
            Some(After::Reboot),
        ),
        Endpoint::Shutdown => (
            json_response(202, &serde_json::json!({"accepted": "shutdown"})),
            Some(After::Shutdown),
        ),
        Endpoint::Reset => {
            let parsed = if request.body.is_empty() {
                Ok(ResetRequest::default())
            } else {
                serde_json::from_slice::<ResetRequest>(&request.body)
                    .map_err(|e| ApiError::bad_request(format!("bad ResetRequest JSON: {e}")))
            };
            match parsed.and_then(|reset| {
                let answer = service.reset(caller, &reset)?;
                Ok((json_response(202, &answer)?, reset))
            }) {
                Ok((response, reset)) => (Ok(response), Some(After::Reset(reset))),
                Err(error) => (Err(error), None),
            }
        }
        Endpoint::RunContainer => {
            let result = serde_json::from_slice::<RunContainerRequest>(&request.body)
                .map_err(|e| ApiError::bad_request(format!("bad RunContainerRequest JSON: {e}")))
                .and_then(|run| {
                    if run.image.trim().is_empty() {
                        return Err(ApiError::bad_request("image is empty"));
                    }
                    service.run_container(caller, &run)
                })
                .and_then(|answer| json_response(200, &answer));
            (result, None)
        }
    }
}

fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.')
}

fn logs(
    service: &dyn NodeService,
    request: &Request,
    caller: &Caller,
    name: &str,
) -> Result<Response, ApiError> {
    if !valid_service_name(name) {
        return Err(ApiError::bad_request(format!(
            "{name:?} is not a service name"
        )));
    }
    let lines = match request.query_param("lines") {
        None => DEFAULT_LOG_LINES,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("lines={text:?} is not a number")))?
            .min(MAX_LOG_LINES),
    };
    let text = service.logs(caller, name, lines)?;
    Ok(Response {
        status: 200,
        content_type: "text/plain; charset=utf-8",
        extra_headers: Vec::new(),
        body: text.into_bytes(),
    })
}

fn read(
    service: &dyn NodeService,
    request: &Request,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let Some(path) = request.query_param("path") else {
        return Err(ApiError::bad_request("missing ?path="));
    };
    if !path.starts_with('/') || path.contains('\0') {
        return Err(ApiError::bad_request(format!(
            "{path:?} is not an absolute path"
        )));
    }
    let bytes = service.read_file(caller, Path::new(path), MAX_READ_BYTES)?;
    if bytes.len() > MAX_READ_BYTES {
        return Err(ApiError::too_large(format!(
            "{path} is larger than {MAX_READ_BYTES} bytes"
        )));
    }
    Ok(Response {
        status: 200,
        content_type: "application/octet-stream",
        extra_headers: Vec::new(),
        body: bytes,
    })
}

fn json_response<T: Serialize>(status: u16, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal(format!("cannot encode the answer: {e}")))?;
    Ok(Response {
        status,
        content_type: "application/json",
        extra_headers: Vec::new(),
        body,
    })
}

fn error_response(error: &ApiError) -> Response {
    let status = if (400..=599).contains(&error.status) {
        error.status
    } else {
        500
    };
    let body = ErrorBody {
        error: error.message.clone(),
        problems: error.problems.clone(),
    };
    Response {
        status,
        content_type: "application/json",
        extra_headers: Vec::new(),
        body: serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert!(matches!(route("GET", "/v1/status"), Ok(Endpoint::Status)));
        assert!(
            matches!(route("GET", "/v1/logs/kubelet"), Ok(Endpoint::Logs(s)) if s == "kubelet")
        );
        assert!(matches!(route("POST", "/v1/config"), Ok(Endpoint::Config)));
        assert!(matches!(route("GET", "/v1/config"), Err((e, Some("POST"))) if e.status == 405));
        assert!(matches!(route("GET", "/v2/x"), Err((e, None)) if e.status == 404));
    }

    #[test]
    fn service_names() {
        for good in ["kubelet", "node-agent", "etcd_2", "a.b"] {
            assert!(valid_service_name(good), "{good}");
        }
        for bad in ["", "..", "a/b", ".hidden", "x y"] {
            assert!(!valid_service_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn caller_display() {
        let caller = Caller::Certificate {
            common_name: Some("admin".into()),
            organizations: vec!["system:masters".into()],
        };
        assert_eq!(caller.to_string(), "CN=admin O=system:masters");
        assert_eq!(Caller::MaintenanceKey.to_string(), "maintenance-key");
    }

    #[test]
    fn out_of_range_status_becomes_500() {
        assert_eq!(error_response(&ApiError::new(200, "x")).status, 500);
        assert_eq!(error_response(&ApiError::conflict("x")).status, 409);
    }
}
