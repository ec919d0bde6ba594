//! The single-instance lock (`<state>/opensyncd.lock`, an `flock` taken before the ledger is
//! opened): one-shot commands take it without waiting; the daemon waits for a one-shot holder
//! but exits when the holder is another daemon (one that answers on the control socket).
//!
//! The holder writes its pid and command line into the lock file, and a daemon waiting for
//! the lock says so in `<state>/daemon-waiting`, so that `status` can name who blocks whom.

use std::fs::File;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::config::Paths;
use crate::control::{self, Request};
use crate::private_fs;

/// Opens (creating) the lock file in the private state dir.
fn open_lock_file(paths: &Paths) -> Result<File> {
    private_fs::ensure_private_dir(&paths.state_dir)
        .with_context(|| format!("creating {}", paths.state_dir.display()))?;
    let path = paths.lock_file();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Records the holder's pid and command line in a lock file just taken (for `status`, and
/// humans reading it).
fn stamp_pid(file: &mut File) {
    let _ = file.set_len(0);
    let command: Vec<String> = std::env::args().collect();
    let _ = writeln!(file, "{}\n{}", std::process::id(), command.join(" "));
}

/// Who holds the lock, as its holder wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// Its command line (empty when written by an older version).
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.command.is_empty() {
            write!(f, "pid {}", self.pid)
        } else {
            write!(f, "pid {} (`{}`)", self.pid, self.command)
        }
    }
}

/// Reads the holder recorded in a pid file (the lock file or the waiting marker); `None` when
/// there is none or it does not parse.
fn read_holder(path: &std::path::Path) -> Option<Holder> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    Some(Holder {
        pid,
        command: lines.next().unwrap_or_default().trim().to_string(),
    })
}

/// The process that last took the lock (meaningful while [`take_lock`] fails).
pub fn holder(paths: &Paths) -> Option<Holder> {
    read_holder(&paths.lock_file())
}

/// `<state>/daemon-waiting`: the pid of a daemon waiting for the lock.
fn waiting_file(paths: &Paths) -> std::path::PathBuf {
    paths.state_dir.join("daemon-waiting")
}

/// A daemon waiting for the lock, if one is (its process still exists).
pub fn waiting_daemon(paths: &Paths) -> Option<Holder> {
    read_holder(&waiting_file(paths)).filter(|h| control::process_exists(h.pid))
}

/// Who blocks whom, for `status`, when the lock is held by a process that does not answer on
/// the control socket.
pub fn describe_holder(paths: &Paths) -> String {
    let holder = holder(paths).map_or("another process".to_string(), |h| format!("{h}"));
    match waiting_daemon(paths) {
        Some(daemon) => format!(
            "{holder} holds {}; the daemon ({daemon}) waits for it to finish",
            paths.lock_file().display()
        ),
        None => format!(
            "{holder} holds {} (a one-shot command: it releases it when it ends)",
            paths.lock_file().display()
        ),
    }
}

/// Takes the single-instance lock (non-blocking). `Ok(None)` when another process holds it.
pub fn take_lock(paths: &Paths) -> Result<Option<File>> {
    let mut file = open_lock_file(paths)?;
    match file.try_lock() {
        Ok(()) => {
            stamp_pid(&mut file);
            Ok(Some(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", paths.lock_file().display()))
        }
    }
}

/// Takes the lock for the daemon. Only a daemon answers on the control socket, so a holder
/// that answers is a running daemon (`Ok(None)`: exit, it is already running); a holder that
/// does not is a one-shot command (`status`, `sync`, `export`) that will release it soon, and
/// the daemon waits for it rather than exiting (which would leave a service stopped because
/// the user happened to run `opensyncd status` while it started).
pub fn wait_for_lock(paths: &Paths) -> Result<Option<File>> {
    if let Some(lock) = take_lock(paths)? {
        return Ok(Some(lock));
    }
    // Block on the lock in a helper thread (woken by the kernel the moment it is released,
    // so a busy one-shot command cannot starve us), while this thread watches the socket for
    // a daemon that holds it.
    let path = paths.lock_file();
    let file = open_lock_file(paths)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut file = file;
        let result = file.lock().map(|()| {
            stamp_pid(&mut file);
            file
        });
        let _ = tx.send(result);
    });
    tracing::info!(
        lock = %path.display(),
        "{} holds the lock; waiting for it to finish",
        holder(paths).map_or("another opensyncd command".to_string(), |h| h.to_string())
    );
    let marker = waiting_file(paths);
    let _ = std::fs::write(&marker, format!("{}\n", std::process::id()));
    let _remove_marker = RemoveOnDrop(marker);
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Ok(file)) => return Ok(Some(file)),
            Ok(Err(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(anyhow!("the lock waiter for {} stopped", path.display()));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(_)) =
                    control::request(paths, &Request::Status, Some(Duration::from_secs(2)))
                {
                    return Ok(None);
                }
            }
        }
    }
}

/// Removes a file when dropped (the waiting marker, however waiting ends).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
