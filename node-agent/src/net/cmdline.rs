//! The kernel / dracut `ip=` argument.
//!
//! Accepted forms:
//!
//! - `ip=dhcp` (also `on`, `any`, `bootp`): DHCP on the first interface
//!   with carrier; `ip=off` / `ip=none`: [`NetError::NetworkingOff`].
//! - `ip=<device>:dhcp` (dracut).
//! - `ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`
//!   (kernel `nfsroot.txt`, dracut). Trailing fields may be left out.
//!   IPv6 addresses go in brackets (`[2001:db8::2]`); the netmask is dotted
//!   (`255.255.255.0`) or a prefix length (`24`), and the client address
//!   may carry one (`10.0.0.2/24`); without either, IPv4 uses the classful
//!   default (as the kernel does) and IPv6 `/64`. `autoconf` empty, `off`,
//!   `none` or `static` with a client address means static configuration;
//!   empty without one, or `dhcp`/`on`/`any`/`bootp`, means DHCP (the
//!   address fields are then ignored; hostname, device and DNS still apply).
//!   `server-ip` and `ntp0-ip` are checked but unused.
//!
//! Not supported, with an error naming the field: DHCPv6 and other
//! autoconf methods (`dhcp6`, `auto6`, `ibft`, `rarp`, ...), and dracut's
//! `:<mtu>:<macaddr>` tail.

use std::net::{IpAddr, Ipv4Addr};

use super::dhcp::classful_prefix;
use super::{Addressing, NetError, NetworkPlan, netmask_prefix};

const FIELDS: [&str; 10] = [
    "client-ip",
    "server-ip",
    "gw-ip",
    "netmask",
    "hostname",
    "device",
    "autoconf",
    "dns0-ip",
    "dns1-ip",
    "ntp0-ip",
];

enum Method {
    Static,
    Dhcp,
    Off,
    /// Empty: static with a client address, DHCP without.
    Default,
}

fn method(value: &str) -> Option<Result<Method, &'static str>> {
    Some(Ok(match value {
        "" => Method::Default,
        "off" | "none" => Method::Off,
        "static" => Method::Static,
        "dhcp" | "on" | "any" | "bootp" => Method::Dhcp,
        "dhcp6" | "auto6" | "either6" | "link6" | "link-local" | "ibft" | "rarp"
        | "single-dhcp" => return Some(Err("not supported (only DHCPv4 and static)")),
        _ => return None,
    }))
}

/// Parses the value of `ip=` (without `ip=`).
pub fn parse_kernel_ip_arg(value: &str) -> Result<NetworkPlan, NetError> {
    let invalid = |field: &'static str, reason: String| NetError::InvalidIpArg {
        value: value.to_owned(),
        field,
        reason,
    };
    let fields = split_fields(value).map_err(|reason| invalid("client-ip", reason))?;
    if fields.len() > FIELDS.len() {
        return Err(invalid(
            "ntp0-ip",
            format!(
                "{} fields, at most {} are known ({})",
                fields.len(),
                FIELDS.len(),
                FIELDS.join(":")
            ),
        ));
    }
    let mut plan = NetworkPlan::dhcp();

    // ip=dhcp, ip=off, ip=<device>:dhcp
    let short = match fields.as_slice() {
        [only] if parse_address_with_prefix(only).is_err() => Some((None, *only)),
        [device, method, ..] if fields.len() <= 4 && method_keyword(method) => {
            if let Some(mtu) = fields.get(2).filter(|f| !f.is_empty()) {
                return Err(invalid(
                    "mtu",
                    format!("{mtu:?}: setting the MTU is not supported"),
                ));
            }
            if let Some(mac) = fields.get(3).filter(|f| !f.is_empty()) {
                return Err(invalid(
                    "macaddr",
                    format!("{mac:?}: setting the MAC address is not supported"),
                ));
            }
            Some((Some(*device), *method))
        }
        _ => None,
    };
    if let Some((device, keyword)) = short {
        let device_field = if device.is_some() {
            "device"
        } else {
            "autoconf"
        };
        let method = match method(keyword) {
            Some(Ok(m)) => m,
            Some(Err(reason)) => return Err(invalid("autoconf", format!("{keyword:?}: {reason}"))),
            None => {
                return Err(invalid(
                    device_field,
                    format!(
                        "{keyword:?} is neither a method (dhcp, on, any, off, none) nor an address"
                    ),
                ));
            }
        };
        if let Some(device) = device {
            plan.interface = Some(check_device(device).map_err(|r| invalid("device", r))?);
        }
        return match method {
            Method::Off => Err(NetError::NetworkingOff {
                value: value.to_owned(),
            }),
            _ => Ok(plan),
        };
    }

    let field = |i: usize| fields.get(i).copied().unwrap_or("");
    let client = parse_address_with_prefix(field(0)).map_err(|r| invalid("client-ip", r))?;
    parse_optional_ip(field(1)).map_err(|r| invalid("server-ip", r))?;
    let gateway = parse_optional_ip(field(2)).map_err(|r| invalid("gw-ip", r))?;
    let netmask =
        parse_netmask(field(3), client.map(|(a, _)| a)).map_err(|r| invalid("netmask", r))?;
    if !field(4).is_empty() {
        plan.hostname = Some(check_hostname(field(4)).map_err(|r| invalid("hostname", r))?);
    }
    if !field(5).is_empty() {
        plan.interface = Some(check_device(field(5)).map_err(|r| invalid("device", r))?);
    }
    let method = match method(field(6)) {
        Some(Ok(m)) => m,
        Some(Err(reason)) => {
            return Err(invalid("autoconf", format!("{:?}: {reason}", field(6))));
        }
        None => {
            return Err(invalid(
                "autoconf",
                format!(
                    "{:?}: unknown method (dhcp, on, any, bootp, off, none, static)",
                    field(6)
                ),
            ));
        }
    };
    for (i, name) in [(7, "dns0-ip"), (8, "dns1-ip")] {
        if field(i).is_empty() {
            continue;
        }
        if i == 7 && field(i).parse::<u32>().is_ok() {
            // dracut's `<autoconf>:<mtu>:<macaddr>` tail.
            return Err(invalid(
                "mtu",
                format!("{:?}: setting the MTU is not supported", field(i)),
            ));
        }
        plan.dns
            .push(parse_ip(field(i)).map_err(|r| invalid(name, r))?);
    }
    parse_optional_ip(field(9)).map_err(|r| invalid("ntp0-ip", r))?;

    let is_static = match method {
        Method::Dhcp => false,
        Method::Default => client.is_some(),
        Method::Static | Method::Off => {
            if client.is_none() {
                return if matches!(method, Method::Off) {
                    Err(NetError::NetworkingOff {
                        value: value.to_owned(),
                    })
                } else {
                    Err(invalid(
                        "client-ip",
                        "required for static configuration".to_owned(),
                    ))
                };
            }
            true
        }
    };
    if is_static && let Some((address, prefix)) = client {
        let prefix = match (prefix, netmask) {
            (Some(a), Some(b)) if a != b => {
                return Err(invalid(
                    "netmask",
                    format!("/{b} disagrees with the client address's /{a}"),
                ));
            }
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => match address {
                IpAddr::V4(v4) => classful_prefix(v4),
                IpAddr::V6(_) => 64,
            },
        };
        if let Some(gateway) = gateway
            && gateway.is_ipv4() != address.is_ipv4()
        {
            return Err(invalid(
                "gw-ip",
                format!("{gateway} is not of the client address's family ({address})"),
            ));
        }
        plan.addressing = Addressing::Static {
            addresses: vec![(address, prefix)],
            gateway,
        };
    }
    Ok(plan)
}

fn method_keyword(value: &str) -> bool {
    method(value).is_some() && !value.is_empty()
}

/// Splits at `:` outside `[...]`.
fn split_fields(value: &str) -> Result<Vec<&str>, String> {
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced ']' at position {i}"))?;
            }
            ':' if depth == 0 => {
                fields.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unclosed '['".to_owned());
    }
    fields.push(&value[start..]);
    Ok(fields)
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map_err(|_| format!("{text:?} is not an IP address"))
}

fn parse_optional_ip(text: &str) -> Result<Option<IpAddr>, String> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse_ip(text).map(Some)
    }
}

fn parse_address_with_prefix(text: &str) -> Result<Option<(IpAddr, Option<u8>)>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let (address, prefix) = match text.rsplit_once('/') {
        Some((a, p)) if !a.ends_with('[') => (a, Some(p)),
        _ => (text, None),
    };
    let address = parse_ip(address)?;
    let prefix = prefix.map(|p| parse_prefix(p, address)).transpose()?;
    Ok(Some((address, prefix)))
}

fn parse_prefix(text: &str, address: IpAddr) -> Result<u8, String> {
    let max = if address.is_ipv4() { 32 } else { 128 };
    text.parse::<u8>()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("{text:?} is not a prefix length (0-{max})"))
}

fn parse_netmask(text: &str, client: Option<IpAddr>) -> Result<Option<u8>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(mask) = text.parse::<Ipv4Addr>() {
        if client.is_some_and(|c| c.is_ipv6()) {
            return Err(format!(
                "{text:?}: a dotted netmask for an IPv6 address; give a prefix length"
            ));
        }
        return netmask_prefix(mask)
            .map(Some)
            .ok_or_else(|| format!("{text:?} is not a contiguous netmask"));
    }
    let family = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    parse_prefix(text, family)
        .map(Some)
        .map_err(|_| format!("{text:?} is neither a dotted netmask nor a prefix length"))
}

fn check_hostname(text: &str) -> Result<String, String> {
    let valid = text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a hostname (letters, digits, '-', dot-separated labels)"
        ))
    }
}

fn check_device(text: &str) -> Result<String, String> {
    let is_mac = super::parse_mac(text).is_some();
    let valid = is_mac
        || (!text.is_empty()
            && text.len() <= 15
            && !text.contains(['/', ' ', '\t'])
            && text != "."
            && text != "..");
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not an interface name (at most 15 characters, no '/' or spaces) or MAC"
        ))
    }
}
