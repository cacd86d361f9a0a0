//! Validated newtypes for everything a user types into a PKI request.
//!
//! Each type parses with [`std::str::FromStr`] and rejects bad input with a
//! message that says what was expected, so a CLI can hand these straight to
//! its argument parser and the library never sees an unvalidated string.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why a value was rejected; the text is meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

/// An IP network in CIDR notation (`10.96.0.0/12`, `fd00:10:96::/112`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The first usable address: kubeadm gives it to the `kubernetes`
    /// Service and puts it in the apiserver certificate.
    pub fn first_host(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4).wrapping_add(1)).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6).wrapping_add(1)).into()),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = prefix_mask_v4(self.prefix_len);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = prefix_mask_v6(self.prefix_len);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

fn prefix_mask_v4(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn prefix_mask_v6(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected an IP network in CIDR notation such as 10.96.0.0/12";
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| invalid(format!("{s:?}: missing /prefix-length; {expected}")))?;
        let network: IpAddr = addr
            .parse()
            .map_err(|_| invalid(format!("{s:?}: {addr:?} is not an IP address; {expected}")))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| invalid(format!("{s:?}: prefix length must be 0..={max}")))?;
        let masked = match network {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & prefix_mask_v4(prefix_len)).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & prefix_mask_v6(prefix_len)).into()),
        };
        if masked != network {
            return Err(invalid(format!(
                "{s:?}: host bits are set; did you mean {masked}/{prefix_len}?"
            )));
        }
        let host_bits = u32::from(max - prefix_len);
        if host_bits < 2 {
            return Err(invalid(format!(
                "{s:?}: a /{prefix_len} network has no room for service addresses"
            )));
        }
        Ok(Self {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

fn check_dns_label(label: &str, whole: &str) -> Result<(), InvalidValue> {
    if label.is_empty() || label.len() > 63 {
        return Err(invalid(format!(
            "{whole:?}: each dot-separated label must be 1 to 63 characters"
        )));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(invalid(format!(
            "{whole:?}: labels may contain only letters, digits and '-'"
        )));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(invalid(format!(
            "{whole:?}: labels must not start or end with '-'"
        )));
    }
    Ok(())
}

/// A DNS name as it may appear in a certificate, optionally with a leading
/// `*.` wildcard label. Stored lower-case because DNS is case-insensitive and
/// certificate comparisons must not see a difference where there is none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsName(String);

impl DnsName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }
}

impl FromStr for DnsName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        if lower.is_empty() || lower.len() > 253 {
            return Err(invalid(format!(
                "{s:?}: a DNS name must be 1 to 253 characters"
            )));
        }
        let rest = lower.strip_prefix("*.").unwrap_or(&lower);
        if rest.is_empty() {
            return Err(invalid(format!(
                "{s:?}: a wildcard needs a domain after '*.'"
            )));
        }
        for label in rest.split('.') {
            check_dns_label(label, s)?;
        }
        Ok(Self(lower))
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cluster DNS domain such as `cluster.local` (no wildcard).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsDomain(DnsName);

impl DnsDomain {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl FromStr for DnsDomain {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name: DnsName = s.parse()?;
        if name.is_wildcard() {
            return Err(invalid(format!("{s:?}: a DNS domain cannot be a wildcard")));
        }
        Ok(Self(name))
    }
}

impl fmt::Display for DnsDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Default for DnsDomain {
    fn default() -> Self {
        Self(DnsName("cluster.local".to_owned()))
    }
}

/// A Kubernetes node name: a lower-case RFC 1123 subdomain, as the Node
/// object's `metadata.name` requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_rfc1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl FromStr for NodeName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_rfc1123_subdomain(s) {
            return Ok(Self(s.to_owned()));
        }
        let lower = s.to_ascii_lowercase();
        if is_rfc1123_subdomain(&lower) {
            return Err(invalid(format!(
                "{s:?}: upper-case letters are not allowed in a node name; use {lower:?}"
            )));
        }
        Err(invalid(format!(
            "{s:?}: expected a lower-case RFC 1123 name (a-z, 0-9, '-', '.'; at most 253 characters, each label starting and ending with a letter or digit)"
        )))
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One subjectAltName entry: an IP address or a DNS name (wildcards allowed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectAltName {
    Dns(DnsName),
    Ip(IpAddr),
}

impl FromStr for SubjectAltName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if let Ok(ip) = trimmed
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
        {
            return Ok(Self::Ip(ip));
        }
        trimmed.parse().map(Self::Dns).map_err(|e: InvalidValue| {
            invalid(format!(
                "{s:?} is neither an IP address nor a DNS name ({e})"
            ))
        })
    }
}

impl fmt::Display for SubjectAltName {
    /// OpenSSL's spelling (`DNS:name`, `IP Address:1.2.3.4`) so messages match
    /// what `openssl x509 -text` shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => write!(f, "DNS:{name}"),
            Self::Ip(ip) => write!(f, "IP Address:{ip}"),
        }
    }
}

impl From<IpAddr> for SubjectAltName {
    fn from(ip: IpAddr) -> Self {
        Self::Ip(ip)
    }
}

/// The host part of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Dns(DnsName),
    Ip(IpAddr),
}

impl From<Host> for SubjectAltName {
    fn from(host: Host) -> Self {
        match host {
            Host::Dns(name) => Self::Dns(name),
            Host::Ip(ip) => Self::Ip(ip),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => name.fmt(f),
            Self::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Self::Ip(ip) => ip.fmt(f),
        }
    }
}

/// kubeadm's `--control-plane-endpoint`: `HOST[:PORT]`, where HOST is an IP
/// address (IPv6 in brackets when a port follows) or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ControlPlaneEndpoint {
    pub host: Host,
    pub port: Option<u16>,
}

impl ControlPlaneEndpoint {
    /// The `https://` URL clients use, with `default_port` when none was given.
    pub fn url(&self, default_port: u16) -> String {
        format!(
            "https://{}:{}",
            self.host,
            self.port.unwrap_or(default_port)
        )
    }
}

impl FromStr for ControlPlaneEndpoint {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected HOST or HOST:PORT, where HOST is an IP address ([v6] with a port) or a DNS name";
        if s.contains("://") {
            return Err(invalid(format!(
                "{s:?}: give the host without a scheme; {expected}"
            )));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self {
                host: Host::Ip(ip),
                port: None,
            });
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid(format!("{s:?}: unclosed '['; {expected}")))?;
            let ip: IpAddr = v6
                .parse()
                .map_err(|_| invalid(format!("{s:?}: {v6:?} is not an IPv6 address")))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| invalid(format!("{s:?}: {expected}")))?,
                ),
            };
            (Host::Ip(ip), port)
        } else {
            let (host, port) = match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            };
            let host = match host.parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) => {
                    let name: DnsName = host
                        .parse()
                        .map_err(|e| invalid(format!("{e}; {expected}")))?;
                    if name.is_wildcard() {
                        return Err(invalid(format!("{s:?}: an endpoint cannot be a wildcard")));
                    }
                    Host::Dns(name)
                }
            };
            (host, port)
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid(format!("{s:?}: port {p:?} must be 1..=65535")))
            })
            .transpose()?;
        Ok(Self { host, port })
    }
}

impl fmt::Display for ControlPlaneEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => self.host.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_finds_first_host() {
        let cidr: Cidr = "10.96.0.0/12".parse().expect("valid");
        assert_eq!(cidr.first_host().to_string(), "10.96.0.1");
        let v6: Cidr = "fd00:10:96::/112".parse().expect("valid");
        assert_eq!(v6.first_host().to_string(), "fd00:10:96::1");
        assert!(cidr.contains("10.100.1.2".parse().expect("ip")));
        assert!(!cidr.contains("10.112.0.1".parse().expect("ip")));
    }

    #[test]
    fn cidr_rejects_bad_input_with_reason() {
        for (input, needle) in [
            ("10.96.0.0", "missing /prefix-length"),
            ("10.96.0.0/33", "prefix length"),
            ("10.96.0.1/12", "did you mean 10.96.0.0/12"),
            ("banana/12", "not an IP address"),
            ("10.0.0.0/32", "no room"),
        ] {
            let err = input.parse::<Cidr>().expect_err(input).to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn sans_accept_ips_dns_and_wildcards() {
        assert_eq!(
            "10.0.0.1".parse::<SubjectAltName>().expect("ip"),
            SubjectAltName::Ip("10.0.0.1".parse().expect("ip"))
        );
        assert!(matches!(
            "*.Example.com".parse::<SubjectAltName>().expect("wildcard"),
            SubjectAltName::Dns(name) if name.as_str() == "*.example.com"
        ));
        for bad in ["bad_name", "*.", "a..b", "-a.com", "foo.*.com", ""] {
            assert!(bad.parse::<SubjectAltName>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn endpoints_parse_every_form() {
        let cases = [
            ("10.0.0.10", "https://10.0.0.10:6443"),
            ("10.0.0.10:8443", "https://10.0.0.10:8443"),
            ("k8s.example.com", "https://k8s.example.com:6443"),
            ("k8s.example.com:443", "https://k8s.example.com:443"),
            ("fd00::10", "https://[fd00::10]:6443"),
            ("[fd00::10]:7443", "https://[fd00::10]:7443"),
        ];
        for (input, url) in cases {
            let endpoint: ControlPlaneEndpoint = input.parse().expect(input);
            assert_eq!(endpoint.url(6443), url);
        }
        for bad in ["https://x", "x:0", "x:99999", "[fd00::1", "*.x.com", "a b"] {
            assert!(
                bad.parse::<ControlPlaneEndpoint>().is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn node_names_follow_rfc1123() {
        assert!("cp-1".parse::<NodeName>().is_ok());
        assert!("node.example".parse::<NodeName>().is_ok());
        let err = "CP1".parse::<NodeName>().expect_err("upper").to_string();
        assert!(err.contains("\"cp1\""), "{err}");
        for bad in ["", "-a", "a_b", "a..b"] {
            assert!(bad.parse::<NodeName>().is_err(), "{bad} accepted");
        }
    }
}
