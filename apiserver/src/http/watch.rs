//! Watch streams: events written as newline-delimited JSON, one flush per
//! event (a chunk on HTTP/1.1, a DATA frame on HTTP/2), ending at the
//! timeout, at server shutdown or when the client goes away (the body is
//! dropped, and with it the source stream).

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use serde_json::{Value, json};

use super::status::ApiError;
use super::table::{self, TableOptions};
use crate::http::request::IncludeObject;

/// The `type` of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
            Self::Bookmark => "BOOKMARK",
            Self::Error => "ERROR",
        }
    }
}

/// One event of a watch.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub kind: WatchEventType,
    pub object: Value,
}

impl WatchEvent {
    pub fn new(kind: WatchEventType, object: Value) -> Self {
        Self { kind, object }
    }

    /// An ERROR event carrying a Status (the way a watch reports 410
    /// Expired: HTTP 200, then this event).
    pub fn error(error: &ApiError) -> Self {
        Self::new(WatchEventType::Error, error.to_status())
    }

    /// `too old resource version` as kube-apiserver words it.
    pub fn expired(requested: &str, oldest: &str) -> Self {
        Self::error(&ApiError::expired(format!(
            "too old resource version: {requested} ({oldest})"
        )))
    }

    /// A BOOKMARK: the kind with only `metadata.resourceVersion`.
    pub fn bookmark(api_version: &str, kind: &str, resource_version: &str) -> Self {
        Self::new(
            WatchEventType::Bookmark,
            json!({"kind": kind, "apiVersion": api_version,
                   "metadata": {"resourceVersion": resource_version}}),
        )
    }

    /// The wire form: one JSON object and a newline.
    pub fn to_line(&self) -> Bytes {
        let mut line =
            serde_json::to_vec(&json!({"type": self.kind.as_str(), "object": self.object}))
                .unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// What a handler returns for a watch.
pub type WatchStream = Pin<Box<dyn Stream<Item = WatchEvent> + Send>>;

/// How the server writes a watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub timeout: Duration,
    /// BOOKMARK events pass only when the client asked for them.
    pub allow_bookmarks: bool,
    /// Render each object as a one-row Table of this kind.
    pub table: Option<TableWatch>,
}

/// Table rendering of watch events.
#[derive(Debug, Clone)]
pub struct TableWatch {
    pub kind: String,
    pub version: String,
    pub include_object: IncludeObject,
}

/// The encoded lines of a watch: filtered, rendered, cut at the timeout or
/// when `stop` resolves.
pub fn encode(
    events: WatchStream,
    options: WatchOptions,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Pin<Box<dyn Stream<Item = Bytes> + Send>> {
    let deadline = tokio::time::sleep(options.timeout);
    let end = async move {
        tokio::select! {
            () = deadline => {}
            () = stop => {}
        }
    };
    let allow_bookmarks = options.allow_bookmarks;
    let table = options.table;
    let mut first = true;
    let lines = events
        .filter(move |e| std::future::ready(allow_bookmarks || e.kind != WatchEventType::Bookmark))
        .map(move |event| {
            let event = match (&table, event.kind) {
                (
                    Some(t),
                    WatchEventType::Added | WatchEventType::Modified | WatchEventType::Deleted,
                ) => {
                    let rendered = table::render(
                        std::slice::from_ref(&event.object),
                        event.object.get("metadata"),
                        &TableOptions {
                            kind: &t.kind,
                            version: &t.version,
                            include_object: t.include_object,
                            omit_headers: !first,
                            now: super::clock::now(),
                        },
                    );
                    first = false;
                    WatchEvent::new(event.kind, rendered)
                }
                _ => event,
            };
            event.to_line()
        });
    Box::pin(lines.take_until(Box::pin(end)).chain(stream::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let e = WatchEvent::new(WatchEventType::Added, json!({"kind": "Pod"}));
        assert_eq!(
            &e.to_line()[..],
            b"{\"object\":{\"kind\":\"Pod\"},\"type\":\"ADDED\"}\n"
        );
        let expired = WatchEvent::expired("5", "10");
        assert_eq!(expired.object["code"], 410);
        assert_eq!(expired.object["reason"], "Expired");
        assert_eq!(expired.kind, WatchEventType::Error);
    }

    #[tokio::test]
    async fn table_headers_once_and_bookmarks_filtered() {
        let events = stream::iter(vec![
            WatchEvent::new(WatchEventType::Added, json!({"metadata": {"name": "a"}})),
            WatchEvent::bookmark("v1", "Pod", "9"),
            WatchEvent::new(WatchEventType::Modified, json!({"metadata": {"name": "a"}})),
        ]);
        let options = WatchOptions {
            timeout: Duration::from_secs(5),
            allow_bookmarks: false,
            table: Some(TableWatch {
                kind: "Pod".into(),
                version: "v1".into(),
                include_object: IncludeObject::Metadata,
            }),
        };
        let lines: Vec<Bytes> = encode(Box::pin(events), options, std::future::pending())
            .collect()
            .await;
        assert_eq!(lines.len(), 2);
        let first: Value = serde_json::from_slice(&lines[0]).expect("json");
        let second: Value = serde_json::from_slice(&lines[1]).expect("json");
        assert_eq!(first["object"]["kind"], "Table");
        assert_eq!(
            first["object"]["columnDefinitions"]
                .as_array()
                .map(Vec::len),
            Some(9)
        );
        assert_eq!(second["object"]["columnDefinitions"], json!([]));
        assert_eq!(second["type"], "MODIFIED");
    }

    #[tokio::test]
    async fn ends_at_timeout() {
        let events = stream::pending::<WatchEvent>();
        let options = WatchOptions {
            timeout: Duration::from_millis(50),
            allow_bookmarks: true,
            table: None,
        };
        let lines: Vec<Bytes> = encode(Box::pin(events), options, std::future::pending())
            .collect()
            .await;
        assert!(lines.is_empty());
    }
}
