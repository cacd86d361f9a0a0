//! The DHCPv4 client exchange: DISCOVER / OFFER / REQUEST / ACK, with
//! retries until a deadline, and the single REQUEST of a renewal or
//! rebinding.
//!
//! Retransmissions back off as RFC 2131 suggests, but from 1 s (doubling
//! to at most 16 s, plus up to 0.5 s of jitter) so a node boots quickly
//! when the first packet is lost. Each DISCOVER carries a fresh
//! transaction id; an OFFER is followed by up to three REQUESTs, and a NAK
//! starts over.

use std::io::Read;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::dhcp_wire::{ClientMessage, MessageType, ServerMessage, parse_reply};
use super::host::DhcpTransport;
use super::{NetError, netmask_prefix};

/// A lease granted by a DHCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub domain: Option<String>,
    /// The server identifier (option 54), where renewals go.
    pub server: Ipv4Addr,
    /// `None`: an infinite lease.
    pub lease_seconds: Option<u32>,
    /// T1: when renewing starts (default half the lease).
    pub renewal_seconds: Option<u32>,
    /// T2: when rebinding starts (default 7/8 of the lease).
    pub rebinding_seconds: Option<u32>,
    pub acquired: Instant,
}

impl Lease {
    fn from_ack(ack: &ServerMessage, server: Ipv4Addr, acquired: Instant) -> Self {
        let lease_seconds = ack.lease_seconds.filter(|s| *s != u32::MAX);
        let prefix = ack
            .subnet_mask
            .and_then(netmask_prefix)
            .unwrap_or_else(|| classful_prefix(ack.yiaddr));
        Self {
            address: ack.yiaddr,
            prefix,
            routers: ack.routers.clone(),
            dns: ack.dns.clone(),
            hostname: ack.hostname.clone(),
            domain: ack.domain.clone(),
            server: ack.server_id.unwrap_or(server),
            lease_seconds,
            renewal_seconds: lease_seconds.map(|l| ack.renewal_seconds.unwrap_or(l / 2)),
            rebinding_seconds: lease_seconds.map(|l| {
                ack.rebinding_seconds
                    .unwrap_or((u64::from(l) * 7 / 8) as u32)
            }),
            acquired,
        }
    }

    /// When T1, T2 and the lease end fall (`None` for an infinite lease).
    pub fn times(&self) -> Option<(Instant, Instant, Instant)> {
        let at = |s: Option<u32>| s.map(|s| self.acquired + Duration::from_secs(u64::from(s)));
        Some((
            at(self.renewal_seconds)?,
            at(self.rebinding_seconds)?,
            at(self.lease_seconds)?,
        ))
    }
}

/// The default prefix of a class A/B/C address, when a server sends no
/// subnet mask.
pub fn classful_prefix(address: Ipv4Addr) -> u8 {
    match address.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// Who we are on the wire.
#[derive(Debug, Clone, Copy)]
pub struct ClientId<'a> {
    pub interface: &'a str,
    pub mac: [u8; 6],
    pub hostname: Option<&'a str>,
}

fn backoff(attempt: u32, jitter: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(4)) + Duration::from_millis(u64::from(jitter % 500))
}

/// Runs DISCOVER / OFFER / REQUEST / ACK until a lease is granted or
/// `timeout` has passed.
pub fn acquire(
    transport: &mut dyn DhcpTransport,
    client: ClientId<'_>,
    timeout: Duration,
) -> Result<Lease, NetError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let io_error = |operation: &str| {
        let operation = operation.to_owned();
        let interface = client.interface.to_owned();
        move |source| NetError::Socket {
            operation,
            interface,
            source,
        }
    };
    let secs = || start.elapsed().as_secs().min(u64::from(u16::MAX)) as u16;
    let mut stage = "no DHCPOFFER";
    let mut attempt = 0;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(NetError::DhcpTimeout {
                interface: client.interface.to_owned(),
                stage,
                waited: timeout,
            });
        }
        let xid = random_u32();
        let wait = backoff(attempt, xid).min(deadline - now);
        attempt += 1;
        let discover = ClientMessage {
            kind: MessageType::Discover,
            xid,
            mac: client.mac,
            secs: secs(),
            ciaddr: None,
            broadcast: true,
            requested: None,
            server: None,
            hostname: client.hostname,
        };
        transport
            .send(&discover.encode(), Ipv4Addr::BROADCAST)
            .map_err(io_error("sending DHCPDISCOVER"))?;
        let Some(offer) = wait_for(transport, xid, client.mac, &[MessageType::Offer], wait)
            .map_err(io_error("receiving DHCPOFFER"))?
        else {
            continue;
        };
        let Some(server) = offer.server_id else {
            continue;
        };
        stage = "no DHCPACK";
        for request_attempt in 0..3 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let request = ClientMessage {
                kind: MessageType::Request,
                requested: Some(offer.yiaddr),
                server: Some(server),
                secs: secs(),
                ..discover.clone()
            };
            transport
                .send(&request.encode(), Ipv4Addr::BROADCAST)
                .map_err(io_error("sending DHCPREQUEST"))?;
            let wait = backoff(request_attempt, xid).min(deadline - now);
            match wait_for(
                transport,
                xid,
                client.mac,
                &[MessageType::Ack, MessageType::Nak],
                wait,
            )
            .map_err(io_error("receiving DHCPACK"))?
            {
                Some(ack) if ack.kind == MessageType::Ack => {
                    return Ok(Lease::from_ack(&ack, server, Instant::now()));
                }
                Some(_) => {
                    // Refused: start over, without hammering the server.
                    stage = "DHCPNAK to every request";
                    std::thread::sleep(
                        Duration::from_secs(1)
                            .min(deadline.saturating_duration_since(Instant::now())),
                    );
                    break;
                }
                None => {}
            }
        }
    }
}

/// What a renewal or rebinding REQUEST got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    Extended(Lease),
    Refused,
    NoAnswer,
}

/// One REQUEST for the lease's address from its holder: unicast to the
/// server while renewing (`to` = the server), broadcast while rebinding.
pub fn extend(
    transport: &mut dyn DhcpTransport,
    client: ClientId<'_>,
    lease: &Lease,
    to: Ipv4Addr,
    wait: Duration,
) -> Result<Extension, NetError> {
    let xid = random_u32();
    let request = ClientMessage {
        kind: MessageType::Request,
        xid,
        mac: client.mac,
        secs: 0,
        ciaddr: Some(lease.address),
        broadcast: false,
        requested: None,
        server: None,
        hostname: client.hostname,
    };
    let error = |operation: &str| {
        let operation = operation.to_owned();
        let interface = client.interface.to_owned();
        move |source| NetError::Socket {
            operation,
            interface,
            source,
        }
    };
    transport
        .send(&request.encode(), to)
        .map_err(error("sending DHCPREQUEST (renewal)"))?;
    let reply = wait_for(
        transport,
        xid,
        client.mac,
        &[MessageType::Ack, MessageType::Nak],
        wait,
    )
    .map_err(error("receiving DHCPACK (renewal)"))?;
    Ok(match reply {
        Some(ack) if ack.kind == MessageType::Ack => {
            Extension::Extended(Lease::from_ack(&ack, lease.server, Instant::now()))
        }
        Some(_) => Extension::Refused,
        None => Extension::NoAnswer,
    })
}

/// The first reply for our transaction of one of `kinds`, within `timeout`.
fn wait_for(
    transport: &mut dyn DhcpTransport,
    xid: u32,
    mac: [u8; 6],
    kinds: &[MessageType],
    timeout: Duration,
) -> std::io::Result<Option<ServerMessage>> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        let Some(packet) = transport.receive(deadline - now)? else {
            return Ok(None);
        };
        if let Some(reply) = parse_reply(&packet)
            && reply.xid == xid
            && reply.mac == mac
            && kinds.contains(&reply.kind)
        {
            return Ok(Some(reply));
        }
    }
}

/// A transaction id: from the kernel's random pool, else from the clock.
pub fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u32::from_ne_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or_default();
    nanos ^ std::process::id().rotate_left(16)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::net::dhcp_wire::{encode_reply, parse_request};
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    pub const MAC: [u8; 6] = [2, 0, 0, 0, 0x77, 1];

    /// A DHCP server in memory: answers DISCOVER with an OFFER and REQUEST
    /// with an ACK (or NAK), dropping the first `drop` client packets.
    #[derive(Debug, Clone)]
    pub struct FakeServer {
        pub sent: Arc<Mutex<Vec<(MessageType, Ipv4Addr)>>>,
        queue: Arc<Mutex<VecDeque<Vec<u8>>>>,
        pub drop: usize,
        pub nak: bool,
        pub silent: bool,
        pub lease_seconds: u32,
        pub renewal_seconds: Option<u32>,
    }

    impl FakeServer {
        pub fn new() -> Self {
            Self {
                sent: Arc::default(),
                queue: Arc::default(),
                drop: 0,
                nak: false,
                silent: false,
                lease_seconds: 3600,
                renewal_seconds: None,
            }
        }
    }

    impl DhcpTransport for FakeServer {
        fn send(&mut self, packet: &[u8], to: Ipv4Addr) -> std::io::Result<()> {
            let (kind, xid, mac, _) = parse_request(packet).expect("client message");
            self.sent.lock().expect("lock").push((kind, to));
            if self.drop > 0 {
                self.drop -= 1;
                return Ok(());
            }
            if self.silent {
                return Ok(());
            }
            let reply_kind = match kind {
                MessageType::Discover => MessageType::Offer,
                MessageType::Request if self.nak => MessageType::Nak,
                MessageType::Request => MessageType::Ack,
                _ => return Ok(()),
            };
            let reply = ServerMessage {
                kind: reply_kind,
                xid,
                mac,
                yiaddr: Ipv4Addr::new(10, 77, 0, 42),
                server_id: Some(Ipv4Addr::new(10, 77, 0, 1)),
                subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                routers: vec![Ipv4Addr::new(10, 77, 0, 1)],
                dns: vec![Ipv4Addr::new(10, 77, 0, 53)],
                hostname: Some("node-7".into()),
                domain: Some("lab.example".into()),
                lease_seconds: Some(self.lease_seconds),
                renewal_seconds: self.renewal_seconds,
                rebinding_seconds: None,
            };
            // Noise first: another client's transaction.
            let mut other = reply.clone();
            other.xid = xid.wrapping_add(1);
            let mut queue = self.queue.lock().expect("lock");
            queue.push_back(encode_reply(&other));
            queue.push_back(encode_reply(&reply));
            Ok(())
        }

        fn receive(&mut self, timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
            let next = self.queue.lock().expect("lock").pop_front();
            if next.is_none() {
                std::thread::sleep(timeout);
            }
            Ok(next)
        }
    }

    fn client() -> ClientId<'static> {
        ClientId {
            interface: "eth0",
            mac: MAC,
            hostname: Some("node-1"),
        }
    }

    #[test]
    fn lease_from_a_full_exchange() {
        let mut server = FakeServer::new();
        let lease = acquire(&mut server, client(), Duration::from_secs(5)).expect("lease");
        assert_eq!(lease.address, Ipv4Addr::new(10, 77, 0, 42));
        assert_eq!(lease.prefix, 24);
        assert_eq!(lease.routers, vec![Ipv4Addr::new(10, 77, 0, 1)]);
        assert_eq!(lease.dns, vec![Ipv4Addr::new(10, 77, 0, 53)]);
        assert_eq!(lease.hostname.as_deref(), Some("node-7"));
        assert_eq!(lease.server, Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(lease.lease_seconds, Some(3600));
        assert_eq!(lease.renewal_seconds, Some(1800));
        assert_eq!(lease.rebinding_seconds, Some(3150));
        let sent = server.sent.lock().expect("lock").clone();
        assert_eq!(
            sent,
            vec![
                (MessageType::Discover, Ipv4Addr::BROADCAST),
                (MessageType::Request, Ipv4Addr::BROADCAST)
            ]
        );
    }

    #[test]
    fn a_lost_discover_is_retried() {
        let mut server = FakeServer::new();
        server.drop = 1;
        let started = Instant::now();
        let lease = acquire(&mut server, client(), Duration::from_secs(5)).expect("lease");
        assert_eq!(lease.address, Ipv4Addr::new(10, 77, 0, 42));
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(server.sent.lock().expect("lock").len(), 3);
    }

    #[test]
    fn silence_times_out_at_the_deadline() {
        let mut server = FakeServer::new();
        server.silent = true;
        let started = Instant::now();
        let error =
            acquire(&mut server, client(), Duration::from_millis(2500)).expect_err("timeout");
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(2500) && elapsed < Duration::from_secs(4));
        assert_eq!(error.to_string(), "DHCP on eth0: no DHCPOFFER within 2.5s");
    }

    #[test]
    fn naks_restart_and_time_out_with_the_reason() {
        let mut server = FakeServer::new();
        server.nak = true;
        let error = acquire(&mut server, client(), Duration::from_millis(1500)).expect_err("nak");
        assert!(error.to_string().contains("DHCPNAK"), "{error}");
    }

    #[test]
    fn renewal_goes_to_the_server() {
        let mut server = FakeServer::new();
        let lease = acquire(&mut server, client(), Duration::from_secs(5)).expect("lease");
        let outcome = extend(
            &mut server,
            client(),
            &lease,
            lease.server,
            Duration::from_secs(1),
        )
        .expect("renewal");
        assert!(matches!(outcome, Extension::Extended(l) if l.address == lease.address));
        assert_eq!(
            server.sent.lock().expect("lock").last(),
            Some(&(MessageType::Request, Ipv4Addr::new(10, 77, 0, 1)))
        );
    }
}
