//! Waiting on a VM's serial console.
//!
//! The console is a log file QEMU appends to. Waiting polls it until a line
//! containing the wanted text appears or the deadline passes; the error then
//! carries the last lines of the console so a failed test shows what the
//! guest was doing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[error(
    "expected a console line containing {expected:?} within {timeout:?}{exit}; the console ({path}) ends with:\n{tail}"
)]
pub struct ConsoleError {
    pub expected: String,
    pub timeout: Duration,
    pub path: PathBuf,
    pub tail: String,
    pub exit: String,
}

/// The last `lines` lines of a log file (lossy UTF-8).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// Waits until the log at `path` has a line containing `expected`.
/// `still_running` is polled so a VM that exits early fails fast.
pub fn wait_for_line(
    path: &Path,
    expected: &str,
    timeout: Duration,
    mut still_running: impl FnMut() -> Result<(), String>,
) -> Result<String, ConsoleError> {
    let start = Instant::now();
    let mut exit = String::new();
    loop {
        let text = std::fs::read(path).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        if let Some(line) = text.lines().find(|l| l.contains(expected)) {
            return Ok(line.to_owned());
        }
        if let Err(status) = still_running() {
            // One last read: the line may have landed just before the exit.
            let text = std::fs::read(path).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            if let Some(line) = text.lines().find(|l| l.contains(expected)) {
                return Ok(line.to_owned());
            }
            exit = format!(" (the VM exited: {status})");
            break;
        }
        if start.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(ConsoleError {
        expected: expected.to_owned(),
        timeout,
        path: path.to_path_buf(),
        tail: tail(path, 40),
        exit,
    })
}
