//! `bootstrap image ...`: thin wrappers over `cairn-images`.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use cairn_images::build::{self, BuildOptions, PackageSource};
use cairn_images::fetch::cache;
use cairn_images::profile::Profile;

use crate::cli::{ImageBuildArgs, ImageCommand, ImageInspectArgs};
use crate::error::BootstrapError;

pub fn run(command: ImageCommand, out: &mut dyn Write) -> Result<(), BootstrapError> {
    match command {
        ImageCommand::Build(args) => run_build(args, out),
        ImageCommand::Show(args) => {
            let profile = Profile::load(&args.profile)?;
            write!(out, "{}", profile.to_toml()?)?;
            Ok(())
        }
        ImageCommand::Inspect(args) => inspect(&args, out),
    }
}

fn run_build(args: ImageBuildArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let source_date_epoch = BuildOptions::default_epoch(&args.profile);
    let options = BuildOptions {
        profile: args.profile,
        out: args.out,
        cache: args.cache.unwrap_or_else(cache::default_root),
        jobs,
        source_date_epoch,
        packages: match args.debs {
            Some(dir) => PackageSource::Directory(dir),
            None => PackageSource::Apt,
        },
        binaries_dir: args.binaries,
        workspace: None,
        refresh: args.refresh,
        no_reuse: args.no_reuse,
    };
    let report = build::build(&options)?;
    writeln!(
        out,
        "built {} ({} packages)",
        report.out.display(),
        report.packages
    )?;
    for (stage, duration) in &report.stages {
        writeln!(out, "  {:>8.2}s  {stage}", duration.as_secs_f64())?;
    }
    for (name, size) in &report.outputs {
        writeln!(out, "  {:>12}  {name}", human_size(*size))?;
    }
    Ok(())
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn inspect(args: &ImageInspectArgs, out: &mut dyn Write) -> Result<(), BootstrapError> {
    let manifest_path = args.dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).map_err(|source| BootstrapError::Read {
        path: manifest_path.clone(),
        source,
    })?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        BootstrapError::Inspect(format!(
            "{}: not a Cairn manifest ({e})",
            manifest_path.display()
        ))
    })?;
    let profile = &manifest["profile"];
    writeln!(
        out,
        "image {} {} (profile digest {})",
        profile["name"].as_str().unwrap_or("?"),
        profile["version"].as_str().unwrap_or("?"),
        profile["digest"].as_str().unwrap_or("?")
    )?;
    let kernel = &manifest["kernel"];
    writeln!(
        out,
        "kernel {} ({}), cmdline: {}",
        kernel["version"].as_str().unwrap_or("?"),
        kernel["package"].as_str().unwrap_or("?"),
        kernel["cmdline"].as_str().unwrap_or("")
    )?;
    writeln!(out, "\nOUTPUT                    SIZE  SHA256")?;
    for output in manifest["outputs"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "{:<20} {:>10}  {}",
            output["name"].as_str().unwrap_or("?"),
            human_size(output["size"].as_u64().unwrap_or(0)),
            output["sha256"].as_str().unwrap_or("?")
        )?;
    }
    let packages = manifest["packages"].as_array().cloned().unwrap_or_default();
    writeln!(out, "\nPACKAGES ({})", packages.len())?;
    for package in &packages {
        writeln!(
            out,
            "  {:<40} {:<32} {:>10}",
            package["name"].as_str().unwrap_or("?"),
            package["version"].as_str().unwrap_or("?"),
            human_size(package["size"].as_u64().unwrap_or(0))
        )?;
    }
    for binary in manifest["binaries"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  {:<40} (cairn)",
            binary["name"].as_str().unwrap_or("?")
        )?;
    }
    if args.files {
        let squashfs = args.dir.join("rootfs.squashfs");
        writeln!(out, "\nFILES ({})", squashfs.display())?;
        write!(out, "{}", list_squashfs(&squashfs)?)?;
    }
    Ok(())
}

/// `unsquashfs -lls` of the root filesystem.
pub fn list_squashfs(squashfs: &Path) -> Result<String, BootstrapError> {
    let output = Command::new("unsquashfs")
        .args(["-lls", "-d", ""])
        .arg(squashfs)
        .output()
        .map_err(|e| {
            BootstrapError::Inspect(format!(
                "cannot run unsquashfs ({e}); install squashfs-tools"
            ))
        })?;
    if !output.status.success() {
        return Err(BootstrapError::Inspect(format!(
            "unsquashfs failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
