//! `bootstrap qemu ...`: thin wrappers over the QEMU lab library.

use std::io::Write;
use std::time::Duration;

use cairn_qemu_tests::{Accel, Boot, Vm, VmConfig};

use crate::cli::{QemuBootArgs, QemuCommand};
use crate::error::BootstrapError;

pub fn run(command: QemuCommand, out: &mut dyn Write) -> Result<(), BootstrapError> {
    match command {
        QemuCommand::Boot(args) => boot(args, out),
    }
}

fn boot(args: QemuBootArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let image = &args.image;
    for file in ["vmlinuz", "initramfs.cpio.zst", "cmdline"] {
        if !image.join(file).is_file() {
            return Err(BootstrapError::Inspect(format!(
                "{} has no {file}; build it with `bootstrap image build --out {}`",
                image.display(),
                image.display()
            )));
        }
    }
    let temporary = tempfile::tempdir()?;
    let dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let accel = Accel::detect(&image.join("vmlinuz"));
    let boot = if args.uefi {
        Boot::Uefi {
            disk: image.join("disk.qcow2"),
        }
    } else {
        let cmdline = std::fs::read_to_string(image.join("cmdline"))?;
        Boot::Kernel {
            kernel: image.join("vmlinuz"),
            initrd: image.join("initramfs.cpio.zst"),
            cmdline: cmdline.trim().to_owned(),
        }
    };
    writeln!(
        out,
        "[qemu] booting {} ({}, {accel:?}); serial log in {}",
        image.display(),
        if args.uefi {
            "UEFI disk"
        } else {
            "kernel + initramfs"
        },
        dir.display()
    )?;
    let mut config = VmConfig::new("node", boot, accel, dir);
    config.memory_mib = args.memory;
    let mut vm = Vm::start(config)?;
    match vm.follow_console(out, Duration::from_secs(args.timeout))? {
        Some(status) => writeln!(out, "\n[qemu] the VM stopped ({status})")?,
        None => writeln!(
            out,
            "\n[qemu] still running after {}s; stopping it",
            args.timeout
        )?,
    }
    Ok(())
}
