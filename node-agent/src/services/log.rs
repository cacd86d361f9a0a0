//! Per-service log files: `<log_dir>/<name>.log`.
//!
//! Every line (the child's stdout and stderr, which share one pipe, and the
//! supervisor's own events) is prefixed with the time since boot the way
//! the kernel prints it, `[   12.345] `, so service logs line up with the
//! console and `dmesg`. When a file would grow past the size cap it is
//! renamed to `<name>.log.1` (replacing the previous one) and a new file is
//! started.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Default size at which a log file is rotated.
pub const DEFAULT_LOG_LIMIT: u64 = 4 * 1024 * 1024;

/// Longest line kept; longer output is split.
const MAX_LINE: usize = 8192;

/// Seconds since boot (CLOCK_BOOTTIME) as `[   12.345]`.
pub fn boot_timestamp() -> String {
    let (secs, millis) = match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(now) => (now.tv_sec(), now.tv_nsec() / 1_000_000),
        Err(_) => (0, 0),
    };
    format!("[{secs:5}.{millis:03}]")
}

#[derive(Debug)]
struct LogFile {
    file: Option<File>,
    size: u64,
}

/// One service's log, shared by its output pump and the supervisor.
#[derive(Debug)]
pub struct ServiceLog {
    path: PathBuf,
    limit: u64,
    state: Mutex<LogFile>,
}

impl ServiceLog {
    pub fn new(log_dir: &Path, name: &str, limit: u64) -> ServiceLog {
        ServiceLog {
            path: log_dir.join(format!("{name}.log")),
            limit,
            state: Mutex::new(LogFile {
                file: None,
                size: 0,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rotated(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    /// Appends one timestamped line. Write errors are dropped: a full or
    /// missing log disk must never stop a service.
    pub fn line(&self, text: &str) {
        let line = format!(
            "{} {}\n",
            boot_timestamp(),
            text.trim_end_matches(['\n', '\r'])
        );
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.file.is_some() && state.size + line.len() as u64 > self.limit {
            state.file = None;
            let _ = std::fs::rename(&self.path, self.rotated());
        }
        if state.file.is_none() {
            if let Some(parent) = self.path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(file) => {
                    state.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                    state.file = Some(file);
                }
                Err(_) => return,
            }
        }
        if let Some(file) = state.file.as_mut()
            && file.write_all(line.as_bytes()).is_ok()
        {
            state.size += line.len() as u64;
        }
    }

    /// Copies `reader` (a child's output pipe) into the log line by line
    /// until end of file.
    pub fn pump(&self, reader: impl Read) {
        let mut reader = BufReader::new(reader);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match (&mut reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut buffer)
            {
                Ok(0) => return,
                Ok(_) => self.line(&String::from_utf8_lossy(&buffer)),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// The last `lines` lines, reaching into the rotated file if needed.
    pub fn tail(&self, lines: usize) -> std::io::Result<Vec<String>> {
        let current = read_lines(&self.path)?;
        if current.len() >= lines {
            return Ok(current[current.len() - lines..].to_vec());
        }
        let mut all = read_lines(&self.rotated()).unwrap_or_default();
        all.extend(current);
        let start = all.len().saturating_sub(lines);
        Ok(all.split_off(start))
    }
}

fn read_lines(path: &Path) -> std::io::Result<Vec<String>> {
    let data = std::fs::read(path)?;
    Ok(String::from_utf8_lossy(&data)
        .lines()
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_timestamped_and_rotated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ServiceLog::new(dir.path(), "svc", 200);
        for i in 0..20 {
            log.line(&format!("line {i}"));
        }
        let rotated = std::fs::read_to_string(dir.path().join("svc.log.1")).expect("rotated");
        let current = std::fs::read_to_string(dir.path().join("svc.log")).expect("current");
        assert!(current.len() <= 200 && rotated.len() <= 200);
        assert!(current.starts_with('['), "{current}");
        let tail = log.tail(3).expect("tail");
        assert_eq!(tail.len(), 3);
        assert!(tail[2].ends_with("] line 19"), "{tail:?}");
        let long = log.tail(12).expect("tail");
        assert!(long[11].ends_with("line 19"));
        assert_eq!(long.len(), 12);
    }

    #[test]
    fn pump_splits_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ServiceLog::new(dir.path(), "svc", DEFAULT_LOG_LIMIT);
        log.pump(&b"one\ntwo\r\nthree"[..]);
        let tail = log.tail(10).expect("tail");
        let texts: Vec<&str> = tail
            .iter()
            .map(|l| &l[l.find("] ").expect("ts") + 2..])
            .collect();
        assert_eq!(texts, ["one", "two", "three"]);
    }
}
