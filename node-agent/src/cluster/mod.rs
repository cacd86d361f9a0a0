//! Forming or joining the cluster, after the host is configured.
//!
//! The machine config decides ([`MachineConfig::cluster_action`]):
//!
//! - **init** (a control-plane node without `[join]`), kubeadm's phases
//!   in order: `certs` + `kubeconfig` (the PKI on STATE, reused on later
//!   boots), `etcd` (a local TLS member), `control-plane` (apiserver,
//!   controller manager and, with a VIP, the VIP manager as supervised
//!   services), `wait-control-plane`, `upload-config`, `cluster-info`,
//!   `bootstrap-token`, then `register`;
//! - **join**: token discovery of `cluster-info` (CA pin and JWS checked
//!   before any credential leaves the node), TLS bootstrap of the node's
//!   client certificate through a CSR, then `register`;
//! - **wait**: a worker without `[join]` stays up for `bootstrap join`.
//!
//! `register` creates the Node object (addresses, capacity, labels, role
//! taint) and a heartbeat thread keeps its Lease and Ready condition
//! current; Ready follows containerd. Every phase is idempotent, so a
//! reboot runs the same sequence and finds most of it done. Failures are
//! retried with backoff and shown in the node API status (`cluster`).
//!
//! [`plan`] is the pure part (PKI spec and command lines); [`phases`] talks
//! to the apiserver through `cairn_cluster`.

pub mod control_plane;
pub mod etcd;
pub mod host;
pub mod lb;
pub mod phases;
pub mod plan;
pub mod preflight;
pub mod reconfigure;
pub mod reset;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_config::{ClusterAction, InitPhase, MachineConfig};
use cairn_pki::NodeName;

use crate::services::readiness::Readiness;
use crate::services::supervisor::Supervisor;
use crate::services::{RestartPolicy, ServiceSpec};
use crate::system::agent::Agent;
use crate::system::console::Console;
use plan::{CommandLine, ControlPlanePlan, EtcdClusterState};

/// How long etcd and the apiserver may take to come up under emulation.
const SERVICE_DEADLINE: Duration = Duration::from_secs(300);

/// What the cluster thread needs from PID 1.
#[derive(Debug, Clone)]
pub struct Context {
    pub console: Arc<Console>,
    pub agent: Arc<Agent>,
    pub supervisor: Arc<Supervisor>,
    pub config: MachineConfig,
    pub node_name: NodeName,
    /// The node's address: etcd and the apiserver advertise it, the Node
    /// object lists it.
    pub address: IpAddr,
}

impl Context {
    fn say(&self, line: &str) {
        self.console.line(&format!("cluster: {line}"));
    }

    fn phase(&self, phase: &str) {
        self.say(&format!("[{phase}]"));
        self.agent.update_cluster(|status| {
            phase.clone_into(&mut status.phase);
            status.error = None;
        });
    }

    /// Whether `phase` runs; a phase in `cluster.skip-phases` is announced
    /// as skipped instead.
    pub(crate) fn runs(&self, phase: InitPhase) -> bool {
        let runs = self.config.cluster.as_ref().is_none_or(|c| c.runs(phase));
        if !runs {
            self.say(&format!("[{phase}] skipped (cluster.skip-phases)"));
        }
        runs
    }

    fn failed(&self, phase: &str, error: &str) {
        self.say(&format!("[{phase}] failed: {error}"));
        self.agent.update_cluster(|status| {
            phase.clone_into(&mut status.phase);
            status.error = Some(error.to_owned());
        });
    }
}

/// Starts forming or joining in a thread of its own; PID 1 goes on.
pub fn start(context: Context) {
    let action = context.config.cluster_action();
    let name = match action {
        ClusterAction::Init => "init",
        ClusterAction::Join => "join",
        ClusterAction::WaitForJoin => "wait",
    };
    context.agent.update_cluster(|status| {
        name.clone_into(&mut status.action);
    });
    if action == ClusterAction::WaitForJoin {
        context.phase("waiting for a [join] config");
        return;
    }
    let console = Arc::clone(&context.console);
    let spawned = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || match action {
            ClusterAction::Init => init(&context),
            ClusterAction::Join
                if context
                    .config
                    .join
                    .as_ref()
                    .is_some_and(|j| j.control_plane) =>
            {
                control_plane::join(&context)
            }
            ClusterAction::Join => phases::join(&context),
            ClusterAction::WaitForJoin => {}
        });
    if let Err(error) = spawned {
        console.line(&format!("cluster: thread not started: {error}"));
    }
}

/// Runs `step` until it succeeds, backing off from 2 s to 30 s; the
/// error of each failure is shown under `phase`.
pub(crate) fn retry<T>(
    context: &Context,
    phase: &str,
    mut step: impl FnMut() -> Result<T, String>,
) -> T {
    let mut pause = Duration::from_secs(2);
    loop {
        match step() {
            Ok(value) => return value,
            Err(error) => {
                context.failed(phase, &error);
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn init(context: &Context) {
    let plan = ControlPlanePlan::new(&context.config, context.node_name.clone(), context.address);
    context.agent.update_cluster(|status| {
        status.endpoint = Some(plan.endpoint_url());
    });

    preflight(context);
    if context.runs(InitPhase::Certs) {
        context.phase("certs");
        retry(context, "certs", || certs(context, &plan));
    } else {
        retry(context, "certs", provided_pki_is_present);
    }

    context.phase("etcd");
    let etcd = plan.etcd(&[plan.etcd_member()], EtcdClusterState::New);
    add_service(
        context,
        service("etcd", etcd, Vec::new(), tcp(plan::ETCD_CLIENT_PORT)),
    );
    wait_ready(context, "etcd");

    start_control_plane_services(context, &plan);
    phases::after_control_plane(context, &plan);
}

/// `control-plane`: the apiserver, the controller manager and, with a
/// VIP, the VIP manager; waits for the apiserver.
fn start_control_plane_services(context: &Context, plan: &ControlPlanePlan) {
    context.phase("control-plane");
    add_service(
        context,
        service(
            "kube-apiserver",
            plan.apiserver(),
            vec!["etcd".into()],
            tcp(plan.pki.bind_port),
        ),
    );
    add_service(
        context,
        service(
            "kube-controller-manager",
            plan.controller_manager(),
            vec!["kube-apiserver".into()],
            Readiness::Immediate,
        ),
    );
    if let Some(vip) = plan.vip_manager().filter(|_| context.runs(InitPhase::Vip)) {
        add_service(
            context,
            service(
                "vip",
                vip,
                vec!["kube-apiserver".into()],
                Readiness::Immediate,
            ),
        );
        watch_vip(context);
    }
    wait_ready(context, "kube-apiserver");
}

/// How often the VIP manager's status file is read.
const VIP_WATCH_INTERVAL: Duration = Duration::from_millis(50);

/// Mirrors `control-plane vip`'s status file into the node status and
/// prints every change of holder on the console, where it is seen even
/// when the node is cut off from the network.
fn watch_vip(outer: &Context) {
    let context = outer.clone();
    let spawned = std::thread::Builder::new()
        .name("vip-watch".into())
        .spawn(move || {
            let mut holding = false;
            loop {
                let status = std::fs::read_to_string(plan::VIP_STATUS_FILE)
                    .ok()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
                let holder = status
                    .as_ref()
                    .and_then(|v| v.get("holder")?.as_bool())
                    .unwrap_or(false);
                if holder != holding {
                    holding = holder;
                    let address = status
                        .as_ref()
                        .and_then(|v| v.get("address")?.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    context.console.line(&format!(
                        "vip: {} {address}",
                        if holder { "holding" } else { "released" }
                    ));
                    context.agent.update_cluster(|s| s.vip_holder = holder);
                }
                std::thread::sleep(VIP_WATCH_INTERVAL);
            }
        });
    if let Err(error) = spawned {
        outer.say(&format!("VIP watcher not started: {error}"));
    }
}

/// `preflight` before a control plane starts anything; errors are retried
/// (a busy port may free up, NTP may fix the clock), warnings printed.
fn preflight(context: &Context) {
    if !context.runs(InitPhase::Preflight) {
        return;
    }
    context.phase("preflight");
    let binaries = [plan::ETCD_BINARY, plan::CONTROL_PLANE_BINARY];
    retry(context, "preflight", || {
        let findings = preflight::check(&preflight::LinuxHost, &binaries);
        for warning in &findings.warnings {
            context.say(&format!("[preflight] warning: {warning}"));
        }
        if findings.errors.is_empty() {
            Ok(())
        } else {
            Err(findings.errors.join("; "))
        }
    });
}

/// Generates (or completes) the PKI under `/etc/kubernetes`, which points
/// at STATE so it survives reboots.
fn certs(context: &Context, plan: &ControlPlanePlan) -> Result<(), String> {
    link_kubernetes_dir()?;
    let report = cairn_pki::generate(&plan.pki, &plan.paths, time::OffsetDateTime::now_utc())
        .map_err(|e| e.to_string())?;
    for line in report.to_string().lines() {
        context.say(line);
    }
    Ok(())
}

/// Files the later phases read, which must be on STATE already when
/// `certs` and `kubeconfig` are skipped.
const PROVIDED_PKI_FILES: [&str; 8] = [
    "pki/ca.crt",
    "pki/apiserver.crt",
    "pki/apiserver-etcd-client.crt",
    "pki/etcd/ca.crt",
    "pki/etcd/server.crt",
    "pki/sa.key",
    "admin.conf",
    "controller-manager.conf",
];

/// With `certs` and `kubeconfig` skipped the PKI is provided, not made:
/// say which file is missing rather than fail later in etcd or the
/// apiserver.
fn provided_pki_is_present() -> Result<(), String> {
    link_kubernetes_dir()?;
    let dir = Path::new(plan::KUBERNETES_DIR);
    let missing: Vec<String> = PROVIDED_PKI_FILES
        .iter()
        .map(|file| dir.join(file))
        .filter(|path| !path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "certs and kubeconfig are skipped but the PKI is incomplete: missing {}; put it on STATE under {} or stop skipping them",
            missing.join(", "),
            plan::KUBERNETES_STATE_DIR
        ))
    }
}

/// `/etc/kubernetes` → `/var/lib/cairn/kubernetes`: `/etc` is a tmpfs
/// overlay, STATE is what persists.
pub(crate) fn link_kubernetes_dir() -> Result<(), String> {
    let target = Path::new(plan::KUBERNETES_STATE_DIR);
    std::fs::create_dir_all(target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    let link = Path::new(plan::KUBERNETES_DIR);
    match std::fs::read_link(link) {
        Ok(existing) if existing == target => return Ok(()),
        Ok(_) => {
            std::fs::remove_file(link).map_err(|e| format!("replacing {}: {e}", link.display()))?
        }
        Err(_) if link.exists() => {
            return Err(format!(
                "{} exists and is not a link to {}",
                link.display(),
                target.display()
            ));
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| format!("linking {} to {}: {e}", link.display(), target.display()))
}

fn tcp(port: u16) -> Readiness {
    Readiness::TcpConnect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

fn service(
    name: &str,
    line: CommandLine,
    depends_on: Vec<String>,
    readiness: Readiness,
) -> ServiceSpec {
    let mut spec = ServiceSpec::new(name, line.program);
    spec.args = line.args;
    spec.depends_on = depends_on;
    spec.readiness = readiness;
    spec.ready_timeout = SERVICE_DEADLINE;
    spec.restart = RestartPolicy::Always;
    spec.stop_timeout = Duration::from_secs(15);
    spec
}

fn add_service(context: &Context, spec: ServiceSpec) {
    let name = spec.name.clone();
    match context.supervisor.add(spec) {
        Ok(()) => context.say(&format!("{name} started")),
        // Already supervised (an earlier pass of this thread): fine.
        Err(crate::services::ServiceError::Duplicate(_)) => {}
        Err(error) => context.failed("services", &format!("{name} not supervised: {error}")),
    }
}

fn wait_ready(context: &Context, name: &str) {
    let started = Instant::now();
    retry(context, name, || {
        context
            .supervisor
            .wait_ready(name, SERVICE_DEADLINE)
            .map_err(|e| format!("{name} is not ready: {e}"))
    });
    context.say(&format!(
        "{name} is ready ({:.1} s)",
        started.elapsed().as_secs_f64()
    ));
}
