//! File watching: notify (debounced by notify-debouncer-full) on every source directory, turned
//! into hints for the scheduler. Events only say "look here"; the scan is the truth
//! (DESIGN invariant 7), so anything the watcher cannot promise — an overflow, an error, a new
//! directory whose files may predate its watch, a root that did not exist yet — becomes a
//! request for a full scan.
//!
//! Roots that do not exist yet are covered by a non-recursive watch on their nearest existing
//! ancestor: when the tool is installed later and creates its directory, we see it and watch it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{
    RecursiveMode,
    event::{AccessKind, AccessMode, EventKind},
};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

/// What the watcher tells the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// These paths changed.
    Changed(Vec<PathBuf>),
    /// Scan everything (overflow, watcher error, new directory, new root).
    Rescan(String),
}

/// Why watching could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The inotify watch limit was reached.
    #[error(
        "the inotify watch limit was reached ({current}); opensyncd falls back to scanning every \
         rescan_interval_secs. To watch everything, raise it: \
         `sudo sysctl fs.inotify.max_user_watches=524288` (persist it in /etc/sysctl.d/)"
    )]
    Limit {
        /// The current limit, as read from /proc.
        current: String,
    },
    /// Anything else from notify.
    #[error("file watching failed: {0}")]
    Notify(#[from] notify::Error),
}

/// The running watcher. Dropping it stops watching.
pub struct Watcher {
    debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    roots: Vec<PathBuf>,
    /// Paths currently watched, with their mode (true = recursive).
    watched: BTreeSet<(PathBuf, bool)>,
    /// Set when the watch limit was hit: scans carry the load.
    pub degraded: Option<String>,
}

impl Watcher {
    /// Starts watching `roots` (which may not exist yet); hints go to `tx`.
    pub fn start(
        roots: Vec<PathBuf>,
        debounce: Duration,
        tx: mpsc::UnboundedSender<Hint>,
    ) -> Result<Watcher, WatchError> {
        let handler_roots = roots.clone();
        let debouncer = new_debouncer(
            debounce.max(Duration::from_millis(10)),
            None,
            move |result: DebounceEventResult| {
                for hint in hints_from(result, &handler_roots) {
                    let _ = tx.send(hint);
                }
            },
        )?;
        let mut watcher = Watcher {
            debouncer,
            roots,
            watched: BTreeSet::new(),
            degraded: None,
        };
        watcher.refresh()?;
        Ok(watcher)
    }

    /// (Re-)establishes watches: recursive on existing roots, non-recursive on the nearest
    /// existing ancestor of missing ones. Returns true when anything new is watched (the
    /// caller then rescans, since files may predate the watch).
    pub fn refresh(&mut self) -> Result<bool, WatchError> {
        let mut wanted = BTreeSet::new();
        for root in &self.roots {
            if root.is_dir() {
                wanted.insert((root.clone(), true));
            } else if let Some(ancestor) = nearest_existing_ancestor(root) {
                wanted.insert((ancestor, false));
            }
        }
        let mut added = false;
        for stale in self
            .watched
            .difference(&wanted)
            .cloned()
            .collect::<Vec<_>>()
        {
            let _ = self.debouncer.unwatch(&stale.0);
            self.watched.remove(&stale);
        }
        for (path, recursive) in wanted {
            if self.watched.contains(&(path.clone(), recursive)) {
                continue;
            }
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match self.debouncer.watch(&path, mode) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), recursive, "watching");
                    self.watched.insert((path, recursive));
                    added = true;
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    let err = WatchError::Limit {
                        current: inotify_limit(),
                    };
                    tracing::error!("{err}");
                    self.degraded = Some(err.to_string());
                    return Ok(added);
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {
                    // Vanished between the check and the watch; the next refresh retries.
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(added)
    }

    /// The paths currently watched.
    pub fn watched(&self) -> Vec<PathBuf> {
        self.watched.iter().map(|(p, _)| p.clone()).collect()
    }
}

fn nearest_existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .find(|p| p.is_dir())
        .map(Path::to_path_buf)
}

/// The current inotify limit, for the error message.
fn inotify_limit() -> String {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .map(|s| format!("fs.inotify.max_user_watches = {}", s.trim()))
        .unwrap_or_else(|_| "limit unknown".into())
}

/// Turns one debouncer delivery into hints.
fn hints_from(result: DebounceEventResult, roots: &[PathBuf]) -> Vec<Hint> {
    let events = match result {
        Ok(events) => events,
        Err(errors) => {
            let text = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return vec![Hint::Rescan(format!("watcher error: {text}"))];
        }
    };
    let mut changed = BTreeSet::new();
    let mut rescan = None;
    for event in events {
        if event.need_rescan() {
            rescan = Some("the watcher lost events (overflow)".to_string());
            continue;
        }
        // Reads (open / close-without-write) change nothing. They must be dropped: opensyncd's
        // own reads produce them, and treating them as changes made every read schedule
        // another read of the same file (a self-sustaining loop that made a 1 GiB backfill
        // quadratic and kept an idle daemon busy).
        // (Closing a file that was written is a write, though notify files it under access.)
        let closed_after_write = matches!(
            event.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        if matches!(event.kind, EventKind::Access(_)) && !closed_after_write {
            continue;
        }
        let is_create = matches!(event.kind, EventKind::Create(_));
        for path in &event.paths {
            // A new directory: files created in it before its watch existed are invisible to
            // notify, and a root appearing needs a recursive watch — both mean "scan".
            if is_create && path.is_dir() {
                rescan = Some(format!("new directory {}", path.display()));
            } else if roots.iter().any(|r| r == path || r.starts_with(path)) {
                rescan = Some(format!(
                    "source directory {} appeared or changed",
                    path.display()
                ));
            } else {
                changed.insert(path.clone());
            }
        }
    }
    let mut hints = Vec::new();
    if !changed.is_empty() {
        hints.push(Hint::Changed(changed.into_iter().collect()));
    }
    if let Some(reason) = rescan {
        hints.push(Hint::Rescan(reason));
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv_until(
        rx: &mut mpsc::UnboundedReceiver<Hint>,
        mut want: impl FnMut(&Hint) -> bool,
    ) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match rx.try_recv() {
                Ok(h) if want(&h) => return true,
                Ok(_) => {}
                Err(_) => std::thread::park_timeout(Duration::from_millis(20)),
            }
        }
        false
    }

    #[test]
    fn changes_and_new_directories_become_hints() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sessions");
        std::fs::create_dir(&root).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _w = Watcher::start(vec![root.clone()], Duration::from_millis(50), tx).unwrap();
        let file = root.join("a.jsonl");
        std::fs::write(&file, b"x\n").unwrap();
        assert!(recv_until(
            &mut rx,
            |h| matches!(h, Hint::Changed(p) if p.contains(&file))
        ));
        std::fs::create_dir(root.join("2026")).unwrap();
        assert!(recv_until(&mut rx, |h| matches!(h, Hint::Rescan(_))));
    }

    #[test]
    fn reading_a_file_is_not_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sessions");
        std::fs::create_dir(&root).unwrap();
        let file = root.join("a.jsonl");
        std::fs::write(&file, b"x\n").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _w = Watcher::start(vec![root.clone()], Duration::from_millis(50), tx).unwrap();
        for _ in 0..5 {
            let _ = std::fs::read(&file).unwrap();
        }
        // A write afterwards is seen, and it is the only change reported.
        let other = root.join("b.jsonl");
        std::fs::write(&other, b"y\n").unwrap();
        let mut seen = Vec::new();
        assert!(recv_until(&mut rx, |h| {
            if let Hint::Changed(p) = &h {
                seen.extend(p.clone());
            }
            seen.contains(&other)
        }));
        assert!(
            !seen.contains(&file),
            "a read was reported as a change: {seen:?}"
        );
    }

    #[test]
    fn a_missing_root_is_picked_up_when_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".codex").join("sessions");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut w = Watcher::start(vec![root.clone()], Duration::from_millis(50), tx).unwrap();
        assert_eq!(w.watched(), vec![dir.path().to_path_buf()]);
        std::fs::create_dir_all(&root).unwrap();
        assert!(recv_until(&mut rx, |h| matches!(h, Hint::Rescan(_))));
        assert!(w.refresh().unwrap());
        assert_eq!(w.watched(), vec![root]);
    }
}
