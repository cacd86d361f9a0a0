//! The node-local apiserver load balancer on `127.0.0.1:7445`.
//!
//! Every node's components (kubelet, the cluster thread's clients, the
//! controller manager) reach the apiservers through this listener instead
//! of the control-plane endpoint itself, like Talos' KubePrism and k3s'
//! agent load balancer: when the VIP moves or an apiserver dies, new
//! connections simply go to another apiserver. It is a plain TCP relay:
//! TLS passes through untouched, which works because the apiserver
//! certificates name `127.0.0.1` and `localhost`.
//!
//! The design, in three parts:
//!
//! - [`BackendSelector`] is the sans-IO choice: the configured backends in
//!   order with a healthy flag each, the backend the last connection
//!   succeeded on (sticky, so a node keeps talking to one apiserver and its
//!   watch caches stay warm), and a round-robin cursor that spreads the
//!   fall-backs. [`BackendSelector::candidates`] gives the order in which
//!   one client connection tries the backends: the sticky one if healthy,
//!   the other healthy ones in round-robin order, then the unhealthy ones
//!   in configured order, so that when every backend looks down the
//!   balancer still tries them all rather than refusing.
//! - [`ApiLoadBalancer`] runs an acceptor thread; each client connection
//!   gets a thread that connects to the candidates in turn with a short
//!   timeout (a failure marks the backend unhealthy and the next one is
//!   tried at once, so a dead apiserver costs one connect timeout at most)
//!   and then relays bytes both ways with one thread per direction. When
//!   one side ends its stream, the write half of the other side is shut
//!   down (HTTP clients may half-close); an error on either side tears the
//!   whole connection down. Connections are capped ([`Options`]); the
//!   balancer is synchronous like the rest of node-agent.
//! - A health thread checks every backend each [`Options::health_interval`]
//!   through a [`HealthProbe`], all backends in parallel. The default is
//!   [`ReadyzProbe`], an anonymous HTTPS `GET /readyz` (our apiserver lets
//!   `system:unauthenticated` read it): an apiserver that accepts TCP but
//!   has lost etcd is not chosen. It skips certificate verification, which
//!   is harmless here: no credential is sent and the answer only orders
//!   the candidates, while the relayed clients verify the apiserver
//!   themselves. [`TcpConnectProbe`] is the cheaper alternative. A backend
//!   marked unhealthy by a failed connection comes back when a check
//!   passes.
//!
//! [`ApiLoadBalancer::set_backends`] replaces the backend set at runtime
//! (new connections use the new set, established ones stay); shutting the
//! balancer down (or dropping it) stops the threads and closes the
//! relayed connections.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use cairn_cluster::client::{Credentials, KubeClient, ServerTrust};

/// The port of the node-local load balancer (KubePrism's).
pub const API_LB_PORT: u16 = 7445;
/// Where node components find the load balancer: `127.0.0.1:7445`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, API_LB_PORT));
/// How long one connection attempt to a backend may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often every backend is checked.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// How many client connections are relayed at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// How long one health check may wait for the connection and for each
/// read or write.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes read at once by each relay direction.
const RELAY_BUFFER: usize = 32 * 1024;
/// Stack of the per-connection threads: they only relay bytes, so the
/// default 2 MiB would be waste when hundreds are open.
const RELAY_STACK: usize = 256 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the
/// acceptor does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// TCP keepalive on backend connections, so a relay to an apiserver whose
/// host vanished without a RST ends after about a minute instead of never.
const KEEPALIVE_IDLE_SECS: u32 = 30;
const KEEPALIVE_INTERVAL_SECS: u32 = 10;
const KEEPALIVE_PROBES: u32 = 3;

// ---------------------------------------------------------------------------
// Sans-IO backend choice
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backend {
    address: SocketAddr,
    healthy: bool,
}

/// Which backend a new connection tries first: health, stickiness and
/// round robin, without any I/O.
#[derive(Debug, Clone, Default)]
pub struct BackendSelector {
    /// In configured order, without duplicates.
    backends: Vec<Backend>,
    /// The backend the last successful connection went to.
    sticky: Option<SocketAddr>,
    /// Where the round robin over the healthy backends starts next.
    cursor: usize,
}

impl BackendSelector {
    /// A selector over `addresses` (duplicates dropped). Backends start
    /// healthy: the first connections should not wait for the first check.
    pub fn new(addresses: Vec<SocketAddr>) -> Self {
        let mut selector = Self::default();
        selector.set_backends(addresses);
        selector
    }

    /// Replaces the backend set. Backends kept from the old set keep their
    /// health; new ones start healthy; the sticky choice survives only if
    /// its backend is still in the set. Returns whether the set changed.
    pub fn set_backends(&mut self, addresses: Vec<SocketAddr>) -> bool {
        let mut backends: Vec<Backend> = Vec::with_capacity(addresses.len());
        for address in addresses {
            if backends.iter().any(|b| b.address == address) {
                continue;
            }
            let healthy = self
                .backends
                .iter()
                .find(|b| b.address == address)
                .is_none_or(|b| b.healthy);
            backends.push(Backend { address, healthy });
        }
        let changed = self.addresses() != backends.iter().map(|b| b.address).collect::<Vec<_>>();
        self.backends = backends;
        if self.sticky.is_some_and(|s| self.position(s).is_none()) {
            self.sticky = None;
        }
        if self.backends.is_empty() {
            self.cursor = 0;
        } else {
            self.cursor %= self.backends.len();
        }
        changed
    }

    /// The backends in configured order.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.backends.iter().map(|b| b.address).collect()
    }

    /// Every backend with its health, in configured order.
    pub fn health(&self) -> Vec<(SocketAddr, bool)> {
        self.backends
            .iter()
            .map(|b| (b.address, b.healthy))
            .collect()
    }

    /// The backend the last successful connection went to, if still known.
    pub fn sticky(&self) -> Option<SocketAddr> {
        self.sticky
    }

    fn position(&self, address: SocketAddr) -> Option<usize> {
        self.backends.iter().position(|b| b.address == address)
    }

    fn is_healthy(&self, address: SocketAddr) -> bool {
        self.backends
            .iter()
            .any(|b| b.address == address && b.healthy)
    }

    /// The order in which one new connection tries the backends: the
    /// sticky backend if it is healthy, the other healthy ones in round
    /// robin order (the cursor moves on each call), then the unhealthy ones
    /// in configured order. Every backend appears exactly once.
    pub fn candidates(&mut self) -> Vec<SocketAddr> {
        let count = self.backends.len();
        if count == 0 {
            return Vec::new();
        }
        let start = self.cursor % count;
        self.cursor = (start + 1) % count;
        let sticky = self.sticky.filter(|&s| self.is_healthy(s));
        let mut order: Vec<SocketAddr> = Vec::with_capacity(count);
        order.extend(sticky);
        order.extend(
            (0..count)
                .map(|i| self.backends[(start + i) % count])
                .filter(|b| b.healthy && Some(b.address) != sticky)
                .map(|b| b.address),
        );
        order.extend(
            self.backends
                .iter()
                .filter(|b| !b.healthy)
                .map(|b| b.address),
        );
        order
    }

    /// A connection to `address` succeeded: it becomes the sticky choice.
    /// Its health is left to the checks (an apiserver may accept TCP while
    /// not ready).
    pub fn connected(&mut self, address: SocketAddr) {
        if self.position(address).is_some() {
            self.sticky = Some(address);
        }
    }

    /// A connection to `address` failed: it is unhealthy until a check
    /// passes, and no longer sticky. Returns whether its health changed.
    pub fn connect_failed(&mut self, address: SocketAddr) -> bool {
        self.set_health(address, false)
    }

    /// Records a health check result. An unhealthy backend loses the
    /// sticky choice. Unknown addresses (a check that raced with
    /// [`set_backends`](Self::set_backends)) are ignored. Returns whether
    /// the backend's health changed.
    pub fn set_health(&mut self, address: SocketAddr, healthy: bool) -> bool {
        if !healthy && self.sticky == Some(address) {
            self.sticky = None;
        }
        match self.backends.iter_mut().find(|b| b.address == address) {
            Some(backend) if backend.healthy != healthy => {
                backend.healthy = healthy;
                true
            }
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Health probes
// ---------------------------------------------------------------------------

/// Why a health check of a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connecting to apiserver backend {backend}: {source}")]
    Connect {
        backend: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("GET /readyz on apiserver backend {backend}: {source}")]
    Request {
        backend: SocketAddr,
        #[source]
        source: Box<cairn_cluster::client::Error>,
    },
    #[error("apiserver backend {backend} is not ready: GET /readyz answered {status}: {body}")]
    NotReady {
        backend: SocketAddr,
        status: u16,
        /// The start of the answer, which names the failing checks.
        body: String,
    },
}

/// One health check of one backend; called from the health thread, for
/// several backends at once.
pub trait HealthProbe: Send + Sync + fmt::Debug {
    /// `Ok` when `backend` should receive connections.
    fn check(&self, backend: SocketAddr) -> Result<(), ProbeError>;
}

/// Healthy when a TCP connection opens within the timeout.
#[derive(Debug, Clone)]
pub struct TcpConnectProbe {
    pub timeout: Duration,
}

impl Default for TcpConnectProbe {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }
}

impl HealthProbe for TcpConnectProbe {
    fn check(&self, backend: SocketAddr) -> Result<(), ProbeError> {
        TcpStream::connect_timeout(&backend, self.timeout)
            .map(drop)
            .map_err(|source| ProbeError::Connect { backend, source })
    }
}

/// Healthy when an anonymous `GET https://<backend>/readyz` answers 2xx
/// within the timeouts. The server certificate is not verified (see the
/// module documentation for why that is fine).
#[derive(Debug)]
pub struct ReadyzProbe {
    timeout: Duration,
    /// One client per backend, so the TLS configuration is built once.
    clients: Mutex<HashMap<SocketAddr, KubeClient>>,
}

impl ReadyzProbe {
    /// A probe whose connect and each read or write wait at most `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, backend: SocketAddr) -> Result<KubeClient, ProbeError> {
        let mut clients = lock(&self.clients);
        if let Some(client) = clients.get(&backend) {
            return Ok(client.clone());
        }
        let client = KubeClient::new(
            &format!("https://{backend}"),
            ServerTrust::InsecureSkipVerify,
            Credentials::Anonymous,
        )
        .map_err(|source| ProbeError::Request {
            backend,
            source: Box::new(source),
        })?
        .with_connect_timeout(self.timeout)
        .with_io_timeout(self.timeout);
        clients.insert(backend, client.clone());
        Ok(client)
    }
}

impl Default for ReadyzProbe {
    fn default() -> Self {
        Self::new(DEFAULT_PROBE_TIMEOUT)
    }
}

impl HealthProbe for ReadyzProbe {
    fn check(&self, backend: SocketAddr) -> Result<(), ProbeError> {
        let client = self.client(backend)?;
        let (status, body) =
            client
                .request("GET", "/readyz", None)
                .map_err(|source| ProbeError::Request {
                    backend,
                    source: Box::new(source),
                })?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body);
        Err(ProbeError::NotReady {
            backend,
            status,
            body: text.chars().take(300).collect(),
        })
    }
}

// ---------------------------------------------------------------------------
// The load balancer
// ---------------------------------------------------------------------------

/// Tuning of an [`ApiLoadBalancer`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How long one connection attempt to a backend may take.
    pub connect_timeout: Duration,
    /// Time between two rounds of health checks.
    pub health_interval: Duration,
    /// Client connections relayed at once; more are closed at accept.
    pub max_connections: usize,
    /// How backends are checked.
    pub probe: Arc<dyn HealthProbe>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            health_interval: DEFAULT_HEALTH_INTERVAL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            probe: Arc::new(ReadyzProbe::default()),
        }
    }
}

/// The sockets of one relayed connection, kept so shutdown can close it.
#[derive(Debug)]
struct Relay {
    client: TcpStream,
    backend: Option<TcpStream>,
}

#[derive(Debug)]
struct Shared {
    options: Options,
    selector: Mutex<BackendSelector>,
    stopping: AtomicBool,
    /// Bumped by `set_backends` and shutdown to wake the health thread.
    health_generation: Mutex<u64>,
    health_wakeup: Condvar,
    relays: Mutex<HashMap<u64, Relay>>,
    next_relay: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking relay thread must not take the balancer down with it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn selector(&self) -> MutexGuard<'_, BackendSelector> {
        lock(&self.selector)
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn wake_health_thread(&self) {
        *lock(&self.health_generation) += 1;
        self.health_wakeup.notify_all();
    }
}

/// A TCP load balancer in front of the apiservers; see the module
/// documentation.
#[derive(Debug)]
pub struct ApiLoadBalancer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    listener: Option<Arc<TcpListener>>,
    acceptor: Option<JoinHandle<()>>,
    health: Option<JoinHandle<()>>,
}

impl ApiLoadBalancer {
    /// Listens on `listen` and relays to `backends` with the default
    /// [`Options`] (1 s connect timeout, `/readyz` checks every 2 s, at
    /// most 512 connections).
    pub fn start(listen: SocketAddr, backends: Vec<SocketAddr>) -> io::Result<Self> {
        Self::start_with(listen, backends, Options::default())
    }

    /// Like [`start`](Self::start) with explicit [`Options`].
    pub fn start_with(
        listen: SocketAddr,
        backends: Vec<SocketAddr>,
        options: Options,
    ) -> io::Result<Self> {
        let context = |what: &str, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("apiserver load balancer on {listen}: {what}: {e}"),
            )
        };
        let listener = TcpListener::bind(listen).map_err(|e| context("listening", e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| context("reading the bound address", e))?;
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared {
            options,
            selector: Mutex::new(BackendSelector::new(backends)),
            stopping: AtomicBool::new(false),
            health_generation: Mutex::new(0),
            health_wakeup: Condvar::new(),
            relays: Mutex::new(HashMap::new()),
            next_relay: AtomicU64::new(0),
        });
        let mut balancer = Self {
            shared: shared.clone(),
            local_addr,
            listener: Some(listener.clone()),
            acceptor: None,
            health: None,
        };
        // On a spawn failure, dropping `balancer` stops what was started.
        let health_shared = shared.clone();
        balancer.health = Some(
            thread::Builder::new()
                .name("api-lb-health".into())
                .spawn(move || health_loop(&health_shared))
                .map_err(|e| context("starting the health thread", e))?,
        );
        balancer.acceptor = Some(
            thread::Builder::new()
                .name("api-lb-accept".into())
                .spawn(move || accept_loop(&shared, &listener))
                .map_err(|e| context("starting the acceptor thread", e))?,
        );
        tracing::info!(
            listen = %local_addr,
            backends = ?balancer.shared.selector().addresses(),
            "apiserver load balancer started"
        );
        Ok(balancer)
    }

    /// The address the balancer listens on (with the actual port when
    /// started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces the backends: new connections use the new set at once,
    /// established connections stay where they are. Backends kept from the
    /// old set keep their health; new ones are checked right away.
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        let (changed, addresses) = {
            let mut selector = self.shared.selector();
            let changed = selector.set_backends(backends);
            (changed, selector.addresses())
        };
        if changed {
            tracing::info!(backends = ?addresses, "apiserver load balancer backends replaced");
            self.shared.wake_health_thread();
        }
    }

    /// Every backend with its current health, in configured order.
    pub fn backends_health(&self) -> Vec<(SocketAddr, bool)> {
        self.shared.selector().health()
    }

    /// Client connections currently being relayed (or connecting).
    pub fn active_connections(&self) -> usize {
        lock(&self.shared.relays).len()
    }

    /// Stops accepting and checking, closes the relayed connections and
    /// waits for the acceptor and health threads. Idempotent; also done on
    /// drop.
    pub fn shutdown(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.wake_health_thread();
        if let Some(listener) = self.listener.take() {
            // On Linux, shutting down a listening socket makes a blocked
            // accept() return (EINVAL), which ends the acceptor.
            if let Err(e) =
                nix::sys::socket::shutdown(listener.as_raw_fd(), nix::sys::socket::Shutdown::Both)
            {
                tracing::warn!(listen = %self.local_addr, "apiserver load balancer: shutting down the listener: {e}");
            }
        }
        for handle in [self.acceptor.take(), self.health.take()]
            .into_iter()
            .flatten()
        {
            if handle.join().is_err() {
                tracing::warn!("apiserver load balancer: a thread panicked");
            }
        }
        let relays: Vec<Relay> = lock(&self.shared.relays).drain().map(|(_, r)| r).collect();
        let closed = relays.len();
        for relay in relays {
            close_relay(&relay);
        }
        tracing::info!(
            listen = %self.local_addr,
            closed_connections = closed,
            "apiserver load balancer stopped"
        );
    }
}

impl Drop for ApiLoadBalancer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn close_relay(relay: &Relay) {
    let _ = relay.client.shutdown(Shutdown::Both);
    if let Some(backend) = &relay.backend {
        let _ = backend.shutdown(Shutdown::Both);
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    loop {
        let accepted = listener.accept();
        if shared.stopping() {
            return;
        }
        let (client, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("apiserver load balancer: accept failed: {e}");
                thread::sleep(ACCEPT_ERROR_PAUSE);
                continue;
            }
        };
        let id = shared.next_relay.fetch_add(1, Ordering::SeqCst);
        {
            let mut relays = lock(&shared.relays);
            if relays.len() >= shared.options.max_connections {
                tracing::warn!(
                    client = %peer,
                    limit = shared.options.max_connections,
                    "apiserver load balancer: too many connections, closing the new one"
                );
                continue;
            }
            match client.try_clone() {
                Ok(clone) => {
                    relays.insert(
                        id,
                        Relay {
                            client: clone,
                            backend: None,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(client = %peer, "apiserver load balancer: {e}");
                    continue;
                }
            }
        }
        let relay_shared = shared.clone();
        let spawned = thread::Builder::new()
            .name("api-lb-relay".into())
            .stack_size(RELAY_STACK)
            .spawn(move || {
                let registration = Registration {
                    shared: &relay_shared,
                    id,
                };
                relay_connection(&registration, client, peer);
            });
        if let Err(e) = spawned {
            lock(&shared.relays).remove(&id);
            tracing::warn!(client = %peer, "apiserver load balancer: starting a relay thread: {e}");
        }
    }
}

/// A relay's entry in [`Shared::relays`], removed when the relay ends
/// however it ends.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.shared.relays).remove(&self.id);
    }
}

fn relay_connection(registration: &Registration<'_>, client: TcpStream, peer: SocketAddr) {
    let shared = registration.shared;
    let candidates = shared.selector().candidates();
    if candidates.is_empty() {
        tracing::warn!(client = %peer, "apiserver load balancer: no backends configured");
        return;
    }
    let Some((backend, address)) = connect_backend(shared, &candidates) else {
        if !shared.stopping() {
            tracing::warn!(
                client = %peer,
                tried = ?candidates,
                "apiserver load balancer: no apiserver backend reachable"
            );
        }
        return;
    };
    {
        let mut relays = lock(&shared.relays);
        match (relays.get_mut(&registration.id), backend.try_clone()) {
            // Shutdown drained the table while we were connecting.
            (None, _) => return,
            (Some(relay), Ok(clone)) => relay.backend = Some(clone),
            (Some(_), Err(e)) => {
                tracing::warn!(client = %peer, backend = %address, "apiserver load balancer: {e}");
                return;
            }
        }
    }
    configure_sockets(&client, &backend, address);
    tracing::debug!(client = %peer, backend = %address, "apiserver load balancer: relaying");
    let (up, down) = splice(client, backend);
    tracing::debug!(
        client = %peer,
        backend = %address,
        bytes_up = ?up,
        bytes_down = ?down,
        "apiserver load balancer: connection ended"
    );
}

/// Tries the candidates in order; marks the ones that fail unhealthy.
fn connect_backend(shared: &Shared, candidates: &[SocketAddr]) -> Option<(TcpStream, SocketAddr)> {
    for &address in candidates {
        if shared.stopping() {
            return None;
        }
        match TcpStream::connect_timeout(&address, shared.options.connect_timeout) {
            Ok(stream) => {
                shared.selector().connected(address);
                return Some((stream, address));
            }
            Err(e) => {
                if shared.selector().connect_failed(address) {
                    tracing::warn!(
                        backend = %address,
                        "apiserver load balancer: backend marked unhealthy: connect failed: {e}"
                    );
                } else {
                    tracing::debug!(backend = %address, "apiserver load balancer: connect failed: {e}");
                }
            }
        }
    }
    None
}

fn configure_sockets(client: &TcpStream, backend: &TcpStream, address: SocketAddr) {
    use nix::sys::socket::{setsockopt, sockopt};
    // API traffic is request/response: latency matters more than packing.
    let nodelay = client.set_nodelay(true).and(backend.set_nodelay(true));
    let keepalive = setsockopt(backend, sockopt::KeepAlive, &true)
        .and(setsockopt(
            backend,
            sockopt::TcpKeepIdle,
            &KEEPALIVE_IDLE_SECS,
        ))
        .and(setsockopt(
            backend,
            sockopt::TcpKeepInterval,
            &KEEPALIVE_INTERVAL_SECS,
        ))
        .and(setsockopt(
            backend,
            sockopt::TcpKeepCount,
            &KEEPALIVE_PROBES,
        ));
    if let Err(e) = nodelay {
        tracing::debug!(backend = %address, "apiserver load balancer: TCP_NODELAY: {e}");
    }
    if let Err(e) = keepalive {
        tracing::debug!(backend = %address, "apiserver load balancer: TCP keepalive: {e}");
    }
}

/// Relays both ways until both directions have ended: client → backend on
/// a second thread, backend → client on this one. Returns the bytes
/// relayed each way (or the error that ended that direction).
fn splice(client: TcpStream, backend: TcpStream) -> (io::Result<u64>, io::Result<u64>) {
    let clones = client
        .try_clone()
        .and_then(|c| Ok((c, backend.try_clone()?)));
    let (client_reader, backend_writer) = match clones {
        Ok(pair) => pair,
        Err(e) => {
            abort(&client, &backend);
            let down = Err(io::Error::new(e.kind(), e.to_string()));
            return (Err(e), down);
        }
    };
    let upstream = thread::Builder::new()
        .name("api-lb-relay-up".into())
        .stack_size(RELAY_STACK)
        .spawn(move || pump(client_reader, backend_writer));
    let upstream = match upstream {
        Ok(handle) => handle,
        Err(e) => {
            abort(&client, &backend);
            let down = Err(io::Error::new(e.kind(), e.to_string()));
            return (Err(e), down);
        }
    };
    let down = pump(backend, client);
    let up = upstream
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("relay thread panicked")));
    (up, down)
}

/// Copies `from` to `to` until end of stream, then shuts down the write
/// half of `to` (passing a half-close on). An error ends both directions.
fn pump(mut from: TcpStream, mut to: TcpStream) -> io::Result<u64> {
    let mut buffer = vec![0u8; RELAY_BUFFER];
    let mut total = 0u64;
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                abort(&from, &to);
                return Err(e);
            }
        };
        if let Err(e) = to.write_all(&buffer[..read]) {
            abort(&from, &to);
            return Err(e);
        }
        total += read as u64;
    }
    // The peer may already be gone (NotConnected): nothing left to tell it.
    let _ = to.shutdown(Shutdown::Write);
    Ok(total)
}

/// Ends a relay in both directions: the other direction's blocked read
/// returns at once.
fn abort(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

fn health_loop(shared: &Shared) {
    loop {
        let generation = *lock(&shared.health_generation);
        if shared.stopping() {
            return;
        }
        let backends = shared.selector().addresses();
        let results = check_all(shared.options.probe.as_ref(), &backends);
        if shared.stopping() {
            return;
        }
        for (address, result) in results {
            let healthy = result.is_ok();
            if !shared.selector().set_health(address, healthy) {
                continue;
            }
            match result {
                Ok(()) => {
                    tracing::info!(backend = %address, "apiserver load balancer: backend healthy")
                }
                Err(e) => tracing::warn!(
                    backend = %address,
                    "apiserver load balancer: backend unhealthy: {e}"
                ),
            }
        }
        let guard = lock(&shared.health_generation);
        let _unused = shared
            .health_wakeup
            .wait_timeout_while(guard, shared.options.health_interval, |current| {
                *current == generation && !shared.stopping()
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// Checks every backend at once, so one that times out does not delay
/// the verdict on the others.
fn check_all(
    probe: &dyn HealthProbe,
    backends: &[SocketAddr],
) -> Vec<(SocketAddr, Result<(), ProbeError>)> {
    thread::scope(|scope| {
        let pending: Vec<_> = backends
            .iter()
            .map(|&address| {
                let spawned = thread::Builder::new()
                    .name("api-lb-probe".into())
                    .spawn_scoped(scope, move || probe.check(address));
                (address, spawned)
            })
            .collect();
        pending
            .into_iter()
            .map(|(address, spawned)| {
                let result = match spawned {
                    Ok(handle) => handle.join().unwrap_or_else(|_| {
                        Err(ProbeError::Connect {
                            backend: address,
                            source: io::Error::other("health check panicked"),
                        })
                    }),
                    // No thread to spare: check inline.
                    Err(_) => probe.check(address),
                };
                (address, result)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    // -- BackendSelector ----------------------------------------------------

    #[test]
    fn fresh_backends_are_healthy_and_taken_round_robin() {
        let mut selector = BackendSelector::new(vec![addr(1), addr(2), addr(3)]);
        assert_eq!(
            selector.health(),
            vec![(addr(1), true), (addr(2), true), (addr(3), true)]
        );
        assert_eq!(selector.candidates(), vec![addr(1), addr(2), addr(3)]);
        assert_eq!(selector.candidates(), vec![addr(2), addr(3), addr(1)]);
        assert_eq!(selector.candidates(), vec![addr(3), addr(1), addr(2)]);
        assert_eq!(selector.candidates(), vec![addr(1), addr(2), addr(3)]);
    }

    #[test]
    fn the_backend_that_worked_last_comes_first() {
        let mut selector = BackendSelector::new(vec![addr(1), addr(2), addr(3)]);
        selector.connected(addr(2));
        assert_eq!(selector.sticky(), Some(addr(2)));
        for _ in 0..4 {
            let order = selector.candidates();
            assert_eq!(order[0], addr(2), "{order:?}");
            assert_eq!(order.len(), 3, "{order:?}");
        }
        // The fall-backs after the sticky backend still rotate.
        let fallbacks: std::collections::BTreeSet<Vec<SocketAddr>> = (0..3)
            .map(|_| selector.candidates()[1..].to_vec())
            .collect();
        assert_eq!(fallbacks.len(), 2, "{fallbacks:?}");
    }

    #[test]
    fn a_failed_backend_is_unhealthy_loses_stickiness_and_goes_last() {
        let mut selector = BackendSelector::new(vec![addr(1), addr(2), addr(3)]);
        selector.connected(addr(1));
        assert!(selector.connect_failed(addr(1)), "health changed");
        assert!(!selector.connect_failed(addr(1)), "already unhealthy");
        assert_eq!(selector.sticky(), None);
        assert_eq!(
            selector.health(),
            vec![(addr(1), false), (addr(2), true), (addr(3), true)]
        );
        for _ in 0..3 {
            let order = selector.candidates();
            assert_eq!(order.len(), 3, "{order:?}");
            assert_eq!(order[2], addr(1), "{order:?}");
        }
        // A connection that still succeeds on it (every healthy one failed)
        // makes it sticky, but an unhealthy sticky backend is not preferred.
        selector.connected(addr(1));
        assert_eq!(selector.candidates()[2], addr(1));
    }

    #[test]
    fn a_passing_check_brings_a_backend_back() {
        let mut selector = BackendSelector::new(vec![addr(1), addr(2)]);
        selector.connect_failed(addr(1));
        assert!(!selector.set_health(addr(1), false), "no change");
        assert!(selector.set_health(addr(1), true), "back");
        assert_eq!(selector.health(), vec![(addr(1), true), (addr(2), true)]);
        let order = selector.candidates();
        assert!(order.contains(&addr(1)) && order.len() == 2, "{order:?}");
    }

    #[test]
    fn a_failing_check_drops_the_sticky_choice() {
        let mut selector = BackendSelector::new(vec![addr(1), addr(2)]);
        selector.connected(addr(2));
        selector.set_health(addr(2), false);
        assert_eq!(selector.sticky(), None);
        assert_eq!(selector.candidates(), vec![addr(1), addr(2)]);
    }

    #[test]
    fn when_all_are_unhealthy_all_are_tried_in_configured_order() {
        let mut selector = BackendSelector::new(vec![addr(3), addr(1), addr(2)]);
        for port in [1, 2, 3] {
            selector.set_health(addr(port), false);
        }
        for _ in 0..3 {
            assert_eq!(selector.candidates(), vec![addr(3), addr(1), addr(2)]);
        }
    }

    #[test]
    fn replacing_backends_keeps_known_health_and_drops_a_removed_sticky() {
        let mut selector = BackendSelector::new(vec![addr(1), addr(2), addr(3)]);
        selector.set_health(addr(2), false);
        selector.connected(addr(3));
        assert!(selector.set_backends(vec![addr(2), addr(4), addr(2), addr(1)]));
        assert_eq!(
            selector.health(),
            vec![(addr(2), false), (addr(4), true), (addr(1), true)],
            "duplicates dropped, health of kept backends kept, new ones healthy"
        );
        assert_eq!(selector.sticky(), None, "addr 3 was removed");
        selector.connected(addr(4));
        assert!(!selector.set_backends(vec![addr(2), addr(4), addr(1)]));
        assert_eq!(
            selector.sticky(),
            Some(addr(4)),
            "kept backend stays sticky"
        );
        assert_eq!(selector.candidates()[0], addr(4));
    }

    #[test]
    fn the_default_listen_address_is_kubeprisms() {
        assert_eq!(DEFAULT_LISTEN.to_string(), "127.0.0.1:7445");
    }

    #[test]
    fn unknown_addresses_and_an_empty_set_are_harmless() {
        let mut selector = BackendSelector::new(Vec::new());
        assert!(selector.candidates().is_empty());
        assert!(!selector.set_health(addr(9), true));
        selector.connected(addr(9));
        assert_eq!(selector.sticky(), None);
        assert!(selector.set_backends(vec![addr(1)]));
        assert!(!selector.set_health(addr(9), false));
        assert_eq!(selector.candidates(), vec![addr(1)]);
        assert!(selector.set_backends(Vec::new()));
        assert!(selector.candidates().is_empty());
    }
}

/// The balancer with real sockets on loopback: echo backends that greet
/// with their name and, once the client has half-closed, report how many
/// bytes they received; a TLS server standing in for an apiserver.
#[cfg(test)]
mod socket_tests {
    use std::io::{BufRead, BufReader};
    use std::time::Instant;

    use super::*;

    /// Generous: the machine is slow and shared.
    const DEADLINE: Duration = Duration::from_secs(90);
    const POLL: Duration = Duration::from_millis(20);

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Polls `check` until it returns `Ok`, or fails with what it last saw.
    fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
        let start = Instant::now();
        loop {
            match check() {
                Ok(value) => return value,
                Err(seen) if start.elapsed() > DEADLINE => {
                    panic!("waited {DEADLINE:?} for {what}; last seen: {seen}")
                }
                Err(_) => thread::sleep(POLL),
            }
        }
    }

    fn options(probe: Arc<dyn HealthProbe>) -> Options {
        Options {
            connect_timeout: Duration::from_secs(2),
            health_interval: Duration::from_millis(100),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            probe,
        }
    }

    fn tcp_options() -> Options {
        options(Arc::new(TcpConnectProbe::default()))
    }

    fn health_of(lb: &ApiLoadBalancer, backend: SocketAddr) -> Result<bool, String> {
        let health = lb.backends_health();
        health
            .iter()
            .find(|(address, _)| *address == backend)
            .map(|&(_, healthy)| healthy)
            .ok_or_else(|| format!("{backend} not among {health:?}"))
    }

    fn wait_for_health(lb: &ApiLoadBalancer, backend: SocketAddr, healthy: bool) {
        wait_for(
            &format!("{backend} healthy = {healthy}"),
            || match health_of(lb, backend)? {
                h if h == healthy => Ok(()),
                _ => Err(format!("{:?}", lb.backends_health())),
            },
        )
    }

    /// Shuts a listener down so its blocked accept() returns.
    fn stop_listener(listener: &TcpListener) {
        let _ = nix::sys::socket::shutdown(listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    }

    /// Greets with `<name>\n`, echoes everything, and after the client's
    /// end of stream writes `bye <bytes received>\n` and closes.
    struct EchoBackend {
        name: String,
        address: SocketAddr,
        listener: Option<Arc<TcpListener>>,
        connections: Arc<Mutex<Vec<TcpStream>>>,
        acceptor: Option<JoinHandle<()>>,
        stopped: Arc<AtomicBool>,
    }

    impl EchoBackend {
        fn start(name: &str) -> Self {
            let listener = TcpListener::bind(loopback(0)).expect("bind an echo backend");
            Self::serve(name, listener)
        }

        /// A backend on a given address again (a restarted apiserver). The
        /// port may briefly be held by a connection of the killed one.
        fn restart(name: &str, address: SocketAddr) -> Self {
            let listener = wait_for(&format!("binding {address} again"), || {
                TcpListener::bind(address).map_err(|e| e.to_string())
            });
            Self::serve(name, listener)
        }

        fn serve(name: &str, listener: TcpListener) -> Self {
            let address = listener.local_addr().expect("echo backend address");
            let listener = Arc::new(listener);
            let connections = Arc::new(Mutex::new(Vec::new()));
            let stopped = Arc::new(AtomicBool::new(false));
            let acceptor = {
                let (listener, connections, stopped) =
                    (listener.clone(), connections.clone(), stopped.clone());
                let name = name.to_owned();
                thread::spawn(move || {
                    for stream in listener.incoming() {
                        if stopped.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else { continue };
                        if let Ok(clone) = stream.try_clone() {
                            lock(&connections).push(clone);
                        }
                        let name = name.clone();
                        thread::spawn(move || echo(&name, stream));
                    }
                })
            };
            Self {
                name: name.to_owned(),
                address,
                listener: Some(listener),
                connections,
                acceptor: Some(acceptor),
                stopped,
            }
        }

        /// Like a killed process: the port is closed and every connection
        /// is cut.
        fn kill(&mut self) {
            self.stopped.store(true, Ordering::SeqCst);
            if let Some(listener) = self.listener.take() {
                stop_listener(&listener);
            }
            if let Some(acceptor) = self.acceptor.take() {
                acceptor.join().expect("echo acceptor");
            }
            for connection in lock(&self.connections).drain(..) {
                let _ = connection.shutdown(Shutdown::Both);
            }
        }
    }

    impl Drop for EchoBackend {
        fn drop(&mut self) {
            self.kill();
        }
    }

    fn echo(name: &str, mut stream: TcpStream) {
        if stream.write_all(format!("{name}\n").as_bytes()).is_err() {
            return;
        }
        let mut buffer = vec![0u8; 64 * 1024];
        let mut received = 0usize;
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    if stream.write_all(&buffer[..n]).is_err() {
                        return;
                    }
                    received += n;
                }
                Err(_) => return,
            }
        }
        let _ = stream.write_all(format!("bye {received}\n").as_bytes());
        let _ = stream.shutdown(Shutdown::Write);
    }

    /// A client connection through the balancer, after the greeting.
    struct Client {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
        backend: String,
    }

    fn open(lb: SocketAddr) -> Result<Client, String> {
        let stream = TcpStream::connect(lb).map_err(|e| format!("connect {lb}: {e}"))?;
        stream
            .set_read_timeout(Some(DEADLINE))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream);
        let mut greeting = String::new();
        match reader.read_line(&mut greeting) {
            Ok(0) => Err("closed before the backend's greeting".to_owned()),
            Ok(_) => Ok(Client {
                reader,
                writer,
                backend: greeting.trim_end().to_owned(),
            }),
            Err(e) => Err(format!("reading the greeting: {e}")),
        }
    }

    /// Sends `payload` (concurrently with reading the echo), half-closes,
    /// and checks that the echo and then `bye <len>` come back. Returns the
    /// backend's name.
    fn exchange(lb: SocketAddr, payload: &[u8]) -> Result<String, String> {
        let Client {
            mut reader,
            mut writer,
            backend,
        } = open(lb)?;
        let sent = payload.to_vec();
        let sender = thread::spawn(move || {
            writer.write_all(&sent)?;
            // Half-close: the reply must still come back.
            writer.shutdown(Shutdown::Write)
        });
        let mut received = Vec::new();
        let read = reader.read_to_end(&mut received);
        let sent = sender.join().expect("sender thread");
        read.map_err(|e| format!("via {backend}: reading: {e}"))?;
        sent.map_err(|e| format!("via {backend}: sending: {e}"))?;
        let bye = format!("bye {}\n", payload.len());
        let expected_len = payload.len() + bye.len();
        if received.len() != expected_len
            || received[..payload.len()] != *payload
            || received[payload.len()..] != *bye.as_bytes()
        {
            let tail = String::from_utf8_lossy(&received[received.len().saturating_sub(40)..]);
            return Err(format!(
                "via {backend}: expected {} echoed bytes then {bye:?}, got {} bytes ending {tail:?}",
                payload.len(),
                received.len()
            ));
        }
        Ok(backend)
    }

    fn must_exchange(lb: &ApiLoadBalancer, payload: &[u8]) -> String {
        exchange(lb.local_addr(), payload).unwrap_or_else(|e| {
            panic!(
                "exchange through {}: {e}; backends: {:?}",
                lb.local_addr(),
                lb.backends_health()
            )
        })
    }

    #[test]
    fn forwards_and_fails_over_when_backends_die() {
        let mut backends: Vec<EchoBackend> = ["a", "b", "c"]
            .iter()
            .map(|name| EchoBackend::start(name))
            .collect();
        let addresses: Vec<SocketAddr> = backends.iter().map(|b| b.address).collect();
        let lb = ApiLoadBalancer::start_with(loopback(0), addresses.clone(), tcp_options())
            .expect("start the load balancer");

        let first = must_exchange(&lb, b"hello");
        for _ in 0..5 {
            assert_eq!(must_exchange(&lb, b"again"), first, "sticky backend");
        }

        let index = backends
            .iter()
            .position(|b| b.name == first)
            .expect("known");
        let killed_address = backends[index].address;
        backends[index].kill();
        // Every new connection succeeds at once on another backend, and
        // sticks to it.
        let second = must_exchange(&lb, b"after the kill");
        assert_ne!(second, first);
        for _ in 0..10 {
            assert_eq!(must_exchange(&lb, b"x"), second);
        }
        wait_for_health(&lb, killed_address, false);

        let second_index = backends
            .iter()
            .position(|b| b.name == second)
            .expect("known");
        backends[second_index].kill();
        let third = must_exchange(&lb, b"after the second kill");
        assert!(third != first && third != second, "{third}");

        // The first backend comes back on its port: its check passes and
        // it is healthy again.
        backends[index] = EchoBackend::restart(&first, killed_address);
        wait_for_health(&lb, killed_address, true);
        let health = lb.backends_health();
        assert_eq!(
            health.iter().map(|&(a, _)| a).collect::<Vec<_>>(),
            addresses,
            "configured order: {health:?}"
        );
    }

    #[test]
    fn set_backends_switches_new_connections_and_keeps_established_ones() {
        let a = EchoBackend::start("a");
        let b = EchoBackend::start("b");
        let lb = ApiLoadBalancer::start_with(loopback(0), vec![a.address], tcp_options())
            .expect("start the load balancer");
        let mut established = open(lb.local_addr()).expect("connect through the balancer");
        assert_eq!(established.backend, "a");

        lb.set_backends(vec![b.address]);
        assert_eq!(lb.backends_health(), vec![(b.address, true)]);
        for _ in 0..5 {
            assert_eq!(must_exchange(&lb, b"new"), "b");
        }

        established
            .writer
            .write_all(b"still here\n")
            .expect("write on the established connection");
        let mut line = String::new();
        established
            .reader
            .read_line(&mut line)
            .expect("read on the established connection");
        assert_eq!(line, "still here\n", "the old connection still reaches a");
    }

    #[test]
    fn a_big_transfer_goes_through_intact_both_ways_with_a_half_close() {
        let backend = EchoBackend::start("big");
        let lb = ApiLoadBalancer::start_with(loopback(0), vec![backend.address], tcp_options())
            .expect("start the load balancer");
        let payload: Vec<u8> = (0..8 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 11)) as u8)
            .collect();
        // `exchange` checks all 8 MiB echoed back, then the backend's
        // count, sent only after it saw the client's half-close.
        assert_eq!(must_exchange(&lb, &payload), "big");
        assert_eq!(must_exchange(&lb, b""), "big", "empty half-closed request");
    }

    #[test]
    fn a_black_hole_backend_costs_one_connect_timeout() {
        // A listener whose accept queue is full drops new SYNs: connecting
        // to it times out, like an apiserver host that vanished.
        let black_hole = TcpListener::bind(loopback(0)).expect("bind");
        let black_hole_address = black_hole.local_addr().expect("address");
        nix::sys::socket::listen(
            &black_hole,
            nix::sys::socket::Backlog::new(0).expect("backlog"),
        )
        .expect("shrink the backlog");
        let _queued = TcpStream::connect(black_hole_address).expect("fill the queue");
        let probe = TcpStream::connect_timeout(&black_hole_address, Duration::from_millis(300));
        assert!(
            probe.is_err(),
            "precondition: a connection to a full accept queue should time out"
        );

        let live = EchoBackend::start("live");
        let mut lb_options = tcp_options();
        lb_options.connect_timeout = Duration::from_secs(5);
        let lb = ApiLoadBalancer::start_with(
            loopback(0),
            vec![black_hole_address, live.address],
            lb_options,
        )
        .expect("start the load balancer");

        // The first connection may wait for the black hole once.
        assert_eq!(must_exchange(&lb, b"first"), "live");
        wait_for_health(&lb, black_hole_address, false);
        // Then it is skipped: five connections take less than one timeout.
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(must_exchange(&lb, b"quick"), "live");
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "five connections took {:?}: the black hole was tried again",
            start.elapsed()
        );
    }

    #[derive(Debug)]
    struct AlwaysFailing;

    impl HealthProbe for AlwaysFailing {
        fn check(&self, backend: SocketAddr) -> Result<(), ProbeError> {
            Err(ProbeError::NotReady {
                backend,
                status: 503,
                body: "test probe".into(),
            })
        }
    }

    #[test]
    fn when_every_backend_looks_unhealthy_all_are_still_tried() {
        let closed = {
            let listener = TcpListener::bind(loopback(0)).expect("bind");
            listener.local_addr().expect("address")
        };
        let live = EchoBackend::start("live");
        let lb = ApiLoadBalancer::start_with(
            loopback(0),
            vec![closed, live.address],
            options(Arc::new(AlwaysFailing)),
        )
        .expect("start the load balancer");
        wait_for_health(&lb, closed, false);
        wait_for_health(&lb, live.address, false);
        for _ in 0..3 {
            assert_eq!(must_exchange(&lb, b"anyway"), "live");
        }
    }

    #[test]
    fn connections_beyond_the_cap_are_closed() {
        let backend = EchoBackend::start("capped");
        let mut lb_options = tcp_options();
        lb_options.max_connections = 2;
        let lb = ApiLoadBalancer::start_with(loopback(0), vec![backend.address], lb_options)
            .expect("start the load balancer");
        let first = open(lb.local_addr()).expect("first connection");
        let _second = open(lb.local_addr()).expect("second connection");
        assert_eq!(lb.active_connections(), 2);
        let refused = open(lb.local_addr());
        assert!(
            refused.is_err(),
            "a third connection must be closed, yet it reached {:?}",
            refused.map(|c| c.backend)
        );

        drop(first);
        wait_for("a free slot after closing a connection", || {
            open(lb.local_addr()).map(drop)
        });
    }

    #[test]
    fn shutdown_closes_the_listener_and_the_relayed_connections() {
        let backend = EchoBackend::start("s");
        let mut lb = ApiLoadBalancer::start_with(loopback(0), vec![backend.address], tcp_options())
            .expect("start the load balancer");
        let address = lb.local_addr();
        let mut client = open(address).expect("connect through the balancer");
        lb.shutdown();
        assert_eq!(lb.active_connections(), 0);
        let mut rest = Vec::new();
        let ended = client.reader.read_to_end(&mut rest);
        assert!(
            !matches!(&ended, Err(e) if e.kind() == io::ErrorKind::WouldBlock
                || e.kind() == io::ErrorKind::TimedOut),
            "the relayed connection was not closed: {ended:?}"
        );
        let again = TcpStream::connect(address);
        assert!(again.is_err(), "{address} still accepts after shutdown");
        lb.shutdown();
    }

    // -- /readyz and TLS pass-through ---------------------------------------

    /// A TLS server standing in for an apiserver: `/readyz` answers 200 or
    /// 503 as told, any other path 200 with the path.
    struct TlsApiserver {
        address: SocketAddr,
        ready: Arc<AtomicBool>,
        cert_pem: String,
        listener: Arc<TcpListener>,
        acceptor: Option<JoinHandle<()>>,
    }

    impl TlsApiserver {
        fn start() -> Self {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::{CertificateDer, PrivateKeyDer};

            let identity = cairn_node_api::ServerIdentity::generate(&["127.0.0.1", "localhost"])
                .expect("generate a server identity");
            let dir = tempfile::tempdir().expect("tempdir");
            identity.store(dir.path()).expect("store the identity");
            let key_pem =
                std::fs::read(dir.path().join(cairn_node_api::KEY_FILE)).expect("read the key");
            let cert_pem = identity.cert_pem().to_owned();
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("certificate PEM");
            let key = PrivateKeyDer::from_pem_slice(&key_pem).expect("key PEM");
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
            let config = Arc::new(config);

            let listener = Arc::new(TcpListener::bind(loopback(0)).expect("bind"));
            let address = listener.local_addr().expect("address");
            let ready = Arc::new(AtomicBool::new(true));
            let acceptor = {
                let (listener, ready) = (listener.clone(), ready.clone());
                thread::spawn(move || {
                    for stream in listener.incoming() {
                        let Ok(stream) = stream else { return };
                        let (config, ready) = (config.clone(), ready.clone());
                        thread::spawn(move || serve_https(config, stream, &ready));
                    }
                })
            };
            Self {
                address,
                ready,
                cert_pem,
                listener,
                acceptor: Some(acceptor),
            }
        }
    }

    impl Drop for TlsApiserver {
        fn drop(&mut self) {
            stop_listener(&self.listener);
            if let Some(acceptor) = self.acceptor.take() {
                let _ = acceptor.join();
            }
        }
    }

    fn serve_https(config: Arc<rustls::ServerConfig>, tcp: TcpStream, ready: &AtomicBool) {
        let _ = tcp.set_read_timeout(Some(DEADLINE));
        let Ok(connection) = rustls::ServerConnection::new(config) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
            match tls.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head);
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        let (status, body) = match path.as_str() {
            "/readyz" if ready.load(Ordering::SeqCst) => ("200 OK", "ok".to_owned()),
            "/readyz" => (
                "503 Service Unavailable",
                "[-]etcd failed: reason withheld".to_owned(),
            ),
            _ => ("200 OK", format!("{{\"path\":\"{path}\"}}")),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tls.write_all(response.as_bytes());
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }

    #[test]
    fn the_readyz_probe_follows_readiness_and_tls_passes_through() {
        let apiserver = TlsApiserver::start();
        let probe = ReadyzProbe::new(Duration::from_secs(5));
        probe.check(apiserver.address).expect("a ready apiserver");
        apiserver.ready.store(false, Ordering::SeqCst);
        match probe.check(apiserver.address) {
            Err(ProbeError::NotReady {
                status: 503, body, ..
            }) => {
                assert!(body.contains("etcd failed"), "{body}")
            }
            other => panic!("expected NotReady with 503, got {other:?}"),
        }
        apiserver.ready.store(true, Ordering::SeqCst);

        let lb = ApiLoadBalancer::start_with(
            loopback(0),
            vec![apiserver.address],
            options(Arc::new(probe)),
        )
        .expect("start the load balancer");
        // TCP still works, but a not-ready apiserver is unhealthy.
        apiserver.ready.store(false, Ordering::SeqCst);
        wait_for_health(&lb, apiserver.address, false);
        apiserver.ready.store(true, Ordering::SeqCst);
        wait_for_health(&lb, apiserver.address, true);

        // The client verifies the apiserver's own certificate (which names
        // 127.0.0.1) through the balancer: TLS passes through untouched.
        let client = KubeClient::new(
            &format!("https://{}", lb.local_addr()),
            ServerTrust::CaPem(apiserver.cert_pem.clone().into_bytes()),
            Credentials::Anonymous,
        )
        .expect("client");
        let (status, body) = client
            .request("GET", "/version", None)
            .expect("GET /version through the balancer");
        assert_eq!(status, 200);
        assert_eq!(String::from_utf8_lossy(&body), "{\"path\":\"/version\"}");
    }
}
