//! The default image, built once and checked the way a user would: what the
//! root filesystem holds, what the manifest and SBOM say, that a rebuild is
//! byte-identical, and that it boots in QEMU both directly (kernel +
//! initramfs, as PXE does) and from `disk.qcow2` through UEFI firmware.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn_qemu_tests::{Accel, Boot, Vm, VmConfig};

const BANNER: &str = concat!("cairn node-agent ", env!("CARGO_PKG_VERSION"));

fn squashfs_listing(image: &Path) -> Vec<String> {
    let output = Command::new("unsquashfs")
        .args(["-l", "-d", ""])
        .arg(image.join("rootfs.squashfs"))
        .output()
        .expect("unsquashfs (squashfs-tools) must be installed");
    assert!(
        output.status.success(),
        "unsquashfs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim_start_matches('/').to_owned())
        .collect()
}

#[test]
fn the_root_filesystem_holds_the_node_software() {
    let image = common::image();
    let listing = squashfs_listing(image);
    for expected in [
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var",
        "usr/bin/containerd",
        "usr/bin/containerd-shim-runc-v2",
        "usr/sbin/runc",
        "usr/lib/cni/bridge",
        "usr/lib/cni/host-local",
        "usr/lib/cni/loopback",
        "usr/lib/cni/portmap",
        "usr/bin/etcd",
        "usr/sbin/nft",
        "usr/sbin/mkfs.ext4",
        "usr/bin/node-agent",
        "usr/bin/control-plane",
        "usr/bin/bootstrap",
        "usr/lib/os-release",
        "usr/lib/sysctl.d/50-cairn.conf",
        "usr/lib/modules-load.d/cairn.conf",
    ] {
        assert!(
            listing.iter().any(|l| l == expected),
            "{expected} missing from rootfs.squashfs"
        );
    }
    let modules_dep = listing
        .iter()
        .find(|l| l.starts_with("usr/lib/modules/") && l.ends_with("/modules.dep"));
    assert!(modules_dep.is_some(), "no modules.dep in the image");
    // Excluded by the profiles: documentation, manuals, perl (only the
    // skipped usrmerge needed it).
    for absent in ["usr/share/doc/", "usr/share/man/", "usr/bin/perl"] {
        let found: Vec<&String> = listing.iter().filter(|l| l.starts_with(absent)).collect();
        assert!(
            found.is_empty(),
            "{absent} should have been left out, found {found:?}"
        );
    }
}

#[test]
fn manifest_and_sbom_describe_the_image() {
    let image = common::image();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(image.join("manifest.json")).expect("manifest.json"),
    )
    .expect("json");
    assert_eq!(manifest["profile"]["name"], "default");
    assert_eq!(
        manifest["profile"]["digest"].as_str().map(str::len),
        Some(64)
    );
    assert_eq!(manifest["source_date_epoch"], common::EPOCH);
    let packages = manifest["packages"].as_array().expect("packages");
    for name in [
        "containerd",
        "runc",
        "containernetworking-plugins",
        "etcd-server",
        "nftables",
        "libc6",
    ] {
        let package = packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in manifest"));
        assert!(
            package["version"].as_str().is_some_and(|v| !v.is_empty()),
            "{name} has no version"
        );
        assert_eq!(
            package["sha256"].as_str().map(str::len),
            Some(64),
            "{name} sha256"
        );
    }
    let outputs: BTreeMap<String, (u64, String)> = manifest["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|o| {
            (
                o["name"].as_str().expect("name").to_owned(),
                (
                    o["size"].as_u64().expect("size"),
                    o["sha256"].as_str().expect("sha").to_owned(),
                ),
            )
        })
        .collect();
    for name in [
        "vmlinuz",
        "initramfs.cpio.zst",
        "rootfs.squashfs",
        "cmdline",
        "cairn.efi",
        "disk.raw",
        "disk.qcow2",
        "boot.ipxe",
        "sbom.spdx.json",
    ] {
        let (size, sha) = outputs
            .get(name)
            .unwrap_or_else(|| panic!("{name} not in manifest outputs"));
        let actual =
            cairn_images::fetch::cache::sha256_file(&image.join(name)).expect("hash output");
        assert_eq!(
            &actual, sha,
            "{name}: manifest sha256 differs from the file"
        );
        assert_eq!(
            std::fs::metadata(image.join(name)).expect("stat").len(),
            *size,
            "{name} size"
        );
    }

    let sbom: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(image.join("sbom.spdx.json")).expect("sbom"))
            .expect("json");
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    assert_eq!(sbom["dataLicense"], "CC0-1.0");
    let spdx_packages = sbom["packages"].as_array().expect("packages");
    let containerd = spdx_packages
        .iter()
        .find(|p| p["name"] == "containerd")
        .expect("containerd in SBOM");
    assert!(
        containerd["externalRefs"][0]["referenceLocator"]
            .as_str()
            .is_some_and(|purl| purl.starts_with("pkg:deb/debian/containerd@")),
        "{containerd}"
    );
    assert_eq!(
        sbom["relationships"].as_array().map(Vec::len),
        Some(spdx_packages.len() - 1),
        "the image CONTAINS every other package"
    );
}

#[test]
fn the_uki_and_disk_have_the_expected_structure() {
    let image = common::image();
    let sections: Vec<String> = cairn_images::uki::list_sections(&image.join("cairn.efi"))
        .expect("parse UKI")
        .into_iter()
        .map(|s| s.name)
        .collect();
    for name in [".osrel", ".cmdline", ".linux", ".initrd"] {
        assert!(
            sections.iter().any(|s| s == name),
            "{name} missing from cairn.efi: {sections:?}"
        );
    }
    let dump = Command::new("sfdisk")
        .arg("--dump")
        .arg(image.join("disk.raw"))
        .output()
        .expect("sfdisk (fdisk) must be installed");
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("label: gpt"), "{dump}");
    assert!(
        dump.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "no EFI System Partition:\n{dump}"
    );
    assert!(
        dump.contains("name=\"CAIRN-STATE\""),
        "no CAIRN-STATE partition:\n{dump}"
    );
    let ipxe = std::fs::read_to_string(image.join("boot.ipxe")).expect("boot.ipxe");
    assert!(
        ipxe.starts_with("#!ipxe") && ipxe.contains("initrd initramfs.cpio.zst"),
        "{ipxe}"
    );
    let initramfs = std::fs::metadata(image.join("initramfs.cpio.zst"))
        .expect("initramfs")
        .len();
    println!(
        "initramfs.cpio.zst: {:.1} MiB",
        initramfs as f64 / 1048576.0
    );
}

#[test]
fn a_rebuild_is_byte_identical() {
    let first = common::image();
    let second = common::test_dir("image-rebuild");
    // No reuse of cached artifacts: every output is produced again.
    cairn_images::build::build(&common::options(second.clone(), true)).expect("second build");
    let mut names: Vec<String> = std::fs::read_dir(first)
        .expect("read outputs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 10, "{names:?}");
    for name in names {
        let a = std::fs::read(first.join(&name)).expect("first");
        let b = std::fs::read(second.join(&name))
            .unwrap_or_else(|e| panic!("{name} missing from the rebuild: {e}"));
        assert!(
            a == b,
            "{name} differs between two builds with SOURCE_DATE_EPOCH={}",
            common::EPOCH
        );
    }
}

fn boot_and_expect_banner(name: &str, boot: Boot, timeout: Duration, state_line: &str) {
    let image = common::image();
    let accel = Accel::detect(&image.join("vmlinuz"));
    let mut vm =
        Vm::start(VmConfig::new(name, boot, accel, common::test_dir("vms"))).expect("start VM");
    let line = vm
        .wait_for_console(BANNER, timeout)
        .unwrap_or_else(|e| panic!("{name} ({accel:?}): {e}"));
    assert_eq!(line.trim(), BANNER, "the banner must be a line of its own");
    // The initramfs stage mounts the squashfs root and hands over to
    // node-agent as PID 1 there, which reports what it booted on.
    let system = vm
        .wait_for_console("cairn node-agent: PID 1 on", timeout)
        .unwrap_or_else(|e| panic!("{name} ({accel:?}): {e}"));
    assert!(
        system.contains("PID 1 on Cairn 0.1.0 (default), root filesystem squashfs (ro)"),
        "{name}: unexpected system line {system:?}; console:\n{}",
        vm.console_tail(30)
    );
    // STATE: formatted and mounted from a disk, in memory without one.
    vm.wait_for_console(state_line, timeout)
        .unwrap_or_else(|e| panic!("{name} ({accel:?}): {e}"));
    // With no machine config anywhere, the node waits in maintenance mode
    // with a one-time key for the node API.
    vm.wait_for_console("cairn node-agent: maintenance key: ", timeout)
        .unwrap_or_else(|e| panic!("{name} ({accel:?}): {e}"));
}

#[test]
fn kernel_and_initramfs_boot_to_the_node_agent() {
    let image = common::image();
    let cmdline = std::fs::read_to_string(image.join("cmdline")).expect("cmdline");
    boot_and_expect_banner(
        "direct",
        Boot::Kernel {
            kernel: image.join("vmlinuz"),
            initrd: image.join("initramfs.cpio.zst"),
            cmdline: cmdline.trim().to_owned(),
        },
        Duration::from_secs(300),
        "cairn node-agent: no STATE partition; /var is in memory",
    );
}

#[test]
fn disk_qcow2_boots_through_uefi_to_the_node_agent() {
    let image = common::image();
    boot_and_expect_banner(
        "uefi",
        Boot::Uefi {
            disk: image.join("disk.qcow2"),
        },
        Duration::from_secs(600),
        "cairn node-agent: STATE /dev/vda2 formatted (ext4) and mounted on /var",
    );
}

/// Extracts the bundled image archives from the squashfs.
fn bundled_archives(image: &Path, into: &Path) -> Vec<std::path::PathBuf> {
    let status = Command::new("unsquashfs")
        .args(["-q", "-d"])
        .arg(into)
        .arg(image.join("rootfs.squashfs"))
        .arg("usr/lib/cairn/images")
        .status()
        .expect("unsquashfs");
    assert!(
        status.success(),
        "unsquashfs of usr/lib/cairn/images failed"
    );
    let dir = into.join("usr/lib/cairn/images");
    let mut archives: Vec<_> = std::fs::read_dir(&dir)
        .expect("bundled images directory")
        .map(|e| e.expect("entry").path())
        .collect();
    archives.sort();
    archives
}

#[test]
fn bundled_images_are_imported_by_a_real_containerd() {
    let image = common::image();
    let work = tempfile::tempdir().expect("tempdir");
    let archives = bundled_archives(image, &work.path().join("x"));
    let names: Vec<String> = archives
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "docker.io_library_busybox_1.35.tar",
            "registry.k8s.io_pause_3.9.tar"
        ]
    );

    for archive in &archives {
        let inspect = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", archive.display()))
            .output()
            .expect("skopeo must be installed");
        assert!(
            inspect.status.success(),
            "skopeo rejects {}: {}",
            archive.display(),
            String::from_utf8_lossy(&inspect.stderr)
        );
    }

    // A private containerd on a socket of its own; nothing of the host's.
    let root = work.path().join("containerd");
    let socket = work.path().join("containerd.sock");
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\n[grpc]\naddress = {:?}\n[plugins.\"io.containerd.grpc.v1.cri\"]\ndisable_tcp_service = true\n",
            root.join("root").display().to_string(),
            root.join("state").display().to_string(),
            socket.display().to_string()
        ),
    )
    .expect("write config");
    struct Daemon(std::process::Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let log = std::fs::File::create(work.path().join("containerd.log")).expect("log");
    let _daemon = Daemon(
        Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("containerd must be installed"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "containerd did not start:\n{}",
            std::fs::read_to_string(work.path().join("containerd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ctr = |args: &[&str]| {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .expect("ctr");
        assert!(
            output.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    for archive in &archives {
        ctr(&["images", "import", &archive.display().to_string()]);
    }
    let listing = ctr(&["images", "list", "--quiet"]);
    for reference in [
        "registry.k8s.io/pause:3.9",
        "docker.io/library/busybox:1.35",
    ] {
        assert!(
            listing.lines().any(|l| l == reference),
            "{reference} not imported; containerd has:\n{listing}"
        );
    }
}
