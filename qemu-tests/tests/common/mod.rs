//! Shared fixture: the default image, built once per test binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cairn_images::build::{BuildOptions, PackageSource, build};
use cairn_images::fetch::cache;

/// A fixed timestamp so every build in the suite is comparable.
pub const EPOCH: u64 = 1_700_000_000;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("qemu-tests sits inside the workspace")
        .to_path_buf()
}

pub fn test_dir(name: &str) -> PathBuf {
    workspace().join("target/cairn-test").join(name)
}

pub fn options(out: PathBuf, no_reuse: bool) -> BuildOptions {
    BuildOptions {
        profile: workspace().join("profiles/default.toml"),
        out,
        cache: cache::default_root(),
        jobs: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        source_date_epoch: EPOCH,
        packages: PackageSource::Apt,
        binaries_dir: None,
        workspace: Some(workspace()),
        refresh: false,
        no_reuse,
    }
}

/// The default profile built into `target/cairn-test/image`, once.
pub fn image() -> &'static Path {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = IMAGE.get_or_init(|| {
        let out = test_dir("image");
        build(&options(out.clone(), false))
            .map(|_| out)
            .map_err(|e| format!("building profiles/default.toml failed: {e}"))
    });
    match built {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}
