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

/// The whole log (lossy UTF-8; empty if it does not exist).
pub fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The current length of a log, to wait for lines written after now with
/// [`wait_for_line_after`].
pub fn mark(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn find_after(path: &Path, offset: u64, expected: &str) -> Option<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    text.lines()
        .find(|l| l.contains(expected))
        .map(str::to_owned)
}

/// The fingerprint `sha256:<64 hex>` of the node API certificate from the
/// last console line announcing the node API (a diskless reboot makes a
/// new one).
pub fn api_fingerprint(console: &str) -> Option<String> {
    console
        .lines()
        .rev()
        .filter(|line| line.contains("node API"))
        .find_map(|line| {
            let start = line.find("sha256:")?;
            let hex: String = line[start + 7..]
                .chars()
                .take_while(char::is_ascii_hexdigit)
                .collect();
            (hex.len() == 64).then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
        })
}

/// The maintenance key from the last console line announcing one
/// (`... maintenance key: KEY` or `... maintenance key KEY`).
pub fn maintenance_key(console: &str) -> Option<String> {
    console.lines().rev().find_map(|line| {
        let start = line.find("maintenance key")? + "maintenance key".len();
        let key = line[start..]
            .trim_start_matches(':')
            .split_whitespace()
            .next()?;
        Some(key.to_owned())
    })
}

/// Waits until the log at `path` has a line containing `expected`.
/// `still_running` is polled so a VM that exits early fails fast.
pub fn wait_for_line(
    path: &Path,
    expected: &str,
    timeout: Duration,
    still_running: impl FnMut() -> Result<(), String>,
) -> Result<String, ConsoleError> {
    wait_for_line_after(path, 0, expected, timeout, still_running)
}

/// Like [`wait_for_line`], looking only at what was written after byte
/// `offset` (from [`mark`]), e.g. the console of the boot after a reboot.
pub fn wait_for_line_after(
    path: &Path,
    offset: u64,
    expected: &str,
    timeout: Duration,
    mut still_running: impl FnMut() -> Result<(), String>,
) -> Result<String, ConsoleError> {
    let start = Instant::now();
    let mut exit = String::new();
    loop {
        if let Some(line) = find_after(path, offset, expected) {
            return Ok(line);
        }
        if let Err(status) = still_running() {
            // One last read: the line may have landed just before the exit.
            if let Some(line) = find_after(path, offset, expected) {
                return Ok(line);
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const HEX_B: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    #[test]
    fn the_last_announced_fingerprint_and_key_win() {
        let console = format!(
            "[    1.000] cairn node-agent: node API on :50000, certificate sha256:{HEX_A}\n\
             [    1.100] cairn node-agent: maintenance key: 7K2QD-M9XPA-0RTVB-4HN3C\n\
             [    9.000] node API: listening on :50000, certificate fingerprint sha256:{HEX_B}\n\
             [    9.100] node API: maintenance key ABCDE-FGHJK\n"
        );
        assert_eq!(
            api_fingerprint(&console),
            Some(format!("sha256:{}", HEX_B.to_ascii_lowercase()))
        );
        assert_eq!(maintenance_key(&console).as_deref(), Some("ABCDE-FGHJK"));
        assert_eq!(api_fingerprint("sha256:abc node API"), None);
    }
}
