//! Cluster scenarios in QEMU: nodes form a Kubernetes cluster from machine
//! configs alone (node-1 initialises, the others join with the token and
//! the CA pin the lab serves them), a stock kubectl lists them through the
//! VIP, and joins with bad material are refused with messages that say
//! what is wrong and what to do.
//!
//! One lab serves every check: forming it under TCG costs minutes.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_cluster::client::{Credentials, KubeClient, ServerTrust};
use cairn_pki::BootstrapToken;
use cairn_qemu_tests::lab::cluster::{CA_PATH, VIP};
use cairn_qemu_tests::lab::ready::Auth;
use cairn_qemu_tests::lab::{Lab, LabSpec};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const FORM: Duration = Duration::from_secs(1200);

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl: {e}"));
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn consoles(lab: &Lab) -> String {
    lab.nodes()
        .iter()
        .map(|n| format!("--- {} ---\n{}", n.name, n.console_tail(30)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_control_plane_and_two_workers_form_a_cluster_behind_the_vip() {
    let mut spec = LabSpec::with_cluster("ct-form", common::image(), 1, 2, true);
    spec.memory_mib = 2048;
    let mut lab = Lab::up(spec).unwrap_or_else(|e| panic!("lab up: {e}"));
    let formed = lab
        .form_cluster(FORM)
        .unwrap_or_else(|e| panic!("forming the cluster: {e}\n{}", consoles(&lab)));
    for (node, took) in &formed.members {
        eprintln!(
            "{node} became a member {:.1} s after node-1 booted",
            took.as_secs_f64()
        );
    }

    // A stock kubectl through the VIP's forward lists every node, Ready
    // once containerd runs (it does before the node registers).
    let kubeconfig = formed.kubeconfig.clone();
    let deadline = Instant::now() + Duration::from_secs(300);
    let nodes = loop {
        let json = kubectl(&kubeconfig, &["get", "nodes", "-o", "json"]);
        let value: serde_json::Value = serde_json::from_str(&json).expect("kubectl JSON");
        let ready: Vec<String> = value["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|node| {
                node["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|node| node["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        if ready.len() == 3 {
            break value;
        }
        assert!(
            Instant::now() < deadline,
            "expected node-1..3 Ready, saw Ready {ready:?} in {json}\n{}",
            consoles(&lab)
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let table = kubectl(&kubeconfig, &["get", "nodes"]);
    eprintln!("{table}");
    for name in ["node-1", "node-2", "node-3"] {
        assert!(table.contains(name), "{name} missing from\n{table}");
    }
    let node1 = nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["metadata"]["name"] == "node-1")
        .expect("node-1");
    assert!(
        node1["metadata"]["labels"]
            .get("node-role.kubernetes.io/control-plane")
            .is_some(),
        "node-1 lacks the control-plane role label: {node1}"
    );
    assert!(
        table.contains("control-plane"),
        "ROLES column without control-plane:\n{table}"
    );

    // node-1 holds the VIP (it is the only control plane) and says so.
    let status = lab.status("node-1").expect("node-1 status");
    let cluster = status.cluster.expect("cluster status");
    assert!(cluster.member, "{cluster:?}");
    assert!(
        cluster.vip_holder,
        "node-1 does not report holding the VIP: {cluster:?}"
    );
    assert_eq!(
        cluster.endpoint.as_deref(),
        Some(format!("https://{VIP}:6443").as_str())
    );

    // Joins with bad material, through the same endpoint a node uses.
    let endpoint = lab
        .state()
        .cluster
        .as_ref()
        .and_then(|c| c.api_forward)
        .expect("VIP forward")
        .to_string();
    let client = lab.client("node-1", Auth::Admin).expect("node API client");
    let ca_pem = String::from_utf8(client.read(CA_PATH).expect("CA")).expect("CA text");
    let pin = cairn_pki::ca_cert_hash(&ca_pem).expect("pin");
    let token: BootstrapToken = lab
        .state()
        .cluster
        .as_ref()
        .expect("cluster")
        .token
        .parse()
        .expect("lab token");

    let wrong_pin = format!("sha256:{}", "0".repeat(64));
    let error = cairn_cluster::discovery::discover(&endpoint, &token, &wrong_pin)
        .expect_err("a wrong CA pin must be refused")
        .to_string();
    assert!(
        error.contains(&wrong_pin) && error.contains(&pin),
        "the pin error should show the expected and the seen pin: {error}"
    );

    let unknown: BootstrapToken = "zzzzzz.0123456789abcdef".parse().expect("token");
    let error = cairn_cluster::discovery::discover(&endpoint, &unknown, &pin)
        .expect_err("an unknown token must be refused")
        .to_string();
    assert!(
        error.contains("zzzzzz") && error.contains("bootstrap token create"),
        "the unknown-token error should name the token and the fix: {error}"
    );

    // An expired token: its Secret exists but the signer no longer signs
    // for it, and the apiserver refuses it.
    let admin = KubeClient::from_kubeconfig(&kubeconfig).expect("admin client");
    let expired: BootstrapToken = "xpired.0123456789abcdef".parse().expect("token");
    let data = [
        ("token-id", expired.id().to_owned()),
        ("token-secret", expired.secret().to_owned()),
        ("expiration", "2020-01-01T00:00:00Z".to_owned()),
        ("usage-bootstrap-authentication", "true".to_owned()),
        ("usage-bootstrap-signing", "true".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
    .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("bootstrap-token-{}", expired.id())),
            namespace: Some("kube-system".into()),
            ..ObjectMeta::default()
        },
        type_: Some("bootstrap.kubernetes.io/token".into()),
        data: Some(data),
        ..Secret::default()
    };
    // The token cleaner may delete it at once; either way it must not work.
    let _ = admin.create(Some("kube-system"), &secret);
    let error = cairn_cluster::discovery::discover(&endpoint, &expired, &pin)
        .expect_err("an expired token must be refused")
        .to_string();
    assert!(
        error.contains("xpired") && error.contains("bootstrap token create"),
        "the expired-token error should name the token and the fix: {error}"
    );

    // A second node named like an existing one.
    let info = cairn_cluster::discovery::discover(&endpoint, &token, &pin)
        .unwrap_or_else(|e| panic!("discovery with the lab's token: {e}"));
    let error =
        cairn_cluster::tls_bootstrap::bootstrap(&info, &token, "node-2", Duration::from_secs(60))
            .expect_err("a duplicate node name must be refused")
            .to_string();
    assert!(
        error.contains("node-2") && error.contains("already"),
        "the duplicate-name error should name the node: {error}"
    );

    // The anonymous view of cluster-info is all a joiner gets before it
    // trusts the CA: nothing else is readable without credentials.
    let anonymous = KubeClient::new(
        &format!("https://{endpoint}"),
        ServerTrust::CaPem(ca_pem.into_bytes()),
        Credentials::Anonymous,
    )
    .expect("anonymous client");
    let (status, _) = anonymous
        .request("GET", "/api/v1/namespaces/kube-system/secrets", None)
        .expect("request");
    assert_eq!(status, 403, "anonymous callers must not list secrets");

    lab.down().expect("lab down");
}
