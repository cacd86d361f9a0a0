//! Storage throughput and latency: create, get, list of 1000 keys and
//! watch fan-out, on a real etcd (TLS, client certificates, the test
//! fixture) and on the in-memory store.
//!
//! `cargo bench -p cairn-apiserver --bench storage` (add `--profile dev` to
//! reuse the test build). `STORAGE_BENCH_SCALE` (default 1) multiplies the
//! operation counts.

#[path = "../tests/storage_common/etcd_fixture.rs"]
#[allow(dead_code)]
mod etcd_fixture;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_apiserver::storage::{ListOptions, MemoryStorage, Storage, WatchEvent};
use futures_util::StreamExt as _;

struct Stats {
    name: String,
    ops: usize,
    total: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn print(mut self) {
        self.latencies.sort();
        let pick = |q: f64| {
            let index = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
            self.latencies.get(index).copied().unwrap_or_default()
        };
        let rate = self.ops as f64 / self.total.as_secs_f64().max(1e-9);
        println!(
            "{:<44} {:>6} ops {:>11.0} ops/s   p50 {:>9.1?}   p99 {:>9.1?}",
            self.name,
            self.ops,
            rate,
            pick(0.50),
            pick(0.99)
        );
    }
}

fn value(size: usize) -> Bytes {
    Bytes::from(vec![b'x'; size])
}

async fn sequential<F, Fut>(name: String, ops: usize, mut op: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut latencies = Vec::with_capacity(ops);
    let started = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        op(i).await;
        latencies.push(t.elapsed());
    }
    Stats {
        name,
        ops,
        total: started.elapsed(),
        latencies,
    }
}

async fn concurrent_creates(store: &Arc<dyn Storage>, label: &str, ops: usize) -> Stats {
    const IN_FLIGHT: usize = 16;
    let started = Instant::now();
    let latencies: Vec<Duration> = futures_util::stream::iter(0..ops)
        .map(|i| {
            let store = Arc::clone(store);
            async move {
                let t = Instant::now();
                store
                    .create(&format!("/registry/bench/concurrent/k{i:06}"), value(512))
                    .await
                    .expect("create");
                t.elapsed()
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    Stats {
        name: format!("{label} create x{IN_FLIGHT} in flight"),
        ops,
        total: started.elapsed(),
        latencies,
    }
}

async fn watch_fan_out(store: &Arc<dyn Storage>, label: &str, watchers: usize, writes: usize) {
    let prefix = "/registry/bench/watched/";
    let mut tasks = Vec::new();
    let written = Arc::new(std::sync::Mutex::new(Vec::<(i64, Instant)>::new()));
    for _ in 0..watchers {
        let mut stream = store.watch(prefix, 0, false).await.expect("watch");
        tasks.push(tokio::spawn(async move {
            let mut received = Vec::with_capacity(writes);
            while received.len() < writes {
                match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
                    Ok(Some(Ok(WatchEvent::Put { kv, .. }))) => {
                        received.push((kv.mod_revision, Instant::now()));
                    }
                    Ok(Some(Ok(_))) => {}
                    other => panic!("watch: {other:?}"),
                }
            }
            received
        }));
    }
    let started = Instant::now();
    for i in 0..writes {
        let t = Instant::now();
        let revision = store
            .create(&format!("{prefix}k{i:06}"), value(512))
            .await
            .expect("create");
        written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((revision, t));
    }
    let mut latencies = Vec::new();
    let written: std::collections::HashMap<i64, Instant> = written
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .copied()
        .collect();
    for task in tasks {
        for (revision, at) in task.await.expect("watcher") {
            if let Some(start) = written.get(&revision) {
                latencies.push(at.duration_since(*start));
            }
        }
    }
    Stats {
        name: format!("{label} watch {watchers} watchers (events)"),
        ops: latencies.len(),
        total: started.elapsed(),
        latencies,
    }
    .print();
}

async fn run(store: Arc<dyn Storage>, label: &str, scale: usize) {
    let n = 1000 * scale;
    sequential(format!("{label} create"), n, |i| {
        let store = Arc::clone(&store);
        async move {
            store
                .create(&format!("/registry/bench/objects/k{i:06}"), value(512))
                .await
                .expect("create");
        }
    })
    .await
    .print();
    sequential(format!("{label} get"), n, |i| {
        let store = Arc::clone(&store);
        async move {
            store
                .get(&format!("/registry/bench/objects/k{:06}", i % n))
                .await
                .expect("get")
                .expect("present");
        }
    })
    .await
    .print();
    concurrent_creates(&store, label, n).await.print();

    for i in 0..1000 {
        store
            .create(&format!("/registry/bench/list/k{i:04}"), value(1024))
            .await
            .expect("create");
    }
    sequential(format!("{label} list 1000 keys"), 20 * scale, |_| {
        let store = Arc::clone(&store);
        async move {
            let list = store
                .list("/registry/bench/list/", ListOptions::default())
                .await
                .expect("list");
            assert_eq!(list.items.len(), 1000);
        }
    })
    .await
    .print();
    sequential(
        format!("{label} list 1000 keys, pages of 100"),
        5 * scale,
        |_| {
            let store = Arc::clone(&store);
            async move {
                let mut options = ListOptions {
                    limit: Some(100),
                    ..ListOptions::default()
                };
                let mut total = 0;
                loop {
                    let page = store
                        .list("/registry/bench/list/", options)
                        .await
                        .expect("list");
                    total += page.items.len();
                    match page.next_page(Some(100)) {
                        Some(next) => options = next,
                        None => break,
                    }
                }
                assert_eq!(total, 1000);
            }
        },
    )
    .await
    .print();
    watch_fan_out(&store, label, 50, 200 * scale).await;
}

fn main() {
    let scale = std::env::var("STORAGE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1usize);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("values: 512 B (list: 1 KiB); scale {scale}");
        run(Arc::new(MemoryStorage::new()), "memory", scale).await;
        let etcd = etcd_fixture::EtcdFixture::start().await;
        let store: Arc<dyn Storage> = Arc::new(etcd.storage().await);
        run(store, "etcd 3.4 (TLS)", scale).await;
    });
}
