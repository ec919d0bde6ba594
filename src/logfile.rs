//! The daemon's own log file, `<state dir>/opensyncd.log`: written (beside stderr) when no
//! service manager keeps the daemon's output — a daemon started by hand in a terminal, by a
//! login script or another supervisor — so that `opensyncd logs` always has something to show.
//! Under systemd the journal has it and under launchd the LaunchAgent's log file, so nothing is
//! written twice there.
//!
//! The file never grows past [`MAX_BYTES`]: when a line would cross it, the file becomes
//! `opensyncd.log.1` (replacing the older copy) and a new one starts.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Size at which the log file is rotated.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Whether a service manager collects this process's output: systemd sets `INVOCATION_ID`
/// (and `JOURNAL_STREAM` when stderr is the journal) for every unit it starts; launchd sets
/// `XPC_SERVICE_NAME` to the job's label.
pub fn under_service_manager(env: &dyn Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty() && v != "0");
    set("INVOCATION_ID") || set("JOURNAL_STREAM") || set("XPC_SERVICE_NAME")
}

/// The rotated copy of `path` (`opensyncd.log.1`).
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".1");
    path.with_file_name(name)
}

/// An append-only log file that rotates itself at [`MAX_BYTES`]; a `MakeWriter` for tracing.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    state: Mutex<Open>,
}

#[derive(Debug)]
struct Open {
    file: File,
    len: u64,
}

impl RotatingLog {
    /// Opens (creating, mode 0600) the log file at `path`; its directory is created private.
    pub fn open(path: &Path) -> io::Result<RotatingLog> {
        Self::open_with_limit(path, MAX_BYTES)
    }

    /// [`RotatingLog::open`] with another size limit (tests).
    pub fn open_with_limit(path: &Path, max_bytes: u64) -> io::Result<RotatingLog> {
        if let Some(dir) = path.parent() {
            crate::private_fs::ensure_private_dir(dir)?;
        }
        let file = open_append(path)?;
        let len = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            max_bytes,
            state: Mutex::new(Open { file, len }),
        })
    }

    fn write_line(&self, buf: &[u8]) -> io::Result<()> {
        let mut open = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if open.len > 0 && open.len + buf.len() as u64 > self.max_bytes {
            std::fs::rename(&self.path, rotated_path(&self.path))?;
            open.file = open_append(&self.path)?;
            open.len = 0;
        }
        open.file.write_all(buf)?;
        open.len += buf.len() as u64;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// One write into the log (tracing formats a whole event, then writes it once).
#[derive(Debug)]
pub struct LogWriter<'a>(&'a RotatingLog);

impl Write for LogWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_line(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingLog {
    type Writer = LogWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_before_it_passes_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/opensyncd.log");
        let log = RotatingLog::open_with_limit(&path, 20).unwrap();
        let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&log);
        w.write_all(b"0123456789\n").unwrap(); // 11 bytes
        w.write_all(b"abcdefghi\n").unwrap(); // 21 > 20: rotates first
        w.write_all(b"x\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(rotated_path(&path)).unwrap(),
            "0123456789\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abcdefghi\nx\n");
        // Reopening appends.
        drop(log);
        let log = RotatingLog::open_with_limit(&path, 20).unwrap();
        tracing_subscriber::fmt::MakeWriter::make_writer(&log)
            .write_all(b"y\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abcdefghi\nx\ny\n");
    }

    #[test]
    fn service_managers_are_recognised_by_what_they_set() {
        let none = |_: &str| None;
        assert!(!under_service_manager(&none));
        let systemd = |n: &str| (n == "INVOCATION_ID").then(|| "abc".to_string());
        assert!(under_service_manager(&systemd));
        let launchd = |n: &str| (n == "XPC_SERVICE_NAME").then(|| "dev.opensyncd.opensyncd".into());
        assert!(under_service_manager(&launchd));
        let terminal = |n: &str| (n == "XPC_SERVICE_NAME").then(|| "0".to_string());
        assert!(!under_service_manager(&terminal));
    }
}
