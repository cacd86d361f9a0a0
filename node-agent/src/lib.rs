//! `node-agent`: Cairn's init process and node supervisor.
//!
//! The same static binary is `/init` in the initramfs and PID 1 on the
//! booted node. Its first console line is always the [`banner`], so a boot
//! log shows at once which agent version a node runs.
//!
//! Today only the init-mode entry exists: it announces itself on the console
//! and powers the machine off, which lets image tests prove that a built
//! image boots to its own userspace. The boot flow (modules, squashfs root,
//! STATE, switch-root, supervision) builds on this entry point.

use std::io::Write;

/// The first line node-agent writes on the console.
pub fn banner() -> String {
    format!("cairn node-agent {}", env!("CARGO_PKG_VERSION"))
}

/// Whether this process is the machine's init (PID 1).
pub fn is_init() -> bool {
    std::process::id() == 1
}

/// Init-mode entry: announce, then power off (the boot flow is not
/// implemented yet, and a PID 1 that exits would panic the kernel).
pub fn run_init(console: &mut dyn Write) -> ! {
    let _ = writeln!(console, "{}", banner());
    let _ = writeln!(
        console,
        "cairn node-agent: init mode has no boot flow yet; powering off"
    );
    let _ = console.flush();
    nix::unistd::sync();
    let error = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    let _ = writeln!(console, "cairn node-agent: power off failed: {error:?}");
    loop {
        std::thread::park();
    }
}
