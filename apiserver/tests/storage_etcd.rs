//! The storage conformance suite on a real etcd 3.4 with TLS and client
//! certificates, and outage behaviour (down → Unavailable quickly, back →
//! works again, nothing lost).

mod storage_common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_apiserver::storage::{EtcdConfig, EtcdStorage, ListOptions, Storage, StorageError};
use storage_common::conformance;
use storage_common::etcd_fixture::EtcdFixture;

/// How fast a request to a stopped etcd must fail.
const FAIL_FAST: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let etcd = EtcdFixture::start().await;
    let store = etcd.storage().await;
    conformance::run(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_client_certificate_is_refused() {
    let etcd = EtcdFixture::start().await;
    let mut config = etcd.config();
    config.cert_pem = None;
    config.key_pem = None;
    let store = EtcdStorage::connect(config).await.expect("lazy connect");
    let started = Instant::now();
    let err = store.get("/registry/pods/ns/p").await.expect_err("refused");
    assert!(err.is_unavailable(), "{err}");
    assert!(started.elapsed() < FAIL_FAST, "{:?}", started.elapsed());
}

#[test]
fn config_from_flags() {
    let err = EtcdConfig::from_files("", None, None, None).expect_err("no servers");
    assert!(matches!(err, StorageError::InvalidArgument { .. }), "{err}");
    let err = EtcdConfig::from_files("127.0.0.1:2379", None, None, None).expect_err("scheme");
    assert!(matches!(err, StorageError::InvalidArgument { .. }), "{err}");
    let config = EtcdConfig::from_files(
        "https://10.0.0.1:2379, https://10.0.0.2:2379",
        None,
        None,
        None,
    )
    .expect("config");
    assert_eq!(
        config.endpoints,
        ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
    );
    let err = EtcdConfig::from_files(
        "https://10.0.0.1:2379",
        Some(std::path::Path::new("/nonexistent/ca.crt")),
        None,
        None,
    )
    .expect_err("missing file");
    assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
}

async fn assert_fails_fast<T: std::fmt::Debug>(
    what: &str,
    request: impl std::future::Future<Output = Result<T, StorageError>>,
) {
    let started = Instant::now();
    let result = request.await;
    let elapsed = started.elapsed();
    match result {
        Err(e) if e.is_unavailable() => eprintln!("{what} failed after {elapsed:?}: {e}"),
        other => panic!("{what} while etcd is down: {other:?}"),
    }
    assert!(elapsed < FAIL_FAST, "{what} took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_and_recovery() {
    let mut etcd = EtcdFixture::start().await;
    let store = etcd.storage().await;
    let key = "/registry/pods/ns/survivor";
    let created = store
        .create(key, Bytes::from_static(b"before"))
        .await
        .expect("create");
    let mut watch = store
        .watch("/registry/pods/", created, false)
        .await
        .expect("watch");

    etcd.stop();

    // The open watch ends with Unavailable.
    let started = Instant::now();
    match conformance::next_item(&mut watch).await {
        Err(e) if e.is_unavailable() => {}
        other => panic!("watch while etcd is down: {other:?}"),
    }
    assert!(started.elapsed() < FAIL_FAST);

    assert_fails_fast("get", store.get(key)).await;
    assert_fails_fast(
        "create",
        store.create("/registry/pods/ns/new", Bytes::new()),
    )
    .await;
    assert_fails_fast("update", store.update(key, Bytes::new(), created)).await;
    assert_fails_fast(
        "list",
        store.list("/registry/pods/", ListOptions::default()),
    )
    .await;
    assert_fails_fast("watch", async {
        store.watch("/registry/pods/", 0, false).await.map(|_| ())
    })
    .await;
    assert_fails_fast("health", store.health()).await;

    etcd.restart().await;

    // The same store reconnects on its own.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.health().await {
        assert!(Instant::now() < deadline, "no recovery: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kv = store.get(key).await.expect("get").expect("data survived");
    assert_eq!(kv.value, Bytes::from_static(b"before"));
    assert_eq!(kv.mod_revision, created);
    let updated = store
        .update(key, Bytes::from_static(b"after"), created)
        .await
        .expect("update");
    let mut watch = store
        .watch("/registry/pods/", created, false)
        .await
        .expect("watch");
    let event = conformance::next_change(&mut watch).await;
    assert_eq!(event.revision(), updated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_etcd_times_out() {
    let etcd = EtcdFixture::start().await;
    let store = etcd.storage().await;
    let key = "/registry/pods/ns/frozen";
    let created = store
        .create(key, Bytes::from_static(b"x"))
        .await
        .expect("create");

    // A frozen etcd accepts connections but never answers: only the
    // request timeout (2 s here) ends the wait.
    etcd.signal("STOP");
    assert_fails_fast("get", store.get(key)).await;
    assert_fails_fast("health", store.health()).await;
    assert_fails_fast("update", store.update(key, Bytes::new(), created)).await;
    etcd.signal("CONT");

    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.health().await {
        assert!(Instant::now() < deadline, "no recovery: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kv = store.get(key).await.expect("get").expect("present");
    assert_eq!(kv.mod_revision, created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_larger_than_four_mebibytes() {
    let etcd = EtcdFixture::start().await;
    let store = etcd.storage().await;
    // etcd takes requests up to 1.5 MiB; six 1 MiB values make a 6 MiB list.
    let value = Bytes::from(vec![b'v'; 1 << 20]);
    for i in 0..6 {
        store
            .create(&format!("/registry/configmaps/big/c{i}"), value.clone())
            .await
            .expect("create");
    }
    let list = store
        .list("/registry/configmaps/big/", ListOptions::default())
        .await
        .expect("list");
    assert_eq!(list.items.len(), 6);
    assert!(list.items.iter().all(|kv| kv.value == value));
}
