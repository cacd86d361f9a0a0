//! How fast a node boots, and how small its agent stays.
//!
//! `cargo bench -p cairn-qemu-tests --bench node_boot [-- RUNS]` builds the
//! default image (cached), boots one node in a lab RUNS times (default 3;
//! direct kernel boot of a diskless node, config from a `cairn.config=`
//! URL, the accelerator the lab detects — TCG on hosts where KVM does not
//! work) and prints, from
//! the moment QEMU starts, when the console showed node-agent as PID 1, the
//! network up and containerd ready, plus node-agent's resident memory once
//! the node runs. Figures are measured on the host clock by following the
//! serial log; the guest's own timings (since its kernel started) are
//! printed next to them.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use cairn_node_api::NodeState;
use cairn_qemu_tests::Accel;
use cairn_qemu_tests::lab::{API_PORT, Lab, LabSpec};

const MILESTONES: [(&str, &str); 3] = [
    ("node-agent PID 1", "cairn node-agent: PID 1 on"),
    ("network up", "cairn node-agent: network up on"),
    ("containerd ready", "cairn node-agent: containerd is ready"),
];

struct Run {
    host: Vec<Duration>,
    guest_ms: [Option<u64>; 3],
    rss_kib: Option<u64>,
}

fn one_run(lab: &mut Lab) -> Result<Run, String> {
    let log = lab
        .node("node-1")
        .map_err(|e| e.to_string())?
        .serial_log
        .clone();
    let _ = std::fs::write(&log, b"");
    let started = Instant::now();
    lab.start("node-1").map_err(|e| e.to_string())?;
    let mut host = Vec::new();
    let deadline = started + Duration::from_secs(900);
    for (name, needle) in MILESTONES {
        loop {
            let text =
                String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
            if text.contains(needle) {
                host.push(started.elapsed());
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("no {name:?} line within 900 s; console:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let status = lab
        .wait_status("node-1", Duration::from_secs(600), |s| {
            s.state == NodeState::Running
        })
        .map_err(|e| e.to_string())?;
    lab.kill("node-1").map_err(|e| e.to_string())?;
    Ok(Run {
        host,
        guest_ms: [
            status.boot.pid1_ms,
            status.boot.network_ms,
            status.boot.containerd_ms,
        ],
        rss_kib: status.rss_kib,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3)
        .max(1);
    let image = common::image();
    let accel = Accel::detect(&image.join("vmlinuz"));
    let mut spec = LabSpec::new("bench", image, 1);
    spec.start_nodes = false;
    spec.forward_ports = vec![API_PORT];
    spec.memory_mib = 1536;
    // Diskless, so that every run boots the same way (config from the URL,
    // nothing kept from the run before).
    spec.nodes[0].disk = false;
    let mut lab = match Lab::up(spec) {
        Ok(lab) => lab,
        Err(error) => {
            eprintln!("lab: {error}");
            std::process::exit(1);
        }
    };
    println!("node boot, {runs} runs, accelerator {accel:?}, 1 vCPU, 1536 MiB");
    let mut results = Vec::new();
    for run in 1..=runs {
        match one_run(&mut lab) {
            Ok(result) => {
                let host: Vec<String> = result
                    .host
                    .iter()
                    .map(|d| format!("{:.2} s", d.as_secs_f64()))
                    .collect();
                println!(
                    "run {run}: PID 1 {}, network {}, containerd {}; RSS {} KiB",
                    host[0],
                    host[1],
                    host[2],
                    result.rss_kib.unwrap_or(0)
                );
                results.push(result);
            }
            Err(error) => {
                eprintln!("run {run}: {error}");
                std::process::exit(1);
            }
        }
    }
    println!(
        "\nmedian of {} runs (host clock from QEMU start | guest clock from kernel start):",
        results.len()
    );
    for (index, (name, _)) in MILESTONES.iter().enumerate() {
        let host = median(
            results
                .iter()
                .map(|r| r.host[index].as_secs_f64())
                .collect(),
        );
        let guest = median(
            results
                .iter()
                .filter_map(|r| r.guest_ms[index])
                .map(|ms| ms as f64 / 1000.0)
                .collect(),
        );
        println!("  {name:<18} {host:>6.2} s | {guest:>6.2} s");
    }
    let rss = median(
        results
            .iter()
            .filter_map(|r| r.rss_kib)
            .map(|k| k as f64)
            .collect(),
    );
    println!(
        "  node-agent RSS     {:>6.0} KiB ({:.1} MiB)",
        rss,
        rss / 1024.0
    );
    if let Err(error) = lab.down() {
        eprintln!("lab down: {error}");
    }
}
