//! The kernel filesystems a container host needs beyond those the
//! initramfs stage moved over (`/proc`, `/sys`, `/dev`, `/run`): the
//! unified cgroup hierarchy (cgroup v2, what kubelet and runc expect on a
//! current system) with its controllers delegated, `/dev/pts`, `/dev/shm`,
//! `/dev/mqueue` and the BPF filesystem CNI plugins pin maps in.

use std::path::Path;

use nix::mount::{MsFlags, mount};

/// One mount to make.
struct KernelMount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

fn mounts() -> [KernelMount; 5] {
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    [
        KernelMount {
            source: "cgroup2",
            target: "/sys/fs/cgroup",
            fstype: "cgroup2",
            flags: hardened | MsFlags::MS_RELATIME,
            data: Some("nsdelegate,memory_recursiveprot"),
        },
        KernelMount {
            source: "devpts",
            target: "/dev/pts",
            fstype: "devpts",
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            data: Some("gid=5,mode=620,ptmxmode=666"),
        },
        KernelMount {
            source: "shm",
            target: "/dev/shm",
            fstype: "tmpfs",
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data: Some("mode=1777"),
        },
        KernelMount {
            source: "mqueue",
            target: "/dev/mqueue",
            fstype: "mqueue",
            flags: hardened,
            data: None,
        },
        KernelMount {
            source: "bpf",
            target: "/sys/fs/bpf",
            fstype: "bpf",
            flags: hardened,
            data: Some("mode=700"),
        },
    ]
}

/// Whether something is mounted exactly at `target`.
fn is_mounted(target: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|text| {
            text.lines()
                .any(|line| line.split_whitespace().nth(1) == Some(target))
        })
        .unwrap_or(false)
}

/// Mounts what is missing; returns `target: error` for each failure.
pub fn mount_kernel_filesystems() -> Vec<String> {
    let mut failures = Vec::new();
    for m in mounts() {
        if is_mounted(m.target) {
            continue;
        }
        if let Err(error) = std::fs::create_dir_all(m.target) {
            failures.push(format!("{}: {error}", m.target));
            continue;
        }
        if let Err(error) = mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data) {
            failures.push(format!("{} ({}): {error}", m.target, m.fstype));
        }
    }
    if let Err(error) = delegate_controllers(Path::new("/sys/fs/cgroup")) {
        failures.push(format!("/sys/fs/cgroup controllers: {error}"));
    }
    failures
}

/// Enables every available controller for the root's children, so that
/// containerd, runc and kubelet can use cpu, memory, io and pids limits.
fn delegate_controllers(root: &Path) -> std::io::Result<()> {
    let available = std::fs::read_to_string(root.join("cgroup.controllers"))?;
    let wanted: Vec<String> = available
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    std::fs::write(root.join("cgroup.subtree_control"), wanted.join(" "))
}
