//! The HTTPS server: TLS with optional client certificates, HTTP/2 and
//! HTTP/1.1, the routes the front serves itself (discovery, health,
//! version) and the seam to the resource handler.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, VARY};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::clock;
use super::discovery::{Discovery, ResourceDescriptor, VersionInfo};
use super::negotiate::{self, Answerable, BodyType, Output};
use super::protobuf::{self, ProtobufError};
use super::request::{RequestAttributes, Verb};
use super::status::ApiError;
use super::table::{self, TableOptions};
use super::watch::{self, TableWatch, WatchOptions, WatchStream};

/// The response body type of every route.
pub type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// kube-apiserver's request body limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Errors setting up or running the server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client CA {path}: {what}")]
    ClientCa { path: PathBuf, what: String },
    #[error("accepting connections: {0}")]
    Accept(#[source] std::io::Error),
}

/// The TLS files of `--tls-cert-file`, `--tls-private-key-file` and
/// `--client-ca-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Client certificates are requested and, when sent, verified against
    /// this bundle; clients without one still connect.
    pub client_ca_file: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, HttpError> {
    std::fs::read(path).map_err(|source| HttpError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let data = read(path)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| HttpError::Pem {
            path: path.to_owned(),
            what: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(HttpError::Pem {
            path: path.to_owned(),
            what: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// Builds the rustls configuration (ring provider, ALPN `h2`, `http/1.1`).
pub fn load_tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, HttpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = pem_certs(&files.cert_file)?;
    let key_data = read(&files.key_file)?;
    let key = rustls_pemfile::private_key(&mut key_data.as_slice())
        .map_err(|e| HttpError::Pem {
            path: files.key_file.clone(),
            what: format!("bad PEM: {e}"),
        })?
        .ok_or_else(|| HttpError::Pem {
            path: files.key_file.clone(),
            what: "no private key block".into(),
        })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca_file {
        Some(ca_path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in pem_certs(ca_path)? {
                roots.add(cert).map_err(|e| HttpError::ClientCa {
                    path: ca_path.clone(),
                    what: e.to_string(),
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| HttpError::ClientCa {
                path: ca_path.clone(),
                what: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The result of one named health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub name: String,
    /// `Err(reason)` when failing.
    pub result: Result<(), String>,
}

impl HealthCheck {
    pub fn ok(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            result: Ok(()),
        }
    }

    pub fn failed(name: &str, reason: &str) -> Self {
        Self {
            name: name.to_owned(),
            result: Err(reason.to_owned()),
        }
    }
}

/// Readiness checks run on every `/readyz` (etcd reachable, informers synced...).
pub type ReadinessFn = Arc<dyn Fn() -> Vec<HealthCheck> + Send + Sync>;

/// Everything the server needs besides the handler.
#[derive(Clone)]
pub struct ServerConfig {
    pub tls: Arc<rustls::ServerConfig>,
    pub discovery: Arc<Discovery>,
    pub version: VersionInfo,
    pub readiness: ReadinessFn,
    pub max_body_bytes: usize,
    /// Watches without `timeoutSeconds` end after this long (kube-apiserver
    /// uses 30–60 minutes).
    pub default_watch_timeout: Duration,
    /// How long shutdown waits for open requests.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("version", &self.version)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("default_watch_timeout", &self.default_watch_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// Built-in resources, 3 MiB bodies, 30-minute watches, always ready.
    pub fn new(tls: rustls::ServerConfig) -> Self {
        Self {
            tls: Arc::new(tls),
            discovery: Arc::new(Discovery::new(super::discovery::builtin_resources())),
            version: VersionInfo::default(),
            readiness: Arc::new(Vec::new),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            default_watch_timeout: Duration::from_secs(1800),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Everything a handler learns about a request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub method: Method,
    /// HTTP/2 or HTTP/1.1, as ALPN chose.
    pub version: http::Version,
    pub attributes: RequestAttributes,
    /// The descriptor of the resource addressed (resource requests only).
    pub resource: Option<ResourceDescriptor>,
    /// The client's certificate chain, verified against the client CA
    /// (leaf first); empty when the client sent none.
    pub peer_certificates: Vec<CertificateDer<'static>>,
    pub remote_addr: SocketAddr,
    pub headers: HeaderMap,
    /// The representation the answer will be rendered in.
    pub output: Output,
    /// The body's type as the handler receives it: YAML and protobuf
    /// bodies have already been turned into JSON.
    pub body_type: BodyType,
}

impl RequestContext {
    /// True when the client presented no certificate; tokens or anonymous
    /// access decide from here.
    pub fn without_client_certificate(&self) -> bool {
        self.peer_certificates.is_empty()
    }

    /// The bearer token of the Authorization header.
    pub fn bearer_token(&self) -> Option<&str> {
        self.headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(str::trim)
    }
}

/// A handler's answer, rendered by the server per the negotiated output.
pub enum ApiResponse {
    /// One object with its HTTP status (200 get/update, 201 create, ...).
    Object { status: u16, object: Value },
    /// A list (`items`, `metadata.resourceVersion`, `metadata.continue`).
    List(Value),
    /// A watch: events until the stream ends, the timeout or the client leaves.
    Watch(WatchStream),
    /// A failure as `metav1.Status`.
    Status(ApiError),
    /// Bytes as they are (OpenAPI documents, logs).
    Raw {
        status: u16,
        content_type: String,
        body: Bytes,
    },
    /// A response with `Warning: 299 - "<text>"` headers, one per warning
    /// (kubectl prints them as `Warning: <text>`).
    Warnings(Vec<String>, Box<ApiResponse>),
}

impl std::fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Object { status, .. } => write!(f, "Object({status})"),
            Self::List(_) => f.write_str("List"),
            Self::Watch(_) => f.write_str("Watch"),
            Self::Status(e) => write!(f, "Status({e})"),
            Self::Raw { status, .. } => write!(f, "Raw({status})"),
            Self::Warnings(warnings, inner) => write!(f, "Warnings({warnings:?}, {inner:?})"),
        }
    }
}

impl From<ApiError> for ApiResponse {
    fn from(error: ApiError) -> Self {
        Self::Status(error)
    }
}

/// What the resource registry implements.
pub trait ApiHandler: Send + Sync + 'static {
    /// A request for a resource the discovery table lists.
    fn handle(&self, ctx: RequestContext, body: Bytes) -> impl Future<Output = ApiResponse> + Send;

    /// Called before the front answers a discovery path (`/api`, `/apis`,
    /// `/api/v1`, `/apis/<g>[/<v>]`) itself: an error is answered instead,
    /// so discovery is only for callers the handler lets read it (kube
    /// grants it to `system:authenticated`, not to anonymous callers).
    /// `/version` and the health endpoints are public and skip this. The
    /// default lets everybody read discovery.
    fn admit_discovery(
        &self,
        ctx: &RequestContext,
    ) -> impl Future<Output = Option<ApiError>> + Send {
        let _ = ctx;
        async { None }
    }

    /// Any other path (`/openapi/v2`, `/openapi/v3/...`, `/logs`); 404 unless overridden.
    fn non_resource(
        &self,
        ctx: RequestContext,
        body: Bytes,
    ) -> impl Future<Output = ApiResponse> + Send {
        drop((ctx, body));
        async { ApiResponse::Status(ApiError::path_not_found()) }
    }
}

/// Serves HTTPS on `listener` until `shutdown` resolves, then stops
/// accepting, ends open watches and waits up to `shutdown_grace` for
/// requests in flight.
pub async fn serve<H: ApiHandler>(
    listener: TcpListener,
    config: ServerConfig,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let config = Arc::new(config);
    let acceptor = TlsAcceptor::from(config.tls.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote_addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Responses go out as several small writes (h2 HEADERS then DATA);
        // with Nagle's algorithm the second one waits for the client's
        // delayed ACK, a 40 ms stall on loopback.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%remote_addr, error = %e, "TCP_NODELAY not set");
        }
        let acceptor = acceptor.clone();
        let config = config.clone();
        let handler = handler.clone();
        let stop_rx = stop_rx.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote_addr, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote_addr, "TLS handshake timed out");
                        return;
                    }
                };
            let peer_certificates: Vec<CertificateDer<'static>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            let peer = Arc::new(peer_certificates);
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let config = config.clone();
                let handler = handler.clone();
                let peer = peer.clone();
                let stop_rx = stop_rx.clone();
                async move {
                    let response =
                        route(req, &config, handler.as_ref(), &peer, remote_addr, stop_rx).await;
                    Ok::<_, Infallible>(response)
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%remote_addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over with connections still open");
    }
    Ok(())
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    response
}

fn json_response(
    status: u16,
    value: &Value,
    output: &Output,
    pretty: bool,
) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if *output == Output::Yaml
        && let Ok(text) = serde_yaml::to_string(value)
    {
        return full(status, negotiate::YAML, text);
    }
    let body = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    }
    .unwrap_or_default();
    full(status, negotiate::JSON, body)
}

fn error_response(error: &ApiError) -> Response<ResponseBody> {
    json_response(error.code, &error.to_status(), &Output::Json, false)
}

fn header(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn route<H: ApiHandler>(
    req: Request<Incoming>,
    config: &ServerConfig,
    handler: &H,
    peer: &[CertificateDer<'static>],
    remote_addr: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Response<ResponseBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let attributes = match RequestAttributes::parse(parts.method.as_str(), &path, &query) {
        Ok(a) => a,
        Err(e) => return error_response(&e),
    };

    if !attributes.is_resource_request && is_discovery_path(&attributes) {
        let ctx = RequestContext {
            method: parts.method.clone(),
            version: parts.version,
            attributes: attributes.clone(),
            resource: None,
            peer_certificates: peer.to_vec(),
            remote_addr,
            headers: parts.headers.clone(),
            output: Output::Json,
            body_type: BodyType::Empty,
        };
        if let Some(error) = handler.admit_discovery(&ctx).await {
            return error_response(&error);
        }
    }
    if !attributes.is_resource_request
        && let Some(response) = builtin_route(&parts.method, &parts.headers, &attributes, config)
    {
        return response;
    }

    // Resource requests must name a served resource (and subresource).
    let resource = if attributes.is_resource_request {
        let Some(descriptor) =
            config
                .discovery
                .find(&attributes.group, &attributes.version, &attributes.resource)
        else {
            return error_response(&ApiError::path_not_found());
        };
        let verbs = match &attributes.subresource {
            Some(sub) => match descriptor.subresource(sub) {
                Some(s) => &s.verbs,
                None => return error_response(&ApiError::path_not_found()),
            },
            None => &descriptor.verbs,
        };
        let verb = attributes.verb.as_str();
        if !verbs.iter().any(|v| v == verb) {
            return error_response(&ApiError::method_not_allowed(parts.method.as_str()));
        }
        let scope_ok = if descriptor.group.is_empty() && descriptor.plural == "namespaces" {
            true
        } else if descriptor.namespaced {
            attributes.namespace.is_some() || matches!(attributes.verb, Verb::List | Verb::Watch)
        } else {
            attributes.namespace.is_none()
        };
        if !scope_ok {
            return error_response(&ApiError::path_not_found());
        }
        Some(descriptor.clone())
    } else {
        None
    };

    if matches!(attributes.verb, Verb::List | Verb::Watch)
        && let Err(e) = attributes.query.validate_list_options(&attributes.verb)
    {
        return error_response(&e);
    }

    let answerable = if attributes.is_resource_request
        && matches!(attributes.verb, Verb::Get | Verb::List | Verb::Watch)
        && attributes.subresource.is_none()
    {
        Answerable::ResourceRead
    } else {
        Answerable::Plain
    };
    let output =
        match negotiate::negotiate(header(&parts.headers, http::header::ACCEPT), answerable) {
            Ok(o) => o,
            // Non-resource handlers (OpenAPI) answer media types of their own.
            Err(_) if !attributes.is_resource_request => Output::Json,
            Err(e) => return error_response(&e),
        };

    let body = match read_body(&parts.headers, body, config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let content_type = header(&parts.headers, CONTENT_TYPE).map(str::to_owned);
    let (body_type, body) = match convert_body(content_type.as_deref(), body) {
        Ok(pair) => pair,
        Err(e) => return error_response(&e),
    };
    let mut attributes = attributes;
    if matches!(attributes.verb, Verb::Delete | Verb::DeleteCollection)
        && body_type == BodyType::Json
        && let Ok(options) = serde_json::from_slice::<Value>(&body)
        && let Err(e) = attributes.query.merge_delete_options(&options)
    {
        return error_response(&e);
    }

    let ctx = RequestContext {
        method: parts.method.clone(),
        version: parts.version,
        attributes,
        resource,
        peer_certificates: peer.to_vec(),
        remote_addr,
        headers: parts.headers.clone(),
        output,
        body_type,
    };
    let is_resource = ctx.attributes.is_resource_request;
    let render_ctx = ctx.clone();
    let answer = if is_resource {
        handler.handle(ctx, body).await
    } else {
        handler.non_resource(ctx, body).await
    };
    render(answer, &render_ctx, config, stop)
}

/// Reads the body up to `limit` bytes. A larger body is refused with 413
/// after the rest of it has been read and dropped (up to a bound and a
/// deadline), so an HTTP/1.1 client still sending is not reset before it
/// reads the answer.
async fn read_body(
    headers: &HeaderMap,
    mut body: Incoming,
    limit: usize,
) -> Result<Bytes, ApiError> {
    const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
    let declared = header(headers, CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > DRAIN_LIMIT) {
        return Err(ApiError::too_large(limit));
    }
    let mut collected = bytes::BytesMut::new();
    let mut too_large = declared.is_some_and(|length| length > limit as u64);
    let mut drained: u64 = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                if too_large {
                    break;
                }
                return Err(ApiError::bad_request(format!(
                    "reading the request body: {e}"
                )));
            }
            Ok(None) => break,
            Err(_) if too_large => break,
            Err(_) => return Err(ApiError::timeout("timed out reading the request body")),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if too_large {
            drained += data.len() as u64;
            if drained > DRAIN_LIMIT {
                break;
            }
            continue;
        }
        if collected.len() + data.len() > limit {
            too_large = true;
            drained = (collected.len() + data.len()) as u64;
            collected.clear();
            continue;
        }
        collected.extend_from_slice(&data);
    }
    if too_large {
        return Err(ApiError::too_large(limit));
    }
    Ok(collected.freeze())
}

/// Turns YAML and protobuf bodies into JSON.
fn convert_body(content_type: Option<&str>, body: Bytes) -> Result<(BodyType, Bytes), ApiError> {
    let body_type = BodyType::from_content_type(content_type, body.is_empty())?;
    let converted = match body_type {
        BodyType::Protobuf => {
            let value = protobuf::to_json(&body).map_err(|e| match e {
                ProtobufError::UnsupportedKind { .. } | ProtobufError::ContentEncoding(_) => {
                    ApiError::new(
                        super::status::StatusReason::UnsupportedMediaType,
                        e.to_string(),
                    )
                }
                other => ApiError::bad_request(other.to_string()),
            })?;
            Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
        }
        BodyType::Yaml => {
            let value: Value = serde_yaml::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))?;
            Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
        }
        _ => body,
    };
    Ok((body_type.after_conversion(), converted))
}

/// `299 - "<text>"` with the text quoted as Go's `strconv.Quote` does for
/// printable ASCII (kube-apiserver's warning header).
fn warning_header(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 8);
    quoted.push_str("299 - \"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_ascii_graphic() || c == ' ' => quoted.push(c),
            c if u32::from(c) > 0xffff => {
                quoted.push_str(&format!("\\U{:08x}", u32::from(c)));
            }
            c => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
        }
    }
    quoted.push('"');
    quoted
}

fn render(
    answer: ApiResponse,
    ctx: &RequestContext,
    config: &ServerConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Response<ResponseBody> {
    let pretty = ctx.attributes.query.pretty;
    let include = ctx.attributes.query.include_object;
    let kind_of = |object: Option<&Value>| -> String {
        ctx.resource
            .as_ref()
            .map(|r| r.kind.clone())
            .or_else(|| {
                object
                    .and_then(|o| o.get("kind"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    match answer {
        ApiResponse::Warnings(warnings, inner) => {
            let mut response = render(*inner, ctx, config, stop);
            for warning in &warnings {
                if let Ok(value) = HeaderValue::from_str(&warning_header(warning)) {
                    response.headers_mut().append(http::header::WARNING, value);
                }
            }
            response
        }
        ApiResponse::Status(error) => error_response(&error),
        ApiResponse::Raw {
            status,
            content_type,
            body,
        } => full(
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            &content_type,
            body,
        ),
        ApiResponse::Object { status, object } => {
            let is_status_kind = object.get("kind").and_then(Value::as_str) == Some("Status");
            match &ctx.output {
                Output::Table { version } if !is_status_kind => {
                    let table = table::render(
                        std::slice::from_ref(&object),
                        object.get("metadata"),
                        &TableOptions {
                            kind: &kind_of(Some(&object)),
                            version,
                            include_object: include,
                            omit_headers: false,
                            now: clock::now(),
                        },
                    );
                    json_response(status, &table, &Output::Json, pretty)
                }
                Output::PartialObjectMetadata { version } if !is_status_kind => json_response(
                    status,
                    &table::partial_object_metadata(&object, version),
                    &Output::Json,
                    pretty,
                ),
                output => json_response(status, &object, output, pretty),
            }
        }
        ApiResponse::List(list) => {
            let items: &[Value] = list
                .get("items")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            match &ctx.output {
                Output::Table { version } => {
                    let table = table::render(
                        items,
                        list.get("metadata"),
                        &TableOptions {
                            kind: &kind_of(items.first()),
                            version,
                            include_object: include,
                            omit_headers: false,
                            now: clock::now(),
                        },
                    );
                    json_response(200, &table, &Output::Json, pretty)
                }
                Output::PartialObjectMetadata { version } => {
                    let metas: Vec<Value> = items
                        .iter()
                        .map(|o| table::partial_object_metadata(o, version))
                        .collect();
                    let doc = json!({
                        "kind": "PartialObjectMetadataList",
                        "apiVersion": format!("meta.k8s.io/{version}"),
                        "metadata": list.get("metadata").cloned().unwrap_or_else(|| json!({})),
                        "items": metas,
                    });
                    json_response(200, &doc, &Output::Json, pretty)
                }
                output => json_response(200, &list, output, pretty),
            }
        }
        ApiResponse::Watch(events) => {
            let query = &ctx.attributes.query;
            let timeout = query
                .timeout_seconds
                .filter(|t| *t > 0)
                .map(|t| Duration::from_secs(t.unsigned_abs()))
                .unwrap_or(config.default_watch_timeout);
            let table = match &ctx.output {
                Output::Table { version } => Some(TableWatch {
                    kind: kind_of(None),
                    version: version.clone(),
                    include_object: include,
                }),
                _ => None,
            };
            let mut stop = stop;
            let stopped = async move {
                while !*stop.borrow_and_update() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
            };
            let lines = watch::encode(
                events,
                WatchOptions {
                    timeout,
                    allow_bookmarks: query.allow_watch_bookmarks,
                    table,
                },
                stopped,
            );
            let body = StreamBody::new(lines.map(|line| Ok::<_, Infallible>(Frame::data(line))));
            let mut response = Response::new(BodyExt::boxed_unsync(body));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(negotiate::JSON));
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
            response
        }
    }
}

/// `/api`, `/apis`, `/api/<v>`, `/apis/<g>`, `/apis/<g>/<v>`.
fn is_discovery_path(attributes: &RequestAttributes) -> bool {
    let segments: Vec<&str> = attributes
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    matches!(
        segments.as_slice(),
        ["api"] | ["api", _] | ["apis"] | ["apis", _] | ["apis", _, _]
    )
}

/// Discovery, health and version: answered without the handler.
fn builtin_route(
    method: &Method,
    headers: &HeaderMap,
    attributes: &RequestAttributes,
    config: &ServerConfig,
) -> Option<Response<ResponseBody>> {
    let segments: Vec<&str> = attributes
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let is_builtin = matches!(
        segments.as_slice(),
        ["version"] | ["api"] | ["api", _] | ["apis"] | ["apis", _] | ["apis", _, _]
    ) || matches!(segments.first(), Some(&("healthz" | "livez" | "readyz")));
    if !is_builtin {
        return None;
    }
    if *method != Method::GET && *method != Method::HEAD {
        return Some(error_response(&ApiError::method_not_allowed(
            method.as_str(),
        )));
    }
    let pretty = attributes.query.pretty;
    let accept = header(headers, http::header::ACCEPT);
    let discovery = &config.discovery;
    let plain = |value: Option<Value>| -> Response<ResponseBody> {
        match value {
            Some(v) => json_response(200, &v, &Output::Json, pretty),
            None => error_response(&ApiError::path_not_found()),
        }
    };
    let response = match segments.as_slice() {
        ["version"] => plain(Some(config.version.to_json())),
        [root @ ("api" | "apis")] => {
            let output = match negotiate::negotiate(accept, Answerable::DiscoveryRoot) {
                Ok(o) => o,
                Err(e) => return Some(error_response(&e)),
            };
            let core = *root == "api";
            let mut response = match output {
                Output::Discovery(version) => {
                    let doc = discovery.aggregated(core, version);
                    let mut r = json_response(200, &doc, &Output::Json, pretty);
                    r.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(version.content_type()),
                    );
                    r
                }
                _ if core => {
                    let host = header(headers, HOST)
                        .map(str::to_owned)
                        .unwrap_or_else(|| "localhost:6443".into());
                    plain(Some(discovery.api_versions(&host)))
                }
                _ => plain(Some(discovery.api_group_list())),
            };
            response
                .headers_mut()
                .insert(VARY, HeaderValue::from_static("Accept"));
            response
        }
        ["api", version] => plain(discovery.api_resource_list("", version)),
        ["apis", group] => plain(discovery.api_group_doc(group)),
        ["apis", group, version] => plain(discovery.api_resource_list(group, version)),
        [endpoint, rest @ ..] => health(endpoint, rest, attributes, config),
        [] => error_response(&ApiError::path_not_found()),
    };
    Some(response)
}

fn health(
    endpoint: &str,
    rest: &[&str],
    attributes: &RequestAttributes,
    config: &ServerConfig,
) -> Response<ResponseBody> {
    let mut checks = vec![HealthCheck::ok("ping"), HealthCheck::ok("log")];
    if endpoint != "livez" {
        checks.extend((config.readiness)());
    }
    let excluded: Vec<&str> = attributes
        .query
        .other
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.as_str())
        .collect();
    checks.retain(|c| !excluded.contains(&c.name.as_str()));
    if let [single] = rest {
        return match checks.iter().find(|c| c.name == *single) {
            Some(HealthCheck { result: Ok(()), .. }) => {
                full(StatusCode::OK, "text/plain; charset=utf-8", "ok")
            }
            Some(HealthCheck {
                result: Err(why), ..
            }) => full(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("internal server error: {why}\n"),
            ),
            None => error_response(&ApiError::path_not_found()),
        };
    }
    if !rest.is_empty() {
        return error_response(&ApiError::path_not_found());
    }
    let failed = checks.iter().any(|c| c.result.is_err());
    let verbose = attributes.query.other.iter().any(|(k, _)| k == "verbose");
    if !failed && !verbose {
        return full(StatusCode::OK, "text/plain; charset=utf-8", "ok");
    }
    let mut text = String::new();
    for check in &checks {
        match &check.result {
            Ok(()) => text.push_str(&format!("[+]{} ok\n", check.name)),
            Err(_) => text.push_str(&format!("[-]{} failed: reason withheld\n", check.name)),
        }
    }
    for name in excluded {
        text.push_str(&format!("[+]{name} excluded: ok\n"));
    }
    if failed {
        text.push_str(&format!("{endpoint} check failed\n"));
        full(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            text,
        )
    } else {
        text.push_str(&format!("{endpoint} check passed\n"));
        full(StatusCode::OK, "text/plain; charset=utf-8", text)
    }
}

#[cfg(test)]
mod tests {
    use super::warning_header;

    #[test]
    fn warning_headers_are_quoted_like_kube() {
        assert_eq!(
            warning_header("unknown field \"spec.foo\""),
            r#"299 - "unknown field \"spec.foo\"""#
        );
        assert_eq!(warning_header("a\\b\u{e9}"), r#"299 - "a\\b\u00e9""#);
    }
}
