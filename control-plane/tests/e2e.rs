//! End to end: a real etcd (TLS, client certificates) and the
//! `control-plane apiserver` binary on loopback, with a PKI from
//! `cairn_pki::generate`, driven by the stock kubectl 1.33 and 1.27 with
//! the generated admin.conf.
//!
//! kubectl binaries are looked up next to `kubectl` on PATH
//! (`kubectl.1.33`, `kubectl.1.27`); a missing one skips its part. On
//! failure the assertion prints kubectl's stderr and the tail of the
//! server's log.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_pki::KubeconfigFile;
use common::{Apiserver, etcd_and_apiserver, json, kubectl_versions};

fn manifest(namespace: &str, image: &str, extra_env: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {namespace}
  labels:
    app: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: {image}
        ports:
        - containerPort: 80
        env:
        - name: MODE
          value: demo{extra_env}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {namespace}
  labels:
    app: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 80
    nodePort: 30080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: {namespace}
  labels:
    app: web
data:
  greeting: hello
"#
    )
}

fn scenario(server: &Apiserver, kubectl: &Path, ns: &str) {
    let out = server.ok(kubectl, &["create", "namespace", ns]);
    assert!(out.contains(&format!("namespace/{ns} created")), "{out}");

    // apply: created, unchanged, configured.
    let v1 = server.write(&format!("{ns}-v1.yaml"), &manifest(ns, "nginx:1.25", ""));
    let v1 = v1.to_str().expect("path");
    let out = server.ok(kubectl, &["apply", "-f", v1]);
    for line in [
        "deployment.apps/web created",
        "service/web created",
        "configmap/web-config created",
    ] {
        assert!(out.contains(line), "{line} missing in:\n{out}");
    }
    let out = server.ok(kubectl, &["apply", "-f", v1]);
    for line in [
        "deployment.apps/web unchanged",
        "service/web unchanged",
        "configmap/web-config unchanged",
    ] {
        assert!(out.contains(line), "{line} missing in:\n{out}");
    }
    // A field the manifest never sets, changed by a strategic merge patch.
    let out = server.ok(
        kubectl,
        &[
            "patch",
            "deploy",
            "web",
            "-n",
            ns,
            "-p",
            r#"{"spec":{"minReadySeconds":7}}"#,
        ],
    );
    assert!(out.contains("deployment.apps/web patched"), "{out}");
    let v2 = server.write(
        &format!("{ns}-v2.yaml"),
        &manifest(
            ns,
            "nginx:1.26",
            "\n        - name: COLOR\n          value: blue",
        ),
    );
    let v2 = v2.to_str().expect("path");
    let out = server.ok(kubectl, &["apply", "-f", v2]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    let deploy = json(&server.ok(kubectl, &["get", "deploy", "web", "-n", ns, "-o", "json"]));
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.26", "{deploy}");
    let env: Vec<&str> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(env, ["MODE", "COLOR"], "{deploy}");
    assert_eq!(deploy["spec"]["minReadySeconds"], 7, "untouched field kept");
    assert_eq!(deploy["metadata"]["generation"], 3, "{deploy}");

    // get: tables, yaml, label selectors.
    let out = server.ok(kubectl, &["get", "deploy,svc,cm", "-n", ns]);
    for word in [
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "TYPE",
        "CLUSTER-IP",
        "PORT(S)",
        "DATA",
        "deployment.apps/web",
        "service/web",
        "configmap/web-config",
    ] {
        assert!(out.contains(word), "{word} missing in:\n{out}");
    }
    let out = server.ok(kubectl, &["get", "deploy", "web", "-n", ns, "-o", "yaml"]);
    assert!(out.contains("image: nginx:1.26"), "{out}");
    server.ok(
        kubectl,
        &[
            "create",
            "configmap",
            "other",
            "-n",
            ns,
            "--from-literal=x=y",
        ],
    );
    let out = server.ok(
        kubectl,
        &["get", "cm", "-n", ns, "-l", "app=web", "-o", "name"],
    );
    assert_eq!(out.trim(), "configmap/web-config");

    // scale, label, annotate.
    let out = server.ok(kubectl, &["scale", "deploy/web", "-n", ns, "--replicas=3"]);
    assert!(out.contains("scaled"), "{out}");
    server.ok(
        kubectl,
        &["label", "deploy", "web", "-n", ns, "tier=frontend"],
    );
    server.ok(
        kubectl,
        &["annotate", "deploy", "web", "-n", ns, "owner=team-a"],
    );
    let deploy = json(&server.ok(kubectl, &["get", "deploy", "web", "-n", ns, "-o", "json"]));
    assert_eq!(deploy["spec"]["replicas"], 3, "{deploy}");
    assert_eq!(deploy["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(deploy["metadata"]["annotations"]["owner"], "team-a");

    // get -w sees a pod created meanwhile.
    let mut watcher = server
        .command(kubectl, &server.local_kubeconfig(KubeconfigFile::Admin))
        .args(["get", "pods", "-n", ns, "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = watcher.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let pod = server.write(
        &format!("{ns}-pod.yaml"),
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: watched\n  namespace: {ns}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
        ),
    );
    server.ok(kubectl, &["create", "-f", pod.to_str().expect("path")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("watched") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(
        found,
        "get -w did not show the pod; saw {seen:?}\n{}",
        server.log_tail()
    );

    // Authorization.
    let out = server.ok(
        kubectl,
        &["auth", "can-i", "create", "deployments", "-n", ns],
    );
    assert_eq!(out.trim(), "yes");
    let err = server.fails(
        kubectl,
        KubeconfigFile::Kubelet,
        &["get", "deployments", "-n", ns],
    );
    assert!(
        err.contains(&format!(
            "deployments.apps is forbidden: User \"system:node:cp-1\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"{ns}\""
        )),
        "{err}"
    );

    // A stale update is a conflict.
    let stale = server.ok(kubectl, &["get", "cm", "other", "-n", ns, "-o", "json"]);
    let stale = server.write(&format!("{ns}-stale.json"), &stale);
    server.ok(kubectl, &["label", "cm", "other", "-n", ns, "bumped=yes"]);
    let err = server.fails(
        kubectl,
        KubeconfigFile::Admin,
        &["replace", "-f", stale.to_str().expect("path")],
    );
    assert!(
        err.contains(
            "Operation cannot be fulfilled on configmaps \"other\": the object has been modified"
        ),
        "{err}"
    );

    // delete -f, then everything is gone.
    let out = server.ok(kubectl, &["delete", "-f", v2]);
    for line in [
        "deployment.apps \"web\" deleted",
        "service \"web\" deleted",
        "configmap \"web-config\" deleted",
    ] {
        assert!(out.contains(line), "{line} missing in:\n{out}");
    }
    let err = server.fails(
        kubectl,
        KubeconfigFile::Admin,
        &["get", "deploy", "web", "-n", ns],
    );
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

fn credentials_are_required(server: &Apiserver) {
    // No credentials at all: anonymous, which RBAC grants nothing here.
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(server.pki.cert("ca"))
        .arg(format!(
            "https://127.0.0.1:{}/api/v1/namespaces/default/pods",
            server.port
        ))
        .output()
        .expect("curl");
    let status = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(status["code"], 403, "{status}");
    assert_eq!(
        status["message"],
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
        "{status}\n{}",
        server.log_tail()
    );
    // Anonymous may read the health endpoints.
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(server.pki.cert("ca"))
        .arg(format!("https://127.0.0.1:{}/readyz", server.port))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    // ... and the version, but not discovery: kube grants that to
    // system:authenticated only.
    let anonymous_get = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(server.pki.cert("ca"))
            .arg(format!("https://127.0.0.1:{}{path}", server.port))
            .output()
            .expect("curl");
        json(&String::from_utf8_lossy(&out.stdout))
    };
    let version = anonymous_get("/version");
    assert!(version["gitVersion"].is_string(), "{version}");
    for path in ["/api", "/apis", "/apis/apps/v1"] {
        let status = anonymous_get(path);
        assert_eq!(status["code"], 403, "anonymous {path}: {status}");
        assert_eq!(
            status["message"],
            format!("forbidden: User \"system:anonymous\" cannot get path \"{path}\""),
            "{status}"
        );
    }
    // A bad bearer token: 401.
    let status =
        server.get_with_token("abcdef.0123456789abcdef", "/api/v1/namespaces/default/pods");
    assert_eq!(status["code"], 401, "{status}");
    assert_eq!(status["reason"], "Unauthorized", "{status}");
}

#[test]
fn kubectl_drives_the_apiserver_on_etcd() {
    let versions = kubectl_versions(&["1.33", "1.27"]);
    if versions.is_empty() {
        eprintln!("no kubectl.1.33 / kubectl.1.27 next to kubectl on PATH; skipping");
        return;
    }
    let (_runtime, _etcd, mut server) = etcd_and_apiserver();
    server.wait_ready(&versions[0].1);
    credentials_are_required(&server);
    for (version, kubectl) in &versions {
        let ns = if *version == "1.33" {
            "demo".to_owned()
        } else {
            format!("demo-{}", version.replace('.', ""))
        };
        scenario(&server, kubectl, &ns);
    }
    // Namespace deletion removes its contents.
    let kubectl = &versions[0].1;
    let out = server.ok(kubectl, &["delete", "namespace", "demo", "--wait=true"]);
    assert!(out.contains("namespace \"demo\" deleted"), "{out}");
    let err = server.fails(kubectl, KubeconfigFile::Admin, &["get", "ns", "demo"]);
    assert!(err.contains("not found"), "{err}");
}
