//! A small blocking client for the Kubernetes API.
//!
//! node-agent is PID 1 without an async runtime and the `bootstrap` CLI is
//! a short-lived command, so this client is synchronous: each request opens
//! its own TCP + TLS connection (rustls, ring, ALPN `http/1.1` only) and
//! sends `Connection: close`. That costs a handshake per call, which is
//! fine for the handful of calls joining and heartbeats make, and keeps
//! every failure local to one request. Answers may be `Content-Length` or
//! chunked (module `wire`); watches are read as a stream of JSON lines.
//!
//! Verbs are typed with k8s-openapi's [`Resource`] trait, which gives the
//! group, version and plural of each kind: `get::<ConfigMap>(Some("ns"),
//! "name")`. Errors carry the verb, the URL and, for error statuses, the
//! server's `Status` reason and message.

mod error;
mod kubeconfig;
mod tls;
mod wire;

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::Resource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::Error;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent;
pub use tls::{Credentials, ServerTrust};

use wire::{Body, ResponseHead};

/// Largest response body read into memory.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest single watch event line.
const MAX_WATCH_LINE: usize = 16 * 1024 * 1024;

type TlsStream = StreamOwned<ClientConnection, TcpStream>;
type ResponseBody = Body<BufReader<TlsStream>>;

/// A JSON patch body and its flavour (the `Content-Type` the server uses to
/// interpret it).
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    /// RFC 7386 JSON merge patch.
    Merge(serde_json::Value),
    /// Kubernetes strategic merge patch (lists merged by their keys).
    Strategic(serde_json::Value),
    /// RFC 6902 JSON patch (an array of operations).
    Json(serde_json::Value),
}

impl Patch {
    fn content_type(&self) -> &'static str {
        match self {
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Strategic(_) => "application/strategic-merge-patch+json",
            Patch::Json(_) => "application/json-patch+json",
        }
    }

    fn body(&self) -> &serde_json::Value {
        match self {
            Patch::Merge(v) | Patch::Strategic(v) | Patch::Json(v) => v,
        }
    }
}

/// Selectors of a list or watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// `labelSelector`, e.g. `app=web,tier!=db`.
    pub label_selector: Option<String>,
    /// `fieldSelector`, e.g. `metadata.name=node-1`.
    pub field_selector: Option<String>,
}

impl ListParams {
    /// Selects by labels.
    pub fn labels(selector: impl Into<String>) -> Self {
        Self {
            label_selector: Some(selector.into()),
            field_selector: None,
        }
    }

    /// Selects by fields.
    pub fn fields(selector: impl Into<String>) -> Self {
        Self {
            label_selector: None,
            field_selector: Some(selector.into()),
        }
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(labels) = &self.label_selector {
            query.push(("labelSelector", labels.clone()));
        }
        if let Some(fields) = &self.field_selector {
            query.push(("fieldSelector", fields.clone()));
        }
        query
    }
}

/// The items of a list and the resourceVersion to watch from.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectList<K> {
    /// The objects.
    pub items: Vec<K>,
    /// The list's resourceVersion (empty if the server sent none).
    pub resource_version: String,
}

#[derive(Deserialize)]
#[serde(bound = "K: DeserializeOwned")]
struct ListBody<K> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default = "Vec::new")]
    items: Vec<K>,
}

/// The API server's address, split for connecting and for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerUrl {
    /// `https://host:port` plus any path prefix, without trailing slash.
    base: String,
    host: String,
    port: u16,
}

impl ServerUrl {
    fn parse(url: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| invalid("only https:// servers are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.contains('@') || path.contains(['?', '#']) {
            return Err(invalid("user info, query and fragment are not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unterminated [IPv6] address"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = match port {
            Some(text) => text.parse::<u16>().map_err(|_| invalid("bad port"))?,
            None => 443,
        };
        Ok(Self {
            base: format!("https://{authority}{path}"),
            host: host.to_owned(),
            port,
        })
    }
}

/// A blocking Kubernetes API client for one server and one identity.
#[derive(Clone)]
pub struct KubeClient {
    server: ServerUrl,
    server_name: ServerName<'static>,
    tls: Arc<ClientConfig>,
    bearer: Option<String>,
    trust: ServerTrust,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeClient")
            .field("server", &self.server.base)
            .field("server_name", &self.server_name)
            .field("trust", &self.trust)
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .finish()
    }
}

fn server_name_for(name: &str) -> Result<ServerName<'static>, Error> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(name.to_owned())
        .map_err(|e| Error::Trust(format!("server name {name:?}: {e}")))
}

impl KubeClient {
    /// A client for `server_url` (`https://host:port`). Timeouts: 10 s to
    /// connect, 30 s for each read or write.
    pub fn new(
        server_url: &str,
        trust: ServerTrust,
        credentials: Credentials,
    ) -> Result<Self, Error> {
        let server = ServerUrl::parse(server_url)?;
        let (config, bearer) = tls::client_config(&trust, &credentials)?;
        Ok(Self {
            server_name: server_name_for(&server.host)?,
            server,
            tls: Arc::new(config),
            bearer,
            trust,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
        })
    }

    /// A client for the current context of the kubeconfig at `path`.
    pub fn from_kubeconfig(path: &Path) -> Result<Self, Error> {
        let origin = path.display().to_string();
        let yaml = std::fs::read_to_string(path).map_err(|e| Error::Kubeconfig {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        Self::from_target(kubeconfig::resolve(&yaml, &origin, path.parent())?)
    }

    /// A client for the current context of a kubeconfig's text; relative
    /// file references are resolved against the current directory.
    pub fn from_kubeconfig_str(yaml: &str) -> Result<Self, Error> {
        Self::from_target(kubeconfig::resolve(yaml, "<inline>", None)?)
    }

    fn from_target(target: kubeconfig::Target) -> Result<Self, Error> {
        let client = Self::new(&target.server, target.trust, target.credentials)?;
        match target.tls_server_name {
            Some(name) => client.with_server_name(&name),
            None => Ok(client),
        }
    }

    /// Checks the server certificate for this name instead of the URL's
    /// host (kubeconfig's `tls-server-name`).
    pub fn with_server_name(mut self, name: &str) -> Result<Self, Error> {
        self.server_name = server_name_for(name)?;
        Ok(self)
    }

    /// TCP connect timeout (per resolved address).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Timeout of each read and write.
    pub fn with_io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// The server URL, e.g. `https://10.0.0.1:6443`.
    pub fn server_url(&self) -> &str {
        &self.server.base
    }

    /// How the server is trusted.
    pub fn trust(&self) -> &ServerTrust {
        &self.trust
    }

    /// Opens a connection, sends one request and reads the response head.
    fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<(&str, &[u8])>,
        read_timeout: Duration,
    ) -> Result<(ResponseHead, ResponseBody), Error> {
        let url = format!("{}{path_and_query}", self.server.base);
        let io_error = |source: io::Error| {
            let tls_failure = source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .map(|e| e.to_string());
            match tls_failure {
                Some(message) => Error::Tls {
                    method: method.to_owned(),
                    url: url.clone(),
                    message,
                },
                None => Error::Io {
                    method: method.to_owned(),
                    url: url.clone(),
                    source,
                },
            }
        };
        let tcp = self.connect().map_err(|source| Error::Connect {
            method: method.to_owned(),
            url: url.clone(),
            source,
        })?;
        tcp.set_read_timeout(Some(self.io_timeout))
            .and_then(|()| tcp.set_write_timeout(Some(self.io_timeout)))
            .and_then(|()| tcp.set_nodelay(true))
            .map_err(io_error)?;
        let connection = ClientConnection::new(self.tls.clone(), self.server_name.clone())
            .map_err(|e| Error::Tls {
                method: method.to_owned(),
                url: url.clone(),
                message: e.to_string(),
            })?;
        let mut stream = StreamOwned::new(connection, tcp);
        // Finish the handshake first so its failures are told apart from
        // broken requests.
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(io_error)?;
        }

        let mut head = format!(
            "{method} {}{path_and_query} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cairn-cluster/{}\r\n\
             Accept: application/json\r\nConnection: close\r\n",
            path_prefix(&self.server.base),
            host_header(&self.server),
            env!("CARGO_PKG_VERSION"),
        );
        if let Some(token) = &self.bearer {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let payload = match body {
            Some((content_type, bytes)) => {
                head.push_str(&format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                    bytes.len()
                ));
                bytes
            }
            None => &[][..],
        };
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(payload);
        stream
            .write_all(&request)
            .and_then(|()| stream.flush())
            .map_err(io_error)?;
        stream
            .sock
            .set_read_timeout(Some(read_timeout))
            .map_err(io_error)?;
        let mut reader = BufReader::new(stream);
        let response = wire::read_head(&mut reader).map_err(io_error)?;
        tracing::debug!(method, url = %url, status = response.status, "kubernetes API call");
        let body = Body::new(&response, reader).map_err(io_error)?;
        Ok((response, body))
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let addresses: Vec<SocketAddr> = (self.server.host.as_str(), self.server.port)
            .to_socket_addrs()?
            .collect();
        let mut last_error = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", self.server.host),
        );
        for address in addresses {
            match TcpStream::connect_timeout(&address, self.connect_timeout) {
                Ok(stream) => return Ok(stream),
                Err(e) => last_error = io::Error::new(e.kind(), format!("{address}: {e}")),
            }
        }
        Err(last_error)
    }

    /// Sends a request and reads the whole answer: `(status, body)`. `body`
    /// is JSON. Error statuses are returned, not turned into errors.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), Error> {
        self.request_with_type(
            method,
            path_and_query,
            body.map(|b| ("application/json", b)),
        )
    }

    fn request_with_type(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<(u16, Vec<u8>), Error> {
        let (head, response) = self.send(method, path_and_query, body, self.io_timeout)?;
        let bytes = response.read_all(MAX_BODY).map_err(|source| Error::Io {
            method: method.to_owned(),
            url: format!("{}{path_and_query}", self.server.base),
            source,
        })?;
        Ok((head.status, bytes))
    }

    /// A request whose 2xx answer is decoded as `T` (named `kind` in
    /// errors); other statuses become [`Error::Api`].
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<(&str, &[u8])>,
        kind: &'static str,
    ) -> Result<T, Error> {
        let (status, bytes) = self.request_with_type(method, path_and_query, body)?;
        let url = format!("{}{path_and_query}", self.server.base);
        if !(200..300).contains(&status) {
            return Err(error::api_error(method, &url, status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            method: method.to_owned(),
            url,
            kind,
            source,
        })
    }

    fn encode<T: Serialize>(value: &T, kind: &'static str) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(value).map_err(|source| Error::Encode { kind, source })
    }

    /// GET one object.
    pub fn get<K: Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<K, Error> {
        self.call("GET", &object_path::<K>(namespace, name), None, K::KIND)
    }

    /// GET one object; `None` when it does not exist.
    pub fn get_opt<K: Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<K>, Error> {
        match self.get(namespace, name) {
            Ok(object) => Ok(Some(object)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POST a new object; returns it as stored.
    pub fn create<K: Resource + Serialize + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        object: &K,
    ) -> Result<K, Error> {
        let body = Self::encode(object, K::KIND)?;
        self.call(
            "POST",
            &collection_path::<K>(namespace),
            Some(("application/json", &body)),
            K::KIND,
        )
    }

    /// PUT an object (its `metadata.resourceVersion`, if set, guards the
    /// write: a stale one is a conflict).
    pub fn replace<K: Resource + Serialize + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
        object: &K,
    ) -> Result<K, Error> {
        self.replace_subresource(namespace, name, None, object)
    }

    /// PUT the `/status` subresource.
    pub fn replace_status<K: Resource + Serialize + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
        object: &K,
    ) -> Result<K, Error> {
        self.replace_subresource(namespace, name, Some("status"), object)
    }

    /// PUT an object or one of its subresources (`status`, `approval`, ...).
    pub fn replace_subresource<K: Resource + Serialize + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        object: &K,
    ) -> Result<K, Error> {
        let body = Self::encode(object, K::KIND)?;
        self.call(
            "PUT",
            &subresource_path::<K>(namespace, name, subresource),
            Some(("application/json", &body)),
            K::KIND,
        )
    }

    /// PATCH an object.
    pub fn patch<K: Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
        patch: &Patch,
    ) -> Result<K, Error> {
        self.patch_subresource(namespace, name, None, patch)
    }

    /// PATCH the `/status` subresource.
    pub fn patch_status<K: Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
        patch: &Patch,
    ) -> Result<K, Error> {
        self.patch_subresource(namespace, name, Some("status"), patch)
    }

    /// PATCH an object or one of its subresources.
    pub fn patch_subresource<K: Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        patch: &Patch,
    ) -> Result<K, Error> {
        let body = Self::encode(patch.body(), K::KIND)?;
        self.call(
            "PATCH",
            &subresource_path::<K>(namespace, name, subresource),
            Some((patch.content_type(), &body)),
            K::KIND,
        )
    }

    /// DELETE an object (the answer, a Status or the object, is not read
    /// into a type).
    pub fn delete<K: Resource>(&self, namespace: Option<&str>, name: &str) -> Result<(), Error> {
        let path = object_path::<K>(namespace, name);
        let (status, bytes) = self.request_with_type("DELETE", &path, None)?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(error::api_error(
                "DELETE",
                &format!("{}{path}", self.server.base),
                status,
                &bytes,
            ))
        }
    }

    /// LIST objects (in one namespace, or all with `None`).
    pub fn list<K: Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList<K>, Error> {
        let path = with_query(collection_path::<K>(namespace), &params.query());
        let body: ListBody<K> = self.call("GET", &path, None, K::KIND)?;
        Ok(ObjectList {
            items: body.items,
            resource_version: body.metadata.resource_version.unwrap_or_default(),
        })
    }

    /// WATCH objects from `resource_version` (empty: the server's current
    /// state first, as ADDED events). The server ends the stream after
    /// `timeout` (rounded up to whole seconds); bookmarks are requested.
    pub fn watch<K: Resource + DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
        resource_version: &str,
        timeout: Duration,
    ) -> Result<WatchStream<K>, Error> {
        let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let mut query = params.query();
        query.push(("watch", "1".to_owned()));
        query.push(("allowWatchBookmarks", "true".to_owned()));
        query.push(("timeoutSeconds", seconds.max(1).to_string()));
        if !resource_version.is_empty() {
            query.push(("resourceVersion", resource_version.to_owned()));
        }
        let path = with_query(collection_path::<K>(namespace), &query);
        let url = format!("{}{path}", self.server.base);
        // Give the server its timeout plus the usual I/O slack before a
        // silent stream counts as broken.
        let read_timeout = Duration::from_secs(seconds.max(1)) + self.io_timeout;
        let (head, body) = self.send("GET", &path, None, read_timeout)?;
        if !(200..300).contains(&head.status) {
            let bytes = body.read_all(MAX_BODY).unwrap_or_default();
            return Err(error::api_error("GET", &url, head.status, &bytes));
        }
        Ok(WatchStream {
            url,
            lines: Some(BufReader::new(body)),
            kind: PhantomData,
        })
    }
}

/// The events of one watch request, in order; ends when the server closes
/// the stream (its timeout) or after the first error.
pub struct WatchStream<K> {
    url: String,
    lines: Option<BufReader<ResponseBody>>,
    kind: PhantomData<fn() -> K>,
}

impl<K> fmt::Debug for WatchStream<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchStream")
            .field("url", &self.url)
            .field("open", &self.lines.is_some())
            .finish()
    }
}

impl<K: Resource + DeserializeOwned> Iterator for WatchStream<K> {
    type Item = Result<WatchEvent<K>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let lines = self.lines.as_mut()?;
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = lines
                .by_ref()
                .take(MAX_WATCH_LINE as u64)
                .read_until(b'\n', &mut line);
            match read {
                Ok(0) => {
                    self.lines = None;
                    return None;
                }
                Ok(_) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(_) => break,
                Err(source) => {
                    self.lines = None;
                    return Some(Err(Error::Io {
                        method: "GET".into(),
                        url: self.url.clone(),
                        source,
                    }));
                }
            }
        }
        let event = serde_json::from_slice::<WatchEvent<K>>(&line).map_err(|source| {
            self.lines = None;
            Error::Decode {
                method: "GET".into(),
                url: self.url.clone(),
                kind: K::KIND,
                source,
            }
        });
        Some(event)
    }
}

/// The path part of the base URL (`https://h:6443/prefix` → `/prefix`).
fn path_prefix(base: &str) -> &str {
    let after_scheme = base.strip_prefix("https://").unwrap_or(base);
    after_scheme.find('/').map_or("", |i| &after_scheme[i..])
}

fn host_header(server: &ServerUrl) -> String {
    let host = if server.host.contains(':') {
        format!("[{}]", server.host)
    } else {
        server.host.clone()
    };
    if server.port == 443 {
        host
    } else {
        format!("{host}:{}", server.port)
    }
}

/// `/api/v1[/namespaces/NS]/PLURAL` or `/apis/G/V[/namespaces/NS]/PLURAL`.
pub fn collection_path<K: Resource>(namespace: Option<&str>) -> String {
    let mut path = if K::GROUP.is_empty() {
        format!("/api/{}", K::VERSION)
    } else {
        format!("/apis/{}/{}", K::GROUP, K::VERSION)
    };
    if let Some(namespace) = namespace {
        path.push_str("/namespaces/");
        path.push_str(&wire::encode_query_value(namespace));
    }
    path.push('/');
    path.push_str(K::URL_PATH_SEGMENT);
    path
}

/// The path of one object.
pub fn object_path<K: Resource>(namespace: Option<&str>, name: &str) -> String {
    format!(
        "{}/{}",
        collection_path::<K>(namespace),
        wire::encode_query_value(name)
    )
}

fn subresource_path<K: Resource>(
    namespace: Option<&str>,
    name: &str,
    subresource: Option<&str>,
) -> String {
    let mut path = object_path::<K>(namespace, name);
    if let Some(subresource) = subresource {
        path.push('/');
        path.push_str(subresource);
    }
    path
}

fn with_query(mut path: String, query: &[(&str, String)]) -> String {
    for (i, (key, value)) in query.iter().enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        path.push_str(key);
        path.push('=');
        path.push_str(&wire::encode_query_value(value));
    }
    path
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{ConfigMap, Node};

    use super::*;

    #[test]
    fn paths_follow_group_version_and_scope() {
        assert_eq!(
            object_path::<ConfigMap>(Some("kube-public"), "cluster-info"),
            "/api/v1/namespaces/kube-public/configmaps/cluster-info"
        );
        assert_eq!(object_path::<Node>(None, "n1"), "/api/v1/nodes/n1");
        assert_eq!(
            subresource_path::<CertificateSigningRequest>(None, "csr-1", Some("approval")),
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr-1/approval"
        );
        assert_eq!(
            collection_path::<Lease>(Some("kube-node-lease")),
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        );
        assert_eq!(
            with_query(
                collection_path::<Node>(None),
                &ListParams::labels("a=b,c in (d)").query()
            ),
            "/api/v1/nodes?labelSelector=a%3Db%2Cc%20in%20%28d%29"
        );
    }

    #[test]
    fn server_urls() {
        let url = ServerUrl::parse("https://10.0.0.1:6443").expect("ip");
        assert_eq!((url.host.as_str(), url.port), ("10.0.0.1", 6443));
        assert_eq!(host_header(&url), "10.0.0.1:6443");
        let url = ServerUrl::parse("https://[fd00::1]:6443/").expect("v6");
        assert_eq!((url.host.as_str(), url.port), ("fd00::1", 6443));
        assert_eq!(url.base, "https://[fd00::1]:6443");
        assert_eq!(host_header(&url), "[fd00::1]:6443");
        let url = ServerUrl::parse("https://cp.example/k8s/").expect("prefix");
        assert_eq!(
            (url.port, url.base.as_str()),
            (443, "https://cp.example/k8s")
        );
        assert_eq!(path_prefix(&url.base), "/k8s");
        for bad in [
            "http://h:6443",
            "https://:6443",
            "https://h:port",
            "https://u@h",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_and_watch_events_decode() {
        let list: ListBody<ConfigMap> = serde_json::from_str(
            r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"42"},
               "items":[{"metadata":{"name":"a"},"data":{"k":"v"}}]}"#,
        )
        .expect("list");
        assert_eq!(list.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(list.items[0].metadata.name.as_deref(), Some("a"));
        let event: WatchEvent<ConfigMap> = serde_json::from_str(
            r#"{"type":"BOOKMARK","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"7"}}}"#,
        )
        .expect("bookmark");
        assert!(
            matches!(event, WatchEvent::Bookmark { ref resource_version, .. } if resource_version == "7"),
            "{event:?}"
        );
    }

    #[test]
    fn unreachable_servers_name_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        // Nothing listens on the port once the listener is dropped.
        let client = KubeClient::new(
            &format!("https://127.0.0.1:{port}"),
            ServerTrust::InsecureSkipVerify,
            Credentials::Anonymous,
        )
        .expect("client");
        let err = client
            .get::<Node>(None, "n1")
            .expect_err("connection refused");
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!(
                "GET https://127.0.0.1:{port}/api/v1/nodes/n1: cannot connect"
            )),
            "{err}"
        );
    }
}
