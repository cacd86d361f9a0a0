//! The kernel / dracut `ip=` argument.

use std::net::IpAddr;

use cairn_node_agent::net::{Addressing, NetError, NetworkPlan, parse_kernel_ip_arg};

fn addr(text: &str) -> IpAddr {
    text.parse().expect("IP address")
}

fn error(value: &str) -> String {
    parse_kernel_ip_arg(value).expect_err(value).to_string()
}

#[test]
fn dhcp_shorthands() {
    for value in ["dhcp", "on", "any", "bootp"] {
        assert_eq!(
            parse_kernel_ip_arg(value).expect(value),
            NetworkPlan::dhcp(),
            "{value}"
        );
    }
    let plan = parse_kernel_ip_arg("eth1:dhcp").expect("device form");
    assert_eq!(plan.interface.as_deref(), Some("eth1"));
    assert_eq!(plan.addressing, Addressing::Dhcp);
}

#[test]
fn off_means_no_network() {
    for value in ["off", "none", ":::::eth0:off"] {
        assert!(
            matches!(
                parse_kernel_ip_arg(value),
                Err(NetError::NetworkingOff { .. })
            ),
            "{value}"
        );
    }
}

#[test]
fn full_static_form() {
    let plan = parse_kernel_ip_arg(
        "192.168.50.11:192.168.50.2:192.168.50.1:255.255.255.0:node-1:eth0:off:192.168.50.53:1.1.1.1",
    )
    .expect("static");
    assert_eq!(
        plan,
        NetworkPlan {
            interface: Some("eth0".into()),
            addressing: Addressing::Static {
                addresses: vec![(addr("192.168.50.11"), 24)],
                gateway: Some(addr("192.168.50.1")),
            },
            dns: vec![addr("192.168.50.53"), addr("1.1.1.1")],
            hostname: Some("node-1".into()),
        }
    );
}

#[test]
fn prefix_lengths_and_defaults() {
    let prefix = |value: &str| match parse_kernel_ip_arg(value).expect(value).addressing {
        Addressing::Static { addresses, .. } => addresses[0].1,
        Addressing::Dhcp => panic!("{value}: DHCP"),
    };
    assert_eq!(prefix("10.1.2.3::10.1.0.1:16"), 16);
    assert_eq!(prefix("10.1.2.3/20::10.1.0.1"), 20);
    assert_eq!(prefix("10.1.2.3/20::10.1.0.1:255.255.240.0"), 20);
    // Classful defaults, as the kernel.
    assert_eq!(prefix("10.1.2.3"), 8);
    assert_eq!(prefix("172.16.0.5::::::static"), 16);
    assert_eq!(prefix("192.168.1.5:::::eth0:none"), 24);
    assert_eq!(prefix("[2001:db8::5]::[2001:db8::1]:64::eth0:none"), 64);
    assert_eq!(prefix("[2001:db8::5]"), 64);
}

#[test]
fn ipv6_static_with_brackets() {
    let plan =
        parse_kernel_ip_arg("[2001:db8::5]::[2001:db8::1]:56:node-1:eth0:none:[2001:db8::53]")
            .expect("ipv6");
    assert_eq!(
        plan.addressing,
        Addressing::Static {
            addresses: vec![(addr("2001:db8::5"), 56)],
            gateway: Some(addr("2001:db8::1")),
        }
    );
    assert_eq!(plan.dns, vec![addr("2001:db8::53")]);
}

#[test]
fn dhcp_with_fields() {
    let plan = parse_kernel_ip_arg("::::node-3:eth2:dhcp:10.0.0.53").expect("dhcp");
    assert_eq!(plan.addressing, Addressing::Dhcp);
    assert_eq!(plan.interface.as_deref(), Some("eth2"));
    assert_eq!(plan.hostname.as_deref(), Some("node-3"));
    assert_eq!(plan.dns, vec![addr("10.0.0.53")]);
    // No client address and no method: autoconfiguration.
    assert_eq!(
        parse_kernel_ip_arg(":::::eth0").expect("auto").addressing,
        Addressing::Dhcp
    );
}

#[test]
fn errors_name_the_field() {
    assert_eq!(
        error("10.0.0.300::10.0.0.1:24"),
        "kernel argument ip=10.0.0.300::10.0.0.1:24: client-ip: \"10.0.0.300\" is not an IP address"
    );
    assert_eq!(
        error("10.0.0.3::10.0.0.1:255.0.255.0"),
        "kernel argument ip=10.0.0.3::10.0.0.1:255.0.255.0: netmask: \"255.0.255.0\" is not a contiguous netmask"
    );
    assert_eq!(
        error("10.0.0.3::10.0.0.1:33"),
        "kernel argument ip=10.0.0.3::10.0.0.1:33: netmask: \"33\" is neither a dotted netmask nor a prefix length"
    );
    assert_eq!(
        error("10.0.0.3::gateway"),
        "kernel argument ip=10.0.0.3::gateway: gw-ip: \"gateway\" is not an IP address"
    );
    assert_eq!(
        error("10.0.0.3::10.0.0.1:24:bad_name"),
        "kernel argument ip=10.0.0.3::10.0.0.1:24:bad_name: hostname: \"bad_name\" is not a hostname (letters, digits, '-', dot-separated labels)"
    );
    assert!(error("10.0.0.3:::24::a-very-long-interface-name").contains(": device: "));
    assert!(error("10.0.0.3:::24:::maybe").contains(": autoconf: \"maybe\": unknown method"));
    assert!(error("dhcp6").contains(": autoconf: \"dhcp6\": not supported"));
    assert!(error("eth0:auto6").contains(": autoconf: \"auto6\": not supported"));
    assert!(error("eth0:dhcp:9000").contains(": mtu: \"9000\": setting the MTU is not supported"));
    assert!(error("10.0.0.3:::24::eth0:none:9000").contains(": mtu: "));
    assert!(
        error("10.0.0.3:::24::eth0:none:10.0.0.53:dns")
            .contains(": dns1-ip: \"dns\" is not an IP address")
    );
    assert!(
        error("10.0.0.3::[2001:db8::1]:24")
            .contains(": gw-ip: 2001:db8::1 is not of the client address's family")
    );
    assert!(
        error("10.0.0.3/24::10.0.0.1:16")
            .contains(": netmask: /16 disagrees with the client address's /24")
    );
    assert!(error(":::::eth0:static").contains(": client-ip: required for static configuration"));
    assert!(error("[2001:db8::1").contains(": client-ip: unclosed '['"));
    assert!(error("eth0").contains(": autoconf: \"eth0\" is neither a method"));
    assert!(error("1:2:3:4:5:6:7:8:9:10:11").contains("11 fields, at most 10"));
}
