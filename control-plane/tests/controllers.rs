//! End to end: a real etcd, the real `control-plane apiserver` and the
//! real `control-plane controller-manager` binary with the kubeadm-layout
//! PKI (`controller-manager.conf`, `ca.crt`/`ca.key`), driven through
//! `cairn_cluster::client::KubeClient` as the admin, as bootstrap tokens
//! and as the controller manager's lease observer.
//!
//! Covered: cluster-info signing and unsigning as tokens come and go
//! (signatures checked with `cairn_cluster::jws::verify_detached`), the
//! token cleaner, auto-approval and signing of a kubelet client CSR made
//! with a bootstrap token (certificate checked against `ca.crt`) and its
//! renewal by the node itself (selfnodeclient), CSRs
//! that must stay pending (wrong O, requester without the nodeclient
//! permission), a signer this controller manager does not own, admin
//! approved `kube-apiserver-client` and `kubelet-serving` requests, and
//! two controller managers where only the Lease holder acts and the other
//! takes over once the leader is killed. Every wait polls with a generous
//! deadline and reports what it saw plus the logs.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_cluster::client::{Credentials, KubeClient, ServerTrust};
use cairn_pki::KubeconfigFile;
use common::etcd_fixture::EtcdFixture;
use common::{Apiserver, ControllerManager, etcd_and_apiserver};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const DEADLINE: Duration = Duration::from_secs(120);
const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// etcd + apiserver, ready, with the runtime etcd's fixture needs.
struct Cluster {
    server: Apiserver,
    _etcd: EtcdFixture,
    _runtime: tokio::runtime::Runtime,
    admin: KubeClient,
}

impl Cluster {
    fn start() -> Self {
        let (runtime, etcd, server) = etcd_and_apiserver();
        let admin = KubeClient::from_kubeconfig(&server.local_kubeconfig(KubeconfigFile::Admin))
            .expect("admin client");
        let cluster = Self {
            server,
            _etcd: etcd,
            _runtime: runtime,
            admin,
        };
        cluster.wait_ready();
        cluster
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.admin.request("GET", "/readyz", None) {
                Ok((200, _)) => return,
                other if Instant::now() > deadline => panic!(
                    "apiserver not ready: {:?}\n{}",
                    other.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned())),
                    self.server.log_tail()
                ),
                _ => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }

    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.server.pki.cert("ca")).expect("ca.crt")
    }

    fn token_client(&self, token: &str) -> KubeClient {
        KubeClient::new(
            &format!("https://127.0.0.1:{}", self.server.port),
            ServerTrust::CaPem(self.ca_pem()),
            Credentials::BearerToken(token.to_owned()),
        )
        .expect("token client")
    }

    /// Starts `control-plane controller-manager` with the production
    /// flags (plus `extra`), logging to `<name>.log`.
    fn controller_manager(&self, name: &str, extra: &[&str]) -> ControllerManager {
        ControllerManager::start(&self.server, name, extra)
    }

    fn create_token(&self, id: &str, secret: &str, extra: &[(&str, &str)]) {
        let mut data = BTreeMap::from([
            ("token-id".to_owned(), bytes(id)),
            ("token-secret".to_owned(), bytes(secret)),
        ]);
        for (k, v) in extra {
            data.insert((*k).to_owned(), bytes(v));
        }
        let secret = Secret {
            metadata: meta(&format!("bootstrap-token-{id}"), Some("kube-system")),
            type_: Some("bootstrap.kubernetes.io/token".into()),
            data: Some(data),
            ..Secret::default()
        };
        self.admin
            .create(Some("kube-system"), &secret)
            .unwrap_or_else(|e| panic!("create token {id}: {e}\n{}", self.server.log_tail()));
    }

    fn cluster_info(&self) -> BTreeMap<String, String> {
        self.admin
            .get::<ConfigMap>(Some("kube-public"), "cluster-info")
            .expect("get cluster-info")
            .data
            .unwrap_or_default()
    }

    fn csr(&self, name: &str) -> CertificateSigningRequest {
        self.admin
            .get::<CertificateSigningRequest>(None, name)
            .unwrap_or_else(|e| panic!("get csr {name}: {e}"))
    }

    fn lease_holder(&self) -> Option<String> {
        self.admin
            .get_opt::<Lease>(Some("kube-system"), "kube-controller-manager")
            .expect("get lease")
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }
}

fn bytes(text: &str) -> ByteString {
    ByteString(text.as_bytes().to_vec())
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..ObjectMeta::default()
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// Polls `check` until it returns `Some`, or panics with `what`, the last
/// observation and the logs.
fn wait_for<T>(
    what: &str,
    context: &dyn Fn() -> String,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) if Instant::now() > deadline => {
                panic!(
                    "timed out waiting for {what}; last seen: {seen}\n{}",
                    context()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// A PEM PKCS#10 request signed by a fresh P-256 key.
fn csr_pem(cn: &str, organizations: &[&str], sans: Vec<rcgen::SanType>) -> String {
    csr_and_key(cn, organizations, sans).0
}

/// A PEM PKCS#10 request and its PKCS#8 PEM key.
fn csr_and_key(cn: &str, organizations: &[&str], sans: Vec<rcgen::SanType>) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    for o in organizations {
        dn.push(rcgen::DnType::OrganizationName, *o);
    }
    dn.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    let pem = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    (pem, key.serialize_pem())
}

fn csr_object(name: &str, pem: &str, signer: &str, usages: &[&str]) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: meta(name, None),
        spec: CertificateSigningRequestSpec {
            request: bytes(pem),
            signer_name: signer.to_owned(),
            usages: Some(usages.iter().map(|u| (*u).to_owned()).collect()),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    }
}

fn conditions(csr: &CertificateSigningRequest) -> Vec<CertificateSigningRequestCondition> {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
}

fn certificate(csr: &CertificateSigningRequest) -> Option<String> {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .filter(|c| !c.0.is_empty())
        .map(|c| String::from_utf8_lossy(&c.0).into_owned())
}

fn summary(csr: &CertificateSigningRequest) -> String {
    format!(
        "conditions {:?}, certificate: {}",
        conditions(csr)
            .iter()
            .map(|c| format!("{}/{}", c.type_, c.reason.clone().unwrap_or_default()))
            .collect::<Vec<_>>(),
        certificate(csr).is_some()
    )
}

/// Approves a CSR as the admin (what `kubectl certificate approve` does).
fn approve_as_admin(cluster: &Cluster, name: &str) {
    let mut csr = cluster.csr(name);
    csr.status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("KubectlApprove".into()),
            message: Some("approved by the test".into()),
            ..CertificateSigningRequestCondition::default()
        });
    cluster
        .admin
        .replace_subresource(None, name, Some("approval"), &csr)
        .unwrap_or_else(|e| panic!("approve {name}: {e}"));
}

#[test]
fn bootstrap_signer_and_token_cleaner() {
    let cluster = Cluster::start();
    let kubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    server: https://10.0.0.1:6443\n";
    let cluster_info = ConfigMap {
        metadata: meta("cluster-info", Some("kube-public")),
        data: Some(BTreeMap::from([(
            "kubeconfig".to_owned(),
            kubeconfig.to_owned(),
        )])),
        ..ConfigMap::default()
    };
    cluster
        .admin
        .create(Some("kube-public"), &cluster_info)
        .expect("create cluster-info");
    let tomorrow = rfc3339(time::OffsetDateTime::now_utc() + time::Duration::days(1));
    // Not for signing: must never get a signature.
    cluster.create_token(
        "nosign",
        "0123456789abcdef",
        &[
            ("usage-bootstrap-authentication", "true"),
            ("expiration", &tomorrow),
        ],
    );
    let mut manager = cluster.controller_manager("cm", &[]);
    let context = || {
        format!(
            "{}\n{}",
            manager_log(&manager_path(&cluster, "cm")),
            cluster.server.log_tail()
        )
    };

    cluster.create_token(
        "abcdef",
        "0123456789abcdef",
        &[
            ("usage-bootstrap-signing", "true"),
            ("expiration", &tomorrow),
        ],
    );
    let signature = wait_for("jws-kubeconfig-abcdef in cluster-info", &context, || {
        let data = cluster.cluster_info();
        data.get("jws-kubeconfig-abcdef")
            .cloned()
            .ok_or_else(|| format!("{:?}", data.keys().collect::<Vec<_>>()))
    });
    cairn_cluster::jws::verify_detached(kubeconfig, &signature, "abcdef", "0123456789abcdef")
        .expect("the signature verifies with the token");
    assert!(
        cairn_cluster::jws::verify_detached(kubeconfig, &signature, "abcdef", "fedcba9876543210")
            .is_err(),
        "a wrong secret must not verify"
    );
    let data = cluster.cluster_info();
    assert!(
        !data.contains_key("jws-kubeconfig-nosign"),
        "a token without usage-bootstrap-signing was used: {data:?}"
    );
    assert_eq!(data["kubeconfig"], kubeconfig, "the payload is untouched");

    // Token deleted → its signature goes.
    cluster
        .admin
        .delete::<Secret>(Some("kube-system"), "bootstrap-token-abcdef")
        .expect("delete token");
    wait_for("jws-kubeconfig-abcdef removed", &context, || {
        let data = cluster.cluster_info();
        if data.contains_key("jws-kubeconfig-abcdef") {
            Err(format!("{:?}", data.keys().collect::<Vec<_>>()))
        } else {
            Ok(())
        }
    });

    // A token that expires shortly: signed, then unsigned and deleted.
    let soon = rfc3339(time::OffsetDateTime::now_utc() + time::Duration::seconds(8));
    cluster.create_token(
        "short0",
        "0123456789abcdef",
        &[("usage-bootstrap-signing", "true"), ("expiration", &soon)],
    );
    // An already expired one: deleted.
    cluster.create_token(
        "old000",
        "0123456789abcdef",
        &[
            ("usage-bootstrap-signing", "true"),
            ("expiration", "2001-01-01T00:00:00Z"),
        ],
    );
    wait_for("bootstrap-token-old000 deleted", &context, || match cluster
        .admin
        .get_opt::<Secret>(Some("kube-system"), "bootstrap-token-old000")
    {
        Ok(None) => Ok(()),
        other => Err(format!("{:?}", other.map(|s| s.is_some()))),
    });
    wait_for(
        "bootstrap-token-short0 deleted after its expiration",
        &context,
        || match cluster
            .admin
            .get_opt::<Secret>(Some("kube-system"), "bootstrap-token-short0")
        {
            Ok(None) => Ok(()),
            other => Err(format!("still there: {:?}", other.map(|s| s.is_some()))),
        },
    );
    wait_for("no signature of expired tokens", &context, || {
        let data = cluster.cluster_info();
        let signatures: Vec<&String> = data.keys().filter(|k| k.starts_with("jws-")).collect();
        if signatures.is_empty() {
            Ok(())
        } else {
            Err(format!("{signatures:?}"))
        }
    });
    // The non-expired, non-signing token is neither signed nor cleaned.
    assert!(
        cluster
            .admin
            .get_opt::<Secret>(Some("kube-system"), "bootstrap-token-nosign")
            .expect("get")
            .is_some(),
        "a valid token was deleted"
    );
    manager.assert_running();
    let log = manager.log();
    for line in [
        "signed kube-public/cluster-info",
        "deleted expired bootstrap token kube-system/bootstrap-token-old000",
        "deleted expired bootstrap token kube-system/bootstrap-token-short0",
    ] {
        assert!(
            log.contains(line),
            "{line:?} not logged\n{}",
            manager.log_tail()
        );
    }

    // SIGTERM: stops, releases the lease, exits 0.
    manager.signal(nix::sys::signal::Signal::SIGTERM);
    let status = wait_for("exit after SIGTERM", &context, || {
        manager
            .child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_owned())
    });
    assert!(
        status.success(),
        "exit status {status}\n{}",
        manager.log_tail()
    );
    assert_eq!(
        cluster.lease_holder().as_deref(),
        Some(""),
        "the lease is released on SIGTERM"
    );
}

fn manager_path(cluster: &Cluster, name: &str) -> PathBuf {
    cluster.server.dir.path().join(format!("{name}.log"))
}

fn manager_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(40);
    format!(
        "--- {} tail ---\n{}",
        path.display(),
        lines[start..].join("\n")
    )
}

#[test]
fn csr_approval_and_signing() {
    let cluster = Cluster::start();
    let tomorrow = rfc3339(time::OffsetDateTime::now_utc() + time::Duration::days(1));
    // kubeadm's join token: its extra group is bound to node-bootstrapper
    // and nodeclient by the bootstrap policy.
    cluster.create_token(
        "07401b",
        "f395accd246ae52d",
        &[
            ("usage-bootstrap-authentication", "true"),
            (
                "auth-extra-groups",
                "system:bootstrappers:kubeadm:default-node-token",
            ),
            ("expiration", &tomorrow),
        ],
    );
    // A token whose group may create CSRs but has no nodeclient permission.
    cluster.create_token(
        "norole",
        "f395accd246ae52d",
        &[
            ("usage-bootstrap-authentication", "true"),
            ("auth-extra-groups", "system:bootstrappers:limited"),
            ("expiration", &tomorrow),
        ],
    );
    cluster
        .admin
        .create(
            None,
            &ClusterRoleBinding {
                metadata: meta("limited-bootstrappers", None),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: "system:node-bootstrapper".into(),
                },
                subjects: Some(vec![Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Group".into(),
                    name: "system:bootstrappers:limited".into(),
                    namespace: None,
                }]),
            },
        )
        .expect("bind node-bootstrapper");
    let joiner = cluster.token_client("07401b.f395accd246ae52d");
    let limited = cluster.token_client("norole.f395accd246ae52d");
    let kubelet_usages = ["digital signature", "key encipherment", "client auth"];
    let context = || {
        format!(
            "{}\n{}",
            manager_log(&manager_path(&cluster, "cm")),
            cluster.server.log_tail()
        )
    };

    // Requests that must stay untouched or pending, created first so the
    // passes that handle the good one have seen them.
    let wrong_org = csr_object(
        "node-csr-wrong-org",
        &csr_pem("system:node:worker-1", &["system:masters"], Vec::new()),
        KUBELET_CLIENT,
        &kubelet_usages,
    );
    joiner
        .create(None, &wrong_org)
        .expect("create wrong-org csr");
    let no_rights = csr_object(
        "node-csr-no-rights",
        &csr_pem("system:node:worker-2", &["system:nodes"], Vec::new()),
        KUBELET_CLIENT,
        &kubelet_usages,
    );
    // The RBAC cache may take a moment to see the new binding.
    wait_for("the limited token may create CSRs", &context, || {
        limited
            .create(None, &no_rights)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let unknown_signer = csr_object(
        "custom-signer",
        &csr_pem("someone", &["example"], Vec::new()),
        "example.com/custom",
        &["client auth"],
    );
    cluster
        .admin
        .create(None, &unknown_signer)
        .expect("create custom-signer csr");
    approve_as_admin(&cluster, "custom-signer");

    let manager = cluster.controller_manager("cm", &["--cluster-signing-duration=720h"]);
    let (good_pem, good_key) = csr_and_key("system:node:worker-1", &["system:nodes"], Vec::new());
    let good = csr_object("node-csr-good", &good_pem, KUBELET_CLIENT, &kubelet_usages);
    joiner
        .create(None, &good)
        .expect("create csr as the bootstrap token");
    let issued = wait_for("node-csr-good approved and issued", &context, || {
        let csr = cluster.csr("node-csr-good");
        certificate(&csr)
            .map(|c| (csr.clone(), c))
            .ok_or_else(|| summary(&csr))
    });
    let (csr, pem) = issued;
    let approved = conditions(&csr)
        .into_iter()
        .find(|c| c.type_ == "Approved")
        .expect("Approved condition");
    assert_eq!(approved.status, "True");
    assert_eq!(approved.reason.as_deref(), Some("AutoApproved"));
    assert_eq!(
        approved.message.as_deref(),
        Some("Auto approving kubelet client certificate after SubjectAccessReview.")
    );
    let ca_der = cairn_pki::cert::pem_to_der(&String::from_utf8(cluster.ca_pem()).expect("utf8"))
        .expect("ca der");
    let der = cairn_pki::cert::pem_to_der(&pem).expect("certificate PEM");
    assert!(
        cairn_pki::cert::is_signed_by(&der, &ca_der),
        "the certificate does not chain to ca.crt"
    );
    let info = cairn_pki::cert::CertInfo::from_der(&der).expect("parse certificate");
    assert_eq!(info.common_name, "system:node:worker-1");
    assert_eq!(info.organizations, ["system:nodes"]);
    assert!(info.client_auth, "client auth EKU missing");
    assert!(!info.server_auth && !info.is_ca);
    let now = time::OffsetDateTime::now_utc();
    let lifetime = info.not_after - now;
    assert!(
        lifetime <= time::Duration::hours(720) && lifetime > time::Duration::hours(719),
        "--cluster-signing-duration=720h not applied: {lifetime}"
    );
    assert!(
        info.not_before < now - time::Duration::minutes(4),
        "not backdated"
    );

    // Rotation: the node, authenticated by that certificate, asks for a
    // new one for itself; approved under selfnodeclient. Kubernetes lets
    // nodes create CSRs through the Node authorizer, which this apiserver
    // does not have; the admin grants it here the way the bootstrap policy
    // would have to.
    cluster
        .admin
        .create(
            None,
            &ClusterRoleBinding {
                metadata: meta("nodes-create-csrs", None),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: "system:node-bootstrapper".into(),
                },
                subjects: Some(vec![Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Group".into(),
                    name: "system:nodes".into(),
                    namespace: None,
                }]),
            },
        )
        .expect("let nodes create CSRs");
    let node = KubeClient::new(
        &format!("https://127.0.0.1:{}", cluster.server.port),
        ServerTrust::CaPem(cluster.ca_pem()),
        Credentials::ClientCertificate {
            cert_pem: pem.clone().into_bytes(),
            key_pem: good_key.into_bytes(),
        },
    )
    .expect("node client");
    let renewal = csr_object(
        "node-csr-renewal",
        &csr_pem("system:node:worker-1", &["system:nodes"], Vec::new()),
        KUBELET_CLIENT,
        &kubelet_usages,
    );
    wait_for("the node may create CSRs", &context, || {
        node.create(None, &renewal)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let renewed = wait_for("node-csr-renewal approved and issued", &context, || {
        let csr = cluster.csr("node-csr-renewal");
        certificate(&csr)
            .map(|_| csr.clone())
            .ok_or_else(|| summary(&csr))
    });
    assert_eq!(
        renewed.spec.username.as_deref(),
        Some("system:node:worker-1")
    );
    assert!(
        conditions(&renewed).iter().any(|c| c.message.as_deref()
            == Some("Auto approving self kubelet client certificate after SubjectAccessReview.")),
        "{}",
        summary(&renewed)
    );

    // An admin-approved apiserver client request, valid for one hour.
    let mut client_csr = csr_object(
        "apiserver-client",
        &csr_pem("jane", &["developers"], Vec::new()),
        "kubernetes.io/kube-apiserver-client",
        &["digital signature", "client auth"],
    );
    client_csr.spec.expiration_seconds = Some(3600);
    cluster.admin.create(None, &client_csr).expect("create");
    approve_as_admin(&cluster, "apiserver-client");
    // An admin-approved kubelet serving request.
    let serving = csr_object(
        "kubelet-serving",
        &csr_pem(
            "system:node:worker-1",
            &["system:nodes"],
            vec![
                rcgen::SanType::DnsName("worker-1".try_into().expect("dns")),
                rcgen::SanType::IpAddress("10.0.0.11".parse().expect("ip")),
            ],
        ),
        "kubernetes.io/kubelet-serving",
        &["digital signature", "key encipherment", "server auth"],
    );
    cluster.admin.create(None, &serving).expect("create");
    approve_as_admin(&cluster, "kubelet-serving");
    // An approved serving request without SANs: marked Failed.
    let bad_serving = csr_object(
        "kubelet-serving-no-san",
        &csr_pem("system:node:worker-1", &["system:nodes"], Vec::new()),
        "kubernetes.io/kubelet-serving",
        &["digital signature", "server auth"],
    );
    cluster.admin.create(None, &bad_serving).expect("create");
    approve_as_admin(&cluster, "kubelet-serving-no-san");

    let client_pem = wait_for("apiserver-client issued", &context, || {
        let csr = cluster.csr("apiserver-client");
        certificate(&csr).ok_or_else(|| summary(&csr))
    });
    let info = cairn_pki::cert::CertInfo::from_pem(&client_pem).expect("parse");
    assert_eq!(info.common_name, "jane");
    assert_eq!(info.organizations, ["developers"]);
    assert!(info.client_auth && !info.server_auth);
    let lifetime = info.not_after - time::OffsetDateTime::now_utc();
    assert!(
        lifetime <= time::Duration::hours(1) && lifetime > time::Duration::minutes(55),
        "expirationSeconds=3600 not applied: {lifetime}"
    );
    let serving_pem = wait_for("kubelet-serving issued", &context, || {
        let csr = cluster.csr("kubelet-serving");
        certificate(&csr).ok_or_else(|| summary(&csr))
    });
    let info = cairn_pki::cert::CertInfo::from_pem(&serving_pem).expect("parse");
    assert!(info.server_auth && !info.client_auth);
    assert_eq!(info.sans.len(), 2, "{:?}", info.sans);
    let failed = wait_for("kubelet-serving-no-san Failed", &context, || {
        let csr = cluster.csr("kubelet-serving-no-san");
        conditions(&csr)
            .into_iter()
            .find(|c| c.type_ == "Failed")
            .ok_or_else(|| summary(&csr))
    });
    assert_eq!(failed.reason.as_deref(), Some("SignerValidationFailure"));
    assert!(
        failed
            .message
            .as_deref()
            .is_some_and(|m| m.contains("DNS or IP subjectAltName is required")),
        "{failed:?}"
    );
    assert!(certificate(&cluster.csr("kubelet-serving-no-san")).is_none());

    // Everything the passes above saw and had to leave alone.
    for name in ["node-csr-wrong-org", "node-csr-no-rights"] {
        let csr = cluster.csr(name);
        assert!(
            conditions(&csr).is_empty() && certificate(&csr).is_none(),
            "{name} must stay pending: {}\n{}",
            summary(&csr),
            manager.log_tail()
        );
    }
    let custom = cluster.csr("custom-signer");
    assert!(
        certificate(&custom).is_none() && conditions(&custom).len() == 1,
        "a foreign signer's CSR was touched: {}",
        summary(&custom)
    );
    let log = manager.log();
    for expected in [
        "approved kubelet client certificate request",
        "signed certificate",
        "node-csr-wrong-org",
        "subject organization is not system:nodes",
        "node-csr-no-rights",
        "SubjectAccessReview did not allow",
    ] {
        assert!(
            log.contains(expected),
            "{expected:?} not logged\n{}",
            manager.log_tail()
        );
    }
    // The reasons are logged once, not every pass.
    assert_eq!(
        log.matches("csr=\"node-csr-wrong-org\"").count()
            + log.matches("csr=node-csr-wrong-org").count(),
        1,
        "{}",
        manager.log_tail()
    );
}

#[test]
fn only_the_leader_acts_and_a_peer_takes_over() {
    let cluster = Cluster::start();
    let kubeconfig = "apiVersion: v1\nkind: Config\n";
    cluster
        .admin
        .create(
            Some("kube-public"),
            &ConfigMap {
                metadata: meta("cluster-info", Some("kube-public")),
                data: Some(BTreeMap::from([(
                    "kubeconfig".to_owned(),
                    kubeconfig.to_owned(),
                )])),
                ..ConfigMap::default()
            },
        )
        .expect("create cluster-info");
    let mut first = cluster.controller_manager("cm-a", &[]);
    let context = || {
        format!(
            "{}\n{}\n{}",
            manager_log(&manager_path(&cluster, "cm-a")),
            manager_log(&manager_path(&cluster, "cm-b")),
            cluster.server.log_tail()
        )
    };
    let leader = wait_for("cm-a holds the lease", &context, || {
        cluster
            .lease_holder()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| "no holder".to_owned())
    });
    let mut second = cluster.controller_manager("cm-b", &[]);
    wait_for("cm-b waits for the lease", &context, || {
        second.assert_running();
        if second
            .log()
            .contains("waiting for lease kube-system/kube-controller-manager")
        {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    });
    cluster.create_token(
        "aaaaaa",
        "0123456789abcdef",
        &[("usage-bootstrap-signing", "true")],
    );
    wait_for("jws-kubeconfig-aaaaaa", &context, || {
        let data = cluster.cluster_info();
        data.get("jws-kubeconfig-aaaaaa")
            .map(|_| ())
            .ok_or_else(|| format!("{:?}", data.keys().collect::<Vec<_>>()))
    });
    assert!(
        first.log().contains("signed kube-public/cluster-info"),
        "{}",
        first.log_tail()
    );
    assert!(
        !second.log().contains("signed kube-public/cluster-info")
            && !second.log().contains("controller=\"bootstrapsigner\"")
            && !second.log().contains("started"),
        "the follower ran controllers\n{}",
        second.log_tail()
    );
    assert_eq!(cluster.lease_holder().as_deref(), Some(leader.as_str()));

    // The leader dies without releasing: the follower takes over once the
    // lease has not been renewed for its duration (15 s).
    first.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = first.child.wait();
    let successor = wait_for("cm-b takes the lease", &context, || {
        second.assert_running();
        match cluster.lease_holder() {
            Some(h) if !h.is_empty() && h != leader => Ok(h),
            other => Err(format!("{other:?}")),
        }
    });
    assert_ne!(successor, leader);
    let lease = cluster
        .admin
        .get::<Lease>(Some("kube-system"), "kube-controller-manager")
        .expect("lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.lease_transitions, Some(1));
    assert_eq!(spec.lease_duration_seconds, Some(15));

    // The new leader acts: a second token gets signed.
    cluster.create_token(
        "bbbbbb",
        "0123456789abcdef",
        &[("usage-bootstrap-signing", "true")],
    );
    wait_for("jws-kubeconfig-bbbbbb signed by cm-b", &context, || {
        let data = cluster.cluster_info();
        data.get("jws-kubeconfig-bbbbbb")
            .map(|_| ())
            .ok_or_else(|| format!("{:?}", data.keys().collect::<Vec<_>>()))
    });
    assert!(
        second.log().contains("signed kube-public/cluster-info"),
        "{}",
        second.log_tail()
    );
}
