//! Turns a [`RawMachineConfig`] into a [`MachineConfig`], checking every
//! value and every rule that ties values together.
//!
//! Nothing stops at the first problem: each value is parsed on its own, an
//! invalid one is recorded and left out, and the cross-field rules run on
//! whatever parsed. A rule never reports a key that already has a problem,
//! so one mistake gives one message. The config is returned only when no
//! problem was found.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::net::IpAddr;
use std::str::FromStr;

use cairn_images::profile::{HttpUrl, ModuleName, SysctlKey, SysctlValue};
use cairn_pki::types::Host;
use cairn_pki::{
    BootstrapToken, CertificateKey, Cidr, ControlPlaneEndpoint, DnsDomain, NodeName, SubjectAltName,
};

use crate::error::Problem;
use crate::model::{
    Addressing, ApiConfig, ClusterConfig, ContainerdConfig, DEFAULT_APISERVER_PORT, JoinConfig,
    KernelConfig, MachineConfig, NodeConfig, Taint, VipConfig,
};
use crate::raw::{RawCluster, RawContainerd, RawJoin, RawKernel, RawMachineConfig, RawNode};
use crate::types::{
    CaBundle, CaCertHash, ClusterName, ImageReference, InitPhase, InterfaceAddress, InterfaceName,
    LabelKey, LabelValue, NodeRole, RegistryHost, Snapshotter, TaintEffect,
};

/// The resolver reads at most this many `nameserver` lines (glibc MAXNS).
const MAX_NAME_SERVERS: usize = 3;

/// Labels in the `kubernetes.io` and `k8s.io` namespaces a kubelet may set on
/// its own Node (Kubernetes' `kubeletapis` list); any other key there is
/// refused by the NodeRestriction admission plugin.
const KUBELET_SETTABLE_LABELS: [&str; 11] = [
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

/// Namespaces (and their subdomains) in which a kubelet may set any label.
const KUBELET_SETTABLE_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

/// Checks a raw config completely. `Err` holds every problem found.
pub(super) fn build(raw: &RawMachineConfig) -> Result<MachineConfig, Vec<Problem>> {
    let mut checker = Checker::default();
    let cluster = raw
        .cluster
        .as_ref()
        .map(|cluster| check_cluster(&mut checker, cluster));
    let node = match &raw.node {
        Some(node) => check_node(&mut checker, node),
        None => {
            checker.report(
                "node",
                "missing; every machine config needs a [node] section with at least `role`",
            );
            None
        }
    };
    let role = node.as_ref().map(|node| node.role);
    let kernel = raw
        .kernel
        .as_ref()
        .map(|kernel| check_kernel(&mut checker, kernel))
        .unwrap_or_default();
    let containerd = raw
        .containerd
        .as_ref()
        .map(|containerd| check_containerd(&mut checker, containerd))
        .unwrap_or_default();
    let join = raw
        .join
        .as_ref()
        .and_then(|join| check_join(&mut checker, join, role));
    let api = ApiConfig {
        client_ca: raw.api.as_ref().and_then(|api| {
            checker.parse_optional::<CaBundle>("api.client-ca", api.client_ca.as_ref())
        }),
    };

    check_roles_and_sections(&mut checker, raw, role);
    if raw.join.is_some()
        && let Some(cluster) = &cluster
        && let Some(phase) = cluster
            .skip_phases
            .iter()
            .find(|phase| **phase != InitPhase::Preflight)
    {
        checker.report(
            "cluster.skip-phases",
            format!(
                "{:?} is an init phase; a joining node may skip \"preflight\" only",
                phase.name()
            ),
        );
    }
    check_endpoints(&mut checker, cluster.as_ref(), join.as_ref());
    if let Some(node) = &node {
        check_vip_against_node(&mut checker, cluster.as_ref(), node);
        if raw.join.is_none() && node.role == NodeRole::ControlPlane {
            check_networks_do_not_collide(
                &mut checker,
                raw.cluster.as_ref(),
                cluster.as_ref(),
                node,
            );
        }
    }

    match node {
        Some(node) if checker.problems.is_empty() => Ok(MachineConfig {
            cluster,
            node,
            kernel,
            containerd,
            join,
            api,
        }),
        _ => Err(checker.problems),
    }
}

/// Collects problems while values are parsed one by one.
#[derive(Debug, Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn report(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            reason: reason.into(),
        });
    }

    /// Reports a cross-field problem unless the key already has one (its
    /// value was invalid, so the rule's premise is already broken).
    fn report_once(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        let key = key.into();
        if !self.problems.iter().any(|problem| problem.key == key) {
            self.report(key, reason);
        }
    }

    fn parse<T>(&mut self, key: &str, value: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        value
            .parse()
            .map_err(|error: T::Err| self.report(key, error.to_string()))
            .ok()
    }

    fn parse_optional<T>(&mut self, key: &str, value: Option<&String>) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        value.and_then(|value| self.parse(key, value))
    }

    fn parse_required<T>(&mut self, key: &str, value: Option<&String>, hint: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        match value {
            Some(value) => self.parse(key, value),
            None => {
                self.report(key, format!("missing; {hint}"));
                None
            }
        }
    }

    /// Parses each entry; invalid entries are reported as `key[index]` and
    /// left out.
    fn parse_list<T>(&mut self, key: &str, values: &[String]) -> Vec<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        values
            .iter()
            .enumerate()
            .filter_map(|(index, value)| self.parse(&format!("{key}[{index}]"), value))
            .collect()
    }

    fn parse_ip(&mut self, key: &str, value: &str) -> Option<IpAddr> {
        match value.parse() {
            Ok(ip) => Some(ip),
            Err(_) if value.contains('/') => {
                self.report(
                    key,
                    format!("{value:?}: give a plain IP address here, without a /prefix"),
                );
                None
            }
            Err(_) => {
                self.report(key, format!("{value:?} is not an IP address"));
                None
            }
        }
    }

    fn parse_ip_list(&mut self, key: &str, values: &[String]) -> Vec<IpAddr> {
        values
            .iter()
            .enumerate()
            .filter_map(|(index, value)| self.parse_ip(&format!("{key}[{index}]"), value))
            .collect()
    }
}

/// `parent.key`, quoting the key as TOML does when it is not a bare key.
fn map_key_path(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        format!("{parent}.{key}")
    } else {
        format!("{parent}.{key:?}")
    }
}

fn check_cluster(checker: &mut Checker, raw: &RawCluster) -> ClusterConfig {
    let pod_network_cidr: Option<Cidr> =
        checker.parse_optional("cluster.pod-network-cidr", raw.pod_network_cidr.as_ref());
    let service_cidr: Option<Cidr> =
        checker.parse_optional("cluster.service-cidr", raw.service_cidr.as_ref());
    let vip = raw.vip.as_ref().and_then(|vip| {
        let address = match &vip.address {
            Some(address) => checker.parse_ip("cluster.vip.address", address),
            None => {
                checker.report(
                    "cluster.vip.address",
                    "missing; the virtual IP, e.g. address = \"10.0.0.10\"",
                );
                None
            }
        };
        let interface: Option<InterfaceName> = checker.parse_required(
            "cluster.vip.interface",
            vip.interface.as_ref(),
            "the interface to hold the VIP on, e.g. interface = \"eth0\"",
        );
        Some(VipConfig {
            address: address?,
            interface: interface?,
        })
    });
    ClusterConfig {
        name: checker.parse_optional::<ClusterName>("cluster.name", raw.name.as_ref()),
        control_plane_endpoint: checker.parse_optional::<ControlPlaneEndpoint>(
            "cluster.control-plane-endpoint",
            raw.control_plane_endpoint.as_ref(),
        ),
        pod_network_cidr,
        service_cidr,
        service_dns_domain: checker.parse_optional::<DnsDomain>(
            "cluster.service-dns-domain",
            raw.service_dns_domain.as_ref(),
        ),
        apiserver_cert_extra_sans: checker.parse_list::<SubjectAltName>(
            "cluster.apiserver-cert-extra-sans",
            &raw.apiserver_cert_extra_sans,
        ),
        token: checker.parse_optional::<BootstrapToken>("cluster.token", raw.token.as_ref()),
        certificate_key: checker.parse_optional::<CertificateKey>(
            "cluster.certificate-key",
            raw.certificate_key.as_ref(),
        ),
        vip,
        skip_phases: check_skip_phases(checker, &raw.skip_phases),
    }
}

fn check_skip_phases(checker: &mut Checker, raw: &[String]) -> Vec<InitPhase> {
    const KEY: &str = "cluster.skip-phases";
    let mut phases: Vec<InitPhase> = checker.parse_list(KEY, raw);
    for phase in &phases {
        if let Some(why) = phase.why_not_skippable() {
            checker.report(
                KEY,
                format!("{phase:?} cannot be skipped: {why}", phase = phase.name()),
            );
        }
    }
    let certs = phases.contains(&InitPhase::Certs);
    if certs != phases.contains(&InitPhase::Kubeconfig) {
        checker.report(
            KEY,
            "\"certs\" and \"kubeconfig\" are one step on a Cairn node (the kubeconfigs embed the certificates): skip both or neither",
        );
    }
    phases.sort();
    phases.dedup();
    phases
}

fn check_node(checker: &mut Checker, raw: &RawNode) -> Option<NodeConfig> {
    let role: Option<NodeRole> = checker.parse_required(
        "node.role",
        raw.role.as_ref(),
        "set role = \"control-plane\" or role = \"worker\"",
    );
    let name: Option<NodeName> = checker.parse_optional("node.name", raw.name.as_ref());
    let interface: Option<InterfaceName> =
        checker.parse_optional("node.interface", raw.interface.as_ref());
    let addressing = check_addressing(checker, raw);
    let dns = checker.parse_ip_list("node.dns", &raw.dns);
    if raw.dns.len() > MAX_NAME_SERVERS {
        checker.report(
            "node.dns",
            format!(
                "lists {} name servers; the resolver uses at most {MAX_NAME_SERVERS}",
                raw.dns.len()
            ),
        );
    }
    let labels = check_labels(checker, &raw.labels);
    let taints = check_taints(checker, raw);
    Some(NodeConfig {
        name,
        role: role?,
        interface,
        addressing,
        dns,
        labels,
        taints,
    })
}

fn check_addressing(checker: &mut Checker, raw: &RawNode) -> Addressing {
    let addresses: Vec<InterfaceAddress> = checker.parse_list("node.addresses", &raw.addresses);
    let gateway = raw
        .gateway
        .as_ref()
        .and_then(|gateway| checker.parse_ip("node.gateway", gateway));
    match raw.dhcp {
        Some(true) => {
            if !raw.addresses.is_empty() {
                checker.report(
                    "node.addresses",
                    "conflicts with dhcp = true; use either DHCP or static addresses",
                );
            }
            if raw.gateway.is_some() {
                checker.report(
                    "node.gateway",
                    "conflicts with dhcp = true; DHCP provides the gateway",
                );
            }
            return Addressing::Dhcp;
        }
        Some(false) if raw.addresses.is_empty() => {
            checker.report(
                "node.addresses",
                "missing; dhcp = false needs at least one static address such as \"10.0.0.11/24\"",
            );
        }
        None if raw.addresses.is_empty() => {
            if raw.gateway.is_some() {
                checker.report(
                    "node.gateway",
                    "needs static node.addresses; without them the node uses DHCP, which provides the gateway",
                );
            }
            return Addressing::Dhcp;
        }
        _ => {}
    }

    let mut seen = HashSet::new();
    for (index, address) in addresses.iter().enumerate() {
        if !seen.insert(address.address()) {
            checker.report(
                format!("node.addresses[{index}]"),
                format!("{} is listed twice", address.address()),
            );
        }
    }
    // Only judge the gateway against a complete list: it may belong to the
    // subnet of an address that failed to parse.
    if let Some(gateway) = gateway
        && addresses.len() == raw.addresses.len()
    {
        if addresses.iter().any(|address| address.address() == gateway) {
            checker.report(
                "node.gateway",
                format!("{gateway} is one of node.addresses; the gateway is the router's address"),
            );
        } else if !addresses
            .iter()
            .any(|address| address.subnet_contains(gateway))
        {
            let listed: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            checker.report(
                "node.gateway",
                format!(
                    "{gateway} is outside the subnets of node.addresses ({}); the gateway must be directly reachable",
                    listed.join(", ")
                ),
            );
        }
    }
    Addressing::Static { addresses, gateway }
}

fn check_labels(
    checker: &mut Checker,
    raw: &BTreeMap<String, String>,
) -> BTreeMap<LabelKey, LabelValue> {
    let mut labels = BTreeMap::new();
    for (key_text, value_text) in raw {
        let path = map_key_path("node.labels", key_text);
        let key: Option<LabelKey> = checker.parse(&path, key_text);
        let value: Option<LabelValue> = checker.parse(&path, value_text);
        if let Some(key) = &key
            && let Some(reason) = restricted_label_reason(key)
        {
            checker.report(&path, reason);
        }
        if let (Some(key), Some(value)) = (key, value) {
            labels.insert(key, value);
        }
    }
    labels
}

/// Why a node may not set this label on itself, if it may not.
fn restricted_label_reason(key: &LabelKey) -> Option<String> {
    let prefix = key.prefix()?;
    let in_namespace =
        |namespace: &str| prefix == namespace || prefix.ends_with(&format!(".{namespace}"));
    if !in_namespace("kubernetes.io") && !in_namespace("k8s.io") {
        return None;
    }
    if KUBELET_SETTABLE_LABELS.contains(&key.as_str())
        || KUBELET_SETTABLE_NAMESPACES
            .iter()
            .any(|ns| in_namespace(ns))
    {
        return None;
    }
    if prefix == "node-role.kubernetes.io" {
        return Some(
            "node-role labels come from node.role and a node cannot set others on itself; use a label of your own, e.g. \"example.com/role\""
                .to_owned(),
        );
    }
    Some(format!(
        "a node may not set labels in the {prefix} namespace on itself (NodeRestriction); use your own prefix, or one under node.kubernetes.io"
    ))
}

fn check_taints(checker: &mut Checker, raw: &RawNode) -> Vec<Taint> {
    let mut taints: Vec<Taint> = Vec::new();
    let mut first_index: BTreeMap<(String, TaintEffect), usize> = BTreeMap::new();
    for (index, taint) in raw.taints.iter().enumerate() {
        let path = format!("node.taints[{index}]");
        let key: Option<LabelKey> = checker.parse_required(
            &format!("{path}.key"),
            taint.key.as_ref(),
            "a taint needs a key, e.g. key = \"dedicated\"",
        );
        let value: Option<LabelValue> =
            checker.parse_optional(&format!("{path}.value"), taint.value.as_ref());
        let effect: Option<TaintEffect> = checker.parse_required(
            &format!("{path}.effect"),
            taint.effect.as_ref(),
            "set effect = \"NoSchedule\", \"PreferNoSchedule\" or \"NoExecute\"",
        );
        let (Some(key), Some(effect)) = (key, effect) else {
            continue;
        };
        if let Some(first) = first_index.get(&(key.to_string(), effect)) {
            checker.report(
                path,
                format!("repeats node.taints[{first}] (same key {key} and effect {effect})"),
            );
            continue;
        }
        first_index.insert((key.to_string(), effect), index);
        if taint.value.is_none() || value.is_some() {
            taints.push(Taint { key, value, effect });
        }
    }
    taints
}

fn check_kernel(checker: &mut Checker, raw: &RawKernel) -> KernelConfig {
    let mut modules: Vec<ModuleName> = Vec::new();
    for (index, text) in raw.modules.iter().enumerate() {
        let key = format!("kernel.modules[{index}]");
        let Some(module) = checker.parse::<ModuleName>(&key, text) else {
            continue;
        };
        if modules.contains(&module) {
            checker.report(key, format!("{module} is listed twice"));
        } else {
            modules.push(module);
        }
    }
    let mut sysctls = BTreeMap::new();
    flatten_sysctls(checker, "", &raw.sysctls, &mut sysctls);
    KernelConfig { modules, sysctls }
}

/// Reads `[kernel.sysctls]`. TOML turns an unquoted `net.ipv4.ip_forward = 1`
/// into nested tables, which is never what the author meant for a sysctl, so
/// nested tables are joined back into dotted names.
fn flatten_sysctls(
    checker: &mut Checker,
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<SysctlKey, SysctlValue>,
) {
    for (name, value) in table {
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let path = map_key_path("kernel.sysctls", &full);
        let parsed = match value {
            toml::Value::Table(inner) => {
                flatten_sysctls(checker, &full, inner, out);
                continue;
            }
            toml::Value::Integer(number) => SysctlValue::new(&number.to_string()),
            toml::Value::String(text) => SysctlValue::new(text),
            toml::Value::Boolean(flag) => {
                let number = u8::from(*flag);
                checker.report(
                    &path,
                    format!("sysctls take numbers or strings; write {number} instead of {flag}"),
                );
                continue;
            }
            other => {
                checker.report(
                    &path,
                    format!(
                        "expected an integer or a string, found {}",
                        other.type_str()
                    ),
                );
                continue;
            }
        };
        let key: Option<SysctlKey> = checker.parse(&path, &full);
        let value = parsed
            .map_err(|error| checker.report(&path, error.to_string()))
            .ok();
        if let (Some(key), Some(value)) = (key, value)
            && out.insert(key, value).is_some()
        {
            checker.report(
                &path,
                "is set twice (once as a quoted key, once as dotted keys)",
            );
        }
    }
}

fn check_containerd(checker: &mut Checker, raw: &RawContainerd) -> ContainerdConfig {
    let mut registry_mirrors = BTreeMap::new();
    for (host_text, mirror_texts) in &raw.registry_mirrors {
        let path = map_key_path("containerd.registry-mirrors", host_text);
        let host: Option<RegistryHost> = checker.parse(&path, host_text);
        if mirror_texts.is_empty() {
            checker.report(
                &path,
                "lists no mirror; give at least one URL or remove the entry",
            );
        }
        let mirrors: Vec<HttpUrl> = checker.parse_list(&path, mirror_texts);
        if let Some(host) = host
            && registry_mirrors.insert(host, mirrors).is_some()
        {
            checker.report(&path, "names the same registry as another entry");
        }
    }
    ContainerdConfig {
        sandbox_image: checker.parse_optional::<ImageReference>(
            "containerd.sandbox-image",
            raw.sandbox_image.as_ref(),
        ),
        snapshotter: checker
            .parse_optional::<Snapshotter>("containerd.snapshotter", raw.snapshotter.as_ref()),
        registry_mirrors,
    }
}

fn check_join(checker: &mut Checker, raw: &RawJoin, role: Option<NodeRole>) -> Option<JoinConfig> {
    let hint = "copy it from the output of `bootstrap token create --print-join-command` on a control-plane node";
    let endpoint: Option<ControlPlaneEndpoint> =
        checker.parse_required("join.endpoint", raw.endpoint.as_ref(), hint);
    let token: Option<BootstrapToken> =
        checker.parse_required("join.token", raw.token.as_ref(), hint);
    let discovery_token_ca_cert_hash: Option<CaCertHash> = checker.parse_required(
        "join.discovery-token-ca-cert-hash",
        raw.discovery_token_ca_cert_hash.as_ref(),
        hint,
    );
    let certificate_key: Option<CertificateKey> =
        checker.parse_optional("join.certificate-key", raw.certificate_key.as_ref());

    let role_is_control_plane = role.map(|role| role == NodeRole::ControlPlane);
    if let (Some(explicit), Some(expected)) = (raw.control_plane, role_is_control_plane)
        && explicit != expected
    {
        let role = if expected { "control-plane" } else { "worker" };
        checker.report(
            "join.control-plane",
            format!("is {explicit} but node.role is \"{role}\"; they must agree"),
        );
    }
    let control_plane = raw.control_plane.or(role_is_control_plane).unwrap_or(false);
    if control_plane && raw.certificate_key.is_none() {
        checker.report(
            "join.certificate-key",
            "missing; a control-plane join needs the certificate key printed by `bootstrap init --upload-certs` to fetch the shared CA keys",
        );
    }
    if !control_plane && raw.certificate_key.is_some() {
        checker.report_once(
            "join.certificate-key",
            "only a control-plane join uses it; remove it so the key that unlocks the cluster CA does not spread to workers",
        );
    }
    Some(JoinConfig {
        endpoint: endpoint?,
        token: token?,
        discovery_token_ca_cert_hash: discovery_token_ca_cert_hash?,
        control_plane,
        certificate_key,
    })
}

/// Which `[cluster]` keys fit this node's role and whether it joins.
fn check_roles_and_sections(checker: &mut Checker, raw: &RawMachineConfig, role: Option<NodeRole>) {
    let Some(cluster) = &raw.cluster else {
        return;
    };
    let init_only = [
        ("name", cluster.name.is_some()),
        ("pod-network-cidr", cluster.pod_network_cidr.is_some()),
        ("service-cidr", cluster.service_cidr.is_some()),
        ("service-dns-domain", cluster.service_dns_domain.is_some()),
        ("token", cluster.token.is_some()),
        ("certificate-key", cluster.certificate_key.is_some()),
    ];
    for (key, _) in init_only.iter().filter(|(_, set)| *set) {
        let path = format!("cluster.{key}");
        if raw.join.is_some() {
            checker.report_once(
                path,
                "is decided when the cluster is initialised and a joining node reads it from the cluster; remove it (or remove [join] to initialise a new cluster)",
            );
        } else if role == Some(NodeRole::Worker) {
            checker.report_once(
                path,
                "only the control-plane node that initialises the cluster uses it; a worker joins with a [join] section",
            );
        }
    }
    if role == Some(NodeRole::Worker) {
        if !cluster.apiserver_cert_extra_sans.is_empty() {
            checker.report_once(
                "cluster.apiserver-cert-extra-sans",
                "a worker runs no apiserver; set it on control-plane nodes only",
            );
        }
        if cluster.vip.is_some() {
            checker.report_once(
                "cluster.vip",
                "only control-plane nodes hold the VIP; remove [cluster.vip] from worker configs",
            );
        }
    }
}

/// The join endpoint, the cluster endpoint and the VIP must describe the
/// same place.
fn check_endpoints(
    checker: &mut Checker,
    cluster: Option<&ClusterConfig>,
    join: Option<&JoinConfig>,
) {
    let endpoint = cluster.and_then(|cluster| cluster.control_plane_endpoint.as_ref());
    if let (Some(join), Some(endpoint)) = (join, endpoint)
        && join.endpoint.url(DEFAULT_APISERVER_PORT) != endpoint.url(DEFAULT_APISERVER_PORT)
    {
        checker.report_once(
            "join.endpoint",
            format!(
                "is {} but cluster.control-plane-endpoint is {endpoint}; a node joins through the cluster's endpoint, so they must agree (or leave one out)",
                join.endpoint
            ),
        );
    }
    let vip = cluster.and_then(|cluster| cluster.vip.as_ref());
    if let (Some(vip), Some(endpoint)) = (vip, endpoint)
        && let Host::Ip(ip) = endpoint.host
        && ip != vip.address
    {
        checker.report_once(
            "cluster.control-plane-endpoint",
            format!(
                "is the address {ip} but cluster.vip.address is {}; point the endpoint at the VIP (or a DNS name for it) so clients follow the VIP when it moves",
                vip.address
            ),
        );
    }
}

fn static_addresses(node: &NodeConfig) -> &[InterfaceAddress] {
    match &node.addressing {
        Addressing::Static { addresses, .. } => addresses,
        Addressing::Dhcp => &[],
    }
}

fn check_vip_against_node(
    checker: &mut Checker,
    cluster: Option<&ClusterConfig>,
    node: &NodeConfig,
) {
    let Some(vip) = cluster.and_then(|cluster| cluster.vip.as_ref()) else {
        return;
    };
    let addresses = static_addresses(node);
    if let Some(index) = addresses
        .iter()
        .position(|address| address.address() == vip.address)
    {
        checker.report_once(
            "cluster.vip.address",
            format!(
                "{} is also node.addresses[{index}]; the VIP must be an address no node owns",
                vip.address
            ),
        );
        return;
    }
    // Gratuitous ARP only moves an address within its link; judge this only
    // when the node's static addresses are known to be on the VIP interface.
    let same_interface = node.interface.as_ref() == Some(&vip.interface);
    if same_interface
        && !addresses.is_empty()
        && !addresses
            .iter()
            .any(|address| address.subnet_contains(vip.address))
    {
        checker.report_once(
            "cluster.vip.address",
            format!(
                "{} is outside the subnets of node.addresses on {}; the VIP must be on the same link so other nodes can reach it",
                vip.address, vip.interface
            ),
        );
    }
}

/// On the node that initialises the cluster: pod network, service network
/// and node network must be disjoint, or routing breaks in ways that are
/// hard to trace later.
fn check_networks_do_not_collide(
    checker: &mut Checker,
    raw: Option<&RawCluster>,
    cluster: Option<&ClusterConfig>,
    node: &NodeConfig,
) {
    let default_cluster = ClusterConfig::default();
    let cluster = cluster.unwrap_or(&default_cluster);
    // A CIDR that was set but failed to parse has been reported already;
    // checking its default instead would only confuse.
    let pod_valid =
        raw.is_none_or(|raw| raw.pod_network_cidr.is_none() || cluster.pod_network_cidr.is_some());
    let service_valid =
        raw.is_none_or(|raw| raw.service_cidr.is_none() || cluster.service_cidr.is_some());
    let describe = |key: &str, cidr: Cidr, explicit: bool| {
        let origin = if explicit { "" } else { " (the default)" };
        format!("cluster.{key} {cidr}{origin}")
    };
    let mut networks = Vec::new();
    if pod_valid {
        networks.push((
            "pod-network-cidr",
            cluster.effective_pod_network_cidr(),
            describe(
                "pod-network-cidr",
                cluster.effective_pod_network_cidr(),
                cluster.pod_network_cidr.is_some(),
            ),
        ));
    }
    if service_valid {
        networks.push((
            "service-cidr",
            cluster.effective_service_cidr(),
            describe(
                "service-cidr",
                cluster.effective_service_cidr(),
                cluster.service_cidr.is_some(),
            ),
        ));
    }
    if let [(_, pod, pod_text), (_, service, _)] = networks.as_slice()
        && (pod.contains(service.network()) || service.contains(pod.network()))
    {
        checker.report_once(
            "cluster.service-cidr",
            format!("{service} overlaps {pod_text}; pods and Services need separate networks"),
        );
    }
    for (index, address) in static_addresses(node).iter().enumerate() {
        for (_, network, text) in &networks {
            if network.contains(address.address()) {
                checker.report_once(
                    format!("node.addresses[{index}]"),
                    format!("{address} lies inside {text}; move the node or pick another network"),
                );
            }
        }
    }
    if let Some(vip) = &cluster.vip {
        for (_, network, text) in &networks {
            if network.contains(vip.address) {
                checker.report_once(
                    "cluster.vip.address",
                    format!(
                        "{} lies inside {text}; the VIP must be on the node network",
                        vip.address
                    ),
                );
            }
        }
    }
}
