//! The HTTPS front driven by stock kubectl (1.33 and 1.27) and by a raw
//! client, against a fake handler serving a few objects from memory.
//!
//! kubectl binaries are looked up next to `kubectl` on PATH
//! (`kubectl.1.33`, `kubectl.1.27`); tests needing one are skipped with a
//! message when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_apiserver::http::{
    ApiError, ApiHandler, ApiResponse, BodyType, RequestContext, ServerConfig, TlsFiles, Verb,
    WatchEvent, WatchEventType, load_tls_config, serve,
};
use cairn_pki::{Authority, ClusterPkiSpec, KubeconfigFile, Leaf, PkiPaths};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// What the fake handler saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: http::Version,
    verb: String,
    resource: String,
    peer_certificates: usize,
    content_type: String,
    body_type: BodyType,
    body: Value,
}

#[derive(Default)]
struct FakeRegistry {
    seen: Mutex<Vec<Seen>>,
}

fn pod(namespace: &str, name: &str, phase: &str, ready: bool) -> Value {
    let state = if ready {
        json!({"running": {}})
    } else {
        json!({"waiting": {"reason": "ContainerCreating"}})
    };
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "10",
            "creationTimestamp": "2025-01-01T00:00:00Z", "labels": {"app": "web"}},
        "spec": {"nodeName": "cp-1", "containers": [{"name": "nginx", "image": "nginx:1.27"}]},
        "status": {"phase": phase, "podIP": "10.244.0.7",
            "containerStatuses": [{"name": "nginx", "ready": ready, "restartCount": 0, "state": state}]}
    })
}

fn deployment(namespace: &str, name: &str) -> Value {
    json!({
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "11",
            "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"spec": {"containers": [{"name": name, "image": format!("{name}:1")}]}}},
        "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}
    })
}

fn list(kind: &str, items: Vec<Value>) -> ApiResponse {
    ApiResponse::List(json!({
        "kind": format!("{kind}List"), "apiVersion": "v1",
        "metadata": {"resourceVersion": "12"}, "items": items
    }))
}

impl FakeRegistry {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl ApiHandler for FakeRegistry {
    async fn handle(&self, ctx: RequestContext, body: Bytes) -> ApiResponse {
        let a = &ctx.attributes;
        let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(Seen {
                version: ctx.version,
                verb: a.verb.as_str().to_owned(),
                resource: a.resource.clone(),
                peer_certificates: ctx.peer_certificates.len(),
                content_type: ctx
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                body_type: ctx.body_type,
                body: body_json.clone(),
            });
        }
        let pods = || {
            vec![
                pod("default", "web-1", "Running", true),
                pod("default", "web-2", "Pending", false),
            ]
        };
        match (a.verb.clone(), a.resource.as_str(), a.name.as_deref()) {
            (Verb::List, "pods", _) => list("Pod", pods()),
            (Verb::Get, "pods", Some(name)) => {
                match pods().into_iter().find(|p| p["metadata"]["name"] == name) {
                    Some(object) => ApiResponse::Object {
                        status: 200,
                        object,
                    },
                    None => ApiError::not_found("", "pods", name).into(),
                }
            }
            (Verb::Watch, "pods", _) => {
                let events = vec![
                    WatchEvent::new(
                        WatchEventType::Added,
                        pod("default", "web-3", "Pending", false),
                    ),
                    WatchEvent::new(
                        WatchEventType::Modified,
                        pod("default", "web-3", "Running", true),
                    ),
                ];
                ApiResponse::Watch(Box::pin(
                    futures_util::stream::iter(events).chain(futures_util::stream::pending()),
                ))
            }
            (Verb::List, "deployments", _) => {
                let mut items = vec![
                    deployment("default", "web"),
                    deployment("kube-system", "coredns"),
                ];
                if let Some(ns) = &a.namespace {
                    items.retain(|d| d["metadata"]["namespace"] == ns.as_str());
                }
                list("Deployment", items)
            }
            (Verb::Create, "selfsubjectaccessreviews", _) => {
                let attrs = &body_json["spec"]["resourceAttributes"];
                let allowed = attrs["verb"] == "get" && attrs["resource"] == "pods";
                let mut object = body_json.clone();
                object["status"] = if allowed {
                    json!({"allowed": true})
                } else {
                    json!({"allowed": false, "reason": "fake registry says no"})
                };
                ApiResponse::Object {
                    status: 201,
                    object,
                }
            }
            (Verb::Create, "configmaps" | "namespaces", _) => {
                let mut object = body_json.clone();
                object["metadata"]["resourceVersion"] = json!("13");
                if let Some(ns) = &a.namespace {
                    object["metadata"]["namespace"] = json!(ns);
                }
                ApiResponse::Object {
                    status: 201,
                    object,
                }
            }
            (verb, resource, _) => {
                ApiError::method_not_allowed(&format!("{} {resource}", verb.as_str())).into()
            }
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    port: u16,
    pki: PkiPaths,
    kubeconfig: PathBuf,
    cache_dir: PathBuf,
    registry: Arc<FakeRegistry>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Fixture {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = ClusterPkiSpec::new(
            "cp-1".parse().expect("node"),
            "127.0.0.1".parse().expect("ip"),
        );
        let pki = PkiPaths::new(dir.path().join("pki"), Some(dir.path().join("kube")));
        cairn_pki::generate(&spec, &pki, time::OffsetDateTime::now_utc()).expect("pki");

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();

        let tls = load_tls_config(&TlsFiles {
            cert_file: pki.cert(Leaf::Apiserver.base_path()),
            key_file: pki.key(Leaf::Apiserver.base_path()),
            client_ca_file: Some(pki.cert(Authority::Kubernetes.base_path())),
        })
        .expect("tls");
        let mut config = ServerConfig::new(tls);
        config.readiness = Arc::new(|| vec![cairn_apiserver::http::HealthCheck::ok("etcd")]);
        let registry = Arc::new(FakeRegistry::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = runtime.spawn(serve(listener, config, registry.clone(), async move {
            let _ = stopped.await;
        }));
        let server = runtime.spawn(async move {
            if let Ok(Err(e)) = server.await {
                panic!("server failed: {e}");
            }
        });

        let admin = pki.kubeconfig(KubeconfigFile::Admin).expect("admin path");
        let text = std::fs::read_to_string(&admin).expect("admin.conf");
        let server_line = text
            .lines()
            .find(|l| l.trim_start().starts_with("server:"))
            .expect("server line")
            .to_owned();
        let indent = &server_line[..server_line.len() - server_line.trim_start().len()];
        let kubeconfig = dir.path().join("admin.conf");
        std::fs::write(
            &kubeconfig,
            text.replace(
                &server_line,
                &format!("{indent}server: https://127.0.0.1:{port}"),
            ),
        )
        .expect("write kubeconfig");
        let cache_dir = dir.path().join("cache");
        Self {
            _dir: dir,
            runtime,
            port,
            pki,
            kubeconfig,
            cache_dir,
            registry,
            stop: Some(stop),
            server: Some(server),
        }
    }

    fn kubectl(&self, binary: &Path, args: &[&str]) -> Output {
        let version = binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("kubectl");
        Command::new(binary)
            .args(["--kubeconfig"])
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache_dir.join(version))
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("run kubectl")
    }

    /// A TLS connection without a client certificate, speaking HTTP/1.1.
    async fn connect(
        ca: PathBuf,
        port: u16,
    ) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(ca).expect("ca");
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.expect("cert")).expect("add root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let tls = connector.connect(name, tcp).await.expect("tls");
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        sender
    }

    /// A request without a client certificate.
    fn raw(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let ca = self.pki.cert(Authority::Kubernetes.base_path());
        let port = self.port;
        let method = method.to_owned();
        let path = path.to_owned();
        let content_type = content_type.to_owned();
        self.runtime.block_on(async move {
            let mut sender = Self::connect(ca, port).await;
            let path_for_error = path.clone();
            let request = http::Request::builder()
                .method(method.as_str())
                .uri(path)
                .header("host", "127.0.0.1")
                .header("content-type", content_type)
                .body(Full::new(Bytes::from(body)))
                .expect("request");
            let response = sender
                .send_request(request)
                .await
                .unwrap_or_else(|e| panic!("{method} {path_for_error}: {e}"));
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
            (status, value)
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(15), server).await });
        }
    }
}

fn kubectl_binary(version: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("kubectl");
        if let Ok(real) = std::fs::canonicalize(&candidate) {
            let versioned = real.parent()?.join(format!("kubectl.{version}"));
            if versioned.is_file() {
                return Some(versioned);
            }
        }
    }
    None
}

macro_rules! need_kubectl {
    ($version:expr) => {
        match kubectl_binary($version) {
            Some(binary) => binary,
            None => {
                eprintln!(
                    "kubectl.{} not found next to kubectl on PATH; skipping",
                    $version
                );
                return;
            }
        }
    };
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kubectl failed ({}): {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[test]
fn kubectl_version_and_health() {
    let fixture = Fixture::start();
    for version in ["1.33", "1.27"] {
        let kubectl = need_kubectl!(version);
        let out = stdout(&fixture.kubectl(&kubectl, &["version", "-o", "json"]));
        let doc: Value = serde_json::from_str(&out).expect("version json");
        assert_eq!(
            doc["serverVersion"]["gitVersion"], "v1.33.0+cairn",
            "{version}"
        );
        assert_eq!(doc["serverVersion"]["minor"], "33");
        let out = stdout(&fixture.kubectl(&kubectl, &["get", "--raw", "/healthz"]));
        assert_eq!(out.trim(), "ok");
        let out = stdout(&fixture.kubectl(&kubectl, &["get", "--raw", "/readyz?verbose"]));
        assert!(out.contains("[+]ping ok"), "{out}");
        assert!(out.contains("[+]etcd ok"), "{out}");
        assert!(out.contains("readyz check passed"), "{out}");
    }
}

#[test]
fn kubectl_api_resources() {
    let fixture = Fixture::start();
    for version in ["1.33", "1.27"] {
        let kubectl = need_kubectl!(version);
        let out = stdout(&fixture.kubectl(&kubectl, &["api-resources"]));
        let rows: Vec<Vec<&str>> = out.lines().map(words).collect();
        assert_eq!(
            rows[0],
            ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
            "{version}"
        );
        for expected in [
            vec!["pods", "po", "v1", "true", "Pod"],
            vec!["namespaces", "ns", "v1", "false", "Namespace"],
            vec!["secrets", "v1", "true", "Secret"],
            vec!["deployments", "deploy", "apps/v1", "true", "Deployment"],
            vec!["cronjobs", "cj", "batch/v1", "true", "CronJob"],
            vec![
                "certificatesigningrequests",
                "csr",
                "certificates.k8s.io/v1",
                "false",
                "CertificateSigningRequest",
            ],
            vec![
                "selfsubjectaccessreviews",
                "authorization.k8s.io/v1",
                "false",
                "SelfSubjectAccessReview",
            ],
        ] {
            assert!(
                rows.contains(&expected),
                "{version}: {expected:?} missing from\n{out}"
            );
        }
        let out = stdout(&fixture.kubectl(
            &kubectl,
            &["api-resources", "--categories=all", "-o", "name"],
        ));
        let names: Vec<&str> = out.lines().collect();
        assert!(
            names.contains(&"pods") && names.contains(&"deployments.apps"),
            "{out}"
        );
    }
}

#[test]
fn kubectl_get_pods_tables_and_json() {
    let fixture = Fixture::start();
    for version in ["1.33", "1.27"] {
        let kubectl = need_kubectl!(version);
        let out = stdout(&fixture.kubectl(&kubectl, &["get", "pods"]));
        let rows: Vec<Vec<&str>> = out.lines().map(words).collect();
        assert_eq!(
            rows[0],
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            "{version}\n{out}"
        );
        assert_eq!(rows[1][..4], ["web-1", "1/1", "Running", "0"], "{out}");
        assert_eq!(
            rows[2][..4],
            ["web-2", "0/1", "ContainerCreating", "0"],
            "{out}"
        );

        let out = stdout(&fixture.kubectl(&kubectl, &["get", "pods", "-o", "wide"]));
        let header = out.lines().next().unwrap_or_default();
        assert_eq!(
            words(header),
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED",
                "NODE",
                "READINESS",
                "GATES"
            ],
            "{out}"
        );
        assert!(out.contains("10.244.0.7") && out.contains("cp-1"), "{out}");

        let out = stdout(&fixture.kubectl(&kubectl, &["get", "pods", "--show-labels"]));
        assert!(
            out.lines().nth(1).is_some_and(|l| l.ends_with("app=web")),
            "{out}"
        );

        let out = stdout(&fixture.kubectl(&kubectl, &["get", "pods", "-o", "json"]));
        let doc: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(doc["items"].as_array().map(Vec::len), Some(2));
        assert_eq!(doc["items"][0]["metadata"]["name"], "web-1");

        let out = stdout(&fixture.kubectl(&kubectl, &["get", "pod", "web-1", "-o", "name"]));
        assert_eq!(out.trim(), "pod/web-1");
        let missing = fixture.kubectl(&kubectl, &["get", "pod", "nope"]);
        assert!(!missing.status.success());
        assert!(
            String::from_utf8_lossy(&missing.stderr).contains("pods \"nope\" not found"),
            "{}",
            String::from_utf8_lossy(&missing.stderr)
        );
    }
}

#[test]
fn kubectl_get_deployments_all_namespaces() {
    let fixture = Fixture::start();
    for version in ["1.33", "1.27"] {
        let kubectl = need_kubectl!(version);
        let out = stdout(&fixture.kubectl(&kubectl, &["get", "deploy", "-A"]));
        let rows: Vec<Vec<&str>> = out.lines().map(words).collect();
        assert_eq!(
            rows[0],
            [
                "NAMESPACE",
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE"
            ],
            "{out}"
        );
        assert_eq!(rows[1][..5], ["default", "web", "1/2", "2", "1"], "{out}");
        assert_eq!(
            rows[2][..5],
            ["kube-system", "coredns", "1/2", "2", "1"],
            "{out}"
        );
        let out = stdout(&fixture.kubectl(&kubectl, &["get", "deploy", "-o", "wide"]));
        let rows: Vec<Vec<&str>> = out.lines().map(words).collect();
        assert_eq!(rows[0][5..], ["CONTAINERS", "IMAGES", "SELECTOR"], "{out}");
        assert_eq!(rows[1][5..], ["web", "web:1", "app=web"], "{out}");
    }
}

#[test]
fn kubectl_get_pods_watch() {
    let fixture = Fixture::start();
    for version in ["1.33", "1.27"] {
        let kubectl = need_kubectl!(version);
        let mut child = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&fixture.kubeconfig)
            .arg("--cache-dir")
            .arg(fixture.cache_dir.join(format!("watch-{version}")))
            .args(["get", "pods", "-w"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        let mut stdout_pipe = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout_pipe, &mut text);
            text
        });
        // Events are flushed one by one; give kubectl time to print them, then stop it.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            let watched = fixture.registry.seen().iter().any(|s| s.verb == "watch");
            if watched {
                std::thread::sleep(Duration::from_secs(2));
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("kubectl get -w exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        let out = reader.join().expect("reader");
        let rows: Vec<Vec<&str>> = out.lines().map(words).collect();
        assert_eq!(
            rows[0],
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            "{version}\n{out}"
        );
        assert!(
            rows.iter()
                .any(|r| r[..3] == ["web-3", "0/1", "ContainerCreating"]),
            "{version}\n{out}"
        );
        assert!(
            rows.iter().any(|r| r[..3] == ["web-3", "1/1", "Running"]),
            "{version}\n{out}"
        );
    }
}

#[test]
fn kubectl_auth_can_i_protobuf_and_json() {
    let fixture = Fixture::start();
    for (version, wire) in [
        ("1.33", "application/vnd.kubernetes.protobuf"),
        ("1.27", "application/json"),
    ] {
        let kubectl = need_kubectl!(version);
        let out = fixture.kubectl(&kubectl, &["auth", "can-i", "get", "pods"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "yes",
            "{version}: {out:?}"
        );
        assert!(out.status.success());
        let out = fixture.kubectl(&kubectl, &["auth", "can-i", "delete", "nodes"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "no - fake registry says no",
            "{version}: {out:?}"
        );
        assert_eq!(out.status.code(), Some(1));
        let seen = fixture.registry.seen();
        let review = seen
            .iter()
            .rev()
            .find(|s| s.resource == "selfsubjectaccessreviews")
            .expect("review seen");
        assert!(
            review.content_type.starts_with(wire),
            "{version}: {}",
            review.content_type
        );
        assert_eq!(review.body_type, BodyType::Json);
        assert_eq!(review.body["kind"], "SelfSubjectAccessReview");
        assert_eq!(
            review.body["spec"]["resourceAttributes"]["resource"],
            "nodes"
        );
        assert_eq!(
            review.peer_certificates, 1,
            "admin.conf carries a client certificate"
        );
        assert_eq!(
            review.version,
            http::Version::HTTP_2,
            "kubectl negotiates h2"
        );
        fixture.registry.seen.lock().expect("lock").clear();
    }
}

#[test]
fn kubectl_133_create_sends_protobuf_we_read() {
    let fixture = Fixture::start();
    let kubectl = need_kubectl!("1.33");
    let out = stdout(&fixture.kubectl(
        &kubectl,
        &["create", "configmap", "cm1", "--from-literal=a=b"],
    ));
    assert_eq!(out.trim(), "configmap/cm1 created");
    let out = stdout(&fixture.kubectl(&kubectl, &["create", "namespace", "team-a"]));
    assert_eq!(out.trim(), "namespace/team-a created");
    let seen = fixture.registry.seen();
    let cm = seen
        .iter()
        .find(|s| s.resource == "configmaps")
        .expect("configmap create");
    assert!(
        cm.content_type
            .starts_with("application/vnd.kubernetes.protobuf")
    );
    assert_eq!(
        cm.body,
        json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm1"}, "data": {"a": "b"}})
    );
}

#[test]
fn raw_client_anonymous_limits_and_errors() {
    let fixture = Fixture::start();

    let (status, doc) = fixture.raw("GET", "/api/v1/namespaces/default/pods", "", Vec::new());
    assert_eq!(status, 200);
    assert_eq!(doc["items"].as_array().map(Vec::len), Some(2));
    let seen = fixture.registry.seen();
    assert_eq!(
        seen.last().map(|s| s.peer_certificates),
        Some(0),
        "anonymous at the TLS level"
    );
    assert_eq!(seen.last().map(|s| s.version), Some(http::Version::HTTP_11));

    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    let (status, doc) = fixture.raw(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        big,
    );
    assert_eq!(status, 413);
    assert_eq!(doc["kind"], "Status");
    assert_eq!(doc["reason"], "RequestEntityTooLarge");
    assert_eq!(doc["code"], 413);

    for path in [
        "/apis/nope.example.com/v1/things",
        "/api/v1/namespaces/default/widgets",
        "/foo/bar",
    ] {
        let (status, doc) = fixture.raw("GET", path, "", Vec::new());
        assert_eq!(status, 404, "{path}");
        assert_eq!(doc["kind"], "Status", "{path}");
        assert_eq!(doc["reason"], "NotFound", "{path}");
    }

    let (status, doc) = fixture.raw(
        "GET",
        "/api/v1/pods?labelSelector=a%20in%20(",
        "",
        Vec::new(),
    );
    assert_eq!(status, 400);
    assert_eq!(doc["reason"], "BadRequest");

    let (status, doc) = fixture.raw(
        "PUT",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/x",
        "application/json",
        b"{}".to_vec(),
    );
    assert_eq!(status, 405, "{doc}");

    let (status, doc) = fixture.raw(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "text/plain",
        b"x".to_vec(),
    );
    assert_eq!(status, 415, "{doc}");
    assert_eq!(doc["reason"], "UnsupportedMediaType");

    let (status, doc) = fixture.raw(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/yaml",
        b"kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: y\ndata:\n  k: v\n".to_vec(),
    );
    assert_eq!(status, 201, "{doc}");
    assert_eq!(doc["data"]["k"], "v");
    assert_eq!(doc["metadata"]["namespace"], "default");
}

#[test]
fn raw_watch_streams_events_and_shutdown_ends_it() {
    let mut fixture = Fixture::start();
    let ca = fixture.pki.cert(Authority::Kubernetes.base_path());
    let port = fixture.port;
    let stop = fixture.stop.take().expect("stop");
    let server = fixture.server.take().expect("server");
    fixture.runtime.block_on(async move {
        let mut sender = Fixture::connect(ca, port).await;
        let request = http::Request::builder()
            .uri("/api/v1/namespaces/default/pods?watch=true&resourceVersion=12")
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = sender.send_request(request).await.expect("send");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let mut body = response.into_body();
        // Each event arrives as its own chunk, ending in a newline, while
        // the source stream stays open.
        let mut events = Vec::new();
        while events.len() < 2 {
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .expect("event in time")
                .expect("frame")
                .expect("frame ok");
            if let Ok(data) = frame.into_data() {
                assert!(data.ends_with(b"\n"));
                let event: Value = serde_json::from_slice(&data).expect("event json");
                events.push(event);
            }
        }
        assert_eq!(events[0]["type"], "ADDED");
        assert_eq!(events[1]["type"], "MODIFIED");
        assert_eq!(events[1]["object"]["status"]["phase"], "Running");
        // Shutdown ends the open watch and the server returns.
        let _ = stop.send(());
        let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .expect("watch ended by shutdown");
        assert!(rest.is_ok());
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stopped")
            .expect("server task");
    });
}
