//! The `control` file of a binary package (deb822 format, Debian Policy §5).
//!
//! Only what the builder records is typed: name, version, architecture and
//! the dependency fields (for the SBOM and for sanity checks; the closure
//! itself is resolved by apt). Every field is also kept verbatim.

use std::fmt;

use crate::profile::PackageName;

/// The fields of a package's `control` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebControl {
    /// `Package`.
    pub package: PackageName,
    /// `Version`, e.g. `1.6.20~ds1-1+b1`.
    pub version: String,
    /// `Architecture`, e.g. `amd64` or `all`.
    pub architecture: String,
    /// `Depends`: each element is a group of alternatives (`a | b`).
    pub depends: Vec<Vec<Dependency>>,
    /// `Pre-Depends`, in the same shape.
    pub pre_depends: Vec<Vec<Dependency>>,
    /// `Installed-Size` in KiB, if present.
    pub installed_size: Option<u64>,
    /// Every field, in file order, with continuation lines joined by `\n`.
    pub fields: Vec<(String, String)>,
}

impl DebControl {
    /// A field by name, compared case-insensitively as deb822 requires.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Parses the text of a `control` file.
    pub fn parse(text: &str) -> Result<DebControl, String> {
        let mut fields: Vec<(String, String)> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                // A binary control file is one paragraph; stop at its end.
                if fields.is_empty() {
                    continue;
                }
                break;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                let Some((_, value)) = fields.last_mut() else {
                    return Err(format!(
                        "line {}: continuation line before any field",
                        number + 1
                    ));
                };
                value.push('\n');
                value.push_str(line.trim());
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!(
                    "line {}: expected `Field: value`, found `{line}`",
                    number + 1
                ));
            };
            fields.push((name.trim().to_owned(), value.trim().to_owned()));
        }

        let get = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let required = |name: &str| get(name).ok_or_else(|| format!("missing `{name}` field"));
        let package: PackageName = required("Package")?
            .parse()
            .map_err(|error| format!("`Package`: {error}"))?;
        let version = required("Version")?.to_owned();
        let architecture = required("Architecture")?.to_owned();
        let depends = get("Depends")
            .map(parse_relations)
            .transpose()
            .map_err(|error| format!("`Depends`: {error}"))?
            .unwrap_or_default();
        let pre_depends = get("Pre-Depends")
            .map(parse_relations)
            .transpose()
            .map_err(|error| format!("`Pre-Depends`: {error}"))?
            .unwrap_or_default();
        let installed_size = get("Installed-Size")
            .map(|size| {
                size.parse::<u64>()
                    .map_err(|_| format!("`Installed-Size`: expected a number, found `{size}`"))
            })
            .transpose()?;
        Ok(DebControl {
            package,
            version,
            architecture,
            depends,
            pre_depends,
            installed_size,
            fields,
        })
    }
}

/// One alternative of a dependency, e.g. `libc6 (>= 2.34)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// Package name.
    pub name: PackageName,
    /// Architecture qualifier after `:` (`any`, `native`, `amd64`), if any.
    pub arch_qualifier: Option<String>,
    /// Version restriction as written inside the parentheses, e.g. `>= 2.34`.
    pub version: Option<String>,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if let Some(arch) = &self.arch_qualifier {
            write!(f, ":{arch}")?;
        }
        if let Some(version) = &self.version {
            write!(f, " ({version})")?;
        }
        Ok(())
    }
}

/// Parses a relationship field: `a (>= 1), b | c:any`.
fn parse_relations(text: &str) -> Result<Vec<Vec<Dependency>>, String> {
    let mut groups = Vec::new();
    for group in text.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let alternatives = group
            .split('|')
            .map(parse_dependency)
            .collect::<Result<Vec<_>, _>>()?;
        groups.push(alternatives);
    }
    Ok(groups)
}

fn parse_dependency(text: &str) -> Result<Dependency, String> {
    let text = text.trim();
    // Architecture restrictions `[...]` and build profiles `<...>` only
    // appear in source packages; they follow the name and any version, so
    // only text outside the parentheses is cut (`<<` is a version operator).
    let (name_part, version) = match text.split_once('(') {
        Some((name, rest)) => {
            let (version, _) = rest
                .split_once(')')
                .ok_or_else(|| format!("unclosed `(` in `{text}`"))?;
            let version = version.split_whitespace().collect::<Vec<_>>().join(" ");
            (name.trim(), Some(version))
        }
        None => (
            text.split(['[', '<']).next().unwrap_or_default().trim(),
            None,
        ),
    };
    let (name, arch_qualifier) = match name_part.split_once(':') {
        Some((name, arch)) => (name, Some(arch.trim().to_owned())),
        None => (name_part, None),
    };
    let name: PackageName = name.trim().parse().map_err(|error| format!("{error}"))?;
    Ok(Dependency {
        name,
        arch_qualifier,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_looking_control_file() -> Result<(), String> {
        let text = "Package: containerd\nSource: containerd (1.6.20~ds1-1)\nVersion: 1.6.20~ds1-1+b1\n\
                    Architecture: amd64\nInstalled-Size: 123456\n\
                    Depends: libc6 (>= 2.34), libseccomp2 (>=2.5.0), runc (>= 1.0.0~rc2~) | crun:any\n\
                    Pre-Depends: init-system-helpers (>= 1.54~)\n\
                    Description: daemon to control runC\n Containerd is a daemon\n .\n more\n";
        let control = DebControl::parse(text)?;
        assert_eq!(control.package.as_str(), "containerd");
        assert_eq!(control.version, "1.6.20~ds1-1+b1");
        assert_eq!(control.architecture, "amd64");
        assert_eq!(control.installed_size, Some(123456));
        assert_eq!(control.depends.len(), 3);
        assert_eq!(control.depends[1][0].version.as_deref(), Some(">=2.5.0"));
        assert_eq!(control.depends[2].len(), 2);
        assert_eq!(control.depends[2][1].to_string(), "crun:any");
        assert_eq!(
            control.pre_depends[0][0].name.as_str(),
            "init-system-helpers"
        );
        assert_eq!(control.field("source"), Some("containerd (1.6.20~ds1-1)"));
        assert_eq!(
            control.field("Description"),
            Some("daemon to control runC\nContainerd is a daemon\n.\nmore")
        );
        Ok(())
    }

    #[test]
    fn reports_missing_and_malformed_fields() {
        let missing = DebControl::parse("Package: runc\nVersion: 1\n");
        assert_eq!(missing, Err("missing `Architecture` field".to_owned()));
        let bad = DebControl::parse("Package: runc\nthis is not a field\n");
        assert!(bad.is_err_and(|e| e.contains("line 2")));
        let bad_name = DebControl::parse("Package: Runc\nVersion: 1\nArchitecture: all\n");
        assert!(bad_name.is_err_and(|e| e.contains("invalid package name")));
    }
}

#[cfg(test)]
mod relation_tests {
    use super::*;

    #[test]
    fn version_operators_and_alternatives_parse() {
        let groups = parse_relations(
            "klibc-utils (>= 2.0.4-8~), logsave | e2fsprogs (<< 1.45.3-1~), libc6:any, foo (>= 1) [amd64] <!nocheck>",
        )
        .expect("parse");
        assert_eq!(groups.len(), 4);
        assert_eq!(groups[1][1].name.as_str(), "e2fsprogs");
        assert_eq!(groups[1][1].version.as_deref(), Some("<< 1.45.3-1~"));
        assert_eq!(groups[2][0].arch_qualifier.as_deref(), Some("any"));
        assert_eq!(groups[3][0].version.as_deref(), Some(">= 1"));
        assert!(parse_relations("broken (>= 1").is_err());
    }
}
