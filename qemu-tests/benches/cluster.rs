//! How long clusters take to form, and how long the API is away when the
//! VIP holder dies.
//!
//! `cargo bench -p cairn-qemu-tests --bench cluster` builds the default
//! image (cached) and, with the lab API the cluster tests use:
//!
//! 1. forms a 1-control-plane cluster (lab `bench-1cp`, one node) and a
//!    3-control-plane cluster without workers behind the VIP (lab
//!    `bench-3cp`), timing each from `Lab::up` until `form_cluster`
//!    returned (every node a member and listed by the API), with each
//!    member's time;
//! 2. on the 3-control-plane cluster, kills the VIP holder N times
//!    (`CAIRN_BENCH_KILLS`, default 10): the holder is the node whose
//!    status says `vip_holder`; the failover time runs from the kill until
//!    `GET /readyz` answers 200 through the lab's VIP forward (the admin
//!    kubeconfig, 1 s connect and 3 s I/O timeouts, polled every 50 ms).
//!    The killed node is then booted again and must be a member with every
//!    service ready before the next kill, so each kill starts from three
//!    healthy control planes;
//! 3. prints a summary block with units and the command.
//!
//! Figures are host wall-clock times under whatever accelerator the lab
//! detects (TCG where KVM does not work), one vCPU per node, and depend on
//! what else runs on the host. Nothing here asserts a speed. Labs are
//! removed at the end, also when a step fails (`Lab` tears down on drop).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_cluster::client::KubeClient;
use cairn_config::NodeRole;
use cairn_qemu_tests::Accel;
use cairn_qemu_tests::lab::{Lab, LabSpec};

/// Generous: forming three control planes under TCG on a shared host
/// takes many minutes.
const FORM_TIMEOUT: Duration = Duration::from_secs(2400);
/// Longest wait for the API through the VIP after a kill.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for a restarted node to be a healthy member again.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(1200);
const POLL: Duration = Duration::from_millis(50);
const MEMORY_MIB: u32 = 1536;

/// Time to form one cluster.
struct Formation {
    label: &'static str,
    lab_up: Duration,
    form: Duration,
    /// Node → time from the start of `form_cluster` until it was a member.
    members: Vec<(String, Duration)>,
    all_listed: Duration,
}

impl Formation {
    fn total(&self) -> Duration {
        self.lab_up + self.form
    }

    fn print(&self) {
        println!(
            "{}: formed in {:.1} s (Lab::up {:.1} s + form_cluster {:.1} s; API listed every node at {:.1} s of form_cluster)",
            self.label,
            self.total().as_secs_f64(),
            self.lab_up.as_secs_f64(),
            self.form.as_secs_f64(),
            self.all_listed.as_secs_f64()
        );
        for (node, at) in &self.members {
            println!(
                "  {node}: member {:.1} s after Lab::up started ({:.1} s into form_cluster)",
                (self.lab_up + *at).as_secs_f64(),
                at.as_secs_f64()
            );
        }
    }
}

/// One kill of the VIP holder.
struct Failover {
    killed: String,
    /// Kill → first `/readyz` 200 through the VIP.
    api_back: Duration,
    /// The node that reported holding the VIP afterwards.
    new_holder: Option<String>,
    /// Restart → member with every service ready.
    rejoin: Duration,
}

fn consoles(lab: &Lab) -> String {
    lab.nodes()
        .iter()
        .map(|n| format!("--- {} ---\n{}", n.name, n.console_tail(30)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Boots a lab that forms a cluster and waits until it has; the lab is
/// returned for further use (and dropped, so removed, on error).
fn form(
    label: &'static str,
    name: &str,
    image: &Path,
    control_planes: usize,
    vip: bool,
) -> Result<(Lab, Formation, std::path::PathBuf), String> {
    let mut spec = LabSpec::with_cluster(name, image, control_planes, 0, vip);
    spec.memory_mib = MEMORY_MIB;
    let started = Instant::now();
    let mut lab = Lab::up(spec).map_err(|e| format!("{label}: lab up: {e}"))?;
    let lab_up = started.elapsed();
    let form_started = Instant::now();
    let formed = lab
        .form_cluster(FORM_TIMEOUT)
        .map_err(|e| format!("{label}: forming the cluster: {e}\n{}", consoles(&lab)))?;
    let formation = Formation {
        label,
        lab_up,
        form: form_started.elapsed(),
        members: formed.members.clone(),
        all_listed: formed.all_listed,
    };
    Ok((lab, formation, formed.kubeconfig))
}

/// Running control planes whose status says they hold the VIP.
fn vip_holders(lab: &Lab) -> Vec<String> {
    lab.nodes()
        .iter()
        .filter(|n| n.role == NodeRole::ControlPlane)
        .filter(|n| lab.state().is_running(&n.name))
        .filter(|n| {
            lab.status(&n.name)
                .ok()
                .and_then(|s| s.cluster)
                .is_some_and(|c| c.vip_holder)
        })
        .map(|n| n.name.clone())
        .collect()
}

fn wait_single_holder(lab: &Lab, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let holders = vip_holders(lab);
        if let [holder] = holders.as_slice() {
            return Ok(holder.clone());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "expected exactly one VIP holder within {} s, saw {holders:?}\n{}",
                timeout.as_secs(),
                consoles(lab)
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Polls `GET /readyz` through the VIP forward until it answers 200;
/// returns the time from `since`.
fn wait_readyz(client: &KubeClient, since: Instant, timeout: Duration) -> Result<Duration, String> {
    let mut last: String;
    loop {
        match client.request("GET", "/readyz", None) {
            Ok((200, _)) => return Ok(since.elapsed()),
            Ok((status, body)) => {
                last = format!("{status}: {}", String::from_utf8_lossy(&body));
            }
            Err(e) => last = e.to_string(),
        }
        if since.elapsed() > timeout {
            return Err(format!(
                "the API did not answer /readyz through the VIP within {} s; last: {last}",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
}

fn vip_failovers(lab: &mut Lab, kubeconfig: &Path, kills: usize) -> Result<Vec<Failover>, String> {
    let client = KubeClient::from_kubeconfig(kubeconfig)
        .map_err(|e| format!("admin client from {}: {e}", kubeconfig.display()))?
        .with_connect_timeout(Duration::from_secs(1))
        .with_io_timeout(Duration::from_secs(3));
    let mut results = Vec::new();
    for kill in 1..=kills {
        let holder = wait_single_holder(lab, Duration::from_secs(300))?;
        // Start from an answering API so the figure is the failover alone.
        wait_readyz(&client, Instant::now(), FAILOVER_TIMEOUT)
            .map_err(|e| format!("before kill {kill}: {e}"))?;
        let killed_at = Instant::now();
        lab.kill(&holder)
            .map_err(|e| format!("killing {holder}: {e}"))?;
        let api_back = wait_readyz(&client, killed_at, FAILOVER_TIMEOUT)
            .map_err(|e| format!("kill {kill} ({holder}): {e}\n{}", consoles(lab)))?;
        let new_holder = vip_holders(lab).into_iter().next();

        let restarted_at = Instant::now();
        lab.start(&holder)
            .map_err(|e| format!("restarting {holder}: {e}"))?;
        lab.wait_status(&holder, REJOIN_TIMEOUT, |s| {
            s.cluster.as_ref().is_some_and(|c| c.member)
                && !s.services.is_empty()
                && s.services.values().all(|service| service.ready)
        })
        .map_err(|e| {
            format!(
                "{holder} did not rejoin after kill {kill}: {e}\n{}",
                consoles(lab)
            )
        })?;
        let rejoin = restarted_at.elapsed();
        println!(
            "kill {kill}/{kills}: {holder} killed; API answered through the VIP after {:.2} s (VIP now on {}); {holder} a healthy member again {:.1} s after restart",
            api_back.as_secs_f64(),
            new_holder.as_deref().unwrap_or("?"),
            rejoin.as_secs_f64()
        );
        results.push(Failover {
            killed: holder,
            api_back,
            new_holder,
            rejoin,
        });
    }
    Ok(results)
}

/// `(min, median, max)` in seconds.
fn spread(values: impl Iterator<Item = Duration>) -> Option<(f64, f64, f64)> {
    let mut seconds: Vec<f64> = values.map(|d| d.as_secs_f64()).collect();
    if seconds.is_empty() {
        return None;
    }
    seconds.sort_by(f64::total_cmp);
    let median = if seconds.len() % 2 == 1 {
        seconds[seconds.len() / 2]
    } else {
        (seconds[seconds.len() / 2 - 1] + seconds[seconds.len() / 2]) / 2.0
    };
    Some((seconds[0], median, seconds[seconds.len() - 1]))
}

struct Report {
    formations: Vec<Formation>,
    failovers: Vec<Failover>,
}

fn run(image: &Path, kills: usize, report: &mut Report) -> Result<(), String> {
    println!("\n== 1 control plane (lab bench-1cp) ==");
    let (lab, formation, _) = form("1 control plane", "bench-1cp", image, 1, false)?;
    formation.print();
    report.formations.push(formation);
    lab.down().map_err(|e| format!("bench-1cp down: {e}"))?;

    println!("\n== 3 control planes + VIP, no workers (lab bench-3cp) ==");
    let (mut lab, formation, kubeconfig) =
        form("3 control planes + VIP", "bench-3cp", image, 3, true)?;
    formation.print();
    report.formations.push(formation);

    println!("\n== VIP failover, {kills} kills of the holder ==");
    report.failovers = vip_failovers(&mut lab, &kubeconfig, kills)?;
    lab.down().map_err(|e| format!("bench-3cp down: {e}"))?;
    Ok(())
}

fn main() {
    let kills: usize = match std::env::var("CAIRN_BENCH_KILLS") {
        Ok(text) => match text.trim().parse() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("CAIRN_BENCH_KILLS={text:?} is not a number of kills");
                std::process::exit(2);
            }
        },
        Err(_) => 10,
    };
    let image = common::image();
    let accel = Accel::detect(&image.join("vmlinuz"));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cluster benchmark: accelerator {accel:?}, host {cpus} CPUs, each node 1 vCPU and {MEMORY_MIB} MiB; \
         figures are wall-clock and include whatever else runs on the host"
    );
    let mut report = Report {
        formations: Vec::new(),
        failovers: Vec::new(),
    };
    let outcome = run(image, kills, &mut report);

    println!("\n===== summary =====");
    println!("command: CAIRN_BENCH_KILLS={kills} cargo bench -p cairn-qemu-tests --bench cluster");
    println!(
        "host: {cpus} CPUs, accelerator {accel:?}; nodes: 1 vCPU, {MEMORY_MIB} MiB each (other labs on the host slow everything down)"
    );
    for formation in &report.formations {
        let members = formation
            .members
            .iter()
            .map(|(n, at)| format!("{n} {:.1} s", (formation.lab_up + *at).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "formation, {:<24} {:>7.1} s from Lab::up to form_cluster returning (members at: {members})",
            formation.label,
            formation.total().as_secs_f64()
        );
    }
    if let Some((min, median, max)) = spread(report.failovers.iter().map(|f| f.api_back)) {
        println!(
            "VIP failover (kill holder → /readyz 200 via VIP), {} kills: min {min:.2} s, median {median:.2} s, max {max:.2} s",
            report.failovers.len()
        );
    }
    if let Some((min, median, max)) = spread(report.failovers.iter().map(|f| f.rejoin)) {
        println!(
            "rejoin (restart → healthy member), {} restarts: min {min:.1} s, median {median:.1} s, max {max:.1} s",
            report.failovers.len()
        );
    }
    for (index, failover) in report.failovers.iter().enumerate() {
        println!(
            "  kill {}: {} → VIP on {} after {:.2} s",
            index + 1,
            failover.killed,
            failover.new_holder.as_deref().unwrap_or("?"),
            failover.api_back.as_secs_f64()
        );
    }
    if let Err(error) = outcome {
        println!("incomplete: {}", error.lines().next().unwrap_or_default());
        eprintln!("\n{error}");
        std::process::exit(1);
    }
}
