//! A real containerd (the host's `/usr/bin/containerd`, Debian's 1.6)
//! under the supervisor, configured by `render_config` with every path in a
//! temp dir: import a busybox OCI archive, run a container, stop it all.
//!
//! containerd 1.6 puts its shims' sockets under the fixed
//! `/run/containerd/s`, so the daemon runs in a private mount namespace
//! (`unshare --mount`) with its own tmpfs on `/run`: nothing of the host's
//! `/run/containerd` is touched, and the namespace (with the container's
//! rootfs mounts) disappears with the daemon. The socket, FIFOs and runc
//! state live in the temp dir, which both sides see.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_images::oci::{OciImageSpec, write_archive};
use cairn_node_agent::process;
use cairn_node_agent::services::containerd::{self, ContainerdSettings, K8S_NAMESPACE};
use cairn_node_agent::services::{ServiceState, Supervisor};

const IMAGE: &str = "cairn.local/busybox:test";

/// Stops the supervisor even when the test fails.
struct Guard(Supervisor);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.stop_all(Duration::from_secs(30));
    }
}

fn log_tail(supervisor: &Supervisor) -> String {
    supervisor
        .log_tail("containerd", 40)
        .map(|lines| lines.join("\n"))
        .unwrap_or_else(|e| e.to_string())
}

/// Every process whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                cmdline.trim()
            ));
        }
    }
    found
}

/// A single-layer image holding the static busybox.
fn busybox_archive(dir: &Path) -> PathBuf {
    let root = dir.join("layer");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("symlink");
    let images = dir.join("images");
    let archive = images.join("busybox.tar");
    let entrypoint = vec!["/bin/sh".to_owned()];
    write_archive(
        &OciImageSpec {
            reference: IMAGE.to_owned(),
            entrypoint: &entrypoint,
            root: &root,
            owners: &BTreeMap::new(),
            source_date_epoch: 1_700_000_000,
        },
        &archive,
    )
    .expect("OCI archive");
    // Not an archive: must be skipped.
    std::fs::write(images.join("README"), "not an image").expect("write");
    images
}

#[test]
fn containerd_runs_a_bundled_image() {
    process::become_subreaper().expect("subreaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path();
    let settings = ContainerdSettings {
        root: base.join("root"),
        state: base.join("state"),
        address: base.join("state/containerd.sock"),
        config_dir: base.join("etc"),
        cni_conf_dir: base.join("cni"),
        // The temp dir is on ext4 here; overlayfs works on it.
        snapshotter: "overlayfs".to_owned(),
        ..ContainerdSettings::default()
    };
    let config = containerd::write_config(&settings).expect("config written");

    let mut spec = containerd::service_spec(&settings);
    assert_eq!(spec.program, Path::new(containerd::CONTAINERD));
    assert_eq!(spec.args, ["--config", &config.to_string_lossy()]);
    // Same service, started inside a private mount namespace (see above).
    let mut args = vec![
        "--mount".to_owned(),
        "--propagation".to_owned(),
        "private".to_owned(),
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        "mount -t tmpfs -o mode=0755 tmpfs /run && exec \"$@\"".to_owned(),
        "sh".to_owned(),
        spec.program.to_string_lossy().into_owned(),
    ];
    args.append(&mut spec.args);
    spec.program = PathBuf::from("/usr/bin/unshare");
    spec.args = args;

    let supervisor = Supervisor::new(base.join("log"));
    let guard = Guard(supervisor.clone());
    supervisor.add(spec).expect("add");
    supervisor.start().expect("start");
    if let Err(error) = supervisor.wait_ready("containerd", Duration::from_secs(60)) {
        panic!("{error}\n--- containerd log ---\n{}", log_tail(&supervisor));
    }
    let fail = |what: &str| -> String {
        format!(
            "{what}\nstatus: {:?}\n--- containerd log ---\n{}",
            supervisor.status(),
            log_tail(&supervisor)
        )
    };

    let version = containerd::version().unwrap_or_else(|e| panic!("{}", fail(&e.to_string())));
    assert!(version.starts_with("1."), "{version}");

    let images = busybox_archive(base);
    let names = containerd::import_images(&settings, &images, K8S_NAMESPACE)
        .unwrap_or_else(|e| panic!("{}", fail(&e.to_string())));
    assert!(
        names.iter().any(|n| n == IMAGE),
        "{}",
        fail(&format!("{names:?}"))
    );

    let output = containerd::run_container(
        &settings,
        IMAGE,
        &["/bin/busybox", "echo", "hello from a cairn container"],
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{}", fail(&e.to_string())));
    assert_eq!(output.exit_code, 0, "{}", fail(&format!("{output:?}")));
    assert_eq!(
        output.stdout.trim(),
        "hello from a cairn container",
        "{}",
        fail(&format!("{output:?}"))
    );

    let output = containerd::run_container(
        &settings,
        IMAGE,
        &["/bin/sh", "-c", "echo to-stderr >&2; exit 3"],
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{}", fail(&e.to_string())));
    assert_eq!(output.exit_code, 3, "{}", fail(&format!("{output:?}")));
    assert_eq!(output.stderr.trim(), "to-stderr");

    // A container that outlives its timeout is killed and removed.
    let started = Instant::now();
    let error = containerd::run_container(
        &settings,
        IMAGE,
        &["/bin/busybox", "sleep", "600"],
        Duration::from_secs(5),
    )
    .expect_err("times out");
    assert!(error.to_string().contains("did not finish"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(120));
    let ctr = |args: &[&str]| {
        let mut all = vec![
            "--address".to_owned(),
            settings.address.to_string_lossy().into_owned(),
            "-n".to_owned(),
            K8S_NAMESPACE.to_owned(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        process::run(containerd::CTR, &all, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{}", fail(&e.to_string())))
            .stdout_text()
    };
    assert_eq!(
        ctr(&["containers", "list", "--quiet"]).trim(),
        "",
        "{}",
        fail("containers left")
    );
    assert_eq!(
        ctr(&["tasks", "list", "--quiet"]).trim(),
        "",
        "{}",
        fail("tasks left")
    );

    let needle = base.to_string_lossy().into_owned();
    assert!(
        processes_mentioning(&needle)
            .iter()
            .any(|p| p.contains("containerd")),
        "containerd runs with the temp dir's config"
    );
    supervisor
        .stop_all(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{}", fail(&e.to_string())));
    assert_eq!(
        supervisor.status()["containerd"].state,
        ServiceState::Stopped
    );
    // Neither containerd nor a shim of ours is left.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = processes_mentioning(&needle);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running: {left:#?}\n{}",
            fail("after stop_all")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(guard);
}
