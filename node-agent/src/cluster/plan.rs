//! What a control-plane node runs, decided from the machine config alone:
//! the PKI spec and the command lines of etcd, the apiserver, the
//! controller manager and the VIP manager, in kubeadm's layout
//! (`/etc/kubernetes/pki`, `/etc/kubernetes/*.conf`, `/var/lib/etcd`).
//!
//! Pure: nothing here touches the host, so every flag is unit-tested.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cairn_config::{MachineConfig, VipConfig};
use cairn_pki::{BootstrapToken, ClusterPkiSpec, ControlPlaneEndpoint, KubeconfigFile, NodeName};
use cairn_pki::{Cidr, PkiPaths};

/// The Kubernetes version the control plane serves and nodes report.
pub const KUBERNETES_VERSION: &str = "v1.33.0";
/// Where the cluster's files live on a node, as kubeadm lays them out.
pub const KUBERNETES_DIR: &str = "/etc/kubernetes";
/// The persistent directory `/etc/kubernetes` points at (on STATE).
pub const KUBERNETES_STATE_DIR: &str = "/var/lib/cairn/kubernetes";
/// etcd's data directory.
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";
/// The Debian etcd binary the image bundles.
pub const ETCD_BINARY: &str = "/usr/bin/etcd";
/// Cairn's multi-call control-plane binary.
pub const CONTROL_PLANE_BINARY: &str = "/usr/bin/control-plane";
/// etcd's client port.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer port.
pub const ETCD_PEER_PORT: u16 = 2380;
/// Where a joined control plane keeps the cluster's `ClusterConfiguration`
/// (from `kubeadm-config`), on STATE.
pub fn joined_cluster_configuration_path() -> PathBuf {
    Path::new(KUBERNETES_DIR).join("cluster-configuration.yaml")
}

/// Where `control-plane vip` reports who holds the address.
pub const VIP_STATUS_FILE: &str = "/run/cairn/vip.json";

/// The cluster-wide settings a control plane publishes in
/// `kube-system/kubeadm-config` (kubeadm's `ClusterConfiguration`, the
/// fields Cairn uses) and a joining control plane adopts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfiguration {
    pub api_version: String,
    pub kind: String,
    pub cluster_name: String,
    pub control_plane_endpoint: String,
    pub kubernetes_version: String,
    pub networking: Networking,
    pub certificates_dir: String,
}

/// `networking` of [`ClusterConfiguration`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    pub dns_domain: String,
    pub pod_subnet: String,
    pub service_subnet: String,
}

impl ClusterConfiguration {
    /// Parses the `ClusterConfiguration` key of `kubeadm-config`.
    pub fn parse(yaml: &str) -> Result<Self, String> {
        serde_yaml::from_str(yaml)
            .map_err(|e| format!("kube-system/kubeadm-config ClusterConfiguration: {e}"))
    }

    /// YAML for `kubeadm-config`.
    pub fn to_yaml(&self) -> Result<String, String> {
        serde_yaml::to_string(self).map_err(|e| e.to_string())
    }
}

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// One etcd member: its name and peer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    pub name: String,
    pub peer_url: String,
}

/// Whether etcd starts a new cluster or joins an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdClusterState {
    New,
    Existing,
}

/// Everything a control-plane node derives from its config.
#[derive(Debug, Clone)]
pub struct ControlPlanePlan {
    pub node_name: NodeName,
    pub address: IpAddr,
    pub pki: ClusterPkiSpec,
    pub paths: PkiPaths,
    pub service_cidr: Cidr,
    pub pod_network_cidr: Cidr,
    pub vip: Option<VipConfig>,
    /// The token created at init (the config's, else a random one).
    pub token: BootstrapToken,
}

impl ControlPlanePlan {
    /// The plan of `node_name` at `address` (its advertise address).
    pub fn new(config: &MachineConfig, node_name: NodeName, address: IpAddr) -> Self {
        let cluster = config.cluster.clone().unwrap_or_default();
        let mut pki = ClusterPkiSpec::new(node_name.clone(), address);
        pki.cluster_name = cluster.effective_name().to_owned();
        pki.service_cidrs = vec![cluster.effective_service_cidr()];
        pki.dns_domain = cluster.effective_service_dns_domain();
        pki.extra_sans = cluster.apiserver_cert_extra_sans.clone();
        pki.control_plane_endpoint = Some(endpoint(config, address));
        if let Some(vip) = &cluster.vip {
            pki.extra_sans
                .push(cairn_pki::SubjectAltName::Ip(vip.address));
        }
        Self {
            node_name,
            address,
            pki,
            paths: PkiPaths::new(
                Path::new(KUBERNETES_DIR).join("pki"),
                Some(PathBuf::from(KUBERNETES_DIR)),
            ),
            service_cidr: cluster.effective_service_cidr(),
            pod_network_cidr: cluster.effective_pod_network_cidr(),
            vip: cluster.vip.clone(),
            token: cluster
                .token
                .clone()
                .unwrap_or_else(BootstrapToken::generate),
        }
    }

    /// The plan of a control plane joining a cluster: its own name,
    /// address, VIP and extra SANs from its config, everything cluster-wide
    /// from the cluster's `kubeadm-config`.
    pub fn for_join(
        config: &MachineConfig,
        node_name: NodeName,
        address: IpAddr,
        cluster: &ClusterConfiguration,
    ) -> Result<Self, String> {
        let mut plan = Self::new(config, node_name, address);
        let parse_cidr = |text: &str, key: &str| {
            text.parse::<Cidr>()
                .map_err(|e| format!("kubeadm-config networking.{key} {text:?}: {e}"))
        };
        plan.service_cidr = parse_cidr(&cluster.networking.service_subnet, "serviceSubnet")?;
        plan.pod_network_cidr = parse_cidr(&cluster.networking.pod_subnet, "podSubnet")?;
        plan.pki.service_cidrs = vec![plan.service_cidr];
        plan.pki.dns_domain = cluster
            .networking
            .dns_domain
            .parse()
            .map_err(|e| format!("kubeadm-config networking.dnsDomain: {e}"))?;
        plan.pki.cluster_name.clone_from(&cluster.cluster_name);
        plan.pki.control_plane_endpoint = Some(
            cluster
                .control_plane_endpoint
                .parse()
                .map_err(|e| format!("kubeadm-config controlPlaneEndpoint: {e}"))?,
        );
        Ok(plan)
    }

    /// What this (initialising) node publishes in `kubeadm-config`.
    pub fn cluster_configuration(&self) -> ClusterConfiguration {
        ClusterConfiguration {
            api_version: "kubeadm.k8s.io/v1beta4".into(),
            kind: "ClusterConfiguration".into(),
            cluster_name: self.pki.cluster_name.clone(),
            control_plane_endpoint: self
                .endpoint_url()
                .trim_start_matches("https://")
                .to_owned(),
            kubernetes_version: KUBERNETES_VERSION.to_owned(),
            networking: Networking {
                dns_domain: self.pki.dns_domain.to_string(),
                pod_subnet: self.pod_network_cidr.to_string(),
                service_subnet: self.service_cidr.to_string(),
            },
            certificates_dir: self.paths.cert_dir.display().to_string(),
        }
    }

    /// The URL every node and client uses (VIP or endpoint).
    pub fn endpoint_url(&self) -> String {
        self.pki.endpoint_url()
    }

    /// This node's own apiserver.
    pub fn local_url(&self) -> String {
        self.pki.local_url()
    }

    fn pki_file(&self, relative: &str) -> String {
        self.paths.cert_dir.join(relative).display().to_string()
    }

    fn kubeconfig(&self, file: KubeconfigFile) -> String {
        Path::new(KUBERNETES_DIR)
            .join(file.file_name())
            .display()
            .to_string()
    }

    /// This node as an etcd member.
    pub fn etcd_member(&self) -> EtcdMember {
        EtcdMember {
            name: self.node_name.to_string(),
            peer_url: format!("https://{}", socket(self.address, ETCD_PEER_PORT)),
        }
    }

    /// etcd with kubeadm's flags: TLS with client certificates for clients
    /// and peers, listening on loopback and the node address.
    pub fn etcd(&self, members: &[EtcdMember], state: EtcdClusterState) -> CommandLine {
        let client = format!("https://{}", socket(self.address, ETCD_CLIENT_PORT));
        let peer = self.etcd_member().peer_url;
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let state = match state {
            EtcdClusterState::New => "new",
            EtcdClusterState::Existing => "existing",
        };
        let args = vec![
            format!("--name={}", self.node_name),
            format!("--data-dir={ETCD_DATA_DIR}"),
            format!("--advertise-client-urls={client}"),
            // Every address, the VIP included: a joining control plane
            // reaches the cluster's etcd through the endpoint it knows.
            format!("--listen-client-urls=https://0.0.0.0:{ETCD_CLIENT_PORT}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-state={state}"),
            "--listen-metrics-urls=http://127.0.0.1:2381".to_owned(),
            format!("--cert-file={}", self.pki_file("etcd/server.crt")),
            format!("--key-file={}", self.pki_file("etcd/server.key")),
            "--client-cert-auth=true".to_owned(),
            format!("--trusted-ca-file={}", self.pki_file("etcd/ca.crt")),
            format!("--peer-cert-file={}", self.pki_file("etcd/peer.crt")),
            format!("--peer-key-file={}", self.pki_file("etcd/peer.key")),
            "--peer-client-cert-auth=true".to_owned(),
            format!("--peer-trusted-ca-file={}", self.pki_file("etcd/ca.crt")),
            "--snapshot-count=10000".to_owned(),
        ];
        CommandLine {
            program: PathBuf::from(ETCD_BINARY),
            args,
        }
    }

    /// The local etcd member and the client certificate the apiserver and
    /// the VIP manager present to it.
    fn etcd_client_flags(&self) -> [String; 4] {
        [
            format!("--etcd-servers=https://127.0.0.1:{ETCD_CLIENT_PORT}"),
            format!("--etcd-cafile={}", self.pki_file("etcd/ca.crt")),
            format!(
                "--etcd-certfile={}",
                self.pki_file("apiserver-etcd-client.crt")
            ),
            format!(
                "--etcd-keyfile={}",
                self.pki_file("apiserver-etcd-client.key")
            ),
        ]
    }

    /// `control-plane apiserver` with kube-apiserver's flags, on the local
    /// etcd member.
    pub fn apiserver(&self) -> CommandLine {
        let mut args = vec![
            "apiserver".to_owned(),
            format!("--advertise-address={}", self.address),
            format!("--secure-port={}", self.pki.bind_port),
            "--bind-address=0.0.0.0".to_owned(),
            format!("--tls-cert-file={}", self.pki_file("apiserver.crt")),
            format!("--tls-private-key-file={}", self.pki_file("apiserver.key")),
            format!("--client-ca-file={}", self.pki_file("ca.crt")),
            format!("--service-account-key-file={}", self.pki_file("sa.pub")),
            format!(
                "--service-account-signing-key-file={}",
                self.pki_file("sa.key")
            ),
            format!(
                "--service-account-issuer=https://kubernetes.default.svc.{}",
                self.pki.dns_domain
            ),
            format!("--service-cluster-ip-range={}", self.service_cidr),
        ];
        args.extend(self.etcd_client_flags());
        CommandLine {
            program: PathBuf::from(CONTROL_PLANE_BINARY),
            args,
        }
    }

    /// `control-plane controller-manager` with kube-controller-manager's
    /// flags.
    pub fn controller_manager(&self) -> CommandLine {
        let args = vec![
            "controller-manager".to_owned(),
            format!(
                "--kubeconfig={}",
                self.kubeconfig(KubeconfigFile::ControllerManager)
            ),
            format!("--cluster-signing-cert-file={}", self.pki_file("ca.crt")),
            format!("--cluster-signing-key-file={}", self.pki_file("ca.key")),
            format!("--root-ca-file={}", self.pki_file("ca.crt")),
        ];
        CommandLine {
            program: PathBuf::from(CONTROL_PLANE_BINARY),
            args,
        }
    }

    /// `control-plane vip` when the cluster has a virtual IP.
    pub fn vip_manager(&self) -> Option<CommandLine> {
        let vip = self.vip.as_ref()?;
        let mut args = vec![
            "vip".to_owned(),
            format!("--address={}", vip.address),
            format!("--interface={}", vip.interface),
            format!("--node-name={}", self.node_name),
            format!(
                "--health-url=https://127.0.0.1:{}/readyz",
                self.pki.bind_port
            ),
            format!("--health-cafile={}", self.pki_file("ca.crt")),
            format!("--status-file={VIP_STATUS_FILE}"),
        ];
        args.extend(self.etcd_client_flags());
        Some(CommandLine {
            program: PathBuf::from(CONTROL_PLANE_BINARY),
            args,
        })
    }
}

/// The control-plane endpoint: the config's, else the VIP, else this node.
pub fn endpoint(config: &MachineConfig, address: IpAddr) -> ControlPlaneEndpoint {
    let cluster = config.cluster.as_ref();
    if let Some(endpoint) = cluster.and_then(|c| c.control_plane_endpoint.clone()) {
        return endpoint;
    }
    let host = cluster
        .and_then(|c| c.vip.as_ref())
        .map_or(address, |vip| vip.address);
    ControlPlaneEndpoint {
        host: cairn_pki::types::Host::Ip(host),
        port: Some(cairn_config::model::DEFAULT_APISERVER_PORT),
    }
}

fn socket(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> MachineConfig {
        let text = format!(
            "[node]\nname = \"cp-1\"\nrole = \"control-plane\"\naddresses = [\"10.5.0.11/24\"]\n{extra}"
        );
        MachineConfig::parse(&text, "test.toml").expect("valid config")
    }

    fn plan(extra: &str) -> ControlPlanePlan {
        ControlPlanePlan::new(
            &config(extra),
            "cp-1".parse().expect("name"),
            "10.5.0.11".parse().expect("ip"),
        )
    }

    fn has(line: &CommandLine, arg: &str) -> bool {
        line.args.iter().any(|a| a == arg)
    }

    #[test]
    fn endpoint_defaults_to_the_node_then_the_vip_then_the_config() {
        assert_eq!(plan("").endpoint_url(), "https://10.5.0.11:6443");
        let with_vip = "[cluster.vip]\naddress = \"10.5.0.100\"\ninterface = \"eth0\"\n";
        assert_eq!(plan(with_vip).endpoint_url(), "https://10.5.0.100:6443");
        let explicit = "[cluster]\ncontrol-plane-endpoint = \"api.example.org:7443\"\n";
        assert_eq!(
            plan(explicit).endpoint_url(),
            "https://api.example.org:7443"
        );
    }

    #[test]
    fn the_vip_is_in_the_apiserver_certificate_and_gets_a_manager() {
        let plan = plan("[cluster.vip]\naddress = \"10.5.0.100\"\ninterface = \"eth0\"\n");
        assert!(plan.pki.extra_sans.contains(&cairn_pki::SubjectAltName::Ip(
            "10.5.0.100".parse().expect("ip")
        )));
        let vip = plan.vip_manager().expect("vip manager");
        assert!(has(&vip, "--address=10.5.0.100"));
        assert!(has(&vip, "--interface=eth0"));
        assert!(has(&vip, "--node-name=cp-1"));
        assert!(self::plan("").vip_manager().is_none());
    }

    #[test]
    fn etcd_listens_on_loopback_and_the_node_with_tls_everywhere() {
        let plan = plan("");
        let etcd = plan.etcd(&[plan.etcd_member()], EtcdClusterState::New);
        assert!(has(&etcd, "--listen-client-urls=https://0.0.0.0:2379"));
        assert!(has(&etcd, "--advertise-client-urls=https://10.5.0.11:2379"));
        assert!(has(&etcd, "--initial-cluster=cp-1=https://10.5.0.11:2380"));
        assert!(has(&etcd, "--initial-cluster-state=new"));
        assert!(has(&etcd, "--client-cert-auth=true"));
        assert!(has(&etcd, "--peer-client-cert-auth=true"));
    }

    #[test]
    fn apiserver_flags_follow_the_config() {
        let plan = plan("[cluster]\nservice-cidr = \"10.100.0.0/16\"\n");
        let apiserver = plan.apiserver();
        assert!(has(&apiserver, "--service-cluster-ip-range=10.100.0.0/16"));
        assert!(has(&apiserver, "--advertise-address=10.5.0.11"));
        assert!(has(
            &apiserver,
            "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt"
        ));
    }

    #[test]
    fn a_joining_control_plane_adopts_the_published_cluster_configuration() {
        let init = plan(
            "[cluster]\nservice-cidr = \"10.100.0.0/16\"\npod-network-cidr = \"10.50.0.0/16\"\n[cluster.vip]\naddress = \"10.5.0.10\"\ninterface = \"eth0\"\n",
        );
        let published = init.cluster_configuration();
        let yaml = published.to_yaml().expect("yaml");
        let parsed = ClusterConfiguration::parse(&yaml).expect("parse");
        assert_eq!(parsed, published);
        let joiner_config = MachineConfig::parse(
            "[node]\nname = \"cp-2\"\nrole = \"control-plane\"\naddresses = [\"10.5.0.12/24\"]\n[cluster.vip]\naddress = \"10.5.0.10\"\ninterface = \"eth0\"\n[join]\nendpoint = \"10.5.0.10:6443\"\ntoken = \"abcdef.0123456789abcdef\"\ndiscovery-token-ca-cert-hash = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\ncontrol-plane = true\ncertificate-key = \"0000000000000000000000000000000000000000000000000000000000000000\"\n",
            "cp-2.toml",
        )
        .expect("joiner config");
        let joiner = ControlPlanePlan::for_join(
            &joiner_config,
            "cp-2".parse().expect("name"),
            "10.5.0.12".parse().expect("ip"),
            &parsed,
        )
        .expect("plan");
        assert_eq!(joiner.service_cidr.to_string(), "10.100.0.0/16");
        assert_eq!(joiner.endpoint_url(), "https://10.5.0.10:6443");
        assert!(has(&joiner.apiserver(), "--advertise-address=10.5.0.12"));
    }

    #[test]
    fn the_configured_token_is_kept() {
        let plan = plan("[cluster]\ntoken = \"abcdef.0123456789abcdef\"\n");
        assert_eq!(plan.token.to_string(), "abcdef.0123456789abcdef");
    }
}
