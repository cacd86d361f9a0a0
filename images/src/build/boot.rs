//! The boot artifacts: initramfs, UKI, ESP + GPT disk, qcow2, iPXE script.

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::{BuildError, io_err};
use crate::cpio::{Content, CpioWriter, EntryMetadata};
use crate::fat::{self, EspFile, EspOptions};
use crate::gpt::{self, DiskSpec, Guid, PartitionSize, PartitionSpec};
use crate::kmod::{KernelModules, ModuleClosure};

/// `boot/vmlinuz-<version>` from the extracted kernel package.
pub fn find_vmlinuz(kernel_root: &Path, version: &str) -> Result<PathBuf, BuildError> {
    let path = kernel_root.join("boot").join(format!("vmlinuz-{version}"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(BuildError::Input(format!(
            "the kernel package has no boot/vmlinuz-{version}; check [kernel] package and its package-filter"
        )))
    }
}

const INITRAMFS_ZSTD_LEVEL: i32 = 9;

#[derive(Debug)]
pub struct InitramfsInputs<'a> {
    pub init: &'a Path,
    pub kernel: &'a KernelModules,
    pub modules: &'a ModuleClosure,
    pub squashfs: &'a Path,
    pub source_date_epoch: u64,
    pub jobs: usize,
    pub out: &'a Path,
}

/// The initramfs: `/init`, the device node the kernel needs to give it a
/// console, the modules that reach the root (with their `modules.dep`) and
/// the root itself as `/rootfs.squashfs`. One archive serves every boot path
/// (PXE, UKI, disk).
pub fn write_initramfs(inputs: &InitramfsInputs<'_>) -> Result<(), BuildError> {
    let mtime = u32::try_from(inputs.source_date_epoch).unwrap_or(u32::MAX);
    let dir = EntryMetadata::root(0o755, mtime);
    let file = fs::File::create(inputs.out).map_err(io_err(inputs.out))?;
    // Single-threaded zstd: its output does not depend on the machine, which
    // reproducible builds need. The squashfs inside is already compressed,
    // so the level mostly matters for /init and the modules.
    let encoder = zstd::stream::write::Encoder::new(BufWriter::new(file), INITRAMFS_ZSTD_LEVEL)
        .map_err(io_err(inputs.out))?;
    let stage = |e: crate::cpio::CpioError| BuildError::stage("initramfs", e);
    let mut cpio = CpioWriter::new(encoder).with_parent_metadata(dir);
    for name in ["dev", "proc", "sys", "run", "tmp", "newroot"] {
        cpio.directory(name, dir).map_err(stage)?;
    }
    cpio.char_device("dev/console", EntryMetadata::root(0o600, mtime), 5, 1)
        .map_err(stage)?;
    cpio.char_device("dev/null", EntryMetadata::root(0o666, mtime), 1, 3)
        .map_err(stage)?;
    cpio.symlink("lib", EntryMetadata::root(0o777, mtime), "usr/lib")
        .map_err(stage)?;
    cpio.file(
        "init",
        EntryMetadata::root(0o755, mtime),
        &Content::File(inputs.init.to_path_buf()),
    )
    .map_err(stage)?;

    let base = format!("usr/lib/modules/{}", inputs.kernel.version);
    let mut module_files: Vec<(String, PathBuf)> = inputs
        .modules
        .names()
        .filter_map(|name| inputs.kernel.files.get(name))
        .map(|relative| {
            (
                format!("{base}/{}", relative.to_string_lossy()),
                inputs.kernel.dir.join(relative),
            )
        })
        .collect();
    module_files.sort();
    // Parent directories are written by the cpio writer with `dir`'s
    // metadata as the first entry inside each needs them.
    let dep_name = format!("{base}/modules.dep");
    cpio.file_from_bytes(
        &dep_name,
        EntryMetadata::root(0o644, mtime),
        inputs.modules.modules_dep(inputs.kernel).as_bytes(),
    )
    .map_err(stage)?;
    for (name, source) in &module_files {
        cpio.file(
            name,
            EntryMetadata::root(0o644, mtime),
            &Content::File(source.clone()),
        )
        .map_err(stage)?;
    }
    cpio.file(
        "rootfs.squashfs",
        EntryMetadata::root(0o644, mtime),
        &Content::File(inputs.squashfs.to_path_buf()),
    )
    .map_err(stage)?;
    let encoder = cpio.finish().map_err(stage)?;
    let writer = encoder.finish().map_err(io_err(inputs.out))?;
    let file = writer.into_inner().map_err(|e| BuildError::Io {
        path: inputs.out.to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(inputs.out))?;
    Ok(())
}

/// An iPXE script that boots the kernel and initramfs served next to it.
pub fn ipxe_script(cmdline: &str) -> String {
    format!(
        "#!ipxe\n# Cairn: serve vmlinuz and initramfs.cpio.zst next to this script.\nkernel vmlinuz initrd=initramfs.cpio.zst {cmdline}\ninitrd initramfs.cpio.zst\nboot\n"
    )
}

const STUB: &str = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const LOADER: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";

fn uefi_file(uefi_root: &Path, relative: &str) -> Result<PathBuf, BuildError> {
    let path = uefi_root.join(relative);
    if path.is_file() {
        Ok(path)
    } else {
        Err(BuildError::Input(format!(
            "the [uefi] package has no {relative} (expected Debian's systemd-boot-efi)"
        )))
    }
}

pub fn write_uki(
    uefi_root: &Path,
    vmlinuz: &Path,
    initramfs: &Path,
    cmdline: &str,
    os_release: &str,
    out: &Path,
) -> Result<(), BuildError> {
    let stub = uefi_file(uefi_root, STUB)?;
    crate::uki::build_uki(
        &crate::uki::UkiInputs {
            stub,
            os_release: Content::Bytes(os_release.as_bytes().to_vec()),
            cmdline: Content::Bytes(cmdline.as_bytes().to_vec()),
            linux: Content::File(vmlinuz.to_path_buf()),
            initrd: Content::File(initramfs.to_path_buf()),
        },
        out,
    )
    .map_err(|e| BuildError::stage("UKI", e))?;
    Ok(())
}

/// Size reserved for STATE in the shipped disk; node-agent formats it on
/// first boot and grows it to the end of the (resized) disk.
const STATE_SIZE: u64 = 16 * 1024 * 1024;

pub fn write_disk(
    uefi_root: &Path,
    uki: &Path,
    digest: &str,
    source_date_epoch: u64,
    work: &Path,
    out: &Path,
) -> Result<(), BuildError> {
    let loader = uefi_file(uefi_root, LOADER)?;
    let seed = digest.as_bytes();
    let files = vec![
        EspFile {
            path: "EFI/BOOT/BOOTX64.EFI".to_owned(),
            content: Content::File(loader.clone()),
        },
        EspFile {
            path: "EFI/systemd/systemd-bootx64.efi".to_owned(),
            content: Content::File(loader),
        },
        EspFile {
            path: "loader/loader.conf".to_owned(),
            content: Content::Bytes(
                b"default cairn-a.efi\ntimeout 0\nconsole-mode keep\neditor no\n".to_vec(),
            ),
        },
        EspFile {
            path: "EFI/Linux/cairn-a.efi".to_owned(),
            content: Content::File(uki.to_path_buf()),
        },
    ];
    let uki_size = fs::metadata(uki).map_err(io_err(uki))?.len();
    let esp_path = work.join("esp.img");
    let volume_seed = gpt::guid_from_seed(seed, "esp-volume-id");
    let volume_id = u32::from_le_bytes([
        volume_seed[0],
        volume_seed[1],
        volume_seed[2],
        volume_seed[3],
    ]);
    fat::build_esp(
        &files,
        &EspOptions {
            volume_id,
            label: "CAIRN-ESP".to_owned(),
            source_date_epoch,
            // Room for slot B: an upgrade writes the next UKI beside slot A.
            reserve: Some(uki_size + uki_size / 4),
        },
        &esp_path,
    )
    .map_err(|e| BuildError::stage("ESP", e))?;
    let esp_size = fs::metadata(&esp_path).map_err(io_err(&esp_path))?.len();
    let spec = DiskSpec {
        disk_guid: Guid(gpt::guid_from_seed(seed, "disk")),
        disk_size: None,
        partitions: vec![
            PartitionSpec {
                name: "EFI System Partition".to_owned(),
                type_guid: gpt::EFI_SYSTEM_PARTITION,
                unique_guid: Guid(gpt::guid_from_seed(seed, "esp")),
                size: PartitionSize::Bytes(esp_size),
                attributes: 0,
                content: Some(Content::File(esp_path.clone())),
            },
            PartitionSpec {
                name: "CAIRN-STATE".to_owned(),
                type_guid: gpt::LINUX_FILESYSTEM,
                unique_guid: Guid(gpt::guid_from_seed(seed, "state")),
                size: PartitionSize::Bytes(STATE_SIZE),
                attributes: 0,
                content: None,
            },
        ],
    };
    gpt::write_disk(&spec, out).map_err(|e| BuildError::stage("GPT disk", e))?;
    Ok(())
}

pub fn write_qcow2(raw: &Path, out: &Path) -> Result<(), BuildError> {
    crate::qcow2::raw_to_qcow2(raw, out).map_err(|e| BuildError::stage("qcow2", e))?;
    Ok(())
}
