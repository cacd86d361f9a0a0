//! The kubeadm PKI layout: which certificates exist, where they live, who
//! signs them and what identity each one carries for a given cluster.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::cert::{CertRequest, Usage};
use crate::key::KeyType;
use crate::types::{
    Cidr, ControlPlaneEndpoint, DnsDomain, DnsName, Host, NodeName, SubjectAltName,
};

/// kubeadm's defaults, which Cairn keeps.
pub const DEFAULT_CERT_DIR: &str = "/etc/kubernetes/pki";
pub const DEFAULT_KUBECONFIG_DIR: &str = "/etc/kubernetes";
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
pub const DEFAULT_API_PORT: u16 = 6443;
pub const DEFAULT_CLUSTER_NAME: &str = "kubernetes";

/// The three certificate authorities of a kubeadm cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Authority {
    Kubernetes,
    FrontProxy,
    Etcd,
}

impl Authority {
    pub const ALL: [Authority; 3] = [Self::Kubernetes, Self::FrontProxy, Self::Etcd];

    /// The name kubeadm prints (`ca`, `front-proxy-ca`, `etcd-ca`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Kubernetes => "ca",
            Self::FrontProxy => "front-proxy-ca",
            Self::Etcd => "etcd-ca",
        }
    }

    /// Path of `<base>.crt` / `<base>.key` relative to the cert dir.
    pub fn base_path(self) -> &'static str {
        match self {
            Self::Kubernetes => "ca",
            Self::FrontProxy => "front-proxy-ca",
            Self::Etcd => "etcd/ca",
        }
    }

    pub fn common_name(self) -> &'static str {
        match self {
            Self::Kubernetes => "kubernetes",
            Self::FrontProxy => "front-proxy-ca",
            Self::Etcd => "etcd-ca",
        }
    }
}

/// A leaf certificate of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Leaf {
    Apiserver,
    ApiserverKubeletClient,
    FrontProxyClient,
    EtcdServer,
    EtcdPeer,
    EtcdHealthcheckClient,
    ApiserverEtcdClient,
}

impl Leaf {
    pub const ALL: [Leaf; 7] = [
        Self::Apiserver,
        Self::ApiserverKubeletClient,
        Self::FrontProxyClient,
        Self::EtcdServer,
        Self::EtcdPeer,
        Self::EtcdHealthcheckClient,
        Self::ApiserverEtcdClient,
    ];

    /// kubeadm's name for the certificate (`certs renew <name>`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Apiserver => "apiserver",
            Self::ApiserverKubeletClient => "apiserver-kubelet-client",
            Self::FrontProxyClient => "front-proxy-client",
            Self::EtcdServer => "etcd-server",
            Self::EtcdPeer => "etcd-peer",
            Self::EtcdHealthcheckClient => "etcd-healthcheck-client",
            Self::ApiserverEtcdClient => "apiserver-etcd-client",
        }
    }

    pub fn base_path(self) -> &'static str {
        match self {
            Self::Apiserver => "apiserver",
            Self::ApiserverKubeletClient => "apiserver-kubelet-client",
            Self::FrontProxyClient => "front-proxy-client",
            Self::EtcdServer => "etcd/server",
            Self::EtcdPeer => "etcd/peer",
            Self::EtcdHealthcheckClient => "etcd/healthcheck-client",
            Self::ApiserverEtcdClient => "apiserver-etcd-client",
        }
    }

    pub fn authority(self) -> Authority {
        match self {
            Self::Apiserver | Self::ApiserverKubeletClient => Authority::Kubernetes,
            Self::FrontProxyClient => Authority::FrontProxy,
            Self::EtcdServer
            | Self::EtcdPeer
            | Self::EtcdHealthcheckClient
            | Self::ApiserverEtcdClient => Authority::Etcd,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|leaf| leaf.name() == name)
    }
}

/// The kubeconfig files written next to the PKI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KubeconfigFile {
    Admin,
    SuperAdmin,
    ControllerManager,
    Scheduler,
    Kubelet,
}

impl KubeconfigFile {
    pub const ALL: [KubeconfigFile; 5] = [
        Self::Admin,
        Self::SuperAdmin,
        Self::ControllerManager,
        Self::Scheduler,
        Self::Kubelet,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Self::Admin => "admin.conf",
            Self::SuperAdmin => "super-admin.conf",
            Self::ControllerManager => "controller-manager.conf",
            Self::Scheduler => "scheduler.conf",
            Self::Kubelet => "kubelet.conf",
        }
    }

    pub fn from_file_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.file_name() == name)
    }

    /// Controller-manager and scheduler talk to their own node's apiserver
    /// (as kubeadm does), so they keep working while the endpoint or VIP
    /// moves; the others use the control-plane endpoint.
    pub fn uses_local_endpoint(self) -> bool {
        matches!(self, Self::ControllerManager | Self::Scheduler)
    }
}

/// Everything that decides the content of a cluster's PKI on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPkiSpec {
    pub node_name: NodeName,
    pub advertise_address: IpAddr,
    pub bind_port: u16,
    pub control_plane_endpoint: Option<ControlPlaneEndpoint>,
    pub service_cidrs: Vec<Cidr>,
    pub dns_domain: DnsDomain,
    pub extra_sans: Vec<SubjectAltName>,
    pub key_type: KeyType,
    pub cluster_name: String,
}

impl ClusterPkiSpec {
    pub fn new(node_name: NodeName, advertise_address: IpAddr) -> Self {
        let default_cidr = DEFAULT_SERVICE_CIDR
            .parse()
            .map(|cidr| vec![cidr])
            .unwrap_or_default();
        Self {
            node_name,
            advertise_address,
            bind_port: DEFAULT_API_PORT,
            control_plane_endpoint: None,
            service_cidrs: default_cidr,
            dns_domain: DnsDomain::default(),
            extra_sans: Vec::new(),
            key_type: KeyType::default(),
            cluster_name: DEFAULT_CLUSTER_NAME.to_owned(),
        }
    }

    /// The URL of this node's own apiserver.
    pub fn local_url(&self) -> String {
        ControlPlaneEndpoint {
            host: Host::Ip(self.advertise_address),
            port: Some(self.bind_port),
        }
        .url(self.bind_port)
    }

    /// The URL every client of the cluster uses.
    pub fn endpoint_url(&self) -> String {
        match &self.control_plane_endpoint {
            Some(endpoint) => endpoint.url(self.bind_port),
            None => self.local_url(),
        }
    }

    pub fn kubeconfig_server(&self, file: KubeconfigFile) -> String {
        if file.uses_local_endpoint() {
            self.local_url()
        } else {
            self.endpoint_url()
        }
    }

    fn apiserver_sans(&self) -> BTreeSet<SubjectAltName> {
        let mut sans = BTreeSet::new();
        let mut dns = |name: &str| {
            if let Ok(parsed) = name.parse::<DnsName>() {
                sans.insert(SubjectAltName::Dns(parsed));
            }
        };
        dns(self.node_name.as_str());
        dns("kubernetes");
        dns("kubernetes.default");
        dns("kubernetes.default.svc");
        dns(&format!("kubernetes.default.svc.{}", self.dns_domain));
        dns("localhost");
        sans.extend(
            self.service_cidrs
                .iter()
                .map(|cidr| SubjectAltName::Ip(cidr.first_host())),
        );
        sans.insert(SubjectAltName::Ip(self.advertise_address));
        sans.insert(SubjectAltName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        if let Some(endpoint) = &self.control_plane_endpoint {
            sans.insert(endpoint.host.clone().into());
        }
        sans.extend(self.extra_sans.iter().cloned());
        sans
    }

    fn etcd_sans(&self) -> BTreeSet<SubjectAltName> {
        let mut sans = BTreeSet::new();
        for name in [self.node_name.as_str(), "localhost"] {
            if let Ok(parsed) = name.parse::<DnsName>() {
                sans.insert(SubjectAltName::Dns(parsed));
            }
        }
        sans.insert(SubjectAltName::Ip(self.advertise_address));
        sans.insert(SubjectAltName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        sans.insert(SubjectAltName::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        sans
    }

    /// The identity `leaf` must carry for this cluster and node.
    pub fn leaf_request(&self, leaf: Leaf) -> CertRequest {
        match leaf {
            Leaf::Apiserver => {
                CertRequest::new("kube-apiserver", Usage::Server).with_sans(self.apiserver_sans())
            }
            Leaf::ApiserverKubeletClient => {
                CertRequest::new("kube-apiserver-kubelet-client", Usage::Client)
                    .with_organization("kubeadm:cluster-admins")
            }
            Leaf::FrontProxyClient => CertRequest::new("front-proxy-client", Usage::Client),
            Leaf::EtcdServer | Leaf::EtcdPeer => {
                CertRequest::new(self.node_name.as_str(), Usage::ServerAndClient)
                    .with_sans(self.etcd_sans())
            }
            Leaf::EtcdHealthcheckClient => {
                CertRequest::new("kube-etcd-healthcheck-client", Usage::Client)
            }
            Leaf::ApiserverEtcdClient => {
                CertRequest::new("kube-apiserver-etcd-client", Usage::Client)
            }
        }
    }

    /// The client identity embedded in a kubeconfig.
    pub fn kubeconfig_request(&self, file: KubeconfigFile) -> CertRequest {
        match file {
            KubeconfigFile::Admin => CertRequest::new("kubernetes-admin", Usage::Client)
                .with_organization("kubeadm:cluster-admins"),
            KubeconfigFile::SuperAdmin => CertRequest::new("kubernetes-super-admin", Usage::Client)
                .with_organization("system:masters"),
            KubeconfigFile::ControllerManager => {
                CertRequest::new("system:kube-controller-manager", Usage::Client)
            }
            KubeconfigFile::Scheduler => CertRequest::new("system:kube-scheduler", Usage::Client),
            KubeconfigFile::Kubelet => {
                CertRequest::new(format!("system:node:{}", self.node_name), Usage::Client)
                    .with_organization("system:nodes")
            }
        }
    }
}

/// Where the PKI and the kubeconfigs live on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    pub cert_dir: PathBuf,
    pub kubeconfig_dir: Option<PathBuf>,
}

impl PkiPaths {
    pub fn new(cert_dir: impl Into<PathBuf>, kubeconfig_dir: Option<PathBuf>) -> Self {
        Self {
            cert_dir: cert_dir.into(),
            kubeconfig_dir,
        }
    }

    pub fn cert(&self, base_path: &str) -> PathBuf {
        self.cert_dir.join(format!("{base_path}.crt"))
    }

    pub fn key(&self, base_path: &str) -> PathBuf {
        self.cert_dir.join(format!("{base_path}.key"))
    }

    pub fn service_account_key(&self) -> PathBuf {
        self.cert_dir.join("sa.key")
    }

    pub fn service_account_public_key(&self) -> PathBuf {
        self.cert_dir.join("sa.pub")
    }

    pub fn kubeconfig(&self, file: KubeconfigFile) -> Option<PathBuf> {
        self.kubeconfig_dir
            .as_deref()
            .map(|dir: &Path| dir.join(file.file_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClusterPkiSpec {
        let mut spec = ClusterPkiSpec::new(
            "cp-1".parse().expect("name"),
            "192.168.10.11".parse().expect("ip"),
        );
        spec.control_plane_endpoint = Some("k8s.lab.example:8443".parse().expect("endpoint"));
        spec.extra_sans = vec![
            "*.apps.example.com".parse().expect("wildcard"),
            "203.0.113.7".parse().expect("ip"),
        ];
        spec
    }

    #[test]
    fn apiserver_sans_cover_every_name_clients_use() {
        let sans: Vec<String> = spec()
            .leaf_request(Leaf::Apiserver)
            .sans
            .iter()
            .map(ToString::to_string)
            .collect();
        for expected in [
            "DNS:cp-1",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
            "DNS:localhost",
            "DNS:k8s.lab.example",
            "DNS:*.apps.example.com",
            "IP Address:10.96.0.1",
            "IP Address:192.168.10.11",
            "IP Address:127.0.0.1",
            "IP Address:203.0.113.7",
        ] {
            assert!(
                sans.iter().any(|s| s == expected),
                "{expected} missing from {sans:?}"
            );
        }
    }

    #[test]
    fn endpoints_choose_local_or_shared() {
        let spec = spec();
        assert_eq!(spec.endpoint_url(), "https://k8s.lab.example:8443");
        assert_eq!(
            spec.kubeconfig_server(KubeconfigFile::Admin),
            "https://k8s.lab.example:8443"
        );
        assert_eq!(
            spec.kubeconfig_server(KubeconfigFile::Scheduler),
            "https://192.168.10.11:6443"
        );
    }

    #[test]
    fn leaf_names_roundtrip() {
        for leaf in Leaf::ALL {
            assert_eq!(Leaf::from_name(leaf.name()), Some(leaf));
        }
    }
}
