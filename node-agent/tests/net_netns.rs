//! Networking against the real kernel, inside two network namespaces the
//! tests create and remove: `…-a` holds the "network" (a veth end with
//! 10.77.0.1/24 and, where needed, dnsmasq as DHCP server), `…-b` the
//! "node" (the other veth end, `eth0`). node-agent's code runs in a thread
//! that entered `…-b`, so its sockets live there. Needs root (skipped
//! otherwise), `ip` and `dnsmasq`. No packet leaves the two namespaces.

use std::fs::File;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cairn_node_agent::net::dhcp::{self, ClientId, Extension};
use cairn_node_agent::net::host::UdpTransport;
use cairn_node_agent::net::{self, Addressing, NetError, NetworkPlan};
use nix::sched::CloneFlags;

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

fn ip(args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Two namespaces and a veth pair; removed (with dnsmasq) on drop, also
/// when a test fails.
struct Lab {
    network: String,
    node: String,
    mac: String,
    dnsmasq: Option<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    /// `None` when not root. With `extra_links_first`, the node namespace
    /// gets, before `eth0`, a veth whose peer stays down (no carrier) and a
    /// bridge with one plugged port (both with carrier, neither a
    /// candidate).
    fn new(extra_links_first: bool) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(1)
            != 0
        {
            eprintln!("skipped: network namespace tests need root");
            return None;
        }
        let n = NEXT_LAB.fetch_add(1, Ordering::SeqCst);
        let base = format!("cairn-nettest-{}-{n}", std::process::id());
        let lab = Self {
            network: format!("{base}-a"),
            node: format!("{base}-b"),
            mac: format!("02:00:00:77:{:02x}:01", n % 256),
            dnsmasq: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        // From here on Drop removes whatever exists.
        ip(&["netns", "add", &lab.network]);
        ip(&["netns", "add", &lab.node]);
        if extra_links_first {
            ip(&[
                "-n",
                &lab.node,
                "link",
                "add",
                "unplugged0",
                "type",
                "veth",
                "peer",
                "name",
                "cable0",
                "netns",
                &lab.network,
            ]);
            ip(&["-n", &lab.node, "link", "add", "br0", "type", "bridge"]);
            ip(&[
                "-n",
                &lab.node,
                "link",
                "add",
                "port0",
                "type",
                "veth",
                "peer",
                "name",
                "port1",
                "netns",
                &lab.network,
            ]);
            ip(&["-n", &lab.network, "link", "set", "port1", "up"]);
            ip(&[
                "-n", &lab.node, "link", "set", "port0", "master", "br0", "up",
            ]);
            ip(&["-n", &lab.node, "link", "set", "br0", "up"]);
        }
        ip(&[
            "-n",
            &lab.network,
            "link",
            "add",
            "srv0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            &lab.mac,
            "netns",
            &lab.node,
        ]);
        ip(&[
            "-n",
            &lab.network,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            "srv0",
        ]);
        ip(&["-n", &lab.network, "link", "set", "srv0", "up"]);
        Some(lab)
    }

    /// dnsmasq as DHCP server on `srv0`, with a fixed lease for `eth0`.
    fn start_dnsmasq(&mut self) {
        let log = File::create(self.dir.path().join("dnsmasq.log")).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.network, DNSMASQ])
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=srv0",
                "--bind-interfaces",
                "--user=root",
                "--dhcp-authoritative",
                "--log-dhcp",
                "--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h",
                "--dhcp-option=option:router,10.77.0.1",
                "--dhcp-option=option:dns-server,10.77.0.53,10.77.0.54",
                "--dhcp-option=option:domain-name,lab.example",
            ])
            .arg(format!("--dhcp-host={},10.77.0.42,node-7", self.mac))
            .arg(format!(
                "--dhcp-leasefile={}",
                self.dir.path().join("leases").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting dnsmasq");
        self.dnsmasq = Some(child);
    }

    fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    /// Runs `f` in a thread inside the node namespace.
    fn on_node<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.node);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let namespace = File::open(&path).expect("node namespace");
                    nix::sched::setns(namespace, CloneFlags::CLONE_NEWNET).expect("setns");
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn node_ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.node.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for namespace in [&self.node, &self.network] {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn addr(text: &str) -> IpAddr {
    text.parse().expect("IP address")
}

#[test]
fn dhcp_lease_from_dnsmasq_is_configured() {
    let Some(mut lab) = Lab::new(false) else {
        return;
    };
    lab.start_dnsmasq();
    let result = lab.on_node(|| net::apply(&NetworkPlan::dhcp(), Duration::from_secs(20)));
    let state = result.unwrap_or_else(|e| panic!("{e}\ndnsmasq:\n{}", lab.dnsmasq_log()));

    assert_eq!(state.interface, "eth0");
    assert_eq!(state.mac, lab.mac);
    assert_eq!(state.addresses, vec![(addr("10.77.0.42"), 24)]);
    assert_eq!(state.gateway, Some(addr("10.77.0.1")));
    assert_eq!(state.dns, vec![addr("10.77.0.53"), addr("10.77.0.54")]);
    assert_eq!(state.search, vec!["lab.example".to_owned()]);
    assert_eq!(state.dhcp_hostname.as_deref(), Some("node-7"));
    assert_eq!(state.lease_seconds, Some(3600));

    let v4 = lab.node_ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(v4.contains("inet 10.77.0.42/24 brd 10.77.0.255"), "{v4}");
    // The address lives as long as the lease.
    assert!(
        v4.contains("valid_lft 3") && !v4.contains("forever"),
        "{v4}"
    );
    let route = lab.node_ip(&["-d", "-4", "route", "show", "default"]);
    assert!(
        route.contains("default via 10.77.0.1 dev eth0 proto dhcp"),
        "{route}"
    );
    let leases = std::fs::read_to_string(lab.dir.path().join("leases")).expect("leases");
    assert!(leases.contains("10.77.0.42"), "{leases}");

    // Renewing (what the lease keeper does at T1): a unicast REQUEST from
    // the leased address to the server, answered with an ACK.
    let lease = state.lease.clone().expect("lease");
    assert_eq!(
        lease.server,
        "10.77.0.1".parse::<std::net::Ipv4Addr>().expect("ip")
    );
    let mac = net::parse_mac(&state.mac).expect("mac");
    let renewed = lab.on_node(|| {
        let mut transport = UdpTransport::bind("eth0").expect("DHCP socket");
        let client = ClientId {
            interface: "eth0",
            mac,
            hostname: None,
        };
        dhcp::extend(
            &mut transport,
            client,
            &lease,
            lease.server,
            Duration::from_secs(5),
        )
    });
    match renewed.unwrap_or_else(|e| panic!("{e}\ndnsmasq:\n{}", lab.dnsmasq_log())) {
        Extension::Extended(new) => {
            assert_eq!(new.address, lease.address);
            assert_eq!(new.lease_seconds, Some(3600));
        }
        other => panic!("renewal: {other:?}\ndnsmasq:\n{}", lab.dnsmasq_log()),
    }

    let resolv = lab.dir.path().join("resolv.conf");
    net::write_resolv_conf(&resolv, &state.dns, &state.search).expect("resolv.conf");
    assert_eq!(
        std::fs::read_to_string(&resolv).expect("read resolv.conf"),
        "# Generated by cairn node-agent.\nnameserver 10.77.0.53\nnameserver 10.77.0.54\nsearch lab.example\n"
    );
}

#[test]
fn static_plan_with_ipv4_gateway_and_ipv6() {
    let Some(lab) = Lab::new(false) else {
        return;
    };
    let plan = NetworkPlan {
        interface: Some("eth0".into()),
        addressing: Addressing::Static {
            addresses: vec![(addr("10.77.0.9"), 24), (addr("fd00:77::9"), 64)],
            gateway: Some(addr("10.77.0.1")),
        },
        dns: vec![addr("10.77.0.53")],
        hostname: None,
    };
    let state = lab
        .on_node(|| net::apply(&plan, Duration::from_secs(5)))
        .expect("static plan");
    assert_eq!(state.interface, "eth0");
    assert_eq!(state.gateway, Some(addr("10.77.0.1")));
    assert_eq!(state.lease_seconds, None);
    // Applying again replaces rather than failing with "exists".
    lab.on_node(|| net::apply(&plan, Duration::from_secs(5)))
        .expect("static plan, again");

    let v4 = lab.node_ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(v4.contains("inet 10.77.0.9/24 brd 10.77.0.255"), "{v4}");
    let v6 = lab.node_ip(&["-6", "addr", "show", "dev", "eth0"]);
    assert!(v6.contains("inet6 fd00:77::9/64"), "{v6}");
    let route = lab.node_ip(&["-d", "-4", "route", "show", "default"]);
    assert!(
        route.contains("default via 10.77.0.1 dev eth0 proto boot"),
        "{route}"
    );
    let link = lab.node_ip(&["link", "show", "eth0"]);
    assert!(link.contains(",UP,") || link.contains(",UP>"), "{link}");
}

#[test]
fn static_ipv6_default_route() {
    let Some(lab) = Lab::new(false) else {
        return;
    };
    let plan = NetworkPlan {
        interface: Some(lab.mac.clone()),
        addressing: Addressing::Static {
            addresses: vec![(addr("fd00:77::9"), 64)],
            gateway: Some(addr("fd00:77::1")),
        },
        dns: Vec::new(),
        hostname: None,
    };
    lab.on_node(|| net::apply(&plan, Duration::from_secs(5)))
        .expect("static IPv6 plan");
    let route = lab.node_ip(&["-d", "-6", "route", "show", "default"]);
    assert!(
        route.contains("default via fd00:77::1 dev eth0 proto boot"),
        "{route}"
    );
}

#[test]
fn dhcp_without_a_server_times_out_at_the_deadline() {
    let Some(lab) = Lab::new(false) else {
        return;
    };
    let started = Instant::now();
    let error = lab
        .on_node(|| net::apply(&NetworkPlan::dhcp(), Duration::from_secs(3)))
        .expect_err("no DHCP server");
    let elapsed = started.elapsed();
    assert!(matches!(error, NetError::DhcpTimeout { .. }), "{error:?}");
    assert_eq!(error.to_string(), "DHCP on eth0: no DHCPOFFER within 3s");
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    // Nothing was configured.
    let v4 = lab.node_ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(!v4.contains("inet "), "{v4}");
}

#[test]
fn the_first_ethernet_interface_with_carrier_is_chosen() {
    let Some(lab) = Lab::new(true) else {
        return;
    };
    let (links, primary, state) = lab.on_node(|| {
        let links = net::links().expect("links");
        let plan = NetworkPlan {
            interface: None,
            addressing: Addressing::Static {
                addresses: vec![(addr("10.77.0.9"), 24)],
                gateway: None,
            },
            dns: Vec::new(),
            hostname: None,
        };
        let state = net::apply(&plan, Duration::from_secs(5)).expect("apply");
        (links, net::primary_mac(), state)
    });
    let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["lo", "unplugged0", "br0", "port0", "eth0"]);
    let eth0 = links.iter().find(|l| l.name == "eth0").expect("eth0");
    assert!(eth0.is_ethernet);
    assert_eq!(eth0.kind.as_deref(), Some("veth"));
    assert_eq!(eth0.mac.as_deref(), Some(lab.mac.as_str()));
    let bridge = links.iter().find(|l| l.name == "br0").expect("br0");
    assert!(
        bridge.up && bridge.kind.as_deref() == Some("bridge"),
        "{bridge:?}"
    );
    let port = links.iter().find(|l| l.name == "port0").expect("port0");
    assert!(port.up && port.carrier, "{port:?}");
    assert_eq!(port.master, Some(bridge.index));
    assert!(!links[0].is_ethernet, "lo is not Ethernet");

    assert_eq!(state.interface, "eth0");
    assert_eq!(primary.as_deref(), Some(lab.mac.as_str()));
    // The unplugged candidate was raised to look for carrier, then lowered.
    let unplugged = lab.node_ip(&["link", "show", "unplugged0"]);
    assert!(!unplugged.contains(",UP"), "{unplugged}");
}

#[test]
fn a_named_interface_that_never_appears_is_an_error() {
    let Some(lab) = Lab::new(false) else {
        return;
    };
    let plan = NetworkPlan {
        interface: Some("eth7".into()),
        ..NetworkPlan::dhcp()
    };
    let error = lab
        .on_node(|| net::apply(&plan, Duration::from_millis(500)))
        .expect_err("missing interface");
    assert_eq!(
        error.to_string(),
        "interface eth7 not found within 500ms (present: lo, eth0)"
    );
}

#[test]
fn loopback_comes_up() {
    let Some(lab) = Lab::new(false) else {
        return;
    };
    let before = lab.node_ip(&["link", "show", "lo"]);
    assert!(!before.contains(",UP"), "{before}");
    lab.on_node(net::loopback_up).expect("loopback up");
    let after = lab.node_ip(&["-4", "addr", "show", "dev", "lo"]);
    assert!(after.contains("inet 127.0.0.1/8"), "{after}");
}

#[test]
fn resolv_conf_replaces_atomically() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("resolv.conf");
    std::fs::write(&path, "nameserver 192.0.2.1\n").expect("old file");
    net::write_resolv_conf(&path, &[addr("2001:db8::53")], &[]).expect("write");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "# Generated by cairn node-agent.\nnameserver 2001:db8::53\n"
    );
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(entries.len(), 1, "no temporary file left: {entries:?}");
    let missing = Path::new("/nonexistent-dir/resolv.conf");
    let error = net::write_resolv_conf(missing, &[], &[]).expect_err("bad dir");
    assert!(
        error
            .to_string()
            .starts_with("writing /nonexistent-dir/resolv.conf: "),
        "{error}"
    );
}
