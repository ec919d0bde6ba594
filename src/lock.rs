//! The single-instance lock (`<state>/opensyncd.lock`, an `flock` taken before the ledger is
//! opened): one-shot commands take it without waiting; the daemon waits for a one-shot holder
//! but exits when the holder is another daemon (one that answers on the control socket).

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

/// Records the holder's pid in a lock file just taken (for humans reading it).
fn stamp_pid(file: &mut File) {
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
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
        "another opensyncd command holds the lock; waiting for it to finish"
    );
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
