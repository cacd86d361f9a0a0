//! Service ClusterIP and NodePort allocators.
//!
//! Both keep the set of used offsets in memory. Like kube-apiserver, each
//! range is split into a lower *static* band (preferred by users who pick
//! fixed values such as the DNS Service's `10.96.0.10` or a nodePort
//! `30080`) and the rest, from which dynamic allocation takes values first;
//! the static band is used for dynamic allocation only once the rest is
//! full. The band is `min(max(16, size/16), 256)` addresses for ClusterIPs
//! and `min(max(16, size/32), 128)` ports for NodePorts. Dynamic allocation
//! walks forward from the last value handed out, so a released value is
//! not reused at once.
//!
//! The registry restores the state from the stored Services at startup
//! ([`ClusterIpAllocator::restore`], [`NodePortAllocator::restore`]) and
//! must serialise allocations: these types are plain values, to be held
//! behind one lock together with the Service write that uses them.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde_json::{Value, json};

use super::FieldError;

/// Why an allocation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// The range string could not be parsed or is too small.
    #[error("invalid range {0:?}")]
    InvalidRange(String),
    /// The IP lies outside the service CIDR.
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    IpNotInRange { ip: IpAddr, range: String },
    /// The IP is taken.
    #[error("provided IP is already allocated")]
    IpAlreadyAllocated(IpAddr),
    /// The port lies outside the node port range.
    #[error("provided port is not in the valid range. The range of valid ports is {range}")]
    PortNotInRange { port: u16, range: String },
    /// The port is taken.
    #[error("provided port is already allocated")]
    PortAlreadyAllocated(u16),
    /// Nothing is left.
    #[error("range is full")]
    Full,
}

impl AllocationError {
    /// The field error Kubernetes reports for a failed allocation at
    /// `field`: `spec.ports[0].nodePort: Invalid value: 30080: provided port
    /// is already allocated`, or for IPs `spec.clusterIPs: Invalid value:
    /// ["10.96.0.10"]: failed to allocate IP 10.96.0.10: provided IP is
    /// already allocated`.
    pub fn field_error(&self, field: &str) -> FieldError {
        match self {
            Self::PortNotInRange { port, .. } | Self::PortAlreadyAllocated(port) => {
                FieldError::invalid(field, &Value::from(*port), &self.to_string())
            }
            Self::IpNotInRange { ip, .. } | Self::IpAlreadyAllocated(ip) => FieldError::invalid(
                field,
                &json!([ip.to_string()]),
                &format!("failed to allocate IP {ip}: {self}"),
            ),
            Self::Full => {
                FieldError::invalid(field, &Value::Null, &format!("failed to allocate: {self}"))
            }
            Self::InvalidRange(_) => FieldError::invalid(field, &Value::Null, &self.to_string()),
        }
    }
}

/// Used offsets of a range of `size` values with a static band.
#[derive(Clone, Debug)]
struct Offsets {
    size: u128,
    band: u128,
    /// Offset 0 is never handed out dynamically (the `kubernetes` Service).
    skip_first: bool,
    used: BTreeSet<u128>,
    cursor: u128,
}

impl Offsets {
    fn new(size: u128, band: u128, skip_first: bool) -> Self {
        let band = band.min(size);
        Self {
            size,
            band,
            skip_first,
            used: BTreeSet::new(),
            cursor: band,
        }
    }

    fn take(&mut self, offset: u128) -> bool {
        self.used.insert(offset)
    }

    fn first_free(&self, lo: u128, hi: u128) -> Option<u128> {
        let mut candidate = lo;
        for &u in self.used.range(lo..hi) {
            if u == candidate {
                candidate += 1;
            } else {
                break;
            }
        }
        (candidate < hi).then_some(candidate)
    }

    fn next(&mut self) -> Option<u128> {
        let start = self.cursor.clamp(self.band, self.size);
        let static_lo = u128::from(self.skip_first);
        let found = self
            .first_free(start, self.size)
            .or_else(|| self.first_free(self.band, start))
            .or_else(|| self.first_free(static_lo, self.band))?;
        self.used.insert(found);
        self.cursor = found + 1;
        Some(found)
    }

    fn free_count(&self) -> u128 {
        self.size - self.used.len() as u128
    }
}

/// Allocates Service ClusterIPs from `--service-cluster-ip-range`.
///
/// The network address (and for IPv4 the broadcast address) is never
/// allocated. The first usable address is the `kubernetes` Service's
/// ([`ClusterIpAllocator::kubernetes_service_ip`]): `allocate_next` never
/// returns it, the registry takes it with `allocate_specific`.
#[derive(Clone, Debug)]
pub struct ClusterIpAllocator {
    cidr: String,
    /// The first usable address, as an integer.
    base: u128,
    v6: bool,
    offsets: Offsets,
}

fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl ClusterIpAllocator {
    /// A range from CIDR notation (`10.96.0.0/12`, `fd00:10:96::/112`).
    /// IPv6 ranges are limited to 2^20 addresses (at most a /108), as
    /// Kubernetes' bitmap allocator limits them.
    pub fn new(cidr: &str) -> Result<Self, AllocationError> {
        let bad = || AllocationError::InvalidRange(cidr.to_owned());
        let (addr, prefix) = cidr.trim().split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u32 = prefix.parse().map_err(|_| bad())?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(bad());
        }
        let host_bits = bits - prefix;
        let v6 = ip.is_ipv6();
        let host_bits = if v6 { host_bits.min(20) } else { host_bits };
        let total: u128 = 1u128 << host_bits;
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (bits - prefix)
        };
        let network = ip_to_u128(ip) & mask & if v6 { u128::MAX } else { u128::from(u32::MAX) };
        // Exclude the network address, and for IPv4 the broadcast address.
        let excluded = if v6 { 1 } else { 2 };
        if total <= excluded + 1 {
            return Err(bad());
        }
        let size = total - excluded;
        let band = (size / 16).clamp(16, 256);
        Ok(Self {
            cidr: cidr.trim().to_owned(),
            base: network + 1,
            v6,
            offsets: Offsets::new(size, band, true),
        })
    }

    fn addr(&self, offset: u128) -> IpAddr {
        let n = self.base + offset;
        if self.v6 {
            IpAddr::V6(n.into())
        } else {
            IpAddr::V4(u32::try_from(n).unwrap_or(0).into())
        }
    }

    fn offset(&self, ip: IpAddr) -> Option<u128> {
        if ip.is_ipv6() != self.v6 {
            return None;
        }
        let n = ip_to_u128(ip);
        let off = n.checked_sub(self.base)?;
        (off < self.offsets.size).then_some(off)
    }

    /// The address of the `kubernetes` Service (the first usable one).
    pub fn kubernetes_service_ip(&self) -> IpAddr {
        self.addr(0)
    }

    /// The configured range.
    pub fn cidr(&self) -> &str {
        &self.cidr
    }

    /// Whether `ip` can be allocated from this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.offset(ip).is_some()
    }

    /// Whether `ip` is taken.
    pub fn is_allocated(&self, ip: IpAddr) -> bool {
        self.offset(ip)
            .is_some_and(|o| self.offsets.used.contains(&o))
    }

    /// Takes a specific address (a Service with `clusterIP` set).
    pub fn allocate_specific(&mut self, ip: IpAddr) -> Result<(), AllocationError> {
        let off = self
            .offset(ip)
            .ok_or_else(|| AllocationError::IpNotInRange {
                ip,
                range: self.cidr.clone(),
            })?;
        if self.offsets.take(off) {
            Ok(())
        } else {
            Err(AllocationError::IpAlreadyAllocated(ip))
        }
    }

    /// Takes the next free address.
    pub fn allocate_next(&mut self) -> Result<IpAddr, AllocationError> {
        let off = self.offsets.next().ok_or(AllocationError::Full)?;
        Ok(self.addr(off))
    }

    /// Returns an address; `false` when it was not allocated.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        self.offset(ip)
            .is_some_and(|o| self.offsets.used.remove(&o))
    }

    /// Marks the addresses of existing Services as used (at startup).
    /// Returns the addresses outside the range, which are not tracked.
    pub fn restore(&mut self, used: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
        let mut outside = Vec::new();
        for ip in used {
            match self.offset(ip) {
                Some(o) => {
                    self.offsets.take(o);
                }
                None => outside.push(ip),
            }
        }
        outside
    }

    /// How many addresses are free.
    pub fn free(&self) -> u128 {
        self.offsets.free_count()
    }
}

/// Allocates Service nodePorts from `--service-node-port-range`.
#[derive(Clone, Debug)]
pub struct NodePortAllocator {
    range: String,
    min: u16,
    offsets: Offsets,
}

impl NodePortAllocator {
    /// A range as `30000-32767` (inclusive) or `30000+2767` (base and
    /// count beyond it), the forms kube-apiserver accepts.
    pub fn new(range: &str) -> Result<Self, AllocationError> {
        let bad = || AllocationError::InvalidRange(range.to_owned());
        let text = range.trim();
        let (min, max): (u16, u16) = if let Some((a, b)) = text.split_once('-') {
            (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            )
        } else if let Some((a, b)) = text.split_once('+') {
            let base: u16 = a.trim().parse().map_err(|_| bad())?;
            let extra: u16 = b.trim().parse().map_err(|_| bad())?;
            (base, base.checked_add(extra).ok_or_else(bad)?)
        } else {
            let p: u16 = text.parse().map_err(|_| bad())?;
            (p, p)
        };
        if min == 0 || max < min {
            return Err(bad());
        }
        let size = u128::from(max - min) + 1;
        let band = (size / 32).clamp(16, 128);
        Ok(Self {
            range: format!("{min}-{max}"),
            min,
            offsets: Offsets::new(size, band, false),
        })
    }

    fn offset(&self, port: u16) -> Option<u128> {
        let off = u128::from(port.checked_sub(self.min)?);
        (off < self.offsets.size).then_some(off)
    }

    fn port(&self, offset: u128) -> u16 {
        self.min
            .saturating_add(u16::try_from(offset).unwrap_or(u16::MAX))
    }

    /// The configured range, `min-max`.
    pub fn range(&self) -> &str {
        &self.range
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.offset(port).is_some()
    }

    /// Whether `port` is taken.
    pub fn is_allocated(&self, port: u16) -> bool {
        self.offset(port)
            .is_some_and(|o| self.offsets.used.contains(&o))
    }

    /// Takes a specific port (a Service port with `nodePort` set).
    pub fn allocate_specific(&mut self, port: u16) -> Result<(), AllocationError> {
        let off = self
            .offset(port)
            .ok_or_else(|| AllocationError::PortNotInRange {
                port,
                range: self.range.clone(),
            })?;
        if self.offsets.take(off) {
            Ok(())
        } else {
            Err(AllocationError::PortAlreadyAllocated(port))
        }
    }

    /// Takes the next free port.
    pub fn allocate_next(&mut self) -> Result<u16, AllocationError> {
        let off = self.offsets.next().ok_or(AllocationError::Full)?;
        Ok(self.port(off))
    }

    /// Returns a port; `false` when it was not allocated.
    pub fn release(&mut self, port: u16) -> bool {
        self.offset(port)
            .is_some_and(|o| self.offsets.used.remove(&o))
    }

    /// Marks the nodePorts of existing Services as used (at startup).
    /// Returns the ports outside the range, which are not tracked.
    pub fn restore(&mut self, used: impl IntoIterator<Item = u16>) -> Vec<u16> {
        let mut outside = Vec::new();
        for port in used {
            match self.offset(port) {
                Some(o) => {
                    self.offsets.take(o);
                }
                None => outside.push(port),
            }
        }
        outside
    }

    /// How many ports are free.
    pub fn free(&self) -> u128 {
        self.offsets.free_count()
    }
}

impl fmt::Display for NodePortAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.range)
    }
}
