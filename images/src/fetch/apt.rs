//! Debian packages: resolve a dependency closure and fetch it, verified.
//!
//! Two sources:
//! - **apt** ([`AptRepository`]): apt itself resolves the closure and
//!   downloads, in a private state directory under the cache (`Dir::State`,
//!   `Dir::Cache`, an empty dpkg status so the *whole* closure is listed),
//!   reading the host's configured sources. apt verifies the signed index
//!   and each file's hash; the builder checks the sha256 again before a
//!   package enters the content-addressed cache. The host's own apt state is
//!   never touched.
//! - **a directory of `.deb` files** ([`resolve_from_dir`]): the closure is
//!   computed from the packages' `Depends`/`Pre-Depends`, taking the first
//!   alternative the directory provides.
//!
//! Both return [`FetchedPackage`]s: name, version, architecture, sha256 and
//! the blob path, which is everything the manifest and SBOM record.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use super::cache::{Cache, CacheError, sha256_file};
use crate::deb;

#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("unknown Debian package(s): {}; check the names (apt-cache search NAME) or the host's apt sources", names.join(", "))]
    UnknownPackages { names: Vec<String> },
    #[error("`apt-get {action}` failed: {stderr}")]
    Apt { action: String, stderr: String },
    #[error(
        "cannot run apt-get: {0}; the builder needs apt (Debian or Ubuntu host), or give a directory of .deb files"
    )]
    Spawn(std::io::Error),
    #[error("cannot understand apt's output line {0:?}")]
    Parse(String),
    #[error("{0}")]
    Cache(#[from] CacheError),
    #[error("{path}: {source}")]
    Deb {
        path: PathBuf,
        #[source]
        source: deb::DebError,
    },
    #[error("{dir}: {message}")]
    Directory { dir: PathBuf, message: String },
}

/// A package in the cache, ready to extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub sha256: String,
    pub size: u64,
    pub path: PathBuf,
}

/// One line of `apt-get --print-uris`: `'URI' FILE SIZE HASHTYPE:HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UriLine {
    file_name: String,
    size: u64,
    hash: String,
}

fn parse_uri_line(line: &str) -> Result<UriLine, AptError> {
    let bad = || AptError::Parse(line.to_owned());
    let rest = line.strip_prefix('\'').ok_or_else(bad)?;
    let (_uri, rest) = rest.split_once('\'').ok_or_else(bad)?;
    let mut fields = rest.split_whitespace();
    let file_name = fields.next().ok_or_else(bad)?.to_owned();
    let size = fields.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    // apt leaves the hash out for some sources; the index is asked instead.
    let hash = fields.next().unwrap_or_default().to_owned();
    Ok(UriLine {
        file_name,
        size,
        hash,
    })
}

/// `name_version_arch.deb` → (name, version, arch); apt escapes the epoch
/// colon as `%3a`.
fn split_deb_file_name(file_name: &str) -> Option<(String, String, String)> {
    let stem = file_name.strip_suffix(".deb")?;
    let mut parts = stem.splitn(3, '_');
    let name = parts.next()?.to_owned();
    let version = parts.next()?.replace("%3a", ":");
    let arch = parts.next()?.to_owned();
    Some((name, version, arch))
}

/// apt, isolated in a state directory of its own.
#[derive(Debug, Clone)]
pub struct AptRepository {
    state: PathBuf,
    /// How old the package lists may get before `apt-get update` runs again.
    pub max_list_age: Duration,
    /// Architecture to resolve for.
    pub architecture: String,
}

impl AptRepository {
    pub fn new(cache: &Cache) -> Self {
        Self {
            state: cache.root().join("apt"),
            max_list_age: Duration::from_secs(24 * 3600),
            architecture: "amd64".to_owned(),
        }
    }

    fn base_command(&self, archives: &Path) -> Command {
        self.command("apt-get", archives)
    }

    fn command(&self, program: &str, archives: &Path) -> Command {
        let state = &self.state;
        let mut command = Command::new(program);
        command
            .arg("-o")
            .arg(format!("Dir::State={}", state.join("state").display()))
            .arg("-o")
            .arg(format!(
                "Dir::State::status={}",
                state.join("state/status").display()
            ))
            .arg("-o")
            .arg(format!("Dir::Cache={}", state.join("cache").display()))
            .arg("-o")
            .arg(format!("Dir::Cache::archives={}", archives.display()))
            .arg("-o")
            .arg(format!("APT::Architecture={}", self.architecture))
            .arg("-o")
            .arg("APT::Architectures::=")
            .arg("-o")
            .arg(format!("APT::Architectures::={}", self.architecture))
            .arg("-o")
            .arg("Debug::NoLocking=1")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C");
        command
    }

    fn run(&self, mut command: Command, action: &str) -> Result<String, AptError> {
        tracing::debug!(?command, "running apt");
        let output = command.output().map_err(AptError::Spawn)?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            let unknown: Vec<String> = stderr
                .lines()
                .filter_map(|l| l.strip_prefix("E: Unable to locate package "))
                .map(|s| s.trim().to_owned())
                .collect();
            if !unknown.is_empty() {
                return Err(AptError::UnknownPackages { names: unknown });
            }
            return Err(AptError::Apt {
                action: action.to_owned(),
                stderr: stderr.trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn prepare_dirs(&self) -> Result<PathBuf, AptError> {
        let dirs = [
            self.state.join("state/lists/partial"),
            self.state.join("cache/archives/partial"),
            self.state.join("empty/partial"),
        ];
        for dir in &dirs {
            std::fs::create_dir_all(dir).map_err(|source| CacheError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let status = self.state.join("state/status");
        if !status.exists() {
            std::fs::write(&status, b"").map_err(|source| CacheError::Io {
                path: status.clone(),
                source,
            })?;
        }
        Ok(self.state.join("empty"))
    }

    fn lists_are_fresh(&self) -> bool {
        let stamp = self.state.join("state/updated");
        std::fs::metadata(stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < self.max_list_age)
    }

    /// Refreshes the private package lists when they are missing or old.
    pub fn update(&self, force: bool) -> Result<(), AptError> {
        let empty = self.prepare_dirs()?;
        if !force && self.lists_are_fresh() {
            return Ok(());
        }
        let mut command = self.base_command(&empty);
        command.args(["update", "-qq"]);
        self.run(command, "update")?;
        let stamp = self.state.join("state/updated");
        std::fs::write(&stamp, b"").map_err(|source| CacheError::Io {
            path: stamp,
            source,
        })?;
        Ok(())
    }

    /// Resolves the closure of `packages` and makes sure every package of it
    /// is in the cache. `skip` names packages that are left out of the
    /// result (apt still resolves through them).
    pub fn fetch(
        &self,
        cache: &Cache,
        packages: &[String],
        skip: &BTreeSet<String>,
    ) -> Result<Vec<FetchedPackage>, AptError> {
        self.update(false)?;
        let empty = self.state.join("empty");

        // 1. The closure, as apt resolves it for an empty system.
        let mut command = self.base_command(&empty);
        command
            .args([
                "install",
                "-y",
                "-qq",
                "--print-uris",
                "--no-install-recommends",
            ])
            .args(packages);
        let listing = self.run(command, "install --print-uris")?;
        let mut wanted = Vec::new();
        for line in listing.lines().filter(|l| l.starts_with('\'')) {
            let entry = parse_uri_line(line)?;
            let (name, version, arch) = split_deb_file_name(&entry.file_name)
                .ok_or_else(|| AptError::Parse(line.to_owned()))?;
            wanted.push((name, version, arch));
        }
        wanted.sort();

        // 2. The sha256 of each, from the signed index.
        let specs: Vec<String> = wanted.iter().map(|(n, v, _)| format!("{n}={v}")).collect();
        let mut command = self.command("apt-cache", &empty);
        command.arg("show").args(&specs);
        let listing = self.run(command, "apt-cache show")?;
        let mut digests = BTreeMap::new();
        for stanza in listing.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
                    .map(str::trim)
            };
            if let (Some(package), Some(version), Some(arch), Some(sha256), Some(size)) = (
                field("Package"),
                field("Version"),
                field("Architecture"),
                field("SHA256"),
                field("Size").and_then(|s| s.parse::<u64>().ok()),
            ) {
                digests
                    .entry(format!("{package}_{version}_{arch}.deb"))
                    .or_insert((sha256.to_ascii_lowercase(), size));
            }
        }

        // 3. Download what the cache lacks, through apt (which verifies it).
        let missing: Vec<&String> = wanted
            .iter()
            .zip(&specs)
            .filter(|((name, version, arch), _)| {
                let file = format!("{name}_{version}_{arch}.deb");
                digests
                    .get(&file)
                    .is_none_or(|(sha, _)| !cache.contains(sha))
            })
            .map(|(_, spec)| spec)
            .collect();
        if !missing.is_empty() {
            tracing::info!(count = missing.len(), "downloading Debian packages");
            let download_dir =
                tempfile::tempdir_in(cache.root().join("tmp")).map_err(|source| {
                    CacheError::Io {
                        path: cache.root().join("tmp"),
                        source,
                    }
                })?;
            let mut command = self.base_command(&empty);
            command
                .current_dir(download_dir.path())
                .args(["download", "-qq"])
                .args(&missing);
            self.run(command, "download")?;
            for entry in
                std::fs::read_dir(download_dir.path()).map_err(|source| CacheError::Io {
                    path: download_dir.path().to_path_buf(),
                    source,
                })?
            {
                let entry = entry.map_err(|source| CacheError::Io {
                    path: download_dir.path().to_path_buf(),
                    source,
                })?;
                let file_name = entry.file_name().to_string_lossy().replace("%3a", ":");
                if let Some((sha256, _)) = digests.get(&file_name) {
                    cache.insert_file(&entry.path(), sha256)?;
                }
            }
        }

        let fetched = wanted
            .into_iter()
            .map(|(name, version, architecture)| {
                let file = format!("{name}_{version}_{architecture}.deb");
                let (sha256, size) = digests
                    .get(&file)
                    .cloned()
                    .ok_or_else(|| AptError::Parse(format!("no digest listed for {file}")))?;
                if !cache.contains(&sha256) {
                    return Err(AptError::Apt {
                        action: "download".to_owned(),
                        stderr: format!("{file} was not downloaded"),
                    });
                }
                Ok(FetchedPackage {
                    path: cache.blob_path(&sha256),
                    name,
                    version,
                    architecture,
                    sha256,
                    size,
                })
            })
            .collect::<Result<Vec<_>, AptError>>()?;
        prune_skipped(fetched, packages, skip)
    }
}

/// Drops skipped packages together with everything only they needed.
///
/// apt resolves the closure as if every package were installed; a profile's
/// `skip-packages` (say `perl-base` or `usrmerge`) must also take out the
/// dependencies nothing else uses, or skipping would save almost nothing.
/// Reachability follows `Depends` and `Pre-Depends` from the requested
/// packages, taking the first alternative the closure contains.
pub fn prune_skipped(
    fetched: Vec<FetchedPackage>,
    roots: &[String],
    skip: &BTreeSet<String>,
) -> Result<Vec<FetchedPackage>, AptError> {
    let mut controls = BTreeMap::new();
    for package in &fetched {
        let control = deb::read_control(&package.path).map_err(|source| AptError::Deb {
            path: package.path.clone(),
            source,
        })?;
        controls.insert(package.name.clone(), control);
    }
    let mut reachable = BTreeSet::new();
    let mut queue: VecDeque<String> = roots.iter().cloned().collect();
    while let Some(name) = queue.pop_front() {
        if skip.contains(&name) || !reachable.insert(name.clone()) {
            continue;
        }
        let Some(control) = controls.get(&name) else {
            continue;
        };
        for group in control.depends.iter().chain(&control.pre_depends) {
            if let Some(alternative) = group
                .iter()
                .find(|alt| controls.contains_key(alt.name.as_str()))
            {
                queue.push_back(alternative.name.to_string());
            }
        }
    }
    Ok(fetched
        .into_iter()
        .filter(|p| reachable.contains(&p.name))
        .collect())
}

/// Resolves `packages` against a directory of `.deb` files and adds the
/// closure to the cache. Dependencies in `skip` may be absent.
pub fn resolve_from_dir(
    cache: &Cache,
    dir: &Path,
    packages: &[String],
    skip: &BTreeSet<String>,
) -> Result<Vec<FetchedPackage>, AptError> {
    let dir_error = |message: String| AptError::Directory {
        dir: dir.to_path_buf(),
        message,
    };
    let mut available: BTreeMap<String, (PathBuf, deb::DebControl)> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| dir_error(e.to_string()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    paths.sort();
    for path in paths {
        let control = deb::read_control(&path).map_err(|source| AptError::Deb {
            path: path.clone(),
            source,
        })?;
        available.insert(control.package.to_string(), (path, control));
    }
    let unknown: Vec<String> = packages
        .iter()
        .filter(|p| !available.contains_key(*p))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(AptError::UnknownPackages { names: unknown });
    }

    let mut closure = BTreeSet::new();
    let mut queue: VecDeque<String> = packages.iter().cloned().collect();
    let mut unresolved = BTreeSet::new();
    while let Some(name) = queue.pop_front() {
        if skip.contains(&name) || !closure.insert(name.clone()) {
            continue;
        }
        let Some((_, control)) = available.get(&name) else {
            continue;
        };
        for group in control.depends.iter().chain(&control.pre_depends) {
            match group.iter().find(|alt| {
                available.contains_key(alt.name.as_str()) || skip.contains(alt.name.as_str())
            }) {
                Some(alt) => queue.push_back(alt.name.to_string()),
                None => {
                    let text: Vec<String> = group.iter().map(ToString::to_string).collect();
                    unresolved.insert(format!("{name} depends on {}", text.join(" | ")));
                }
            }
        }
    }
    if !unresolved.is_empty() {
        return Err(dir_error(format!(
            "dependencies not found in the directory (add them, or list them in skip-packages): {}",
            unresolved.into_iter().collect::<Vec<_>>().join("; ")
        )));
    }

    closure
        .into_iter()
        .filter_map(|name| available.get(&name))
        .map(|(path, control)| {
            let sha256 = sha256_file(path)?;
            let blob = cache.insert_file(path, &sha256)?;
            let size = std::fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
            Ok(FetchedPackage {
                name: control.package.to_string(),
                version: control.version.clone(),
                architecture: control.architecture.clone(),
                sha256,
                size,
                path: blob,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_uris_lines_parse() {
        let line = "'http://deb.example/pool/c/containerd_1.6.20%7eds1-1_amd64.deb' containerd_1.6.20~ds1-1_amd64.deb 25903404 SHA256:8669d264eeb0fcdb4a0b1ba436ab88ec5dafde4a66e1278ec279d830db4c2216";
        let parsed = parse_uri_line(line).expect("parse");
        assert_eq!(parsed.size, 25_903_404);
        assert!(parsed.hash.starts_with("SHA256:8669"));
        assert_eq!(
            split_deb_file_name(&parsed.file_name),
            Some(("containerd".into(), "1.6.20~ds1-1".into(), "amd64".into()))
        );
        assert_eq!(
            split_deb_file_name("libfoo_1%3a2.0-1_all.deb"),
            Some(("libfoo".into(), "1:2.0-1".into(), "all".into()))
        );
        assert!(parse_uri_line("garbage").is_err());
    }
}
