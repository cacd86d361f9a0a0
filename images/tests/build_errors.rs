//! Bad input to `image build`: each case fails with a clear error, leaves
//! no output directory behind and puts nothing wrong into the cache.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use cairn_images::build::{BuildError, BuildOptions, PackageSource, build};
use cairn_images::fetch::cache::{self, Cache};
use sha2::{Digest, Sha256};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("images sits inside the workspace")
        .to_path_buf()
}

/// A profile extending the shipped base profile, plus `extra` TOML.
fn profile(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("test.toml");
    let base = workspace().join("profiles/base.toml");
    std::fs::write(
        &path,
        format!(
            "extends = {:?}\nname = \"test\"\n{extra}\n",
            base.display().to_string()
        ),
    )
    .expect("write profile");
    path
}

/// Stand-in binaries: these cases fail before anything runs them.
fn fake_binaries(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::write(bin.join("node-agent"), "#!/bin/sh\n").expect("write");
    bin
}

fn options(dir: &Path, profile: PathBuf, cache: PathBuf) -> BuildOptions {
    BuildOptions {
        profile,
        out: dir.join("out"),
        cache,
        jobs: 2,
        source_date_epoch: 1_700_000_000,
        packages: PackageSource::Apt,
        binaries_dir: Some(fake_binaries(dir)),
        workspace: None,
        refresh: false,
        no_reuse: true,
    }
}

/// Nothing but the inputs the test wrote may be left in `dir`.
fn assert_no_output(dir: &Path) {
    assert!(
        !dir.join("out").exists(),
        "a failed build left an output directory"
    );
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cairn-build-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging directories left behind: {leftovers:?}"
    );
}

/// Serves `body` for every request on a loopback port.
fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_malformed_profile_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = profile(dir.path(), "[kernel]\ncmdline = [\"console=ttyS0\"\n");
    let err = build(&options(dir.path(), path, dir.path().join("cache"))).expect_err("malformed");
    let text = err.to_string();
    assert!(matches!(err, BuildError::Profile(_)), "{text}");
    assert!(text.contains("test.toml:"), "the file is named: {text}");
    assert_no_output(dir.path());
}

#[test]
fn an_unknown_key_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = profile(dir.path(), "[kernel]\ncmdlin = [\"console=ttyS0\"]\n");
    let err = build(&options(dir.path(), path, dir.path().join("cache"))).expect_err("unknown key");
    let text = err.to_string();
    assert!(
        text.contains("cmdlin") && text.contains("test.toml:"),
        "{text}"
    );
    assert_no_output(dir.path());
}

#[test]
fn an_unknown_package_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = profile(dir.path(), "packages = [\"cairn-no-such-package\"]\n");
    let err =
        build(&options(dir.path(), path, cache::default_root())).expect_err("unknown package");
    let text = err.to_string();
    assert!(
        text.contains("unknown Debian package(s): cairn-no-such-package"),
        "{text}"
    );
    assert_no_output(dir.path());
}

#[test]
fn a_sha256_mismatch_is_refused_and_not_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = b"the served bytes".to_vec();
    let served_sha = hex::encode(Sha256::digest(&body));
    let pinned_sha = hex::encode(Sha256::digest(b"what the profile expects"));
    let url = format!("{}/tool", serve(body));
    let path = profile(
        dir.path(),
        &format!(
            "[[artifact]]\nurl = {url:?}\nsha256 = {pinned_sha:?}\nto = \"usr/bin/tool\"\nmode = \"0755\"\n"
        ),
    );
    let cache_dir = dir.path().join("cache");
    let err = build(&options(dir.path(), path, cache_dir.clone())).expect_err("mismatch");
    let text = err.to_string();
    assert!(
        text.contains("sha256 mismatch")
            && text.contains(&pinned_sha)
            && text.contains(&served_sha),
        "{text}"
    );
    let cache = Cache::open(&cache_dir).expect("cache");
    assert!(
        !cache.contains(&pinned_sha) && !cache.contains(&served_sha),
        "the cache was poisoned"
    );
    let temporaries = std::fs::read_dir(cache_dir.join("tmp"))
        .expect("tmp")
        .count();
    assert_eq!(temporaries, 0, "a rejected download was left in the cache");
    assert_no_output(dir.path());
}

/// A tar.gz whose only entry is `name`, written without the checks a tar
/// library applies, as a hostile archive would be.
fn hostile_tar_gz(name: &str) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..107].copy_from_slice(b"0000644");
    header[108..115].copy_from_slice(b"0000000");
    header[116..123].copy_from_slice(b"0000000");
    header[124..135].copy_from_slice(b"00000000004");
    header[136..147].copy_from_slice(b"00000000000");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let checksum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..155].copy_from_slice(format!("{checksum:06o}\0").as_bytes());
    let mut tar = header.to_vec();
    let mut data = [0u8; 512];
    data[..4].copy_from_slice(b"evil");
    tar.extend_from_slice(&data);
    tar.extend_from_slice(&[0u8; 1024]);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&tar).expect("gzip");
    encoder.finish().expect("gzip")
}

#[test]
fn an_archive_escaping_the_root_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = hostile_tar_gz("../../etc/evil");
    let sha = hex::encode(Sha256::digest(&body));
    let url = format!("{}/hostile.tar.gz", serve(body));
    let path = profile(
        dir.path(),
        &format!("[[artifact]]\nurl = {url:?}\nsha256 = {sha:?}\nunpack-to = \"opt/tool\"\n"),
    );
    let err = build(&options(dir.path(), path, cache::default_root())).expect_err("escape");
    let text = err.to_string();
    assert!(text.contains("escapes the unpack directory"), "{text}");
    assert_no_output(dir.path());
    assert!(!dir.path().join("etc/evil").exists());
}

#[test]
fn a_full_disk_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "cairn-test-full"])
        .arg(&small)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "mounting a small tmpfs needs root (the test suite runs as root)"
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&small);
    let path = profile(dir.path(), "");
    let mut options = options(dir.path(), path, cache::default_root());
    options.out = small.join("out");
    let err = build(&options).expect_err("disk full");
    let text = err.to_string();
    assert!(text.contains("No space left on device"), "{text}");
    let left: Vec<_> = std::fs::read_dir(&small).expect("read").collect();
    assert!(
        left.is_empty(),
        "a failed build left files on the full disk: {left:?}"
    );
}
