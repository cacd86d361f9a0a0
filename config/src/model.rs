//! The validated machine config. Every value here has passed its own checks
//! and the cross-field rules listed in [the module documentation](super).
//! Build one with [`MachineConfig::parse`](crate::MachineConfig::parse) or
//! [`MachineConfig::load`](crate::MachineConfig::load).

use std::collections::BTreeMap;
use std::net::IpAddr;

use cairn_images::profile::{HttpUrl, ModuleName, SysctlKey, SysctlValue};
use cairn_pki::{
    BootstrapToken, CertificateKey, Cidr, ControlPlaneEndpoint, DnsDomain, NodeName, SubjectAltName,
};

use crate::types::{
    CaBundle, CaCertHash, ClusterName, ImageReference, InitPhase, InterfaceAddress, InterfaceName,
    LabelKey, LabelValue, NodeRole, RegistryHost, Snapshotter, TaintEffect,
};

/// kubeadm's default cluster name.
pub const DEFAULT_CLUSTER_NAME: &str = "kubernetes";
/// The pod network used when `cluster.pod-network-cidr` is not set.
pub const DEFAULT_POD_NETWORK_CIDR: &str = "10.244.0.0/16";
/// kubeadm's default service network.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
/// The apiserver port used when an endpoint gives none.
pub const DEFAULT_APISERVER_PORT: u16 = 6443;

/// One node's machine config: everything node-agent needs to configure the
/// host and form or join a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineConfig {
    /// `[cluster]`: cluster-wide settings. Optional: a first control-plane
    /// node without it initialises a cluster with the defaults.
    pub cluster: Option<ClusterConfig>,
    /// `[node]`: this node's identity, role and network.
    pub node: NodeConfig,
    /// `[kernel]`: modules and sysctls on top of those the image applies.
    pub kernel: KernelConfig,
    /// `[containerd]`: container runtime settings.
    pub containerd: ContainerdConfig,
    /// `[join]`: present when this node joins an existing cluster instead of
    /// initialising one.
    pub join: Option<JoinConfig>,
    /// `[api]`: who may use the node API.
    pub api: ApiConfig,
}

impl MachineConfig {
    /// What the node does with the cluster once the host is configured.
    pub fn cluster_action(&self) -> ClusterAction {
        match (&self.join, self.node.role) {
            (Some(_), _) => ClusterAction::Join,
            (None, NodeRole::ControlPlane) => ClusterAction::Init,
            (None, NodeRole::Worker) => ClusterAction::WaitForJoin,
        }
    }
}

/// What node-agent does after configuring the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterAction {
    /// Initialise a new cluster (a control-plane node without `[join]`).
    Init,
    /// Join the cluster named in `[join]`.
    Join,
    /// Stay ready for `bootstrap join` (a worker without `[join]`).
    WaitForJoin,
}

/// `[cluster]`: settings shared by the whole cluster. Fields marked
/// *init only* are decided when the cluster is initialised; a joining node
/// reads them from the cluster and must not set them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterConfig {
    /// `name`: the cluster name used in kubeconfigs (kubeadm's
    /// `clusterName`). Init only; default `kubernetes`.
    pub name: Option<ClusterName>,
    /// `control-plane-endpoint`: `HOST[:PORT]` every node and client uses
    /// to reach the apiservers (kubeadm's `--control-plane-endpoint`). Set
    /// it to the VIP or a DNS name for an HA cluster; it is always in the
    /// apiserver certificate. Default: the VIP if set, else this node's
    /// address, port 6443.
    pub control_plane_endpoint: Option<ControlPlaneEndpoint>,
    /// `pod-network-cidr`: the network pod addresses come from; each node
    /// gets a slice of it. Init only; default `10.244.0.0/16`.
    pub pod_network_cidr: Option<Cidr>,
    /// `service-cidr`: the network ClusterIP Services get addresses from.
    /// Init only; default `10.96.0.0/12`.
    pub service_cidr: Option<Cidr>,
    /// `service-dns-domain`: the DNS domain of Services. Init only; default
    /// `cluster.local`.
    pub service_dns_domain: Option<DnsDomain>,
    /// `apiserver-cert-extra-sans`: extra IP addresses and DNS names for the
    /// apiserver certificate of this control-plane node (kubeadm's
    /// `--apiserver-cert-extra-sans`). Control-plane nodes only.
    pub apiserver_cert_extra_sans: Vec<SubjectAltName>,
    /// `token`: the bootstrap token to create at init
    /// (`[a-z0-9]{6}.[a-z0-9]{16}`), so that other nodes' configs can name it
    /// in advance. Init only; default: a random token.
    pub token: Option<BootstrapToken>,
    /// `certificate-key`: 64 hex digits that encrypt the shared CA keys for
    /// control-plane joiners (kubeadm's `--certificate-key`; setting it
    /// implies `--upload-certs`). Init only.
    pub certificate_key: Option<CertificateKey>,
    /// `vip`: a virtual IP held by one healthy control-plane node at a time.
    /// Control-plane nodes only.
    pub vip: Option<VipConfig>,
    /// `skip-phases`: init phases this node leaves out (kubeadm's
    /// `--skip-phases`), e.g. `["mark-control-plane", "show-join-command"]`.
    /// `etcd` and `control-plane` cannot be skipped; `certs` and
    /// `kubeconfig` only together (the PKI must then be on STATE already).
    /// A joining node may skip `preflight` only.
    pub skip_phases: Vec<InitPhase>,
}

impl ClusterConfig {
    /// Whether `phase` runs (is not in `skip-phases`).
    pub fn runs(&self, phase: InitPhase) -> bool {
        !self.skip_phases.contains(&phase)
    }

    /// The cluster name, with its default.
    pub fn effective_name(&self) -> &str {
        self.name
            .as_ref()
            .map_or(DEFAULT_CLUSTER_NAME, ClusterName::as_str)
    }

    /// The pod network, with its default.
    pub fn effective_pod_network_cidr(&self) -> Cidr {
        self.pod_network_cidr
            .unwrap_or_else(|| default_cidr(DEFAULT_POD_NETWORK_CIDR))
    }

    /// The service network, with its default.
    pub fn effective_service_cidr(&self) -> Cidr {
        self.service_cidr
            .unwrap_or_else(|| default_cidr(DEFAULT_SERVICE_CIDR))
    }

    /// The service DNS domain, with its default.
    pub fn effective_service_dns_domain(&self) -> DnsDomain {
        self.service_dns_domain.clone().unwrap_or_default()
    }
}

fn default_cidr(text: &str) -> Cidr {
    text.parse().expect("the built-in default CIDRs are valid")
}

/// `[cluster.vip]`: the virtual IP in front of the apiservers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConfig {
    /// `address`: the virtual IP (without a prefix; it is added as a /32 or
    /// /128). It must be free on the node subnet and be no node's own
    /// address.
    pub address: IpAddr,
    /// `interface`: the interface on which this node adds the address and
    /// sends gratuitous ARP, e.g. `eth0`.
    pub interface: InterfaceName,
}

/// `[node]`: this node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// `name`: the Node name and hostname, a lower-case RFC 1123 name.
    /// Default: the hostname DHCP offers, else `cairn-` and the MAC address
    /// of the primary interface.
    pub name: Option<NodeName>,
    /// `role`: `"control-plane"` or `"worker"`. Required.
    pub role: NodeRole,
    /// `interface`: the interface the addresses below belong to. Default:
    /// the first Ethernet interface with a link.
    pub interface: Option<InterfaceName>,
    /// `dhcp = true`, or static `addresses` with an optional `gateway`.
    /// Default: DHCP.
    pub addressing: Addressing,
    /// `dns`: name servers (at most 3, the resolver's limit). With DHCP they
    /// replace the offered ones.
    pub dns: Vec<IpAddr>,
    /// `labels`: labels of the Node object. Keys in the `kubernetes.io` and
    /// `k8s.io` namespaces are limited to those a kubelet may set itself;
    /// the role label is added from `role`.
    pub labels: BTreeMap<LabelKey, LabelValue>,
    /// `taints`: taints of the Node object, added to the control-plane
    /// taint that `role = "control-plane"` implies.
    pub taints: Vec<Taint>,
}

/// How the node's interface gets its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressing {
    /// `dhcp = true`: DHCPv4 provides address, gateway and (unless `dns` is
    /// set) name servers.
    Dhcp,
    /// Static addresses.
    Static {
        /// `addresses`: one or more addresses with prefix,
        /// e.g. `["10.0.0.11/24"]`.
        addresses: Vec<InterfaceAddress>,
        /// `gateway`: the default route's next hop; it must lie in the subnet
        /// of one of `addresses`. None: no default route.
        gateway: Option<IpAddr>,
    },
}

/// One entry of `[[node.taints]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// `key`: a qualified name such as `dedicated` or `example.com/gpu`.
    pub key: LabelKey,
    /// `value`: optional.
    pub value: Option<LabelValue>,
    /// `effect`: `"NoSchedule"`, `"PreferNoSchedule"` or `"NoExecute"`.
    pub effect: TaintEffect,
}

/// `[kernel]`: added to what the image profile's `[boot]` section applies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KernelConfig {
    /// `modules`: modules to load (with their dependencies) in order, e.g.
    /// `["overlay", "br_netfilter"]`. `-` and `_` are the same, as for
    /// modprobe.
    pub modules: Vec<ModuleName>,
    /// `sysctls`: `{ "net.ipv4.ip_forward" = 1 }`; integer or string values.
    /// Quote the keys; unquoted dotted keys are read as the same names.
    pub sysctls: BTreeMap<SysctlKey, SysctlValue>,
}

/// `[containerd]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerdConfig {
    /// `sandbox-image`: the pause image of every pod, pinned by tag or
    /// digest. Default: the pause image bundled in the node image, so no
    /// registry is needed.
    pub sandbox_image: Option<ImageReference>,
    /// `snapshotter`: `"overlayfs"` (default) or `"native"`.
    pub snapshotter: Option<Snapshotter>,
    /// `registry-mirrors`: for each registry host, the mirrors to try in
    /// order before it, e.g.
    /// `{ "docker.io" = ["https://mirror.example.org"] }`.
    pub registry_mirrors: BTreeMap<RegistryHost, Vec<HttpUrl>>,
}

/// `[api]`: access to the node API (HTTPS on port 50000).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiConfig {
    /// `client-ca`: PEM CA certificate(s); client certificates they signed
    /// may use every endpoint of the node API. Without it, only the cluster
    /// CA (once the node has one) is trusted. Until a config is applied the
    /// API accepts nothing but the one-time maintenance key shown on the
    /// console.
    pub client_ca: Option<CaBundle>,
}

/// `[join]`: how this node joins an existing cluster (kubeadm's
/// `join` flags). `Debug` shows neither the token secret nor the key.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinConfig {
    /// `endpoint`: `HOST[:PORT]` of the cluster's control-plane endpoint
    /// (port 6443 when omitted).
    pub endpoint: ControlPlaneEndpoint,
    /// `token`: a bootstrap token of the cluster.
    pub token: BootstrapToken,
    /// `discovery-token-ca-cert-hash`: `sha256:<hex>` pin of the cluster CA;
    /// the node refuses a cluster whose CA does not match. There is no
    /// unsafe way around it.
    pub discovery_token_ca_cert_hash: CaCertHash,
    /// `control-plane`: join as a control-plane node. Defaults to (and must
    /// agree with) `node.role`.
    pub control_plane: bool,
    /// `certificate-key`: decrypts the shared CA keys; required for a
    /// control-plane join, refused for a worker.
    pub certificate_key: Option<CertificateKey>,
}
