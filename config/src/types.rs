//! Validated value types the machine config adds to those of `cairn-pki`
//! (CIDRs, endpoints, names, tokens) and `cairn-images` (sysctls, modules,
//! OCI names, URLs).
//!
//! Each type parses with [`FromStr`], converts from and into `String` for
//! serde, and refuses bad input with a message that quotes the value and says
//! what was expected. Secrets are never quoted.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use cairn_images::profile::{OciName, OciTag, Sha256};
use cairn_pki::types::InvalidValue;
use serde::{Deserialize, Serialize};

fn invalid(message: impl Into<String>) -> InvalidValue {
    InvalidValue(message.into())
}

/// Adds `as_str`, `Display`, `TryFrom<String>`, `From<T> for String` and serde
/// support (through `String`) to a newtype that implements `FromStr` with
/// [`InvalidValue`] as its error.
macro_rules! string_conversions {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, InvalidValue> {
                value.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.to_string()
            }
        }
    };
}

/// Defines a newtype over a validated, canonical `String`.
macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident, $validate:path) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The validated value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(value: &str) -> Result<Self, InvalidValue> {
                $validate(value).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        string_conversions!($name);
    };
}

/// The role of a node in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NodeRole {
    /// Runs etcd, the apiserver, controller-manager, scheduler and the VIP
    /// manager, as well as workloads if its taint is removed.
    ControlPlane,
    /// Runs workloads only.
    Worker,
}

impl FromStr for NodeRole {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        match value {
            "control-plane" => Ok(Self::ControlPlane),
            "worker" => Ok(Self::Worker),
            other => Err(invalid(format!(
                "{other:?} is not a role; expected \"control-plane\" or \"worker\""
            ))),
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ControlPlane => "control-plane",
            Self::Worker => "worker",
        })
    }
}

string_conversions!(NodeRole);

/// A phase of `init` that `cluster.skip-phases` can name (kubeadm's
/// `--skip-phases` names, in the order a node runs them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum InitPhase {
    /// Ports, ip_forward, memory, binaries, clock.
    Preflight,
    /// The PKI under `/etc/kubernetes/pki`.
    Certs,
    /// The kubeconfig files under `/etc/kubernetes`.
    Kubeconfig,
    /// The local etcd member.
    Etcd,
    /// The apiserver and controller manager.
    ControlPlane,
    /// Waiting for the apiserver's `/readyz`.
    WaitControlPlane,
    /// The `kubeadm-config` ConfigMap.
    UploadConfig,
    /// The encrypted `kubeadm-certs` Secret.
    UploadCerts,
    /// The control-plane role label and NoSchedule taint on the Node.
    MarkControlPlane,
    /// The bootstrap token, `cluster-info` in kube-public.
    BootstrapToken,
    /// The VIP manager.
    Vip,
    /// The join command on the console.
    ShowJoinCommand,
}

impl InitPhase {
    /// Every phase, in the order they run.
    pub const ALL: [InitPhase; 12] = [
        Self::Preflight,
        Self::Certs,
        Self::Kubeconfig,
        Self::Etcd,
        Self::ControlPlane,
        Self::WaitControlPlane,
        Self::UploadConfig,
        Self::UploadCerts,
        Self::MarkControlPlane,
        Self::BootstrapToken,
        Self::Vip,
        Self::ShowJoinCommand,
    ];

    /// kubeadm's name of the phase.
    pub fn name(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Certs => "certs",
            Self::Kubeconfig => "kubeconfig",
            Self::Etcd => "etcd",
            Self::ControlPlane => "control-plane",
            Self::WaitControlPlane => "wait-control-plane",
            Self::UploadConfig => "upload-config",
            Self::UploadCerts => "upload-certs",
            Self::MarkControlPlane => "mark-control-plane",
            Self::BootstrapToken => "bootstrap-token",
            Self::Vip => "vip",
            Self::ShowJoinCommand => "show-join-command",
        }
    }

    /// Why the phase cannot be skipped on a Cairn node, if it cannot.
    pub fn why_not_skippable(self) -> Option<&'static str> {
        match self {
            Self::Etcd => Some(
                "a Cairn control plane runs its own stacked etcd member; nothing else would start one",
            ),
            Self::ControlPlane => Some(
                "the apiserver and controller manager run as node-agent services; nothing else would start them",
            ),
            _ => None,
        }
    }
}

impl FromStr for InitPhase {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        if let Some((top, _)) = value.split_once('/') {
            // kubeadm also selects sub-phases (`certs/apiserver`); here the
            // top-level phase is the unit.
            return Err(invalid(format!(
                "{value:?} is a sub-phase; only whole phases are skipped (e.g. {top:?})"
            )));
        }
        Self::ALL
            .into_iter()
            .find(|phase| phase.name() == value)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
                invalid(format!(
                    "{value:?} is not an init phase; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

impl fmt::Display for InitPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

string_conversions!(InitPhase);

/// An address assigned to an interface, with its prefix length:
/// `10.0.0.11/24`, `fd00::11/64`. Unlike a [`cairn_pki::Cidr`] the host bits
/// are the point: they are this node's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InterfaceAddress {
    address: IpAddr,
    prefix_len: u8,
}

impl InterfaceAddress {
    /// The node's address.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The prefix length of the attached subnet.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` lies in the subnet this address is attached to (and so is
    /// reachable without a router, e.g. a gateway).
    pub fn subnet_contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(own), IpAddr::V4(other)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(own) & mask == u32::from(other) & mask
            }
            (IpAddr::V6(own), IpAddr::V6(other)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(own) & mask == u128::from(other) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for InterfaceAddress {
    type Err = InvalidValue;

    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        let shape = || {
            invalid(format!(
                "{value:?} is not an IP address with a prefix (expected e.g. 10.0.0.11/24)"
            ))
        };
        let Some((address, prefix)) = value.split_once('/') else {
            return Err(match value.parse::<IpAddr>() {
                Ok(ip) => {
                    let example = if ip.is_ipv4() { 24 } else { 64 };
                    invalid(format!(
                        "{value:?} has no prefix length; write the subnet size too, e.g. {ip}/{example}"
                    ))
                }
                Err(_) => shape(),
            });
        };
        let address: IpAddr = address.parse().map_err(|_| shape())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len: u8 =
            prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
                invalid(format!("{value:?}: the prefix length must be 0..={max}"))
            })?;
        if address.is_unspecified() || address.is_loopback() || address.is_multicast() {
            return Err(invalid(format!(
                "{value:?}: an unspecified, loopback or multicast address cannot be a node address"
            )));
        }
        if let IpAddr::V4(v4) = address
            && prefix_len <= 30
        {
            // On /31 and /32 every address is a host; below that the first
            // and last address of the subnet are not.
            let host_mask = u32::MAX >> prefix_len;
            let host_bits = u32::from(v4) & host_mask;
            if host_bits == 0 {
                return Err(invalid(format!(
                    "{value:?} is the network address of its subnet, not a host address"
                )));
            }
            if host_bits == host_mask {
                return Err(invalid(format!(
                    "{value:?} is the broadcast address of its subnet, not a host address"
                )));
            }
        }
        Ok(Self {
            address,
            prefix_len,
        })
    }
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

string_conversions!(InterfaceAddress);

string_newtype!(
    /// A Linux network interface name such as `eth0` or `enp1s0`: 1 to 15
    /// bytes (the kernel's IFNAMSIZ less the terminator), no whitespace, `/`
    /// or `:`, and not `.` or `..`.
    InterfaceName,
    validate_interface_name
);

fn validate_interface_name(value: &str) -> Result<String, InvalidValue> {
    let valid = (1..=15).contains(&value.len())
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if !valid {
        return Err(invalid(format!(
            "{value:?} is not an interface name (expected 1 to 15 characters without whitespace, '/' or ':', e.g. eth0)"
        )));
    }
    Ok(value.to_owned())
}

string_newtype!(
    /// A cluster name (kubeadm's `clusterName`, the cluster entry in
    /// kubeconfigs): a lower-case RFC 1123 subdomain.
    ClusterName,
    validate_cluster_name
);

fn validate_cluster_name(value: &str) -> Result<String, InvalidValue> {
    // Same rules as a node name; only the wording of the message differs.
    value
        .parse::<cairn_pki::NodeName>()
        .map(|name| name.as_str().to_owned())
        .map_err(|_| {
            invalid(format!(
                "{value:?} is not a cluster name (expected lower-case a-z, 0-9, '-' and '.', e.g. \"kubernetes\")"
            ))
        })
}

/// The longest name part of a Kubernetes qualified name.
const QUALIFIED_NAME_MAX: usize = 63;

/// Kubernetes' `IsQualifiedName` name part, also the shape of a non-empty
/// label value: alphanumerics at both ends, `-_.` inside.
fn is_qualified_name_part(part: &str) -> bool {
    (1..=QUALIFIED_NAME_MAX).contains(&part.len())
        && part.starts_with(|c: char| c.is_ascii_alphanumeric())
        && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn is_dns_subdomain(value: &str) -> bool {
    value.parse::<cairn_pki::NodeName>().is_ok()
}

string_newtype!(
    /// A label or taint key, per Kubernetes: an optional prefix that is a
    /// lower-case DNS subdomain followed by `/`, then a name of at most 63
    /// characters (`A-Z a-z 0-9 - _ .`, alphanumeric at both ends), e.g.
    /// `topology.kubernetes.io/zone` or `rack`.
    LabelKey,
    validate_label_key
);

fn validate_label_key(value: &str) -> Result<String, InvalidValue> {
    let expected = "expected [prefix/]name where the prefix is a lower-case DNS subdomain and the name has at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit";
    let (prefix, name) = match value.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Err(invalid(format!(
            "{value:?}: the prefix {prefix:?} is not a lower-case DNS subdomain; {expected}"
        )));
    }
    if !is_qualified_name_part(name) {
        return Err(invalid(format!("{value:?} is not a valid key; {expected}")));
    }
    Ok(value.to_owned())
}

impl LabelKey {
    /// The prefix before `/`, if any (`kubernetes.io` in
    /// `kubernetes.io/hostname`).
    pub fn prefix(&self) -> Option<&str> {
        self.0.split_once('/').map(|(prefix, _)| prefix)
    }
}

string_newtype!(
    /// A label or taint value, per Kubernetes: empty, or at most 63
    /// characters of `A-Z a-z 0-9 - _ .`, alphanumeric at both ends.
    LabelValue,
    validate_label_value
);

fn validate_label_value(value: &str) -> Result<String, InvalidValue> {
    if value.is_empty() || is_qualified_name_part(value) {
        return Ok(value.to_owned());
    }
    Err(invalid(format!(
        "{value:?} is not a valid value (expected at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit; or empty)"
    )))
}

/// What a taint does to pods that do not tolerate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TaintEffect {
    /// New pods are not scheduled on the node.
    NoSchedule,
    /// The scheduler avoids the node when it can.
    PreferNoSchedule,
    /// New pods are not scheduled and running ones are evicted.
    NoExecute,
}

impl FromStr for TaintEffect {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        match value {
            "NoSchedule" => Ok(Self::NoSchedule),
            "PreferNoSchedule" => Ok(Self::PreferNoSchedule),
            "NoExecute" => Ok(Self::NoExecute),
            other => Err(invalid(format!(
                "{other:?} is not a taint effect; expected \"NoSchedule\", \"PreferNoSchedule\" or \"NoExecute\""
            ))),
        }
    }
}

impl fmt::Display for TaintEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoSchedule => "NoSchedule",
            Self::PreferNoSchedule => "PreferNoSchedule",
            Self::NoExecute => "NoExecute",
        })
    }
}

string_conversions!(TaintEffect);

/// The CA pin joiners verify, `sha256:<64 hex digits>` (kubeadm's
/// `--discovery-token-ca-cert-hash`), stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaCertHash(String);

impl CaCertHash {
    /// `sha256:<hex>`, as `cairn_pki::ca_cert_hash` computes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CaCertHash {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        cairn_pki::parse_ca_cert_hash(value).map(Self)
    }
}

impl fmt::Display for CaCertHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_conversions!(CaCertHash);

/// An OCI image reference pinned by tag or digest:
/// `registry.k8s.io/pause:3.9`, `example.org/app@sha256:<64 hex>` or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageReference {
    name: OciName,
    tag: Option<OciTag>,
    digest: Option<Sha256>,
}

impl ImageReference {
    /// The repository, e.g. `registry.k8s.io/pause`.
    pub fn name(&self) -> &OciName {
        &self.name
    }

    /// The tag, e.g. `3.9`.
    pub fn tag(&self) -> Option<&OciTag> {
        self.tag.as_ref()
    }

    /// The sha256 digest (hex, without `sha256:`).
    pub fn digest(&self) -> Option<&Sha256> {
        self.digest.as_ref()
    }
}

impl FromStr for ImageReference {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        let expected = "expected NAME:TAG or NAME@sha256:DIGEST, e.g. registry.k8s.io/pause:3.9";
        let (rest, digest) = match value.split_once('@') {
            Some((rest, digest)) => {
                let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
                    invalid(format!(
                        "{value:?}: only sha256 digests are supported; {expected}"
                    ))
                })?;
                let digest: Sha256 = hex
                    .parse()
                    .map_err(|e| invalid(format!("{value:?}: {e}; {expected}")))?;
                (rest, Some(digest))
            }
            None => (value, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to
        // a registry port (`localhost:5000/pause`).
        let last_slash = rest.rfind('/').map_or(0, |index| index + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            None => (rest, None),
        };
        let name: OciName = name
            .parse()
            .map_err(|e| invalid(format!("{value:?}: {e}; {expected}")))?;
        let tag = tag
            .map(|tag| {
                tag.parse::<OciTag>()
                    .map_err(|e| invalid(format!("{value:?}: {e}; {expected}")))
            })
            .transpose()?;
        if tag.is_none() && digest.is_none() {
            return Err(invalid(format!(
                "{value:?} has neither a tag nor a digest; pin it, {expected}"
            )));
        }
        Ok(Self { name, tag, digest })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@sha256:{digest}")?;
        }
        Ok(())
    }
}

string_conversions!(ImageReference);

/// A registry host as containerd's `hosts.toml` directories name it:
/// `docker.io`, `registry.example.org:5000`, `10.0.0.5:5000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegistryHost(String);

impl RegistryHost {
    /// The host with its optional port.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RegistryHost {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        // HOST[:PORT] has the syntax of a control-plane endpoint; reuse its
        // parser and keep its canonical (lower-case) spelling.
        value
            .parse::<cairn_pki::ControlPlaneEndpoint>()
            .map(|endpoint| Self(endpoint.to_string()))
            .map_err(|_| {
                invalid(format!(
                    "{value:?} is not a registry host (expected HOST or HOST:PORT, e.g. docker.io or registry.example.org:5000)"
                ))
            })
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_conversions!(RegistryHost);

/// The containerd snapshotter for container root filesystems. Only those
/// that need nothing beyond the kernel and the image are offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Snapshotter {
    /// overlayfs (containerd's default; needs the `overlay` module).
    Overlayfs,
    /// Plain copies: slow and large, but works on any filesystem.
    Native,
}

impl FromStr for Snapshotter {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        match value {
            "overlayfs" => Ok(Self::Overlayfs),
            "native" => Ok(Self::Native),
            other => Err(invalid(format!(
                "{other:?} is not a supported snapshotter; expected \"overlayfs\" or \"native\""
            ))),
        }
    }
}

impl fmt::Display for Snapshotter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Overlayfs => "overlayfs",
            Self::Native => "native",
        })
    }
}

string_conversions!(Snapshotter);

/// One or more PEM `CERTIFICATE` blocks, each a CA certificate
/// (`basicConstraints CA:TRUE`), e.g. the CA whose client certificates may
/// use the node API. Kept as the PEM text it was given, normalised to end
/// in a newline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaBundle(String);

impl CaBundle {
    /// The PEM text.
    pub fn as_pem(&self) -> &str {
        &self.0
    }
}

impl FromStr for CaBundle {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        let expected = "expected one or more PEM CERTIFICATE blocks of CA certificates";
        let blocks =
            pem::parse_many(value).map_err(|e| invalid(format!("not PEM ({e}); {expected}")))?;
        if blocks.is_empty() {
            return Err(invalid(format!("holds no PEM block; {expected}")));
        }
        for (index, block) in blocks.iter().enumerate() {
            let number = index + 1;
            if block.tag() != "CERTIFICATE" {
                return Err(invalid(format!(
                    "block {number} is a {:?}, not a CERTIFICATE (never put private keys here); {expected}",
                    block.tag()
                )));
            }
            let info = cairn_pki::cert::CertInfo::from_der(block.contents())
                .map_err(|e| invalid(format!("block {number}: {e}; {expected}")))?;
            if !info.is_ca {
                return Err(invalid(format!(
                    "block {number} ({:?}) is not a CA certificate; {expected}",
                    info.common_name
                )));
            }
        }
        let mut text = value.trim().to_owned();
        text.push('\n');
        Ok(Self(text))
    }
}

impl fmt::Display for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_conversions!(CaBundle);

#[cfg(test)]
mod tests {
    use crate::*;

    #[test]
    fn interface_addresses_need_a_prefix_and_a_host_part() {
        let address: InterfaceAddress = "10.0.0.11/24".parse().expect("valid address");
        assert_eq!(address.to_string(), "10.0.0.11/24");
        assert!(address.subnet_contains("10.0.0.1".parse().expect("ip")));
        assert!(!address.subnet_contains("10.0.1.1".parse().expect("ip")));
        assert!("fd00::11/64".parse::<InterfaceAddress>().is_ok());
        assert!("10.0.0.1/31".parse::<InterfaceAddress>().is_ok());
        for (input, needle) in [
            (
                "10.0.0.300/24",
                "\"10.0.0.300/24\" is not an IP address with a prefix (expected e.g. 10.0.0.11/24)",
            ),
            (
                "10.0.0.11",
                "no prefix length; write the subnet size too, e.g. 10.0.0.11/24",
            ),
            ("10.0.0.11/33", "0..=32"),
            ("10.0.0.0/24", "network address"),
            ("10.0.0.255/24", "broadcast address"),
            ("127.0.0.1/8", "loopback"),
        ] {
            let message = input
                .parse::<InterfaceAddress>()
                .expect_err(input)
                .to_string();
            assert!(message.contains(needle), "{input}: {message}");
        }
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes_rules() {
        for good in [
            "rack",
            "topology.kubernetes.io/zone",
            "example.com/Team_A",
            "a.b-c",
        ] {
            assert!(good.parse::<LabelKey>().is_ok(), "{good} refused");
        }
        for bad in ["", "-rack", "Example.com/x", "a/b/c", "x/", &"a".repeat(64)] {
            assert!(bad.parse::<LabelKey>().is_err(), "{bad} accepted");
        }
        for good in ["", "v1.2", "A_b-c"] {
            assert!(good.parse::<LabelValue>().is_ok(), "{good} refused");
        }
        for bad in ["-x", "x.", "a b", &"a".repeat(64)] {
            assert!(bad.parse::<LabelValue>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn image_references_must_be_pinned() {
        for (input, canonical) in [
            ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
            ("localhost:5000/pause:3.9", "localhost:5000/pause:3.9"),
        ] {
            let reference: ImageReference = input.parse().expect(input);
            assert_eq!(reference.to_string(), canonical);
        }
        let digest = format!("registry.k8s.io/pause@sha256:{}", "a".repeat(64));
        assert!(digest.parse::<ImageReference>().is_ok());
        for bad in [
            "registry.k8s.io/pause",
            "localhost:5000/pause",
            "Pause:3.9",
            "x@md5:00",
        ] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn small_enums_and_names_parse_their_documented_spellings() {
        assert_eq!(
            "control-plane".parse::<NodeRole>().expect("role"),
            NodeRole::ControlPlane
        );
        assert!("master".parse::<NodeRole>().is_err());
        assert_eq!(
            "NoExecute".parse::<TaintEffect>().expect("effect"),
            TaintEffect::NoExecute
        );
        assert!("noschedule".parse::<TaintEffect>().is_err());
        assert!("enp1s0".parse::<InterfaceName>().is_ok());
        assert!("a-very-long-interface".parse::<InterfaceName>().is_err());
        assert!("eth0:1".parse::<InterfaceName>().is_err());
        assert_eq!(
            "Registry.Example.org:5000"
                .parse::<RegistryHost>()
                .expect("host")
                .as_str(),
            "registry.example.org:5000"
        );
        assert!("https://docker.io".parse::<RegistryHost>().is_err());
        assert!("kubernetes".parse::<ClusterName>().is_ok());
        assert!("My_Cluster".parse::<ClusterName>().is_err());
        let hash = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(
            hash.parse::<CaCertHash>().expect("hash").as_str(),
            format!("sha256:{}", "ab".repeat(32))
        );
    }
}
