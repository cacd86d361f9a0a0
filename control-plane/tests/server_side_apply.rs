//! Server-side apply end to end: a real etcd and the `control-plane
//! apiserver` binary driven by the stock kubectl 1.33 and 1.27
//! (`kubectl.1.33`, `kubectl.1.27` next to `kubectl` on PATH; a missing one
//! skips its part).
//!
//! Per version, in its own namespace: `apply --server-side` of a
//! Deployment, a Service and a ConfigMap creates them; the same apply again
//! writes nothing; an edited manifest removes a dropped label and changes
//! the image; after `kubectl scale` an apply of other replicas is a
//! conflict naming `.spec.replicas` and the scaler, `--force-conflicts`
//! takes it over; `--show-managed-fields` shows the managers; a server-side
//! apply over a client-side-applied object works, also straight after a
//! client-side apply with a changed manifest (the upgrade path: no
//! conflict with `kubectl-client-side-apply`, whose entry kubectl then
//! migrates); `--dry-run=server` changes nothing; with 1.33, `apply
//! --server-side --subresource=status` writes only the status.

mod common;

use std::path::Path;

use common::{Apiserver, etcd_and_apiserver, json, kubectl_versions};

fn manifest(ns: &str, labels: &str, image: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
  labels:
{labels}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: {image}
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {ns}
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: {ns}
data:
  mode: production
"#
    )
}

const BOTH_LABELS: &str = "    app: web\n    tier: front";
const ONE_LABEL: &str = "    app: web";

fn resource_versions(server: &Apiserver, kubectl: &Path, ns: &str) -> Vec<String> {
    ["deployment/web", "service/web", "configmap/web-config"]
        .iter()
        .map(|r| {
            server.ok(
                kubectl,
                &[
                    "get",
                    r,
                    "-n",
                    ns,
                    "-o",
                    "jsonpath={.metadata.resourceVersion}",
                ],
            )
        })
        .collect()
}

fn deployment(server: &Apiserver, kubectl: &Path, ns: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["get", "deployment", "web", "-n", ns, "-o", "json"];
    args.extend_from_slice(extra);
    json(&server.ok(kubectl, &args))
}

fn managers(object: &serde_json::Value) -> Vec<(String, String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (text("manager"), text("operation"), text("subresource"))
        })
        .collect()
}

fn scenario(server: &Apiserver, kubectl: &Path, ns: &str) {
    server.ok(kubectl, &["create", "namespace", ns]);
    let first = server.write(
        &format!("{ns}-1.yaml"),
        &manifest(ns, BOTH_LABELS, "nginx:1.25", 3),
    );
    let first = first.to_str().expect("path");

    // Created.
    let out = server.ok(kubectl, &["apply", "--server-side", "-f", first]);
    assert_eq!(out.matches("serverside-applied").count(), 3, "{out}");
    let created = deployment(server, kubectl, ns, &["--show-managed-fields"]);
    assert_eq!(created["spec"]["replicas"], 3);
    assert_eq!(
        managers(&created),
        vec![("kubectl".to_owned(), "Apply".to_owned(), String::new())],
        "{created}"
    );
    // The defaulted strategy belongs to nobody; the applied image does.
    let fields = &created["metadata"]["managedFields"][0]["fieldsV1"];
    assert!(fields["f:spec"].get("f:strategy").is_none(), "{fields}");
    assert!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:image"]
            .is_object(),
        "{fields}"
    );
    // Plain output hides them (kubectl's doing), the server serves them.
    let plain = server.ok(
        kubectl,
        &["get", "deployment", "web", "-n", ns, "-o", "yaml"],
    );
    assert!(!plain.contains("managedFields"), "{plain}");

    // Unchanged: no new resourceVersion.
    let before = resource_versions(server, kubectl, ns);
    server.ok(kubectl, &["apply", "--server-side", "-f", first]);
    assert_eq!(resource_versions(server, kubectl, ns), before);

    // A dry run changes nothing.
    let edited = server.write(
        &format!("{ns}-2.yaml"),
        &manifest(ns, ONE_LABEL, "nginx:1.27", 3),
    );
    let edited = edited.to_str().expect("path");
    server.ok(
        kubectl,
        &["apply", "--server-side", "--dry-run=server", "-f", edited],
    );
    assert_eq!(resource_versions(server, kubectl, ns), before);

    // Dropped label removed, image changed.
    server.ok(kubectl, &["apply", "--server-side", "-f", edited]);
    let applied = deployment(server, kubectl, ns, &[]);
    assert_eq!(
        applied["metadata"]["labels"],
        serde_json::json!({"app": "web"})
    );
    assert_eq!(
        applied["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );

    // A scale takes .spec.replicas; applying other replicas conflicts.
    server.ok(
        kubectl,
        &["scale", "deployment", "web", "-n", ns, "--replicas=5"],
    );
    let scaled = deployment(server, kubectl, ns, &["--show-managed-fields"]);
    assert_eq!(scaled["spec"]["replicas"], 5);
    let scaler = managers(&scaled)
        .into_iter()
        .find(|(_, operation, subresource)| operation == "Update" && subresource == "scale")
        .unwrap_or_else(|| panic!("no scale manager: {scaled}"));
    eprintln!("{ns}: kubectl scale is recorded as {scaler:?}");
    assert!(
        managers(&scaled).contains(&("kubectl".to_owned(), "Apply".to_owned(), String::new())),
        "{scaled}"
    );
    let yaml = server.ok(
        kubectl,
        &[
            "get",
            "deployment",
            "web",
            "-n",
            ns,
            "-o",
            "yaml",
            "--show-managed-fields",
        ],
    );
    assert!(yaml.contains("operation: Apply"), "{yaml}");
    assert!(yaml.contains("subresource: scale"), "{yaml}");
    let err = server.fails(
        kubectl,
        cairn_pki::KubeconfigFile::Admin,
        &["apply", "--server-side", "-f", edited],
    );
    assert!(err.contains(".spec.replicas"), "{err}");
    assert!(
        err.contains(&format!("conflict with \"{}\"", scaler.0)),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    eprintln!("{ns}: {}", err.lines().next().unwrap_or_default());
    assert_eq!(deployment(server, kubectl, ns, &[])["spec"]["replicas"], 5);

    // Forced: applied, the scaler loses the field.
    server.ok(
        kubectl,
        &["apply", "--server-side", "--force-conflicts", "-f", edited],
    );
    let forced = deployment(server, kubectl, ns, &["--show-managed-fields"]);
    assert_eq!(forced["spec"]["replicas"], 3);
    assert!(
        !managers(&forced).iter().any(|(_, _, s)| s == "scale"),
        "{forced}"
    );

    // Another manager's Update shows next to the applier.
    server.ok(
        kubectl,
        &["label", "deployment", "web", "-n", ns, "owner=ops"],
    );
    let labelled = deployment(server, kubectl, ns, &["--show-managed-fields"]);
    let names: Vec<String> = managers(&labelled).into_iter().map(|m| m.0).collect();
    assert!(names.contains(&"kubectl".to_owned()), "{labelled}");
    assert!(names.contains(&"kubectl-label".to_owned()), "{labelled}");

    // Server-side apply over a client-side-applied object.
    let csa = server.write(
        &format!("{ns}-csa.yaml"),
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\n  namespace: {ns}\ndata:\n  a: \"1\"\n"
        ),
    );
    server.ok(kubectl, &["apply", "-f", csa.to_str().expect("path")]);
    let out = server.ok(
        kubectl,
        &["apply", "--server-side", "-f", csa.to_str().expect("path")],
    );
    assert!(out.contains("serverside-applied"), "{out}");
    let csa_changed = server.write(
        &format!("{ns}-csa2.yaml"),
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\n  namespace: {ns}\ndata:\n  a: \"2\"\n"
        ),
    );
    server.ok(
        kubectl,
        &[
            "apply",
            "--server-side",
            "-f",
            csa_changed.to_str().expect("path"),
        ],
    );
    let legacy = json(&server.ok(
        kubectl,
        &["get", "configmap", "legacy", "-n", ns, "-o", "json"],
    ));
    assert_eq!(legacy["data"], serde_json::json!({"a": "2"}));
    let last_applied =
        legacy["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap_or_default();
    assert!(last_applied.contains(r#""a":"2""#), "{legacy}");
    // Back to client-side apply: it diffs against what was applied last.
    server.ok(kubectl, &["apply", "-f", csa.to_str().expect("path")]);
    let legacy = json(&server.ok(
        kubectl,
        &["get", "configmap", "legacy", "-n", ns, "-o", "json"],
    ));
    assert_eq!(legacy["data"], serde_json::json!({"a": "1"}));

    upgrade_from_client_side_apply(server, kubectl, ns);
}

/// The upgrade path: a client-side apply, then straight away a
/// server-side apply of a changed manifest. The server does not hold the
/// fields client-side apply wrote against kubectl (they still have the
/// annotation's values); kubectl then migrates the client-side entry into
/// its Apply entry.
fn upgrade_from_client_side_apply(server: &Apiserver, kubectl: &Path, ns: &str) {
    let version = |value: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: upgraded\n  namespace: {ns}\n  labels:\n    stage: \"{value}\"\ndata:\n  a: \"{value}\"\n"
        )
    };
    let first = server.write(&format!("{ns}-upgrade-1.yaml"), &version("1"));
    let second = server.write(&format!("{ns}-upgrade-2.yaml"), &version("2"));
    server.ok(kubectl, &["apply", "-f", first.to_str().expect("path")]);
    let read = || {
        json(&server.ok(
            kubectl,
            &[
                "get",
                "configmap",
                "upgraded",
                "-n",
                ns,
                "-o",
                "json",
                "--show-managed-fields",
            ],
        ))
    };
    let client_side = read();
    assert_eq!(
        managers(&client_side),
        [(
            "kubectl-client-side-apply".to_owned(),
            "Update".to_owned(),
            String::new()
        )],
        "a client-side apply is an Update by kubectl-client-side-apply: {client_side}"
    );
    let out = server.ok(
        kubectl,
        &[
            "apply",
            "--server-side",
            "-f",
            second.to_str().expect("path"),
        ],
    );
    assert!(out.contains("serverside-applied"), "{out}");
    let upgraded = read();
    assert_eq!(
        upgraded["data"],
        serde_json::json!({"a": "2"}),
        "{upgraded}"
    );
    assert_eq!(upgraded["metadata"]["labels"]["stage"], "2", "{upgraded}");
    // kubectl keeps the annotation under its own Apply manager
    // (`kubectl-last-applied`), as it does against kube.
    let mut after = managers(&upgraded);
    after.sort();
    assert_eq!(
        after,
        [
            ("kubectl".to_owned(), "Apply".to_owned(), String::new()),
            (
                "kubectl-last-applied".to_owned(),
                "Apply".to_owned(),
                String::new()
            )
        ],
        "after the upgrade kubectl-client-side-apply's entry is migrated: {upgraded}"
    );
}

/// `kubectl apply --server-side --subresource=status` (kubectl 1.28+):
/// only the status is written, owned by an Apply entry of subresource
/// `status`; the spec in the same manifest is not.
fn apply_status(server: &Apiserver, kubectl: &Path, ns: &str) {
    let manifest = server.write(
        &format!("{ns}-status.yaml"),
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  replicas: 9\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\nstatus:\n  observedGeneration: 42\n"
        ),
    );
    let before = deployment(server, kubectl, ns, &[]);
    server.ok(
        kubectl,
        &[
            "apply",
            "--server-side",
            "--subresource=status",
            "--field-manager=status-reporter",
            "-f",
            manifest.to_str().expect("path"),
        ],
    );
    let after = deployment(server, kubectl, ns, &["--show-managed-fields"]);
    assert_eq!(after["status"]["observedGeneration"], 42, "{after}");
    assert_eq!(
        after["spec"]["replicas"], before["spec"]["replicas"],
        "the spec is not written through status: {after}"
    );
    assert!(
        managers(&after).contains(&(
            "status-reporter".to_owned(),
            "Apply".to_owned(),
            "status".to_owned()
        )),
        "expected an Apply entry of subresource status: {after}"
    );
}

#[test]
fn kubectl_server_side_apply() {
    let versions = kubectl_versions(&["1.33", "1.27"]);
    if versions.is_empty() {
        eprintln!("no kubectl.1.33 / kubectl.1.27 next to kubectl on PATH; skipping");
        return;
    }
    let (_runtime, _etcd, mut server) = etcd_and_apiserver();
    server.wait_ready(&versions[0].1);
    for (version, kubectl) in &versions {
        let ns = format!("ssa-{}", version.replace('.', ""));
        scenario(&server, kubectl, &ns);
        if *version != "1.27" {
            apply_status(&server, kubectl, &ns);
        }
    }
}
