//! Files that appear complete or not at all, and deterministic walks of
//! the trees they are made from.
//!
//! Every writer in this crate builds its output under a temporary name in
//! the destination's directory (same filesystem, so the final rename is
//! atomic) and renames it into place only when it is complete; dropping
//! the temporary file on an error removes it.

use std::io;
use std::path::{Path, PathBuf};

/// A temporary file next to `out`, named `.<prefix>-XXXXXX`.
pub fn temp_file_beside(out: &Path, prefix: &str) -> io::Result<tempfile::NamedTempFile> {
    let directory = out
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(&format!(".{prefix}-"))
        .tempfile_in(directory)
}

/// `SOURCE_DATE_EPOCH` as an RFC 3339 UTC timestamp, for metadata that
/// records a time (SBOM, OCI config) without breaking reproducibility.
pub fn iso8601(epoch: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(epoch).unwrap_or(0))
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Every path below `root`, relative to it, in sorted order (a directory
/// before its contents). Symlinks are listed, not followed. Writers that
/// must produce the same bytes for the same tree walk it this way.
pub fn sorted_tree(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&relative))? {
            let entry = entry?;
            let child = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(child.clone());
            }
            out.push(child);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_listed_sorted_without_following_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("b/c")).expect("mkdir");
        std::fs::write(dir.path().join("a"), "").expect("write");
        std::fs::write(dir.path().join("b/c/d"), "").expect("write");
        std::os::unix::fs::symlink("b", dir.path().join("link")).expect("symlink");
        let listed: Vec<String> = sorted_tree(dir.path())
            .expect("walk")
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(listed, ["a", "b", "b/c", "b/c/d", "link"]);
    }
}
