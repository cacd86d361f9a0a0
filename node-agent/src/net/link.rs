//! Choosing the interface to configure.
//!
//! Candidates are Ethernet links that are not upper or virtual devices
//! (bridges, bonds, VLANs, tunnels, dummies) and not enslaved to one; a
//! `veth` counts, as one end of a cable. Without a name in the plan, every
//! candidate is set up and the first (lowest index) to report carrier wins;
//! the ones set up only to look for carrier are set down again.

use std::time::{Duration, Instant};

use super::host::NetHost;
use super::{Link, NetError};

const POLL: Duration = Duration::from_millis(100);

/// Whether `link` may carry the node's primary network.
pub fn is_candidate(link: &Link) -> bool {
    link.is_ethernet && link.master.is_none() && link.kind.as_deref().is_none_or(|k| k == "veth")
}

/// The interface [`choose`] would pick now, without touching anything:
/// the first candidate that is up with carrier, else the first candidate.
pub fn primary(links: &[Link]) -> Option<&Link> {
    let mut candidates = links.iter().filter(|l| is_candidate(l));
    let first = candidates.clone().next();
    candidates.find(|l| l.up && l.carrier).or(first)
}

/// A link by name, or by MAC when `wanted` looks like one.
pub fn find<'a>(links: &'a [Link], wanted: &str) -> Option<&'a Link> {
    let mac = super::parse_mac(wanted).map(|m| super::format_mac(&m));
    links
        .iter()
        .find(|l| l.name == wanted || (mac.is_some() && l.mac.as_deref() == mac.as_deref()))
}

/// Sets `lo` up.
pub fn loopback_up(host: &mut dyn NetHost) -> Result<(), NetError> {
    let links = host.links()?;
    let lo = links
        .iter()
        .find(|l| l.name == "lo")
        .ok_or_else(|| NetError::NoInterface {
            name: "lo".into(),
            waited: Duration::ZERO,
            present: links.iter().map(|l| l.name.clone()).collect(),
        })?;
    host.set_up(lo, true)
}

/// The interface to configure, set up: the named one (waiting for it to
/// appear), else the first candidate with carrier, waiting for carrier
/// until `deadline`.
pub fn choose(
    host: &mut dyn NetHost,
    wanted: Option<&str>,
    deadline: Instant,
    timeout: Duration,
) -> Result<Link, NetError> {
    match wanted {
        Some(name) => choose_named(host, name, deadline, timeout),
        None => choose_with_carrier(host, deadline, timeout),
    }
}

fn choose_named(
    host: &mut dyn NetHost,
    name: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Link, NetError> {
    loop {
        let links = host.links()?;
        if let Some(link) = find(&links, name) {
            if !link.up {
                host.set_up(link, true)?;
            }
            return Ok(link.clone());
        }
        if Instant::now() >= deadline {
            return Err(NetError::NoInterface {
                name: name.to_owned(),
                waited: timeout,
                present: links.iter().map(|l| l.name.clone()).collect(),
            });
        }
        host.sleep(POLL);
    }
}

fn choose_with_carrier(
    host: &mut dyn NetHost,
    deadline: Instant,
    timeout: Duration,
) -> Result<Link, NetError> {
    let mut raised: Vec<Link> = Vec::new();
    let result = loop {
        let links = match host.links() {
            Ok(links) => links,
            Err(error) => break Err(error),
        };
        let candidates: Vec<&Link> = links.iter().filter(|l| is_candidate(l)).collect();
        if let Some(link) = candidates.iter().find(|l| l.up && l.carrier) {
            break Ok((*link).clone());
        }
        let mut failed = None;
        for link in candidates.iter().filter(|l| !l.up) {
            if raised.iter().any(|r| r.index == link.index) {
                continue;
            }
            match host.set_up(link, true) {
                Ok(()) => raised.push((*link).clone()),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = failed {
            break Err(error);
        }
        if Instant::now() >= deadline {
            break Err(NetError::NoCarrier {
                waited: timeout,
                candidates: candidates.iter().map(|l| l.name.clone()).collect(),
            });
        }
        host.sleep(POLL);
    };
    let chosen = result.as_ref().ok().map(|l| l.index);
    for link in raised.iter().filter(|l| Some(l.index) != chosen) {
        // Best effort: a link we only raised to look for carrier.
        let _ = host.set_up(link, false);
    }
    result
}
