//! Keeping a DHCP lease: [`LeaseKeeper`].
//!
//! A thread sleeps until T1, then sends REQUESTs unicast to the server
//! (renewing) and, from T2, broadcast (rebinding), retransmitting after
//! half the time left in the phase (at least 1 s, at most 60 s). An ACK
//! refreshes the address lifetime (and replaces the address if the server
//! moved us). A NAK removes the address at once; at lease end the kernel
//! has removed it already (its valid lifetime ran out). Either way the
//! thread then starts over with DISCOVER, without a deadline, until it gets
//! a new lease or is stopped.
//!
//! The thread inherits the network namespace of the thread that starts it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::apply::configure_lease;
use super::dhcp::{self, ClientId, Extension, Lease};
use super::host::{LinuxNet, NetHost};
use super::{Link, NetError, NetworkState, parse_mac};

/// How long one rediscovery attempt lasts before the stop signal is
/// checked again.
const REDISCOVER_ROUND: Duration = Duration::from_secs(10);

/// Renews a lease in the background until stopped or dropped.
#[derive(Debug)]
pub struct LeaseKeeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    current: Arc<Mutex<Lease>>,
}

impl LeaseKeeper {
    /// Keeps the lease [`super::apply()`] obtained; `None` for static
    /// addressing or an infinite lease.
    pub fn start(state: &NetworkState) -> Result<Option<Self>, NetError> {
        let Some(lease) = state.lease.clone().filter(|l| l.times().is_some()) else {
            return Ok(None);
        };
        let mut host = LinuxNet;
        let links = host.links()?;
        let link = links
            .iter()
            .find(|l| l.name == state.interface)
            .cloned()
            .ok_or_else(|| NetError::NoInterface {
                name: state.interface.clone(),
                waited: Duration::ZERO,
                present: links.iter().map(|l| l.name.clone()).collect(),
            })?;
        Ok(Some(Self::start_with(host, link, lease)))
    }

    /// Keeps `lease` on `link` through `host`.
    pub fn start_with<H: NetHost + Send + 'static>(host: H, link: Link, lease: Lease) -> Self {
        let (stop, stopped) = mpsc::channel();
        let current = Arc::new(Mutex::new(lease.clone()));
        let shared = Arc::clone(&current);
        let thread = std::thread::Builder::new()
            .name(format!("dhcp-{}", link.name))
            .spawn(move || keep(host, link, lease, &shared, &stopped))
            .ok();
        Self {
            stop: Some(stop),
            thread,
            current,
        }
    }

    /// The lease as last granted.
    pub fn lease(&self) -> Lease {
        match self.current.lock() {
            Ok(lease) => lease.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Stops the thread and waits for it (at most one exchange).
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread, which then ends.
        self.stop.take();
    }
}

/// Sleeps `duration`; false once the keeper was stopped.
fn pause(stopped: &mpsc::Receiver<()>, duration: Duration) -> bool {
    matches!(
        stopped.recv_timeout(duration),
        Err(RecvTimeoutError::Timeout)
    )
}

fn keep<H: NetHost>(
    mut host: H,
    link: Link,
    mut lease: Lease,
    shared: &Mutex<Lease>,
    stopped: &mpsc::Receiver<()>,
) {
    let Some(mac) = link.mac.as_deref().and_then(parse_mac) else {
        return;
    };
    let client = ClientId {
        interface: &link.name,
        mac,
        hostname: None,
    };
    let publish = |lease: &Lease| match shared.lock() {
        Ok(mut current) => *current = lease.clone(),
        Err(poisoned) => *poisoned.into_inner() = lease.clone(),
    };
    loop {
        let Some((t1, _, _)) = lease.times() else {
            return;
        };
        if !pause(stopped, t1.saturating_duration_since(Instant::now())) {
            return;
        }
        match extend_until_end(&mut host, client, &link, &lease, stopped) {
            Some(Some(new)) => {
                lease = new;
                publish(&lease);
                continue;
            }
            Some(None) => {}
            None => return,
        }
        // Lost: start over.
        let _ = host.remove_address(&link, IpAddr::V4(lease.address), lease.prefix);
        loop {
            let acquired = host.dhcp_transport(&link).and_then(|mut transport| {
                dhcp::acquire(transport.as_mut(), client, REDISCOVER_ROUND)
            });
            if let Ok(new) = acquired
                && configure_lease(&mut host, &link, &new).is_ok()
            {
                lease = new;
                publish(&lease);
                break;
            }
            if !pause(stopped, Duration::from_secs(1)) {
                return;
            }
        }
    }
}

/// Renewing, then rebinding. `None`: stopped; `Some(None)`: the lease is
/// lost; `Some(Some(lease))`: extended and configured.
fn extend_until_end<H: NetHost>(
    host: &mut H,
    client: ClientId<'_>,
    link: &Link,
    lease: &Lease,
    stopped: &mpsc::Receiver<()>,
) -> Option<Option<Lease>> {
    let (_, t2, end) = lease.times()?;
    loop {
        let now = Instant::now();
        if now >= end {
            return Some(None);
        }
        let (to, phase_end) = if now < t2 {
            (lease.server, t2)
        } else {
            (Ipv4Addr::BROADCAST, end)
        };
        let left = phase_end - now;
        let interval = (left / 2)
            .max(left.min(Duration::from_secs(60)))
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let outcome = host.dhcp_transport(link).and_then(|mut transport| {
            dhcp::extend(transport.as_mut(), client, lease, to, interval)
        });
        match outcome {
            Ok(Extension::Extended(new)) => {
                if new.address != lease.address {
                    let _ = host.remove_address(link, IpAddr::V4(lease.address), lease.prefix);
                }
                if configure_lease(host, link, &new).is_ok() {
                    return Some(Some(new));
                }
            }
            Ok(Extension::Refused) => return Some(None),
            Ok(Extension::NoAnswer) => {}
            Err(_) => {
                if !pause(stopped, interval) {
                    return None;
                }
            }
        }
        if !pause(stopped, Duration::ZERO) {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::apply::tests::{FakeHost, ether};
    use crate::net::dhcp::tests::{FakeServer, MAC};
    use crate::net::dhcp_wire::MessageType;

    fn leased(server: &mut FakeServer) -> Lease {
        dhcp::acquire(
            server,
            ClientId {
                interface: "eth0",
                mac: MAC,
                hostname: None,
            },
            Duration::from_secs(2),
        )
        .expect("lease")
    }

    fn host_with(server: &FakeServer) -> FakeHost {
        let mut link = ether("eth0", 2);
        link.mac = Some(crate::net::format_mac(&MAC));
        let mut host = FakeHost::new(vec![link], &[2]);
        host.server = Some(server.clone());
        host
    }

    #[test]
    fn renews_at_t1_by_unicast() {
        let mut server = FakeServer::new();
        server.lease_seconds = 6;
        server.renewal_seconds = Some(1);
        let lease = leased(&mut server);
        let host = host_with(&server);
        let mut link = ether("eth0", 2);
        link.mac = Some(crate::net::format_mac(&MAC));
        let keeper = LeaseKeeper::start_with(host.clone(), link, lease.clone());
        std::thread::sleep(Duration::from_millis(1600));
        let renewed = keeper.lease();
        keeper.stop();
        assert!(renewed.acquired > lease.acquired);
        assert_eq!(
            host.log(),
            vec![
                "addr eth0 10.77.0.42/24 6s",
                "route eth0 via 10.77.0.1 Dhcp"
            ]
        );
        assert_eq!(
            server.sent.lock().expect("lock").last(),
            Some(&(MessageType::Request, Ipv4Addr::new(10, 77, 0, 1)))
        );
    }

    #[test]
    fn a_nak_drops_the_address_and_starts_over() {
        let mut server = FakeServer::new();
        server.lease_seconds = 6;
        server.renewal_seconds = Some(1);
        let lease = leased(&mut server);
        let mut refusing = server.clone();
        refusing.nak = true;
        let host = host_with(&refusing);
        let mut link = ether("eth0", 2);
        link.mac = Some(crate::net::format_mac(&MAC));
        let keeper = LeaseKeeper::start_with(host.clone(), link, lease);
        std::thread::sleep(Duration::from_millis(1500));
        // Rediscovery keeps being refused; dropping only signals the thread.
        drop(keeper);
        let log = host.log();
        assert_eq!(
            log.first().map(String::as_str),
            Some("del eth0 10.77.0.42/24")
        );
        let sent = server.sent.lock().expect("lock").clone();
        assert!(sent.contains(&(MessageType::Discover, Ipv4Addr::BROADCAST)));
    }
}
