//! DHCP (and the iPXE hand-off) for the lab: one `dnsmasq` in the lab
//! namespace, bound to the bridge.
//!
//! DNS is off (`--port=0`) and no configuration file is read
//! (`--conf-file=/dev/null`), so the host's dnsmasq setup never leaks in.
//! Every node has a reservation (`--dhcp-host=<mac>,set:<node>,<ip>,<name>`);
//! other clients get an address from the dynamic range. A client that says
//! it is iPXE (DHCP option 175) gets the URL of its per-node script as boot
//! file; everything else gets no boot file. Leases, the pid file and the
//! log live in the lab directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::LabError;

pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// One DHCP reservation.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub mac: String,
    pub ip: String,
    pub name: String,
    /// What an iPXE client with this MAC boots.
    pub ipxe_url: String,
}

#[derive(Debug, Clone)]
pub struct DnsmasqConfig {
    pub netns: String,
    pub bridge: String,
    /// First and last address of the dynamic range, and the netmask.
    pub range: (String, String, String),
    pub reservations: Vec<Reservation>,
    pub dir: PathBuf,
}

impl DnsmasqConfig {
    pub fn leases(&self) -> PathBuf {
        self.dir.join("dnsmasq.leases")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("dnsmasq.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }

    /// dnsmasq's arguments.
    pub fn args(&self) -> Vec<String> {
        let (first, last, netmask) = &self.range;
        let mut args = vec![
            "--keep-in-foreground".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--port=0".to_owned(),
            "--user=root".to_owned(),
            "--group=root".to_owned(),
            format!("--interface={}", self.bridge),
            "--bind-interfaces".to_owned(),
            "--except-interface=lo".to_owned(),
            format!("--dhcp-range={first},{last},{netmask},1h"),
            "--dhcp-authoritative".to_owned(),
            "--dhcp-match=set:ipxe,175".to_owned(),
            format!("--dhcp-leasefile={}", self.leases().display()),
            format!("--pid-file={}", self.pid_file().display()),
            format!("--log-facility={}", self.log().display()),
            "--log-dhcp".to_owned(),
        ];
        for (index, reservation) in self.reservations.iter().enumerate() {
            let tag = format!("node{index}");
            args.push(format!(
                "--dhcp-host={},set:{tag},{},{}",
                reservation.mac, reservation.ip, reservation.name
            ));
            args.push(format!(
                "--dhcp-boot=tag:ipxe,tag:{tag},{}",
                reservation.ipxe_url
            ));
        }
        args
    }
}

/// The running dnsmasq; dropping it kills it.
#[derive(Debug)]
pub struct Dnsmasq {
    pub config: DnsmasqConfig,
    child: Child,
}

impl Dnsmasq {
    /// Starts dnsmasq and waits until it has written its pid file (it is
    /// then bound and serving).
    pub fn start(config: DnsmasqConfig) -> Result<Self, LabError> {
        if !Path::new(DNSMASQ).is_file() {
            return Err(LabError::Command {
                command: DNSMASQ.to_owned(),
                message: "not installed; install dnsmasq-base".to_owned(),
            });
        }
        let _ = std::fs::remove_file(config.pid_file());
        let child = Command::new("ip")
            .args(["netns", "exec", &config.netns, DNSMASQ])
            .args(config.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LabError::Command {
                command: "ip netns exec ... dnsmasq".to_owned(),
                message: e.to_string(),
            })?;
        let mut dnsmasq = Self { config, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::fs::read_to_string(dnsmasq.config.pid_file())
                .is_ok_and(|pid| !pid.trim().is_empty())
            {
                return Ok(dnsmasq);
            }
            let exited = dnsmasq.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let log = std::fs::read_to_string(dnsmasq.config.log()).unwrap_or_default();
                return Err(LabError::Command {
                    command: "dnsmasq".to_owned(),
                    message: match exited {
                        Some(status) => format!("exited ({status}); its log:\n{log}"),
                        None => format!("wrote no pid file within 10s; its log:\n{log}"),
                    },
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The leases file's lines (`<expiry> <mac> <ip> <name> <client-id>`).
    pub fn leases(&self) -> Vec<String> {
        std::fs::read_to_string(self.config.leases())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.config.pid_file());
    }
}
