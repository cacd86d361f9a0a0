//! rtnetlink, hand-written: just the messages node-agent sends.
//!
//! A message is a `nlmsghdr` (16 bytes), a fixed family header
//! (`ifinfomsg`, `ifaddrmsg` or `rtmsg`) and attributes (`rtattr`: length,
//! type, value, padded to 4 bytes). Requests carry `NLM_F_ACK`, so the
//! kernel answers each with an `NLMSG_ERROR` whose code is 0 on success or
//! a negative errno.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, sockopt,
};
use nix::sys::time::TimeVal;

use super::{Link, format_mac};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const ARPHRD_ETHER: u16 = 1;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_CARRIER: u16 = 33;
const IFLA_INFO_KIND: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_CACHEINFO: u16 = 6;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const RT_TABLE_MAIN: u8 = 254;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
const RTNH_F_ONLINK: u32 = 0x4;

/// Who installed a route (`rtm_protocol`), as `ip route` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteProtocol {
    /// `proto boot`: static configuration.
    Boot = 3,
    /// `proto dhcp`.
    Dhcp = 16,
}

/// A netlink message being built.
#[derive(Debug)]
pub struct Message {
    buf: Vec<u8>,
}

impl Message {
    pub fn new(kind: u16, flags: u16) -> Self {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        Self { buf }
    }

    fn push(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self
    }

    fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.push(value)
    }

    /// The finished bytes with length and sequence number filled in.
    pub fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[0] = AF_UNSPEC;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn family(address: IpAddr) -> u8 {
    if address.is_ipv4() { AF_INET } else { AF_INET6 }
}

fn octets(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `RTM_GETLINK` dump request.
pub fn get_links() -> Message {
    let mut m = Message::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP);
    m.push(&ifinfomsg(0, 0, 0));
    m
}

/// `ip link set <index> up|down`.
pub fn set_link_up(index: u32, up: bool) -> Message {
    let mut m = Message::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
    m.push(&ifinfomsg(index, if up { IFF_UP } else { 0 }, IFF_UP));
    m
}

/// `ip addr replace <address>/<prefix> dev <index>`, with a lifetime in
/// seconds (`None`: forever). IPv4 addresses get their subnet broadcast.
pub fn add_address(index: u32, address: IpAddr, prefix: u8, lifetime: Option<u32>) -> Message {
    let mut m = Message::new(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
    );
    m.push(&ifaddrmsg(address, prefix, index));
    let bytes = octets(address);
    m.attr(IFA_LOCAL, &bytes).attr(IFA_ADDRESS, &bytes);
    if let IpAddr::V4(v4) = address
        && prefix < 31
    {
        m.attr(IFA_BROADCAST, &super::broadcast_v4(v4, prefix).octets());
    }
    if let Some(seconds) = lifetime {
        // struct ifa_cacheinfo { ifa_prefered, ifa_valid, cstamp, tstamp }
        let mut info = [0u8; 16];
        info[0..4].copy_from_slice(&seconds.to_ne_bytes());
        info[4..8].copy_from_slice(&seconds.to_ne_bytes());
        m.attr(IFA_CACHEINFO, &info);
    }
    m
}

/// `ip addr del <address>/<prefix> dev <index>`.
pub fn remove_address(index: u32, address: IpAddr, prefix: u8) -> Message {
    let mut m = Message::new(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK);
    m.push(&ifaddrmsg(address, prefix, index));
    let bytes = octets(address);
    m.attr(IFA_LOCAL, &bytes).attr(IFA_ADDRESS, &bytes);
    m
}

fn ifaddrmsg(address: IpAddr, prefix: u8, index: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[0] = family(address);
    h[1] = prefix;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h
}

/// `ip route replace default via <gateway> dev <index> proto <protocol>
/// [onlink]`.
pub fn add_default_route(
    index: u32,
    gateway: IpAddr,
    protocol: RouteProtocol,
    onlink: bool,
) -> Message {
    let mut m = Message::new(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
    );
    // struct rtmsg { family, dst_len, src_len, tos, table, protocol, scope,
    // type, flags: u32 }
    let mut r = [0u8; 12];
    r[0] = family(gateway);
    r[4] = RT_TABLE_MAIN;
    r[5] = protocol as u8;
    r[6] = RT_SCOPE_UNIVERSE;
    r[7] = RTN_UNICAST;
    let flags = if onlink { RTNH_F_ONLINK } else { 0 };
    r[8..12].copy_from_slice(&flags.to_ne_bytes());
    m.push(&r);
    let unspecified = match gateway {
        IpAddr::V4(_) => vec![0u8; 4],
        IpAddr::V6(_) => vec![0u8; 16],
    };
    m.attr(RTA_DST, &unspecified)
        .attr(RTA_GATEWAY, &octets(gateway))
        .attr(RTA_OIF, &index.to_ne_bytes());
    m
}

/// One message of a reply: type and payload (after the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: u16,
    pub seq: u32,
    pub payload: Vec<u8>,
}

/// Splits a datagram into messages.
pub fn parse_replies(mut data: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let len = u32_at(data, 0) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        out.push(Reply {
            kind: u16_at(data, 4),
            seq: u32_at(data, 8),
            payload: data[NLMSG_HDRLEN..len].to_vec(),
        });
        let aligned = (len + 3) & !3;
        data = &data[aligned.min(data.len())..];
    }
    out
}

fn u16_at(data: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([data[at], data[at + 1]])
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// Attributes after a fixed header: (type without flag bits, value).
pub fn attributes(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = usize::from(u16_at(data, 0));
        if len < 4 || len > data.len() {
            break;
        }
        out.push((u16_at(data, 2) & 0x3fff, &data[4..len]));
        let aligned = (len + 3) & !3;
        data = &data[aligned.min(data.len())..];
    }
    out
}

/// A link from an `RTM_NEWLINK` payload.
pub fn parse_link(payload: &[u8]) -> Option<Link> {
    if payload.len() < 16 {
        return None;
    }
    let link_type = u16_at(payload, 2);
    let index = u32_at(payload, 4);
    let flags = u32_at(payload, 8);
    let mut link = Link {
        name: String::new(),
        index,
        mac: None,
        is_ethernet: link_type == ARPHRD_ETHER && flags & IFF_LOOPBACK == 0,
        carrier: false,
        up: flags & IFF_UP != 0,
        kind: None,
        master: None,
    };
    for (kind, value) in attributes(&payload[16..]) {
        match kind {
            IFLA_IFNAME => {
                let name = value.split(|b| *b == 0).next().unwrap_or_default();
                link.name = String::from_utf8_lossy(name).into_owned();
            }
            IFLA_ADDRESS if value.len() == 6 => link.mac = Some(format_mac(value)),
            IFLA_CARRIER => link.carrier = value.first().is_some_and(|c| *c != 0),
            IFLA_MASTER if value.len() == 4 => link.master = Some(u32_at(value, 0)),
            IFLA_LINKINFO => {
                for (info, v) in attributes(value) {
                    if info == IFLA_INFO_KIND {
                        let k = v.split(|b| *b == 0).next().unwrap_or_default();
                        link.kind = Some(String::from_utf8_lossy(k).into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    (!link.name.is_empty()).then_some(link)
}

/// A `NETLINK_ROUTE` socket in the calling thread's network namespace.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    pub fn open() -> io::Result<Self> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        // The kernel answers at once; the timeout only guards against a
        // reply that never comes.
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(5, 0))?;
        Ok(Self { fd, seq: 0 })
    }

    fn send(&mut self, message: Message) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = message.finish(self.seq);
        socket::send(self.fd.as_raw_fd(), &bytes, MsgFlags::empty())?;
        Ok(self.seq)
    }

    fn receive(&mut self) -> io::Result<Vec<Reply>> {
        let mut buf = vec![0u8; 1 << 16];
        let n = socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        Ok(parse_replies(&buf[..n.min(buf.len())]))
    }

    /// Sends a request and waits for its ack.
    pub fn request(&mut self, message: Message) -> io::Result<()> {
        let seq = self.send(message)?;
        loop {
            for reply in self.receive()? {
                if reply.seq == seq && reply.kind == NLMSG_ERROR {
                    return error_code(&reply.payload);
                }
            }
        }
    }

    /// Sends a dump request and collects the payloads of its answers.
    pub fn dump(&mut self, message: Message) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.send(message)?;
        let mut out = Vec::new();
        loop {
            for reply in self.receive()? {
                if reply.seq != seq {
                    continue;
                }
                match reply.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        error_code(&reply.payload)?;
                        return Ok(out);
                    }
                    _ => out.push(reply.payload),
                }
            }
        }
    }
}

fn error_code(payload: &[u8]) -> io::Result<()> {
    if payload.len() < 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short netlink error message",
        ));
    }
    match i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]) {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(-code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_message_layout() {
        let m = add_address(3, "10.0.0.5".parse().expect("ip"), 24, Some(600)).finish(7);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWADDR);
        assert_eq!(u32_at(&m, 8), 7);
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, 0]);
        assert_eq!(u32_at(&m, 20), 3);
        let attrs = attributes(&m[24..]);
        let kinds: Vec<u16> = attrs.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            vec![IFA_LOCAL, IFA_ADDRESS, IFA_BROADCAST, IFA_CACHEINFO]
        );
        assert_eq!(attrs[2].1, &[10, 0, 0, 255]);
        assert_eq!(u32_at(attrs[3].1, 4), 600);
    }

    #[test]
    fn route_message_is_onlink_when_asked() {
        let m = add_default_route(
            2,
            "192.0.2.1".parse().expect("ip"),
            RouteProtocol::Dhcp,
            true,
        )
        .finish(1);
        assert_eq!(m[16], AF_INET);
        assert_eq!(m[16 + 5], 16);
        assert_eq!(u32_at(&m, 24), RTNH_F_ONLINK);
        let attrs = attributes(&m[28..]);
        assert_eq!(attrs[1], (RTA_GATEWAY, &[192u8, 0, 2, 1][..]));
        assert_eq!(attrs[2], (RTA_OIF, &2u32.to_ne_bytes()[..]));
    }

    #[test]
    fn link_payload_is_parsed() {
        let mut m = Message::new(RTM_NEWLINK, 0);
        let mut header = ifinfomsg(4, IFF_UP, 0);
        header[2..4].copy_from_slice(&ARPHRD_ETHER.to_ne_bytes());
        m.push(&header);
        m.attr(IFLA_IFNAME, b"eth0\0")
            .attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1])
            .attr(IFLA_CARRIER, &[1]);
        let mut info = Message::new(0, 0);
        info.attr(IFLA_INFO_KIND, b"veth\0");
        m.attr(IFLA_LINKINFO, &info.buf[NLMSG_HDRLEN..]);
        let bytes = m.finish(1);
        let replies = parse_replies(&bytes);
        assert_eq!(replies.len(), 1);
        let link = parse_link(&replies[0].payload).expect("link");
        assert_eq!(
            link,
            Link {
                name: "eth0".into(),
                index: 4,
                mac: Some("02:00:00:00:00:01".into()),
                is_ethernet: true,
                carrier: true,
                up: true,
                kind: Some("veth".into()),
                master: None,
            }
        );
    }
}
