//! `preflight`: what kubeadm checks before it touches anything, for a
//! control plane about to start etcd and the apiserver: the ports are
//! free, IPv4 forwarding is on, there is enough memory, the binaries are
//! there and the clock is sane (certificates issued with a clock in the
//! past or far future fail everywhere later).
//!
//! The checks read the host through [`Host`] so the rules are tested
//! without one. Errors stop the phase (it is retried, so a port freed
//! later or a clock fixed by NTP lets it pass); warnings are printed.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

/// Ports a control plane listens on.
pub const CONTROL_PLANE_PORTS: [u16; 4] = [2379, 2380, 2381, 6443];
/// kubeadm's minimum memory for a control plane, in MiB.
pub const MIN_MEMORY_MIB: u64 = 1700;
/// The earliest plausible clock: the Kubernetes version Cairn serves did
/// not exist before.
const EARLIEST_YEAR: i32 = 2025;

/// What the checks read from the machine.
pub trait Host {
    /// Whether `port` can be bound on all addresses.
    fn port_free(&self, port: u16) -> bool;
    /// `/proc/sys/net/ipv4/ip_forward`.
    fn ip_forward(&self) -> Option<String>;
    /// Total memory in MiB.
    fn memory_mib(&self) -> Option<u64>;
    /// Whether an executable exists at `path`.
    fn executable(&self, path: &str) -> bool;
    /// The current year by the system clock.
    fn year(&self) -> i32;
}

/// The outcome of all checks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Runs every check; `binaries` are the programs the node will start.
pub fn check(host: &dyn Host, binaries: &[&str]) -> Findings {
    let mut findings = Findings::default();
    for port in CONTROL_PLANE_PORTS {
        if !host.port_free(port) {
            findings
                .errors
                .push(format!("port {port} is in use; stop what listens on it"));
        }
    }
    match host.ip_forward().as_deref().map(str::trim) {
        Some("1") => {}
        Some(other) => findings.errors.push(format!(
            "/proc/sys/net/ipv4/ip_forward is {other}, expected 1 (set net.ipv4.ip_forward = 1)"
        )),
        None => findings
            .errors
            .push("/proc/sys/net/ipv4/ip_forward cannot be read".to_owned()),
    }
    match host.memory_mib() {
        Some(mib) if mib < MIN_MEMORY_MIB => findings.warnings.push(format!(
            "{mib} MiB of memory; a control plane wants at least {MIN_MEMORY_MIB} MiB"
        )),
        Some(_) => {}
        None => findings
            .warnings
            .push("total memory unknown (/proc/meminfo)".to_owned()),
    }
    for binary in binaries {
        if !host.executable(binary) {
            findings.errors.push(format!(
                "{binary} is missing from the image; build it from a profile that includes it"
            ));
        }
    }
    let year = host.year();
    if year < EARLIEST_YEAR {
        findings.errors.push(format!(
            "the clock says {year}; set the time (certificates issued now would be rejected later)"
        ));
    }
    findings
}

/// The running machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxHost;

impl Host for LinuxHost {
    fn port_free(&self, port: u16) -> bool {
        TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).is_ok()
    }

    fn ip_forward(&self) -> Option<String> {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok()
    }

    fn memory_mib(&self) -> Option<u64> {
        super::host::memory_total_kib().map(|kib| kib / 1024)
    }

    fn executable(&self, path: &str) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(Path::new(path))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }

    fn year(&self) -> i32 {
        time::OffsetDateTime::now_utc().year()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        busy: Vec<u16>,
        forward: Option<&'static str>,
        memory: Option<u64>,
        present: Vec<&'static str>,
        year: i32,
    }

    impl Host for Fake {
        fn port_free(&self, port: u16) -> bool {
            !self.busy.contains(&port)
        }
        fn ip_forward(&self) -> Option<String> {
            self.forward.map(str::to_owned)
        }
        fn memory_mib(&self) -> Option<u64> {
            self.memory
        }
        fn executable(&self, path: &str) -> bool {
            self.present.contains(&path)
        }
        fn year(&self) -> i32 {
            self.year
        }
    }

    fn healthy() -> Fake {
        Fake {
            busy: Vec::new(),
            forward: Some("1\n"),
            memory: Some(2048),
            present: vec!["/usr/bin/etcd"],
            year: 2026,
        }
    }

    #[test]
    fn a_ready_machine_passes() {
        assert_eq!(check(&healthy(), &["/usr/bin/etcd"]), Findings::default());
    }

    #[test]
    fn each_problem_is_named() {
        let host = Fake {
            busy: vec![6443],
            forward: Some("0\n"),
            memory: Some(1024),
            present: Vec::new(),
            year: 1970,
        };
        let findings = check(&host, &["/usr/bin/etcd"]);
        let text = findings.errors.join("\n");
        assert!(text.contains("port 6443"), "{text}");
        assert!(text.contains("ip_forward is 0"), "{text}");
        assert!(text.contains("/usr/bin/etcd is missing"), "{text}");
        assert!(text.contains("1970"), "{text}");
        assert_eq!(findings.errors.len(), 4, "{text}");
        assert!(findings.warnings[0].contains("1024 MiB"), "{findings:?}");
    }
}
