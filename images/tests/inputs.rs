//! Inputs other than apt: URL artifacts served by a local HTTP server (a
//! single file and a release tarball) and a directory of `.deb` files.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_images::build::{BuildOptions, PackageSource, build};
use cairn_images::fetch::apt::{AptError, AptRepository, resolve_from_dir};
use cairn_images::fetch::cache::{self, Cache};
use sha2::{Digest, Sha256};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("images sits inside the workspace")
        .to_path_buf()
}

/// Serves each `(path, body)` on a loopback port.
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let read = stream.read(&mut request).unwrap_or(0);
            let text = String::from_utf8_lossy(&request[..read]);
            let path = text.split_whitespace().nth(1).unwrap_or("/");
            let response = match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    format!("http://{addr}")
}

fn release_tarball() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o755);
    header.set_cksum();
    builder
        .append_data(&mut header, "tool-1.0/bin/hello", &b"hello\n"[..])
        .expect("append");
    let tar = builder.into_inner().expect("tar");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&tar).expect("gzip");
    encoder.finish().expect("gzip")
}

#[test]
fn url_artifacts_land_in_the_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let single = b"#!/bin/sh\necho tool\n".to_vec();
    let tarball = release_tarball();
    let single_sha = hex::encode(Sha256::digest(&single));
    let tarball_sha = hex::encode(Sha256::digest(&tarball));
    let base = serve(vec![("/tool", single), ("/tool-1.0.tar.gz", tarball)]);
    let profile = dir.path().join("test.toml");
    std::fs::write(
        &profile,
        format!(
            "extends = {:?}\nname = \"artifacts\"\n\n[[artifact]]\nurl = \"{base}/tool\"\nsha256 = {single_sha:?}\nto = \"usr/local/bin/tool\"\nmode = \"0755\"\n\n[[artifact]]\nurl = \"{base}/tool-1.0.tar.gz\"\nsha256 = {tarball_sha:?}\nunpack-to = \"opt/tool\"\nstrip-components = 1\n\n[remove]\noutputs = [\"vmlinuz\", \"initramfs\", \"uki\", \"disk-raw\", \"disk-qcow2\", \"ipxe\"]\n",
            workspace().join("profiles/base.toml").display().to_string()
        ),
    )
    .expect("write profile");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::write(bin.join("node-agent"), "#!/bin/sh\n").expect("write");
    let out = dir.path().join("out");
    build(&BuildOptions {
        profile,
        out: out.clone(),
        cache: cache::default_root(),
        jobs: 2,
        source_date_epoch: 1_700_000_000,
        packages: PackageSource::Apt,
        binaries_dir: Some(bin),
        workspace: None,
        refresh: false,
        no_reuse: true,
    })
    .expect("build with URL artifacts");
    let listing = Command::new("unsquashfs")
        .args(["-lls", "-d", ""])
        .arg(out.join("rootfs.squashfs"))
        .output()
        .expect("unsquashfs");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let line = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing from the image:\n{listing}"))
            .to_owned()
    };
    assert!(
        line("/usr/local/bin/tool").starts_with("-rwxr-xr-x root/root"),
        "{}",
        line("/usr/local/bin/tool")
    );
    assert!(
        line("/opt/tool/bin/hello").starts_with("-rwxr-xr-x"),
        "{}",
        line("/opt/tool/bin/hello")
    );
    assert!(
        !listing.contains("tool-1.0"),
        "strip-components dropped the top folder"
    );
    // Only the outputs asked for, plus manifest and SBOM.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cmdline",
            "manifest.json",
            "rootfs.squashfs",
            "sbom.spdx.json"
        ]
    );
}

#[test]
fn a_directory_of_debs_is_a_package_source() {
    let cache = Cache::open(cache::default_root()).expect("cache");
    // Real packages, fetched once through apt, then offered as a directory.
    let fetched = AptRepository::new(&cache)
        .fetch(&cache, &["busybox-static".to_owned()], &BTreeSet::new())
        .expect("fetch busybox-static");
    let dir = tempfile::tempdir().expect("tempdir");
    for package in &fetched {
        std::fs::copy(
            &package.path,
            dir.path().join(format!("{}.deb", package.name)),
        )
        .expect("copy");
    }
    let resolved = resolve_from_dir(
        &cache,
        dir.path(),
        &["busybox-static".to_owned()],
        &BTreeSet::new(),
    )
    .expect("resolve from directory");
    let names: Vec<&str> = resolved.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["busybox-static"]);
    assert_eq!(resolved[0].version, fetched[0].version);
    assert_eq!(resolved[0].sha256, fetched[0].sha256);

    let err = resolve_from_dir(
        &cache,
        dir.path(),
        &["containerd".to_owned()],
        &BTreeSet::new(),
    )
    .expect_err("not in the directory");
    assert!(
        matches!(err, AptError::UnknownPackages { ref names } if names == &["containerd"]),
        "{err}"
    );
}
