//! `node-agent`: Cairn's init process and node supervisor.
//!
//! The same static binary is `/init` in the initramfs and PID 1 on the
//! booted node. Its first console line is always the [`banner`], so a boot
//! log shows at once which agent version a node runs.
//!
//! - [`init`]: the initramfs stage: kernel filesystems, boot modules, the
//!   squashfs root (read-only) with a tmpfs `/etc` overlay, switch root,
//!   exec of the system stage.
//! - The system stage ([`run_system`]) reports what it booted; services,
//!   machine configuration and the node API build on it. Until they exist
//!   it powers the machine off, which lets image tests prove the whole boot
//!   path.

pub mod init;
pub mod state;

use std::io::Write;
use std::path::Path;

/// The first line node-agent writes on the console.
pub fn banner() -> String {
    format!("cairn node-agent {}", env!("CARGO_PKG_VERSION"))
}

/// Whether this process is the machine's init (PID 1).
pub fn is_init() -> bool {
    std::process::id() == 1
}

/// Which stage a PID 1 is in: the initramfs still holds the root image.
pub fn in_initramfs() -> bool {
    Path::new(init::SQUASHFS).exists()
}

/// Init-mode entry in the initramfs: announce, prepare the real root and
/// hand over. Only returns control by powering off on failure.
pub fn run_initramfs(console: &mut dyn Write) -> ! {
    let _ = writeln!(console, "{}", banner());
    let mut writer = &mut *console;
    let error = init::run(&mut init::LinuxHost, &mut writer);
    let _ = writeln!(console, "cairn node-agent: boot failed: {error}");
    power_off(console)
}

/// PID 1 on the real root.
pub fn run_system(console: &mut dyn Write) -> ! {
    let _ = writeln!(console, "{}", banner());
    let os = os_release_name().unwrap_or_else(|| "an unknown system".to_owned());
    let root = root_filesystem().unwrap_or_else(|| "unknown".to_owned());
    let _ = writeln!(
        console,
        "cairn node-agent: PID 1 on {os}, root filesystem {root}"
    );
    let state = match state::mount_state() {
        Ok(state::StateOutcome::Formatted(device)) => {
            format!(
                "STATE {} formatted (ext4) and mounted on /var",
                device.display()
            )
        }
        Ok(state::StateOutcome::Mounted(device)) => {
            format!("STATE {} mounted on /var", device.display())
        }
        Ok(state::StateOutcome::Absent) => "no STATE partition; /var is in memory".to_owned(),
        Err(error) => format!("{error}; /var stays in memory"),
    };
    let _ = writeln!(console, "cairn node-agent: {state}");
    let _ = writeln!(
        console,
        "cairn node-agent: no services are defined yet; powering off"
    );
    power_off(console)
}

fn os_release_name() -> Option<String> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
}

/// `squashfs (ro)` from /proc/mounts for `/`.
fn root_filesystem() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"/")).then(|| {
            let mode = fields
                .get(3)
                .and_then(|o| o.split(',').next())
                .unwrap_or("?");
            format!("{} ({mode})", fields.get(2).unwrap_or(&"?"))
        })
    })
}

fn power_off(console: &mut dyn Write) -> ! {
    let _ = console.flush();
    nix::unistd::sync();
    let error = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    let _ = writeln!(console, "cairn node-agent: power off failed: {error:?}");
    loop {
        std::thread::park();
    }
}
