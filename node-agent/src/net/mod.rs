//! Node networking: links, addresses, routes, DHCPv4 and `resolv.conf`.
//!
//! node-agent is a static binary and the image carries neither iproute2
//! nor a DHCP client, so everything happens here, in Rust:
//!
//! - [`netlink`] speaks rtnetlink over a `NETLINK_ROUTE` socket with a small
//!   hand-written encoder: link dump (`RTM_GETLINK`), link up/down
//!   (`RTM_NEWLINK`), address add/remove (`RTM_NEWADDR`/`RTM_DELADDR`) and
//!   routes (`RTM_NEWROUTE`). Each request waits for the kernel's ack, so an
//!   error comes back with the operation that caused it.
//! - [`dhcp_wire`] encodes and decodes DHCPv4 messages; [`dhcp`] runs the
//!   DISCOVER / OFFER / REQUEST / ACK exchange with retries and backoff
//!   until a deadline. It needs no raw socket: a UDP socket bound to
//!   `0.0.0.0:68`, tied to the interface with `SO_BINDTODEVICE`, with
//!   `SO_BROADCAST` and the BOOTP broadcast flag set, so servers broadcast
//!   their replies and the kernel delivers them before the interface has an
//!   address.
//! - [`link`] chooses the interface: the one the plan names (by name or
//!   MAC), else the first Ethernet interface (lowest index; bridges, bonds,
//!   VLANs and other upper devices excluded) that reports carrier after it
//!   was set up, waiting until the deadline. Interfaces set up only to look
//!   for carrier are set down again.
//! - [`apply()`] puts it together: static addresses (IPv4 and IPv6) and a
//!   default route, or a DHCP lease. A leased address is added with the
//!   lease time as its valid lifetime, so **when a lease ends without being
//!   renewed the kernel removes the address** (and the routes through it),
//!   as dhclient and systemd-networkd do. [`renew::LeaseKeeper`] keeps the
//!   lease: a thread that renews at T1 (unicast REQUEST), rebinds at T2
//!   (broadcast REQUEST), and starts over with DISCOVER if the lease is
//!   lost or refused.
//! - [`cmdline`] reads the kernel / dracut `ip=` argument, [`resolv`]
//!   writes `resolv.conf` atomically.
//!
//! Host side effects sit behind [`host::NetHost`] and
//! [`host::DhcpTransport`]; [`host::LinuxNet`] is the real machine, and the
//! sequence is unit-tested with recording doubles. Every socket is created
//! in the calling thread's network namespace, which is what lets the
//! integration tests run a whole DHCP exchange between two namespaces.
//!
//! Not done: DHCPv6 and SLAAC configuration (the kernel's own SLAAC still
//! works on an interface that is up), ARP conflict detection of an offered
//! address (DHCPDECLINE), and more than one interface per plan.

pub mod apply;
pub mod cmdline;
pub mod dhcp;
pub mod dhcp_wire;
pub mod host;
pub mod link;
pub mod netlink;
pub mod renew;
pub mod resolv;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cmdline::parse_kernel_ip_arg;
pub use dhcp::Lease;
pub use renew::LeaseKeeper;
pub use resolv::write_resolv_conf;

/// What the network of a node should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    /// Interface name (`eth0`) or MAC (`52:54:00:12:34:56`); `None` picks
    /// the first Ethernet interface with carrier.
    pub interface: Option<String>,
    pub addressing: Addressing,
    /// Name servers. When set they win over the ones a DHCP lease offers.
    pub dns: Vec<IpAddr>,
    /// The node's hostname, sent to the DHCP server (option 12) when set.
    pub hostname: Option<String>,
}

impl NetworkPlan {
    /// DHCP on the first Ethernet interface with carrier.
    pub fn dhcp() -> Self {
        Self {
            interface: None,
            addressing: Addressing::Dhcp,
            dns: Vec::new(),
            hostname: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressing {
    /// DHCPv4.
    Dhcp,
    /// Fixed addresses (with prefix length) and an optional default gateway.
    Static {
        addresses: Vec<(IpAddr, u8)>,
        gateway: Option<IpAddr>,
    },
}

/// What [`apply()`] configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkState {
    pub interface: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub addresses: Vec<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    /// The plan's name servers, else the lease's.
    pub dns: Vec<IpAddr>,
    /// The lease's domain name (option 15), for `resolv.conf`'s `search`.
    pub search: Vec<String>,
    /// The hostname the DHCP server assigned (option 12).
    pub dhcp_hostname: Option<String>,
    /// Lease time in seconds; `None` for static addressing or an infinite
    /// lease.
    pub lease_seconds: Option<u32>,
    /// The whole lease, for [`LeaseKeeper::start`].
    pub lease: Option<Lease>,
}

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: Option<String>,
    /// Link type Ethernet (`ARPHRD_ETHER`), not loopback.
    pub is_ethernet: bool,
    pub carrier: bool,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// The link kind of a virtual device (`veth`, `bridge`, `vlan`, ...).
    pub kind: Option<String>,
    /// Index of the bridge or bond this link is enslaved to.
    pub master: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("netlink: {operation} on {interface}: {source}")]
    Netlink {
        operation: String,
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{operation} on {interface}: {source}")]
    Socket {
        operation: String,
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {name} not found within {waited:?} (present: {})", present.join(", "))]
    NoInterface {
        name: String,
        waited: Duration,
        present: Vec<String>,
    },
    #[error("{}", no_carrier_message(candidates, *waited))]
    NoCarrier {
        waited: Duration,
        candidates: Vec<String>,
    },
    #[error("DHCP on {interface}: {stage} within {waited:?}")]
    DhcpTimeout {
        interface: String,
        stage: &'static str,
        waited: Duration,
    },
    #[error("kernel argument ip={value}: {field}: {reason}")]
    InvalidIpArg {
        value: String,
        field: &'static str,
        reason: String,
    },
    #[error("kernel argument ip={value}: networking is turned off")]
    NetworkingOff { value: String },
    #[error("network plan: {0}")]
    InvalidPlan(String),
    #[error("writing {}: {source}", path.display())]
    ResolvConf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn no_carrier_message(candidates: &[String], waited: Duration) -> String {
    if candidates.is_empty() {
        format!("no Ethernet interface found within {waited:?}")
    } else {
        format!(
            "no carrier on any Ethernet interface within {waited:?} (tried {})",
            candidates.join(", ")
        )
    }
}

/// Sets the loopback interface up (the kernel then assigns 127.0.0.1/8
/// and ::1).
pub fn loopback_up() -> Result<(), NetError> {
    link::loopback_up(&mut host::LinuxNet)
}

/// Every interface of this thread's network namespace, by index.
pub fn links() -> Result<Vec<Link>, NetError> {
    use host::NetHost;
    host::LinuxNet.links()
}

/// MAC of the interface [`apply()`] would pick without a name, for `${mac}`
/// in configuration URLs: the first candidate with carrier, else the first
/// candidate. After [`apply()`], [`NetworkState::mac`] is the authoritative
/// answer.
pub fn primary_mac() -> Option<String> {
    use host::NetHost;
    let links = host::LinuxNet.links().ok()?;
    link::primary(&links).and_then(|l| l.mac.clone())
}

/// Configures the network as planned, waiting at most `deadline` for the
/// interface, carrier and a DHCP lease.
pub fn apply(plan: &NetworkPlan, deadline: Duration) -> Result<NetworkState, NetError> {
    apply::apply(&mut host::LinuxNet, plan, deadline)
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

/// Whether `address` lies in `network/prefix`.
pub fn in_subnet(address: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = prefix_mask_v4(prefix);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = u32::from(prefix.min(128));
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn prefix_mask_v4(prefix: u8) -> u32 {
    let bits = u32::from(prefix.min(32));
    if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    }
}

/// Prefix length of a contiguous dotted netmask.
pub fn netmask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The subnet's broadcast address.
pub fn broadcast_v4(address: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(address) | !prefix_mask_v4(prefix))
}

/// Where a caller usually writes name servers.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Convenience: [`write_resolv_conf`] at [`RESOLV_CONF`] from a state.
pub fn write_resolv_conf_for(state: &NetworkState) -> Result<(), NetError> {
    write_resolv_conf(Path::new(RESOLV_CONF), &state.dns, &state.search)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_macs() {
        assert_eq!(netmask_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(netmask_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(netmask_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(netmask_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
        assert_eq!(
            broadcast_v4(Ipv4Addr::new(10, 1, 2, 3), 16),
            Ipv4Addr::new(10, 1, 255, 255)
        );
        assert_eq!(
            parse_mac("52:54:00:AB:cd:01"),
            Some([0x52, 0x54, 0, 0xab, 0xcd, 1])
        );
        assert_eq!(parse_mac("52:54:00:ab:cd"), None);
        assert_eq!(
            format_mac(&[0x52, 0x54, 0, 0xab, 0xcd, 1]),
            "52:54:00:ab:cd:01"
        );
        assert!(in_subnet(
            "10.0.0.1".parse().expect("address"),
            "10.0.0.9".parse().expect("address"),
            24
        ));
        assert!(!in_subnet(
            "10.0.1.1".parse().expect("address"),
            "10.0.0.9".parse().expect("address"),
            24
        ));
        assert!(in_subnet(
            "2001:db8::1".parse().expect("address"),
            "2001:db8::9".parse().expect("address"),
            64
        ));
    }
}
