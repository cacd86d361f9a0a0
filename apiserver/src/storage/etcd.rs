//! [`Storage`] on etcd v3 (gRPC via the `etcd-client` crate; works with
//! etcd 3.4 and later: only Range, Txn, DeleteRange, Compact and Watch are
//! used).
//!
//! - create: `txn(create_revision(key) == 0) then put`;
//! - update: `txn(mod_revision(key) == expected) then put else get` (the
//!   `else get` tells NotFound from Conflict and carries the current
//!   revision);
//! - delete: `txn(mod_revision(key) == expected) then delete(prev_kv) else
//!   get`, or a plain delete with `prev_kv`;
//! - list: one linearizable range over `[start, prefix_end)` at a revision,
//!   with `limit` and the count of the rest;
//! - watch: `start_revision = from + 1`, `prev_kv`, optional progress
//!   notifications; the call returns once etcd confirmed the watch.
//!
//! Every request is bounded by [`EtcdConfig::request_timeout`]. When one
//! fails for transport reasons (or times out), the client is replaced by a
//! fresh, lazily connecting one, so the next request dials again: an etcd
//! that was down is used again as soon as it is back.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    Identity, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures_util::StreamExt as _;

use super::{
    BoxFuture, Deleted, KeyValue, ListOptions, ListResult, Operation, Result, Storage,
    StorageError, WatchEvent, WatchStream, check_expected, check_key, check_list, check_prefix,
    prefix_end,
};

/// How to reach etcd (kube-apiserver's `--etcd-servers`, `--etcd-cafile`,
/// `--etcd-certfile`, `--etcd-keyfile`).
#[derive(Clone)]
pub struct EtcdConfig {
    /// `https://host:port` (or `http://` without TLS).
    pub endpoints: Vec<String>,
    /// The CA that signed etcd's serving certificate.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate and key (`apiserver-etcd-client.crt/.key`).
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
    /// Bound on establishing a connection.
    pub dial_timeout: Duration,
    /// Bound on every request (and on establishing a watch).
    pub request_timeout: Duration,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("cert_pem", &self.cert_pem.as_ref().map(|_| "<pem>"))
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .field("dial_timeout", &self.dial_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// kube-apiserver's default dial timeout.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// The default bound on one request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response accepted (a list without limit can be large;
/// kube-apiserver allows up to 2 GiB as well). The client's default is 4 MiB.
pub const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;
/// The bound on a health check.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

impl EtcdConfig {
    /// A configuration without TLS.
    pub fn plain(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            ca_pem: None,
            cert_pem: None,
            key_pem: None,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The configuration from kube-apiserver's flags: `servers` is the
    /// comma-separated `--etcd-servers`; the files are `--etcd-cafile`,
    /// `--etcd-certfile` and `--etcd-keyfile`.
    pub fn from_files(
        servers: &str,
        ca_file: Option<&Path>,
        cert_file: Option<&Path>,
        key_file: Option<&Path>,
    ) -> Result<Self> {
        let endpoints: Vec<String> = servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let invalid = |reason: String| StorageError::InvalidArgument {
            operation: Operation::Connect,
            key: servers.to_owned(),
            reason,
        };
        if endpoints.is_empty() {
            return Err(invalid("no etcd servers given".to_owned()));
        }
        if let Some(bad) = endpoints
            .iter()
            .find(|e| !(e.starts_with("https://") || e.starts_with("http://")))
        {
            return Err(invalid(format!(
                "etcd server {bad:?} must start with https:// or http://"
            )));
        }
        let read = |path: Option<&Path>| -> Result<Option<Vec<u8>>> {
            path.map(|path| {
                std::fs::read(path).map_err(|e| invalid(format!("{}: {e}", path.display())))
            })
            .transpose()
        };
        let config = Self {
            ca_pem: read(ca_file)?,
            cert_pem: read(cert_file)?,
            key_pem: read(key_file)?,
            ..Self::plain(endpoints)
        };
        if config.cert_pem.is_some() != config.key_pem.is_some() {
            return Err(invalid(
                "the etcd client certificate and key go together".to_owned(),
            ));
        }
        Ok(config)
    }

    pub fn with_timeouts(mut self, dial: Duration, request: Duration) -> Self {
        self.dial_timeout = dial;
        self.request_timeout = request;
        self
    }

    fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.dial_timeout)
            .with_timeout(self.request_timeout)
            .with_keep_alive(Duration::from_secs(10), self.request_timeout)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        let tls = self.endpoints.iter().any(|e| e.starts_with("https://"));
        if tls {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let (Some(cert), Some(key)) = (&self.cert_pem, &self.key_pem) {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls);
        }
        options
    }
}

/// The etcd-backed store.
#[derive(Clone)]
pub struct EtcdStorage {
    config: Arc<EtcdConfig>,
    /// The current client and its generation (bumped on reconnect).
    client: Arc<Mutex<(u64, Client)>>,
}

impl std::fmt::Debug for EtcdStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStorage")
            .field("endpoints", &self.config.endpoints)
            .finish_non_exhaustive()
    }
}

fn unavailable(operation: Operation, key: &str, reason: impl Into<String>) -> StorageError {
    StorageError::Unavailable {
        operation,
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn internal(operation: Operation, key: &str, reason: impl Into<String>) -> StorageError {
    StorageError::Internal {
        operation,
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// How long a request is retried while etcd's leader moves (an election
/// under emulation takes a few seconds).
const LEADER_CHANGE_RETRY: Duration = Duration::from_secs(5);

/// Whether `error` only says etcd's leader is moving, and `operation` may
/// be sent again: reads always; writes only when the request cannot have
/// been applied (refused without a leader, or dropped before proposing).
fn leader_moving(error: &StorageError, operation: Operation) -> bool {
    let StorageError::Unavailable { reason, .. } = error else {
        return false;
    };
    let never_proposed = reason.contains("no leader") || reason.contains("proposal dropped");
    let read = matches!(
        operation,
        Operation::Get | Operation::List | Operation::CurrentRevision | Operation::Health
    );
    never_proposed || (read && reason.contains("leader changed"))
}

/// Maps a client error to a storage error; `revision` is the revision the
/// request read at, if any.
fn map_error(
    error: etcd_client::Error,
    operation: Operation,
    key: &str,
    revision: i64,
) -> StorageError {
    use etcd_client::Error as E;
    use tonic::Code;
    match error {
        E::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("required revision has been compacted") {
                return StorageError::Compacted {
                    operation,
                    key: key.to_owned(),
                    revision,
                    compact_revision: None,
                };
            }
            if message.contains("required revision is a future revision") {
                return StorageError::FutureRevision {
                    operation,
                    key: key.to_owned(),
                    revision,
                };
            }
            match status.code() {
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Unknown
                | Code::Aborted
                | Code::ResourceExhausted => unavailable(operation, key, status.to_string()),
                _ => internal(operation, key, status.to_string()),
            }
        }
        E::TransportError(e) => unavailable(operation, key, format!("transport: {e}")),
        E::IoError(e) => unavailable(operation, key, format!("io: {e}")),
        E::WatchError(e) => unavailable(operation, key, format!("watch: {e}")),
        other => internal(operation, key, other.to_string()),
    }
}

fn convert_kv(operation: Operation, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = std::str::from_utf8(kv.key()).map_err(|_| {
        internal(
            operation,
            &String::from_utf8_lossy(kv.key()),
            "key is not UTF-8",
        )
    })?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn header_revision(
    operation: Operation,
    key: &str,
    header: Option<&etcd_client::ResponseHeader>,
) -> Result<i64> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| internal(operation, key, "response without header"))
}

/// The first key-value of the `get` in a failed transaction's `else`.
fn else_get(operation: Operation, key: &str, ops: &[TxnOpResponse]) -> Result<Option<KeyValue>> {
    match ops.first() {
        Some(TxnOpResponse::Get(get)) => get
            .kvs()
            .first()
            .map(|kv| convert_kv(operation, kv))
            .transpose(),
        _ => Err(internal(operation, key, "transaction without get response")),
    }
}

impl EtcdStorage {
    /// A store on `config`. Connections are made lazily, so this succeeds
    /// while etcd is down (requests then fail with `Unavailable`); use
    /// [`Storage::health`] to wait for it.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        let client = new_client(&config).await?;
        Ok(Self {
            config: Arc::new(config),
            client: Arc::new(Mutex::new((0, client))),
        })
    }

    fn current_client(&self) -> (u64, Client) {
        let guard = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (guard.0, guard.1.clone())
    }

    /// Replaces the client of generation `generation` with a fresh one
    /// (unless another request already did).
    async fn reconnect(&self, generation: u64) {
        let Ok(fresh) = new_client(&self.config).await else {
            return;
        };
        let mut guard = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.0 == generation {
            *guard = (generation.wrapping_add(1), fresh);
        }
    }

    /// Runs one request with the timeout; transport failures reconnect.
    /// A request etcd refused or lost only because its leader is moving
    /// (an election, a leadership transfer) is tried again for a short
    /// while, as etcd's own client does: reads always, writes only when
    /// etcd says the request was never proposed.
    async fn call<T, F, Fut>(
        &self,
        operation: Operation,
        key: &str,
        revision: i64,
        timeout: Duration,
        request: F,
    ) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let (generation, client) = self.current_client();
            let error = match tokio::time::timeout(timeout, request(client)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => map_error(error, operation, key, revision),
                Err(_) => unavailable(
                    operation,
                    key,
                    format!("no answer from etcd within {timeout:?}"),
                ),
            };
            let retry = leader_moving(&error, operation)
                && started.elapsed() + pause < LEADER_CHANGE_RETRY.min(timeout);
            if !retry {
                if error.is_unavailable() {
                    self.reconnect(generation).await;
                }
                return Err(error);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    async fn txn(
        &self,
        operation: Operation,
        key: &str,
        txn: Txn,
    ) -> Result<(bool, i64, Vec<TxnOpResponse>)> {
        let timeout = self.config.request_timeout;
        let response = self
            .call(operation, key, 0, timeout, |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        let revision = header_revision(operation, key, response.header())?;
        Ok((response.succeeded(), revision, response.op_responses()))
    }

    async fn open_watch(
        &self,
        prefix: &str,
        from_revision: i64,
        progress_notify: bool,
    ) -> Result<WatchStream> {
        let mut options = WatchOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_prev_key();
        if from_revision > 0 {
            options = options.with_start_revision(from_revision + 1);
        }
        if progress_notify {
            options = options.with_progress_notify();
        }
        let key = prefix.to_owned();
        let timeout = self.config.request_timeout;
        let (stream, created) = self
            .call(Operation::Watch, prefix, from_revision, timeout, |client| {
                let (key, options) = (key.clone(), options.clone());
                async move {
                    let mut stream = client
                        .watch_client()
                        .max_decoding_message_size(MAX_RESPONSE_BYTES)
                        .watch(key, Some(options))
                        .await?;
                    // Wait for etcd to confirm the watch.
                    loop {
                        match stream.message().await? {
                            Some(response) if response.created() => {
                                return Ok((stream, Some(response)));
                            }
                            Some(_) => continue,
                            None => return Ok((stream, None)),
                        }
                    }
                }
            })
            .await?;
        let Some(created) = created else {
            return Err(unavailable(
                Operation::Watch,
                prefix,
                "watch stream closed before it was created",
            ));
        };
        let mut state = EtcdWatch {
            stream,
            pending: std::collections::VecDeque::new(),
            done: false,
            prefix: prefix.to_owned(),
            from_revision,
        };
        // A creation response can already carry a cancellation.
        state.absorb(created);
        let events = futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        });
        Ok(events.boxed())
    }
}

async fn new_client(config: &EtcdConfig) -> Result<Client> {
    let first = config.endpoints.first().cloned().unwrap_or_default();
    let connect = Client::connect(config.endpoints.clone(), Some(config.connect_options()));
    match tokio::time::timeout(config.dial_timeout, connect).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(map_error(error, Operation::Connect, &first, 0)),
        Err(_) => Err(unavailable(
            Operation::Connect,
            &first,
            format!("no connection within {:?}", config.dial_timeout),
        )),
    }
}

/// The state of one etcd watch turned into [`WatchEvent`]s.
struct EtcdWatch {
    stream: etcd_client::WatchStream,
    pending: std::collections::VecDeque<Result<WatchEvent>>,
    done: bool,
    prefix: String,
    from_revision: i64,
}

impl EtcdWatch {
    /// Queues the items of one response.
    fn absorb(&mut self, response: etcd_client::WatchResponse) {
        let op = Operation::Watch;
        if response.canceled() {
            let error = if response.compact_revision() != 0 {
                StorageError::Compacted {
                    operation: op,
                    key: self.prefix.clone(),
                    revision: self.from_revision,
                    compact_revision: Some(response.compact_revision()),
                }
            } else {
                unavailable(
                    op,
                    &self.prefix,
                    format!("watch canceled by etcd: {}", response.cancel_reason()),
                )
            };
            self.pending.push_back(Err(error));
            self.done = true;
            return;
        }
        if response.created() && response.events().is_empty() {
            return;
        }
        if response.events().is_empty() {
            if let Some(header) = response.header() {
                self.pending.push_back(Ok(WatchEvent::Progress {
                    revision: header.revision(),
                }));
            }
            return;
        }
        for event in response.events() {
            let item = self.convert(event);
            let failed = item.is_err();
            self.pending.push_back(item);
            if failed {
                self.done = true;
                return;
            }
        }
    }

    fn convert(&self, event: &etcd_client::Event) -> Result<WatchEvent> {
        let op = Operation::Watch;
        let kv = event
            .kv()
            .ok_or_else(|| internal(op, &self.prefix, "watch event without key-value"))?;
        let prev = event.prev_kv().map(|p| convert_kv(op, p)).transpose()?;
        match event.event_type() {
            EventType::Put => Ok(WatchEvent::Put {
                kv: convert_kv(op, kv)?,
                prev,
            }),
            EventType::Delete => {
                let prev = prev.ok_or_else(|| {
                    internal(
                        op,
                        &String::from_utf8_lossy(kv.key()),
                        "delete event without the previous value",
                    )
                })?;
                Ok(WatchEvent::Delete {
                    prev,
                    revision: kv.mod_revision(),
                })
            }
        }
    }

    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            match self.stream.message().await {
                Ok(Some(response)) => self.absorb(response),
                Ok(None) => {
                    self.done = true;
                    return Some(Err(unavailable(
                        Operation::Watch,
                        &self.prefix,
                        "watch stream closed by etcd",
                    )));
                }
                Err(error) => {
                    self.done = true;
                    let error = match map_error(error, Operation::Watch, &self.prefix, 0) {
                        StorageError::Internal { reason, .. } => {
                            unavailable(Operation::Watch, &self.prefix, reason)
                        }
                        other => other,
                    };
                    return Some(Err(error));
                }
            }
        }
    }
}

impl Storage for EtcdStorage {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>>> {
        Box::pin(async move {
            check_key(Operation::Get, key)?;
            let timeout = self.config.request_timeout;
            let response = self
                .call(Operation::Get, key, 0, timeout, |mut client| {
                    let owned = key.to_owned();
                    async move { client.get(owned, None).await }
                })
                .await?;
            response
                .kvs()
                .first()
                .map(|kv| convert_kv(Operation::Get, kv))
                .transpose()
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
        options: ListOptions,
    ) -> BoxFuture<'a, Result<ListResult>> {
        Box::pin(async move {
            check_list(prefix, &options)?;
            let start: Vec<u8> = match &options.start_after {
                Some(key) => {
                    let mut start = key.as_bytes().to_vec();
                    start.push(0);
                    start
                }
                None => prefix.as_bytes().to_vec(),
            };
            let requested = options.revision.filter(|&r| r > 0);
            let limit = options.limit.filter(|&l| l > 0);
            let mut get = GetOptions::new().with_range(prefix_end(prefix.as_bytes()));
            if let Some(revision) = requested {
                get = get.with_revision(revision);
            }
            if let Some(limit) = limit {
                get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            let timeout = self.config.request_timeout;
            let response = self
                .call(
                    Operation::List,
                    prefix,
                    requested.unwrap_or(0),
                    timeout,
                    |client| {
                        let (start, get) = (start.clone(), get.clone());
                        async move {
                            client
                                .kv_client()
                                .max_decoding_message_size(MAX_RESPONSE_BYTES)
                                .get(start, Some(get))
                                .await
                        }
                    },
                )
                .await?;
            let revision = match requested {
                Some(revision) => revision,
                None => header_revision(Operation::List, prefix, response.header())?,
            };
            let items = response
                .kvs()
                .iter()
                .map(|kv| convert_kv(Operation::List, kv))
                .collect::<Result<Vec<_>>>()?;
            let returned = i64::try_from(items.len()).unwrap_or(i64::MAX);
            let more = response.more();
            Ok(ListResult {
                items,
                revision,
                more,
                remaining: more.then(|| (response.count() - returned).max(1)),
            })
        })
    }

    fn create<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            check_key(Operation::Create, key)?;
            let txn = Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value.to_vec(), None::<PutOptions>)]);
            let (succeeded, revision, _) = self.txn(Operation::Create, key, txn).await?;
            if succeeded {
                Ok(revision)
            } else {
                Err(StorageError::AlreadyExists {
                    key: key.to_owned(),
                })
            }
        })
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        expected_mod_revision: i64,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            check_key(Operation::Update, key)?;
            check_expected(Operation::Update, key, expected_mod_revision)?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key,
                    CompareOp::Equal,
                    expected_mod_revision,
                )])
                .and_then([TxnOp::put(key, value.to_vec(), None::<PutOptions>)])
                .or_else([TxnOp::get(key, None::<GetOptions>)]);
            let (succeeded, revision, ops) = self.txn(Operation::Update, key, txn).await?;
            if succeeded {
                return Ok(revision);
            }
            match else_get(Operation::Update, key, &ops)? {
                None => Err(StorageError::NotFound {
                    operation: Operation::Update,
                    key: key.to_owned(),
                }),
                Some(current) => Err(StorageError::Conflict {
                    operation: Operation::Update,
                    key: key.to_owned(),
                    expected: expected_mod_revision,
                    current_revision: current.mod_revision,
                }),
            }
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        precondition: Option<i64>,
    ) -> BoxFuture<'a, Result<Deleted>> {
        Box::pin(async move {
            check_key(Operation::Delete, key)?;
            let delete = TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()));
            let txn = match precondition {
                Some(expected) => {
                    check_expected(Operation::Delete, key, expected)?;
                    Txn::new()
                        .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
                        .and_then([delete])
                        .or_else([TxnOp::get(key, None::<GetOptions>)])
                }
                None => Txn::new().and_then([delete]),
            };
            let (succeeded, revision, ops) = self.txn(Operation::Delete, key, txn).await?;
            let not_found = || StorageError::NotFound {
                operation: Operation::Delete,
                key: key.to_owned(),
            };
            if !succeeded {
                let current = else_get(Operation::Delete, key, &ops)?.ok_or_else(not_found)?;
                return Err(StorageError::Conflict {
                    operation: Operation::Delete,
                    key: key.to_owned(),
                    expected: precondition.unwrap_or(0),
                    current_revision: current.mod_revision,
                });
            }
            let prev = match ops.first() {
                Some(TxnOpResponse::Delete(deleted)) => deleted
                    .prev_kvs()
                    .first()
                    .map(|kv| convert_kv(Operation::Delete, kv))
                    .transpose()?,
                _ => {
                    return Err(internal(
                        Operation::Delete,
                        key,
                        "transaction without delete response",
                    ));
                }
            };
            let prev = prev.ok_or_else(not_found)?;
            Ok(Deleted { revision, prev })
        })
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: i64,
        progress_notify: bool,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        Box::pin(async move {
            check_prefix(Operation::Watch, prefix)?;
            self.open_watch(prefix, from_revision, progress_notify)
                .await
        })
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<i64>> {
        Box::pin(async move {
            let timeout = self.config.request_timeout;
            let response = self
                .call(
                    Operation::CurrentRevision,
                    "",
                    0,
                    timeout,
                    |mut client| async move {
                        client
                            .get("/", Some(GetOptions::new().with_count_only()))
                            .await
                    },
                )
                .await?;
            header_revision(Operation::CurrentRevision, "", response.header())
        })
    }

    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let timeout = self.config.request_timeout;
            self.call(
                Operation::Compact,
                "",
                revision,
                timeout,
                |mut client| async move { client.compact(revision, None).await },
            )
            .await?;
            Ok(())
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            // What etcd's own /health and kube-apiserver's etcd check do: a
            // linearizable read of one key, which needs a leader and quorum.
            let timeout = self.config.request_timeout.min(HEALTH_TIMEOUT);
            self.call(
                Operation::Health,
                "health",
                0,
                timeout,
                |mut client| async move { client.get("health", None).await },
            )
            .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(reason: &str) -> StorageError {
        unavailable(Operation::Get, "/registry/x", reason)
    }

    #[test]
    fn reads_retry_a_leader_change_writes_only_what_was_never_proposed() {
        let changed = status("status: Unavailable, message: \"etcdserver: leader changed\"");
        assert!(leader_moving(&changed, Operation::Get));
        assert!(leader_moving(&changed, Operation::List));
        assert!(
            !leader_moving(&changed, Operation::Update),
            "may have been applied"
        );

        let no_leader = status("etcdserver: no leader");
        assert!(leader_moving(&no_leader, Operation::Create));
        let dropped = status("raft proposal dropped");
        assert!(leader_moving(&dropped, Operation::Delete));

        assert!(!leader_moving(
            &status("transport: connection refused"),
            Operation::Get
        ));
        let compacted = StorageError::Compacted {
            operation: Operation::List,
            key: "/registry".into(),
            revision: 3,
            compact_revision: None,
        };
        assert!(!leader_moving(&compacted, Operation::List));
    }
}
