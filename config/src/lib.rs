//! The machine config: one TOML file per node that says what the node is and
//! how it joins the world. node-agent reads it at boot (from STATE, a
//! `cairn.config=` URL, a NoCloud `cidata` drive or the image) and
//! `bootstrap init` / `bootstrap join` read and write the same model.
//!
//! ```toml
//! [cluster]
//! control-plane-endpoint = "10.0.0.10:6443"
//! pod-network-cidr = "10.244.0.0/16"
//! service-cidr = "10.96.0.0/12"
//! service-dns-domain = "cluster.local"
//! apiserver-cert-extra-sans = ["k8s.example.org"]
//! vip = { address = "10.0.0.10", interface = "eth0" }
//! skip-phases = ["show-join-command"]   # kubeadm's --skip-phases
//!
//! [node]
//! name = "cp-1"
//! role = "control-plane"          # or "worker"
//! interface = "eth0"
//! addresses = ["10.0.0.11/24"]    # or: dhcp = true
//! gateway = "10.0.0.1"
//! dns = ["10.0.0.1"]
//! labels = { "topology.kubernetes.io/zone" = "rack-1" }
//! taints = [{ key = "dedicated", value = "infra", effect = "NoSchedule" }]
//!
//! [kernel]
//! modules = ["overlay", "br_netfilter"]
//! sysctls = { "net.ipv4.ip_forward" = 1 }
//!
//! [containerd]
//! snapshotter = "overlayfs"
//! registry-mirrors = { "docker.io" = ["https://mirror.example.org"] }
//!
//! [join]                           # only on nodes that join
//! endpoint = "10.0.0.10:6443"
//! token = "abcdef.0123456789abcdef"
//! discovery-token-ca-cert-hash = "sha256:<64 hex digits>"
//! certificate-key = "<64 hex digits>"   # control-plane joins only
//!
//! [api]
//! client-ca = """
//! -----BEGIN CERTIFICATE-----
//! ...CA whose client certificates may use the node API...
//! -----END CERTIFICATE-----
//! """
//! ```
//!
//! The keys and their defaults are documented on the types in [`model`]
//! (`[cluster]` is [`ClusterConfig`], `[node]` is [`NodeConfig`], and so on).
//! Names follow kubeadm's flags, so `--pod-network-cidr` is
//! `cluster.pod-network-cidr`.
//!
//! # What the node does with it
//!
//! A control-plane node without `[join]` initialises a cluster; any node with
//! `[join]` joins one; a worker without `[join]` configures its host and
//! waits for `bootstrap join` ([`MachineConfig::cluster_action`]).
//!
//! # Validation
//!
//! A config is checked completely before anything is applied, so a node is
//! never half-configured. Reading happens in two steps:
//!
//! 1. **The document.** TOML syntax, unknown keys (every table refuses them,
//!    so a typo is an error, not a silently ignored setting), and value types.
//!    The first such error stops reading and is reported with the source,
//!    line, column and key.
//! 2. **The values and how they fit together.** Every value is parsed into a
//!    validated type, and every rule below is checked; all problems are
//!    reported together, one `SOURCE: KEY: REASON` line each.
//!
//! Values: CIDRs, endpoints (`HOST[:PORT]`), DNS domains, node and cluster
//! names (lower-case RFC 1123), SANs, bootstrap tokens, certificate keys and
//! CA hashes use the `cairn-pki` types; sysctl keys, module names and URLs
//! the `cairn-images` ones; interface addresses need a prefix and a host
//! part (`10.0.0.11/24`); label and taint keys and values follow
//! Kubernetes' rules; images must be pinned by tag or digest. Secrets
//! (token, certificate key) are never repeated in messages;
//! `api.client-ca` holds only CA certificates (a private key is refused).
//!
//! Rules between values:
//! - `node.role` is required; with `dhcp = true` there are no static
//!   `addresses` or `gateway`; `dhcp = false` needs `addresses`; the gateway
//!   lies in the subnet of a static address and is none of them; addresses
//!   are not repeated; at most three `dns` servers.
//! - Node labels in the `kubernetes.io` / `k8s.io` namespaces are limited to
//!   those a kubelet may set on itself; no two taints share key and effect;
//!   no kernel module is listed twice and no sysctl set twice.
//! - `[cluster]` keys decided at init (`name`, `pod-network-cidr`,
//!   `service-cidr`, `service-dns-domain`, `token`, `certificate-key`) are
//!   refused with `[join]` (the joiner reads them from the cluster) and on a
//!   worker; `vip` and `apiserver-cert-extra-sans` are refused on a worker.
//! - `[join]` needs `endpoint`, `token` and `discovery-token-ca-cert-hash`;
//!   `join.control-plane` agrees with `node.role`; a control-plane join needs
//!   `certificate-key` and a worker join must not carry one; `join.endpoint`
//!   and `cluster.control-plane-endpoint` agree when both are set.
//! - The VIP is no node's own address, lies in the node subnet when the node
//!   addresses are on the VIP interface, and an IP
//!   `control-plane-endpoint` is the VIP.
//! - On the node that initialises the cluster, the pod and service networks
//!   (with their defaults) do not overlap, and neither contains a node
//!   address or the VIP.

mod error;
pub mod model;
mod raw;
pub mod types;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::{ConfigError, Problem};
pub use model::{
    Addressing, ApiConfig, ClusterAction, ClusterConfig, ContainerdConfig, JoinConfig,
    KernelConfig, MachineConfig, NodeConfig, Taint, VipConfig,
};
pub use types::{
    CaBundle, CaCertHash, ClusterName, ImageReference, InitPhase, InterfaceAddress, InterfaceName,
    LabelKey, LabelValue, NodeRole, RegistryHost, Snapshotter, TaintEffect,
};

use raw::RawMachineConfig;

impl MachineConfig {
    /// Parses and validates a machine config. `source_name` (a file path or
    /// URL) only labels error messages.
    pub fn parse(text: &str, source_name: &str) -> Result<MachineConfig, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        let raw: RawMachineConfig = serde_path_to_error::deserialize(deserializer)
            .map_err(|error| error::parse_error(source_name, text, error))?;
        validate::build(&raw).map_err(|problems| ConfigError::Invalid {
            source_name: source_name.to_owned(),
            problems,
        })
    }

    /// Reads, parses and validates a machine config file.
    pub fn load(path: impl AsRef<Path>) -> Result<MachineConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Renders the config as TOML that [`MachineConfig::parse`] reads back to
    /// an equal config. Secrets (token, certificate key) are included: this
    /// is what node-agent stores on STATE, so treat the text as secret.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(&RawMachineConfig::from(self)).map_err(ConfigError::Render)
    }

    /// Checks a config built or changed in code (e.g. from command-line
    /// flags) against every rule [`MachineConfig::parse`] applies; empty
    /// when it is valid.
    pub fn problems(&self) -> Vec<Problem> {
        validate::build(&RawMachineConfig::from(self))
            .err()
            .unwrap_or_default()
    }
}

impl Serialize for MachineConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawMachineConfig::from(self).serialize(serializer)
    }
}

/// Deserializing applies the same checks as [`MachineConfig::parse`]; all
/// problems end up in one error message.
impl<'de> Deserialize<'de> for MachineConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawMachineConfig::deserialize(deserializer)?;
        validate::build(&raw).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            serde::de::Error::custom(lines.join("; "))
        })
    }
}
