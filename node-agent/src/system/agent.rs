//! What the node API sees of the node: node-agent's implementation of
//! [`NodeService`]. It holds the facts PID 1 learns while booting (state,
//! config source, addresses, timings, checks, problems) and reaches the
//! supervisor and containerd for the rest. Requests that change the
//! machine (apply-config, reboot, shutdown) become [`Event`]s for PID 1's
//! main thread; nothing here reboots by itself.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_config::MachineConfig;
use cairn_node_api::{
    ApiError, BootTimings, Caller, ClusterStatus, NodeService, NodeState, NodeStatus, ResetRequest,
    ResetResponse, RunContainerRequest, RunContainerResponse, Versions,
};

use super::console::Console;
use super::{Event, LOG_DIR};
use crate::net::NetworkState;
use crate::services::containerd::{self, ContainerdSettings};
use crate::services::supervisor::Supervisor;

/// Facts about the node that PID 1 records as it boots.
#[derive(Debug, Default, Clone)]
pub struct NodeFacts {
    pub state: NodeState,
    pub hostname: String,
    pub config_source: Option<String>,
    pub problems: Vec<String>,
    pub addresses: Vec<String>,
    pub boot: BootTimings,
    pub checks: BTreeMap<String, String>,
    pub containerd_version: Option<String>,
    pub cluster: Option<ClusterStatus>,
}

pub struct Agent {
    console: Arc<Console>,
    supervisor: Arc<Supervisor>,
    events: Mutex<Sender<Event>>,
    facts: Mutex<NodeFacts>,
    containerd: Mutex<Option<ContainerdSettings>>,
    /// The config the node runs, once applied; live changes compare to it.
    running_config: Mutex<Option<MachineConfig>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// This process's resident memory, from `/proc/self/status`.
pub fn rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

impl Agent {
    pub fn new(
        console: Arc<Console>,
        supervisor: Arc<Supervisor>,
        events: Sender<Event>,
        pid1_ms: u64,
    ) -> Self {
        let facts = NodeFacts {
            boot: BootTimings {
                pid1_ms: Some(pid1_ms),
                ..BootTimings::default()
            },
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..NodeFacts::default()
        };
        Self {
            console,
            supervisor,
            events: Mutex::new(events),
            facts: Mutex::new(facts),
            containerd: Mutex::new(None),
            running_config: Mutex::new(None),
        }
    }

    fn send(&self, event: Event) {
        let _ = lock(&self.events).send(event);
    }

    /// Records the config the node runs.
    pub fn set_running_config(&self, config: &MachineConfig) {
        *lock(&self.running_config) = Some(config.clone());
    }

    /// A config sent to a running node: applied in place when only
    /// live-changeable keys differ ([`crate::cluster::reconfigure`]),
    /// refused with 409 otherwise.
    fn apply_to_running_node(&self, config: MachineConfig, source: &str) -> Result<(), ApiError> {
        use crate::cluster::reconfigure;
        let Some(running) = lock(&self.running_config).clone() else {
            return Err(ApiError::conflict(
                "the node is applying its machine config; try again once it runs",
            ));
        };
        let changes = reconfigure::live_changes(&running, &config).map_err(|keys| {
            ApiError::conflict(format!(
                "the node runs a machine config; only cluster.apiserver-cert-extra-sans can change while it runs, and [{}] differ: reset the node (`bootstrap reset`) to apply such a config",
                keys.join(", ")
            ))
        })?;
        if changes.is_empty() {
            self.console
                .line(&format!("machine config from {source}: unchanged"));
            return Ok(());
        }
        let (hostname, address) = self.identity();
        let node_name = hostname
            .parse::<cairn_pki::NodeName>()
            .map_err(|e| ApiError::conflict(format!("hostname {hostname:?}: {e}")))?;
        let address =
            address.ok_or_else(|| ApiError::conflict("the node has no address".to_owned()))?;
        let steps = reconfigure::apply(&config, &changes, node_name, address, &self.supervisor)
            .map_err(|e| {
                self.console
                    .line(&format!("machine config from {source} not applied: {e}"));
                ApiError::internal(e)
            })?;
        self.console
            .line(&format!("machine config from {source} applied in place:"));
        for step in steps {
            self.console.line(&format!("  {step}"));
        }
        *lock(&self.running_config) = Some(config);
        Ok(())
    }

    pub fn set_state(&self, state: NodeState) {
        lock(&self.facts).state = state;
    }

    pub fn state(&self) -> NodeState {
        lock(&self.facts).state
    }

    pub fn set_problems(&self, problems: Vec<String>) {
        lock(&self.facts).problems = problems;
    }

    pub fn add_problems(&self, problems: impl IntoIterator<Item = String>) {
        lock(&self.facts).problems.extend(problems);
    }

    pub fn set_config_source(&self, source: &str) {
        lock(&self.facts).config_source = Some(source.to_owned());
    }

    pub fn set_hostname(&self, hostname: &str) {
        lock(&self.facts).hostname = hostname.to_owned();
    }

    pub fn set_check(&self, name: &str, outcome: String) {
        lock(&self.facts).checks.insert(name.to_owned(), outcome);
    }

    pub fn set_network(&self, state: &NetworkState) {
        let mut facts = lock(&self.facts);
        facts.addresses = state
            .addresses
            .iter()
            .map(|(address, prefix)| format!("{address}/{prefix}"))
            .collect();
        if facts.boot.network_ms.is_none() {
            facts.boot.network_ms = Some(super::millis(super::console::since_boot()));
        }
    }

    pub fn set_containerd(&self, settings: ContainerdSettings) {
        *lock(&self.containerd) = Some(settings);
    }

    /// containerd's version once it is ready.
    pub fn containerd_version(&self) -> Option<String> {
        lock(&self.facts).containerd_version.clone()
    }

    /// The node's name and first address, once the host is configured.
    pub fn identity(&self) -> (String, Option<IpAddr>) {
        let facts = lock(&self.facts);
        let address = facts
            .addresses
            .iter()
            .find_map(|a| a.split('/').next()?.parse().ok());
        (facts.hostname.clone(), address)
    }

    /// Changes the cluster status in place (created on first use).
    pub fn update_cluster(&self, change: impl FnOnce(&mut ClusterStatus)) {
        change(
            lock(&self.facts)
                .cluster
                .get_or_insert_with(ClusterStatus::default),
        );
    }

    pub fn set_containerd_ready(&self, at_ms: u64) {
        let version = containerd::version().ok();
        let mut facts = lock(&self.facts);
        facts.boot.containerd_ms = Some(at_ms);
        facts.containerd_version = version;
    }
}

impl NodeService for Agent {
    fn status(&self, _caller: &Caller) -> NodeStatus {
        let facts = lock(&self.facts).clone();
        let services = self
            .supervisor
            .status()
            .into_iter()
            .map(|(name, status)| (name, status.to_api()))
            .collect();
        NodeStatus {
            hostname: facts.hostname,
            state: facts.state,
            config_source: facts.config_source,
            problems: facts.problems,
            versions: Versions {
                cairn: env!("CARGO_PKG_VERSION").to_owned(),
                kernel: nix::sys::utsname::uname()
                    .map(|u| u.release().to_string_lossy().into_owned())
                    .unwrap_or_default(),
                containerd: facts.containerd_version,
            },
            addresses: facts.addresses,
            services,
            boot: facts.boot,
            checks: facts.checks,
            rss_kib: rss_kib(),
            cluster: facts.cluster,
        }
    }

    fn logs(&self, _caller: &Caller, service: &str, lines: usize) -> Result<String, ApiError> {
        let valid = !service.is_empty()
            && service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(ApiError::bad_request(format!(
                "{service:?} is not a service name"
            )));
        }
        // The same reader the supervisor uses, so a rotated `.1` file is
        // part of the tail; `node-agent` (the console log) reads the same way.
        let tail = crate::services::ServiceLog::new(Path::new(LOG_DIR), service, 0)
            .tail(lines)
            .map_err(|_| ApiError::not_found(format!("no log for service {service:?}")))?;
        let mut text = tail.join("\n");
        text.push('\n');
        Ok(text)
    }

    fn read_file(
        &self,
        _caller: &Caller,
        path: &Path,
        max_bytes: usize,
    ) -> Result<Vec<u8>, ApiError> {
        let file = std::fs::File::open(path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => {
                ApiError::not_found(format!("{}: no such file", path.display()))
            }
            _ => ApiError::bad_request(format!("{}: {error}", path.display())),
        })?;
        let mut bytes = Vec::new();
        file.take(max_bytes as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| ApiError::bad_request(format!("{}: {error}", path.display())))?;
        Ok(bytes)
    }

    fn apply_config(&self, caller: &Caller, toml: &str) -> Result<(), ApiError> {
        let running = self.state() != NodeState::Maintenance;
        if running && *caller == Caller::MaintenanceKey {
            return Err(ApiError::forbidden(
                "the node runs a machine config; changing it needs a client certificate",
            ));
        }
        let source = format!("node API ({caller})");
        let config = MachineConfig::parse(toml, &source).map_err(|error| {
            let problems: Vec<String> = error.to_string().lines().map(str::to_owned).collect();
            self.console
                .line(&format!("machine config from {source} refused:"));
            for problem in &problems {
                self.console.line(&format!("  {problem}"));
            }
            ApiError::invalid_config(problems)
        })?;
        if running {
            return self.apply_to_running_node(config, &source);
        }
        self.set_state(NodeState::Configuring);
        self.send(Event::ApplyConfig(Box::new(config), source));
        Ok(())
    }

    fn reboot(&self, caller: &Caller) {
        self.send(Event::Reboot(format!(
            "requested through the node API by {caller}"
        )));
    }

    fn shutdown(&self, caller: &Caller) {
        self.send(Event::PowerOff(format!(
            "requested through the node API by {caller}"
        )));
    }

    fn reset(&self, caller: &Caller, request: &ResetRequest) -> Result<ResetResponse, ApiError> {
        self.console.line(&format!(
            "reset requested through the node API by {caller} (graceful: {})",
            request.graceful
        ));
        if !request.graceful {
            return Ok(ResetResponse {
                steps: vec!["not graceful: the cluster is left as it is".to_owned()],
            });
        }
        let (hostname, _) = self.identity();
        let steps = crate::cluster::reset::leave(&self.supervisor, &hostname).map_err(|error| {
            self.console.line(&format!("reset refused: {error}"));
            ApiError::new(409, format!("reset refused: {error}"))
        })?;
        for step in &steps {
            self.console.line(&format!("reset: {step}"));
        }
        Ok(ResetResponse { steps })
    }

    fn reset_finish(&self, caller: &Caller, request: &ResetRequest) {
        self.send(Event::Reset {
            reboot: request.reboot,
            why: format!("reset through the node API by {caller}"),
        });
    }

    fn run_container(
        &self,
        caller: &Caller,
        request: &RunContainerRequest,
    ) -> Result<RunContainerResponse, ApiError> {
        let Some(settings) = lock(&self.containerd).clone() else {
            return Err(ApiError::unavailable("containerd is not running"));
        };
        self.console.line(&format!(
            "running {} {:?} for {caller}",
            request.image, request.args
        ));
        let timeout = Duration::from_secs(request.timeout_seconds.clamp(1, 600));
        let output = containerd::run_container(&settings, &request.image, &request.args, timeout)
            .map_err(|error| ApiError::internal(error.to_string()))?;
        Ok(RunContainerResponse {
            exit_code: output.exit_code,
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}
