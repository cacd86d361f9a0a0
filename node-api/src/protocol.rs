//! Wire types shared by the server and the client.
//!
//! Every struct is `#[serde(default)]` so a client built against an older
//! version of this crate still decodes answers from a newer node (unknown
//! fields are ignored, missing ones take their default), and the other way
//! round.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Lifecycle state of a node, as `GET /v1/status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// PID 1 is up and working through the boot flow.
    #[default]
    Booting,
    /// No valid machine config: waiting for one on `POST /v1/config`.
    Maintenance,
    /// A machine config is being applied.
    Configuring,
    /// Configured and running its services.
    Running,
    /// Boot or configuration failed; `problems` says why.
    Failed,
    /// A reboot or power-off is under way.
    ShuttingDown,
}

/// Versions of the software the node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Versions {
    /// Cairn release (node-agent's version).
    pub cairn: String,
    /// Running kernel (`uname -r`).
    pub kernel: String,
    /// containerd version, once it runs.
    pub containerd: Option<String>,
}

/// Boot milestones, in milliseconds since the kernel started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BootTimings {
    /// node-agent started as PID 1.
    pub pid1_ms: Option<u64>,
    /// The network was configured.
    pub network_ms: Option<u64>,
    /// containerd answered.
    pub containerd_ms: Option<u64>,
}

/// State of one supervised service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Waiting for its dependencies.
    #[default]
    Waiting,
    /// Started, not ready yet.
    Starting,
    /// Running.
    Running,
    /// Exited; will be started again after a back-off.
    Restarting,
    /// Gave up restarting.
    Failed,
    /// Stopped on purpose.
    Stopped,
}

impl ServiceState {
    /// The wire name: `waiting`, `running`, ...
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceState::Waiting => "waiting",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Restarting => "restarting",
            ServiceState::Failed => "failed",
            ServiceState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One supervised service in [`NodeStatus::services`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ServiceStatus {
    /// Current state.
    pub state: ServiceState,
    /// Process id while it runs.
    pub pid: Option<u32>,
    /// How often it was restarted.
    pub restarts: u32,
    /// How the last run ended, e.g. `"exit status 1"` or `"signal 9"`.
    pub last_exit: Option<String>,
    /// Whether its readiness check passed.
    pub ready: bool,
}

/// Answer of `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NodeStatus {
    /// Current hostname.
    pub hostname: String,
    /// Lifecycle state.
    pub state: NodeState,
    /// Where the machine config came from (e.g. `"state"`, `"cmdline"`, `"api"`).
    pub config_source: Option<String>,
    /// Problems found during boot or configuration, one line each.
    pub problems: Vec<String>,
    /// Software versions.
    pub versions: Versions,
    /// Configured addresses with prefix length, e.g. `"10.5.0.11/24"`.
    pub addresses: Vec<String>,
    /// Supervised services by name.
    pub services: BTreeMap<String, ServiceStatus>,
    /// Boot milestones.
    pub boot: BootTimings,
    /// Self-checks by name, e.g. `"root-write"` →
    /// `"refused: Read-only file system (os error 30)"`.
    pub checks: BTreeMap<String, String>,
    /// node-agent's resident set size in KiB.
    pub rss_kib: Option<u64>,
    /// Cluster membership; `None` until the node starts forming or joining.
    pub cluster: Option<ClusterStatus>,
}

/// Where a node is in forming or joining its cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ClusterStatus {
    /// What the node does: `"init"`, `"join"` or `"wait"` (no `[join]`).
    pub action: String,
    /// The phase running or last finished, e.g. `"etcd"`, `"registered"`.
    pub phase: String,
    /// Whether the node is a registered, heartbeating member.
    pub member: bool,
    /// The control-plane endpoint, e.g. `"https://10.5.0.100:6443"`.
    pub endpoint: Option<String>,
    /// The last error, while the node retries.
    pub error: Option<String>,
    /// Whether this node holds the cluster's virtual IP.
    pub vip_holder: bool,
}

/// Body of `POST /v1/containers/run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunContainerRequest {
    /// Image reference, e.g. `"registry.k8s.io/pause:3.10"`.
    pub image: String,
    /// Command and arguments; empty runs the image's entrypoint.
    pub args: Vec<String>,
    /// Kill the container after this many seconds.
    pub timeout_seconds: u64,
}

/// Answer of `POST /v1/containers/run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunContainerResponse {
    /// Exit code of the container's process.
    pub exit_code: i32,
    /// Its standard output (lossy UTF-8).
    pub stdout: String,
    /// Its standard error (lossy UTF-8).
    pub stderr: String,
}

/// Body of `POST /v1/reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResetRequest {
    /// Leave the cluster first: release the VIP, leave etcd (refused when
    /// that would cost etcd its quorum), delete the Node object. Without
    /// it the node is wiped as it is, like a disk swap.
    pub graceful: bool,
    /// Reboot after wiping STATE (else power off).
    pub reboot: bool,
}

impl Default for ResetRequest {
    fn default() -> Self {
        Self {
            graceful: true,
            reboot: true,
        }
    }
}

/// Answer of `POST /v1/reset` (202): what leaving the cluster did; STATE
/// is wiped and the node restarts once the answer is out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ResetResponse {
    /// One line per step taken, in order.
    pub steps: Vec<String>,
}

/// Answer of `POST /v1/config` (202 when applied, 422 with problems).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ApplyConfigResponse {
    /// Whether the config was accepted.
    pub applied: bool,
    /// What is wrong with it, one `source: key: reason` line each.
    pub problems: Vec<String>,
}

/// Body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// Details, e.g. the problems of a rejected machine config.
    pub problems: Vec<String>,
}

/// Request paths.
pub mod paths {
    /// `GET`: [`super::NodeStatus`].
    pub const STATUS: &str = "/v1/status";
    /// `GET /v1/logs/{service}?lines=N`: text.
    pub const LOGS_PREFIX: &str = "/v1/logs/";
    /// `GET /v1/read?path=/abs/path`: bytes.
    pub const READ: &str = "/v1/read";
    /// `POST`: machine config TOML.
    pub const CONFIG: &str = "/v1/config";
    /// `POST`: reboot.
    pub const REBOOT: &str = "/v1/reboot";
    /// `POST`: power off.
    pub const SHUTDOWN: &str = "/v1/shutdown";
    /// `POST`: [`super::ResetRequest`].
    pub const RESET: &str = "/v1/reset";
    /// `POST`: [`super::RunContainerRequest`].
    pub const CONTAINERS_RUN: &str = "/v1/containers/run";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_use_their_wire_names() -> Result<(), serde_json::Error> {
        assert_eq!(
            serde_json::to_string(&NodeState::ShuttingDown)?,
            "\"shutting-down\""
        );
        assert_eq!(
            serde_json::to_string(&ServiceState::Restarting)?,
            "\"restarting\""
        );
        Ok(())
    }

    #[test]
    fn unknown_and_missing_fields_are_tolerated() -> Result<(), serde_json::Error> {
        let status: NodeStatus = serde_json::from_str(
            r#"{"hostname":"n1","state":"running","future":{"x":1},"services":{"kubelet":{"state":"running","later":true}}}"#,
        )?;
        assert_eq!(status.hostname, "n1");
        assert_eq!(status.state, NodeState::Running);
        assert_eq!(status.services["kubelet"].state, ServiceState::Running);
        assert_eq!(status.services["kubelet"].restarts, 0);
        assert!(status.addresses.is_empty());
        Ok(())
    }
}
