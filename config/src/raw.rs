//! The machine config as written in TOML, before any value is checked.
//!
//! Deserializing into these types only fails on what makes the document
//! unreadable as a machine config: TOML syntax, unknown keys, wrong value
//! types. Values stay strings so that [`crate::validate`] can check every
//! one of them and report all problems together instead of stopping at the
//! first. Serializing goes through here too, so the rendered TOML has exactly
//! the shape users write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{
    Addressing, ApiConfig, ClusterConfig, ContainerdConfig, JoinConfig, KernelConfig,
    MachineConfig, NodeConfig, Taint, VipConfig,
};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawMachineConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<RawCluster>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<RawNode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<RawKernel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containerd: Option<RawContainerd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<RawJoin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<RawApi>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawApi {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawCluster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_network_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_dns_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apiserver_cert_extra_sans: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<RawVip>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_phases: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawVip {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawNode {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<RawTaint>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawTaint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawKernel {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    /// Kept as a table: unquoted dotted keys arrive nested and are flattened
    /// during validation, and values may be integers or strings.
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub sysctls: toml::Table,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawContainerd {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshotter: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawJoin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_token_ca_cert_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<String>,
}

fn text<T: ToString>(value: &T) -> String {
    value.to_string()
}

fn texts<T: ToString>(values: &[T]) -> Vec<String> {
    values.iter().map(text).collect()
}

impl From<&MachineConfig> for RawMachineConfig {
    fn from(config: &MachineConfig) -> Self {
        let kernel = &config.kernel;
        let containerd = &config.containerd;
        Self {
            cluster: config.cluster.as_ref().map(RawCluster::from),
            node: Some(RawNode::from(&config.node)),
            kernel: (kernel != &KernelConfig::default()).then(|| RawKernel::from(kernel)),
            containerd: (containerd != &ContainerdConfig::default())
                .then(|| RawContainerd::from(containerd)),
            join: config.join.as_ref().map(RawJoin::from),
            api: (config.api != ApiConfig::default()).then(|| RawApi {
                client_ca: config.api.client_ca.as_ref().map(|ca| ca.to_string()),
            }),
        }
    }
}

impl From<&ClusterConfig> for RawCluster {
    fn from(cluster: &ClusterConfig) -> Self {
        Self {
            name: cluster.name.as_ref().map(text),
            control_plane_endpoint: cluster.control_plane_endpoint.as_ref().map(text),
            pod_network_cidr: cluster.pod_network_cidr.as_ref().map(text),
            service_cidr: cluster.service_cidr.as_ref().map(text),
            service_dns_domain: cluster.service_dns_domain.as_ref().map(text),
            apiserver_cert_extra_sans: cluster
                .apiserver_cert_extra_sans
                .iter()
                .map(san_text)
                .collect(),
            token: cluster.token.as_ref().map(text),
            certificate_key: cluster.certificate_key.as_ref().map(text),
            vip: cluster.vip.as_ref().map(RawVip::from),
            skip_phases: cluster.skip_phases.iter().map(text).collect(),
        }
    }
}

/// A SAN as users write it (`10.0.0.10`, `k8s.example.com`), not in the
/// `IP Address:` / `DNS:` form its `Display` uses for messages.
fn san_text(san: &cairn_pki::SubjectAltName) -> String {
    match san {
        cairn_pki::SubjectAltName::Dns(name) => name.to_string(),
        cairn_pki::SubjectAltName::Ip(ip) => ip.to_string(),
    }
}

impl From<&VipConfig> for RawVip {
    fn from(vip: &VipConfig) -> Self {
        Self {
            address: Some(vip.address.to_string()),
            interface: Some(vip.interface.to_string()),
        }
    }
}

impl From<&NodeConfig> for RawNode {
    fn from(node: &NodeConfig) -> Self {
        let (dhcp, addresses, gateway) = match &node.addressing {
            Addressing::Dhcp => (Some(true), Vec::new(), None),
            Addressing::Static { addresses, gateway } => {
                (None, texts(addresses), gateway.as_ref().map(text))
            }
        };
        Self {
            name: node.name.as_ref().map(text),
            role: Some(node.role.to_string()),
            interface: node.interface.as_ref().map(text),
            dhcp,
            addresses,
            gateway,
            dns: texts(&node.dns),
            labels: node
                .labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            taints: node.taints.iter().map(RawTaint::from).collect(),
        }
    }
}

impl From<&Taint> for RawTaint {
    fn from(taint: &Taint) -> Self {
        Self {
            key: Some(taint.key.to_string()),
            value: taint.value.as_ref().map(text),
            effect: Some(taint.effect.to_string()),
        }
    }
}

impl From<&KernelConfig> for RawKernel {
    fn from(kernel: &KernelConfig) -> Self {
        Self {
            modules: texts(&kernel.modules),
            sysctls: kernel
                .sysctls
                .iter()
                .map(|(key, value)| (key.to_string(), sysctl_value_text(value)))
                .collect(),
        }
    }
}

/// A sysctl value as users write it: an integer when it is one, so that
/// `"net.ipv4.ip_forward" = 1` renders unchanged.
fn sysctl_value_text(value: &cairn_images::profile::SysctlValue) -> toml::Value {
    match value.as_str().parse::<i64>() {
        Ok(number) if number.to_string() == value.as_str() => toml::Value::Integer(number),
        _ => toml::Value::String(value.to_string()),
    }
}

impl From<&ContainerdConfig> for RawContainerd {
    fn from(containerd: &ContainerdConfig) -> Self {
        Self {
            sandbox_image: containerd.sandbox_image.as_ref().map(text),
            snapshotter: containerd.snapshotter.as_ref().map(text),
            registry_mirrors: containerd
                .registry_mirrors
                .iter()
                .map(|(host, mirrors)| (host.to_string(), texts(mirrors)))
                .collect(),
        }
    }
}

impl From<&JoinConfig> for RawJoin {
    fn from(join: &JoinConfig) -> Self {
        Self {
            endpoint: Some(join.endpoint.to_string()),
            token: Some(join.token.to_string()),
            discovery_token_ca_cert_hash: Some(join.discovery_token_ca_cert_hash.to_string()),
            control_plane: Some(join.control_plane),
            certificate_key: join.certificate_key.as_ref().map(text),
        }
    }
}
