//! Announcing the VIP: telling the segment that it now lives at this node's
//! MAC address, so switches and neighbours update their tables at once
//! instead of when their entries time out.
//!
//! IPv4: a gratuitous ARP *request* with sender IP = target IP = VIP,
//! broadcast (what Linux's `arping -U`, keepalived and kube-vip send): every
//! host that has the VIP in its cache replaces the MAC address, and nobody
//! answers. Frames go out on an `AF_PACKET` raw socket bound to nothing
//! (protocol 0, so it receives no traffic) with a `sockaddr_ll` naming the
//! interface. nix has no safe constructor for `sockaddr_ll`, hence the one
//! small `unsafe` conversion in [`link_address`].
//!
//! IPv6: an unsolicited neighbour advertisement (RFC 4861 7.2.6: Override
//! set, Solicited clear, with the target link-layer address option) to
//! all-nodes `ff02::1` on the interface, from a raw ICMPv6 socket (the
//! kernel fills in the checksum and the source address) with hop limit 255,
//! as receivers require.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::libc;
use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn6, SockaddrLike,
    sendto, setsockopt, socket, sockopt,
};

use super::VipError;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const BROADCAST: [u8; 6] = [0xff; 6];
/// The minimum Ethernet frame without its checksum.
const MIN_FRAME: usize = 60;

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The Ethernet frame of a gratuitous ARP request for `address` from `mac`.
pub fn gratuitous_arp_frame(mac: [u8; 6], address: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(MIN_FRAME);
    // Ethernet header.
    frame.extend_from_slice(&BROADCAST);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    // ARP: Ethernet / IPv4, request.
    frame.extend_from_slice(&1u16.to_be_bytes());
    frame.extend_from_slice(&ETH_P_IP.to_be_bytes());
    frame.push(6);
    frame.push(4);
    frame.extend_from_slice(&1u16.to_be_bytes());
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&address.octets());
    frame.extend_from_slice(&[0u8; 6]);
    frame.extend_from_slice(&address.octets());
    frame.resize(MIN_FRAME, 0);
    frame
}

/// The ICMPv6 message of an unsolicited neighbour advertisement of
/// `address` at `mac` (checksum left to the kernel).
pub fn neighbour_advertisement(mac: [u8; 6], address: Ipv6Addr) -> Vec<u8> {
    const NEIGHBOR_ADVERTISEMENT: u8 = 136;
    const OVERRIDE: u32 = 0x2000_0000;
    const TARGET_LINK_LAYER_ADDRESS: u8 = 2;
    let mut message = Vec::with_capacity(32);
    message.extend_from_slice(&[NEIGHBOR_ADVERTISEMENT, 0, 0, 0]);
    message.extend_from_slice(&OVERRIDE.to_be_bytes());
    message.extend_from_slice(&address.octets());
    // Option: type, length in units of 8 octets, the MAC address.
    message.extend_from_slice(&[TARGET_LINK_LAYER_ADDRESS, 1]);
    message.extend_from_slice(&mac);
    message
}

/// The link-layer destination of a broadcast ARP frame on `ifindex`.
#[allow(unsafe_code)]
fn link_address(ifindex: u32) -> Option<LinkAddr> {
    let mut hardware = [0u8; 8];
    hardware[..6].copy_from_slice(&BROADCAST);
    let raw = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ETH_P_ARP.to_be(),
        sll_ifindex: i32::try_from(ifindex).ok()?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: hardware,
    };
    let length = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_ll>()).ok()?;
    // SAFETY: `raw` is a fully initialised `sockaddr_ll` that outlives the
    // call, and `length` is exactly its size; `from_raw` copies it and checks
    // the family.
    unsafe {
        LinkAddr::from_raw(
            std::ptr::from_ref(&raw).cast::<libc::sockaddr>(),
            Some(length),
        )
    }
}

#[derive(Debug)]
enum Destination {
    Link(LinkAddr),
    AllNodes(SockaddrIn6),
}

/// A raw socket sending announcements of the VIP on one interface.
#[derive(Debug)]
pub struct Announcer {
    socket: OwnedFd,
    destination: Destination,
    packet: Vec<u8>,
    interface: String,
}

impl Announcer {
    /// A sender of announcements for `address` on the interface `ifindex`
    /// whose MAC address is `mac`.
    pub fn new(
        interface: &str,
        ifindex: u32,
        mac: [u8; 6],
        address: IpAddr,
    ) -> Result<Self, VipError> {
        let error = |operation: &'static str, source: nix::Error| VipError::Arp {
            operation,
            interface: interface.to_owned(),
            source: source.into(),
        };
        let (socket, destination, packet) = match address {
            IpAddr::V4(v4) => {
                let destination = link_address(ifindex)
                    .ok_or_else(|| error("building the link-layer address", nix::Error::EINVAL))?;
                let socket = socket(
                    AddressFamily::Packet,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                )
                .map_err(|e| error("opening an AF_PACKET socket", e))?;
                (
                    socket,
                    Destination::Link(destination),
                    gratuitous_arp_frame(mac, v4),
                )
            }
            IpAddr::V6(v6) => {
                let socket = socket(
                    AddressFamily::Inet6,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    SockProtocol::IcmpV6,
                )
                .map_err(|e| error("opening an ICMPv6 socket", e))?;
                setsockopt(&socket, sockopt::Ipv6MulticastHops, &255)
                    .map_err(|e| error("setting the hop limit to 255", e))?;
                let all_nodes =
                    SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, ifindex);
                (
                    socket,
                    Destination::AllNodes(SockaddrIn6::from(all_nodes)),
                    neighbour_advertisement(mac, v6),
                )
            }
        };
        Ok(Self {
            socket,
            destination,
            packet,
            interface: interface.to_owned(),
        })
    }

    /// Sends one announcement.
    pub fn announce(&self) -> Result<(), VipError> {
        let fd = self.socket.as_raw_fd();
        let sent = match &self.destination {
            Destination::Link(to) => sendto(fd, &self.packet, to, MsgFlags::empty()),
            Destination::AllNodes(to) => sendto(fd, &self.packet, to, MsgFlags::empty()),
        };
        sent.map(|_| ()).map_err(|e| VipError::Arp {
            operation: "sending the announcement",
            interface: self.interface.clone(),
            source: e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x01];
        let frame = gratuitous_arp_frame(mac, Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(frame.len(), 60);
        assert_eq!(&frame[0..6], &[0xff; 6]);
        assert_eq!(&frame[6..12], &mac);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        // htype 1, ptype IPv4, hlen 6, plen 4, op request
        assert_eq!(&frame[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&frame[22..28], &mac);
        assert_eq!(&frame[28..32], &[10, 1, 2, 3]);
        assert_eq!(&frame[32..38], &[0; 6]);
        assert_eq!(&frame[38..42], &[10, 1, 2, 3]);
        assert!(frame[42..].iter().all(|b| *b == 0));
    }

    #[test]
    fn neighbour_advertisement_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x01];
        let address: Ipv6Addr = "fd00::100".parse().expect("ip");
        let message = neighbour_advertisement(mac, address);
        assert_eq!(message.len(), 32);
        assert_eq!(&message[0..4], &[136, 0, 0, 0]);
        assert_eq!(&message[4..8], &[0x20, 0, 0, 0]);
        assert_eq!(&message[8..24], &address.octets());
        assert_eq!(&message[24..26], &[2, 1]);
        assert_eq!(&message[26..32], &mac);
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:aB:00:00:10:ff"),
            Some([2, 0xab, 0, 0, 0x10, 0xff])
        );
        assert_eq!(parse_mac("02:ab:00:00:10"), None);
        assert_eq!(parse_mac("02:ab:00:00:10:ff:00"), None);
        assert_eq!(parse_mac("zz:ab:00:00:10:ff"), None);
    }

    #[test]
    fn link_address_names_the_interface() {
        let address = link_address(5).expect("sockaddr_ll");
        assert_eq!(address.ifindex(), 5);
        assert_eq!(address.family(), Some(AddressFamily::Packet));
        assert_eq!(address.addr(), Some([0xff; 6]));
    }
}
