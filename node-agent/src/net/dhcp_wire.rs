//! DHCPv4 messages (RFC 2131 / 2132): the BOOTP header, the magic cookie
//! and the options node-agent sends and reads.

use std::net::Ipv4Addr;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const BROADCAST_FLAG: u16 = 0x8000;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Fixed BOOTP part before the cookie.
const HEADER_LEN: usize = 236;
/// Some relays and old servers drop shorter BOOTP packets.
const MIN_PACKET_LEN: usize = 300;

pub const OPT_SUBNET_MASK: u8 = 1;
pub const OPT_ROUTER: u8 = 3;
pub const OPT_DNS: u8 = 6;
pub const OPT_HOSTNAME: u8 = 12;
pub const OPT_DOMAIN_NAME: u8 = 15;
pub const OPT_REQUESTED_IP: u8 = 50;
pub const OPT_LEASE_TIME: u8 = 51;
pub const OPT_MESSAGE_TYPE: u8 = 53;
pub const OPT_SERVER_ID: u8 = 54;
pub const OPT_PARAMETER_LIST: u8 = 55;
pub const OPT_MAX_MESSAGE_SIZE: u8 = 57;
pub const OPT_RENEWAL_TIME: u8 = 58;
pub const OPT_REBINDING_TIME: u8 = 59;
pub const OPT_CLIENT_ID: u8 = 61;
const OPT_PAD: u8 = 0;
const OPT_END: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
}

impl MessageType {
    fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            _ => return None,
        })
    }
}

/// What a client message carries besides its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage<'a> {
    pub kind: MessageType,
    pub xid: u32,
    pub mac: [u8; 6],
    /// Seconds since the exchange began.
    pub secs: u16,
    /// Our address while renewing or rebinding.
    pub ciaddr: Option<Ipv4Addr>,
    /// Ask servers to broadcast replies (we have no address yet).
    pub broadcast: bool,
    pub requested: Option<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub hostname: Option<&'a str>,
}

impl ClientMessage<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN];
        p[0] = BOOTREQUEST;
        p[1] = HTYPE_ETHERNET;
        p[2] = 6;
        p[4..8].copy_from_slice(&self.xid.to_be_bytes());
        p[8..10].copy_from_slice(&self.secs.to_be_bytes());
        let flags = if self.broadcast { BROADCAST_FLAG } else { 0 };
        p[10..12].copy_from_slice(&flags.to_be_bytes());
        if let Some(ciaddr) = self.ciaddr {
            p[12..16].copy_from_slice(&ciaddr.octets());
        }
        p[28..34].copy_from_slice(&self.mac);
        p.extend_from_slice(&MAGIC_COOKIE);

        let mut option = |code: u8, value: &[u8]| {
            // Longer values would need splitting (RFC 3396); ours are short.
            let len = value.len().min(255);
            p.push(code);
            p.push(len as u8);
            p.extend_from_slice(&value[..len]);
        };
        option(OPT_MESSAGE_TYPE, &[self.kind as u8]);
        let mut client_id = vec![HTYPE_ETHERNET];
        client_id.extend_from_slice(&self.mac);
        option(OPT_CLIENT_ID, &client_id);
        if let Some(requested) = self.requested {
            option(OPT_REQUESTED_IP, &requested.octets());
        }
        if let Some(server) = self.server {
            option(OPT_SERVER_ID, &server.octets());
        }
        if matches!(self.kind, MessageType::Discover | MessageType::Request) {
            option(OPT_MAX_MESSAGE_SIZE, &1500u16.to_be_bytes());
            option(
                OPT_PARAMETER_LIST,
                &[
                    OPT_SUBNET_MASK,
                    OPT_ROUTER,
                    OPT_DNS,
                    OPT_HOSTNAME,
                    OPT_DOMAIN_NAME,
                    OPT_LEASE_TIME,
                    OPT_RENEWAL_TIME,
                    OPT_REBINDING_TIME,
                ],
            );
            if let Some(hostname) = self.hostname {
                option(OPT_HOSTNAME, hostname.as_bytes());
            }
        }
        p.push(OPT_END);
        if p.len() < MIN_PACKET_LEN {
            p.resize(MIN_PACKET_LEN, OPT_PAD);
        }
        p
    }
}

/// A server's reply, with the options we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub kind: MessageType,
    pub xid: u32,
    pub mac: [u8; 6],
    pub yiaddr: Ipv4Addr,
    pub server_id: Option<Ipv4Addr>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub domain: Option<String>,
    pub lease_seconds: Option<u32>,
    pub renewal_seconds: Option<u32>,
    pub rebinding_seconds: Option<u32>,
}

/// Decodes a BOOTREPLY; `None` for anything else or a malformed packet.
pub fn parse_reply(packet: &[u8]) -> Option<ServerMessage> {
    if packet.len() < HEADER_LEN + 4
        || packet[0] != BOOTREPLY
        || packet[HEADER_LEN..HEADER_LEN + 4] != MAGIC_COOKIE
    {
        return None;
    }
    let mut options: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut rest = &packet[HEADER_LEN + 4..];
    while let Some((&code, tail)) = rest.split_first() {
        match code {
            OPT_PAD => rest = tail,
            OPT_END => break,
            _ => {
                let (&len, tail) = tail.split_first()?;
                let value = tail.get(..usize::from(len))?;
                // Repeated options concatenate (RFC 3396).
                match options.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, existing)) => existing.extend_from_slice(value),
                    None => options.push((code, value.to_vec())),
                }
                rest = &tail[usize::from(len)..];
            }
        }
    }
    let get = |code: u8| options.iter().find(|(c, _)| *c == code).map(|(_, v)| v);
    let addrs = |code: u8| -> Vec<Ipv4Addr> {
        get(code)
            .map(|v| {
                v.chunks_exact(4)
                    .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                    .collect()
            })
            .unwrap_or_default()
    };
    let addr = |code: u8| addrs(code).first().copied();
    let seconds = |code: u8| {
        get(code)
            .filter(|v| v.len() == 4)
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    };
    let text = |code: u8| {
        get(code)
            .map(|v| {
                let v = v.split(|b| *b == 0).next().unwrap_or_default();
                String::from_utf8_lossy(v).into_owned()
            })
            .filter(|s| !s.is_empty())
    };
    let kind = MessageType::from_u8(*get(OPT_MESSAGE_TYPE)?.first()?)?;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&packet[28..34]);
    Some(ServerMessage {
        kind,
        xid: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        mac,
        yiaddr: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        server_id: addr(OPT_SERVER_ID),
        subnet_mask: addr(OPT_SUBNET_MASK),
        routers: addrs(OPT_ROUTER),
        dns: addrs(OPT_DNS),
        hostname: text(OPT_HOSTNAME),
        domain: text(OPT_DOMAIN_NAME),
        lease_seconds: seconds(OPT_LEASE_TIME),
        renewal_seconds: seconds(OPT_RENEWAL_TIME),
        rebinding_seconds: seconds(OPT_REBINDING_TIME),
    })
}

/// A server reply, encoded: for tests and doubles.
pub fn encode_reply(reply: &ServerMessage) -> Vec<u8> {
    let mut p = vec![0u8; HEADER_LEN];
    p[0] = BOOTREPLY;
    p[1] = HTYPE_ETHERNET;
    p[2] = 6;
    p[4..8].copy_from_slice(&reply.xid.to_be_bytes());
    p[16..20].copy_from_slice(&reply.yiaddr.octets());
    p[28..34].copy_from_slice(&reply.mac);
    p.extend_from_slice(&MAGIC_COOKIE);
    let mut option = |code: u8, value: &[u8]| {
        p.push(code);
        p.push(value.len() as u8);
        p.extend_from_slice(value);
    };
    option(OPT_MESSAGE_TYPE, &[reply.kind as u8]);
    let list = |addrs: &[Ipv4Addr]| addrs.iter().flat_map(|a| a.octets()).collect::<Vec<u8>>();
    if let Some(a) = reply.server_id {
        option(OPT_SERVER_ID, &a.octets());
    }
    if let Some(a) = reply.subnet_mask {
        option(OPT_SUBNET_MASK, &a.octets());
    }
    if !reply.routers.is_empty() {
        option(OPT_ROUTER, &list(&reply.routers));
    }
    if !reply.dns.is_empty() {
        option(OPT_DNS, &list(&reply.dns));
    }
    if let Some(h) = &reply.hostname {
        option(OPT_HOSTNAME, h.as_bytes());
    }
    if let Some(d) = &reply.domain {
        option(OPT_DOMAIN_NAME, d.as_bytes());
    }
    for (code, value) in [
        (OPT_LEASE_TIME, reply.lease_seconds),
        (OPT_RENEWAL_TIME, reply.renewal_seconds),
        (OPT_REBINDING_TIME, reply.rebinding_seconds),
    ] {
        if let Some(v) = value {
            option(code, &v.to_be_bytes());
        }
    }
    p.push(OPT_END);
    p
}

/// A client message's type, transaction id, MAC and requested address:
/// for tests and doubles that play the server.
pub fn parse_request(packet: &[u8]) -> Option<(MessageType, u32, [u8; 6], Option<Ipv4Addr>)> {
    if packet.len() < HEADER_LEN + 4 || packet[0] != BOOTREQUEST {
        return None;
    }
    let mut reply = packet.to_vec();
    reply[0] = BOOTREPLY;
    let parsed = parse_reply(&reply)?;
    let requested = {
        let mut rest = &packet[HEADER_LEN + 4..];
        let mut found = None;
        while rest.len() >= 2 && rest[0] != OPT_END {
            let len = usize::from(rest[1]);
            if rest[0] == OPT_REQUESTED_IP && len == 4 && rest.len() >= 6 {
                found = Some(Ipv4Addr::new(rest[2], rest[3], rest[4], rest[5]));
            }
            rest = rest.get(2 + len..).unwrap_or_default();
        }
        found
    };
    Some((parsed.kind, parsed.xid, parsed.mac, requested))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0x77, 1];

    #[test]
    fn discover_has_the_broadcast_flag_and_client_id() {
        let p = ClientMessage {
            kind: MessageType::Discover,
            xid: 0x1234_5678,
            mac: MAC,
            secs: 3,
            ciaddr: None,
            broadcast: true,
            requested: None,
            server: None,
            hostname: Some("node-1"),
        }
        .encode();
        assert_eq!(p.len(), MIN_PACKET_LEN);
        assert_eq!(&p[0..3], &[1, 1, 6]);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(&p[8..10], &[0, 3]);
        assert_eq!(&p[10..12], &[0x80, 0]);
        assert_eq!(&p[28..34], &MAC);
        assert_eq!(&p[236..240], &MAGIC_COOKIE);
        assert_eq!(&p[240..243], &[OPT_MESSAGE_TYPE, 1, 1]);
        assert_eq!(&p[243..245], &[OPT_CLIENT_ID, 7]);
        assert_eq!(&p[245..252], &[1, 2, 0, 0, 0, 0x77, 1]);
        let needle = [OPT_HOSTNAME, 6, b'n', b'o', b'd', b'e', b'-', b'1'];
        assert!(p.windows(needle.len()).any(|w| w == needle));
        let (kind, xid, mac, requested) = parse_request(&p).expect("request");
        assert_eq!(
            (kind, xid, mac, requested),
            (MessageType::Discover, 0x1234_5678, MAC, None)
        );
    }

    #[test]
    fn reply_round_trip() {
        let reply = ServerMessage {
            kind: MessageType::Ack,
            xid: 9,
            mac: MAC,
            yiaddr: Ipv4Addr::new(10, 0, 0, 42),
            server_id: Some(Ipv4Addr::new(10, 0, 0, 1)),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            routers: vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)],
            dns: vec![Ipv4Addr::new(10, 0, 0, 53)],
            hostname: Some("node-7".into()),
            domain: Some("lab.example".into()),
            lease_seconds: Some(3600),
            renewal_seconds: Some(1800),
            rebinding_seconds: None,
        };
        assert_eq!(parse_reply(&encode_reply(&reply)), Some(reply));
    }

    #[test]
    fn malformed_replies_are_ignored() {
        assert_eq!(parse_reply(&[2u8; 100]), None);
        let mut p = vec![0u8; 240];
        p[0] = BOOTREPLY;
        p[236..240].copy_from_slice(&MAGIC_COOKIE);
        // No message type.
        assert_eq!(parse_reply(&p), None);
        // Option running past the end.
        p.extend_from_slice(&[OPT_MESSAGE_TYPE, 9, 5]);
        assert_eq!(parse_reply(&p), None);
    }
}
