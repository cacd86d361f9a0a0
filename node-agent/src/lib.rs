//! `node-agent`: Cairn's init process and node supervisor.
//!
//! The same static binary is `/init` in the initramfs and PID 1 on the
//! booted node. Its first console line is always the [`banner`], so a boot
//! log shows at once which agent version a node runs.
//!
//! - [`init`]: the initramfs stage: kernel filesystems, boot modules, the
//!   squashfs root (read-only) with a tmpfs `/etc` overlay, switch root,
//!   exec of the system stage.
//! - [`system`]: PID 1 on the real root: reaping, signals, the
//!   timestamped console, STATE, host settings, the machine config (or
//!   maintenance mode), network, containerd under the [`services`]
//!   supervisor and the node API; then it waits for reboot or power-off.
//! - [`net`]: links, addresses, routes (rtnetlink) and a DHCPv4 client.
//! - [`process`]: the one place children are spawned and reaped.
//! - [`services`]: the supervisor and the containerd service.
//! - [`state`]: the STATE partition on `/var`.

pub mod blockdev;
pub mod cluster;
pub mod init;
pub mod net;
pub mod process;
pub mod services;
pub mod state;
pub mod system;

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

/// PID 1 on the real root: see [`system`].
pub fn run_system() -> ! {
    system::run(Box::new(std::io::stdout()))
}

pub(crate) fn os_release_name() -> Option<String> {
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
pub(crate) fn root_filesystem() -> Option<String> {
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
