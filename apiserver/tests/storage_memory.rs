//! The storage conformance suite on the in-memory store, and what is
//! specific to it.

mod storage_common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_apiserver::storage::{ContinueToken, MemoryStorage, Storage, WatchEvent};
use storage_common::conformance;

fn store() -> MemoryStorage {
    MemoryStorage::new().with_progress_interval(Duration::from_millis(100))
}

#[tokio::test]
async fn conformance_suite() {
    conformance::run(&store()).await;
}

#[tokio::test]
async fn usable_as_shared_trait_object() {
    let store: Arc<dyn Storage> = Arc::new(store());
    let writer = Arc::clone(&store);
    let task = tokio::spawn(async move {
        writer
            .create("/registry/pods/ns/p", Bytes::from_static(b"x"))
            .await
    });
    let revision = task.await.expect("join").expect("create");
    let kv = store.get("/registry/pods/ns/p").await.expect("get");
    assert_eq!(kv.map(|kv| kv.mod_revision), Some(revision));
}

#[tokio::test]
async fn dropped_watchers_are_pruned() {
    let store = store();
    let stream = store
        .watch("/registry/pods/", 0, false)
        .await
        .expect("watch");
    assert_eq!(store.watcher_count(), 1);
    drop(stream);
    store
        .create("/registry/pods/ns/p", Bytes::from_static(b"x"))
        .await
        .expect("create");
    assert_eq!(store.watcher_count(), 0);
}

#[tokio::test]
async fn many_watchers_see_every_event_in_order() {
    let store = store();
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(
            store
                .watch("/registry/pods/", 0, false)
                .await
                .expect("watch"),
        );
    }
    let mut revisions = Vec::new();
    for i in 0..50 {
        let key = format!("/registry/pods/ns/p{i}");
        revisions.push(
            store
                .create(&key, Bytes::from_static(b"x"))
                .await
                .expect("create"),
        );
    }
    for stream in &mut streams {
        for &expected in &revisions {
            let event = conformance::next_change(stream).await;
            assert!(matches!(event, WatchEvent::Put { .. }));
            assert_eq!(event.revision(), expected);
        }
    }
}

#[test]
fn continue_token_is_kubernetes_format() {
    let token = ContinueToken {
        revision: 42,
        start_after: "/registry/pods/ns/web-1".to_owned(),
    };
    let encoded = token.encode("/registry/pods/ns/");
    // {"v":"meta.k8s.io/v1","rv":42,"start":"web-1\u0000"} in unpadded
    // URL-safe base64, as kube-apiserver writes it.
    assert_eq!(
        encoded,
        "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDIsInN0YXJ0Ijoid2ViLTFcdTAwMDAifQ"
    );
    assert_eq!(
        ContinueToken::decode(&encoded, "/registry/pods/ns/").expect("decode"),
        token
    );
    assert!(ContinueToken::decode(&encoded, "/registry/pods/").is_ok());
    assert!(ContinueToken::decode("", "/registry/pods/").is_err());
}
