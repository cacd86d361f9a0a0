//! Node scenarios in the QEMU lab: the default image booted the ways users
//! boot it, configured from each config source, checked through the node
//! API only (as a user would), and torn down without a trace.
//!
//! The scenarios share the image built once by `common::image()` and run
//! one at a time: under TCG two guests on two cores would only make each
//! other slow. Deadlines are minutes, never fixed sleeps.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cairn_node_api::{NodeState, NodeStatus, RunContainerRequest, ServiceState};
use cairn_qemu_tests::lab::ready::Auth;
use cairn_qemu_tests::lab::{API_PORT, BootMode, Lab, LabSpec, netns_name};

/// Boot to containerd ready, under TCG on a shared machine.
const READY: Duration = Duration::from_secs(900);

/// One scenario at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn spec(name: &str, boot: BootMode) -> LabSpec {
    let mut spec = LabSpec::new(name, common::image(), 1);
    spec.boot = boot;
    spec.memory_mib = 1536;
    spec.forward_ports = vec![API_PORT];
    spec
}

fn up(spec: LabSpec) -> Lab {
    let name = spec.name.clone();
    Lab::up(spec).unwrap_or_else(|e| panic!("lab {name}: up failed: {e}"))
}

/// Waits until node-1 runs containerd and has finished its boot work.
fn ready(lab: &mut Lab) -> NodeStatus {
    if let Err(error) = lab.wait_ready(READY) {
        panic!("{error}");
    }
    lab.wait_status("node-1", READY, |s| s.state == NodeState::Running)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn read_text(lab: &Lab, path: &str) -> String {
    let client = lab
        .client("node-1", Auth::Admin)
        .unwrap_or_else(|e| panic!("{e}"));
    let bytes = client
        .read(path)
        .unwrap_or_else(|e| panic!("reading {path} through the node API: {e}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn console(lab: &Lab) -> String {
    lab.node("node-1")
        .map(|node| node.console_tail(400))
        .unwrap_or_default()
}

/// Tears the lab down and checks that nothing of it is left: namespace
/// (and with it the bridge and taps), processes, files.
fn down_and_check_clean(lab: Lab) {
    let name = lab.name().to_owned();
    let dir = lab.dir().to_path_buf();
    let netns = lab.netns().to_owned();
    lab.down()
        .unwrap_or_else(|e| panic!("lab {name}: down failed: {e}"));
    assert_no_leftovers(&name, &netns, &dir);
}

fn assert_no_leftovers(name: &str, netns: &str, dir: &Path) {
    let namespaces = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    assert!(
        !namespaces.split_whitespace().any(|word| word == netns),
        "lab {name}: namespace {netns} is still there:\n{namespaces}"
    );
    assert!(
        !dir.exists(),
        "lab {name}: {} is still there",
        dir.display()
    );
    let needle = dir.to_string_lossy().into_owned();
    let mut strays = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) || cmdline.contains(&format!("netns exec {netns} ")) {
                strays.push(format!("{pid}: {cmdline}"));
            }
        }
    }
    assert!(
        strays.is_empty(),
        "lab {name}: processes outlived `down`:\n{}",
        strays.join("\n")
    );
    let links = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains(&format!("{}-", netns_name(name))),
        "lab {name}: host links named after the lab remain:\n{links}"
    );
}

#[test]
fn config_url_node_runs_containerd_and_a_bundled_container() {
    let _one = serial();
    let mut lab = up(spec("url", BootMode::Kernel));
    let status = ready(&mut lab);
    assert_eq!(status.state, NodeState::Running, "{status:#?}");
    let source = status.config_source.clone().unwrap_or_default();
    assert!(
        source.starts_with("cairn.config=http://"),
        "expected the config from the cairn.config= URL, got {source:?}"
    );
    let containerd = &status.services["containerd"];
    assert!(
        containerd.state == ServiceState::Running && containerd.ready,
        "{containerd:?}"
    );
    assert!(
        status.problems.is_empty(),
        "the node reports problems: {:#?}\n{}",
        status.problems,
        console(&lab)
    );

    // Modules and sysctls, as the kernel reports them.
    let modules = read_text(&lab, "/proc/modules");
    for module in ["overlay", "br_netfilter", "bridge", "virtio_net"] {
        assert!(
            modules
                .lines()
                .any(|line| line.starts_with(&format!("{module} "))),
            "{module} is not loaded; /proc/modules:\n{modules}"
        );
    }
    for (key, expected) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/bridge/bridge-nf-call-iptables", "1"),
        ("net/bridge/bridge-nf-call-ip6tables", "1"),
    ] {
        let value = read_text(&lab, &format!("/proc/sys/{key}"));
        assert_eq!(value.trim(), expected, "sysctl {key}");
    }
    // The root is read-only: node-agent's write attempt was refused.
    let root_write = status.checks.get("root-write").cloned().unwrap_or_default();
    assert!(
        root_write.starts_with("refused") && root_write.contains("Read-only file system"),
        "a write to / must fail with EROFS, got {root_write:?}"
    );
    let mounts = read_text(&lab, "/proc/mounts");
    assert!(
        mounts.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"/")
                && fields.get(2) == Some(&"squashfs")
                && fields
                    .get(3)
                    .is_some_and(|o| o.split(',').any(|f| f == "ro"))
        }),
        "/ is not a read-only squashfs:\n{mounts}"
    );
    // Hostname and address from the config.
    assert_eq!(read_text(&lab, "/etc/hostname").trim(), "node-1");
    assert!(
        status.addresses.iter().any(|a| a.starts_with("10.5.0.11/")),
        "{:?}",
        status.addresses
    );

    // A container from the bundled busybox image, no registry in reach.
    let client = lab
        .client("node-1", Auth::Admin)
        .unwrap_or_else(|e| panic!("{e}"));
    let output = client
        .run_container(&RunContainerRequest {
            image: "docker.io/library/busybox:1.35".into(),
            args: vec![
                "sh".into(),
                "-c".into(),
                "echo hello from $(hostname)".into(),
            ],
            timeout_seconds: 300,
        })
        .unwrap_or_else(|e| panic!("running busybox: {e}\n{}", console(&lab)));
    assert_eq!(output.exit_code, 0, "{output:?}");
    assert!(
        output.stdout.contains("hello from"),
        "busybox printed {:?} (stderr {:?})",
        output.stdout,
        output.stderr
    );
    let containerd_log = client
        .logs("containerd", 20)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !containerd_log.trim().is_empty(),
        "the containerd log is empty"
    );

    down_and_check_clean(lab);
}

#[test]
fn uefi_disk_with_cidata_keeps_its_state_across_a_reboot() {
    let _one = serial();
    let mut spec = spec("state", BootMode::Uefi);
    spec.nodes[0].cidata = true;
    spec.nodes[0].disk = true;
    let mut lab = up(spec);
    let status = ready(&mut lab);
    let source = status.config_source.clone().unwrap_or_default();
    assert!(
        source.starts_with("cidata drive"),
        "expected the config from the cidata drive, got {source:?}"
    );
    let first_boot = console(&lab);
    assert!(
        first_boot.contains("formatted (ext4) and mounted on /var, grown from"),
        "first boot must format STATE and grow it to the disk:\n{first_boot}"
    );
    let machine_id = read_text(&lab, "/etc/machine-id");
    assert_eq!(machine_id.trim().len(), 32, "{machine_id:?}");

    let mark = lab.console_mark("node-1").unwrap_or_else(|e| panic!("{e}"));
    lab.client("node-1", Auth::Admin)
        .and_then(|c| {
            c.reboot()
                .map_err(|e| cairn_qemu_tests::lab::LabError::NotReady(e.to_string()))
        })
        .unwrap_or_else(|e| panic!("reboot: {e}"));
    lab.wait_for_console_after(
        "node-1",
        mark,
        "cairn node-agent: STATE /dev/vda2 mounted on /var",
        READY,
    )
    .unwrap_or_else(|e| panic!("second boot: {e}"));
    let status = lab
        .wait_status("node-1", READY, |s| {
            s.state == NodeState::Running
                && s.services.get("containerd").is_some_and(|c| c.ready)
                && s.config_source
                    .as_deref()
                    .is_some_and(|c| c.starts_with("STATE"))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.problems.is_empty(), "{:#?}", status.problems);
    let second_boot = console(&lab);
    let after_reboot = &second_boot[second_boot.rfind("rebooting now").unwrap_or(0)..];
    assert!(
        !after_reboot.contains("formatted (ext4)"),
        "STATE must not be formatted again:\n{after_reboot}"
    );
    assert_eq!(
        read_text(&lab, "/etc/machine-id"),
        machine_id,
        "the machine-id changed across the reboot"
    );
    down_and_check_clean(lab);
}

#[test]
fn pxe_boot_reaches_containerd() {
    let _one = serial();
    let mut lab = up(spec("pxe", BootMode::Pxe));
    let status = ready(&mut lab);
    assert_eq!(status.state, NodeState::Running, "{status:#?}");
    let requests = lab.http_requests();
    assert!(
        requests.iter().any(|r| r.path.ends_with("boot.ipxe")),
        "iPXE never asked for its script: {requests:?}"
    );
    down_and_check_clean(lab);
}

#[test]
fn broken_config_waits_in_maintenance_and_accepts_a_fixed_one() {
    let _one = serial();
    let mut lab = up({
        let mut spec = spec("broken", BootMode::Kernel);
        spec.start_nodes = false;
        spec
    });
    let good = lab
        .default_config("node-1")
        .unwrap_or_else(|e| panic!("{e}"));
    let broken = good.replace("\"10.5.0.11/24\"", "\"10.5.0.11/33\"");
    assert_ne!(
        good, broken,
        "the lab config has no address to break:\n{good}"
    );
    lab.set_config("node-1", Some(broken))
        .unwrap_or_else(|e| panic!("{e}"));
    lab.start("node-1").unwrap_or_else(|e| panic!("{e}"));

    let problem = lab
        .wait_for_console("node-1", "node.addresses", READY)
        .unwrap_or_else(|e| panic!("the console never named the bad key: {e}"));
    assert!(
        problem.contains("/33") || problem.contains("prefix"),
        "the console line names the key but not the problem: {problem}"
    );
    lab.wait_for_console("node-1", "cairn node-agent: maintenance key: ", READY)
        .unwrap_or_else(|e| panic!("{e}"));
    let status = lab.status("node-1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.state, NodeState::Maintenance, "{status:#?}");
    assert!(
        status.problems.iter().any(|p| p.contains("node.addresses")),
        "{:#?}",
        status.problems
    );
    assert!(
        !status.services.contains_key("containerd"),
        "nothing of an invalid config may be applied: {:?}",
        status.services
    );

    let client = lab
        .client("node-1", Auth::MaintenanceKey)
        .unwrap_or_else(|e| panic!("{e}"));
    match client.apply_config("[node]\nrole = \"worker\"\ndhcp = \"yes\"\n") {
        Err(cairn_node_api::ClientError::ConfigRejected { problems, .. }) => assert!(
            problems
                .iter()
                .any(|p| p.contains("node.dhcp") || p.contains("dhcp")),
            "{problems:?}"
        ),
        other => panic!("an invalid config must be refused with its problems, got {other:?}"),
    }
    client
        .apply_config(&good)
        .unwrap_or_else(|e| panic!("the fixed config was refused: {e}"));
    let status = lab
        .wait_status("node-1", READY, |s| {
            s.state == NodeState::Running && s.services.get("containerd").is_some_and(|c| c.ready)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        status
            .config_source
            .as_deref()
            .is_some_and(|s| s.starts_with("node API")),
        "{:?}",
        status.config_source
    );
    assert!(
        lab.client("node-1", Auth::MaintenanceKey)
            .and_then(|c| c
                .status()
                .map_err(|e| cairn_qemu_tests::lab::LabError::NotReady(e.to_string())))
            .is_err(),
        "the maintenance key must stop working once a config is applied"
    );
    down_and_check_clean(lab);
}
