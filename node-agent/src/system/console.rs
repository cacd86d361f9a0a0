//! The console of a running node: every line stamped with the time since
//! the kernel started, like the kernel's own messages, and kept in
//! `/var/log/cairn/node-agent.log` once `/var` is mounted (lines from
//! before that are held in memory and written first).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Time since boot (CLOCK_BOOTTIME: it keeps counting through suspend, as
/// the kernel's log timestamps do).
pub fn since_boot() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(Duration::from)
        .unwrap_or_default()
}

/// `[   12.345] ` for a duration since boot.
pub fn stamp(elapsed: Duration) -> String {
    format!("[{:>5}.{:03}] ", elapsed.as_secs(), elapsed.subsec_millis())
}

/// A line-oriented, thread-safe console.
pub struct Console {
    inner: Mutex<Inner>,
}

struct Inner {
    out: Box<dyn Write + Send>,
    log: Option<File>,
    /// Lines written before the log file existed.
    early: Vec<String>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

/// What every node-agent console line starts with after the stamp.
pub const PREFIX: &str = "cairn node-agent: ";

impl Console {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                out,
                log: None,
                early: Vec::new(),
            }),
        }
    }

    /// Writes `cairn node-agent: <text>` with a timestamp.
    pub fn line(&self, text: &str) {
        self.raw(&format!("{PREFIX}{text}"));
    }

    /// Writes `text` with a timestamp and no prefix.
    pub fn raw(&self, text: &str) {
        let stamped = format!("{}{text}\n", stamp(since_boot()));
        let mut inner = match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = inner.out.write_all(stamped.as_bytes());
        let _ = inner.out.flush();
        let inner = &mut *inner;
        match inner.log.as_mut() {
            Some(log) => {
                let _ = log.write_all(stamped.as_bytes());
            }
            None if inner.early.len() < 10_000 => inner.early.push(stamped),
            None => {}
        }
    }

    /// Starts copying the console to `path` (appending), beginning with the
    /// lines written so far.
    pub fn attach_log(&self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        let mut inner = match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        for line in inner.early.drain(..) {
            file.write_all(line.as_bytes())?;
        }
        inner.log = Some(file);
        Ok(())
    }

    pub fn flush(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            let _ = inner.out.flush();
            if let Some(log) = inner.log.as_mut() {
                let _ = log.sync_data();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_stamped_and_reach_the_log_with_earlier_ones() {
        let out = Shared::default();
        let console = Console::new(Box::new(out.clone()));
        console.line("first");
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log/node-agent.log");
        console.attach_log(&log).expect("attach");
        console.line("second");
        let screen = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
        let file = std::fs::read_to_string(&log).expect("log");
        assert_eq!(
            screen, file,
            "the log holds exactly what the console showed"
        );
        let lines: Vec<&str> = screen.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with('[') && lines[0].ends_with("] cairn node-agent: first"),
            "{}",
            lines[0]
        );
        assert_eq!(stamp(Duration::from_millis(12_345)), "[   12.345] ");
    }
}
