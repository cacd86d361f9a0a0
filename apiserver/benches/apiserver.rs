//! The apiserver end to end: a real etcd (TLS, client certificates, the
//! test fixture) and the assembled server (`server::prepare`) in this
//! process on loopback, driven over HTTPS (HTTP/2, rustls, the admin
//! client certificate from a `cairn_pki::generate` PKI).
//!
//! Measures create (open loop at a fixed rate, and closed loop with N
//! concurrent clients), get, list of many pods (whole and in pages),
//! watch fan-out to many watchers, and the same create/get/list on etcd
//! alone through the storage layer for the overhead ratio.
//!
//! `cargo bench -p cairn-apiserver --bench apiserver` (add `--profile dev`
//! to reuse the test build; `-- --quick` for a smoke run). Other flags:
//! `--rate N` (open-loop writes/s), `--seconds S`, `--pods N`,
//! `--watchers N`, `--events M`, `--ops N` (closed-loop operations per
//! client count), `--clients 1,16,64`.
//!
//! Requests run as admin.conf's user (kubeadm:cluster-admins, so every
//! request goes through RBAC); the "as system:masters" rows use
//! super-admin.conf, which skips RBAC, to show its cost.

#[path = "../tests/storage_common/etcd_fixture.rs"]
#[allow(dead_code)]
mod etcd_fixture;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_apiserver::server::{ApiServerOptions, prepare};
use cairn_apiserver::storage::{ListOptions, Storage};
use cairn_pki::kubeconfig::Kubeconfig;
use cairn_pki::{Authority, ClusterPkiSpec, KubeconfigFile, Leaf, PkiPaths};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::SendRequest;
use serde_json::{Value, json};

/// hyper's HTTP/2 server accepts 200 concurrent streams per connection by
/// default; watchers are spread so that each connection stays below it.
const WATCHERS_PER_CONNECTION: usize = 50;

#[derive(Debug, Clone)]
struct Scale {
    rate: usize,
    seconds: u64,
    ops: usize,
    clients: Vec<usize>,
    pods: usize,
    page: usize,
    watchers: usize,
    events: usize,
}

impl Scale {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let mut scale = if quick {
            Self {
                rate: 200,
                seconds: 2,
                ops: 200,
                clients: vec![1, 16],
                pods: 1000,
                page: 500,
                watchers: 100,
                events: 20,
            }
        } else {
            Self {
                rate: 500,
                seconds: 10,
                ops: 2000,
                clients: vec![1, 16, 64],
                pods: 10_000,
                page: 500,
                watchers: 1000,
                events: 100,
            }
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> String {
                it.next()
                    .unwrap_or_else(|| panic!("{name} needs a value"))
                    .clone()
            };
            let number = |name: &str, text: String| -> usize {
                text.parse()
                    .unwrap_or_else(|_| panic!("{name}: not a number: {text}"))
            };
            match arg.as_str() {
                "--rate" => scale.rate = number(arg, value(arg)),
                "--seconds" => scale.seconds = number(arg, value(arg)) as u64,
                "--ops" => scale.ops = number(arg, value(arg)),
                "--pods" => scale.pods = number(arg, value(arg)),
                "--page" => scale.page = number(arg, value(arg)),
                "--watchers" => scale.watchers = number(arg, value(arg)),
                "--events" => scale.events = number(arg, value(arg)),
                "--clients" => {
                    scale.clients = value(arg)
                        .split(',')
                        .map(|n| number("--clients", n.to_owned()))
                        .collect();
                }
                // `cargo bench` passes `--bench`; other flags are ignored.
                _ => {}
            }
        }
        scale
    }
}

/// One row of the table.
#[derive(Debug, Default)]
struct Stats {
    ops: usize,
    errors: usize,
    total: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn new(total: Duration, mut latencies: Vec<Duration>, errors: usize) -> Self {
        latencies.sort();
        Self {
            ops: latencies.len(),
            errors,
            total,
            latencies,
        }
    }

    fn quantile(&self, q: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }

    fn rate(&self) -> f64 {
        self.ops as f64 / self.total.as_secs_f64().max(1e-9)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn header() {
    println!(
        "{:<38} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>8} {:>8} | {:>6} {:>6}",
        "operation",
        "clients",
        "ops",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "etcd op/s",
        "etcd p50",
        "etcd p99",
        "x p50",
        "x op/s"
    );
    println!("{}", "-".repeat(150));
}

fn row(name: &str, clients: usize, stats: &Stats, etcd: Option<&Stats>) {
    let (e_rate, e_p50, e_p99, r_p50, r_rate) = match etcd {
        Some(e) => (
            format!("{:.0}", e.rate()),
            ms(e.quantile(0.5)),
            ms(e.quantile(0.99)),
            format!(
                "{:.1}",
                stats.quantile(0.5).as_secs_f64() / e.quantile(0.5).as_secs_f64().max(1e-9)
            ),
            format!("{:.1}", e.rate() / stats.rate().max(1e-9)),
        ),
        None => Default::default(),
    };
    let errors = if stats.errors > 0 {
        format!("  ({} errors)", stats.errors)
    } else {
        String::new()
    };
    let clients = if clients == 0 {
        "open".to_owned()
    } else {
        clients.to_string()
    };
    println!(
        "{:<38} {:>7} {:>6} {:>9.0} {:>9} {:>9} {:>9} | {:>9} {:>8} {:>8} | {:>6} {:>6}{errors}",
        name,
        clients,
        stats.ops,
        stats.rate(),
        ms(stats.quantile(0.5)),
        ms(stats.quantile(0.99)),
        ms(stats.latencies.last().copied().unwrap_or_default()),
        e_rate,
        e_p50,
        e_p99,
        r_p50,
        r_rate,
    );
}

/// The admin's HTTPS connection settings.
#[derive(Clone)]
struct Connector {
    tls: tokio_rustls::TlsConnector,
    port: u16,
}

impl Connector {
    fn new(pki: &PkiPaths, port: u16, user: KubeconfigFile) -> Self {
        let admin = pki.kubeconfig(user).expect("kubeconfig path");
        let text = std::fs::read_to_string(admin).expect("admin.conf");
        let creds = Kubeconfig::parse(&text)
            .expect("parse admin.conf")
            .current_credentials()
            .expect("admin credentials");
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(pki.cert(Authority::Kubernetes.base_path())).expect("ca");
        for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
            roots.add(cert.expect("cert")).expect("add root");
        }
        let certs: Vec<_> = rustls_pemfile::certs(&mut creds.client_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("client cert");
        let key = rustls_pemfile::private_key(&mut creds.client_key_pem.as_bytes())
            .expect("client key")
            .expect("a key");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .expect("client auth");
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            port,
        }
    }

    async fn connect(&self) -> Client {
        let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .await
            .expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let tls = self.tls.connect(name, tcp).await.expect("tls");
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "server did not negotiate h2"
        );
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .expect("h2 handshake");
        tokio::spawn(conn);
        Client { sender }
    }
}

/// One HTTP/2 connection; clones share it.
#[derive(Clone)]
struct Client {
    sender: SendRequest<Full<Bytes>>,
}

impl Client {
    fn request(&self, method: &str, path: &str, body: Option<Bytes>) -> http::Request<Full<Bytes>> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("https://127.0.0.1{path}"))
            .header("accept", "application/json");
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        builder
            .body(Full::new(body.unwrap_or_default()))
            .expect("request")
    }

    /// Sends and reads the whole body; returns the status and body.
    async fn send(&self, method: &str, path: &str, body: Option<Bytes>) -> (u16, Bytes) {
        let request = self.request(method, path, body);
        let mut sender = self.sender.clone();
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => return (0, Bytes::from(e.to_string())),
        };
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (status, body)
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Bytes>) -> Bytes {
        let (status, body) = self.send(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }
}

fn config_map(name: &str) -> Bytes {
    let data: serde_json::Map<String, Value> = (0..4)
        .map(|i| (format!("key{i}"), json!("x".repeat(100))))
        .collect();
    Bytes::from(
        serde_json::to_vec(&json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app": "bench"}},
            "data": data,
        }))
        .expect("json"),
    )
}

fn pod(name: &str) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench", "tier": "list"}},
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "registry.example/app:1.0",
                    "ports": [{"containerPort": 8080}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }],
            },
        }))
        .expect("json"),
    )
}

/// `ops` operations spread over `clients` concurrent loops, each on its
/// own connection; `op(client, i)` returns whether it succeeded.
async fn closed_loop<F, Fut>(connector: &Connector, clients: usize, ops: usize, op: F) -> Stats
where
    F: Fn(Client, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(connector.connect().await);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in connections {
        let next = next.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                let t = Instant::now();
                if op(client.clone(), i).await {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("client");
        latencies.extend(l);
        errors += e;
    }
    Stats::new(started.elapsed(), latencies, errors)
}

/// The same on storage directly.
async fn closed_loop_storage<F, Fut>(
    store: &Arc<dyn Storage>,
    clients: usize,
    ops: usize,
    op: F,
) -> Stats
where
    F: Fn(Arc<dyn Storage>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let next = next.clone();
        let op = op.clone();
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                let t = Instant::now();
                if op(store.clone(), i).await {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("client");
        latencies.extend(l);
        errors += e;
    }
    Stats::new(started.elapsed(), latencies, errors)
}

/// Creates at a fixed rate whatever the latency (open loop), each request
/// timed from its scheduled start, over a few shared HTTP/2 connections.
async fn open_loop(connector: &Connector, namespace: &str, rate: usize, seconds: u64) -> Stats {
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(connector.connect().await);
    }
    let total = rate * seconds as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due).await;
        let client = connections[i % connections.len()].clone();
        let path = format!("/api/v1/namespaces/{namespace}/configmaps");
        tasks.push(tokio::spawn(async move {
            let (status, _) = client
                .send("POST", &path, Some(config_map(&format!("open-{i:06}"))))
                .await;
            (status == 201, due.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (ok, latency) = task.await.expect("request");
        if ok {
            latencies.push(latency);
        } else {
            errors += 1;
        }
    }
    Stats::new(started.elapsed(), latencies, errors)
}

/// `watchers` watches of one namespace, then `events` creates in it; the
/// latency of each delivery is from the start of the create request.
async fn watch_fan_out(connector: &Connector, watchers: usize, events: usize) -> (Stats, usize) {
    let namespace = "bench-watch";
    let admin = connector.connect().await;
    create_namespace(&admin, namespace).await;
    let list = admin
        .ok(
            "GET",
            &format!("/api/v1/namespaces/{namespace}/configmaps"),
            None,
        )
        .await;
    let list: Value = serde_json::from_slice(&list).expect("list json");
    let revision = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_owned();

    let connections = watchers.div_ceil(WATCHERS_PER_CONNECTION);
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(connector.connect().await);
    }
    let established = Arc::new(AtomicUsize::new(0));
    let setup = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..watchers {
        let client = clients[w / WATCHERS_PER_CONNECTION].clone();
        let path =
            format!("/api/v1/namespaces/{namespace}/configmaps?watch=1&resourceVersion={revision}");
        let established = established.clone();
        tasks.push(tokio::spawn(async move {
            let request = client.request("GET", &path, None);
            let mut sender = client.sender.clone();
            let response = sender.send_request(request).await.expect("watch");
            assert_eq!(response.status().as_u16(), 200, "watch status");
            established.fetch_add(1, Ordering::Relaxed);
            let mut body = response.into_body();
            let mut buffer = Vec::new();
            let mut received: Vec<(usize, Instant)> = Vec::with_capacity(events);
            while received.len() < events {
                let frame = match tokio::time::timeout(Duration::from_secs(30), body.frame()).await
                {
                    Ok(Some(Ok(frame))) => frame,
                    _ => break,
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let now = Instant::now();
                buffer.extend_from_slice(&data);
                while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    if event["type"] != "ADDED" {
                        continue;
                    }
                    let name = event["object"]["metadata"]["name"].as_str().unwrap_or("");
                    if let Some(index) = name.strip_prefix("w-").and_then(|n| n.parse().ok()) {
                        received.push((index, now));
                    }
                }
            }
            received
        }));
    }
    while established.load(Ordering::Relaxed) < watchers {
        assert!(
            setup.elapsed() < Duration::from_secs(120),
            "only {} of {watchers} watches established",
            established.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "  {watchers} watches established in {:.2} s over {connections} connections",
        setup.elapsed().as_secs_f64()
    );
    // A moment for the server side of every watch to reach etcd.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut sent = HashMap::new();
    let started = Instant::now();
    for i in 0..events {
        let t = Instant::now();
        admin
            .ok(
                "POST",
                &format!("/api/v1/namespaces/{namespace}/configmaps"),
                Some(config_map(&format!("w-{i:06}"))),
            )
            .await;
        sent.insert(i, t);
        // 50 events/s: a steady stream rather than one burst.
        tokio::time::sleep_until((started + Duration::from_millis(20) * (i as u32 + 1)).into())
            .await;
    }
    let mut latencies = Vec::new();
    let mut complete = 0;
    for task in tasks {
        let received = task.await.expect("watcher");
        if received.len() == events {
            complete += 1;
        }
        for (index, at) in received {
            if let Some(start) = sent.get(&index) {
                latencies.push(at.duration_since(*start));
            }
        }
    }
    (Stats::new(started.elapsed(), latencies, 0), complete)
}

async fn create_namespace(client: &Client, name: &str) {
    let body = serde_json::to_vec(&json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
    }))
    .expect("json");
    let (status, body) = client
        .send("POST", "/api/v1/namespaces", Some(Bytes::from(body)))
        .await;
    assert!(
        status == 201 || status == 409,
        "create namespace {name}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
}

fn main() {
    let scale = Scale::from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(scale));
}

async fn run(scale: Scale) {
    let etcd = etcd_fixture::EtcdFixture::start().await;
    let etcd_pki = etcd.pki();

    let dir = tempfile::tempdir().expect("tempdir");
    let spec = ClusterPkiSpec::new(
        "bench".parse().expect("node name"),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
    let pki = PkiPaths::new(dir.path().join("pki"), Some(dir.path().join("kube")));
    cairn_pki::generate(&spec, &pki, time::OffsetDateTime::now_utc()).expect("generate PKI");
    let options = ApiServerOptions {
        etcd_servers: etcd.endpoint(),
        etcd_cafile: Some(etcd_pki.join("etcd/ca.crt")),
        etcd_certfile: Some(etcd_pki.join("apiserver-etcd-client.crt")),
        etcd_keyfile: Some(etcd_pki.join("apiserver-etcd-client.key")),
        tls_cert_file: pki.cert(Leaf::Apiserver.base_path()),
        tls_private_key_file: pki.key(Leaf::Apiserver.base_path()),
        client_ca_file: Some(pki.cert(Authority::Kubernetes.base_path())),
        service_account_key_files: vec![pki.cert_dir.join("sa.pub")],
        service_account_signing_key_file: Some(pki.cert_dir.join("sa.key")),
        service_account_issuers: vec!["https://kubernetes.default.svc.cluster.local".to_owned()],
        secure_port: 0,
        bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        advertise_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ..ApiServerOptions::default()
    };
    let prepared = prepare(&options).await.expect("start apiserver");
    let port = prepared.local_addr().expect("address").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(prepared.serve(async move {
        let _ = stopped.await;
    }));
    // admin.conf's user is in kubeadm:cluster-admins (authorized through
    // RBAC); super-admin.conf's is in system:masters (RBAC skipped).
    let connector = Connector::new(&pki, port, KubeconfigFile::Admin);
    let masters = Connector::new(&pki, port, KubeconfigFile::SuperAdmin);
    let admin = connector.connect().await;
    admin.ok("GET", "/readyz", None).await;
    for namespace in ["bench", "bench-open", "bench-pods"] {
        create_namespace(&admin, namespace).await;
    }
    let store: Arc<dyn Storage> = Arc::new(etcd.storage().await);

    println!(
        "apiserver in-process on 127.0.0.1:{port} (HTTP/2, TLS, admin client certificate), \
         etcd 3.4 on loopback (TLS); {} CPUs shared by client, server and etcd",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "objects: ConfigMap with 4 x 100 B data, Pod with one container; etcd-alone rows \
         write the same JSON bytes through the storage layer"
    );
    println!();
    header();

    // Open loop: the write target.
    let open = open_loop(&connector, "bench-open", scale.rate, scale.seconds).await;
    row(
        &format!("create configmap open loop {}/s", scale.rate),
        0,
        &open,
        None,
    );

    // Closed loop creates and gets, apiserver and etcd alone.
    let body_len = config_map("x").len();
    for &clients in &scale.clients {
        let api = closed_loop(
            &connector,
            clients,
            scale.ops,
            move |client, i| async move {
                let (status, _) = client
                    .send(
                        "POST",
                        "/api/v1/namespaces/bench/configmaps",
                        Some(config_map(&format!("c{clients}-{i:06}"))),
                    )
                    .await;
                status == 201
            },
        )
        .await;
        let raw = closed_loop_storage(&store, clients, scale.ops, move |store, i| async move {
            store
                .create(
                    &format!("/bench-raw/configmaps/bench/c{clients}-{i:06}"),
                    config_map(&format!("c{clients}-{i:06}")),
                )
                .await
                .is_ok()
        })
        .await;
        row("create configmap", clients, &api, Some(&raw));
    }
    let created = scale.ops;
    let first = scale.clients.first().copied().unwrap_or(1);
    for &clients in &scale.clients {
        let api = closed_loop(
            &connector,
            clients,
            scale.ops,
            move |client, i| async move {
                let (status, _) = client
                    .send(
                        "GET",
                        &format!(
                            "/api/v1/namespaces/bench/configmaps/c{first}-{:06}",
                            (i * 7919) % created
                        ),
                        None,
                    )
                    .await;
                status == 200
            },
        )
        .await;
        let raw = closed_loop_storage(&store, clients, scale.ops, move |store, i| async move {
            matches!(
                store
                    .get(&format!(
                        "/bench-raw/configmaps/bench/c{first}-{:06}",
                        (i * 7919) % created
                    ))
                    .await,
                Ok(Some(_))
            )
        })
        .await;
        row("get configmap", clients, &api, Some(&raw));
        let api = closed_loop(&masters, clients, scale.ops, move |client, i| async move {
            let (status, _) = client
                .send(
                    "GET",
                    &format!(
                        "/api/v1/namespaces/bench/configmaps/c{first}-{:06}",
                        (i * 7919) % created
                    ),
                    None,
                )
                .await;
            status == 200
        })
        .await;
        row("get configmap as system:masters", clients, &api, Some(&raw));
    }

    // Pods for the list: created with 64 clients (itself a measurement).
    let pods = scale.pods;
    let api = closed_loop(&connector, 64, pods, |client, i| async move {
        let (status, _) = client
            .send(
                "POST",
                "/api/v1/namespaces/bench-pods/pods",
                Some(pod(&format!("pod-{i:06}"))),
            )
            .await;
        status == 201
    })
    .await;
    let raw = closed_loop_storage(&store, 64, pods, |store, i| async move {
        store
            .create(
                &format!("/bench-raw/pods/bench-pods/pod-{i:06}"),
                pod(&format!("pod-{i:06}")),
            )
            .await
            .is_ok()
    })
    .await;
    row("create pod", 64, &api, Some(&raw));
    assert_eq!(api.errors, 0, "pod creates failed");

    let repeats = 5;
    let mut list_bytes = 0;
    let mut latencies = Vec::new();
    let started = Instant::now();
    for _ in 0..repeats {
        let t = Instant::now();
        let body = admin
            .ok("GET", "/api/v1/namespaces/bench-pods/pods", None)
            .await;
        latencies.push(t.elapsed());
        let list: Value = serde_json::from_slice(&body).expect("list json");
        assert_eq!(list["items"].as_array().map_or(0, Vec::len), pods);
        list_bytes = body.len();
    }
    let whole_list = Stats::new(started.elapsed(), latencies, 0);
    let api = &whole_list;
    let mut latencies = Vec::new();
    let started = Instant::now();
    for _ in 0..repeats {
        let t = Instant::now();
        let list = store
            .list("/registry/pods/bench-pods/", ListOptions::default())
            .await
            .expect("list");
        latencies.push(t.elapsed());
        assert_eq!(list.items.len(), pods);
    }
    let raw = Stats::new(started.elapsed(), latencies, 0);
    row(&format!("list {pods} pods (whole)"), 1, api, Some(&raw));

    let page = scale.page;
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut pages = 0;
    for _ in 0..repeats {
        let t = Instant::now();
        let mut total = 0;
        let mut token = String::new();
        loop {
            let mut path = format!("/api/v1/namespaces/bench-pods/pods?limit={page}");
            if !token.is_empty() {
                path.push_str("&continue=");
                path.push_str(&token);
            }
            let body = admin.ok("GET", &path, None).await;
            pages += 1;
            let list: Value = serde_json::from_slice(&body).expect("list json");
            total += list["items"].as_array().map_or(0, Vec::len);
            token = list["metadata"]["continue"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(total, pods);
        latencies.push(t.elapsed());
    }
    let api = Stats::new(started.elapsed(), latencies, 0);
    let mut latencies = Vec::new();
    let started = Instant::now();
    for _ in 0..repeats {
        let t = Instant::now();
        let mut options = ListOptions {
            limit: Some(page),
            ..ListOptions::default()
        };
        let mut total = 0;
        loop {
            let list = store
                .list("/registry/pods/bench-pods/", options)
                .await
                .expect("list");
            total += list.items.len();
            match list.next_page(Some(page)) {
                Some(next) => options = next,
                None => break,
            }
        }
        assert_eq!(total, pods);
        latencies.push(t.elapsed());
    }
    let raw = Stats::new(started.elapsed(), latencies, 0);
    row(
        &format!("list {pods} pods, pages of {page}"),
        1,
        &api,
        Some(&raw),
    );

    let (watch, complete) = watch_fan_out(&connector, scale.watchers, scale.events).await;
    row(
        &format!("watch fan-out {} x {} events", scale.watchers, scale.events),
        scale.watchers,
        &watch,
        None,
    );

    println!("{}", "-".repeat(150));
    println!(
        "ops/s: completed operations per second (list rows: whole lists per second); \
         latencies from request start (open loop: from the scheduled start)"
    );
    println!(
        "x p50 = apiserver p50 / etcd p50; x op/s = etcd ops/s / apiserver ops/s; \
         list rows read the apiserver's own keys; ConfigMap body {body_len} B; \
         whole pod list {:.1} MB JSON; {} list pages",
        list_bytes as f64 / 1e6,
        pages / repeats
    );
    let open_p99 = open.quantile(0.99);
    println!();
    println!("targets:");
    println!(
        "  write p99 < 100 ms at {}/s: p99 {} ms, achieved {:.0}/s, {} errors -> {}",
        scale.rate,
        ms(open_p99),
        open.rate(),
        open.errors,
        if open_p99 < Duration::from_millis(100) && open.errors == 0 {
            "met"
        } else {
            "MISSED"
        }
    );
    let list_max = whole_list.latencies.last().copied().unwrap_or_default();
    println!(
        "  list of {pods} pods < 1 s: max of {repeats} {} ms -> {}",
        ms(list_max),
        if list_max < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  {} watchers served: {complete} received all {} events -> {}",
        scale.watchers,
        scale.events,
        if complete == scale.watchers {
            "met"
        } else {
            "MISSED"
        }
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    drop(etcd);
}
