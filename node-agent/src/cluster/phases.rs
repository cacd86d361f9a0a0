//! The phases that talk to the apiserver: `wait-control-plane`,
//! `upload-config`, `cluster-info`, `bootstrap-token` after init; token
//! discovery and TLS bootstrap for a join; `register` and the heartbeat
//! for both. Each write is create-or-keep, so a reboot (or a retry after a
//! failure) finds the objects of the earlier pass and goes on.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use std::net::{SocketAddr, ToSocketAddrs};

use cairn_cluster::client::{Credentials, KubeClient, ListParams, ServerTrust};
use cairn_cluster::discovery::ClusterInfo;
use cairn_cluster::node::{Heartbeat, NodeRegistration};
use cairn_config::{InitPhase, JoinConfig, NodeRole};
use cairn_pki::KubeconfigFile;
use cairn_pki::kubeconfig::Kubeconfig;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::lb::{self, ApiLoadBalancer};
use super::plan::{self, ControlPlanePlan};
use super::{Context, retry};
use crate::system::write_atomic;

/// How often the Lease is renewed (kubelet: 10 s for a 40 s lease).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// How long a bootstrap token created at init stays valid (kubeadm's
/// default TTL).
const TOKEN_TTL: time::Duration = time::Duration::hours(24);
/// How long a joining node waits for its CSR to be signed per attempt.
const CSR_DEADLINE: Duration = Duration::from_secs(300);

/// Everything after the control-plane services are ready.
pub(super) fn after_control_plane(context: &Context, plan: &ControlPlanePlan) {
    let admin = if context.runs(InitPhase::WaitControlPlane) {
        wait_control_plane(context, plan)
    } else {
        retry(context, "upload-config", || {
            local_client(plan, KubeconfigFile::SuperAdmin)
        })
    };
    if context.runs(InitPhase::UploadConfig) {
        context.phase("upload-config");
        retry(context, "upload-config", || upload_config(&admin, plan));
    }
    if let Some(key) = context
        .config
        .cluster
        .as_ref()
        .and_then(|c| c.certificate_key.clone())
        && context.runs(InitPhase::UploadCerts)
    {
        context.phase("upload-certs");
        retry(context, "upload-certs", || {
            super::control_plane::upload_certs(&admin, plan, &key)
        });
    }
    if context.runs(InitPhase::BootstrapToken) {
        context.phase("cluster-info");
        retry(context, "cluster-info", || cluster_info(&admin, plan));
        context.phase("bootstrap-token");
        retry(context, "bootstrap-token", || bootstrap_token(&admin, plan));
    }
    if context.runs(InitPhase::ShowJoinCommand) {
        context.say(&format!(
            "join workers with: bootstrap join {} --token <token> --discovery-token-ca-cert-hash {}",
            plan.endpoint_url().trim_start_matches("https://"),
            ca_hash(plan).unwrap_or_else(|e| format!("<{e}>"))
        ));
    }
    register_local(context, plan);
}

/// A joined control plane: its apiserver serves, then it registers.
pub(super) fn after_control_plane_join(context: &Context, plan: &ControlPlanePlan) {
    wait_control_plane(context, plan);
    register_local(context, plan);
}

fn register_local(context: &Context, plan: &ControlPlanePlan) {
    let kubelet = retry(context, "register", || {
        local_client(plan, KubeconfigFile::Kubelet)
    });
    let lb = start_api_lb(context, &plan.endpoint_url());
    register_and_heartbeat(context, &kubelet, lb.as_ref());
}

/// `wait-control-plane`: the local apiserver answers `/readyz`; returns a
/// `system:masters` client of it.
fn wait_control_plane(context: &Context, plan: &ControlPlanePlan) -> KubeClient {
    context.phase("wait-control-plane");
    retry(context, "wait-control-plane", || {
        let client = local_client(plan, KubeconfigFile::SuperAdmin)?;
        match client.request("GET", "/readyz", None) {
            Ok((200, _)) => Ok(client),
            Ok((status, body)) => Err(format!(
                "apiserver not ready: /readyz answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )),
            Err(e) => Err(format!("apiserver not ready: {e}")),
        }
    })
}

/// A worker joining through `[join]`.
pub(super) fn join(context: &Context) {
    let Some(join) = context.config.join.clone() else {
        return;
    };
    let endpoint = join.endpoint.to_string();
    context.agent.update_cluster(|status| {
        status.endpoint = Some(format!("https://{endpoint}"));
    });
    if let Err(error) = super::link_kubernetes_dir() {
        context.failed("join", &error);
    }
    let kubeconfig_path = Path::new(plan::KUBERNETES_DIR).join(KubeconfigFile::Kubelet.file_name());
    let client = match KubeClient::from_kubeconfig(&kubeconfig_path) {
        // Joined on an earlier boot: the node's credentials are on STATE.
        Ok(client) => client,
        Err(_) => {
            let info = discover(context, &join);
            context.phase("tls-bootstrap");
            let credentials = retry(context, "tls-bootstrap", || {
                let client = info
                    .bootstrap_client(&join.token)
                    .map_err(|e| e.to_string())?;
                cairn_cluster::tls_bootstrap::request_node_certificate(
                    &client,
                    &context.node_name,
                    CSR_DEADLINE,
                )
                .map_err(|e| e.to_string())
            });
            context.say(&format!(
                "client certificate issued through {}",
                credentials.csr_name
            ));
            retry(context, "tls-bootstrap", || {
                let kubeconfig = credentials
                    .kubeconfig(&info.server, &info.ca_pem)
                    .to_yaml()
                    .map_err(|e| e.to_string())?;
                write_node_credentials(&info.ca_pem, &kubeconfig)?;
                KubeClient::from_kubeconfig(&kubeconfig_path).map_err(|e| e.to_string())
            })
        }
    };
    // From here on the node reaches the apiservers through its own load
    // balancer, which rides out VIP moves and dead control planes.
    let lb = start_api_lb(context, client.server_url());
    let client = match &lb {
        Some(_) => retry(context, "register", || client_through_lb(&kubeconfig_path)),
        None => client,
    };
    register_and_heartbeat(context, &client, lb.as_ref());
}

/// `discovery`: `cluster-info` checked against the CA pin and the token's
/// signature, retried until it passes.
pub(super) fn discover(context: &Context, join: &JoinConfig) -> ClusterInfo {
    context.phase("discovery");
    let endpoint = join.endpoint.to_string();
    let info = retry(context, "discovery", || {
        cairn_cluster::discovery::discover(
            &endpoint,
            &join.token,
            join.discovery_token_ca_cert_hash.as_str(),
        )
        .map_err(|e| e.to_string())
    });
    context.say(&format!(
        "cluster CA matches {}; API server {}",
        join.discovery_token_ca_cert_hash.as_str(),
        info.server
    ));
    info
}

fn write_node_credentials(ca_pem: &str, kubeconfig: &str) -> Result<(), String> {
    let pki = Path::new(plan::KUBERNETES_DIR).join("pki");
    std::fs::create_dir_all(&pki).map_err(|e| format!("creating {}: {e}", pki.display()))?;
    let ca = pki.join("ca.crt");
    write_atomic(&ca, ca_pem.as_bytes(), 0o644)
        .map_err(|e| format!("writing {}: {e}", ca.display()))?;
    let path = Path::new(plan::KUBERNETES_DIR).join(KubeconfigFile::Kubelet.file_name());
    write_atomic(&path, kubeconfig.as_bytes(), 0o600)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A client for this node's own apiserver with the identity of `file`.
fn local_client(plan: &ControlPlanePlan, file: KubeconfigFile) -> Result<KubeClient, String> {
    let path = plan
        .paths
        .kubeconfig(file)
        .ok_or_else(|| "no kubeconfig directory".to_owned())?;
    kubeconfig_client(&path, &plan.local_url())
}

/// The credentials and CA of the kubeconfig at `path`, used against
/// `server` instead of the one it names.
pub(super) fn kubeconfig_client(path: &Path, server: &str) -> Result<KubeClient, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let creds = Kubeconfig::parse(&text)
        .and_then(|k| k.current_credentials())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    KubeClient::new(
        server,
        ServerTrust::CaPem(creds.ca_pem.into_bytes()),
        Credentials::ClientCertificate {
            cert_pem: creds.client_cert_pem.into_bytes(),
            key_pem: creds.client_key_pem.into_bytes(),
        },
    )
    .map_err(|e| e.to_string())
}

fn ca_pem(plan: &ControlPlanePlan) -> Result<String, String> {
    let path = plan.paths.cert("ca");
    std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn ca_hash(plan: &ControlPlanePlan) -> Result<String, String> {
    cairn_pki::ca_cert_hash(&ca_pem(plan)?).map_err(|e| e.to_string())
}

/// Creates `object` unless an object of that name exists.
pub(super) fn create_missing<K>(
    client: &KubeClient,
    namespace: &str,
    object: &K,
) -> Result<(), String>
where
    K: k8s_openapi::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    match client.create(Some(namespace), object) {
        Ok(_) => Ok(()),
        Err(e) if e.is_already_exists() => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// `kube-system/kubeadm-config`: the cluster's settings, for joiners and
/// for `kubeadm config view`-style tools.
fn upload_config(client: &KubeClient, plan: &ControlPlanePlan) -> Result<(), String> {
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("kubeadm-config".into()),
            namespace: Some("kube-system".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "ClusterConfiguration".to_owned(),
            plan.cluster_configuration().to_yaml()?,
        )])),
        ..ConfigMap::default()
    };
    create_missing(client, "kube-system", &map)
}

/// `kube-public/cluster-info`: the endpoint and CA that joiners fetch
/// anonymously; the bootstrap signer adds a signature per token.
fn cluster_info(client: &KubeClient, plan: &ControlPlanePlan) -> Result<(), String> {
    let ca = ca_pem(plan)?;
    let kubeconfig = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - cluster:\n    certificate-authority-data: {}\n    server: {}\n  name: \"\"\n\
         contexts: null\n\
         current-context: \"\"\n\
         preferences: {{}}\n\
         users: null\n",
        base64::engine::general_purpose::STANDARD.encode(ca.as_bytes()),
        plan.endpoint_url(),
    );
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("cluster-info".into()),
            namespace: Some("kube-public".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("kubeconfig".to_owned(), kubeconfig)])),
        ..ConfigMap::default()
    };
    create_missing(client, "kube-public", &map)
}

/// The init token as kubeadm stores it: `kube-system/bootstrap-token-<id>`.
fn bootstrap_token(client: &KubeClient, plan: &ControlPlanePlan) -> Result<(), String> {
    let secret = token_secret(
        &plan.token,
        TOKEN_TTL,
        true,
        "The default bootstrap token generated by Cairn at init.",
    );
    create_missing(client, "kube-system", &secret)
}

/// A bootstrap-token Secret in kubeadm's layout, valid for `ttl`; `usable`
/// tokens authenticate joiners (kubeadm's default group) and sign
/// `cluster-info`, the others only carry a TTL.
pub(super) fn token_secret(
    token: &cairn_pki::BootstrapToken,
    ttl: time::Duration,
    usable: bool,
    description: &str,
) -> Secret {
    let (usages, groups): (&[&str], &[&str]) = if usable {
        (
            &["authentication", "signing"],
            &[cairn_cluster::token::DEFAULT_NODE_TOKEN_GROUP],
        )
    } else {
        (&[], &[])
    };
    cairn_cluster::token::TokenSecret {
        token,
        expires: Some(time::OffsetDateTime::now_utc() + ttl),
        usages,
        groups,
        description: Some(description),
    }
    .to_secret()
}

/// Registers the Node, then renews its Lease and Ready condition for as
/// long as the node runs.
fn register_and_heartbeat(context: &Context, client: &KubeClient, lb: Option<&ApiLoadBalancer>) {
    context.phase("register");
    let registration = registration(context);
    retry(context, "register", || {
        cairn_cluster::node::register(client, &registration).map_err(|e| e.to_string())
    });
    let mut heartbeat = Heartbeat::new(context.node_name.clone());
    let mut member = false;
    loop {
        let ready = containerd_ready(context);
        match heartbeat.tick(client, ready) {
            Ok(_) if !member => {
                member = true;
                context.say(&format!("node {} is registered", context.node_name));
                context.phase("registered");
                context.agent.update_cluster(|status| status.member = true);
            }
            Ok(_) => {}
            Err(error) => context.failed("heartbeat", &error.to_string()),
        }
        if let Some(lb) = lb {
            refresh_lb_backends(lb, client);
        }
        std::thread::sleep(HEARTBEAT_INTERVAL);
    }
}

/// The node-local load balancer on 127.0.0.1:7445, first aimed at the
/// control-plane endpoint (`https://host:port`); `None` when it cannot
/// start (the node then talks to the endpoint directly).
fn start_api_lb(context: &Context, endpoint_url: &str) -> Option<ApiLoadBalancer> {
    let endpoint = endpoint_url.trim_start_matches("https://");
    let backends: Vec<SocketAddr> = endpoint
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    match ApiLoadBalancer::start(lb::DEFAULT_LISTEN, backends) {
        Ok(balancer) => {
            context.say(&format!(
                "apiserver load balancer on {} (first backend {endpoint})",
                balancer.local_addr()
            ));
            Some(balancer)
        }
        Err(error) => {
            context.failed("api-lb", &format!("not started: {error}"));
            None
        }
    }
}

/// The node's kubeconfig credentials, through the load balancer (the
/// apiserver certificates name 127.0.0.1).
fn client_through_lb(kubeconfig_path: &Path) -> Result<KubeClient, String> {
    kubeconfig_client(kubeconfig_path, &format!("https://{}", lb::DEFAULT_LISTEN))
}

/// Every control-plane Node's `InternalIP`:6443 becomes a backend.
fn refresh_lb_backends(lb: &ApiLoadBalancer, client: &KubeClient) {
    let params = ListParams::labels(cairn_cluster::node::CONTROL_PLANE_ROLE);
    let Ok(nodes) = client.list::<k8s_openapi::api::core::v1::Node>(None, &params) else {
        return;
    };
    let mut backends: Vec<SocketAddr> = nodes
        .items
        .iter()
        .filter_map(|node| {
            node.status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse::<std::net::IpAddr>()
                .ok()
        })
        .map(|ip| SocketAddr::new(ip, cairn_config::model::DEFAULT_APISERVER_PORT))
        .collect();
    backends.sort();
    if !backends.is_empty()
        && backends
            != lb
                .backends_health()
                .iter()
                .map(|(a, _)| *a)
                .collect::<Vec<_>>()
    {
        lb.set_backends(backends);
    }
}

fn containerd_ready(context: &Context) -> Result<(), String> {
    match context.supervisor.status().get("containerd") {
        Some(status) if status.ready && status.state == cairn_node_api::ServiceState::Running => {
            Ok(())
        }
        Some(status) => Err(format!("containerd is {:?}", status.state)),
        None => Err("containerd is not supervised".to_owned()),
    }
}

fn registration(context: &Context) -> NodeRegistration {
    let node = &context.config.node;
    let mut registration = NodeRegistration::new(
        context.node_name.clone(),
        context.address,
        context.node_name.as_str(),
        super::host::resources(),
        super::host::system_info(context),
    );
    if node.role == NodeRole::ControlPlane && context.runs(InitPhase::MarkControlPlane) {
        registration = registration.control_plane();
    }
    registration.labels.extend(
        node.labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    registration.taints.extend(
        node.taints
            .iter()
            .map(|t| k8s_openapi::api::core::v1::Taint {
                key: t.key.to_string(),
                value: t.value.as_ref().map(ToString::to_string),
                effect: t.effect.to_string(),
                time_added: None,
            }),
    );
    registration
}
