//! Joining a node, end to end: a real etcd and the `control-plane
//! apiserver` binary, driven by `cairn_cluster`'s synchronous client the
//! way node-agent and `bootstrap join` use it.
//!
//! The test plays the controller-manager's part itself: it publishes
//! `kube-public/cluster-info` with the CA and server, signs it for a
//! bootstrap token (`jws-kubeconfig-<id>`), creates the token's Secret, and
//! approves (or denies) CSRs and signs them with the CA key through
//! `openssl x509 -req`, an independent implementation. Covered:
//!
//! - the client's verbs (get, get_opt, create, the three patch kinds,
//!   replace with a stale and a current version, delete, list, a chunked
//!   watch stream) and its error helpers;
//! - discovery succeeds; a wrong CA pin, an unknown token id and a wrong
//!   token secret each fail with their own message;
//! - TLS bootstrap yields a certificate that authenticates as
//!   `system:node:<name>` (SelfSubjectReview), registers the Node and keeps
//!   its Lease and Ready condition, read back as the admin;
//! - a second join under the same name is refused; a denied CSR reports
//!   the reason; an unanswered CSR times out naming the CSR;
//! - nodes owe their Node and Lease writes to the policy's
//!   `cairn:node-self-management` bindings: without them, forbidden.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_cluster::client::{KubeClient, ListParams};
use cairn_cluster::discovery::{self, DiscoveryError};
use cairn_cluster::node::{self, Heartbeat, NodeRegistration, NodeResources};
use cairn_cluster::tls_bootstrap::{self, TlsBootstrapError};
use cairn_pki::{BootstrapToken, KubeconfigFile, NodeName};
use common::etcd_fixture::EtcdFixture;
use common::{Apiserver, etcd_and_apiserver};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, NodeSystemInfo, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(90);

struct Cluster {
    server: Apiserver,
    admin: KubeClient,
    endpoint: String,
    ca_pem: String,
    pin: String,
    token: BootstrapToken,
}

/// Polls `/readyz` with the admin client until it answers 200.
fn wait_ready(server: &mut Apiserver, admin: &KubeClient) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = server.exited() {
            panic!("apiserver exited with {status}\n{}", server.log_tail());
        }
        let last = admin.request("GET", "/readyz", None);
        if matches!(last, Ok((200, _))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "apiserver not ready after {DEADLINE:?}: last answer {last:?}\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// cluster-info's kubeconfig as kubeadm writes it: one unnamed cluster,
/// no contexts or users.
fn cluster_info_kubeconfig(server: &str, ca_pem: &str) -> String {
    // ByteString serializes as standard base64, as kubeconfig data is.
    let ca = serde_json::to_value(ByteString(ca_pem.as_bytes().to_vec())).expect("base64");
    let ca = ca.as_str().expect("string");
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: \"\"\n\
         contexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n"
    )
}

/// What `bootstrap token create` and the bootstrap signer would leave.
fn publish_join_material(admin: &KubeClient, server: &str, ca_pem: &str, token: &BootstrapToken) {
    let kubeconfig = cluster_info_kubeconfig(server, ca_pem);
    let signature = cairn_cluster::jws::sign_detached(&kubeconfig, token.id(), token.secret());
    let cluster_info = ConfigMap {
        metadata: ObjectMeta {
            name: Some("cluster-info".into()),
            namespace: Some("kube-public".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            ("kubeconfig".to_owned(), kubeconfig),
            (format!("jws-kubeconfig-{}", token.id()), signature),
        ])),
        ..ConfigMap::default()
    };
    admin
        .create(Some("kube-public"), &cluster_info)
        .expect("create cluster-info");
    let data = [
        ("token-id", token.id()),
        ("token-secret", token.secret()),
        ("usage-bootstrap-authentication", "true"),
        ("usage-bootstrap-signing", "true"),
        (
            "auth-extra-groups",
            "system:bootstrappers:kubeadm:default-node-token",
        ),
    ];
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("bootstrap-token-{}", token.id())),
            namespace: Some("kube-system".into()),
            ..ObjectMeta::default()
        },
        type_: Some("bootstrap.kubernetes.io/token".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    admin
        .create(Some("kube-system"), &secret)
        .expect("create the bootstrap token Secret");
}

fn start() -> (tokio::runtime::Runtime, EtcdFixture, Cluster) {
    // The library's own log (API calls, CSR waits) shows with a failure.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("cairn_cluster=debug")
        .with_test_writer()
        .try_init();
    let (runtime, etcd, mut server) = etcd_and_apiserver();
    let admin = KubeClient::from_kubeconfig(&server.local_kubeconfig(KubeconfigFile::Admin))
        .expect("admin client from admin.conf");
    wait_ready(&mut server, &admin);
    let ca_pem = std::fs::read_to_string(server.pki.cert("ca")).expect("ca.crt");
    let pin = cairn_pki::ca_cert_hash(&ca_pem).expect("pin");
    let endpoint = format!("127.0.0.1:{}", server.port);
    let token = BootstrapToken::generate();
    publish_join_material(&admin, &format!("https://{endpoint}"), &ca_pem, &token);
    let cluster = Cluster {
        server,
        admin,
        endpoint,
        ca_pem,
        pin,
        token,
    };
    (runtime, etcd, cluster)
}

#[test]
fn join() {
    let (_runtime, _etcd, cluster) = start();
    client_verbs(&cluster.admin);
    discovery_checks(&cluster);
    let node_name: NodeName = "worker-1".parse().expect("name");
    let node_client = bootstrap_register_and_heartbeat(&cluster, &node_name);
    duplicate_name_is_refused(&cluster, &node_name);
    denied_csr_reports_the_reason(&cluster);
    unanswered_csr_times_out(&cluster);
    node_writes_rest_on_the_policy_grant(&cluster, &node_client, &node_name);
}

/// The typed verbs, error helpers and a watch stream (chunked) against
/// the real server.
fn client_verbs(admin: &KubeClient) {
    use cairn_cluster::client::{Patch, WatchEvent};
    use k8s_openapi::api::core::v1::Namespace;

    let ns = "client-verbs";
    admin
        .create(
            None,
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.into()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .expect("create namespace");
    let config_map = |name: &str, value: &str| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("app".to_owned(), "verbs".to_owned())])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("k".to_owned(), value.to_owned())])),
        ..ConfigMap::default()
    };
    assert!(
        admin
            .get_opt::<ConfigMap>(Some(ns), "a")
            .expect("get_opt")
            .is_none()
    );
    let missing = admin.get::<ConfigMap>(Some(ns), "a").expect_err("missing");
    assert!(missing.is_not_found(), "{missing}");
    assert!(
        missing
            .to_string()
            .contains("/api/v1/namespaces/client-verbs/configmaps/a: 404 NotFound"),
        "{missing}"
    );

    let listed = admin
        .list::<ConfigMap>(Some(ns), &ListParams::labels("app=verbs"))
        .expect("list");
    assert!(listed.items.is_empty());
    assert!(!listed.resource_version.is_empty());
    let watch = admin
        .watch::<ConfigMap>(
            Some(ns),
            &ListParams::labels("app=verbs"),
            &listed.resource_version,
            Duration::from_secs(30),
        )
        .expect("watch");

    let created = admin
        .create(Some(ns), &config_map("a", "1"))
        .expect("create");
    let dup = admin
        .create(Some(ns), &config_map("a", "1"))
        .expect_err("duplicate");
    assert!(dup.is_already_exists() && !dup.is_conflict(), "{dup}");

    let merged: ConfigMap = admin
        .patch(Some(ns), "a", &Patch::Merge(json!({"data": {"m": "2"}})))
        .expect("merge patch");
    let strategic: ConfigMap = admin
        .patch(
            Some(ns),
            "a",
            &Patch::Strategic(json!({"metadata": {"labels": {"s": "3"}}})),
        )
        .expect("strategic patch");
    let patched: ConfigMap = admin
        .patch(
            Some(ns),
            "a",
            &Patch::Json(json!([{"op": "add", "path": "/data/j", "value": "4"}])),
        )
        .expect("json patch");
    assert_eq!(merged.data.expect("data")["m"], "2");
    assert_eq!(strategic.metadata.labels.expect("labels")["s"], "3");
    let data = patched.data.clone().expect("data");
    assert_eq!((data["k"].as_str(), data["j"].as_str()), ("1", "4"));

    // A replace based on the first version is stale.
    let stale = admin
        .replace(Some(ns), "a", &created)
        .expect_err("stale replace");
    assert!(stale.is_conflict(), "{stale}");
    let mut current = patched;
    current
        .data
        .get_or_insert_with(BTreeMap::new)
        .insert("r".into(), "5".into());
    admin
        .replace(Some(ns), "a", &current)
        .expect("replace with the current version");
    admin.delete::<ConfigMap>(Some(ns), "a").expect("delete");
    let gone = admin
        .delete::<ConfigMap>(Some(ns), "a")
        .expect_err("deleted twice");
    assert!(gone.is_not_found(), "{gone}");

    let mut seen = Vec::new();
    for event in watch {
        let event = event.expect("watch event");
        let label = match &event {
            WatchEvent::Added(cm) => format!("ADDED {:?}", cm.metadata.name),
            WatchEvent::Modified(cm) => format!("MODIFIED {:?}", cm.metadata.name),
            WatchEvent::Deleted(cm) => format!("DELETED {:?}", cm.metadata.name),
            WatchEvent::Bookmark { .. } => continue,
            other => panic!("unexpected watch event {other:?}"),
        };
        seen.push(label);
        if seen.last().is_some_and(|l| l.starts_with("DELETED")) {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            "ADDED Some(\"a\")",
            "MODIFIED Some(\"a\")",
            "MODIFIED Some(\"a\")",
            "MODIFIED Some(\"a\")",
            "MODIFIED Some(\"a\")",
            "DELETED Some(\"a\")",
        ]
    );

    // Without credentials the server's 403 Status comes back as an API
    // error with its helper.
    let forbidden = KubeClient::new(
        admin.server_url(),
        admin.trust().clone(),
        cairn_cluster::client::Credentials::Anonymous,
    )
    .expect("anonymous client")
    .list::<ConfigMap>(Some(ns), &ListParams::default())
    .expect_err("anonymous list");
    assert!(forbidden.is_forbidden(), "{forbidden}");
}

fn discovery_checks(c: &Cluster) {
    let info = discovery::discover(&c.endpoint, &c.token, &c.pin)
        .unwrap_or_else(|e| panic!("discovery failed: {e}\n{}", c.server.log_tail()));
    assert_eq!(info.server, format!("https://{}", c.endpoint));
    assert_eq!(info.ca_pem, c.ca_pem);

    // A pin of another CA: refused after reading cluster-info anonymously,
    // before the token is used for anything.
    let other_pin = format!("sha256:{}", "ab".repeat(32));
    let err = discovery::discover(&c.endpoint, &c.token, &other_pin).expect_err("wrong pin");
    assert!(
        matches!(&err, DiscoveryError::PinMismatch { expected, seen }
            if *expected == other_pin && *seen == vec![c.pin.clone()]),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&other_pin) && text.contains(&c.pin),
        "the message shows both pins: {text}"
    );

    let unknown: BootstrapToken = format!("zzzzzz.{}", c.token.secret())
        .parse()
        .expect("token");
    let err = discovery::discover(&c.endpoint, &unknown, &c.pin).expect_err("unknown token");
    assert!(
        matches!(err, DiscoveryError::UnknownToken { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "token zzzzzz is not known to the cluster or has expired; create a new one on a \
         control-plane node with `bootstrap token create --print-join-command`"
    );

    let wrong_secret: BootstrapToken = format!("{}.0000000000000000", c.token.id())
        .parse()
        .expect("token");
    let err = discovery::discover(&c.endpoint, &wrong_secret, &c.pin).expect_err("wrong secret");
    assert!(
        matches!(err, DiscoveryError::SignatureMismatch { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("does not match the token's secret"),
        "{err}"
    );
}

/// The CSRs that exist now.
fn csr_names(admin: &KubeClient) -> BTreeSet<String> {
    admin
        .list::<CertificateSigningRequest>(None, &ListParams::default())
        .expect("list CSRs")
        .items
        .into_iter()
        .filter_map(|csr| csr.metadata.name)
        .collect()
}

/// Waits for a CSR not in `known` and returns it.
fn new_csr(admin: &KubeClient, known: &BTreeSet<String>) -> CertificateSigningRequest {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let list = admin
            .list::<CertificateSigningRequest>(None, &ListParams::default())
            .expect("list CSRs");
        if let Some(csr) = list.items.into_iter().find(|csr| {
            csr.metadata
                .name
                .as_ref()
                .is_some_and(|n| !known.contains(n))
        }) {
            return csr;
        }
        assert!(
            Instant::now() < deadline,
            "no new CertificateSigningRequest within {DEADLINE:?} (known: {known:?})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn set_condition(admin: &KubeClient, name: &str, kind: &str, reason: &str, message: &str) {
    let mut csr: CertificateSigningRequest = admin.get(None, name).expect("get CSR");
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: kind.to_owned(),
            status: "True".to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            ..Default::default()
        });
    admin
        .replace_subresource(None, name, Some("approval"), &csr)
        .unwrap_or_else(|e| panic!("{kind} CSR {name}: {e}"));
}

/// Signs the CSR's request with the cluster CA through openssl, as the
/// kubelet-client signer would (client auth, one day).
fn sign_with_openssl(c: &Cluster, csr: &CertificateSigningRequest, dir: &Path) -> String {
    let request = dir.join("request.pem");
    std::fs::write(&request, &csr.spec.request.0).expect("write request");
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n",
    )
    .expect("write ext");
    let out = Command::new("openssl")
        .args(["x509", "-req", "-days", "1", "-set_serial", "4242", "-in"])
        .arg(&request)
        .arg("-CA")
        .arg(c.server.pki.cert("ca"))
        .arg("-CAkey")
        .arg(c.server.pki.key("ca"))
        .arg("-extfile")
        .arg(&ext)
        .output()
        .expect("run openssl x509 -req");
    assert!(
        out.status.success(),
        "openssl x509 -req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("PEM")
}

/// The controller-manager's part for one CSR: approve, sign, write the
/// certificate into the status. Returns the CSR as first seen.
fn approve_and_sign(c: &Cluster, known: &BTreeSet<String>) -> CertificateSigningRequest {
    let csr = new_csr(&c.admin, known);
    let name = csr.metadata.name.clone().expect("name");
    set_condition(
        &c.admin,
        &name,
        "Approved",
        "TestApproved",
        "approved by the join test",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = sign_with_openssl(c, &csr, dir.path());
    let mut approved: CertificateSigningRequest = c.admin.get(None, &name).expect("get CSR");
    approved
        .status
        .get_or_insert_with(Default::default)
        .certificate = Some(ByteString(cert.into_bytes()));
    c.admin
        .replace_status(None, &name, &approved)
        .unwrap_or_else(|e| panic!("write the certificate of CSR {name}: {e}"));
    csr
}

fn registration(name: &NodeName) -> NodeRegistration {
    NodeRegistration::new(
        name.clone(),
        "10.5.0.11".parse().expect("ip"),
        name.as_str(),
        NodeResources {
            cpu_millis: 2000,
            memory_bytes: 2 * 1024 * 1024 * 1024,
            ephemeral_storage_bytes: 20_000_000_000,
            pods: node::DEFAULT_MAX_PODS,
        },
        NodeSystemInfo {
            architecture: "amd64".into(),
            operating_system: "linux".into(),
            kernel_version: "6.12.0-cairn".into(),
            os_image: "Cairn".into(),
            container_runtime_version: "containerd://1.6.20".into(),
            kubelet_version: "v1.33.0".into(),
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            boot_id: "00000000-0000-0000-0000-000000000001".into(),
            system_uuid: "00000000-0000-0000-0000-000000000002".into(),
            ..NodeSystemInfo::default()
        },
    )
    .control_plane()
}

fn ready_condition(node: &Node) -> (String, String, String) {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
        .unwrap_or_default()
}

fn bootstrap_register_and_heartbeat(c: &Cluster, node_name: &NodeName) -> KubeClient {
    let info = discovery::discover(&c.endpoint, &c.token, &c.pin).expect("discovery");
    let bootstrap_client = info.bootstrap_client(&c.token).expect("bootstrap client");
    let known = csr_names(&c.admin);
    let (credentials, csr) = std::thread::scope(|scope| {
        let approver = scope.spawn(|| approve_and_sign(c, &known));
        let credentials =
            tls_bootstrap::request_node_certificate(&bootstrap_client, node_name, DEADLINE);
        let csr = approver.join().expect("approver thread");
        (credentials, csr)
    });
    let credentials = credentials
        .unwrap_or_else(|e| panic!("TLS bootstrap failed: {e}\n{}", c.server.log_tail()));
    assert_eq!(
        credentials.csr_name,
        csr.metadata.name.clone().expect("name")
    );
    assert_eq!(csr.spec.signer_name, tls_bootstrap::KUBELET_CLIENT_SIGNER);
    assert_eq!(
        csr.spec.usages,
        Some(vec![
            "digital signature".to_owned(),
            "client auth".to_owned()
        ])
    );
    assert_eq!(
        csr.spec.username.as_deref(),
        Some(format!("system:bootstrap:{}", c.token.id()).as_str()),
        "the CSR records the token's user"
    );

    // The certificate authenticates as the node.
    let node_client = credentials
        .client(&info.server, &info.ca_pem)
        .expect("node client");
    let (status, body) = node_client
        .request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some(br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#),
        )
        .expect("self subject review");
    let review: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(status, 201, "{review}");
    assert_eq!(
        review["status"]["userInfo"]["username"],
        json!(format!("system:node:{node_name}")),
        "{review}"
    );
    assert!(
        review["status"]["userInfo"]["groups"]
            .as_array()
            .is_some_and(|g| g.contains(&json!("system:nodes"))),
        "{review}"
    );
    // The kubeconfig written for the node works the same way.
    let kubeconfig = credentials
        .kubeconfig(&info.server, &info.ca_pem)
        .to_yaml()
        .expect("kubeconfig");
    KubeClient::from_kubeconfig_str(&kubeconfig)
        .expect("client from the node kubeconfig")
        .get::<Node>(None, "does-not-exist")
        .map(|_| ())
        .or_else(|e| if e.is_not_found() { Ok(()) } else { Err(e) })
        .expect("the node kubeconfig authenticates and may get nodes");

    // Registration, as the node.
    let registration = registration(node_name);
    node::register(&node_client, &registration)
        .unwrap_or_else(|e| panic!("register: {e}\n{}", c.server.log_tail()));
    let mut heartbeat = Heartbeat::new(node_name.clone());
    let first = heartbeat.tick(&node_client, Ok(())).expect("first tick");
    assert!(first.lease_created && first.status_reported, "{first:?}");
    let second = heartbeat.tick(&node_client, Ok(())).expect("second tick");
    assert!(
        !second.lease_created && !second.status_reported,
        "an unchanged status waits for the report interval: {second:?}"
    );

    // Read back as the admin.
    let stored: Node = c.admin.get(None, node_name.as_str()).expect("get node");
    let labels = stored.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("node-role.kubernetes.io/control-plane")
            .map(String::as_str),
        Some("")
    );
    assert_eq!(
        labels.get("kubernetes.io/arch").map(String::as_str),
        Some("amd64")
    );
    let taints = stored
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    assert_eq!(taints.len(), 1, "{taints:?}");
    assert_eq!(taints[0].key, "node-role.kubernetes.io/control-plane");
    let status = stored.status.clone().expect("status");
    let addresses: Vec<(String, String)> = status
        .addresses
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect();
    assert_eq!(
        addresses,
        vec![
            ("InternalIP".to_owned(), "10.5.0.11".to_owned()),
            ("Hostname".to_owned(), "worker-1".to_owned())
        ]
    );
    assert_eq!(
        status
            .capacity
            .unwrap_or_default()
            .get("pods")
            .map(|q| q.0.as_str()),
        Some("110")
    );
    assert_eq!(
        status.node_info.map(|i| i.kubelet_version),
        Some("v1.33.0".to_owned())
    );
    assert_eq!(
        ready_condition(&stored),
        (
            "True".into(),
            "KubeletReady".into(),
            "kubelet is posting ready status".into()
        )
    );
    let conditions: BTreeSet<String> = stored
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| format!("{}={}", c.type_, c.status))
                .collect()
        })
        .unwrap_or_default();
    for expected in [
        "MemoryPressure=False",
        "DiskPressure=False",
        "PIDPressure=False",
    ] {
        assert!(conditions.contains(expected), "{conditions:?}");
    }

    let lease: Lease = c
        .admin
        .get(Some("kube-node-lease"), node_name.as_str())
        .expect("get lease");
    let spec = lease.spec.clone().expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("worker-1"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let renewed = serde_json::to_value(&spec.renew_time).expect("renewTime");
    assert!(
        renewed
            .as_str()
            .is_some_and(|t| t.len() == "2026-01-01T00:00:00.000000Z".len() && t.ends_with('Z')),
        "renewTime in MicroTime format: {renewed}"
    );
    let owners = lease.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].name.as_str()),
        ("Node", "worker-1")
    );
    assert_eq!(Some(owners[0].uid.clone()), stored.metadata.uid);

    // Readiness lost: reported at once, with the reason.
    let third = heartbeat
        .tick(&node_client, Err("container runtime is down".into()))
        .expect("not-ready tick");
    assert!(third.status_reported, "{third:?}");
    let stored: Node = c.admin.get(None, node_name.as_str()).expect("get node");
    assert_eq!(
        ready_condition(&stored),
        (
            "False".into(),
            "KubeletNotReady".into(),
            "container runtime is down".into()
        )
    );
    let lease_after: Lease = c
        .admin
        .get(Some("kube-node-lease"), node_name.as_str())
        .expect("get lease");
    assert_ne!(
        lease_after.metadata.resource_version, lease.metadata.resource_version,
        "every tick renews the lease"
    );

    // Re-registration (a reboot) keeps the Node and merges labels.
    let mut again = registration.clone();
    again.labels.insert("example.com/rack".into(), "r1".into());
    again.internal_ip = "10.5.0.12".parse().expect("ip");
    node::register(&node_client, &again).expect("re-register");
    let stored: Node = c.admin.get(None, node_name.as_str()).expect("get node");
    let labels = stored.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("example.com/rack").map(String::as_str),
        Some("r1")
    );
    assert_eq!(
        stored.metadata.uid,
        lease
            .metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].uid.clone())
    );
    let internal = stored
        .status
        .and_then(|s| s.addresses)
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address);
    assert_eq!(internal.as_deref(), Some("10.5.0.12"));
    node_client
}

/// Nodes write their Node and Lease through the apiserver policy's
/// `cairn:node-self-management` grants (there is no Node authorizer):
/// without the bindings the heartbeat is forbidden. Runs last.
fn node_writes_rest_on_the_policy_grant(c: &Cluster, node_client: &KubeClient, node: &NodeName) {
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};

    let name = "cairn:node-self-management";
    c.admin
        .delete::<ClusterRoleBinding>(None, name)
        .expect("delete the ClusterRoleBinding");
    c.admin
        .delete::<RoleBinding>(Some("kube-node-lease"), name)
        .expect("delete the RoleBinding");
    let mut heartbeat = Heartbeat::new(node.clone());
    let deadline = Instant::now() + DEADLINE;
    loop {
        match heartbeat.tick(node_client, Ok(())) {
            Err(node::NodeError::Api { source, .. }) if source.is_forbidden() => break,
            other => assert!(
                Instant::now() < deadline,
                "the heartbeat still works {DEADLINE:?} after the grants were removed: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn duplicate_name_is_refused(c: &Cluster, node_name: &NodeName) {
    let info = discovery::discover(&c.endpoint, &c.token, &c.pin).expect("discovery");
    let before = csr_names(&c.admin);
    let err =
        tls_bootstrap::bootstrap(&info, &c.token, "Worker_1", DEADLINE).expect_err("invalid name");
    assert!(
        matches!(err, TlsBootstrapError::InvalidNodeName(_)),
        "{err:?}"
    );
    let err = tls_bootstrap::bootstrap(&info, &c.token, node_name.as_str(), DEADLINE)
        .expect_err("duplicate name");
    assert!(
        matches!(&err, TlsBootstrapError::DuplicateNode { node } if node == node_name),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("a Node named worker-1 already exists in the cluster"),
        "{err}"
    );
    assert_eq!(
        csr_names(&c.admin),
        before,
        "no CSR is created for a duplicate name"
    );
}

fn denied_csr_reports_the_reason(c: &Cluster) {
    let info = discovery::discover(&c.endpoint, &c.token, &c.pin).expect("discovery");
    let client = info.bootstrap_client(&c.token).expect("bootstrap client");
    let node_name: NodeName = "worker-denied".parse().expect("name");
    let known = csr_names(&c.admin);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            let csr = new_csr(&c.admin, &known);
            let name = csr.metadata.name.expect("name");
            set_condition(
                &c.admin,
                &name,
                "Denied",
                "NotInInventory",
                "worker-denied is not in the machine inventory",
            );
        });
        tls_bootstrap::request_node_certificate(&client, &node_name, DEADLINE)
    });
    let err = result.expect_err("denied");
    assert!(
        matches!(&err, TlsBootstrapError::Denied { reason, message, .. }
            if reason == "NotInInventory" && message == "worker-denied is not in the machine inventory"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("was denied (NotInInventory)"),
        "{err}"
    );
}

fn unanswered_csr_times_out(c: &Cluster) {
    let info = discovery::discover(&c.endpoint, &c.token, &c.pin).expect("discovery");
    let client = info.bootstrap_client(&c.token).expect("bootstrap client");
    let node_name: NodeName = "worker-waiting".parse().expect("name");
    let started = Instant::now();
    let err = tls_bootstrap::request_node_certificate(&client, &node_name, Duration::from_secs(3))
        .expect_err("nobody approves");
    let TlsBootstrapError::TimedOut { csr, approved, .. } = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert!(!approved);
    assert!(csr.starts_with("node-csr-"), "{csr}");
    assert!(
        err.to_string().contains(csr.as_str())
            && err
                .to_string()
                .contains("is the controller-manager running?"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the deadline is kept: {:?}",
        started.elapsed()
    );
}
