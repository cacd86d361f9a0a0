//! Validated value types used by the profile model.
//!
//! Every string that reaches the builder from a profile goes through one of
//! these newtypes, so a bad value is refused while the file is parsed (with
//! the file, line, column and key of the offending value) instead of failing
//! half-way through a build. Each type deserialises from a TOML string via
//! `TryFrom<String>` and serialises back to the same canonical string, which
//! keeps the rendered profile (and therefore its digest) stable.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value was refused; the parser adds the file, position and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{value}`: {reason}")]
pub struct InvalidValue {
    /// What kind of value was expected, e.g. "package name".
    pub what: &'static str,
    /// The value as written.
    pub value: String,
    /// What is wrong with it, phrased as what was expected.
    pub reason: String,
}

impl InvalidValue {
    fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            what,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Defines a string newtype with `as_str`, `Display`, `FromStr`, `TryFrom<String>`
/// and serde support, validated by the given function.
macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident, $validate:path) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The validated (and normalised) value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, InvalidValue> {
                $validate(&value).map($name)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(value: &str) -> Result<Self, InvalidValue> {
                Self::try_from(value.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// A Debian binary package name (Debian Policy §5.6.1): at least two
    /// characters of `[a-z0-9+.-]`, starting with a letter or digit.
    PackageName,
    validate_package_name
);

fn validate_package_name(value: &str) -> Result<String, InvalidValue> {
    const WHAT: &str = "package name";
    if value.len() < 2 {
        return Err(InvalidValue::new(
            WHAT,
            value,
            "expected at least two characters",
        ));
    }
    if !value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(InvalidValue::new(
            WHAT,
            value,
            "expected it to start with a lowercase letter or digit",
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)))
    {
        return Err(InvalidValue::new(
            WHAT,
            value,
            format!("`{bad}` is not allowed; expected only a-z, 0-9, `+`, `-` and `.`"),
        ));
    }
    Ok(value.to_owned())
}

string_newtype!(
    /// A Debian package name that may contain `*` and `?` wildcards, used to
    /// match versioned package names such as `linux-image-*-cloud-amd64`.
    PackagePattern,
    validate_package_pattern
);

fn validate_package_pattern(value: &str) -> Result<String, InvalidValue> {
    const WHAT: &str = "package pattern";
    if value.is_empty() {
        return Err(InvalidValue::new(WHAT, value, "expected a package name"));
    }
    if let Some(bad) = value
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.*?".contains(c)))
    {
        return Err(InvalidValue::new(
            WHAT,
            value,
            format!("`{bad}` is not allowed; expected a-z, 0-9, `+-.` and the wildcards `*` `?`"),
        ));
    }
    Ok(value.to_owned())
}

impl PackagePattern {
    /// Whether `name` matches this pattern (`*` any run, `?` one character).
    pub fn matches(&self, name: &str) -> bool {
        wildcard_match(self.0.as_bytes(), name.as_bytes())
    }
}

/// Classic iterative wildcard matcher; package names are short ASCII so the
/// backtracking bound is irrelevant.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

string_newtype!(
    /// A SHA-256 digest written as 64 lowercase hexadecimal characters.
    Sha256,
    validate_sha256
);

fn validate_sha256(value: &str) -> Result<String, InvalidValue> {
    const WHAT: &str = "sha256";
    if value.len() != 64 {
        return Err(InvalidValue::new(
            WHAT,
            value,
            format!(
                "expected 64 lowercase hex characters, found {} characters",
                value.chars().count()
            ),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(InvalidValue::new(
            WHAT,
            value,
            "expected only lowercase hex characters 0-9 and a-f",
        ));
    }
    Ok(value.to_owned())
}

impl Sha256 {
    /// Wraps a raw 32-byte digest.
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Sha256(hex::encode(digest))
    }

    /// The SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest as _;
        Self::from_digest(sha2::Sha256::digest(data).into())
    }
}

string_newtype!(
    /// A sysctl key in dotted form, e.g. `net.ipv4.ip_forward`. Segments use
    /// `[a-z0-9_-]`, plus `/` which stands for a literal dot inside a segment
    /// (as in sysctl.conf, e.g. `net.ipv4.conf.eth0/100.rp_filter`).
    SysctlKey,
    validate_sysctl_key
);

fn validate_sysctl_key(value: &str) -> Result<String, InvalidValue> {
    const WHAT: &str = "sysctl key";
    if !value.contains('.') {
        return Err(InvalidValue::new(
            WHAT,
            value,
            "expected a dotted key such as `net.ipv4.ip_forward`",
        ));
    }
    for segment in value.split('.') {
        if segment.is_empty() {
            return Err(InvalidValue::new(WHAT, value, "expected no empty segment"));
        }
        if let Some(bad) = segment
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_-/".contains(c)))
        {
            return Err(InvalidValue::new(
                WHAT,
                value,
                format!("`{bad}` is not allowed; expected segments of a-z, 0-9, `_`, `-`, `/`"),
            ));
        }
    }
    Ok(value.to_owned())
}

impl SysctlKey {
    /// The file under `/proc/sys` this key is written to.
    pub fn proc_path(&self) -> PathBuf {
        let mut path = PathBuf::from("/proc/sys");
        for segment in self.0.split('.') {
            path.push(segment.replace('/', "."));
        }
        path
    }
}

/// A sysctl value. TOML integers and strings are both accepted
/// (`"net.ipv4.ip_forward" = 1` or `= "1"`) and stored as the string written
/// to `/proc/sys`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysctlValue(String);

impl SysctlValue {
    /// Validates a value: printable, one line.
    pub fn new(value: &str) -> Result<Self, InvalidValue> {
        if value.is_empty() || value.chars().any(|c| c.is_control()) {
            return Err(InvalidValue::new(
                "sysctl value",
                value,
                "expected a non-empty single-line value",
            ));
        }
        Ok(SysctlValue(value.to_owned()))
    }

    /// The value as written to `/proc/sys`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SysctlValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SysctlValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SysctlValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sysctl value (string or integer)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SysctlValue, E> {
                SysctlValue::new(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

string_newtype!(
    /// A kernel module name, e.g. `br_netfilter` or `xt_MASQUERADE`. Dashes are
    /// normalised to underscores, as modprobe does, so `br-netfilter` and
    /// `br_netfilter` are the same module.
    ModuleName,
    validate_module_name
);

fn validate_module_name(value: &str) -> Result<String, InvalidValue> {
    const WHAT: &str = "kernel module name";
    if value.is_empty() {
        return Err(InvalidValue::new(WHAT, value, "expected a module name"));
    }
    if let Some(bad) = value
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(InvalidValue::new(
            WHAT,
            value,
            format!(
                "`{bad}` is not allowed; expected a name such as `br_netfilter` (no `.ko`, no path)"
            ),
        ));
    }
    Ok(value.replace('-', "_"))
}

string_newtype!(
    /// A path inside the image, written relative to the image root
    /// (`etc/motd`; a leading `/` is accepted and dropped). Normalised: no
    /// `.` components, no repeated or trailing `/`. `..` is refused, so the
    /// path can never leave the image root, and the root itself is refused.
    ImagePath,
    validate_image_path
);

fn validate_image_path(value: &str) -> Result<String, InvalidValue> {
    const WHAT: &str = "image path";
    if value.contains('\0') {
        return Err(InvalidValue::new(WHAT, value, "NUL is not allowed"));
    }
    let mut parts = Vec::new();
    for component in Path::new(value).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                return Err(InvalidValue::new(
                    WHAT,
                    value,
                    "`..` is not allowed; expected a path inside the image",
                ));
            }
            Component::Normal(part) => match part.to_str() {
                Some(part) => parts.push(part),
                None => return Err(InvalidValue::new(WHAT, value, "expected UTF-8")),
            },
            Component::Prefix(_) => {
                return Err(InvalidValue::new(WHAT, value, "expected a Unix path"));
            }
        }
    }
    if parts.is_empty() {
        return Err(InvalidValue::new(
            WHAT,
            value,
            "expected a path below the image root, e.g. `etc/motd`",
        ));
    }
    Ok(parts.join("/"))
}

impl ImagePath {
    /// The path as a relative `Path`, to join onto a root directory.
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }
}

string_newtype!(
    /// A glob over paths inside the image, e.g. `usr/share/doc/**`. `*` and
    /// `?` stay within one path segment, `**` spans segments, `{a,b}` and
    /// `[abc]` work as in a shell. Written relative to the image root (a
    /// leading `/` is dropped); `..` is refused.
    PathGlob,
    validate_path_glob
);

fn validate_path_glob(value: &str) -> Result<String, InvalidValue> {
    const WHAT: &str = "path glob";
    let trimmed = value.trim_start_matches('/');
    if trimmed.is_empty() {
        return Err(InvalidValue::new(
            WHAT,
            value,
            "expected a glob such as `usr/share/doc/**`",
        ));
    }
    if trimmed.split('/').any(|segment| segment == "..") {
        return Err(InvalidValue::new(WHAT, value, "`..` is not allowed"));
    }
    globset::GlobBuilder::new(trimmed)
        .literal_separator(true)
        .build()
        .map_err(|error| InvalidValue::new(WHAT, value, error.kind().to_string()))?;
    Ok(trimmed.to_owned())
}

impl PathGlob {
    /// The compiled glob, with `*` not crossing `/`. Validation compiled the
    /// same string, so this only fails if the glob library changes its mind.
    pub fn to_glob(&self) -> Result<globset::Glob, globset::Error> {
        globset::GlobBuilder::new(&self.0)
            .literal_separator(true)
            .build()
    }
}

/// Compiles a list of globs into one matcher.
pub fn glob_set(globs: &[PathGlob]) -> Result<globset::GlobSet, globset::Error> {
    let mut builder = globset::GlobSetBuilder::new();
    for glob in globs {
        builder.add(glob.to_glob()?);
    }
    builder.build()
}

string_newtype!(
    /// An `http://` or `https://` URL with a host.
    HttpUrl,
    validate_http_url
);

fn validate_http_url(value: &str) -> Result<String, InvalidValue> {
    const WHAT: &str = "URL";
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| InvalidValue::new(WHAT, value, "expected an http:// or https:// URL"))?;
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidValue::new(
            WHAT,
            value,
            "whitespace is not allowed; percent-encode it",
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(InvalidValue::new(WHAT, value, "expected a host name"));
    }
    Ok(value.to_owned())
}

/// A Unix permission mode, written as an octal string such as `"0755"`.
/// Integers are refused on purpose: `mode = 755` would silently mean
/// `0o1363`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileMode(u32);

impl FileMode {
    /// A mode from its numeric value; only permission bits (`0o7777`) are allowed.
    pub fn new(bits: u32) -> Result<Self, InvalidValue> {
        if bits > 0o7777 {
            return Err(InvalidValue::new(
                "file mode",
                &format!("{bits:o}"),
                "expected at most 0o7777",
            ));
        }
        Ok(FileMode(bits))
    }

    /// The permission bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl FromStr for FileMode {
    type Err = InvalidValue;
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        let digits = value.strip_prefix("0o").unwrap_or(value);
        if !(3..=4).contains(&digits.len()) || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(InvalidValue::new(
                "file mode",
                value,
                "expected 3 or 4 octal digits such as \"0755\"",
            ));
        }
        let bits = u32::from_str_radix(digits, 8)
            .map_err(|error| InvalidValue::new("file mode", value, error.to_string()))?;
        FileMode::new(bits)
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FileMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal mode string such as \"0755\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FileMode, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

string_newtype!(
    /// A profile name: `[a-z0-9-]`, starting with a letter, e.g. `default`.
    ProfileName,
    validate_profile_name
);

fn validate_profile_name(value: &str) -> Result<String, InvalidValue> {
    const WHAT: &str = "profile name";
    let valid = value.starts_with(|c: char| c.is_ascii_lowercase())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(InvalidValue::new(
            WHAT,
            value,
            "expected lowercase letters, digits and `-`, starting with a letter",
        ));
    }
    Ok(value.to_owned())
}

string_newtype!(
    /// An image version, e.g. `0.1.0` or `1.2.0-rc.1+build5`: letters, digits
    /// and `.+~_-`, starting with a digit or letter.
    ImageVersion,
    validate_image_version
);

fn validate_image_version(value: &str) -> Result<String, InvalidValue> {
    let valid = value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~_-".contains(c));
    if !valid {
        return Err(InvalidValue::new(
            "version",
            value,
            "expected letters, digits and `.+~_-`, such as `0.1.0`",
        ));
    }
    Ok(value.to_owned())
}

string_newtype!(
    /// One kernel command-line argument, e.g. `console=ttyS0`: printable, no
    /// whitespace (quoted arguments with spaces are not supported).
    KernelArg,
    validate_kernel_arg
);

fn validate_kernel_arg(value: &str) -> Result<String, InvalidValue> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidValue::new(
            "kernel argument",
            value,
            "expected one non-empty argument without whitespace; list arguments separately",
        ));
    }
    Ok(value.to_owned())
}

string_newtype!(
    /// The target of a symbolic link, as stored in the link: relative
    /// (`busybox`) or absolute inside the image (`/usr/bin/busybox`).
    LinkTarget,
    validate_link_target
);

fn validate_link_target(value: &str) -> Result<String, InvalidValue> {
    if value.is_empty() || value.contains('\0') || value.len() > 4095 {
        return Err(InvalidValue::new(
            "symlink target",
            value,
            "expected a non-empty path shorter than 4096 bytes",
        ));
    }
    Ok(value.to_owned())
}

string_newtype!(
    /// A Cargo binary name from this workspace, e.g. `node-agent`.
    BinaryName,
    validate_binary_name
);

fn validate_binary_name(value: &str) -> Result<String, InvalidValue> {
    let valid = value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(InvalidValue::new(
            "binary name",
            value,
            "expected a Cargo binary name such as `node-agent`",
        ));
    }
    Ok(value.to_owned())
}

impl BinaryName {
    /// `usr/bin/<name>`, where workspace binaries go unless told otherwise.
    pub fn default_destination(&self) -> ImagePath {
        // A binary name is one path segment of [A-Za-z0-9_-], so the joined
        // path is already in ImagePath's normal form.
        ImagePath(format!("usr/bin/{}", self.0))
    }
}

string_newtype!(
    /// An OCI image repository name, e.g. `registry.k8s.io/pause` or
    /// `localhost:5000/cairn/busybox`: lowercase path components of
    /// `[a-z0-9._-]` separated by `/`; the first component may be a registry
    /// host with a `:port`.
    OciName,
    validate_oci_name
);

fn validate_oci_name(value: &str) -> Result<String, InvalidValue> {
    const WHAT: &str = "OCI image name";
    let components: Vec<&str> = value.split('/').collect();
    for (index, component) in components.iter().enumerate() {
        let is_registry = index == 0 && components.len() > 1;
        let allowed = |c: char| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || "._-".contains(c)
                || (is_registry && (c == ':' || c.is_ascii_uppercase()))
        };
        let valid = component.starts_with(|c: char| c.is_ascii_alphanumeric())
            && component.ends_with(|c: char| c.is_ascii_alphanumeric())
            && component.chars().all(allowed);
        if !valid {
            return Err(InvalidValue::new(
                WHAT,
                value,
                "expected lowercase components of a-z, 0-9, `._-` separated by `/`, such as `registry.k8s.io/pause`",
            ));
        }
    }
    Ok(value.to_owned())
}

string_newtype!(
    /// An OCI image tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
    OciTag,
    validate_oci_tag
);

fn validate_oci_tag(value: &str) -> Result<String, InvalidValue> {
    let valid = (1..=128).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !valid {
        return Err(InvalidValue::new(
            "OCI tag",
            value,
            "expected 1-128 characters of A-Z, a-z, 0-9, `._-`, not starting with `.` or `-`",
        ));
    }
    Ok(value.to_owned())
}

/// Lexically normalises a host path: drops `.` components and folds `dir/..`
/// pairs, keeping leading `..` (it must stay relative to its base). Used to
/// rebase `from` paths of an extended profile onto the extending one.
pub(crate) fn normalize_host_path(path: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                _ => out.push(component),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_follow_debian_policy() {
        for good in [
            "containerd",
            "linux-image-cloud-amd64",
            "libstdc++6",
            "g++",
            "0ad",
        ] {
            assert!(PackageName::from_str(good).is_ok(), "{good}");
        }
        for bad in ["a", "Containerd", "-foo", "foo_bar", "foo bar", ""] {
            assert!(PackageName::from_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn package_patterns_match_wildcards() -> Result<(), InvalidValue> {
        let pattern: PackagePattern = "linux-image-*-cloud-amd64".parse()?;
        assert!(pattern.matches("linux-image-6.1.0-28-cloud-amd64"));
        assert!(!pattern.matches("linux-image-cloud-amd64"));
        assert!(!pattern.matches("linux-image-6.1.0-28-amd64"));
        let pattern: PackagePattern = "lib?".parse()?;
        assert!(pattern.matches("libc"));
        assert!(!pattern.matches("libcc"));
        Ok(())
    }

    #[test]
    fn sha256_requires_64_lowercase_hex() {
        let good = "a".repeat(64);
        assert!(Sha256::from_str(&good).is_ok());
        assert!(Sha256::from_str(&"A".repeat(64)).is_err());
        assert!(Sha256::from_str(&"a".repeat(63)).is_err());
        assert!(Sha256::from_str(&"g".repeat(64)).is_err());
        assert_eq!(
            Sha256::of(b"").as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sysctl_keys_are_dotted() -> Result<(), InvalidValue> {
        let key: SysctlKey = "net.ipv4.conf.eth0/100.rp_filter".parse()?;
        assert_eq!(
            key.proc_path(),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
        for bad in ["net", "net..ipv4", "net.IPV4", "net.ipv4 .x", ".net.ipv4"] {
            assert!(SysctlKey::from_str(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn module_names_normalise_dashes() -> Result<(), InvalidValue> {
        let module: ModuleName = "br-netfilter".parse()?;
        assert_eq!(module.as_str(), "br_netfilter");
        assert!(ModuleName::from_str("xt_MASQUERADE").is_ok());
        assert!(ModuleName::from_str("overlay.ko").is_err());
        assert!(ModuleName::from_str("kernel/fs/overlay").is_err());
        Ok(())
    }

    #[test]
    fn image_paths_are_normalised_and_stay_inside() -> Result<(), InvalidValue> {
        assert_eq!(ImagePath::from_str("/etc//motd/")?.as_str(), "etc/motd");
        assert_eq!(ImagePath::from_str("./usr/./bin/x")?.as_str(), "usr/bin/x");
        for bad in ["../etc", "etc/../../x", "usr/..", "/", "", "."] {
            assert!(ImagePath::from_str(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn path_globs_compile_and_refuse_parent() -> Result<(), InvalidValue> {
        let glob: PathGlob = "/usr/share/doc/**".parse()?;
        assert_eq!(glob.as_str(), "usr/share/doc/**");
        let set = glob_set(&[glob, "usr/share/*.txt".parse()?]).expect("globs compile");
        assert!(set.is_match("usr/share/doc/containerd/copyright"));
        assert!(set.is_match("usr/share/a.txt"));
        assert!(!set.is_match("usr/share/x/a.txt"));
        assert!(PathGlob::from_str("../x/**").is_err());
        assert!(PathGlob::from_str("usr/[x").is_err());
        Ok(())
    }

    #[test]
    fn urls_must_be_http() {
        assert!(HttpUrl::from_str("https://example.org/a.tgz").is_ok());
        assert!(HttpUrl::from_str("http://127.0.0.1:8080/a").is_ok());
        for bad in [
            "ftp://x/y",
            "https://",
            "https:///x",
            "https://a b/c",
            "file:///x",
        ] {
            assert!(HttpUrl::from_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_are_octal_strings() -> Result<(), InvalidValue> {
        assert_eq!(FileMode::from_str("0755")?.bits(), 0o755);
        assert_eq!(FileMode::from_str("644")?.bits(), 0o644);
        assert_eq!(FileMode::from_str("4755")?.to_string(), "4755");
        for bad in ["0855", "75", "07555", "rwx", ""] {
            assert!(FileMode::from_str(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn oci_names_and_tags() {
        assert!(OciName::from_str("registry.k8s.io/pause").is_ok());
        assert!(OciName::from_str("localhost:5000/cairn/busybox").is_ok());
        assert!(OciName::from_str("Busybox").is_err());
        assert!(OciName::from_str("a//b").is_err());
        assert!(OciTag::from_str("3.9").is_ok());
        assert!(OciTag::from_str(".hidden").is_err());
    }

    #[test]
    fn host_paths_normalise_lexically() {
        assert_eq!(
            normalize_host_path(Path::new("sub/../files/./motd")),
            Path::new("files/motd")
        );
        assert_eq!(
            normalize_host_path(Path::new("../base/../files")),
            Path::new("../files")
        );
        assert_eq!(normalize_host_path(Path::new("a/..")), Path::new("."));
    }
}
