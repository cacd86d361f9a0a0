//! End to end: kube's delete semantics through stock kubectl (1.33) with
//! a real etcd, the `control-plane apiserver` binary and the
//! `control-plane controller-manager` binary's garbage collector.
//!
//! Three Deployment → ReplicaSet → Pod chains (owner references with
//! `blockOwnerDeletion`, no workload controllers: the objects are made by
//! hand) are deleted with `--cascade=foreground`, `--cascade=orphan` and
//! the default (background) while no controller manager runs, so what the
//! apiserver alone does is checked first (the finalizers and
//! `deletionTimestamp`, the owner gone at once for background). Then the
//! controller manager starts and the test waits for the garbage
//! collector's result: the foreground and background trees gone, the
//! orphaned ReplicaSet kept without its owner reference; then kubectl's
//! own wait on a foreground delete returns with the tree gone, and a
//! dependent with a live and a deleted owner only loses the reference to
//! the deleted one. A bound pod's
//! delete shows `Terminating` with `deletionGracePeriodSeconds`, and
//! `--grace-period=0 --force` removes it. Every wait polls with a
//! generous deadline and reports what it saw plus the logs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_pki::KubeconfigFile;
use common::{Apiserver, ControllerManager, etcd_and_apiserver, json, kubectl_binary};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);
const NS: &str = "gc";

struct Harness<'a> {
    server: &'a Apiserver,
    kubectl: &'a Path,
}

impl Harness<'_> {
    fn ok(&self, args: &[&str]) -> String {
        self.server.ok(self.kubectl, args)
    }

    /// The object as JSON, `None` once it is gone.
    fn get(&self, kind: &str, name: &str) -> Option<Value> {
        let out = self.ok(&[
            "get",
            kind,
            name,
            "-n",
            NS,
            "-o",
            "json",
            "--ignore-not-found",
        ]);
        (!out.trim().is_empty()).then(|| json(&out))
    }

    fn uid(&self, kind: &str, name: &str) -> String {
        self.get(kind, name)
            .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("{kind} {name} has no uid"))
    }

    fn create(&self, file: &str, manifest: &str) {
        let path = self.server.write(file, manifest);
        self.ok(&["create", "-f", &path.to_string_lossy()]);
    }

    /// A Deployment `<name>`, its ReplicaSet `<name>-rs` and the RS's pod
    /// `<name>-pod` (unbound, so it can go at once), each owned by the
    /// previous one with `blockOwnerDeletion`.
    fn chain(&self, name: &str) {
        self.create(
            &format!("{name}-deploy.yaml"),
            &format!(
                "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: busybox}}]}}
"
            ),
        );
        let deployment_uid = self.uid("deployment", name);
        self.create(
            &format!("{name}-rs.yaml"),
            &format!(
                "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: {name}-rs
  namespace: {NS}
  ownerReferences:
  - {{apiVersion: apps/v1, kind: Deployment, name: {name}, uid: {deployment_uid}, controller: true, blockOwnerDeletion: true}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: busybox}}]}}
"
            ),
        );
        let rs_uid = self.uid("replicaset", &format!("{name}-rs"));
        self.create(
            &format!("{name}-pod.yaml"),
            &format!(
                "apiVersion: v1
kind: Pod
metadata:
  name: {name}-pod
  namespace: {NS}
  labels: {{app: {name}}}
  ownerReferences:
  - {{apiVersion: apps/v1, kind: ReplicaSet, name: {name}-rs, uid: {rs_uid}, controller: true, blockOwnerDeletion: true}}
spec: {{containers: [{{name: c, image: busybox}}]}}
"
            ),
        );
    }

    /// Polls until `check` holds; panics with `expected`, the last state
    /// seen and the logs.
    fn wait_for(
        &self,
        manager: &ControllerManager,
        expected: &str,
        mut check: impl FnMut(&Self) -> Result<(), String>,
    ) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let seen = match check(self) {
                Ok(()) => return,
                Err(seen) => seen,
            };
            assert!(
                Instant::now() < deadline,
                "waited {DEADLINE:?} for {expected}; last seen: {seen}\n{}\n{}",
                manager.log_tail(),
                self.server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn gone(&self, kind: &str, name: &str) -> Result<(), String> {
        match self.get(kind, name) {
            None => Ok(()),
            Some(o) => Err(format!(
                "{kind} {name} still there (finalizers {}, deletionTimestamp {})",
                o["metadata"]["finalizers"], o["metadata"]["deletionTimestamp"]
            )),
        }
    }
}

fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cascading_and_graceful_deletion_with_kubectl() {
    let Some(kubectl) = kubectl_binary("1.33") else {
        eprintln!("no kubectl.1.33 next to kubectl on PATH; skipping");
        return;
    };
    let (_runtime, _etcd, mut server) = etcd_and_apiserver();
    server.wait_ready(&kubectl);
    let h = Harness {
        server: &server,
        kubectl: &kubectl,
    };
    h.ok(&["create", "namespace", NS]);
    for name in ["fg", "orph", "bg"] {
        h.chain(name);
    }

    // kube refuses the deprecated orphanDependents next to a propagation
    // policy, in the query as in a DeleteOptions body.
    h.ok(&["create", "configmap", "doomed", "-n", NS]);
    let doomed = format!("/api/v1/namespaces/{NS}/configmaps/doomed");
    let body = server.write(
        "both-options.json",
        r#"{"kind":"DeleteOptions","apiVersion":"v1","orphanDependents":true,"propagationPolicy":"Background"}"#,
    );
    for args in [
        vec![
            "delete".to_owned(),
            "--raw".to_owned(),
            format!("{doomed}?orphanDependents=true&propagationPolicy=Foreground"),
        ],
        vec![
            "delete".to_owned(),
            "--raw".to_owned(),
            doomed.clone(),
            "-f".to_owned(),
            body.to_string_lossy().into_owned(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = server.fails(&kubectl, KubeconfigFile::Admin, &args);
        assert!(
            err.contains("orphanDependents and deletionPropagation cannot be both set"),
            "kubectl {}: expected kube's DeleteOptions 422, got: {err}",
            args.join(" ")
        );
    }
    assert!(
        h.get("configmap", "doomed").is_some(),
        "a refused delete removes nothing"
    );

    // The apiserver alone: foreground and orphan deletes leave the owner
    // with its finalizer; a background delete removes it at once.
    h.ok(&[
        "delete",
        "deployment",
        "fg",
        "-n",
        NS,
        "--cascade=foreground",
        "--wait=false",
    ]);
    let fg = h
        .get("deployment", "fg")
        .expect("fg is held by its finalizer");
    assert_eq!(finalizers(&fg), ["foregroundDeletion"], "{fg}");
    assert!(fg["metadata"]["deletionTimestamp"].is_string(), "{fg}");
    h.ok(&[
        "delete",
        "deployment",
        "orph",
        "-n",
        NS,
        "--cascade=orphan",
        "--wait=false",
    ]);
    let orph = h
        .get("deployment", "orph")
        .expect("orph is held by its finalizer");
    assert_eq!(finalizers(&orph), ["orphan"], "{orph}");
    h.ok(&["delete", "deployment", "bg", "-n", NS, "--wait=false"]);
    assert!(
        h.get("deployment", "bg").is_none(),
        "a background delete removes the owner at once"
    );
    assert!(
        h.get("replicaset", "bg-rs").is_some(),
        "without a garbage collector the dependents stay"
    );

    // Graceful pod deletion: a bound pod terminates, a forced delete ends it.
    h.create(
        "bound.yaml",
        &format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: bound, namespace: {NS}}}
spec:
  nodeName: node-1
  terminationGracePeriodSeconds: 45
  containers: [{{name: c, image: busybox}}]
"
        ),
    );
    h.ok(&["delete", "pod", "bound", "-n", NS, "--wait=false"]);
    let bound = h.get("pod", "bound").expect("a bound pod terminates");
    assert_eq!(
        bound["metadata"]["deletionGracePeriodSeconds"], 45,
        "{bound}"
    );
    let table = h.ok(&["get", "pod", "bound", "-n", NS]);
    assert!(table.contains("Terminating"), "{table}");
    h.ok(&[
        "delete",
        "pod",
        "bound",
        "-n",
        NS,
        "--grace-period=0",
        "--force",
    ]);
    assert!(
        h.get("pod", "bound").is_none(),
        "--grace-period=0 --force removes it"
    );

    // The garbage collector finishes each deletion.
    let manager =
        ControllerManager::start(&server, "controller-manager", &["--leader-elect=false"]);
    h.wait_for(&manager, "the foreground tree to go", |h| {
        h.gone("pod", "fg-pod")?;
        h.gone("replicaset", "fg-rs")?;
        h.gone("deployment", "fg")
    });
    h.wait_for(&manager, "the background dependents to go", |h| {
        h.gone("replicaset", "bg-rs")?;
        h.gone("pod", "bg-pod")
    });
    h.wait_for(
        &manager,
        "orph to go and orph-rs to stay without its owner reference",
        |h| {
            h.gone("deployment", "orph")?;
            let rs = h
                .get("replicaset", "orph-rs")
                .ok_or("orph-rs was deleted")?;
            match &rs["metadata"]["ownerReferences"] {
                Value::Null => Ok(()),
                refs => Err(format!("orph-rs still has ownerReferences {refs}")),
            }
        },
    );
    assert!(
        h.get("pod", "orph-pod").is_some(),
        "the orphaned RS's pod keeps its live owner"
    );

    // A dependent with two owners loses only the reference to the one
    // that went: the other still holds it.
    for owner in ["keeper", "leaver"] {
        h.ok(&["create", "configmap", owner, "-n", NS]);
    }
    let (keeper_uid, leaver_uid) = (h.uid("configmap", "keeper"), h.uid("configmap", "leaver"));
    h.create(
        "two-owners.yaml",
        &format!(
            "apiVersion: v1
kind: ConfigMap
metadata:
  name: two-owners
  namespace: {NS}
  ownerReferences:
  - {{apiVersion: v1, kind: ConfigMap, name: leaver, uid: {leaver_uid}}}
  - {{apiVersion: v1, kind: ConfigMap, name: keeper, uid: {keeper_uid}}}
"
        ),
    );
    h.ok(&["delete", "configmap", "leaver", "-n", NS]);
    h.wait_for(
        &manager,
        "two-owners to keep only its reference to keeper",
        |h| {
            let dependent = h
                .get("configmap", "two-owners")
                .ok_or("two-owners was deleted although keeper holds it")?;
            let owners: Vec<&str> = dependent["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["name"].as_str())
                .collect();
            if owners == ["keeper"] {
                Ok(())
            } else {
                Err(format!("two-owners is owned by {owners:?}"))
            }
        },
    );

    // With the collector running, kubectl's own wait for a foreground
    // delete returns once the whole tree is gone.
    h.chain("late");
    let started = Instant::now();
    h.ok(&[
        "delete",
        "deployment",
        "late",
        "-n",
        NS,
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    for (kind, name) in [
        ("deployment", "late"),
        ("replicaset", "late-rs"),
        ("pod", "late-pod"),
    ] {
        if let Err(seen) = h.gone(kind, name) {
            panic!(
                "kubectl returned after {:?} but {seen}\n{}",
                started.elapsed(),
                manager.log_tail()
            );
        }
    }
}
