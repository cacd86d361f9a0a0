//! End to end with more clients: a real etcd and the `control-plane
//! apiserver` binary on loopback (see `common`), driven by
//!
//! - the Python `kubernetes` client from the venv scripts/setup.sh makes
//!   (`${CAIRN_CACHE:-$HOME/.cache/cairn}/python`), running
//!   `tests/python/configmap_watch.py`: lists, a create, and a watch that
//!   sees an ADDED and a MODIFIED event;
//! - kubectl 1.33 and 1.27 for the commands `e2e.rs` does not cover:
//!   `set image`, `get -o wide|json|jsonpath`, `get pods -A`, `explain`,
//!   `api-resources`, `get --raw /openapi/v3`;
//! - bootstrap tokens: an expired one is refused (401), a valid one may
//!   create a CertificateSigningRequest but not list Secrets (403).
//!
//! On failure the assertions print the client's stderr and the tail of the
//! server's log.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_pki::KubeconfigFile;
use common::etcd_fixture::EtcdFixture;
use common::{Apiserver, etcd_and_apiserver, json, kubectl_binary};

fn start() -> Option<(tokio::runtime::Runtime, EtcdFixture, Apiserver, PathBuf)> {
    let kubectl = kubectl_binary("1.33").or_else(|| kubectl_binary("1.27"))?;
    let (runtime, etcd, mut server) = etcd_and_apiserver();
    server.wait_ready(&kubectl);
    Some((runtime, etcd, server, kubectl))
}

fn venv_python() -> PathBuf {
    let cache = std::env::var_os("CAIRN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/cairn")
        });
    cache.join("python/bin/python")
}

#[test]
fn python_client_lists_creates_and_watches() {
    let python = venv_python();
    let probe = Command::new(&python)
        .args(["-c", "import kubernetes"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "the Python kubernetes client is missing at {}: run scripts/setup.sh ({:?})",
        python.display(),
        probe.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
    );
    let Some((_runtime, _etcd, server, kubectl)) = start() else {
        eprintln!("no kubectl.1.33 / kubectl.1.27 next to kubectl on PATH; skipping");
        return;
    };
    let ns = "py";
    server.ok(&kubectl, &["create", "namespace", ns]);
    let pod = server.write(
        "py-pod.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\n  namespace: {ns}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
        ),
    );
    server.ok(&kubectl, &["create", "-f", pod.to_str().expect("path")]);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/configmap_watch.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(server.local_kubeconfig(KubeconfigFile::Admin))
        .args([ns, "trigger"])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut lines = Vec::new();
    let mut triggered = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line == "WATCHING" && !triggered {
                    triggered = true;
                    server.ok(
                        &kubectl,
                        &[
                            "create",
                            "configmap",
                            "trigger",
                            "-n",
                            ns,
                            "--from-literal=a=1",
                        ],
                    );
                    server.ok(
                        &kubectl,
                        &["label", "configmap", "trigger", "-n", ns, "changed=yes"],
                    );
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait().expect("wait python");
    let stderr = stderr_reader.join().unwrap_or_default();
    let report = format!(
        "python {status}\nstdout:\n{}\nstderr:\n{stderr}\n{}",
        lines.join("\n"),
        server.log_tail()
    );
    assert!(status.success(), "{report}");
    let namespaces = lines
        .iter()
        .find_map(|l| l.strip_prefix("NAMESPACES "))
        .expect("namespaces line");
    for name in ["default", "kube-system", ns] {
        assert!(namespaces.split(' ').any(|n| n == name), "{name}: {report}");
    }
    assert!(lines.iter().any(|l| l == "NAMESPACE_PODS 1"), "{report}");
    assert!(
        lines
            .iter()
            .any(|l| l.strip_prefix("PODS ").and_then(|n| n.parse::<u32>().ok()) >= Some(1)),
        "{report}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("CONFIGMAPS ") && l.contains("py-made")),
        "{report}"
    );
    assert!(lines.iter().any(|l| l == "EVENT ADDED trigger"), "{report}");
    assert!(
        lines.iter().any(|l| l == "EVENT MODIFIED trigger"),
        "{report}"
    );
    let made = json(&server.ok(&kubectl, &["get", "cm", "py-made", "-n", ns, "-o", "json"]));
    assert_eq!(made["data"]["made-by"], "python", "{made}");
}

fn deployment(ns: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: nginx:1.25
---
apiVersion: v1
kind: Pod
metadata:
  name: lone
  namespace: {ns}
spec:
  containers:
  - name: c
    image: busybox
"#
    )
}

fn kubectl_commands(server: &Apiserver, kubectl: &Path, ns: &str) {
    server.ok(kubectl, &["create", "namespace", ns]);
    let file = server.write(&format!("{ns}.yaml"), &deployment(ns));
    server.ok(kubectl, &["apply", "-f", file.to_str().expect("path")]);

    let out = server.ok(
        kubectl,
        &["set", "image", "deployment/web", "app=nginx:1.27", "-n", ns],
    );
    assert!(out.contains("deployment.apps/web image updated"), "{out}");
    let deploy = json(&server.ok(kubectl, &["get", "deploy", "web", "-n", ns, "-o", "json"]));
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27",
        "{deploy}"
    );

    let out = server.ok(kubectl, &["get", "deploy", "-n", ns, "-o", "wide"]);
    for word in [
        "NAME",
        "READY",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
        "web",
        "app",
        "nginx:1.27",
        "app=web",
    ] {
        assert!(out.contains(word), "{word} missing in:\n{out}");
    }

    let list = json(&server.ok(kubectl, &["get", "deploy", "-n", ns, "-o", "json"]));
    assert_eq!(list["kind"], "List", "{list}");
    assert_eq!(list["items"][0]["metadata"]["name"], "web", "{list}");
    assert_eq!(list["items"][0]["kind"], "Deployment", "{list}");

    let out = server.ok(
        kubectl,
        &[
            "get",
            "pods",
            "-n",
            ns,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    );
    assert_eq!(out.trim(), "lone");
    let out = server.ok(
        kubectl,
        &[
            "get",
            "deploy",
            "-n",
            ns,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    );
    assert_eq!(out.trim(), "web");

    let out = server.ok(kubectl, &["get", "pods", "-A"]);
    let header = out.lines().next().unwrap_or_default();
    assert!(header.starts_with("NAMESPACE"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().take(2).eq([ns, "lone"])),
        "{out}"
    );

    let out = server.ok(kubectl, &["explain", "deployment.spec.replicas"]);
    for word in ["Deployment", "replicas", "<integer>", "desired pods"] {
        assert!(out.contains(word), "{word} missing in:\n{out}");
    }

    let out = server.ok(kubectl, &["api-resources"]);
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing in:\n{out}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("deployments")[1], "deploy", "{out}");
    assert_eq!(row("pods")[1], "po", "{out}");
    assert!(row("deployments").iter().any(|w| w == "apps/v1"), "{out}");

    let index = json(&server.ok(kubectl, &["get", "--raw", "/openapi/v3"]));
    assert!(
        index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .is_some_and(|u| u.starts_with("/openapi/v3/apis/apps/v1")),
        "{index}"
    );
}

#[test]
fn kubectl_commands_beyond_the_basic_scenario() {
    let Some((_runtime, _etcd, server, _)) = start() else {
        eprintln!("no kubectl.1.33 / kubectl.1.27 next to kubectl on PATH; skipping");
        return;
    };
    for version in ["1.33", "1.27"] {
        if let Some(kubectl) = kubectl_binary(version) {
            kubectl_commands(
                &server,
                &kubectl,
                &format!("cli-{}", version.replace('.', "")),
            );
        }
    }
}

/// A bootstrap-token Secret as `kubeadm token create` writes it: the
/// extra group is the one the `kubeadm:kubelet-bootstrap` binding grants
/// `system:node-bootstrapper` to.
fn token_secret(id: &str, secret: &str, expiration: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-token-{id}
  namespace: kube-system
type: bootstrap.kubernetes.io/token
stringData:
  token-id: {id}
  token-secret: {secret}
  expiration: "{expiration}"
  usage-bootstrap-authentication: "true"
  usage-bootstrap-signing: "true"
  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token
"#
    )
}

/// A kubeconfig for `token` against `server`.
fn token_kubeconfig(server: &Apiserver, token: &str) -> PathBuf {
    server.write(
        "bootstrap.conf",
        &format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:{}
    certificate-authority: {}
users:
- name: u
  user:
    token: {token}
contexts:
- name: x
  context:
    cluster: c
    user: u
current-context: x
"#,
            server.port,
            server.pki.cert("ca").display()
        ),
    )
}

#[test]
fn bootstrap_tokens_expire_and_are_limited() {
    let Some((_runtime, _etcd, server, kubectl)) = start() else {
        eprintln!("no kubectl.1.33 / kubectl.1.27 next to kubectl on PATH; skipping");
        return;
    };
    let expired = server.write(
        "expired.yaml",
        &token_secret("abcdef", "0123456789abcdef", "2000-01-01T00:00:00Z"),
    );
    server.ok(&kubectl, &["apply", "-f", expired.to_str().expect("path")]);
    let status =
        server.get_with_token("abcdef.0123456789abcdef", "/api/v1/namespaces/default/pods");
    assert_eq!(status["code"], 401, "{status}\n{}", server.log_tail());
    assert_eq!(status["reason"], "Unauthorized", "{status}");

    let future = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let valid = server.write(
        "valid.yaml",
        &token_secret("07401b", "f395accd246ae52d", &future),
    );
    server.ok(&kubectl, &["apply", "-f", valid.to_str().expect("path")]);
    let conf = token_kubeconfig(&server, "07401b.f395accd246ae52d");
    let as_token = |args: &[&str]| {
        server
            .command(&kubectl, &conf)
            .args(args)
            .output()
            .expect("run kubectl")
    };
    let csr = server.write(
        "csr.yaml",
        &format!(
            r#"apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: node-csr-test
spec:
  request: {}
  signerName: kubernetes.io/kube-apiserver-client-kubelet
  usages:
  - digital signature
  - client auth
"#,
            csr_request(server.dir.path())
        ),
    );
    let out = as_token(&["create", "-f", csr.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "create csr as the bootstrap token: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    let created = json(&server.ok(&kubectl, &["get", "csr", "node-csr-test", "-o", "json"]));
    assert_eq!(
        created["spec"]["signerName"], "kubernetes.io/kube-apiserver-client-kubelet",
        "{created}"
    );
    // The apiserver records who asked, whatever the client sent.
    assert_eq!(
        created["spec"]["username"], "system:bootstrap:07401b",
        "{created}"
    );
    let groups = created["spec"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for group in [
        "system:bootstrappers",
        "system:bootstrappers:kubeadm:default-node-token",
        "system:authenticated",
    ] {
        assert!(
            groups.iter().any(|g| g == group),
            "{group} missing: {created}"
        );
    }
    // An administrator approves it through the approval subresource.
    server.ok(&kubectl, &["certificate", "approve", "node-csr-test"]);
    let approved = json(&server.ok(&kubectl, &["get", "csr", "node-csr-test", "-o", "json"]));
    let conditions = approved["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Approved" && c["status"] == "True"),
        "no Approved condition: {approved}"
    );
    assert_eq!(
        approved["spec"]["username"], "system:bootstrap:07401b",
        "{approved}"
    );
    let out = as_token(&["get", "secrets", "-n", "kube-system"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "listing secrets succeeded");
    assert!(
        stderr.contains(
            "secrets is forbidden: User \"system:bootstrap:07401b\" cannot list resource \"secrets\""
        ),
        "{stderr}\n{}",
        server.log_tail()
    );
}

/// A PEM certificate request for `system:node:cp-2`, base64 as the CSR's
/// `spec.request` wants it.
fn csr_request(dir: &Path) -> String {
    let pem = dir.join("node.csr");
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-subj",
            "/O=system:nodes/CN=system:node:cp-2",
            "-keyout",
        ])
        .arg(dir.join("node.key"))
        .arg("-out")
        .arg(&pem)
        .output()
        .expect("openssl req");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("openssl")
        .args(["base64", "-A", "-in"])
        .arg(&pem)
        .output()
        .expect("openssl base64");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("base64")
}
