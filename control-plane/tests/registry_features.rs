//! Registry features end to end (a real etcd and the `control-plane
//! apiserver` binary, driven by kubectl): RBAC writes taking effect
//! promptly through the in-memory role and binding cache, the
//! `pods/binding` subresource the scheduler uses, and
//! `fieldValidation`: Warn drops unknown fields with warnings, Ignore
//! drops them silently, Strict refuses.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_pki::KubeconfigFile;
use common::{Apiserver, etcd_and_apiserver, json, kubectl_binary};

#[test]
fn registry_features() {
    let Some(kubectl) = ["1.33", "1.27"].into_iter().find_map(kubectl_binary) else {
        eprintln!("no kubectl.1.33 / kubectl.1.27 next to kubectl on PATH; skipping");
        return;
    };
    let (_runtime, _etcd, mut server) = etcd_and_apiserver();
    server.wait_ready(&kubectl);
    rbac_writes_take_effect(&server, &kubectl);
    pod_binding(&server, &kubectl);
    field_validation(&server, &kubectl);
}

fn rbac_writes_take_effect(server: &Apiserver, kubectl: &Path) {
    server.ok(kubectl, &["create", "namespace", "rbac-cache"]);
    let as_node = ["get", "configmaps", "-n", "rbac-cache"];
    let err = server.fails(kubectl, KubeconfigFile::Kubelet, &as_node);
    assert!(err.contains("forbidden"), "{err}");
    server.ok(
        kubectl,
        &[
            "create",
            "role",
            "cm-reader",
            "-n",
            "rbac-cache",
            "--verb=list",
            "--resource=configmaps",
        ],
    );
    server.ok(
        kubectl,
        &[
            "create",
            "rolebinding",
            "node-reads-cm",
            "-n",
            "rbac-cache",
            "--role=cm-reader",
            "--user=system:node:cp-1",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = server.kubectl_as(kubectl, KubeconfigFile::Kubelet, &as_node);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the RoleBinding did not take effect: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.ok(
        kubectl,
        &["delete", "rolebinding", "node-reads-cm", "-n", "rbac-cache"],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while server
        .kubectl_as(kubectl, KubeconfigFile::Kubelet, &as_node)
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the deleted RoleBinding still grants"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pod_binding(server: &Apiserver, kubectl: &Path) {
    let pod = server.write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: unbound\n  namespace: default\nspec:\n  containers:\n  - name: c\n    image: nginx\n",
    );
    server.ok(kubectl, &["create", "-f", &pod.to_string_lossy()]);
    let binding = |node: &str| {
        server.write(
            &format!("binding-{node}.json"),
            &format!(
                r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"unbound","namespace":"default"}},"target":{{"apiVersion":"v1","kind":"Node","name":"{node}"}}}}"#
            ),
        )
    };
    let path = "/api/v1/namespaces/default/pods/unbound/binding";
    let out = server.ok(
        kubectl,
        &[
            "create",
            "--raw",
            path,
            "-f",
            &binding("node-a").to_string_lossy(),
        ],
    );
    assert_eq!(json(&out)["status"], "Success", "{out}");
    let pod = json(&server.ok(kubectl, &["get", "pod", "unbound", "-o", "json"]));
    assert_eq!(pod["spec"]["nodeName"], "node-a");
    let scheduled = pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned();
    assert_eq!(scheduled.map(|c| c["status"].clone()), Some("True".into()));
    // Binding again to the same node is accepted; to another one is 409.
    server.ok(
        kubectl,
        &[
            "create",
            "--raw",
            path,
            "-f",
            &binding("node-a").to_string_lossy(),
        ],
    );
    let err = server.fails(
        kubectl,
        KubeconfigFile::Admin,
        &[
            "create",
            "--raw",
            path,
            "-f",
            &binding("node-b").to_string_lossy(),
        ],
    );
    assert!(err.contains("already assigned to node"), "{err}");
    let pod = json(&server.ok(kubectl, &["get", "pod", "unbound", "-o", "json"]));
    assert_eq!(pod["spec"]["nodeName"], "node-a");
}

fn field_validation(server: &Apiserver, kubectl: &Path) {
    let manifest = |name: &str| {
        server.write(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  foo: 1\n  containers:\n  - name: c\n    image: nginx\n    bar: 2\n"
            ),
        )
    };
    let create = |name: &str, validate: &str| {
        server.kubectl_as(
            kubectl,
            KubeconfigFile::Admin,
            &[
                "create",
                &format!("--validate={validate}"),
                "-f",
                &manifest(name).to_string_lossy(),
            ],
        )
    };
    let out = create("warned", "warn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: unknown field \"spec.foo\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("Warning: unknown field \"spec.containers[0].bar\""),
        "{stderr}"
    );
    let pod = json(&server.ok(kubectl, &["get", "pod", "warned", "-o", "json"]));
    assert!(pod["spec"].get("foo").is_none(), "{pod}");
    assert!(pod["spec"]["containers"][0].get("bar").is_none(), "{pod}");

    let out = create("ignored", "ignore");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("Warning"), "{stderr}");
    let pod = json(&server.ok(kubectl, &["get", "pod", "ignored", "-o", "json"]));
    assert!(pod["spec"].get("foo").is_none(), "{pod}");

    let out = create("refused", "strict");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("unknown field \"spec.foo\""), "{stderr}");
}
