//! Choosing KVM or TCG.
//!
//! `/dev/kvm` existing is not enough: on some hosts KVM aborts on CPU
//! setup or spins without booting. So KVM is chosen only after a probe:
//! the given kernel boots under KVM without a root filesystem and must print
//! its banner within a few seconds. `CAIRN_QEMU_ACCEL=kvm|tcg` overrides the
//! probe. The result is computed once per process and remembered until the
//! host reboots (`<cache>/accel`, keyed by the kernel's boot id), so a test
//! suite or a lab pays for the probe once, not in every process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// QEMU arguments for this accelerator.
    pub fn args(self) -> Vec<String> {
        match self {
            Accel::Kvm => vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()],
            Accel::Tcg => vec!["-accel".into(), "tcg".into(), "-cpu".into(), "max".into()],
        }
    }

    /// The accelerator to use, probing KVM with `probe_kernel` once.
    pub fn detect(probe_kernel: &Path) -> Accel {
        static CHOSEN: OnceLock<Accel> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let chosen = match std::env::var("CAIRN_QEMU_ACCEL").as_deref() {
                Ok("kvm") => Accel::Kvm,
                Ok("tcg") => Accel::Tcg,
                _ => remembered().unwrap_or_else(|| {
                    let chosen = probe(probe_kernel);
                    remember(chosen);
                    chosen
                }),
            };
            tracing::info!(?chosen, "QEMU accelerator");
            chosen
        })
    }
}

fn memo_path() -> Option<std::path::PathBuf> {
    let root = match std::env::var_os("CAIRN_CACHE") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(dir) => std::path::PathBuf::from(dir).join("cairn"),
            None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cache/cairn"),
        },
    };
    Some(root.join("accel"))
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_owned())
}

/// The probe's verdict from earlier in this host boot.
fn remembered() -> Option<Accel> {
    let text = std::fs::read_to_string(memo_path()?).ok()?;
    let (id, verdict) = text.trim().split_once(' ')?;
    if id != boot_id()? {
        return None;
    }
    match verdict {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

fn remember(accel: Accel) {
    let (Some(path), Some(id)) = (memo_path(), boot_id()) else {
        return;
    };
    let verdict = match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    if std::fs::write(&temp, format!("{id} {verdict}\n")).is_ok() {
        let _ = std::fs::rename(&temp, &path);
    }
}

fn probe(kernel: &Path) -> Accel {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Accel::Tcg;
    }
    let Ok(dir) = tempfile::tempdir() else {
        return Accel::Tcg;
    };
    let log = dir.path().join("probe.log");
    let child = Command::new("qemu-system-x86_64")
        .args(Accel::Kvm.args())
        .args([
            "-m",
            "256",
            "-smp",
            "1",
            "-display",
            "none",
            "-no-reboot",
            "-nodefaults",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Accel::Tcg;
    };
    let start = Instant::now();
    let mut works = false;
    while start.elapsed() < Duration::from_secs(10) {
        let text = std::fs::read(&log).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains("Linux version") {
            works = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    if works { Accel::Kvm } else { Accel::Tcg }
}
