//! Finding and stopping a lab's processes.
//!
//! Every process a lab starts names the lab directory on its command line
//! (QEMU's serial log, dnsmasq's lease file, the daemon's `--state-dir`),
//! so scanning `/proc/*/cmdline` for an argument that is the lab directory
//! or lies under it finds them all, even after a crash left no state behind
//! and even if a pid was reused in between.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A process found in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabProcess {
    pub pid: u32,
    pub cmdline: String,
}

/// Whether one of `args` is `dir` or a path under it.
fn mentions(args: &[&str], dir: &str) -> bool {
    let under = format!("{}/", dir.trim_end_matches('/'));
    let dir = dir.trim_end_matches('/');
    args.iter().any(|arg| *arg == dir || arg.contains(&under))
}

/// Live processes whose command line mentions `dir` (never this process).
pub fn find(dir: &Path) -> Vec<LabProcess> {
    let dir = dir.to_string_lossy();
    let own = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&raw);
        let args: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
        if mentions(&args, &dir) {
            found.push(LabProcess {
                pid,
                cmdline: args.join(" "),
            });
        }
    }
    found
}

/// Whether `pid` is alive (zombies count as gone).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
}

/// Sends `signal` to `pid`, ignoring processes that are already gone.
pub fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// SIGKILLs every process mentioning `dir` and waits (up to `timeout`)
/// until they are gone; returns those that were killed.
pub fn kill_all(dir: &Path, timeout: Duration) -> Vec<LabProcess> {
    let found = find(dir);
    for process in &found {
        signal(process.pid, Signal::SIGKILL);
    }
    let deadline = Instant::now() + timeout;
    while found.iter().any(|p| alive(p.pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn only_the_lab_directory_and_paths_below_it_match() {
        let dir = "/run/cairn/lab/a";
        assert!(mentions(
            &["qemu", "file:/run/cairn/lab/a/node-1.serial.log"],
            dir
        ));
        assert!(mentions(
            &["bootstrap", "--state-dir", "/run/cairn/lab/a"],
            dir
        ));
        assert!(!mentions(
            &["bootstrap", "--state-dir", "/run/cairn/lab/ab"],
            dir
        ));
        assert!(!mentions(&["qemu", "file:/run/cairn/lab/ab/x"], dir));
    }
}
