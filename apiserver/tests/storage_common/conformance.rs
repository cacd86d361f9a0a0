//! The behaviour every `Storage` implementation must have, run against the
//! in-memory store and a real etcd.

use std::time::Duration;

use bytes::Bytes;
use cairn_apiserver::storage::{
    ContinueToken, ListOptions, Storage, StorageError, WatchEvent, WatchStream,
};
use futures_util::StreamExt as _;

/// How long to wait for one watch item before failing.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(10);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Runs the whole suite. It compacts, so run it on a store of its own.
pub async fn run(store: &dyn Storage) {
    crud(store).await;
    prefix_isolation(store).await;
    pagination(store).await;
    watch(store).await;
    concurrent_updates(store).await;
    progress(store).await;
    compaction(store).await;
}

pub async fn next_item(stream: &mut WatchStream) -> Result<WatchEvent, StorageError> {
    match tokio::time::timeout(EVENT_DEADLINE, stream.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("watch stream ended"),
        Err(_) => panic!("no watch item within {EVENT_DEADLINE:?}"),
    }
}

/// The next item that is not a progress notification.
pub async fn next_change(stream: &mut WatchStream) -> WatchEvent {
    loop {
        match next_item(stream).await {
            Ok(WatchEvent::Progress { .. }) => continue,
            Ok(event) => return event,
            Err(e) => panic!("watch error: {e}"),
        }
    }
}

pub async fn crud(store: &dyn Storage) {
    let key = "/registry/pods/default/web";
    assert_eq!(store.get(key).await.expect("get"), None);
    let before = store.current_revision().await.expect("revision");

    let r1 = store.create(key, b("v1")).await.expect("create");
    assert!(r1 > before, "create revision {r1} after {before}");
    let kv = store.get(key).await.expect("get").expect("present");
    assert_eq!(kv.key, key);
    assert_eq!(kv.value, b("v1"));
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r1));

    let err = store.create(key, b("again")).await.expect_err("duplicate");
    assert!(err.is_already_exists(), "{err}");
    assert_eq!(err.key(), key);

    let r2 = store.update(key, b("v2"), r1).await.expect("update");
    assert!(r2 > r1);
    let kv = store.get(key).await.expect("get").expect("present");
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r2));
    assert_eq!(kv.value, b("v2"));

    match store.update(key, b("stale"), r1).await {
        Err(StorageError::Conflict {
            current_revision,
            expected,
            ..
        }) => assert_eq!((current_revision, expected), (r2, r1)),
        other => panic!("stale update: {other:?}"),
    }
    let err = store
        .update("/registry/pods/default/absent", b("x"), r1)
        .await
        .expect_err("absent");
    assert!(err.is_not_found(), "{err}");
    let err = store.update(key, b("x"), 0).await.expect_err("revision 0");
    assert!(matches!(err, StorageError::InvalidArgument { .. }), "{err}");
    assert_eq!(
        store.get(key).await.expect("get").map(|kv| kv.value),
        Some(b("v2"))
    );

    match store.delete(key, Some(r1)).await {
        Err(StorageError::Conflict {
            current_revision, ..
        }) => assert_eq!(current_revision, r2),
        other => panic!("stale delete: {other:?}"),
    }
    let deleted = store.delete(key, Some(r2)).await.expect("delete");
    assert!(deleted.revision > r2);
    assert_eq!(deleted.prev.value, b("v2"));
    assert_eq!(deleted.prev.mod_revision, r2);
    assert_eq!(store.get(key).await.expect("get"), None);
    let err = store.delete(key, None).await.expect_err("gone");
    assert!(err.is_not_found(), "{err}");
    let err = store.delete(key, Some(r2)).await.expect_err("gone");
    assert!(err.is_not_found(), "{err}");

    // Re-creating starts a new life: new create revision.
    let r3 = store.create(key, b("v3")).await.expect("re-create");
    assert!(r3 > deleted.revision);
    let deleted = store.delete(key, None).await.expect("delete");
    assert_eq!(deleted.prev.create_revision, r3);
    assert_eq!(
        store.current_revision().await.expect("revision"),
        deleted.revision
    );
}

pub async fn prefix_isolation(store: &dyn Storage) {
    for key in [
        "/registry/pods/a/1",
        "/registry/pods/a/2",
        "/registry/pods/ab/1",
        "/registry/pods/a",
        "/registry/pods/b/1",
        "/registry/podsx/a/1",
    ] {
        store.create(key, b(key)).await.expect("create");
    }
    let list = store
        .list("/registry/pods/a/", ListOptions::default())
        .await
        .expect("list");
    let keys: Vec<&str> = list.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/registry/pods/a/1", "/registry/pods/a/2"]);
    assert!(!list.more);
    assert_eq!(list.remaining, None);

    let all = store
        .list("/registry/pods/", ListOptions::default())
        .await
        .expect("list");
    assert_eq!(all.items.len(), 5);

    let err = store
        .list("/registry/pods/a", ListOptions::default())
        .await
        .expect_err("prefix without slash");
    assert!(matches!(err, StorageError::InvalidArgument { .. }), "{err}");
    let err = store
        .watch("/registry/pods/a", 0, false)
        .await
        .err()
        .expect("watch prefix without slash");
    assert!(matches!(err, StorageError::InvalidArgument { .. }), "{err}");
    let err = store
        .list(
            "/registry/pods/a/",
            ListOptions {
                start_after: Some("/registry/pods/ab/1".to_owned()),
                ..ListOptions::default()
            },
        )
        .await
        .expect_err("continue key outside the prefix");
    assert!(matches!(err, StorageError::InvalidArgument { .. }), "{err}");
}

pub async fn pagination(store: &dyn Storage) {
    let prefix = "/registry/configmaps/ns/";
    for i in 0..10 {
        let key = format!("{prefix}k{i:02}");
        store
            .create(&key, b(&format!("v{i}")))
            .await
            .expect("create");
    }
    let limit = Some(4);
    let first = store
        .list(
            prefix,
            ListOptions {
                limit,
                ..ListOptions::default()
            },
        )
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 4);
    assert!(first.more);
    assert_eq!(first.remaining, Some(6));
    let snapshot = first.revision;
    assert_eq!(
        snapshot,
        store.current_revision().await.expect("revision"),
        "a list without revision reads the latest state"
    );

    // Writes between pages must not show in later pages.
    store
        .create(&format!("{prefix}k10"), b("new"))
        .await
        .expect("create");
    store
        .create(&format!("{prefix}k035"), b("new"))
        .await
        .expect("create");
    store
        .delete(&format!("{prefix}k05"), None)
        .await
        .expect("delete");
    let k06 = store
        .get(&format!("{prefix}k06"))
        .await
        .expect("get")
        .expect("k06");
    store
        .update(&k06.key, b("changed"), k06.mod_revision)
        .await
        .expect("update");

    // The second page goes through a Kubernetes continue token.
    let last = first.items.last().expect("items").key.clone();
    let token = ContinueToken {
        revision: snapshot,
        start_after: last,
    }
    .encode(prefix);
    let decoded = ContinueToken::decode(&token, prefix).expect("decode");
    assert_eq!(decoded.revision, snapshot);
    let second = store
        .list(
            prefix,
            ListOptions {
                start_after: Some(decoded.start_after),
                limit,
                revision: Some(decoded.revision),
            },
        )
        .await
        .expect("page 2");
    assert_eq!(second.revision, snapshot);
    assert!(second.more);
    assert_eq!(second.remaining, Some(2));
    let third = store
        .list(prefix, second.next_page(limit).expect("page 3"))
        .await
        .expect("page 3");
    assert!(!third.more);
    assert_eq!(third.remaining, None);
    assert_eq!(third.next_page(limit), None);

    let paged: Vec<(String, Bytes)> = [first, second, third]
        .into_iter()
        .flat_map(|page| page.items)
        .map(|kv| (kv.key, kv.value))
        .collect();
    let expected: Vec<(String, Bytes)> = (0..10)
        .map(|i| (format!("{prefix}k{i:02}"), b(&format!("v{i}"))))
        .collect();
    assert_eq!(paged, expected, "all pages at the first page's revision");

    let latest = store
        .list(prefix, ListOptions::default())
        .await
        .expect("latest");
    let keys: Vec<String> = latest
        .items
        .iter()
        .map(|kv| kv.key.trim_start_matches(prefix).to_owned())
        .collect();
    assert_eq!(
        keys,
        [
            "k00", "k01", "k02", "k03", "k035", "k04", "k06", "k07", "k08", "k09", "k10"
        ]
    );

    let err = store
        .list(
            prefix,
            ListOptions {
                revision: Some(latest.revision + 1000),
                ..ListOptions::default()
            },
        )
        .await
        .expect_err("future revision");
    assert!(matches!(err, StorageError::FutureRevision { .. }), "{err}");
    assert!(ContinueToken::decode("not a token", prefix).is_err());
}

fn expect_put(event: WatchEvent, key: &str, value: &str, prev: Option<&str>) -> i64 {
    match event {
        WatchEvent::Put { kv, prev: p } => {
            assert_eq!(kv.key, key);
            assert_eq!(kv.value, b(value));
            assert_eq!(p.map(|p| p.value), prev.map(b));
            kv.mod_revision
        }
        other => panic!("expected put of {key}, got {other:?}"),
    }
}

pub async fn watch(store: &dyn Storage) {
    let prefix = "/registry/secrets/ns/";
    let s1 = "/registry/secrets/ns/s1";
    let s2 = "/registry/secrets/ns/s2";
    let start = store.current_revision().await.expect("revision");
    let mut from_start = store.watch(prefix, start, false).await.expect("watch");
    let mut from_now = store.watch(prefix, 0, false).await.expect("watch");

    let ra = store.create(s1, b("v1")).await.expect("create");
    let rb = store.update(s1, b("v2"), ra).await.expect("update");
    store
        .create("/registry/secrets/other/x", b("outside"))
        .await
        .expect("create outside");
    store
        .create("/registry/secrets/ns", b("not under the prefix"))
        .await
        .expect("create sibling");
    let rc = store.delete(s1, Some(rb)).await.expect("delete").revision;
    let rd = store.create(s2, b("w1")).await.expect("create");

    for stream in [&mut from_start, &mut from_now] {
        assert_eq!(expect_put(next_change(stream).await, s1, "v1", None), ra);
        assert_eq!(
            expect_put(next_change(stream).await, s1, "v2", Some("v1")),
            rb
        );
        match next_change(stream).await {
            WatchEvent::Delete { prev, revision } => {
                assert_eq!(revision, rc);
                assert_eq!((prev.key.as_str(), prev.value), (s1, b("v2")));
                assert_eq!(prev.mod_revision, rb);
            }
            other => panic!("expected delete, got {other:?}"),
        }
        assert_eq!(expect_put(next_change(stream).await, s2, "w1", None), rd);
    }

    // From a past revision: exactly the events after it, replayed.
    let mut replay = store.watch(prefix, ra, false).await.expect("watch");
    let mut revisions = Vec::new();
    for _ in 0..3 {
        revisions.push(next_change(&mut replay).await.revision());
    }
    assert_eq!(revisions, [rb, rc, rd]);

    // Nothing else in between: the next event everywhere is the marker.
    let marker = "/registry/secrets/ns/marker";
    let rm = store.create(marker, b("m")).await.expect("marker");
    for stream in [&mut from_start, &mut from_now, &mut replay] {
        assert_eq!(expect_put(next_change(stream).await, marker, "m", None), rm);
    }
}

pub async fn concurrent_updates(store: &dyn Storage) {
    let key = "/registry/leases/kube-system/race";
    let created = store.create(key, b("initial")).await.expect("create");
    const WRITERS: usize = 8;
    let results = futures_util::future::join_all(
        (0..WRITERS).map(|i| store.update(key, b(&format!("writer {i}")), created)),
    )
    .await;
    let winners: Vec<(usize, i64)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().ok().map(|rev| (i, *rev)))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {results:?}");
    let (winner, revision) = winners[0];
    for result in &results {
        match result {
            Ok(_) => {}
            Err(StorageError::Conflict {
                current_revision, ..
            }) => assert_eq!(*current_revision, revision),
            Err(e) => panic!("loser: {e}"),
        }
    }
    let kv = store.get(key).await.expect("get").expect("present");
    assert_eq!(kv.value, b(&format!("writer {winner}")));
    assert_eq!(kv.mod_revision, revision);
}

pub async fn progress(store: &dyn Storage) {
    let prefix = "/registry/quiet/";
    let current = store.current_revision().await.expect("revision");
    let mut stream = store.watch(prefix, current, true).await.expect("watch");
    match next_item(&mut stream).await {
        Ok(WatchEvent::Progress { revision }) => assert!(revision >= current),
        other => panic!("expected progress, got {other:?}"),
    }
    // A change elsewhere moves the revision; progress follows it.
    let moved = store
        .create("/registry/elsewhere/x", b("x"))
        .await
        .expect("create");
    loop {
        match next_item(&mut stream).await {
            Ok(WatchEvent::Progress { revision }) if revision >= moved => break,
            Ok(WatchEvent::Progress { .. }) => continue,
            other => panic!("expected progress, got {other:?}"),
        }
    }
}

pub async fn compaction(store: &dyn Storage) {
    let key = "/registry/events/ns/e1";
    let r1 = store.create(key, b("1")).await.expect("create");
    let r2 = store.update(key, b("2"), r1).await.expect("update");
    let r3 = store.update(key, b("3"), r2).await.expect("update");
    store.compact(r3).await.expect("compact");

    let err = store
        .list(
            "/registry/events/ns/",
            ListOptions {
                revision: Some(r1),
                ..ListOptions::default()
            },
        )
        .await
        .expect_err("read below the compaction");
    assert!(err.is_compacted(), "{err}");
    assert!(matches!(
        err,
        StorageError::Compacted { revision, .. } if revision == r1
    ));

    let at_compaction = store
        .list(
            "/registry/events/ns/",
            ListOptions {
                revision: Some(r3),
                ..ListOptions::default()
            },
        )
        .await
        .expect("read at the compaction revision");
    assert_eq!(at_compaction.items.len(), 1);
    assert_eq!(at_compaction.items[0].value, b("3"));

    // A watch that needs the event at r2 is too old.
    let mut old = store
        .watch("/registry/events/ns/", r1, false)
        .await
        .expect("watch");
    match next_item(&mut old).await {
        Err(StorageError::Compacted {
            compact_revision, ..
        }) => assert_eq!(compact_revision, Some(r3)),
        other => panic!("expected compacted, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(EVENT_DEADLINE, old.next())
            .await
            .expect("stream ends")
            .is_none()
    );

    // One that starts at the compaction revision still sees it.
    let mut fresh = store
        .watch("/registry/events/ns/", r2, false)
        .await
        .expect("watch");
    // (etcd no longer has the previous value of an event at the compaction
    // revision, so `prev` is not checked.)
    match next_change(&mut fresh).await {
        WatchEvent::Put { kv, .. } => assert_eq!((kv.value, kv.mod_revision), (b("3"), r3)),
        other => panic!("expected put, got {other:?}"),
    }

    let err = store.compact(r2).await.expect_err("already compacted");
    assert!(err.is_compacted(), "{err}");
    assert_eq!(
        store.get(key).await.expect("get").map(|kv| kv.value),
        Some(b("3"))
    );
}
