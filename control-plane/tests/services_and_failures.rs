//! Service ClusterIP/NodePort allocation and the apiserver's failure
//! answers, end to end: a real etcd (TLS) and the `control-plane
//! apiserver` binary on loopback with a small service range
//! (`10.97.0.0/24`, nodePorts `30000-30999`), driven by kubectl (the first
//! of `kubectl.1.33`, `kubectl.1.27`, `kubectl` found) and by curl with the
//! admin's client certificate for raw HTTP status codes.
//!
//! Covered: allocated ClusterIPs inside the range (the `kubernetes`
//! Service holds the first address), fixed nodePort and ClusterIP
//! conflicts (422 with Kubernetes' message), release on delete, on
//! namespace deletion and on a type change, server-side dry runs, carry-over on replace, the allocations surviving an
//! apiserver restart, generated Job selectors; malformed body (400), body
//! over 3 MiB (413), unknown resource (404), invalid object (422 naming
//! the field), a watch from a compacted resourceVersion (ERROR event with
//! a 410 Expired Status); etcd hung (SIGSTOP) and stopped (`/readyz`
//! failing, 503s) and back (service resumes, nothing lost or half
//! written).

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cairn_apiserver::storage::Storage as _;
use cairn_pki::KubeconfigFile;
use cairn_pki::kubeconfig::Kubeconfig;
use common::etcd_fixture::EtcdFixture;
use common::{Apiserver, any_kubectl};
use serde_json::{Value, json};

const SERVICE_CIDR: &str = "10.97.0.0/24";
const NODE_PORTS: &str = "30000-30999";

/// The shared apiserver with this test's ranges, its kubectl, and the
/// admin's client certificate as files for curl.
struct Server {
    api: Apiserver,
    kubectl: PathBuf,
}

impl Server {
    fn start(etcd: &EtcdFixture, kubectl: PathBuf) -> Self {
        let api = Apiserver::start_with(
            etcd,
            &[
                "--service-cluster-ip-range",
                SERVICE_CIDR,
                "--service-node-port-range",
                NODE_PORTS,
            ],
        );
        let server = Self { api, kubectl };
        server.write_client_files();
        server
    }

    fn spawn(&mut self) {
        self.api.spawn();
    }

    fn stop(&mut self) {
        self.api.stop();
    }

    fn log_tail(&self) -> String {
        self.api.log_tail()
    }

    /// The admin's client certificate and key as files for curl.
    fn write_client_files(&self) {
        let path = self
            .api
            .pki
            .kubeconfig(KubeconfigFile::Admin)
            .expect("path");
        let text = std::fs::read_to_string(&path).expect("admin.conf");
        let creds = Kubeconfig::parse(&text)
            .expect("parse admin.conf")
            .current_credentials()
            .expect("admin credentials");
        std::fs::write(self.client_file("crt"), creds.client_cert_pem).expect("write cert");
        std::fs::write(self.client_file("key"), creds.client_key_pem).expect("write key");
    }

    fn client_file(&self, ext: &str) -> PathBuf {
        self.api.dir.path().join(format!("admin.{ext}"))
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.api.port)
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.api
            .kubectl_as(&self.kubectl, KubeconfigFile::Admin, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.api.ok(&self.kubectl, args)
    }

    fn fails(&self, args: &[&str]) -> String {
        self.api.fails(&self.kubectl, KubeconfigFile::Admin, args)
    }

    fn apply(&self, name: &str, object: &Value) -> String {
        let path = self.write(name, &object.to_string());
        self.ok(&["apply", "-f", path.to_str().expect("path")])
    }

    fn create_fails(&self, name: &str, object: &Value) -> String {
        let path = self.write(name, &object.to_string());
        self.fails(&["create", "-f", path.to_str().expect("path")])
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        self.api.write(name, text)
    }

    /// curl as the admin: (HTTP status, body).
    fn curl(&self, method: &str, path: &str, body: Option<&Path>) -> (u16, String) {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
            .args(["-X", method])
            .arg("--cacert")
            .arg(self.api.pki.cert("ca"))
            .arg("--cert")
            .arg(self.client_file("crt"))
            .arg("--key")
            .arg(self.client_file("key"));
        if let Some(body) = body {
            command
                .args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(format!("@{}", body.display()));
        }
        let out = command.arg(self.url(path)).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// Polls `/readyz` (its body too: `ok`) until it answers 200.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.api.exited() {
                panic!("apiserver exited with {status}\n{}", self.log_tail());
            }
            let (code, body) = self.curl("GET", "/readyz", None);
            if code == 200 && body == "ok" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "apiserver not ready ({code} {body})\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn service(name: &str, ty: &str, spec: Value) -> Value {
    let mut object = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": ty, "selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 80}]},
    });
    if let (Some(base), Some(extra)) = (object["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    object
}

fn in_range(ip: &str) -> bool {
    let ip: IpAddr = ip.parse().unwrap_or_else(|e| panic!("{ip:?}: {e}"));
    matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [10, 97, 0])
}

fn get_json(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    json_of(&server.ok(&all))
}

const PORT_TAKEN: &str =
    "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated";

fn services(server: &mut Server) {
    // The kubernetes Service holds the first address.
    let ip = server.ok(&[
        "get",
        "svc",
        "kubernetes",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(ip, "10.97.0.1");

    // An allocated ClusterIP inside the range, shown by `kubectl get svc`.
    server.apply("a.json", &service("a", "ClusterIP", json!({})));
    let table = server.ok(&["get", "svc", "a", "-n", "default"]);
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(row[..2], ["a", "ClusterIP"], "{table}");
    assert!(in_range(row[2]) && row[2] != "10.97.0.1", "{table}");

    // Fixed nodePort: the second Service asking for it is refused.
    let np1 = service(
        "np1",
        "NodePort",
        json!({"ports": [{"name": "http", "port": 80, "targetPort": 80, "nodePort": 30080}]}),
    );
    server.apply("np1.json", &np1);
    let np2 = service(
        "np2",
        "NodePort",
        json!({"ports": [{"name": "http", "port": 80, "targetPort": 80, "nodePort": 30080}]}),
    );
    let err = server.create_fails("np2.json", &np2);
    assert!(
        err.contains(&format!("Service \"np2\" is invalid: {PORT_TAKEN}")),
        "{err}"
    );

    // A dynamic nodePort comes from the range.
    server.apply("dyn.json", &service("dyn", "NodePort", json!({})));
    let dyn_svc = get_json(server, &["svc", "dyn", "-n", "default"]);
    let port = dyn_svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("nodePort");
    assert!(
        (30000..=30999).contains(&port) && port != 30080,
        "{dyn_svc}"
    );
    assert!(
        in_range(dyn_svc["spec"]["clusterIP"].as_str().expect("ip")),
        "{dyn_svc}"
    );

    // A fixed ClusterIP, then the same one again.
    server.apply(
        "ip1.json",
        &service("ip1", "ClusterIP", json!({"clusterIP": "10.97.0.50"})),
    );
    let err = server.create_fails(
        "ip2.json",
        &service("ip2", "ClusterIP", json!({"clusterIP": "10.97.0.50"})),
    );
    assert!(
        err.contains(
            "spec.clusterIPs: Invalid value: [\"10.97.0.50\"]: failed to allocate IP 10.97.0.50: provided IP is already allocated"
        ),
        "{err}"
    );
    // Headless stays headless.
    server.apply(
        "headless.json",
        &service("headless", "ClusterIP", json!({"clusterIP": "None"})),
    );
    let ip = server.ok(&[
        "get",
        "svc",
        "headless",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(ip, "None");

    // Replace with the original manifest keeps what was allocated.
    let before = get_json(server, &["svc", "dyn", "-n", "default"]);
    let path = server.write(
        "dyn-replace.json",
        &service("dyn", "NodePort", json!({})).to_string(),
    );
    server.ok(&["replace", "-f", path.to_str().expect("path")]);
    let after = get_json(server, &["svc", "dyn", "-n", "default"]);
    assert_eq!(before["spec"]["clusterIP"], after["spec"]["clusterIP"]);
    assert_eq!(
        before["spec"]["ports"][0]["nodePort"],
        after["spec"]["ports"][0]["nodePort"]
    );

    // A server-side dry run shows what would be allocated, and keeps nothing.
    let dry = json_of(&server.ok(&[
        "patch",
        "svc",
        "a",
        "-n",
        "default",
        "--dry-run=server",
        "-o",
        "json",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]));
    let port = dry["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap_or_else(|| panic!("no nodePort in {dry}"));
    assert!((30000..=30999).contains(&port), "{dry}");
    let a = get_json(server, &["svc", "a", "-n", "default"]);
    assert_eq!(a["spec"]["type"], "ClusterIP", "{a}");

    // Delete releases the ClusterIP; a type change releases the nodePort.
    server.ok(&["delete", "svc", "ip1", "-n", "default"]);
    server.apply(
        "ip2.json",
        &service("ip2", "ClusterIP", json!({"clusterIP": "10.97.0.50"})),
    );
    server.ok(&[
        "patch",
        "svc",
        "np1",
        "-n",
        "default",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    let np1_now = get_json(server, &["svc", "np1", "-n", "default"]);
    assert!(
        np1_now["spec"]["ports"][0].get("nodePort").is_none(),
        "{np1_now}"
    );
    server.apply("np2.json", &np2);

    // The allocations survive a restart: they are read back from etcd.
    server.stop();
    server.spawn();
    server.wait_ready();
    let err = server.create_fails(
        "np3.json",
        &service(
            "np3",
            "NodePort",
            json!({"ports": [{"name": "http", "port": 80, "targetPort": 80, "nodePort": 30080}]}),
        ),
    );
    assert!(err.contains(PORT_TAKEN), "{err}");
    let err = server.create_fails(
        "ip3.json",
        &service("ip3", "ClusterIP", json!({"clusterIP": "10.97.0.50"})),
    );
    assert!(
        err.contains("failed to allocate IP 10.97.0.50: provided IP is already allocated"),
        "{err}"
    );
    server.apply("b.json", &service("b", "ClusterIP", json!({})));
    let ips: Vec<String> = ["a", "b", "dyn", "np1", "np2", "ip2", "kubernetes"]
        .iter()
        .map(|n| {
            server.ok(&[
                "get",
                "svc",
                n,
                "-n",
                "default",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ])
        })
        .collect();
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ips.len(), "duplicate ClusterIPs: {ips:?}");

    // Deleting a namespace releases what its Services held.
    server.ok(&["create", "namespace", "scratch"]);
    let mut scratch = service(
        "held",
        "NodePort",
        json!({"clusterIP": "10.97.0.60",
            "ports": [{"name": "http", "port": 80, "targetPort": 80, "nodePort": 30500}]}),
    );
    scratch["metadata"]["namespace"] = json!("scratch");
    server.apply("scratch.json", &scratch);
    scratch["metadata"]["namespace"] = json!("default");
    server.create_fails("scratch-default.json", &scratch);
    server.ok(&["delete", "namespace", "scratch", "--wait=true"]);
    server.apply("scratch-default.json", &scratch);

    // Concurrent creates get distinct addresses and ports.
    let paths: Vec<PathBuf> = (0..12)
        .map(|i| {
            let mut object = service(&format!("par{i}"), "NodePort", json!({}));
            object["metadata"]
                .as_object_mut()
                .expect("metadata")
                .remove("namespace");
            server.write(&format!("par{i}.json"), &object.to_string())
        })
        .collect();
    let created: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .iter()
            .map(|path| {
                let server = &*server;
                scope.spawn(move || {
                    server.curl("POST", "/api/v1/namespaces/default/services", Some(path))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut ips = std::collections::BTreeSet::new();
    let mut ports = std::collections::BTreeSet::new();
    for (code, body) in &created {
        assert_eq!(*code, 201, "{body}");
        let object = json_of(body);
        ips.insert(object["spec"]["clusterIP"].as_str().expect("ip").to_owned());
        ports.insert(
            object["spec"]["ports"][0]["nodePort"]
                .as_u64()
                .expect("port"),
        );
    }
    assert_eq!((ips.len(), ports.len()), (12, 12), "{ips:?} {ports:?}");
    assert!(!ports.contains(&30080), "{ports:?}");

    // A Job gets its generated selector.
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "pi", "image": "busybox:1.36", "command": ["true"]}]}}},
    });
    server.apply("job.json", &job);
    let job = get_json(server, &["job", "pi", "-n", "default"]);
    let uid = job["metadata"]["uid"].as_str().expect("uid");
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid,
        "{job}"
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["job-name"], "pi",
        "{job}"
    );
}

fn bad_requests(server: &Server) {
    let cms = "/api/v1/namespaces/default/configmaps";
    // Malformed JSON: 400.
    let path = server.write("malformed.json", "{\"apiVersion\": \"v1\", \"kind\": ");
    let (code, body) = server.curl("POST", cms, Some(&path));
    assert_eq!(code, 400, "{body}");
    assert_eq!(json_of(&body)["reason"], "BadRequest", "{body}");
    // Over 3 MiB: 413.
    let big = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "big"},
        "data": {"blob": "x".repeat(3 * 1024 * 1024 + 1024)},
    });
    let path = server.write("big.json", &big.to_string());
    let (code, body) = server.curl("POST", cms, Some(&path));
    assert_eq!(code, 413, "{body}");
    // Unknown resource: 404.
    let (code, body) = server.curl("GET", "/api/v1/namespaces/default/widgets", None);
    assert_eq!(code, 404, "{body}");
    let (code, body) = server.curl("GET", "/apis/example.com/v1/widgets", None);
    assert_eq!(code, 404, "{body}");
    // Invalid object: 422 naming the field.
    let bad = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "Bad_Name"},
        "data": {"k": "v"},
    });
    let path = server.write("invalid.json", &bad.to_string());
    let (code, body) = server.curl("POST", cms, Some(&path));
    assert_eq!(code, 422, "{body}");
    let status = json_of(&body);
    assert_eq!(status["reason"], "Invalid", "{body}");
    assert!(
        status["details"]["causes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["field"] == "metadata.name")),
        "{body}"
    );
    assert!(
        status["message"].as_str().is_some_and(|m| m.starts_with(
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
        )),
        "{body}"
    );
    // An invalid Service (kubectl): 422 naming the field.
    let err = server.create_fails(
        "badport.json",
        &service(
            "badport",
            "ClusterIP",
            json!({"ports": [{"name": "http", "port": 0}]}),
        ),
    );
    assert!(err.contains("spec.ports[0].port"), "{err}");
}

fn compacted_watch(server: &Server, runtime: &tokio::runtime::Runtime, etcd: &EtcdFixture) {
    server.apply(
        "w.json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "w", "namespace": "default"}, "data": {"n": "0"}}),
    );
    let first = get_json(server, &["cm", "w", "-n", "default"]);
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    for n in 1..=3 {
        server.ok(&[
            "patch",
            "cm",
            "w",
            "-n",
            "default",
            "-p",
            &format!(r#"{{"data":{{"n":"{n}"}}}}"#),
        ]);
    }
    runtime.block_on(async {
        let storage = etcd.storage().await;
        let current = storage.current_revision().await.expect("revision");
        storage.compact(current).await.expect("compact");
    });
    let (code, body) = server.curl(
        "GET",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=5"
        ),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let event = body
        .lines()
        .map(json_of)
        .find(|e| e["type"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR event in {body}"));
    assert_eq!(event["object"]["kind"], "Status", "{event}");
    assert_eq!(event["object"]["code"], 410, "{event}");
    assert_eq!(event["object"]["reason"], "Expired", "{event}");
    // The same through kubectl.
    let out = server.ok(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=3"
        ),
    ]);
    let event = json_of(out.lines().next().expect("an event"));
    assert_eq!(event["type"], "ERROR", "{out}");
    assert_eq!(event["object"]["code"], 410, "{out}");
}

fn etcd_outage(server: &Server, runtime: &tokio::runtime::Runtime, etcd: &mut EtcdFixture) {
    let cms = "/api/v1/namespaces/default/configmaps";
    let object = |name: &str, n: usize| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"},
            "data": {"payload": "p".repeat(n)}})
    };
    server.apply("before.json", &object("before", 1000));
    let before = get_json(server, &["cm", "before", "-n", "default"]);

    etcd.stop();
    // Writes right after the crash, before the health probe notices:
    // refused, or landed whole (checked once etcd is back).
    let racing: Vec<PathBuf> = (0..3)
        .map(|i| {
            server.write(
                &format!("race{i}.json"),
                &object(&format!("race{i}"), 2000).to_string(),
            )
        })
        .collect();
    for path in &racing {
        let (code, body) = server.curl("POST", cms, Some(path));
        assert!(matches!(code, 201 | 503 | 504), "{code} {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = server.curl("GET", "/readyz", None);
        if code != 200 {
            assert!(body.contains("etcd"), "{code} {body}");
            break;
        }
        assert!(Instant::now() < deadline, "readyz stayed ok: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, body) = server.curl("GET", cms, None);
    assert_eq!(code, 503, "{body}");
    assert_eq!(json_of(&body)["reason"], "ServiceUnavailable", "{body}");
    let path = server.write("during.json", &object("during", 10).to_string());
    let (code, body) = server.curl("POST", cms, Some(&path));
    assert_eq!(code, 503, "{body}");
    let out = server.kubectl(&["get", "--raw", "/readyz"]);
    assert!(!out.status.success());

    runtime.block_on(etcd.restart());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = server.curl("GET", "/readyz", None);
        if code == 200 && body == "ok" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readyz not ok after etcd came back: {code} {body}\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing lost, nothing half written.
    let again = get_json(server, &["cm", "before", "-n", "default"]);
    assert_eq!(before, again);
    for i in 0..3 {
        let name = format!("race{i}");
        let (code, body) = server.curl("GET", &format!("{cms}/{name}"), None);
        match code {
            200 => assert_eq!(
                json_of(&body)["data"]["payload"].as_str().map(str::len),
                Some(2000),
                "{body}"
            ),
            404 => {}
            other => panic!("{name}: {other} {body}"),
        }
    }
    let err = server.fails(&["get", "cm", "during", "-n", "default"]);
    assert!(err.contains("not found"), "{err}");
    // And writes work again.
    server.apply("after.json", &object("after", 10));
    let list = get_json(server, &["cm", "-n", "default"]);
    assert!(
        list["items"]
            .as_array()
            .is_some_and(|items| items.iter().all(|i| i["metadata"]["uid"].is_string())),
        "{list}"
    );
}

fn wait_readyz(server: &Server, ok: bool, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = server.curl("GET", "/readyz", None);
        if (code == 200 && body == "ok") == ok {
            if !ok {
                assert!(body.contains("etcd"), "{code} {body}");
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "readyz did not become {}: {code} {body}\n{}",
            if ok { "ok" } else { "failing" },
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// etcd hangs (SIGSTOP) instead of dying: readiness fails, requests get
/// 503, a write in flight lands whole or not at all once etcd continues.
fn etcd_paused(server: &Server, etcd: &EtcdFixture) {
    let cms = "/api/v1/namespaces/default/configmaps";
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "inflight", "namespace": "default"},
        "data": {"payload": "q".repeat(5000)}});
    let path = server.write("inflight.json", &object.to_string());
    etcd.signal("STOP");
    let (code, body) = std::thread::scope(|scope| {
        let inflight = scope.spawn(|| server.curl("POST", cms, Some(&path)));
        wait_readyz(server, false, Duration::from_secs(30));
        let (code, body) = server.curl("GET", cms, None);
        assert_eq!(code, 503, "{body}");
        etcd.signal("CONT");
        inflight.join().expect("thread")
    });
    assert!(matches!(code, 201 | 503), "{code} {body}");
    wait_readyz(server, true, Duration::from_secs(60));
    let (get_code, got) = server.curl("GET", &format!("{cms}/inflight"), None);
    match get_code {
        200 => assert_eq!(
            json_of(&got)["data"]["payload"].as_str().map(str::len),
            Some(5000),
            "{got}"
        ),
        404 => assert_eq!(code, 503, "created, then lost: {body}"),
        other => panic!("{other} {got}"),
    }
}

#[test]
fn service_allocation_and_failure_answers() {
    let Some(kubectl) = any_kubectl() else {
        eprintln!("no kubectl on PATH; skipping");
        return;
    };
    let runtime = common::runtime();
    let mut etcd = runtime.block_on(EtcdFixture::start());
    let mut server = Server::start(&etcd, kubectl);
    server.wait_ready();
    services(&mut server);
    bad_requests(&server);
    compacted_watch(&server, &runtime, &etcd);
    etcd_paused(&server, &etcd);
    etcd_outage(&server, &runtime, &mut etcd);
}
