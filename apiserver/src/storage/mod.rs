//! The key-value store behind every API object.
//!
//! kube-apiserver keeps each object in etcd under
//! `/registry/<resource>/<namespace>/<name>` (cluster-scoped objects:
//! `/registry/<resource>/<name>`). This module is that layer: a [`Storage`]
//! trait with two implementations, [`etcd::EtcdStorage`] (etcd v3 over
//! gRPC with client certificates) and [`memory::MemoryStorage`] (the same
//! semantics in memory, for tests of the layers above).
//!
//! # Revisions
//!
//! The store has one global, strictly increasing revision (etcd's). Every
//! successful write (create, update, delete) makes exactly one new revision
//! and returns it. A [`KeyValue`] carries `create_revision` (the revision
//! that created the key) and `mod_revision` (the revision of its last write);
//! an object's `resourceVersion` is its `mod_revision`. A list's
//! `resourceVersion` is [`ListResult::revision`]: the revision the whole
//! list was read at. A fresh store is at revision 1 with no keys.
//!
//! Optimistic concurrency: [`Storage::update`] and [`Storage::delete`] with
//! a precondition compare the key's current `mod_revision` with the expected
//! one inside one transaction, so of N racing writers holding the same
//! revision exactly one wins and the others get [`StorageError::Conflict`]
//! carrying the current revision.
//!
//! # Prefixes and pagination
//!
//! Lists and watches take a prefix that must end with `/`, so that
//! `/registry/pods/a/` never matches `/registry/pods/ab/x`. A list with a
//! `limit` returns at most that many items in key order and `more = true`
//! when keys remain. The next page passes the last returned key as
//! [`ListOptions::start_after`] and the first page's
//! [`ListResult::revision`] as [`ListOptions::revision`], so all pages are
//! read at one revision even while writes happen in between (a consistent
//! snapshot, as Kubernetes' continue tokens guarantee). [`ContinueToken`]
//! encodes that pair in Kubernetes' wire format (base64 of
//! `{"v":"meta.k8s.io/v1","rv":N,"start":"<key after prefix>\u0000"}`).
//!
//! # Watches
//!
//! [`Storage::watch`]`(prefix, from_revision, ..)` streams every change to
//! a key under `prefix` with a revision strictly greater than
//! `from_revision` (Kubernetes semantics: a watch from resourceVersion R
//! sees the events after R), in revision order, with the previous value of
//! the key. `from_revision = 0` means "from now": only changes made after
//! the watch is established. The returned future resolves once the watch is
//! established, so a write that completes after it is always seen.
//! `progress_notify` asks for periodic [`WatchEvent::Progress`] items when
//! nothing changes: every change up to that revision has been delivered
//! (Kubernetes bookmarks).
//!
//! # Compaction
//!
//! [`Storage::compact`]`(C)` discards history before revision `C`: reading
//! at a revision below `C` fails with [`StorageError::Compacted`] (410 Gone
//! in the API), and so does a watch whose first needed event (`from + 1`) is
//! below `C`. For watches the error is delivered as the first stream item
//! (etcd only reports it after the watch is created), and the stream ends.
//!
//! # Failures
//!
//! Every request to etcd is bounded by a timeout; an unreachable or
//! leaderless etcd gives [`StorageError::Unavailable`], distinct from the
//! semantic errors, and the client reconnects on the next request. A watch
//! whose connection breaks yields `Unavailable` and ends; the caller
//! re-lists or re-watches from its last revision.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::Stream;

pub mod error;
pub mod etcd;
pub mod memory;

pub use error::{Operation, StorageError};
pub use etcd::{EtcdConfig, EtcdStorage};
pub use memory::MemoryStorage;

/// The result type of every storage operation.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A boxed future, so that [`Storage`] works as `Arc<dyn Storage>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The stream of a watch: changes in revision order, then possibly one
/// error (compacted, unavailable) after which it ends.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send + 'static>>;

/// One key with its value and revisions.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision that created the key.
    pub create_revision: i64,
    /// The revision of the key's last write (its resourceVersion).
    pub mod_revision: i64,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value", &String::from_utf8_lossy(&self.value))
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// How to read a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Start after this key (the last key of the previous page); must lie
    /// under the prefix.
    pub start_after: Option<String>,
    /// At most this many items; `None` (or `Some(0)`) is unlimited.
    pub limit: Option<usize>,
    /// Read at this revision (the first page's revision, for consistent
    /// pagination); `None` reads the latest state.
    pub revision: Option<i64>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// Items in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at (the list's resourceVersion).
    pub revision: i64,
    /// Whether keys remain after the last item.
    pub more: bool,
    /// How many keys remain after this page, when `more` (Kubernetes'
    /// `remainingItemCount`).
    pub remaining: Option<i64>,
}

impl ListResult {
    /// The options that read the next page, if there is one.
    pub fn next_page(&self, limit: Option<usize>) -> Option<ListOptions> {
        let last = self.items.last()?;
        self.more.then(|| ListOptions {
            start_after: Some(last.key.clone()),
            limit,
            revision: Some(self.revision),
        })
    }
}

/// The result of a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The revision of the delete.
    pub revision: i64,
    /// The key as it was before the delete.
    pub prev: KeyValue,
}

/// One item of a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A create (`prev` is `None`) or an update; `kv.mod_revision` is the
    /// event's revision.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A delete at `revision`; `prev` is the key's last value.
    Delete { prev: KeyValue, revision: i64 },
    /// Nothing under the prefix changed up to `revision` beyond what was
    /// already delivered.
    Progress { revision: i64 },
}

impl WatchEvent {
    /// The revision this event happened at (or reports progress to).
    pub fn revision(&self) -> i64 {
        match self {
            Self::Put { kv, .. } => kv.mod_revision,
            Self::Delete { revision, .. } | Self::Progress { revision } => *revision,
        }
    }

    /// The key that changed; `None` for progress notifications.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Put { kv, .. } => Some(&kv.key),
            Self::Delete { prev, .. } => Some(&prev.key),
            Self::Progress { .. } => None,
        }
    }
}

/// A revisioned key-value store with watches (see the module doc for the
/// semantics every implementation follows).
pub trait Storage: Send + Sync + fmt::Debug {
    /// The key's current value, `None` if absent.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>>>;

    /// The keys under `prefix` (which must end with `/`), in key order.
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        options: ListOptions,
    ) -> BoxFuture<'a, Result<ListResult>>;

    /// Creates `key`; [`StorageError::AlreadyExists`] if present. Returns
    /// the new revision.
    fn create<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<i64>>;

    /// Replaces `key` if its `mod_revision` is `expected_mod_revision`
    /// (which must be positive); [`StorageError::Conflict`] with the current
    /// revision otherwise, [`StorageError::NotFound`] if absent. Returns the
    /// new revision.
    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        expected_mod_revision: i64,
    ) -> BoxFuture<'a, Result<i64>>;

    /// Deletes `key`, if `precondition` is given only when its
    /// `mod_revision` matches ([`StorageError::Conflict`] otherwise);
    /// [`StorageError::NotFound`] if absent.
    fn delete<'a>(
        &'a self,
        key: &'a str,
        precondition: Option<i64>,
    ) -> BoxFuture<'a, Result<Deleted>>;

    /// Changes under `prefix` (ending with `/`) after `from_revision`
    /// (0: from now); see the module doc.
    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: i64,
        progress_notify: bool,
    ) -> BoxFuture<'a, Result<WatchStream>>;

    /// The store's latest revision.
    fn current_revision(&self) -> BoxFuture<'_, Result<i64>>;

    /// Discards history before `revision`.
    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<()>>;

    /// A fast liveness probe (bounded by a short timeout): `Ok` when the
    /// store serves consistent reads.
    fn health(&self) -> BoxFuture<'_, Result<()>>;
}

/// Checks that `prefix` is a directory-like prefix (ends with `/`).
pub(crate) fn check_prefix(operation: Operation, prefix: &str) -> Result<()> {
    if prefix.ends_with('/') {
        Ok(())
    } else {
        Err(StorageError::InvalidArgument {
            operation,
            key: prefix.to_owned(),
            reason: "a prefix must end with '/'".to_owned(),
        })
    }
}

/// Checks that `key` is usable as a key.
pub(crate) fn check_key(operation: Operation, key: &str) -> Result<()> {
    if key.is_empty() || key.contains('\0') {
        Err(StorageError::InvalidArgument {
            operation,
            key: key.to_owned(),
            reason: "a key must be non-empty and free of NUL".to_owned(),
        })
    } else {
        Ok(())
    }
}

/// Checks that an expected revision is usable (etcd's revision 0 would
/// match an absent key).
pub(crate) fn check_expected(operation: Operation, key: &str, expected: i64) -> Result<()> {
    if expected > 0 {
        Ok(())
    } else {
        Err(StorageError::InvalidArgument {
            operation,
            key: key.to_owned(),
            reason: format!("expected revision {expected} must be positive"),
        })
    }
}

/// Checks list options against `prefix`.
pub(crate) fn check_list(prefix: &str, options: &ListOptions) -> Result<()> {
    check_prefix(Operation::List, prefix)?;
    if let Some(start) = &options.start_after
        && !start.starts_with(prefix)
    {
        return Err(StorageError::InvalidArgument {
            operation: Operation::List,
            key: prefix.to_owned(),
            reason: format!("continue key {start:?} is not under the prefix"),
        });
    }
    Ok(())
}

/// The smallest key greater than every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the keyspace.
    vec![0]
}

/// A Kubernetes continue token: the revision of the first page and the
/// last key returned, relative to the list's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueToken {
    pub revision: i64,
    /// The full key of the last item returned.
    pub start_after: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueWire {
    v: String,
    rv: i64,
    start: String,
}

const CONTINUE_VERSION: &str = "meta.k8s.io/v1";

impl ContinueToken {
    /// Encodes the token the way kube-apiserver does (`start` is the key
    /// after the prefix, followed by NUL: the first key to read).
    pub fn encode(&self, prefix: &str) -> String {
        let start = self
            .start_after
            .strip_prefix(prefix)
            .unwrap_or(&self.start_after);
        let wire = ContinueWire {
            v: CONTINUE_VERSION.to_owned(),
            rv: self.revision,
            start: format!("{start}\0"),
        };
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a token for a list under `prefix`.
    pub fn decode(token: &str, prefix: &str) -> Result<Self> {
        let invalid = |reason: String| StorageError::InvalidArgument {
            operation: Operation::List,
            key: prefix.to_owned(),
            reason: format!("continue token: {reason}"),
        };
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|e| invalid(e.to_string()))?;
        let wire: ContinueWire =
            serde_json::from_slice(&json).map_err(|e| invalid(e.to_string()))?;
        if wire.v != CONTINUE_VERSION {
            return Err(invalid(format!("unknown version {:?}", wire.v)));
        }
        if wire.rv <= 0 {
            return Err(invalid(format!("bad revision {}", wire.rv)));
        }
        let Some(start) = wire.start.strip_suffix('\0') else {
            return Err(invalid("start key does not end with NUL".to_owned()));
        };
        if start.is_empty() || start.starts_with('/') || start.contains("..") {
            return Err(invalid(format!("bad start key {start:?}")));
        }
        Ok(Self {
            revision: wire.rv,
            start_after: format!("{prefix}{start}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_range() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn continue_token_rejects_escapes() {
        let forge = |start: &str| {
            let json = format!(r#"{{"v":"meta.k8s.io/v1","rv":5,"start":"{start}\u0000"}}"#);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        };
        assert!(ContinueToken::decode(&forge("web-1"), "/registry/pods/ns/").is_ok());
        for bad in ["/etc", "../secrets/x", ""] {
            assert!(
                ContinueToken::decode(&forge(bad), "/registry/pods/ns/").is_err(),
                "{bad:?}"
            );
        }
    }
}
