//! An in-memory [`Storage`] with etcd's semantics, for tests of the layers
//! above: one revision counter, every version of every key since the last
//! compaction (so lists can be read at an old revision), an event log for
//! watches from a past revision, and fan-out of new events to live
//! watchers.
//!
//! Everything happens under one mutex, so a write, its revision and its
//! delivery to watchers are atomic with respect to each other. Watcher
//! queues are unbounded (a test store has no slow-consumer policy).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{
    BoxFuture, Deleted, KeyValue, ListOptions, ListResult, Operation, Result, Storage,
    StorageError, WatchEvent, WatchStream, check_expected, check_key, check_list, check_prefix,
};

/// The default interval of progress notifications.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// An in-memory store; cheap to clone (clones share the data).
#[derive(Debug, Clone)]
pub struct MemoryStorage {
    inner: Arc<Mutex<Inner>>,
    progress_interval: Duration,
}

#[derive(Debug, Clone)]
struct Version {
    create_revision: i64,
    mod_revision: i64,
    /// `None`: the key was deleted at `mod_revision`.
    value: Option<Bytes>,
}

#[derive(Debug)]
struct Watcher {
    prefix: String,
    tx: mpsc::UnboundedSender<WatchEvent>,
}

#[derive(Debug)]
struct Inner {
    revision: i64,
    compact_revision: i64,
    /// Every key's versions in revision order.
    keys: BTreeMap<String, Vec<Version>>,
    /// Put and Delete events with revision >= `compact_revision`.
    events: VecDeque<WatchEvent>,
    watchers: Vec<Watcher>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStorage {
    /// An empty store at revision 1 (as a fresh etcd).
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                revision: 1,
                compact_revision: 0,
                keys: BTreeMap::new(),
                events: VecDeque::new(),
                watchers: Vec::new(),
            })),
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
        }
    }

    /// Sets how often watches with `progress_notify` get a progress event
    /// when idle.
    pub fn with_progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    /// The number of live watchers (dropped watch streams are pruned on the
    /// next write).
    pub fn watcher_count(&self) -> usize {
        lock(&self.inner).watchers.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock leaves consistent data (every
    // mutation is completed before anything that can panic), so poisoning
    // is ignored.
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn kv_of(key: &str, version: &Version) -> Option<KeyValue> {
    version.value.as_ref().map(|value| KeyValue {
        key: key.to_owned(),
        value: value.clone(),
        create_revision: version.create_revision,
        mod_revision: version.mod_revision,
    })
}

impl Inner {
    fn current(&self, key: &str) -> Option<KeyValue> {
        let version = self.keys.get(key)?.last()?;
        kv_of(key, version)
    }

    fn at(key: &str, versions: &[Version], revision: i64) -> Option<KeyValue> {
        let index = versions.partition_point(|v| v.mod_revision <= revision);
        let version = versions.get(index.checked_sub(1)?)?;
        kv_of(key, version)
    }

    /// Checks that `revision` can be read.
    fn check_read(&self, operation: Operation, key: &str, revision: i64) -> Result<()> {
        if revision < self.compact_revision {
            Err(StorageError::Compacted {
                operation,
                key: key.to_owned(),
                revision,
                compact_revision: Some(self.compact_revision),
            })
        } else if revision > self.revision {
            Err(StorageError::FutureRevision {
                operation,
                key: key.to_owned(),
                revision,
            })
        } else {
            Ok(())
        }
    }

    /// Records a write (value `None`: delete) and delivers its event.
    fn write(&mut self, key: &str, value: Option<Bytes>) -> i64 {
        let prev = self.current(key);
        let revision = self.revision + 1;
        let version = Version {
            create_revision: match (&prev, &value) {
                (Some(prev), _) => prev.create_revision,
                (None, _) => revision,
            },
            mod_revision: revision,
            value,
        };
        let event = match (kv_of(key, &version), prev) {
            (Some(kv), prev) => WatchEvent::Put { kv, prev },
            (None, Some(prev)) => WatchEvent::Delete { prev, revision },
            // Deleting an absent key is refused before getting here.
            (None, None) => return self.revision,
        };
        self.revision = revision;
        self.keys.entry(key.to_owned()).or_default().push(version);
        self.watchers.retain(|watcher| {
            !key.starts_with(&watcher.prefix) || watcher.tx.send(event.clone()).is_ok()
        });
        self.events.push_back(event);
        revision
    }

    fn compact(&mut self, revision: i64) {
        self.keys.retain(|_, versions| {
            // Keep the version visible at `revision` and everything after.
            let visible = versions.partition_point(|v| v.mod_revision <= revision);
            let first_kept = visible.saturating_sub(1);
            versions.drain(..first_kept);
            if versions
                .first()
                .is_some_and(|v| v.value.is_none() && v.mod_revision <= revision)
            {
                versions.remove(0);
            }
            !versions.is_empty()
        });
        while self
            .events
            .front()
            .is_some_and(|event| event.revision() < revision)
        {
            self.events.pop_front();
        }
        self.compact_revision = revision;
    }
}

impl Storage for MemoryStorage {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>>> {
        Box::pin(async move {
            check_key(Operation::Get, key)?;
            Ok(self.lock().current(key))
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
        options: ListOptions,
    ) -> BoxFuture<'a, Result<ListResult>> {
        Box::pin(async move {
            check_list(prefix, &options)?;
            let inner = self.lock();
            let revision = match options.revision {
                Some(revision) if revision > 0 => {
                    inner.check_read(Operation::List, prefix, revision)?;
                    revision
                }
                _ => inner.revision,
            };
            let start = match &options.start_after {
                Some(key) => Bound::Excluded(key.as_str()),
                None => Bound::Included(prefix),
            };
            let mut matching = inner
                .keys
                .range::<str, _>((start, Bound::Unbounded))
                .take_while(|(key, _)| key.starts_with(prefix))
                .filter_map(|(key, versions)| Inner::at(key, versions, revision));
            let limit = options.limit.filter(|&limit| limit > 0);
            let items: Vec<KeyValue> = match limit {
                Some(limit) => matching.by_ref().take(limit).collect(),
                None => matching.by_ref().collect(),
            };
            let rest = i64::try_from(matching.count()).unwrap_or(i64::MAX);
            Ok(ListResult {
                items,
                revision,
                more: rest > 0,
                remaining: (rest > 0).then_some(rest),
            })
        })
    }

    fn create<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            check_key(Operation::Create, key)?;
            let mut inner = self.lock();
            if inner.current(key).is_some() {
                return Err(StorageError::AlreadyExists {
                    key: key.to_owned(),
                });
            }
            Ok(inner.write(key, Some(value)))
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
            let mut inner = self.lock();
            let Some(current) = inner.current(key) else {
                return Err(StorageError::NotFound {
                    operation: Operation::Update,
                    key: key.to_owned(),
                });
            };
            if current.mod_revision != expected_mod_revision {
                return Err(StorageError::Conflict {
                    operation: Operation::Update,
                    key: key.to_owned(),
                    expected: expected_mod_revision,
                    current_revision: current.mod_revision,
                });
            }
            Ok(inner.write(key, Some(value)))
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        precondition: Option<i64>,
    ) -> BoxFuture<'a, Result<Deleted>> {
        Box::pin(async move {
            check_key(Operation::Delete, key)?;
            if let Some(expected) = precondition {
                check_expected(Operation::Delete, key, expected)?;
            }
            let mut inner = self.lock();
            let Some(prev) = inner.current(key) else {
                return Err(StorageError::NotFound {
                    operation: Operation::Delete,
                    key: key.to_owned(),
                });
            };
            if let Some(expected) = precondition
                && prev.mod_revision != expected
            {
                return Err(StorageError::Conflict {
                    operation: Operation::Delete,
                    key: key.to_owned(),
                    expected,
                    current_revision: prev.mod_revision,
                });
            }
            let revision = inner.write(key, None);
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
            let (tx, rx) = mpsc::unbounded_channel();
            let mut first_error = None;
            {
                let mut inner = self.lock();
                let start = if from_revision > 0 {
                    from_revision + 1
                } else {
                    inner.revision + 1
                };
                if start < inner.compact_revision {
                    first_error = Some(StorageError::Compacted {
                        operation: Operation::Watch,
                        key: prefix.to_owned(),
                        revision: from_revision,
                        compact_revision: Some(inner.compact_revision),
                    });
                } else {
                    for event in inner.events.iter().filter(|event| {
                        event.revision() >= start
                            && event.key().is_some_and(|key| key.starts_with(prefix))
                    }) {
                        // The receiver is alive: it is in this scope.
                        let _ = tx.send(event.clone());
                    }
                    inner.watchers.push(Watcher {
                        prefix: prefix.to_owned(),
                        tx,
                    });
                }
            }
            if let Some(error) = first_error {
                let stream: WatchStream =
                    Box::pin(futures_util::stream::once(async move { Err(error) }));
                return Ok(stream);
            }
            let ticker = progress_notify.then(|| {
                tokio::time::interval_at(
                    tokio::time::Instant::now() + self.progress_interval,
                    self.progress_interval,
                )
            });
            let state = WatchState {
                rx,
                ticker,
                inner: Arc::clone(&self.inner),
            };
            let stream: WatchStream = Box::pin(futures_util::stream::unfold(state, next_event));
            Ok(stream)
        })
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<i64>> {
        Box::pin(async move { Ok(self.lock().revision) })
    }

    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let mut inner = self.lock();
            if revision <= inner.compact_revision {
                return Err(StorageError::Compacted {
                    operation: Operation::Compact,
                    key: String::new(),
                    revision,
                    compact_revision: Some(inner.compact_revision),
                });
            }
            if revision > inner.revision {
                return Err(StorageError::FutureRevision {
                    operation: Operation::Compact,
                    key: String::new(),
                    revision,
                });
            }
            inner.compact(revision);
            Ok(())
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

struct WatchState {
    rx: mpsc::UnboundedReceiver<WatchEvent>,
    ticker: Option<tokio::time::Interval>,
    inner: Arc<Mutex<Inner>>,
}

enum Step {
    Event(Option<WatchEvent>),
    Tick,
}

async fn next_event(mut state: WatchState) -> Option<(Result<WatchEvent>, WatchState)> {
    loop {
        let step = match &mut state.ticker {
            None => Step::Event(state.rx.recv().await),
            Some(ticker) => tokio::select! {
                biased;
                event = state.rx.recv() => Step::Event(event),
                _ = ticker.tick() => Step::Tick,
            },
        };
        match step {
            Step::Event(event) => return event.map(|event| (Ok(event), state)),
            Step::Tick => {
                // Writes send under the lock, so an empty queue under the
                // lock means every event up to `revision` was delivered.
                let revision = {
                    let inner = lock(&state.inner);
                    if !state.rx.is_empty() {
                        continue;
                    }
                    inner.revision
                };
                return Some((Ok(WatchEvent::Progress { revision }), state));
            }
        }
    }
}
