//! Storage errors: what went wrong, for which operation and key.

use std::fmt;

/// The storage operation an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Get,
    List,
    Create,
    Update,
    Delete,
    Watch,
    CurrentRevision,
    Compact,
    Health,
    Connect,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Watch => "watch",
            Self::CurrentRevision => "current revision",
            Self::Compact => "compact",
            Self::Health => "health check",
            Self::Connect => "connect",
        })
    }
}

/// Why a storage operation failed.
///
/// `NotFound`, `AlreadyExists`, `Conflict`, `Compacted` and
/// `FutureRevision` are answers about the data (404, 409, 410, 504 in the
/// API); `Unavailable` means the store could not be reached or did not
/// answer in time (retry later); `InvalidArgument` is a caller bug or bad
/// input; `Internal` is an unexpected answer from the store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{operation} {key}: not found")]
    NotFound { operation: Operation, key: String },

    #[error("create {key}: already exists")]
    AlreadyExists { key: String },

    #[error(
        "{operation} {key}: conflict: expected revision {expected}, current revision {current_revision}"
    )]
    Conflict {
        operation: Operation,
        key: String,
        expected: i64,
        current_revision: i64,
    },

    #[error("{operation} {key}: revision {revision} has been compacted{}", compacted_suffix(*.compact_revision))]
    Compacted {
        operation: Operation,
        key: String,
        /// The revision asked for.
        revision: i64,
        /// The store's compaction revision, when it says.
        compact_revision: Option<i64>,
    },

    #[error("{operation} {key}: revision {revision} is in the future")]
    FutureRevision {
        operation: Operation,
        key: String,
        revision: i64,
    },

    #[error("{operation} {key}: storage unavailable: {reason}")]
    Unavailable {
        operation: Operation,
        key: String,
        reason: String,
    },

    #[error("{operation} {key}: invalid argument: {reason}")]
    InvalidArgument {
        operation: Operation,
        key: String,
        reason: String,
    },

    #[error("{operation} {key}: {reason}")]
    Internal {
        operation: Operation,
        key: String,
        reason: String,
    },
}

fn compacted_suffix(compact_revision: Option<i64>) -> String {
    compact_revision
        .map(|c| format!(" (compacted up to {c})"))
        .unwrap_or_default()
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }

    pub fn is_compacted(&self) -> bool {
        matches!(self, Self::Compacted { .. })
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        match self {
            Self::AlreadyExists { .. } => Operation::Create,
            Self::NotFound { operation, .. }
            | Self::Conflict { operation, .. }
            | Self::Compacted { operation, .. }
            | Self::FutureRevision { operation, .. }
            | Self::Unavailable { operation, .. }
            | Self::InvalidArgument { operation, .. }
            | Self::Internal { operation, .. } => *operation,
        }
    }

    /// The key (or prefix) the operation was about.
    pub fn key(&self) -> &str {
        match self {
            Self::NotFound { key, .. }
            | Self::AlreadyExists { key }
            | Self::Conflict { key, .. }
            | Self::Compacted { key, .. }
            | Self::FutureRevision { key, .. }
            | Self::Unavailable { key, .. }
            | Self::InvalidArgument { key, .. }
            | Self::Internal { key, .. } => key,
        }
    }
}
