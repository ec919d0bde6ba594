//! File watching: notify on every source directory, debounced here and turned into hints for
//! the scheduler. Events only say "look here"; the scan is the truth (DESIGN invariant 7), so
//! anything the watcher cannot promise — an overflow, an error, a new directory whose files may
//! predate its watch, a root that did not exist yet — becomes a request for a full scan.
//!
//! The debouncing is ours rather than notify-debouncer-full's because that one wakes up every
//! quarter of the debounce period forever; this one blocks until an event arrives and only
//! keeps a timer while events are pending, so a watcher over an idle tree costs nothing. A
//! path's hint goes out `debounce` after the first event of its burst (a file written
//! continuously is still read every `debounce`).
//!
//! Roots that do not exist yet are covered by a non-recursive watch on their nearest existing
//! ancestor: when the tool is installed later and creates its directory, we see it and watch it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::{
    RecursiveMode, Watcher as _,
    event::{AccessKind, AccessMode, EventKind},
};
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
         2 minutes. To watch everything, raise it: \
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
    notify: notify::RecommendedWatcher,
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
        let (raw_tx, raw_rx) = std_mpsc::channel::<notify::Result<notify::Event>>();
        let notify = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            // Dropped here, on notify's thread, so that opensyncd's own reads never wake the
            // debouncer.
            if result.as_ref().is_ok_and(is_read_only) {
                return;
            }
            let _ = raw_tx.send(result);
        })?;
        let debounce = debounce.max(Duration::from_millis(10));
        let handler_roots = roots.clone();
        std::thread::Builder::new()
            .name("opensyncd-watch".into())
            .spawn(move || debounce_loop(raw_rx, debounce, &handler_roots, &tx))
            .map_err(notify::Error::io)?;
        let mut watcher = Watcher {
            notify,
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
            let _ = self.notify.unwatch(&stale.0);
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
            match self.notify.watch(&path, mode) {
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

/// Reads (open / close-without-write) change nothing. They must be dropped: opensyncd's own
/// reads produce them, and treating them as changes made every read schedule another read of
/// the same file (a self-sustaining loop that made a 1 GiB backfill quadratic and kept an idle
/// daemon busy). (Closing a file that was written is a write, though notify files it under
/// access.)
fn is_read_only(event: &notify::Event) -> bool {
    let closed_after_write = matches!(
        event.kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
    );
    matches!(event.kind, EventKind::Access(_)) && !closed_after_write
}

/// Events waiting for their debounce period to end.
#[derive(Default)]
struct Pending {
    /// Changed paths, with the time of the first event of their burst.
    changed: HashMap<PathBuf, Instant>,
    /// A full scan is needed: why, and since when.
    rescan: Option<(String, Instant)>,
}

impl Pending {
    fn add(&mut self, event: notify::Event, roots: &[PathBuf], now: Instant) {
        if event.need_rescan() {
            self.rescan_because("the watcher lost events (overflow)".into(), now);
            return;
        }
        let is_create = matches!(event.kind, EventKind::Create(_));
        for path in event.paths {
            // A new directory: files created in it before its watch existed are invisible to
            // notify, and a root appearing needs a recursive watch — both mean "scan".
            if is_create && path.is_dir() {
                self.rescan_because(format!("new directory {}", path.display()), now);
            } else if roots.iter().any(|r| *r == path || r.starts_with(&path)) {
                self.rescan_because(
                    format!("source directory {} appeared or changed", path.display()),
                    now,
                );
            } else {
                self.changed.entry(path).or_insert(now);
            }
        }
    }

    fn rescan_because(&mut self, reason: String, now: Instant) {
        match &mut self.rescan {
            Some((why, _)) => *why = reason,
            None => self.rescan = Some((reason, now)),
        }
    }

    /// When the earliest pending hint is due.
    fn next_due(&self, debounce: Duration) -> Option<Instant> {
        let first_change = self.changed.values().min().copied();
        let first_rescan = self.rescan.as_ref().map(|(_, at)| *at);
        [first_change, first_rescan]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at + debounce)
    }

    /// The hints whose debounce period has ended.
    fn take_due(&mut self, debounce: Duration, now: Instant) -> Vec<Hint> {
        let mut due: Vec<PathBuf> = Vec::new();
        self.changed.retain(|path, first| {
            let ready = *first + debounce <= now;
            if ready {
                due.push(path.clone());
            }
            !ready
        });
        let mut hints = Vec::new();
        if !due.is_empty() {
            due.sort();
            hints.push(Hint::Changed(due));
        }
        if self
            .rescan
            .as_ref()
            .is_some_and(|(_, at)| *at + debounce <= now)
            && let Some((reason, _)) = self.rescan.take()
        {
            hints.push(Hint::Rescan(reason));
        }
        hints
    }
}

/// The debouncer's thread: waits for events (blocked, no timer, while nothing is pending),
/// hands out each path `debounce` after its first event, and ends when the watcher is dropped
/// or nobody listens any more.
fn debounce_loop(
    raw: std_mpsc::Receiver<notify::Result<notify::Event>>,
    debounce: Duration,
    roots: &[PathBuf],
    tx: &mpsc::UnboundedSender<Hint>,
) {
    let mut pending = Pending::default();
    loop {
        let received = match pending.next_due(debounce) {
            None => raw
                .recv()
                .map_err(|_| std_mpsc::RecvTimeoutError::Disconnected),
            Some(due) => raw.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        match received {
            Ok(Ok(event)) => pending.add(event, roots, Instant::now()),
            Ok(Err(error)) => {
                if tx
                    .send(Hint::Rescan(format!("watcher error: {error}")))
                    .is_err()
                {
                    return;
                }
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        for hint in pending.take_due(debounce, Instant::now()) {
            if tx.send(hint).is_err() {
                return;
            }
        }
    }
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
