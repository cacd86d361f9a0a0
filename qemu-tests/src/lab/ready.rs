//! Talking to lab nodes through the node API, and waiting until they are
//! ready.
//!
//! A client goes through the node's forward on 127.0.0.1 and pins the
//! certificate fingerprint the node last printed on its console. It
//! authenticates with the lab's admin client certificate (trusted through
//! `[api] client-ca` once the node applied its config) and falls back to
//! the maintenance key the console shows while the node waits in
//! maintenance mode.
//!
//! A node is **ready** when it reports the state `running` and
//! `services["containerd"]` is `running` with its readiness check passed.
//! Waiting polls every node until all are ready or the deadline passes;
//! the error then names each node that is not, the last state seen (or
//! why it could not be asked) and its console tail.

use std::time::{Duration, Instant};

use cairn_node_api::{
    Credentials, MaintenanceKey, NodeClient, NodeStatus, ServerTrust, ServiceState,
};

use super::{AdminCredentials, Lab, LabError, LabNode, LabState};

/// How often nodes are asked while waiting.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Which credentials a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The lab's admin client certificate.
    Admin,
    /// The maintenance key from the console.
    MaintenanceKey,
}

/// A client for `node` pinned to the fingerprint on its console.
pub fn client(node: &LabNode, admin: &AdminCredentials, auth: Auth) -> Result<NodeClient, String> {
    let addr = node
        .api_addr()
        .ok_or_else(|| format!("{} has no node API forward", node.name))?;
    let fingerprint = node
        .api_fingerprint()
        .ok_or_else(|| "its console has not announced the node API yet".to_owned())?;
    let credentials = match auth {
        Auth::Admin => Credentials::ClientCert {
            cert_pem: admin.cert_pem.clone(),
            key_pem: admin.key_pem.clone(),
        },
        Auth::MaintenanceKey => {
            let key = node
                .maintenance_key()
                .ok_or_else(|| "its console shows no maintenance key".to_owned())?;
            Credentials::MaintenanceKey(
                key.parse::<MaintenanceKey>()
                    .map_err(|e| format!("maintenance key {key:?} on the console: {e}"))?,
            )
        }
    };
    NodeClient::new(addr, ServerTrust::Fingerprint(fingerprint), credentials)
        .map(|c| {
            c.with_connect_timeout(Duration::from_secs(5))
                .with_io_timeout(Duration::from_secs(20))
        })
        .map_err(|e| e.to_string())
}

/// `GET /v1/status` with the admin certificate, else the maintenance key.
pub fn status(node: &LabNode, admin: &AdminCredentials) -> Result<NodeStatus, String> {
    let admin_error = match client(node, admin, Auth::Admin)
        .and_then(|c| c.status().map_err(|e| e.to_string()))
    {
        Ok(status) => return Ok(status),
        Err(e) => e,
    };
    if node.maintenance_key().is_some()
        && let Ok(status) = client(node, admin, Auth::MaintenanceKey)
            .and_then(|c| c.status().map_err(|e| e.to_string()))
    {
        return Ok(status);
    }
    Err(admin_error)
}

/// The node finished its boot work (state `running`: config applied,
/// bundled images imported) and containerd runs and is ready.
pub fn is_ready(status: &NodeStatus) -> bool {
    status.state == cairn_node_api::NodeState::Running
        && status
            .services
            .get("containerd")
            .is_some_and(|s| s.state == ServiceState::Running && s.ready)
}

/// One line saying what a status shows, e.g.
/// `running; containerd running (ready), kubelet waiting`.
pub fn describe(status: &NodeStatus) -> String {
    let state = serde_json::to_value(status.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let services: Vec<String> = status
        .services
        .iter()
        .map(|(name, s)| {
            let state = serde_json::to_value(s.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("{name} {state}{}", if s.ready { " (ready)" } else { "" })
        })
        .collect();
    let mut text = state;
    if !services.is_empty() {
        text.push_str("; ");
        text.push_str(&services.join(", "));
    }
    if !status.problems.is_empty() {
        text.push_str("; problems: ");
        text.push_str(&status.problems.join(" | "));
    }
    text
}

/// Waits until every node in `nodes` is ready. `running(name)` says
/// whether a node's VM still runs (a stopped node fails at once).
/// Returns each node's time to ready, measured from `since(name)`.
pub fn wait_all(
    nodes: &[LabNode],
    admin: &AdminCredentials,
    timeout: Duration,
    mut running: impl FnMut(&str) -> bool,
    since: impl Fn(&str) -> Instant,
) -> Result<Vec<(String, Duration)>, LabError> {
    let deadline = Instant::now() + timeout;
    let mut ready: Vec<(String, Duration)> = Vec::new();
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    loop {
        for node in nodes {
            if ready.iter().any(|(name, _)| *name == node.name) {
                continue;
            }
            if !running(&node.name) {
                return Err(not_ready(
                    &[node],
                    &seen,
                    "its VM is not running (it powered off or was killed)",
                ));
            }
            match status(node, admin) {
                Ok(status) if is_ready(&status) => {
                    ready.push((node.name.clone(), since(&node.name).elapsed()));
                }
                Ok(status) => {
                    seen.insert(node.name.clone(), describe(&status));
                }
                Err(e) => {
                    seen.insert(node.name.clone(), format!("not answering: {e}"));
                }
            }
        }
        if ready.len() == nodes.len() {
            ready.sort_by_key(|(name, _)| nodes.iter().position(|n| n.name == *name));
            return Ok(ready);
        }
        if Instant::now() >= deadline {
            let pending: Vec<&LabNode> = nodes
                .iter()
                .filter(|n| !ready.iter().any(|(name, _)| *name == n.name))
                .collect();
            return Err(not_ready(
                &pending,
                &seen,
                &format!("not ready within {}s", timeout.as_secs()),
            ));
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

fn not_ready(
    nodes: &[&LabNode],
    seen: &std::collections::BTreeMap<String, String>,
    why: &str,
) -> LabError {
    let mut text = String::new();
    for node in nodes {
        text.push_str(&format!(
            "{} ({}): {why} (containerd must be running and ready); last seen: {}\nits console ({}) ends with:\n{}\n",
            node.name,
            node.ip,
            seen.get(&node.name).map_or("nothing yet", String::as_str),
            node.serial_log.display(),
            node.console_tail(40)
        ));
    }
    LabError::NotReady(text.trim_end().to_owned())
}

impl Lab {
    /// A node API client for `node` (see [`client`]).
    pub fn client(&self, node: &str, auth: Auth) -> Result<NodeClient, LabError> {
        let node = self.node(node)?;
        client(node, &self.admin, auth).map_err(LabError::NotReady)
    }

    /// `GET /v1/status` of `node` (admin certificate, else maintenance key).
    pub fn status(&self, node: &str) -> Result<NodeStatus, LabError> {
        status(self.node(node)?, &self.admin).map_err(LabError::NotReady)
    }

    /// Waits until every node is ready; returns each node's time from its
    /// start to ready.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Vec<(String, Duration)>, LabError> {
        let names: Vec<String> = self.nodes().iter().map(|n| n.name.clone()).collect();
        self.wait_nodes_ready(&names, timeout)
    }

    /// Waits until the named nodes are ready.
    pub fn wait_nodes_ready(
        &mut self,
        names: &[String],
        timeout: Duration,
    ) -> Result<Vec<(String, Duration)>, LabError> {
        let nodes: Vec<LabNode> = names
            .iter()
            .map(|name| self.node(name).cloned())
            .collect::<Result<_, _>>()?;
        let admin = self.admin.clone();
        let started = self.started.clone();
        let now = Instant::now();
        wait_all(
            &nodes,
            &admin,
            timeout,
            |name| self.is_running(name).unwrap_or(false),
            |name| started.get(name).copied().unwrap_or(now),
        )
    }

    /// Polls `node`'s status until `done` says so; the error carries the
    /// last status seen and the console tail.
    pub fn wait_status(
        &mut self,
        node: &str,
        timeout: Duration,
        mut done: impl FnMut(&NodeStatus) -> bool,
    ) -> Result<NodeStatus, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let lab_node = self.node(node)?.clone();
            let last = match status(&lab_node, &self.admin) {
                Ok(status) if done(&status) => return Ok(status),
                Ok(status) => describe(&status),
                Err(e) => format!("not answering: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(LabError::NotReady(format!(
                    "{node}: the awaited status did not come within {}s; last seen: {last}\nits console ends with:\n{}",
                    timeout.as_secs(),
                    lab_node.console_tail(40)
                )));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Waits for the nodes of a lab run by another process (its daemon),
/// from state.json: ready times count from now.
pub fn wait_state_ready(
    state: &LabState,
    admin: &AdminCredentials,
    timeout: Duration,
) -> Result<Vec<(String, Duration)>, LabError> {
    let now = Instant::now();
    wait_all(
        &state.nodes,
        admin,
        timeout,
        |name| state.is_running(name),
        |_| now,
    )
}
