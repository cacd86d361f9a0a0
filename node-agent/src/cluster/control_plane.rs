//! More control planes: `upload-certs` on the initialising node and the
//! control-plane join, kubeadm's way.
//!
//! The initialising node encrypts the shared CA files (cluster CA,
//! service-account keys, front-proxy CA, etcd CA) with the certificate key
//! (AES-256-GCM per file) into `kube-system/kubeadm-certs`, readable by
//! the bootstrap-token group. A joining control plane
//!
//! 1. discovers the cluster (CA pin and JWS checked), refuses a name that
//!    is already a Node;
//! 2. downloads and decrypts the shared files, adopts the cluster's
//!    `kubeadm-config` and issues its own serving certificates (its own
//!    SANs) from the shared CAs;
//! 3. adds itself to etcd as a learner, starts etcd with the current
//!    members and promotes itself once etcd lets it (bounded retries);
//! 4. starts the apiserver, the controller manager and the VIP manager,
//!    and registers its Node like the first control plane.
//!
//! On a reboot the files and the etcd data are on STATE: steps 1–3 are
//! skipped and the services start with what is there.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_cluster::client::KubeClient;
use cairn_pki::{CertificateKey, SHARED_CA_FILES};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::etcd::{self, EtcdMembership};
use super::plan::{self, ClusterConfiguration, ControlPlanePlan, EtcdClusterState};
use super::{Context, phases, retry};
use crate::system::write_atomic;

/// kubeadm's name of the Secret with the encrypted shared files.
pub const KUBEADM_CERTS: &str = "kubeadm-certs";
/// The group of kubeadm's default bootstrap token.
const NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// How long the encrypted CA keys stay in the cluster (kubeadm's TTL).
const CERTS_TTL: time::Duration = time::Duration::hours(2);
/// How long a learner may take to catch up before the join gives up.
const PROMOTE_DEADLINE: Duration = Duration::from_secs(600);

/// `upload-certs`: the shared files, encrypted, plus the Role that lets
/// bootstrap tokens read them. Replaced on every pass, as `kubeadm init
/// phase upload-certs` does, so a renewed key takes effect; deleted two
/// hours later with the token that owns it.
pub(super) fn upload_certs(
    client: &KubeClient,
    plan: &ControlPlanePlan,
    key: &CertificateKey,
) -> Result<(), String> {
    let mut files = BTreeMap::new();
    for name in SHARED_CA_FILES {
        let path = plan.paths.cert_dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        files.insert(cairn_pki::certkey::secret_key_for(name), bytes);
    }
    let encrypted = key.encrypt_files(&files).map_err(|e| e.to_string())?;
    // As kubeadm: the Secret is owned by a token that lives two hours, and
    // goes with it (the controller manager's token cleaner collects it).
    let proxy = client
        .create(
            Some("kube-system"),
            &phases::token_secret(
                &cairn_pki::BootstrapToken::generate(),
                CERTS_TTL,
                false,
                "Proxy for managing TTL for the kubeadm-certs secret",
            ),
        )
        .map_err(|e| format!("creating the kubeadm-certs TTL token: {e}"))?;
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Secret".into(),
        name: proxy.metadata.name.clone().unwrap_or_default(),
        uid: proxy.metadata.uid.clone().unwrap_or_default(),
        ..OwnerReference::default()
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(KUBEADM_CERTS.into()),
            namespace: Some("kube-system".into()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            encrypted
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect(),
        ),
        ..Secret::default()
    };
    match client.create(Some("kube-system"), &secret) {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {
            let current: Secret = client
                .get(Some("kube-system"), KUBEADM_CERTS)
                .map_err(|e| e.to_string())?;
            let mut replacement = secret.clone();
            replacement.metadata.resource_version = current.metadata.resource_version;
            client
                .replace(Some("kube-system"), KUBEADM_CERTS, &replacement)
                .map_err(|e| e.to_string())?;
        }
        Err(e) => return Err(e.to_string()),
    }
    let role = Role {
        metadata: ObjectMeta {
            name: Some("kubeadm:kubeadm-certs".into()),
            namespace: Some("kube-system".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            resource_names: Some(vec![KUBEADM_CERTS.into()]),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }]),
    };
    phases::create_missing(client, "kube-system", &role)?;
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("kubeadm:kubeadm-certs".into()),
            namespace: Some("kube-system".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "kubeadm:kubeadm-certs".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Group".into(),
            name: NODE_TOKEN_GROUP.into(),
            namespace: None,
        }]),
    };
    phases::create_missing(client, "kube-system", &binding)
}

/// A control plane joining through `[join] control-plane = true`.
pub(super) fn join(context: &Context) {
    let Some(join) = context.config.join.clone() else {
        return;
    };
    let endpoint = join.endpoint.to_string();
    let endpoint_host = endpoint_host(&endpoint);
    context.agent.update_cluster(|status| {
        status.endpoint = Some(format!("https://{endpoint}"));
    });
    if let Err(error) = super::link_kubernetes_dir() {
        context.failed("join", &error);
    }
    let cert_dir = Path::new(plan::KUBERNETES_DIR).join("pki");
    let configuration_path = plan::joined_cluster_configuration_path();
    let joined_before = cert_dir.join("ca.key").is_file() && configuration_path.is_file();

    super::preflight(context);
    if !joined_before {
        let info = phases::discover(context, &join);
        let Some(key) = join.certificate_key.clone() else {
            context.failed(
                "download-certs",
                "a control-plane join needs [join] certificate-key",
            );
            return;
        };
        context.phase("download-certs");
        retry(context, "download-certs", || {
            let client = info
                .bootstrap_client(&join.token)
                .map_err(|e| e.to_string())?;
            cairn_cluster::tls_bootstrap::ensure_name_free(&client, &context.node_name)
                .map_err(|e| e.to_string())?;
            download_certs(&client, &key, &cert_dir)?;
            let map: ConfigMap = client
                .get(Some("kube-system"), "kubeadm-config")
                .map_err(|e| format!("reading kube-system/kubeadm-config: {e}"))?;
            let yaml = map
                .data
                .as_ref()
                .and_then(|d| d.get("ClusterConfiguration"))
                .ok_or("kube-system/kubeadm-config has no ClusterConfiguration")?;
            ClusterConfiguration::parse(yaml)?;
            write_atomic(&configuration_path, yaml.as_bytes(), 0o644)
                .map_err(|e| format!("writing {}: {e}", configuration_path.display()))
        });
    }

    let plan = retry(context, "certs", || {
        let yaml = std::fs::read_to_string(&configuration_path)
            .map_err(|e| format!("reading {}: {e}", configuration_path.display()))?;
        ControlPlanePlan::for_join(
            &context.config,
            context.node_name.clone(),
            context.address,
            &ClusterConfiguration::parse(&yaml)?,
        )
    });
    context.phase("certs");
    retry(context, "certs", || super::certs(context, &plan));

    context.phase("etcd");
    let own_peer_url = plan.etcd_member().peer_url;
    let has_data = Path::new(plan::ETCD_DATA_DIR).join("member").is_dir();
    let (members, learner_id) = if has_data {
        (vec![plan.etcd_member()], None)
    } else {
        retry(context, "etcd", || {
            let membership = EtcdMembership::new(&endpoint_host, &plan.paths.cert_dir)?;
            let current = membership.list()?;
            etcd::check_quorum_for_join(&current, &own_peer_url)?;
            let (id, after) = match current.iter().find(|m| m.peer_urls.contains(&own_peer_url)) {
                // An earlier attempt added us already.
                Some(existing) => (existing.id.clone(), current.clone()),
                None => {
                    let (added, after) = membership.add_learner(&own_peer_url)?;
                    context.say(&format!("added to etcd as learner {}", added.id));
                    (added.id, after)
                }
            };
            let initial = etcd::initial_members(&after, context.node_name.as_str(), &own_peer_url);
            Ok((initial, Some(id)))
        })
    };
    super::add_service(
        context,
        super::service(
            "etcd",
            plan.etcd(&members, EtcdClusterState::Existing),
            Vec::new(),
            super::tcp(plan::ETCD_CLIENT_PORT),
        ),
    );
    super::wait_ready(context, "etcd");
    if let Some(id) = learner_id {
        context.phase("etcd-promote");
        promote(context, &endpoint_host, &plan, &id);
    }

    super::start_control_plane_services(context, &plan);
    phases::after_control_plane_join(context, &plan);
}

/// Promotes the learner, retrying while etcd says it has not caught up.
fn promote(context: &Context, endpoint_host: &str, plan: &ControlPlanePlan, id: &str) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < PROMOTE_DEADLINE {
        match EtcdMembership::new(endpoint_host, &plan.paths.cert_dir).and_then(|m| m.promote(id)) {
            Ok(()) => {
                context.say(&format!(
                    "etcd member {id} promoted to voter after {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
                return;
            }
            // Already a voter (an earlier pass promoted it): etcd says
            // "can only promote a learner member"; a lagging learner gets
            // the same words plus "which is in sync with leader".
            Err(e) if e.contains("can only promote a learner member") && !e.contains("in sync") => {
                return;
            }
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    context.failed(
        "etcd-promote",
        &format!(
            "the learner {id} was not promoted within {} s; it keeps replicating without a vote. Last answer: {last}",
            PROMOTE_DEADLINE.as_secs()
        ),
    );
}

fn endpoint_host(endpoint: &str) -> String {
    match endpoint.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        _ => endpoint.to_owned(),
    }
}

/// Decrypts `kubeadm-certs` into `cert_dir`, all files or none.
fn download_certs(
    client: &KubeClient,
    key: &CertificateKey,
    cert_dir: &Path,
) -> Result<(), String> {
    let secret: Secret = client.get(Some("kube-system"), KUBEADM_CERTS).map_err(|e| {
        if e.is_not_found() || e.is_forbidden() {
            format!(
                "kube-system/{KUBEADM_CERTS} is missing or unreadable ({e}); the first control plane uploads it \
                 when its config sets [cluster] certificate-key"
            )
        } else {
            format!("reading kube-system/{KUBEADM_CERTS}: {e}")
        }
    })?;
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let decrypted = key.decrypt_files(&data).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for name in SHARED_CA_FILES {
        let secret_key = cairn_pki::certkey::secret_key_for(name);
        let bytes = decrypted
            .get(&secret_key)
            .ok_or_else(|| format!("kube-system/{KUBEADM_CERTS} lacks {secret_key}"))?;
        files.push((cert_dir.join(name), bytes));
    }
    for (path, bytes) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let mode = if path.extension().is_some_and(|e| e == "key") {
            0o600
        } else {
            0o644
        };
        write_atomic(&path, bytes, mode).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::endpoint_host;

    #[test]
    fn endpoint_hosts() {
        assert_eq!(endpoint_host("10.5.0.10:6443"), "10.5.0.10");
        assert_eq!(endpoint_host("[fd00::10]:6443"), "fd00::10");
        assert_eq!(endpoint_host("api.example.org:6443"), "api.example.org");
    }
}
