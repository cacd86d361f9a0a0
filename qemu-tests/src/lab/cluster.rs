//! Forming a Kubernetes cluster in a lab, the way a user would with
//! machine configs and kubeadm-style join material.
//!
//! `node-1` gets an init config (`[cluster]` with the lab's bootstrap
//! token and, optionally, the VIP on `eth0`); the other nodes get no config
//! at first (the HTTP server answers 404 and they keep asking). Once
//! `node-1` reports itself a cluster member, [`form`] reads its CA through
//! the node API, computes the `sha256:` pin and serves every other node a
//! `[join]` config with endpoint, token and pin. It then waits until every
//! node is a member, writes `<lab>/admin.conf` (the cluster's admin
//! kubeconfig pointed at a forward on 127.0.0.1) and waits until the API
//! lists every node as a Node.
//!
//! Nothing here knows the lab's processes: configs are handed out through
//! a callback, so the CLI (through the lab daemon's socket) and the tests
//! (on a [`Lab`](super::Lab) directly) share it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_pki::BootstrapToken;
use serde::{Deserialize, Serialize};

use super::ready::{self, Auth};
use super::{AdminCredentials, Lab, LabError, LabNode, LabState};

/// The lab's virtual IP: in the lab subnet, below the node addresses and
/// outside dnsmasq's pool.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 10);
/// etcd's client port, forwarded for control-plane checks.
pub const ETCD_PORT: u16 = 2379;
/// The interface of a lab node (virtio-net, kernel naming).
pub const NODE_INTERFACE: &str = "eth0";
/// Where node-agent keeps the cluster CA and the admin kubeconfig.
pub const CA_PATH: &str = "/etc/kubernetes/pki/ca.crt";
pub const ADMIN_CONF_PATH: &str = "/etc/kubernetes/admin.conf";
/// How often nodes and the API are asked while forming.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The cluster a lab forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabCluster {
    /// The bootstrap token `node-1` creates and joiners present.
    pub token: String,
    /// Encrypts the shared CA files for control-plane joiners (64 hex).
    #[serde(default)]
    pub certificate_key: String,
    /// Control-plane nodes (`node-1` … `node-N`).
    pub control_planes: usize,
    /// The virtual IP in front of the apiservers, if any.
    pub vip: Option<Ipv4Addr>,
    /// 127.0.0.1 forward to the control-plane endpoint (VIP or node-1).
    pub api_forward: Option<SocketAddr>,
}

impl LabCluster {
    /// A cluster with a fresh token.
    pub fn new(control_planes: usize, vip: bool) -> Self {
        Self {
            token: BootstrapToken::generate().to_string(),
            certificate_key: cairn_pki::CertificateKey::generate().to_string(),
            control_planes: control_planes.max(1),
            vip: vip.then_some(VIP),
            api_forward: None,
        }
    }

    /// `HOST:PORT` every node reaches the apiservers at.
    pub fn endpoint(&self, first_control_plane: Ipv4Addr) -> String {
        format!("{}:6443", self.vip.unwrap_or(first_control_plane))
    }

    /// `[cluster]` of the first control-plane node.
    pub fn init_section(&self) -> String {
        let mut text = format!(
            "\n[cluster]\ntoken = \"{}\"\ncertificate-key = \"{}\"\n",
            self.token, self.certificate_key
        );
        text.push_str(&self.vip_section());
        text
    }

    fn vip_section(&self) -> String {
        self.vip
            .map(|vip| {
                format!("\n[cluster.vip]\naddress = \"{vip}\"\ninterface = \"{NODE_INTERFACE}\"\n")
            })
            .unwrap_or_default()
    }

    /// `[join]` of every other node (and, for control planes, the VIP
    /// and the certificate key).
    pub fn join_section(&self, endpoint: &str, ca_cert_hash: &str, control_plane: bool) -> String {
        let mut text = String::new();
        if control_plane {
            text.push_str(&self.vip_section());
        }
        text.push_str(&format!(
            "\n[join]\nendpoint = \"{endpoint}\"\ntoken = \"{}\"\ndiscovery-token-ca-cert-hash = \"{ca_cert_hash}\"\n",
            self.token
        ));
        if control_plane {
            text.push_str(&format!(
                "control-plane = true\ncertificate-key = \"{}\"\n",
                self.certificate_key
            ));
        }
        text
    }
}

/// Path of the lab's admin kubeconfig.
pub fn kubeconfig_path(dir: &Path) -> PathBuf {
    dir.join("admin.conf")
}

/// What [`form`] measured.
#[derive(Debug, Clone)]
pub struct Formed {
    /// Node → time from the start of [`form`] until it was a member.
    pub members: Vec<(String, Duration)>,
    /// Time until the API listed every node.
    pub all_listed: Duration,
    /// The admin kubeconfig written for the host.
    pub kubeconfig: PathBuf,
}

/// Forms the cluster of a lab whose `node-1` boots with an init config.
/// `serve_config(node, text)` makes the lab serve `text` to `node`.
pub fn form(
    state: &LabState,
    admin: &AdminCredentials,
    cluster: &LabCluster,
    serve_config: &mut dyn FnMut(&str, String) -> Result<(), LabError>,
    timeout: Duration,
) -> Result<Formed, LabError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let first = state.nodes.first().ok_or_else(|| LabError::Config {
        node: "(all)".into(),
        message: "a lab without nodes has no cluster".into(),
    })?;
    let mut members = Vec::new();
    wait_member(state, first, admin, deadline)?;
    members.push((first.name.clone(), started.elapsed()));

    let client = ready::client(first, admin, Auth::Admin).map_err(|e| timeout_error(first, e))?;
    let ca_pem = client
        .read(CA_PATH)
        .map_err(|e| timeout_error(first, format!("reading {CA_PATH}: {e}")))?;
    let ca_pem = String::from_utf8_lossy(&ca_pem).into_owned();
    let hash = cairn_pki::ca_cert_hash(&ca_pem).map_err(|e| LabError::Config {
        node: first.name.clone(),
        message: format!("the CA at {CA_PATH} does not parse: {e}"),
    })?;
    let endpoint = cluster.endpoint(first.ip);
    for node in &state.nodes[1..] {
        let base =
            super::default_config(&state.name, &node.name, node.role, node.ip, &admin.ca_pem)?;
        let control_plane = node.role == cairn_config::NodeRole::ControlPlane;
        serve_config(
            &node.name,
            base + &cluster.join_section(&endpoint, &hash, control_plane),
        )?;
    }
    for node in &state.nodes[1..] {
        wait_member(state, node, admin, deadline)?;
        members.push((node.name.clone(), started.elapsed()));
    }

    let admin_conf = client
        .read(ADMIN_CONF_PATH)
        .map_err(|e| timeout_error(first, format!("reading {ADMIN_CONF_PATH}: {e}")))?;
    let server = cluster
        .api_forward
        .or_else(|| first.forwards.get(&super::KUBE_PORT).copied())
        .map(|addr| format!("https://{addr}"))
        .ok_or_else(|| LabError::Config {
            node: first.name.clone(),
            message: "no forward to the apiserver".into(),
        })?;
    let kubeconfig = write_kubeconfig(&state.dir, &admin_conf, &server)?;

    let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    let mut last: String;
    loop {
        match list_nodes(&kubeconfig) {
            Ok(listed) if names.iter().all(|n| listed.contains(n)) => break,
            Ok(listed) => last = format!("the API lists {listed:?}"),
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(LabError::NotReady(format!(
                "the API at {server} did not list every node ({names:?}) within {} s: {last}",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Ok(Formed {
        members,
        all_listed: started.elapsed(),
        kubeconfig,
    })
}

fn timeout_error(node: &LabNode, message: String) -> LabError {
    LabError::NotReady(format!(
        "{}: {message}\n--- console tail of {} ---\n{}",
        node.name,
        node.name,
        node.console_tail(40)
    ))
}

/// Waits until `node` reports itself a registered member of the cluster.
fn wait_member(
    state: &LabState,
    node: &LabNode,
    admin: &AdminCredentials,
    deadline: Instant,
) -> Result<(), LabError> {
    let mut last: String;
    loop {
        let fresh = LabState::load(&state.dir).unwrap_or_else(|_| state.clone());
        let current = fresh.node(&node.name).unwrap_or(node);
        match ready::status(current, admin) {
            Ok(status) => match &status.cluster {
                Some(cluster) if cluster.member => return Ok(()),
                Some(cluster) => {
                    last = format!(
                        "{} phase {}{}",
                        cluster.action,
                        cluster.phase,
                        cluster
                            .error
                            .as_ref()
                            .map(|e| format!(", error: {e}"))
                            .unwrap_or_default()
                    );
                }
                None => last = ready::describe(&status),
            },
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(timeout_error(
                node,
                format!("not a cluster member before the deadline; last seen: {last}"),
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Writes the node's admin kubeconfig with `server` in place of the
/// in-lab endpoint (the apiserver certificate covers 127.0.0.1).
fn write_kubeconfig(dir: &Path, admin_conf: &[u8], server: &str) -> Result<PathBuf, LabError> {
    let text = String::from_utf8_lossy(admin_conf);
    let mut config =
        cairn_pki::kubeconfig::Kubeconfig::parse(&text).map_err(|e| LabError::Config {
            node: "node-1".into(),
            message: format!("{ADMIN_CONF_PATH} does not parse: {e}"),
        })?;
    for cluster in &mut config.clusters {
        server.clone_into(&mut cluster.cluster.server);
    }
    let yaml = config.to_yaml().map_err(|e| LabError::Config {
        node: "node-1".into(),
        message: format!("rendering the kubeconfig: {e}"),
    })?;
    let path = kubeconfig_path(dir);
    let temporary = dir.join(".admin.conf.tmp");
    std::fs::write(&temporary, yaml).map_err(|e| LabError::io(&temporary, e))?;
    set_private(&temporary)?;
    std::fs::rename(&temporary, &path).map_err(|e| LabError::io(&path, e))?;
    Ok(path)
}

fn set_private(path: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| LabError::io(path, e))
}

/// Names of the Nodes the API lists, through the admin kubeconfig.
pub fn list_nodes(kubeconfig: &Path) -> Result<Vec<String>, String> {
    let client = cairn_cluster::client::KubeClient::from_kubeconfig(kubeconfig)
        .map_err(|e| e.to_string())?;
    let nodes = client
        .list::<k8s_openapi::api::core::v1::Node>(None, &Default::default())
        .map_err(|e| e.to_string())?;
    Ok(nodes
        .items
        .into_iter()
        .filter_map(|node| node.metadata.name)
        .collect())
}

impl Lab {
    /// Forms the lab's cluster ([`form`]), serving the join configs
    /// directly.
    pub fn form_cluster(&mut self, timeout: Duration) -> Result<Formed, LabError> {
        let cluster = self.state.cluster.clone().ok_or_else(|| LabError::Config {
            node: "(all)".into(),
            message: "this lab was not made to form a cluster (LabSpec::with_cluster)".into(),
        })?;
        let state = self.state.clone();
        let admin = self.admin.clone();
        form(
            &state,
            &admin,
            &cluster,
            &mut |node, text| self.set_config(node, Some(text)),
            timeout,
        )
    }
}
