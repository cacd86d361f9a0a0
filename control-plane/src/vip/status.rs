//! The status file: who holds the VIP and since when, for node-agent, the
//! node API and people.
//!
//! ```json
//! {"address":"10.0.0.100","interface":"eth0","node":"cp-1","holder":true,
//!  "leader":"cp-1","since":"2026-01-02T03:04:05.678Z","lease_ttl_seconds":2}
//! ```
//!
//! `holder` says whether this node has the address on its interface,
//! `leader` is the election's current leader as last observed (`null` when
//! there is none or etcd could not be asked), `since` is when `holder` or
//! `leader` last changed. The file is replaced atomically (temporary file in
//! the same directory, fsync, rename) so readers never see half of it.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use super::VipError;

/// The content of the status file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Status {
    pub address: IpAddr,
    pub interface: String,
    pub node: String,
    pub holder: bool,
    pub leader: Option<String>,
    /// RFC 3339, UTC.
    pub since: String,
    pub lease_ttl_seconds: u64,
}

/// Writes `status` to `path` atomically, creating the directory.
pub fn write_status(path: &Path, status: &Status) -> Result<(), VipError> {
    let error = |operation: &'static str, source: std::io::Error| VipError::Status {
        operation,
        path: path.to_owned(),
        source,
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(directory).map_err(|e| error("creating the directory of", e))?;
    let mut body = serde_json::to_vec_pretty(status)
        .map_err(|e| error("serialising", std::io::Error::other(e)))?;
    body.push(b'\n');
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vip.json".to_owned());
    let temporary = directory.join(format!(".{file_name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&body)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        error("writing", e)
    })
}

/// `now` as RFC 3339.
pub fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_atomically_and_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/cairn/vip.json");
        let mut status = Status {
            address: "10.0.0.100".parse().expect("ip"),
            interface: "eth0".into(),
            node: "cp-1".into(),
            holder: false,
            leader: None,
            since: rfc3339_now(),
            lease_ttl_seconds: 2,
        };
        write_status(&path, &status).expect("write");
        status.holder = true;
        status.leader = Some("cp-1".into());
        write_status(&path, &status).expect("rewrite");
        let text = std::fs::read_to_string(&path).expect("read");
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["holder"], true);
        assert_eq!(value["leader"], "cp-1");
        assert_eq!(value["address"], "10.0.0.100");
        assert_eq!(value["lease_ttl_seconds"], 2);
        let entries: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("vip.json")]);
        let since = value["since"].as_str().expect("since");
        assert!(since.ends_with('Z') && since.contains('T'), "{since}");
    }
}
