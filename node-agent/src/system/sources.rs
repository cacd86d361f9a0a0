//! Where a node's machine config comes from, in order (Bottlerocket's
//! early-boot-config and Talos's `talos.config=` in one list):
//!
//! 1. **STATE**: the config applied on an earlier boot,
//!    `/var/lib/cairn/config.toml`. A configured node keeps its config
//!    across reboots even when the URL or drive it came from is gone.
//! 2. **`cairn.config=<url>`** on the kernel command line, `${mac}`,
//!    `${hostname}` and `${uuid}` substituted, fetched with retries and
//!    backoff (the network and the server may both still be coming up).
//! 3. **A NoCloud drive**: a block device whose vfat or iso9660 filesystem
//!    is labelled `cidata` (any case); its `user-data` file is the TOML.
//!    FAT is read in user space; iso9660 is mounted read-only.
//! 4. **The image**: `/usr/lib/cairn/machine-config.toml`, baked in by a
//!    profile's `[[files]]`.
//!
//! The first source that has a config wins; whether that config is valid
//! is the caller's business (an invalid config means maintenance mode, not
//! a fall-through to the next source, so a typo is never papered over).

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const STATE_CONFIG: &str = "/var/lib/cairn/config.toml";
pub const IMAGE_CONFIG: &str = "/usr/lib/cairn/machine-config.toml";
/// The NoCloud label, compared without regard to case.
pub const CIDATA_LABEL: &str = "cidata";
/// The largest config a source may hand over.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Where a config came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    State,
    Url(String),
    Cidata(PathBuf),
    Image,
    /// `POST /v1/config` in maintenance mode.
    Api,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::State => write!(f, "STATE ({STATE_CONFIG})"),
            Source::Url(url) => write!(f, "cairn.config={url}"),
            Source::Cidata(device) => write!(f, "cidata drive {}", device.display()),
            Source::Image => write!(f, "image ({IMAGE_CONFIG})"),
            Source::Api => write!(f, "node API"),
        }
    }
}

/// A config text and its source.
#[derive(Debug, Clone)]
pub struct Found {
    pub source: Source,
    pub text: String,
}

/// A config file that exists, or None.
pub fn read_file(path: &Path, source: Source) -> Result<Option<Found>, String> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() as u64 > MAX_CONFIG_BYTES => Err(format!(
            "{}: larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        )),
        Ok(bytes) => String::from_utf8(bytes)
            .map(|text| Some(Found { source, text }))
            .map_err(|_| format!("{}: not UTF-8 text", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("{}: {error}", path.display())),
    }
}

/// GETs `url` until it answers 200 or `deadline` passes, backing off from
/// 1 s to 15 s between tries. `progress` hears about each failure.
pub fn fetch_url(url: &str, deadline: Duration, progress: &dyn Fn(&str)) -> Result<String, String> {
    let started = Instant::now();
    let mut delay = Duration::from_secs(1);
    loop {
        let error = match super::fetch::get(url, MAX_CONFIG_BYTES) {
            Ok(body) => {
                return String::from_utf8(body).map_err(|_| format!("{url}: not UTF-8 text"));
            }
            Err(error) => error,
        };
        if started.elapsed() + delay > deadline {
            return Err(format!(
                "{url}: {error} (gave up after {} s)",
                started.elapsed().as_secs()
            ));
        }
        progress(&format!(
            "fetching {url}: {error}; retrying in {} s",
            delay.as_secs()
        ));
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}

/// A filesystem kind recognised from its first 64 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filesystem {
    Fat,
    Iso9660,
}

/// The filesystem and label a device's first bytes announce.
pub fn probe_label(head: &[u8]) -> Option<(Filesystem, String)> {
    let text = |range: std::ops::Range<usize>| {
        head.get(range)
            .map(|bytes| String::from_utf8_lossy(bytes).trim_end().to_owned())
    };
    if head.get(0x8001..0x8006) == Some(b"CD001") && head.get(0x8000) == Some(&1) {
        return text(0x8028..0x8048).map(|label| (Filesystem::Iso9660, label));
    }
    if head.get(510..512) == Some(&[0x55, 0xAA]) {
        if head.get(82..87) == Some(b"FAT32") {
            return text(71..82).map(|label| (Filesystem::Fat, label));
        }
        if head.get(54..57) == Some(b"FAT") {
            return text(43..54).map(|label| (Filesystem::Fat, label));
        }
    }
    None
}

/// Block devices (whole disks and partitions, not loop or RAM devices)
/// whose filesystem is labelled `cidata`, from `<sys_class_block>` names
/// and `<dev>/<name>` nodes.
pub fn find_cidata(sys_class_block: &Path, dev: &Path) -> Vec<(PathBuf, Filesystem)> {
    let Ok(entries) = std::fs::read_dir(sys_class_block) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("loop") && !name.starts_with("ram"))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let device = dev.join(&name);
            let mut head = vec![0u8; 0x8800];
            let mut file = std::fs::File::open(&device).ok()?;
            let mut filled = 0;
            while filled < head.len() {
                match file.read(&mut head[filled..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => filled += n,
                }
            }
            head.truncate(filled);
            let (fs, label) = probe_label(&head)?;
            label
                .eq_ignore_ascii_case(CIDATA_LABEL)
                .then_some((device, fs))
        })
        .collect()
}

/// `user-data` from a FAT filesystem on `device`, read in user space: the
/// filesystem is copied into memory (a NoCloud drive is small) so nothing
/// can write to the device.
pub fn read_fat_user_data(device: &Path) -> Result<String, String> {
    let mut file = std::fs::File::open(device).map_err(|e| format!("{}: {e}", device.display()))?;
    let size = file
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("{}: {e}", device.display()))?;
    if size > 256 << 20 {
        return Err(format!(
            "{}: {size} bytes is too large for a cidata drive (limit 256 MiB)",
            device.display()
        ));
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("{}: {e}", device.display()))?;
    let mut image = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.read_to_end(&mut image)
        .map_err(|e| format!("{}: {e}", device.display()))?;
    let fs = fatfs::FileSystem::new(std::io::Cursor::new(image), fatfs::FsOptions::new())
        .map_err(|e| format!("{}: not a readable FAT filesystem: {e}", device.display()))?;
    let mut user_data = fs
        .root_dir()
        .open_file("user-data")
        .map_err(|e| format!("{}: no user-data file: {e}", device.display()))?;
    let mut bytes = Vec::new();
    (&mut user_data)
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: user-data: {e}", device.display()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "{}: user-data is larger than {MAX_CONFIG_BYTES} bytes",
            device.display()
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{}: user-data is not UTF-8", device.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fat_image(label: &[u8; 11], user_data: Option<&str>) -> Vec<u8> {
        let mut image = std::io::Cursor::new(vec![0u8; 2 << 20]);
        fatfs::format_volume(
            &mut image,
            fatfs::FormatVolumeOptions::new().volume_label(*label),
        )
        .expect("format");
        if let Some(text) = user_data {
            let fs = fatfs::FileSystem::new(&mut image, fatfs::FsOptions::new()).expect("fs");
            let mut file = fs.root_dir().create_file("user-data").expect("create");
            file.write_all(text.as_bytes()).expect("write");
            drop(file);
            fs.unmount().expect("unmount");
        }
        image.into_inner()
    }

    #[test]
    fn cidata_fat_drive_is_found_by_label_and_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sys, dev) = (dir.path().join("sys"), dir.path().join("dev"));
        for name in ["vda", "vdb", "vdc", "loop0"] {
            std::fs::create_dir_all(sys.join(name)).expect("sys");
        }
        std::fs::create_dir_all(&dev).expect("dev");
        std::fs::write(dev.join("vda"), vec![0u8; 64 << 10]).expect("vda");
        std::fs::write(
            dev.join("vdb"),
            fat_image(b"CIDATA     ", Some("[node]\nrole = \"worker\"\n")),
        )
        .expect("vdb");
        std::fs::write(dev.join("vdc"), fat_image(b"OTHER      ", Some("x"))).expect("vdc");
        std::fs::write(dev.join("loop0"), fat_image(b"cidata     ", None)).expect("loop0");
        let found = find_cidata(&sys, &dev);
        assert_eq!(found, vec![(dev.join("vdb"), Filesystem::Fat)]);
        let text = read_fat_user_data(&dev.join("vdb")).expect("user-data");
        assert_eq!(text, "[node]\nrole = \"worker\"\n");
        let missing = read_fat_user_data(&dev.join("vdc"));
        assert!(missing.is_ok(), "vdc has a user-data file");
        std::fs::write(dev.join("vdd"), fat_image(b"cidata     ", None)).expect("vdd");
        let error = read_fat_user_data(&dev.join("vdd")).expect_err("no user-data");
        assert!(error.contains("no user-data file"), "{error}");
    }

    #[test]
    fn iso9660_label_is_read_from_the_primary_volume_descriptor() {
        let mut head = vec![0u8; 0x8800];
        head[0x8000] = 1;
        head[0x8001..0x8006].copy_from_slice(b"CD001");
        head[0x8028..0x8048].copy_from_slice(b"cidata                          ");
        assert_eq!(
            probe_label(&head),
            Some((Filesystem::Iso9660, "cidata".to_owned()))
        );
        assert_eq!(probe_label(&[0u8; 512]), None);
    }

    #[test]
    fn missing_files_are_none_and_sources_say_where() {
        let found = read_file(Path::new("/nonexistent/config.toml"), Source::State).expect("ok");
        assert!(found.is_none());
        assert_eq!(
            Source::Url("http://x/y".into()).to_string(),
            "cairn.config=http://x/y"
        );
    }
}
