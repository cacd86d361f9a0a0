//! Extraction tests on `.deb` files built here, byte by byte, so that
//! malformed and hostile packages can be made too.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::profile::Architecture;

/// One entry of a test data archive, with its name written verbatim.
enum Item {
    Dir(&'static str, u32),
    File(&'static str, u32, &'static [u8]),
    Owned(&'static str, u32, u64, u64, &'static [u8]),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    Fifo(&'static str),
}

/// Builds a tar archive, bypassing the tar crate's own path checks so that
/// hostile names (`../x`, `/x`) can be written.
fn tar_bytes(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        let (name, data): (&str, &[u8]) = match *item {
            Item::Dir(name, mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(mode);
                (name, b"")
            }
            Item::File(name, mode, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(mode);
                (name, data)
            }
            Item::Owned(name, mode, uid, gid, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(mode);
                header.set_uid(uid);
                header.set_gid(gid);
                (name, data)
            }
            Item::Symlink(name, target) | Item::Hardlink(name, target) => {
                let kind = if matches!(item, Item::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                header.set_entry_type(kind);
                header.set_mode(0o777);
                let link = &mut header.as_old_mut().linkname;
                link[..target.len()].copy_from_slice(target.as_bytes());
                (name, b"")
            }
            Item::Fifo(name) => {
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_mode(0o644);
                (name, b"")
            }
        };
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).expect("append tar entry");
    }
    builder.into_inner().expect("finish tar")
}

#[derive(Clone, Copy, Debug)]
enum Packing {
    Plain,
    Gzip,
    Xz,
    Zstd,
}

fn compress(packing: Packing, data: &[u8]) -> (&'static str, Vec<u8>) {
    match packing {
        Packing::Plain => ("", data.to_vec()),
        Packing::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(data).expect("gzip");
            (".gz", encoder.finish().expect("gzip"))
        }
        Packing::Xz => {
            let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
            encoder.write_all(data).expect("xz");
            (".xz", encoder.finish().expect("xz"))
        }
        Packing::Zstd => (".zst", zstd::encode_all(data, 1).expect("zstd")),
    }
}

fn ar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let header = format!(
        "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
        name,
        0,
        0,
        0,
        "100644",
        data.len()
    );
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(b'\n');
    }
}

fn control_text(package: &str) -> String {
    format!(
        "Package: {package}\nVersion: 1.2-3\nArchitecture: amd64\n\
         Depends: libc6 (>= 2.36), runc | crun\nDescription: test package\n"
    )
}

/// A complete `.deb`: `debian-binary`, `control.tar.<packing>`, `data.tar.<packing>`.
fn deb_bytes(package: &str, packing: Packing, items: &[Item]) -> Vec<u8> {
    let text = control_text(package);
    let mut control = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_path("./control").expect("control path");
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    control
        .append(&header, text.as_bytes())
        .expect("append control");
    let control = control.into_inner().expect("finish control tar");
    let (control_suffix, control) = compress(packing, &control);
    let (data_suffix, data) = compress(packing, &tar_bytes(items));
    let mut deb = b"!<arch>\n".to_vec();
    ar_member(&mut deb, "debian-binary", b"2.0\n");
    ar_member(&mut deb, &format!("control.tar{control_suffix}"), &control);
    ar_member(&mut deb, &format!("data.tar{data_suffix}"), &data);
    deb
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn deb(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, bytes).expect("write deb");
        path
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

fn sample_items() -> Vec<Item> {
    vec![
        Item::Dir("./", 0o755),
        Item::Dir("./bin/", 0o755),
        Item::File("./bin/tool", 0o755, b"#!/bin/sh\necho tool\n"),
        Item::Dir("./usr/", 0o755),
        Item::Dir("./usr/share/", 0o755),
        Item::Dir("./usr/share/doc/", 0o755),
        Item::Dir("./usr/share/doc/sample/", 0o755),
        Item::File("./usr/share/doc/sample/copyright", 0o644, b"GPL\n"),
        Item::Dir("./etc/", 0o755),
        Item::File("./etc/sample.conf", 0o600, b"key=value\n"),
        Item::Owned("./etc/shadow-ish", 0o640, 0, 42, b"secret\n"),
        Item::Symlink("./usr/bin/tool-alias", "tool"),
        Item::Symlink("./lib/libsample.so", "/lib/libsample.so.1"),
        Item::Hardlink("./usr/bin/tool-hard", "./bin/tool"),
        Item::Dir("./usr/lib/readonly/", 0o555),
        Item::File("./usr/lib/readonly/data", 0o444, b"ro\n"),
        Item::File("./usr/sbin/setuid-helper", 0o4755, b"\x7fELF"),
    ]
}

fn find<'a>(package: &'a ExtractedPackage, path: &str) -> &'a ExtractedEntry {
    package
        .entries
        .iter()
        .find(|entry| entry.path == Path::new(path))
        .unwrap_or_else(|| panic!("no entry {path} in {:#?}", package.entries))
}

#[test]
fn extracts_every_compression_the_same_way() -> Result<(), DebError> {
    for packing in [Packing::Plain, Packing::Gzip, Packing::Xz, Packing::Zstd] {
        let fixture = Fixture::new();
        let deb = fixture.deb("sample.deb", &deb_bytes("sample", packing, &sample_items()));
        let root = fixture.root();
        let package = extract(&deb, &root, &ExtractOptions::default())?;

        assert_eq!(package.control.package.as_str(), "sample", "{packing:?}");
        assert_eq!(package.control.version, "1.2-3");
        assert_eq!(package.skipped, 0);
        assert_eq!(
            fs::read_to_string(root.join("usr/bin/tool")).expect("tool extracted"),
            "#!/bin/sh\necho tool\n",
            "{packing:?}: bin/ is usr-merged"
        );
        assert!(!root.join("bin").exists(), "no legacy bin/ directory");
        let tool = find(&package, "usr/bin/tool");
        assert_eq!(
            (tool.kind, tool.mode, tool.size),
            (EntryKind::File, 0o755, 20)
        );
        assert_eq!(find(&package, "usr/bin").kind, EntryKind::Directory);
    }
    Ok(())
}

#[test]
fn records_modes_ownership_and_links() -> Result<(), DebError> {
    let fixture = Fixture::new();
    let deb = fixture.deb(
        "sample.deb",
        &deb_bytes("sample", Packing::Xz, &sample_items()),
    );
    let root = fixture.root();
    let package = extract(&deb, &root, &ExtractOptions::default())?;

    let conf = find(&package, "etc/sample.conf");
    assert_eq!((conf.mode, conf.uid, conf.gid), (0o600, 0, 0));
    let shadow = find(&package, "etc/shadow-ish");
    assert_eq!((shadow.mode, shadow.gid), (0o640, 42));
    assert_eq!(find(&package, "usr/sbin/setuid-helper").mode, 0o4755);
    let on_disk = fs::metadata(root.join("etc/sample.conf")).expect("conf on disk");
    assert_eq!(on_disk.permissions().mode() & 0o7777, 0o600);

    let alias = find(&package, "usr/bin/tool-alias");
    assert_eq!(alias.kind, EntryKind::Symlink);
    assert_eq!(alias.link_target.as_deref(), Some(Path::new("tool")));
    assert_eq!(
        fs::read_link(root.join("usr/bin/tool-alias")).expect("symlink"),
        Path::new("tool")
    );
    let so = find(&package, "usr/lib/libsample.so");
    assert_eq!(
        so.link_target.as_deref(),
        Some(Path::new("/lib/libsample.so.1"))
    );

    let hard = find(&package, "usr/bin/tool-hard");
    assert_eq!(hard.kind, EntryKind::Hardlink);
    assert_eq!(hard.link_target.as_deref(), Some(Path::new("usr/bin/tool")));
    assert_eq!(hard.size, 20);
    let original = fs::metadata(root.join("usr/bin/tool")).expect("tool");
    let linked = fs::metadata(root.join("usr/bin/tool-hard")).expect("hardlink");
    assert_eq!(original.ino(), linked.ino());

    // The read-only directory is recorded as shipped but stays writable for
    // the builder.
    let readonly = find(&package, "usr/lib/readonly");
    assert_eq!(readonly.mode, 0o555);
    let on_disk = fs::metadata(root.join("usr/lib/readonly")).expect("dir");
    assert_eq!(on_disk.permissions().mode() & 0o777, 0o755);
    assert_eq!(find(&package, "usr/lib/readonly/data").mode, 0o444);

    // Parent directories the archive never listed are recorded as created.
    let implicit = find(&package, "usr/lib");
    assert_eq!(
        (implicit.kind, implicit.mode, implicit.uid),
        (EntryKind::Directory, 0o755, 0)
    );
    Ok(())
}

#[test]
fn excludes_and_includes_are_applied_after_usr_merge() -> Result<(), DebError> {
    let fixture = Fixture::new();
    let deb = fixture.deb(
        "sample.deb",
        &deb_bytes("sample", Packing::Gzip, &sample_items()),
    );

    let root = fixture.dir.path().join("excluded");
    let options = ExtractOptions {
        include: Vec::new(),
        exclude: vec![
            "usr/share/doc/**".parse().expect("glob"),
            "usr/lib/readonly".parse().expect("glob"),
            "usr/lib/readonly/**".parse().expect("glob"),
        ],
    };
    let package = extract(&deb, &root, &options)?;
    assert!(!root.join("usr/share/doc/sample").exists());
    assert!(
        root.join("usr/share/doc").is_dir(),
        "the directory itself is kept"
    );
    assert!(!root.join("usr/lib/readonly").exists());
    assert_eq!(package.skipped, 4);

    let root = fixture.dir.path().join("included");
    let options = ExtractOptions {
        include: vec!["usr/bin/*".parse().expect("glob")],
        exclude: vec!["usr/bin/tool-alias".parse().expect("glob")],
    };
    let package = extract(&deb, &root, &options)?;
    let mut paths: Vec<&Path> = package.entries.iter().map(|e| e.path.as_path()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            Path::new("usr"),
            Path::new("usr/bin"),
            Path::new("usr/bin/tool"),
            Path::new("usr/bin/tool-hard"),
        ]
    );
    assert!(!root.join("etc").exists());
    Ok(())
}

#[test]
fn hardlink_to_a_filtered_file_is_a_clear_error() {
    let fixture = Fixture::new();
    let deb = fixture.deb(
        "sample.deb",
        &deb_bytes("sample", Packing::Plain, &sample_items()),
    );
    let options = ExtractOptions {
        include: Vec::new(),
        exclude: vec!["usr/bin/tool".parse().expect("glob")],
    };
    let error = extract(&deb, &fixture.root(), &options).expect_err("dangling hardlink");
    let text = error.to_string();
    assert!(matches!(error, DebError::Conflict { .. }), "{text}");
    assert!(
        text.contains("package sample") && text.contains("./usr/bin/tool-hard"),
        "{text}"
    );
    assert!(text.contains("left out"), "{text}");
}

/// Extracts a one-package archive expected to be refused and returns the error.
fn refused(items: &[Item]) -> (DebError, Fixture) {
    let fixture = Fixture::new();
    let deb = fixture.deb("evil.deb", &deb_bytes("evil", Packing::Xz, items));
    let error = extract(&deb, &fixture.root(), &ExtractOptions::default())
        .expect_err("hostile package must be refused");
    (error, fixture)
}

fn assert_unsafe(error: &DebError, entry: &str, reason: &str) {
    match error {
        DebError::UnsafeEntry {
            package,
            entry: found,
            reason: why,
        } => {
            assert_eq!(package, "evil");
            assert_eq!(found, entry);
            assert!(why.contains(reason), "{error}");
        }
        other => panic!("expected UnsafeEntry for {entry}, got {other}"),
    }
    let text = error.to_string();
    assert!(
        text.contains("package evil") && text.contains(entry),
        "{text}"
    );
}

#[test]
fn refuses_parent_directory_entries() {
    let (error, fixture) = refused(&[Item::File(
        "../etc/passwd",
        0o644,
        b"root::0:0::/:/bin/sh\n",
    )]);
    assert_unsafe(&error, "../etc/passwd", "`..`");
    assert!(!fixture.dir.path().join("etc/passwd").exists());

    let (error, _) = refused(&[Item::File("./usr/../../escape", 0o644, b"x")]);
    assert_unsafe(&error, "./usr/../../escape", "`..`");
}

#[test]
fn refuses_absolute_entries() {
    let (error, _) = refused(&[Item::File("/etc/passwd", 0o644, b"root::0:0::/:/bin/sh\n")]);
    assert_unsafe(&error, "/etc/passwd", "absolute path");
}

#[test]
fn refuses_symlinks_escaping_the_root_and_files_behind_them() {
    let (error, fixture) = refused(&[
        Item::Dir("./usr/", 0o755),
        Item::Dir("./usr/lib/", 0o755),
        Item::Symlink("./usr/lib/x", "../../../../etc"),
        Item::File("./usr/lib/x/evil", 0o644, b"pwned"),
    ]);
    assert_unsafe(&error, "./usr/lib/x", "resolves outside the root");
    assert!(fs::symlink_metadata(fixture.root().join("usr/lib/x")).is_err());

    let (error, _) = refused(&[Item::Symlink("./usr/lib/y", "/../../etc")]);
    assert_unsafe(&error, "./usr/lib/y", "resolves outside the root");
}

#[test]
fn never_writes_through_a_symlink_even_one_that_stays_inside() {
    // `usr/lib/x -> /etc` is fine inside the image, but following it on the
    // build host would write to the host's /etc.
    let (error, fixture) = refused(&[
        Item::Symlink("./usr/lib/x", "/etc"),
        Item::File("./usr/lib/x/cairn-test-evil", 0o644, b"pwned"),
    ]);
    assert_unsafe(&error, "./usr/lib/x/cairn-test-evil", "symlink");
    assert!(!Path::new("/etc/cairn-test-evil").exists());
    assert!(!fixture.root().join("etc/cairn-test-evil").exists());

    let (error, _) = refused(&[
        Item::Symlink("./usr/lib/d", "../../etc"),
        Item::Dir("./usr/lib/d/", 0o755),
    ]);
    assert_unsafe(&error, "./usr/lib/d/", "already a symlink");
}

#[test]
fn refuses_hardlinks_outside_the_package() {
    let (error, _) = refused(&[Item::Hardlink("./usr/bin/shadow", "../../etc/shadow")]);
    assert_unsafe(&error, "./usr/bin/shadow", "`..`");
    let (error, _) = refused(&[Item::Hardlink("./usr/bin/shadow", "/etc/shadow")]);
    assert_unsafe(&error, "./usr/bin/shadow", "absolute");
    let (error, _) = refused(&[Item::Hardlink("./usr/bin/shadow", "./etc/shadow")]);
    assert_unsafe(
        &error,
        "./usr/bin/shadow",
        "not a regular file extracted earlier",
    );
}

#[test]
fn refuses_device_nodes_and_fifos() {
    let (error, _) = refused(&[Item::Fifo("./run/fifo")]);
    assert!(matches!(error, DebError::Conflict { .. }), "{error}");
    assert!(error.to_string().contains("./run/fifo"), "{error}");
}

#[test]
fn later_packages_replace_files_but_not_directories() -> Result<(), DebError> {
    let fixture = Fixture::new();
    let root = fixture.root();
    let first = fixture.deb(
        "first.deb",
        &deb_bytes(
            "first",
            Packing::Zstd,
            &[Item::File("./usr/bin/x", 0o755, b"one")],
        ),
    );
    let second = fixture.deb(
        "second.deb",
        &deb_bytes(
            "second",
            Packing::Zstd,
            &[Item::File("./bin/x", 0o755, b"two")],
        ),
    );
    extract(&first, &root, &ExtractOptions::default())?;
    extract(&second, &root, &ExtractOptions::default())?;
    assert_eq!(fs::read(root.join("usr/bin/x")).expect("x"), b"two");

    let third = fixture.deb(
        "third.deb",
        &deb_bytes(
            "third",
            Packing::Zstd,
            &[Item::File("./usr/bin", 0o644, b"oops")],
        ),
    );
    let error = extract(&third, &root, &ExtractOptions::default()).expect_err("dir conflict");
    assert!(matches!(error, DebError::Conflict { .. }), "{error}");
    assert!(error.to_string().contains("package third"), "{error}");
    Ok(())
}

#[test]
fn merged_usr_layout_and_packages_agree() -> Result<(), DebError> {
    let fixture = Fixture::new();
    let root = fixture.root();
    let layout = create_merged_usr_layout(&root, Architecture::Amd64)?;
    assert!(
        layout
            .iter()
            .any(|e| e.path == Path::new("lib64") && e.kind == EntryKind::Symlink)
    );
    // Idempotent.
    create_merged_usr_layout(&root, Architecture::Amd64)?;
    let deb = fixture.deb(
        "sample.deb",
        &deb_bytes(
            "sample",
            Packing::Xz,
            &[
                Item::Symlink("./bin", "usr/bin"),
                Item::Dir("./bin/", 0o755),
                Item::File("./bin/sh", 0o755, b"sh"),
                Item::File("./lib64/ld-linux-x86-64.so.2", 0o755, b"ld"),
            ],
        ),
    );
    let package = extract(&deb, &root, &ExtractOptions::default())?;
    assert_eq!(
        fs::read_link(root.join("bin")).expect("bin link"),
        Path::new("usr/bin")
    );
    assert_eq!(
        fs::read(root.join("bin/sh")).expect("through the layout link"),
        b"sh"
    );
    assert!(root.join("usr/lib64/ld-linux-x86-64.so.2").is_file());
    assert_eq!(package.skipped, 0);
    Ok(())
}

#[test]
fn read_control_parses_fields() -> Result<(), DebError> {
    let fixture = Fixture::new();
    let deb = fixture.deb(
        "sample.deb",
        &deb_bytes("sample", Packing::Gzip, &sample_items()),
    );
    let control = read_control(&deb)?;
    assert_eq!(control.package.as_str(), "sample");
    assert_eq!(control.architecture, "amd64");
    assert_eq!(control.depends.len(), 2);
    assert_eq!(control.depends[0][0].to_string(), "libc6 (>= 2.36)");
    assert_eq!(control.depends[1].len(), 2);
    Ok(())
}

#[test]
fn malformed_packages_are_clear_errors() {
    let fixture = Fixture::new();
    let root = fixture.root();
    let options = ExtractOptions::default();

    let not_ar = fixture.deb("text.deb", b"hello, world\n");
    let error = extract(&not_ar, &root, &options).expect_err("not an ar archive");
    assert!(matches!(error, DebError::Format { .. }), "{error}");
    assert!(error.to_string().contains("text.deb"), "{error}");

    let mut wrong_first = b"!<arch>\n".to_vec();
    ar_member(&mut wrong_first, "control.tar.xz", b"");
    let error = extract(&fixture.deb("first.deb", &wrong_first), &root, &options)
        .expect_err("debian-binary first");
    assert!(
        error.to_string().contains("expected `debian-binary`"),
        "{error}"
    );

    let mut bz2 = b"!<arch>\n".to_vec();
    ar_member(&mut bz2, "debian-binary", b"2.0\n");
    ar_member(&mut bz2, "control.tar.bz2", b"BZh9");
    let error = extract(&fixture.deb("bz2.deb", &bz2), &root, &options).expect_err("bz2");
    assert!(
        matches!(error, DebError::UnsupportedCompression { .. }),
        "{error}"
    );

    let full = deb_bytes("sample", Packing::Xz, &sample_items());
    let mut no_data = b"!<arch>\n".to_vec();
    ar_member(&mut no_data, "debian-binary", b"2.0\n");
    let (_, control) = compress(
        Packing::Plain,
        &tar_bytes(&[Item::File(
            "./control",
            0o644,
            b"Package: sample\nVersion: 1\nArchitecture: all\n",
        )]),
    );
    ar_member(&mut no_data, "control.tar", &control);
    let error =
        extract(&fixture.deb("nodata.deb", &no_data), &root, &options).expect_err("missing data");
    assert!(
        error.to_string().contains("no `data.tar` member"),
        "{error}"
    );

    let truncated = &full[..full.len() - 40];
    let error =
        extract(&fixture.deb("truncated.deb", truncated), &root, &options).expect_err("truncated");
    assert!(matches!(error, DebError::Archive { .. }), "{error}");
    assert!(error.to_string().contains("package sample"), "{error}");

    let mut no_control = b"!<arch>\n".to_vec();
    ar_member(&mut no_control, "debian-binary", b"2.0\n");
    ar_member(
        &mut no_control,
        "control.tar",
        &tar_bytes(&[Item::File("./md5sums", 0o644, b"")]),
    );
    let error = read_control(&fixture.deb("nocontrol.deb", &no_control)).expect_err("no control");
    assert!(matches!(error, DebError::Control { .. }), "{error}");
}

/// A real package from Debian: control fields, usr-merge and every recorded
/// entry present on disk. Needs a `.deb` on the host (set `CAIRN_TEST_DEB`,
/// or have one in /var/cache/apt/archives, e.g. after
/// `apt-get install --download-only busybox-static`).
#[test]
#[ignore = "needs a real .deb: set CAIRN_TEST_DEB or populate /var/cache/apt/archives"]
fn extracts_a_real_debian_package() -> Result<(), DebError> {
    let deb = match std::env::var_os("CAIRN_TEST_DEB") {
        Some(path) => PathBuf::from(path),
        None => fs::read_dir("/var/cache/apt/archives")
            .expect("read /var/cache/apt/archives")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
            .expect("no .deb in /var/cache/apt/archives and CAIRN_TEST_DEB unset"),
    };
    let fixture = Fixture::new();
    let root = fixture.root();
    create_merged_usr_layout(&root, Architecture::Amd64)?;
    let options = ExtractOptions {
        include: Vec::new(),
        exclude: vec!["usr/share/doc/**".parse().expect("glob")],
    };
    let started = std::time::Instant::now();
    let package = extract(&deb, &root, &options)?;
    let elapsed = started.elapsed();
    let control = read_control(&deb)?;
    assert_eq!(control, package.control);
    assert!(!package.control.version.is_empty());
    assert!(!package.entries.is_empty());
    let mut bytes = 0;
    for entry in &package.entries {
        assert!(
            !entry.path.starts_with("bin") && !entry.path.starts_with("lib"),
            "{entry:?}"
        );
        let doc = Path::new("usr/share/doc");
        assert!(
            !entry.path.starts_with(doc) || entry.path == doc,
            "{entry:?}"
        );
        let meta = fs::symlink_metadata(root.join(&entry.path))
            .unwrap_or_else(|error| panic!("{} missing: {error}", entry.path.display()));
        match entry.kind {
            EntryKind::File | EntryKind::Hardlink => {
                assert_eq!(meta.len(), entry.size, "{entry:?}");
                bytes += entry.size;
            }
            EntryKind::Directory => assert!(meta.is_dir(), "{entry:?}"),
            EntryKind::Symlink => assert!(meta.file_type().is_symlink(), "{entry:?}"),
        }
    }
    println!(
        "{} {}: {} entries, {} bytes, {} skipped, extracted in {:?}",
        package.control.package,
        package.control.version,
        package.entries.len(),
        bytes,
        package.skipped,
        elapsed
    );
    Ok(())
}
