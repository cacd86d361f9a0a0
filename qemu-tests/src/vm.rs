//! One QEMU virtual machine with a serial console log.

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
        let serial_log = config.dir.join(format!("{}.serial.log", config.name));
        let _ = std::fs::remove_file(&serial_log);
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(config.accel.args())
            .args([
                "-machine",
                "q35",
                "-nodefaults",
                "-display",
                "none",
                "-no-reboot",
            ])
            .args([
                "-m",
                &config.memory_mib.to_string(),
                "-smp",
                &config.cpus.to_string(),
            ])
            .arg("-serial")
            .arg(format!("file:{}", serial_log.display()));
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
                for firmware in [OVMF_CODE, OVMF_VARS] {
                    if !Path::new(firmware).is_file() {
                        return Err(VmError::MissingFirmware(firmware.into()));
                    }
                }
                let vars = config.dir.join(format!("{}.vars.fd", config.name));
                std::fs::copy(OVMF_VARS, &vars).map_err(|e| VmError::Prepare(e.to_string()))?;
                let overlay = config.dir.join(format!("{}.overlay.qcow2", config.name));
                let _ = std::fs::remove_file(&overlay);
                let format = if disk.extension().is_some_and(|e| e == "qcow2") {
                    "qcow2"
                } else {
                    "raw"
                };
                let status = Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
                    .arg(disk.canonicalize().unwrap_or_else(|_| disk.clone()))
                    .arg(&overlay)
                    .status()
                    .map_err(|e| VmError::Prepare(format!("qemu-img: {e}")))?;
                if !status.success() {
                    return Err(VmError::Prepare(format!(
                        "qemu-img create failed for {}",
                        disk.display()
                    )));
                }
                command
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
                    ))
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=1,file={}",
                        vars.display()
                    ))
                    .arg("-drive")
                    .arg(format!("if=virtio,format=qcow2,file={}", overlay.display()));
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(VmError::Spawn)?;
        Ok(Self {
            config,
            serial_log,
            child,
        })
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
