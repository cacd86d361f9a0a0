//! Putting the VIP on the interface and taking it off, through node-agent's
//! rtnetlink ([`cairn_node_agent::net::host::NetHost`]).
//!
//! The VIP is a host address (`/32` or `/128`) so it adds no subnet route
//! next to the interface's own. It is added with a short valid lifetime
//! that every successful lease keepalive renews: should this process die
//! while holding (killed, OOM), the kernel removes the address by itself
//! about when etcd expires the lease, instead of leaving it for the next
//! start to clean up. Removing an address that is not there is
//! not an error: releases are idempotent, and the start-up cleanup of an
//! address left by a crashed run uses the same call.

use std::net::IpAddr;

use cairn_node_agent::net::host::NetHost;
use cairn_node_agent::net::{Link, NetError};

use super::VipError;

/// `EADDRNOTAVAIL`: the kernel's answer to deleting an absent address.
const EADDRNOTAVAIL: i32 = 99;

/// The VIP on one named interface.
#[derive(Debug)]
pub struct VipAddress<H> {
    host: H,
    interface: String,
    address: IpAddr,
}

impl<H: NetHost> VipAddress<H> {
    pub fn new(host: H, interface: &str, address: IpAddr) -> Self {
        Self {
            host,
            interface: interface.to_owned(),
            address,
        }
    }

    /// `/32` for IPv4, `/128` for IPv6.
    pub fn prefix(&self) -> u8 {
        if self.address.is_ipv4() { 32 } else { 128 }
    }

    /// The interface, looked up by name each time (it may be recreated).
    pub fn link(&mut self) -> Result<Link, VipError> {
        let links = self.host.links().map_err(|source| VipError::Address {
            operation: "listing links",
            address: self.address,
            interface: self.interface.clone(),
            source: Box::new(source),
        })?;
        let present: Vec<String> = links.iter().map(|l| l.name.clone()).collect();
        links
            .into_iter()
            .find(|l| l.name == self.interface)
            .ok_or_else(|| VipError::NoInterface {
                interface: self.interface.clone(),
                present,
            })
    }

    /// Adds the VIP, or renews it (replacing an existing identical
    /// address), valid for `lifetime` seconds (`None`: forever).
    pub fn add(&mut self, lifetime: Option<u32>) -> Result<Link, VipError> {
        let link = self.link()?;
        let prefix = self.prefix();
        self.host
            .add_address(&link, self.address, prefix, lifetime)
            .map_err(|source| VipError::Address {
                operation: "adding",
                address: self.address,
                interface: self.interface.clone(),
                source: Box::new(source),
            })?;
        Ok(link)
    }

    /// Removes the VIP; `Ok(false)` when it was not there.
    pub fn remove(&mut self) -> Result<bool, VipError> {
        let link = self.link()?;
        let prefix = self.prefix();
        match self.host.remove_address(&link, self.address, prefix) {
            Ok(()) => Ok(true),
            Err(NetError::Netlink { source, .. })
                if source.raw_os_error() == Some(EADDRNOTAVAIL) =>
            {
                Ok(false)
            }
            Err(source) => Err(VipError::Address {
                operation: "removing",
                address: self.address,
                interface: self.interface.clone(),
                source: Box::new(source),
            }),
        }
    }
}
