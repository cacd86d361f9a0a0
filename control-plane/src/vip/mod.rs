//! `control-plane vip`: the virtual IP in front of the apiservers.
//!
//! Every control-plane node runs one; exactly one healthy node holds the
//! address, and it moves within seconds when that node dies. The design is
//! Talos's VIP (an etcd election) with keepalived's and kube-vip's
//! announcements:
//!
//! - a node campaigns in an etcd election ([`election`]) only while its
//!   local apiserver answers its readiness URL ([`health`]);
//! - the leader adds the address to the interface as a host address
//!   ([`address`], node-agent's rtnetlink) and announces it with a burst of
//!   gratuitous ARP (IPv6: unsolicited neighbour advertisements), then
//!   periodically ([`arp`]);
//! - the leader's lease is **fenced** locally: the address is dropped at
//!   `last keepalive sent + TTL - margin`, before etcd can expire the lease
//!   and elect someone else, even when etcd is unreachable; it is also
//!   dropped when the health check fails, a keepalive fails, or on
//!   SIGTERM/SIGINT (then the process exits 0);
//! - while holding, it keeps etcd's raft leadership on another voter
//!   ([`handoff`]), so a crash of the holder's machine never also needs an
//!   etcd election before the VIP can move;
//! - the decisions are a sans-IO state machine ([`machine`]), the run loop
//!   ([`runner`]) carries them out and keeps the status file ([`status`]).
//!
//! IPv6 VIPs are announced with unsolicited neighbour advertisements
//! instead of gratuitous ARP (the `--arp-*` flags apply to both).

pub mod address;
pub mod arp;
pub mod election;
pub mod handoff;
pub mod health;
pub mod machine;
pub mod runner;
pub mod status;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `control-plane vip`.
#[derive(Debug, Clone, clap::Args)]
pub struct VipArgs {
    /// The virtual IP, without a prefix (added as /32 or /128).
    #[arg(long)]
    pub address: IpAddr,
    /// Interface that carries the address (e.g. eth0).
    #[arg(long)]
    pub interface: String,
    /// This node's name: the value proclaimed in the election.
    #[arg(long = "node-name")]
    pub node_name: String,
    /// Comma-separated etcd URLs (https:// or http://).
    #[arg(long = "etcd-servers", required = true)]
    pub etcd_servers: String,
    /// CA bundle verifying etcd's serving certificate.
    #[arg(long = "etcd-cafile")]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate presented to etcd.
    #[arg(long = "etcd-certfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// Key of --etcd-certfile.
    #[arg(long = "etcd-keyfile")]
    pub etcd_keyfile: Option<PathBuf>,
    /// etcd election name (key prefix); default `/cairn/vip/<address>`.
    #[arg(long = "election-name")]
    pub election_name: Option<String>,
    /// Lease TTL in seconds (etcd raises values below its minimum, 2 s
    /// with the default election timeout; the granted TTL is used).
    #[arg(long = "lease-ttl", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_ttl: u64,
    /// Readiness URL of the local apiserver (http or https).
    #[arg(long = "health-url", default_value = "https://127.0.0.1:6443/readyz")]
    pub health_url: String,
    /// CA verifying the health URL's certificate; without it verification
    /// is skipped, which only loopback URLs allow.
    #[arg(long = "health-cafile")]
    pub health_cafile: Option<PathBuf>,
    /// Time between health probes (`500ms`, `1s`).
    #[arg(long = "health-interval", default_value = "500ms", value_parser = parse_duration)]
    pub health_interval: Duration,
    /// Time a health probe may take.
    #[arg(long = "health-timeout", default_value = "1s", value_parser = parse_duration)]
    pub health_timeout: Duration,
    /// Consecutive failed probes that make the node unhealthy.
    #[arg(long = "health-failures", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub health_failures: u32,
    /// Gratuitous ARP packets sent on acquiring the address (100 ms apart).
    #[arg(long = "arp-burst", default_value_t = 3)]
    pub arp_burst: u32,
    /// Time between periodic gratuitous ARPs while holding (`10s`; `0s`
    /// turns them off).
    #[arg(long = "arp-interval", default_value = "10s", value_parser = parse_duration)]
    pub arp_interval: Duration,
    /// While holding the address, move etcd's raft leadership to another
    /// healthy voter when the local member has it, so that losing this
    /// machine does not also cost an etcd election (which delays the
    /// failover by several seconds; see `handoff`).
    #[arg(long = "etcd-leader-handoff", default_value_t = true, action = clap::ArgAction::Set)]
    pub etcd_leader_handoff: bool,
    /// Where the status JSON is written (atomically).
    #[arg(long = "status-file", default_value = "/run/cairn/vip.json")]
    pub status_file: PathBuf,
}

impl VipArgs {
    /// The election name: `--election-name` or `/cairn/vip/<address>`.
    pub fn election_name(&self) -> String {
        self.election_name
            .clone()
            .unwrap_or_else(|| format!("/cairn/vip/{}", self.address))
    }
}

/// Parses `250ms`, `2s`, `1m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 2s or 1m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// What can stop `control-plane vip`.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    #[error("{operation} VIP {address} on {interface}: {source}")]
    Address {
        operation: &'static str,
        address: IpAddr,
        interface: String,
        #[source]
        source: Box<cairn_node_agent::net::NetError>,
    },
    #[error("interface {interface} not found (present: {})", present.join(", "))]
    NoInterface {
        interface: String,
        present: Vec<String>,
    },
    #[error("gratuitous ARP on {interface}: {operation}: {source}")]
    Arp {
        operation: &'static str,
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("health check {url}: {reason}")]
    Health { url: String, reason: String },
    #[error("etcd {servers}: {reason}")]
    Etcd { servers: String, reason: String },
    #[error("status file {}: {operation}: {source}", path.display())]
    Status {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Runtime {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the VIP manager until SIGTERM or SIGINT (then releases and returns
/// `Ok`).
pub fn run(args: &VipArgs) -> Result<(), VipError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| VipError::Runtime {
            what: "starting the async runtime",
            source,
        })?;
    runtime.block_on(runner::run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn flags() {
        use clap::Parser;
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            vip: VipArgs,
        }
        let cli = Cli::try_parse_from([
            "vip",
            "--address",
            "10.0.0.100",
            "--interface",
            "eth0",
            "--node-name",
            "cp-1",
            "--etcd-servers",
            "https://10.0.0.1:2379",
        ])
        .expect("parse");
        let vip = cli.vip;
        assert_eq!(vip.election_name(), "/cairn/vip/10.0.0.100");
        assert_eq!(vip.lease_ttl, 2);
        assert_eq!(vip.health_interval, Duration::from_millis(500));
        assert_eq!(vip.arp_burst, 3);
        assert_eq!(vip.arp_interval, Duration::from_secs(10));
        assert_eq!(vip.health_url, "https://127.0.0.1:6443/readyz");
        assert_eq!(vip.status_file, PathBuf::from("/run/cairn/vip.json"));
        assert!(
            Cli::try_parse_from(["vip", "--address", "10.0.0.100/32", "--interface", "e"]).is_err()
        );
    }
}
