//! Files that appear complete or not at all.
//!
//! Every writer in this crate builds its output under a temporary name in
//! the destination's directory (same filesystem, so the final rename is
//! atomic) and renames it into place only when it is complete; dropping
//! the temporary file on an error removes it.

use std::io;
use std::path::Path;

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
