//! Kernel modules: find them, resolve their dependencies, write `modules.dep`.
//!
//! Debian's kernel packages ship the `.ko` files but not `modules.dep`
//! (depmod runs in the package's maintainer script, which the builder never
//! runs). Every module records its direct dependencies in the
//! `depends=` entry of its ELF `.modinfo` section (written by modpost at
//! kernel build time), so the builder reads those, computes the closure of
//! the modules a profile asks for, and writes a `modules.dep` in depmod's
//! format for just the modules it carries. Names are compared the way the
//! kernel does: `-` and `_` are the same.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error("no kernel modules directory under {0} (expected usr/lib/modules/<version>/)")]
    NoModulesDir(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid kernel module ({reason})")]
    BadModule { path: PathBuf, reason: String },
    #[error(
        "kernel module {name:?} is neither a loadable module nor built into kernel {kernel_version}; check the name (`modinfo {name}` on a machine with this kernel)"
    )]
    UnknownModule {
        name: String,
        kernel_version: String,
    },
}

/// Normalises a module name (`nf-tables` → `nf_tables`).
pub fn canonical_name(name: &str) -> String {
    name.replace('-', "_")
}

fn module_name_of(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|suffix| file.strip_suffix(suffix))?;
    Some(canonical_name(stem))
}

/// The modules of one kernel, as found in an extracted kernel package.
#[derive(Debug, Clone)]
pub struct KernelModules {
    pub version: String,
    /// `usr/lib/modules/<version>` on the build host.
    pub dir: PathBuf,
    /// Module name → path relative to `dir`.
    pub files: BTreeMap<String, PathBuf>,
    /// Modules built into the kernel image (from `modules.builtin`).
    pub builtin: BTreeSet<String>,
}

impl KernelModules {
    /// Scans `<root>/usr/lib/modules/<version>/`; exactly one version is
    /// expected.
    pub fn scan(root: &Path) -> Result<Self, KmodError> {
        let base = root.join("usr/lib/modules");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KmodError::Io { path, source }
        };
        let mut versions: Vec<PathBuf> = fs::read_dir(&base)
            .map_err(|_| KmodError::NoModulesDir(root.to_path_buf()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        versions.sort();
        let dir = versions
            .pop()
            .ok_or_else(|| KmodError::NoModulesDir(root.to_path_buf()))?;
        let version = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut files = BTreeMap::new();
        let mut stack = vec![dir.clone()];
        while let Some(current) = stack.pop() {
            for entry in fs::read_dir(&current).map_err(io(&current))? {
                let path = entry.map_err(io(&current))?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(name) = module_name_of(&path) {
                    let relative = path.strip_prefix(&dir).unwrap_or(&path).to_path_buf();
                    files.insert(name, relative);
                }
            }
        }
        let builtin = fs::read_to_string(dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| module_name_of(Path::new(line.trim())))
            .collect();
        Ok(Self {
            version,
            dir,
            files,
            builtin,
        })
    }

    /// Direct dependencies of a module, from its `.modinfo`.
    pub fn depends_of(&self, name: &str) -> Result<Vec<String>, KmodError> {
        Ok(self
            .modinfo_values(name, "depends")?
            .iter()
            .flat_map(|list| list.split(','))
            .filter(|dep| !dep.is_empty())
            .map(canonical_name)
            .collect())
    }

    /// The device patterns a module drives (`alias=` in its `.modinfo`,
    /// e.g. `virtio:d00000001v*` for virtio_net).
    pub fn aliases_of(&self, name: &str) -> Result<Vec<String>, KmodError> {
        self.modinfo_values(name, "alias")
    }

    fn modinfo_values(&self, name: &str, key: &str) -> Result<Vec<String>, KmodError> {
        let Some(relative) = self.files.get(name) else {
            return Ok(Vec::new());
        };
        let path = self.dir.join(relative);
        let bytes = read_module(&path)?;
        let modinfo = modinfo_section(&bytes).map_err(|reason| KmodError::BadModule {
            path: path.clone(),
            reason,
        })?;
        let prefix = format!("{key}=");
        Ok(modinfo
            .split(|b| *b == 0)
            .filter_map(|entry| std::str::from_utf8(entry).ok())
            .filter_map(|entry| entry.strip_prefix(prefix.as_str()))
            .map(str::to_owned)
            .collect())
    }

    /// The requested modules plus everything they depend on. Built-in
    /// modules are accepted and contribute nothing.
    pub fn closure(&self, requested: &[String]) -> Result<ModuleClosure, KmodError> {
        let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut queue: Vec<String> = requested.iter().map(|n| canonical_name(n)).collect();
        while let Some(name) = queue.pop() {
            if deps.contains_key(&name) {
                continue;
            }
            if !self.files.contains_key(&name) {
                if self.builtin.contains(&name) {
                    continue;
                }
                return Err(KmodError::UnknownModule {
                    name,
                    kernel_version: self.version.clone(),
                });
            }
            let direct = self.depends_of(&name)?;
            queue.extend(direct.iter().cloned());
            deps.insert(name, direct);
        }
        Ok(ModuleClosure { direct: deps })
    }
}

/// A set of modules closed under dependency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleClosure {
    /// Module → its direct dependencies (all in the closure).
    pub direct: BTreeMap<String, Vec<String>>,
}

impl ModuleClosure {
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.direct.keys()
    }

    /// All dependencies of `name`, each once, every module listed before
    /// the modules it depends on: depmod's order, in which loading from the
    /// end of the list satisfies every module before its users.
    pub fn all_dependencies(&self, name: &str) -> Vec<String> {
        fn visit(
            closure: &ModuleClosure,
            module: &str,
            seen: &mut BTreeSet<String>,
            post_order: &mut Vec<String>,
        ) {
            for dep in closure.direct.get(module).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    visit(closure, dep, seen, post_order);
                    post_order.push(dep.clone());
                }
            }
        }
        let mut seen = BTreeSet::from([name.to_owned()]);
        let mut post_order = Vec::new();
        visit(self, name, &mut seen, &mut post_order);
        post_order.reverse();
        post_order
    }

    /// `modules.alias` text (`alias <pattern> <module>`, as depmod writes
    /// it) for the modules of this closure, so the node can load the
    /// drivers of the devices it finds (coldplug) without a udev.
    pub fn modules_alias(&self, modules: &KernelModules) -> Result<String, KmodError> {
        let mut lines = Vec::new();
        for name in self.direct.keys() {
            for alias in modules.aliases_of(name)? {
                lines.push(format!("alias {alias} {name}"));
            }
        }
        lines.sort();
        let mut text = lines.join("\n");
        text.push('\n');
        Ok(text)
    }

    /// `modules.dep` text for the modules of this closure.
    pub fn modules_dep(&self, modules: &KernelModules) -> String {
        let path_of = |name: &str| {
            modules
                .files
                .get(name)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let mut lines: Vec<String> = self
            .direct
            .keys()
            .map(|name| {
                let deps: Vec<String> = self
                    .all_dependencies(name)
                    .iter()
                    .map(|d| path_of(d))
                    .collect();
                format!("{}: {}", path_of(name), deps.join(" "))
                    .trim_end()
                    .to_owned()
            })
            .collect();
        lines.sort();
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

fn read_module(path: &Path) -> Result<Vec<u8>, KmodError> {
    let io = |source| KmodError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = fs::read(path).map_err(io)?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".xz") {
        liblzma::read::XzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(raw.as_slice())
            .and_then(|mut d| d.read_to_end(&mut out))
            .map_err(io)?;
        Ok(out)
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn read_u16(bytes: &[u8], at: usize) -> Result<u16, String> {
    bytes
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| format!("truncated at offset {at}"))
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, String> {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| format!("truncated at offset {at}"))
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64, String> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| format!("truncated at offset {at}"))
}

/// The raw contents of the `.modinfo` section of a little-endian ELF64
/// relocatable object.
fn modinfo_section(elf: &[u8]) -> Result<&[u8], String> {
    if elf.get(0..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a little-endian ELF64 file".to_owned());
    }
    let section_table = usize::try_from(read_u64(elf, 0x28)?).map_err(|e| e.to_string())?;
    let entry_size = usize::from(read_u16(elf, 0x3a)?);
    let count = usize::from(read_u16(elf, 0x3c)?);
    let names_index = usize::from(read_u16(elf, 0x3e)?);
    let header = |index: usize| -> Result<(u32, usize, usize), String> {
        let at = section_table + index * entry_size;
        let name = read_u32(elf, at)?;
        let offset = usize::try_from(read_u64(elf, at + 0x18)?).map_err(|e| e.to_string())?;
        let size = usize::try_from(read_u64(elf, at + 0x20)?).map_err(|e| e.to_string())?;
        Ok((name, offset, size))
    };
    let (_, names_offset, names_size) = header(names_index)?;
    let names = elf
        .get(names_offset..names_offset + names_size)
        .ok_or("section names out of bounds")?;
    for index in 0..count {
        let (name, offset, size) = header(index)?;
        let name_bytes = names.get(name as usize..).unwrap_or_default();
        let end = name_bytes.iter().position(|b| *b == 0).unwrap_or(0);
        if &name_bytes[..end] == b".modinfo" {
            return elf
                .get(offset..offset + size)
                .ok_or_else(|| ".modinfo out of bounds".to_owned());
        }
    }
    Err("no .modinfo section".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 object with a `.modinfo` section.
    fn fake_module(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 64];
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        let modinfo_offset = elf.len();
        elf.extend_from_slice(modinfo);
        let names_offset = elf.len();
        elf.extend_from_slice(names);
        let table = elf.len();
        elf[0x28..0x30].copy_from_slice(&(table as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        let mut section = |name: u32, offset: usize, size: usize| {
            let mut header = vec![0u8; 64];
            header[0..4].copy_from_slice(&name.to_le_bytes());
            header[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            header[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&header);
        };
        section(0, 0, 0);
        section(1, modinfo_offset, modinfo.len());
        section(10, names_offset, names.len());
        elf
    }

    fn kernel_tree(modules: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("usr/lib/modules/6.1.0-test");
        fs::create_dir_all(dir.join("kernel")).expect("mkdir");
        for (path, depends) in modules {
            let file = dir.join("kernel").join(path);
            fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            let alias = match path.rsplit('/').next() {
                Some("virtio_net.ko") => "alias=virtio:d00000001v*\0",
                _ => "",
            };
            let info = format!("license=GPL\0{alias}depends={depends}\0vermagic=6.1\0");
            fs::write(file, fake_module(info.as_bytes())).expect("write");
        }
        fs::write(dir.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").expect("builtin");
        root
    }

    #[test]
    fn closure_follows_depends_and_writes_modules_dep() {
        let tree = kernel_tree(&[
            ("net/virtio_net.ko", "net_failover,virtio_ring,virtio"),
            ("net/net_failover.ko", "failover"),
            ("net/failover.ko", ""),
            ("virtio/virtio_ring.ko", ""),
            ("virtio/virtio.ko", ""),
            ("net/unused.ko", ""),
        ]);
        let modules = KernelModules::scan(tree.path()).expect("scan");
        assert_eq!(modules.version, "6.1.0-test");
        let closure = modules
            .closure(&["virtio-net".to_owned(), "ext4".to_owned()])
            .expect("closure");
        let names: Vec<&String> = closure.names().collect();
        assert_eq!(
            names,
            [
                "failover",
                "net_failover",
                "virtio",
                "virtio_net",
                "virtio_ring"
            ]
        );
        let dep = closure.modules_dep(&modules);
        assert!(
            dep.contains("kernel/net/virtio_net.ko: kernel/virtio/virtio.ko kernel/virtio/virtio_ring.ko kernel/net/net_failover.ko kernel/net/failover.ko\n"),
            "{dep}"
        );
        assert!(dep.contains("kernel/net/failover.ko\n"), "{dep}");
        let alias = closure.modules_alias(&modules).expect("aliases");
        assert_eq!(alias, "alias virtio:d00000001v* virtio_net\n");
    }

    #[test]
    fn unknown_modules_are_named() {
        let tree = kernel_tree(&[("a.ko", "")]);
        let modules = KernelModules::scan(tree.path()).expect("scan");
        let err = modules
            .closure(&["nosuch".to_owned()])
            .expect_err("unknown");
        assert!(err.to_string().contains("\"nosuch\""), "{err}");
    }
}
