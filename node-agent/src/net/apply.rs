//! Applying a [`NetworkPlan`]: interface, addresses, default route.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::dhcp::{self, ClientId, Lease};
use super::host::NetHost;
use super::netlink::RouteProtocol;
use super::{Addressing, Link, NetError, NetworkPlan, NetworkState, in_subnet, link, parse_mac};

/// Configures the network as planned, waiting at most `timeout` in all for
/// the interface, carrier and a DHCP lease.
pub fn apply(
    host: &mut dyn NetHost,
    plan: &NetworkPlan,
    timeout: Duration,
) -> Result<NetworkState, NetError> {
    validate(plan)?;
    let deadline = Instant::now() + timeout;
    let link = link::choose(host, plan.interface.as_deref(), deadline, timeout)?;
    let mac = link.mac.clone().unwrap_or_default();
    match &plan.addressing {
        Addressing::Static { addresses, gateway } => {
            for (address, prefix) in addresses {
                host.add_address(&link, *address, *prefix, None)?;
            }
            if let Some(gateway) = gateway {
                let onlink = !addresses
                    .iter()
                    .any(|(address, prefix)| in_subnet(*gateway, *address, *prefix));
                host.add_default_route(&link, *gateway, RouteProtocol::Boot, onlink)?;
            }
            Ok(NetworkState {
                interface: link.name,
                mac,
                addresses: addresses.clone(),
                gateway: *gateway,
                dns: plan.dns.clone(),
                search: Vec::new(),
                dhcp_hostname: None,
                lease_seconds: None,
                lease: None,
            })
        }
        Addressing::Dhcp => {
            let mac_bytes = link.mac.as_deref().and_then(parse_mac).ok_or_else(|| {
                NetError::InvalidPlan(format!(
                    "{} has no Ethernet address; DHCP needs one",
                    link.name
                ))
            })?;
            let client = ClientId {
                interface: &link.name,
                mac: mac_bytes,
                hostname: plan.hostname.as_deref(),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let lease = {
                let mut transport = host.dhcp_transport(&link)?;
                dhcp::acquire(transport.as_mut(), client, remaining).map_err(|e| match e {
                    NetError::DhcpTimeout {
                        interface, stage, ..
                    } => NetError::DhcpTimeout {
                        interface,
                        stage,
                        waited: timeout,
                    },
                    other => other,
                })?
            };
            configure_lease(host, &link, &lease)?;
            let dns = if plan.dns.is_empty() {
                lease.dns.iter().copied().map(IpAddr::V4).collect()
            } else {
                plan.dns.clone()
            };
            Ok(NetworkState {
                interface: link.name.clone(),
                mac,
                addresses: vec![(IpAddr::V4(lease.address), lease.prefix)],
                gateway: lease.routers.first().copied().map(IpAddr::V4),
                dns,
                search: lease.domain.iter().cloned().collect(),
                dhcp_hostname: lease.hostname.clone(),
                lease_seconds: lease.lease_seconds,
                lease: Some(lease),
            })
        }
    }
}

/// The lease's address (valid for the lease time, so the kernel drops it
/// when the lease ends) and a default route via its first router.
pub fn configure_lease(host: &mut dyn NetHost, link: &Link, lease: &Lease) -> Result<(), NetError> {
    let address = IpAddr::V4(lease.address);
    host.add_address(link, address, lease.prefix, lease.lease_seconds)?;
    if let Some(router) = lease.routers.first() {
        let router = IpAddr::V4(*router);
        let onlink = !in_subnet(router, address, lease.prefix);
        host.add_default_route(link, router, RouteProtocol::Dhcp, onlink)?;
    }
    Ok(())
}

fn validate(plan: &NetworkPlan) -> Result<(), NetError> {
    if let Addressing::Static { addresses, gateway } = &plan.addressing {
        for (address, prefix) in addresses {
            let max = if address.is_ipv4() { 32 } else { 128 };
            if *prefix > max {
                return Err(NetError::InvalidPlan(format!(
                    "{address}/{prefix}: prefix length above {max}"
                )));
            }
        }
        if let Some(gateway) = gateway
            && !addresses
                .iter()
                .any(|(a, _)| a.is_ipv4() == gateway.is_ipv4())
        {
            return Err(NetError::InvalidPlan(format!(
                "gateway {gateway} has no address of its family on the interface"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::net::dhcp::tests::FakeServer;
    use crate::net::host::DhcpTransport;
    use std::sync::{Arc, Mutex};

    /// Links in memory; those in `cabled` get carrier once up.
    #[derive(Debug, Clone, Default)]
    pub struct FakeHost {
        pub links: Arc<Mutex<Vec<Link>>>,
        pub cabled: Vec<u32>,
        pub log: Arc<Mutex<Vec<String>>>,
        pub server: Option<FakeServer>,
    }

    pub fn ether(name: &str, index: u32) -> Link {
        Link {
            name: name.into(),
            index,
            mac: Some(format!("02:00:00:00:00:{index:02x}")),
            is_ethernet: true,
            carrier: false,
            up: false,
            kind: None,
            master: None,
        }
    }

    impl FakeHost {
        pub fn new(links: Vec<Link>, cabled: &[u32]) -> Self {
            Self {
                links: Arc::new(Mutex::new(links)),
                cabled: cabled.to_vec(),
                ..Self::default()
            }
        }

        pub fn log(&self) -> Vec<String> {
            self.log.lock().expect("lock").clone()
        }

        fn record(&self, line: String) {
            self.log.lock().expect("lock").push(line);
        }
    }

    impl NetHost for FakeHost {
        fn links(&mut self) -> Result<Vec<Link>, NetError> {
            Ok(self.links.lock().expect("lock").clone())
        }

        fn set_up(&mut self, link: &Link, up: bool) -> Result<(), NetError> {
            self.record(format!("{} {}", if up { "up" } else { "down" }, link.name));
            let cabled = self.cabled.contains(&link.index);
            for l in self.links.lock().expect("lock").iter_mut() {
                if l.index == link.index {
                    l.up = up;
                    l.carrier = up && cabled;
                }
            }
            Ok(())
        }

        fn add_address(
            &mut self,
            link: &Link,
            address: IpAddr,
            prefix: u8,
            lifetime: Option<u32>,
        ) -> Result<(), NetError> {
            let lifetime = lifetime.map_or("forever".to_owned(), |s| format!("{s}s"));
            self.record(format!("addr {} {address}/{prefix} {lifetime}", link.name));
            Ok(())
        }

        fn remove_address(
            &mut self,
            link: &Link,
            address: IpAddr,
            prefix: u8,
        ) -> Result<(), NetError> {
            self.record(format!("del {} {address}/{prefix}", link.name));
            Ok(())
        }

        fn add_default_route(
            &mut self,
            link: &Link,
            gateway: IpAddr,
            protocol: RouteProtocol,
            onlink: bool,
        ) -> Result<(), NetError> {
            let onlink = if onlink { " onlink" } else { "" };
            self.record(format!(
                "route {} via {gateway} {protocol:?}{onlink}",
                link.name
            ));
            Ok(())
        }

        fn dhcp_transport(&mut self, _: &Link) -> Result<Box<dyn DhcpTransport>, NetError> {
            let server = self.server.clone().unwrap_or_else(|| {
                let mut silent = FakeServer::new();
                silent.silent = true;
                silent
            });
            Ok(Box::new(server))
        }

        fn sleep(&mut self, duration: Duration) {
            std::thread::sleep(duration.min(Duration::from_millis(10)));
        }
    }

    fn static_plan(interface: Option<&str>, gateway: &str) -> NetworkPlan {
        NetworkPlan {
            interface: interface.map(str::to_owned),
            addressing: Addressing::Static {
                addresses: vec![
                    ("10.0.0.9".parse().expect("ip"), 24),
                    ("2001:db8::9".parse().expect("ip"), 64),
                ],
                gateway: Some(gateway.parse().expect("ip")),
            },
            dns: vec!["10.0.0.53".parse().expect("ip")],
            hostname: None,
        }
    }

    #[test]
    fn static_plan_on_a_named_interface() {
        let mut host = FakeHost::new(vec![ether("eth0", 2), ether("eth1", 3)], &[]);
        let state = apply(
            &mut host,
            &static_plan(Some("eth1"), "10.0.0.1"),
            Duration::from_secs(1),
        )
        .expect("apply");
        assert_eq!(
            host.log(),
            vec![
                "up eth1",
                "addr eth1 10.0.0.9/24 forever",
                "addr eth1 2001:db8::9/64 forever",
                "route eth1 via 10.0.0.1 Boot",
            ]
        );
        assert_eq!(state.interface, "eth1");
        assert_eq!(state.mac, "02:00:00:00:00:03");
        assert_eq!(state.gateway, Some("10.0.0.1".parse().expect("ip")));
        assert_eq!(state.dns, vec!["10.0.0.53".parse::<IpAddr>().expect("ip")]);
    }

    #[test]
    fn a_gateway_outside_the_subnets_is_onlink() {
        let mut host = FakeHost::new(vec![ether("eth0", 2)], &[2]);
        apply(
            &mut host,
            &static_plan(Some("02:00:00:00:00:02"), "192.0.2.1"),
            Duration::from_secs(1),
        )
        .expect("apply");
        assert_eq!(
            host.log().last().map(String::as_str),
            Some("route eth0 via 192.0.2.1 Boot onlink")
        );
    }

    #[test]
    fn first_interface_with_carrier_wins_and_the_others_go_down_again() {
        let mut lo = ether("lo", 1);
        lo.is_ethernet = false;
        lo.up = true;
        let mut bridge = ether("br0", 5);
        bridge.kind = Some("bridge".into());
        bridge.up = true;
        bridge.carrier = true;
        let mut host = FakeHost::new(
            vec![
                lo,
                ether("eth0", 2),
                ether("eth1", 3),
                ether("eth2", 4),
                bridge,
            ],
            &[3, 4],
        );
        let state = apply(
            &mut host,
            &static_plan(None, "10.0.0.1"),
            Duration::from_secs(1),
        )
        .expect("apply");
        assert_eq!(state.interface, "eth1");
        assert_eq!(
            host.log()[..5],
            ["up eth0", "up eth1", "up eth2", "down eth0", "down eth2"]
        );
    }

    #[test]
    fn no_carrier_is_an_error_naming_the_candidates() {
        let mut host = FakeHost::new(vec![ether("eth0", 2), ether("eth1", 3)], &[]);
        let started = Instant::now();
        let error = apply(&mut host, &NetworkPlan::dhcp(), Duration::from_millis(300))
            .expect_err("no carrier");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            error.to_string(),
            "no carrier on any Ethernet interface within 300ms (tried eth0, eth1)"
        );
        assert_eq!(host.log(), ["up eth0", "up eth1", "down eth0", "down eth1"]);
    }

    #[test]
    fn a_missing_named_interface_is_an_error() {
        let mut host = FakeHost::new(vec![ether("eth0", 2)], &[2]);
        let plan = NetworkPlan {
            interface: Some("eth9".into()),
            ..NetworkPlan::dhcp()
        };
        let error = apply(&mut host, &plan, Duration::from_millis(200)).expect_err("missing");
        assert_eq!(
            error.to_string(),
            "interface eth9 not found within 200ms (present: eth0)"
        );
    }

    #[test]
    fn dhcp_lease_is_configured() {
        let mut host = FakeHost::new(vec![ether("eth0", 2)], &[2]);
        host.server = Some(FakeServer::new());
        let state = apply(&mut host, &NetworkPlan::dhcp(), Duration::from_secs(3)).expect("dhcp");
        assert_eq!(
            host.log(),
            vec![
                "up eth0",
                "addr eth0 10.77.0.42/24 3600s",
                "route eth0 via 10.77.0.1 Dhcp",
            ]
        );
        assert_eq!(
            state.addresses,
            vec![("10.77.0.42".parse().expect("ip"), 24)]
        );
        assert_eq!(state.dns, vec!["10.77.0.53".parse::<IpAddr>().expect("ip")]);
        assert_eq!(state.search, vec!["lab.example".to_owned()]);
        assert_eq!(state.dhcp_hostname.as_deref(), Some("node-7"));
        assert_eq!(state.lease_seconds, Some(3600));
    }

    #[test]
    fn invalid_static_plans_are_refused() {
        let mut host = FakeHost::new(vec![ether("eth0", 2)], &[2]);
        let plan = NetworkPlan {
            interface: None,
            addressing: Addressing::Static {
                addresses: vec![("10.0.0.9".parse().expect("ip"), 33)],
                gateway: None,
            },
            dns: Vec::new(),
            hostname: None,
        };
        let error = apply(&mut host, &plan, Duration::from_secs(1)).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "network plan: 10.0.0.9/33: prefix length above 32"
        );
        assert!(host.log().is_empty());
    }
}
