//! One QEMU virtual machine with a serial console log.
//!
//! [`VmConfig::new`] gives the settings `bootstrap qemu boot` and the image
//! tests use: no network, `-no-reboot` (a guest reboot ends QEMU), a fresh
//! serial log. The lab sets the rest: [`VmConfig::netns`] runs QEMU inside
//! the lab's network namespace (`ip netns exec`), [`VmConfig::nic`] attaches
//! a tap there, [`VmConfig::drives`] adds virtio disks (a persistent overlay
//! for STATE, a NoCloud `cidata` image), `no_reboot = false` lets a guest
//! reboot inside the same QEMU process, and `append_serial` keeps the
//! console of earlier boots in the log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::accel::Accel;
use crate::console::{self, ConsoleError};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot start qemu-system-x86_64: {0}; install qemu-system-x86")]
    Spawn(std::io::Error),
    #[error("{0} does not exist; install ovmf")]
    MissingFirmware(PathBuf),
    #[error("preparing the VM: {0}")]
    Prepare(String),
    #[error(transparent)]
    Console(#[from] ConsoleError),
}

/// How the VM boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// QEMU loads the kernel and initramfs itself (like PXE would).
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
    /// UEFI firmware (OVMF) boots a disk image; the disk is used through a
    /// copy-on-write overlay so the image itself is never modified.
    Uefi { disk: PathBuf },
    /// UEFI firmware boots the first of [`VmConfig::drives`] (the caller
    /// owns the overlay, so it survives restarts). Firmware variables live
    /// in `<dir>/<name>.vars.fd`, created once.
    UefiDrives,
    /// SeaBIOS runs the NIC's iPXE ROM (`-boot n`), which boots from DHCP.
    Network,
}

/// An extra virtio disk.
#[derive(Debug, Clone)]
pub struct Drive {
    pub path: PathBuf,
    /// `qcow2` or `raw`.
    pub format: &'static str,
    pub read_only: bool,
}

/// A virtio NIC on a tap device that already exists (in [`VmConfig::netns`]).
#[derive(Debug, Clone)]
pub struct Nic {
    pub tap: String,
    /// `52:54:00:..`
    pub mac: String,
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub name: String,
    pub boot: Boot,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    /// Where the serial log, overlays and firmware variables go.
    pub dir: PathBuf,
    /// Extra virtio disks, in order (`/dev/vda`, `/dev/vdb`, ...; after the
    /// overlay of [`Boot::Uefi`]).
    pub drives: Vec<Drive>,
    pub nic: Option<Nic>,
    /// Run QEMU inside this network namespace (`ip netns exec NAME`).
    pub netns: Option<String>,
    /// `-no-reboot`: a guest reboot stops QEMU instead of resetting it.
    pub no_reboot: bool,
    /// Append to the serial log instead of starting it afresh.
    pub append_serial: bool,
}

impl VmConfig {
    /// One vCPU, 1 GiB, no network, `-no-reboot`, a fresh serial log.
    pub fn new(name: impl Into<String>, boot: Boot, accel: Accel, dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            boot,
            memory_mib: 1024,
            cpus: 1,
            accel,
            dir: dir.into(),
            drives: Vec::new(),
            nic: None,
            netns: None,
            no_reboot: true,
            append_serial: false,
        }
    }

    /// QEMU's standard error: `<dir>/<name>.qemu.log`.
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join(format!("{}.qemu.log", self.name))
    }

    /// The serial log's path: `<dir>/<name>.serial.log`.
    pub fn serial_log(&self) -> PathBuf {
        self.dir.join(format!("{}.serial.log", self.name))
    }
}

/// Creates a qcow2 overlay at `overlay` backed by `base` (qcow2 or raw),
/// optionally grown to `size_bytes`.
pub fn create_overlay(base: &Path, overlay: &Path, size_bytes: Option<u64>) -> Result<(), VmError> {
    let _ = std::fs::remove_file(overlay);
    let format = if base.extension().is_some_and(|e| e == "qcow2") {
        "qcow2"
    } else {
        "raw"
    };
    let mut command = Command::new("qemu-img");
    command
        .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
        .arg(base.canonicalize().unwrap_or_else(|_| base.to_path_buf()))
        .arg(overlay);
    if let Some(size) = size_bytes {
        command.arg(size.to_string());
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| VmError::Prepare(format!("qemu-img: {e}; install qemu-utils")))?;
    if !output.status.success() {
        return Err(VmError::Prepare(format!(
            "qemu-img create of an overlay of {} failed: {}",
            base.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

fn check_firmware() -> Result<(), VmError> {
    for firmware in [OVMF_CODE, OVMF_VARS] {
        if !Path::new(firmware).is_file() {
            return Err(VmError::MissingFirmware(firmware.into()));
        }
    }
    Ok(())
}

fn firmware_args(command: &mut Command, vars: &Path) {
    command
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ));
}

/// A running VM; dropping it kills QEMU.
#[derive(Debug)]
pub struct Vm {
    pub config: VmConfig,
    pub serial_log: PathBuf,
    child: Child,
}

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

impl Vm {
    pub fn start(config: VmConfig) -> Result<Self, VmError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| VmError::Prepare(e.to_string()))?;
        let serial_log = config.serial_log();
        if !config.append_serial {
            let _ = std::fs::remove_file(&serial_log);
            let _ = std::fs::remove_file(config.qemu_log());
        }
        let mut command = match &config.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, "qemu-system-x86_64"]);
                command
            }
            None => Command::new("qemu-system-x86_64"),
        };
        command
            .args(config.accel.args())
            .args(["-machine", "q35", "-nodefaults", "-display", "none"])
            .args([
                "-m",
                &config.memory_mib.to_string(),
                "-smp",
                &config.cpus.to_string(),
            ])
            .arg("-chardev")
            .arg(format!(
                "file,id=serial0,path={},append={}",
                serial_log.display(),
                if config.append_serial { "on" } else { "off" }
            ))
            .args(["-serial", "chardev:serial0"]);
        if config.no_reboot {
            command.arg("-no-reboot");
        }
        match &config.boot {
            Boot::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                command
                    .arg("-kernel")
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(initrd)
                    .args(["-append", cmdline]);
            }
            Boot::Uefi { disk } => {
                check_firmware()?;
                let vars = config.dir.join(format!("{}.vars.fd", config.name));
                std::fs::copy(OVMF_VARS, &vars).map_err(|e| VmError::Prepare(e.to_string()))?;
                let overlay = config.dir.join(format!("{}.overlay.qcow2", config.name));
                create_overlay(disk, &overlay, None)?;
                firmware_args(&mut command, &vars);
                command
                    .arg("-drive")
                    .arg(format!("if=virtio,format=qcow2,file={}", overlay.display()));
            }
            Boot::UefiDrives => {
                check_firmware()?;
                let vars = config.dir.join(format!("{}.vars.fd", config.name));
                if !vars.is_file() {
                    std::fs::copy(OVMF_VARS, &vars).map_err(|e| VmError::Prepare(e.to_string()))?;
                }
                firmware_args(&mut command, &vars);
            }
            Boot::Network => {
                command.args(["-boot", "n"]);
            }
        }
        for drive in &config.drives {
            command.arg("-drive").arg(format!(
                "if=virtio,format={},file={}{}",
                drive.format,
                drive.path.display(),
                if drive.read_only { ",readonly=on" } else { "" }
            ));
        }
        if let Some(nic) = &config.nic {
            command
                .arg("-netdev")
                .arg(format!(
                    "tap,id=net0,ifname={},script=no,downscript=no",
                    nic.tap
                ))
                .arg("-device")
                .arg(format!("virtio-net-pci,netdev=net0,mac={}", nic.mac));
        }
        tracing::debug!(?command, "starting QEMU");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.qemu_log())
            .map_err(|e| VmError::Prepare(format!("{}: {e}", config.qemu_log().display())))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(VmError::Spawn)?;
        Ok(Self {
            config,
            serial_log,
            child,
        })
    }

    /// QEMU's process id (the `ip netns exec` wrapper execs QEMU, so it is
    /// the same process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once QEMU has exited.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The end of QEMU's own messages (standard error).
    pub fn qemu_messages(&self) -> String {
        console::tail(&self.config.qemu_log(), 10)
    }

    /// Hard power-off: kills QEMU and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for a console line containing `expected`.
    pub fn wait_for_console(
        &mut self,
        expected: &str,
        timeout: Duration,
    ) -> Result<String, VmError> {
        let child = &mut self.child;
        Ok(console::wait_for_line(
            &self.serial_log,
            expected,
            timeout,
            || match child.try_wait() {
                Ok(Some(status)) => Err(status.to_string()),
                _ => Ok(()),
            },
        )?)
    }

    /// Waits for QEMU to exit (the guest powered off) within `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// Copies the console to `out` as it grows until the VM exits or
    /// `timeout` passes; returns the exit status if it exited.
    pub fn follow_console(
        &mut self,
        out: &mut dyn std::io::Write,
        timeout: Duration,
    ) -> std::io::Result<Option<std::process::ExitStatus>> {
        let start = std::time::Instant::now();
        let mut shown = 0usize;
        loop {
            let exited = self.child.try_wait()?;
            let text = std::fs::read(&self.serial_log).unwrap_or_default();
            if text.len() > shown {
                out.write_all(&text[shown..])?;
                out.flush()?;
                shown = text.len();
            }
            if exited.is_some() || start.elapsed() >= timeout {
                return Ok(exited);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn console_tail(&self, lines: usize) -> String {
        console::tail(&self.serial_log, lines)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}
