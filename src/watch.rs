//! File watching: notify on what each source's watch plan names ([`WatchDir`]: a tree, or a
//! directory's entries), debounced here and turned into hints for the scheduler. Events only
//! say "look here"; the scan is the truth (DESIGN invariant 7).
//!
//! Invariants:
//! - Exactly the plan is watched, re-evaluated at each [`Watcher::refresh`]; a planned
//!   directory that does not exist yet is covered by a non-recursive watch on its nearest
//!   existing ancestor, so when the tool creates it we see it. Nothing else is watched, except
//!   the directories that appeared in an [`WatchDepth::EntriesAndNewDirs`] directory in the
//!   last [`RECENT_DIR_KEEP`] (dropped when a later one appears or at a refresh after that;
//!   never more than [`RECENT_DIRS_MAX`]).
//! - A new directory is not a full scan: once a watch covers it (notify adds its own for a
//!   tree after handing out the event, so a watch call of ours, answered by notify's thread
//!   only after that, is the barrier; in an entries-only directory we add it ourselves), its
//!   files are listed and handed out as changed paths, so a file written before the watch
//!   existed is not missed. Only a planned directory (or an ancestor) appearing or vanishing,
//!   an overflow, a watcher error or a new directory holding more than [`NEW_DIR_MAX_FILES`]
//!   files ask for a full scan.
//! - An entry appearing or vanishing in an entries-only directory may change the plan
//!   (OpenCode's database appearing freezes its JSON tree): that asks for a refresh.
//! - Events outside the plan (in a missing directory's ancestor) are dropped.
//! - A read is not a change: notify is not asked for opens (`watch_config`; on Linux the
//!   kernel leaves them out, so nobody's reads — ours, the tool's, a scan listing a
//!   directory — wake notify's thread), and what a backend reports anyway is dropped there.
//! - The watch limit makes the watcher degraded (scans carry the load); while degraded, each
//!   refresh asks for every planned watch again, and once all of them hold it is trusted
//!   again. The plan itself can be replaced ([`Watcher::set_plan`]: the config changed).
//!
//! The debouncing is ours rather than notify-debouncer-full's because that one wakes up every
//! quarter of the debounce period forever; this one blocks until an event arrives and only
//! keeps a timer while events are pending, so a watcher over an idle tree costs nothing. A
//! path's hint goes out `debounce` after the first event of its burst (a file written
//! continuously is still read every `debounce`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use notify::{
    RecursiveMode, Watcher as _,
    event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode},
};
use tokio::sync::mpsc;

use crate::sources::{WatchDepth, WatchDir};

/// How long a directory that appeared in an [`WatchDepth::EntriesAndNewDirs`] directory stays
/// watched: OpenCode writes a user message's parts right after the message file, so minutes
/// are plenty, and a live user's recent messages are a few dozen watches at most.
pub const RECENT_DIR_KEEP: Duration = Duration::from_secs(600);

/// The most directories kept watched because they appeared recently (the oldest go first).
pub const RECENT_DIRS_MAX: usize = 512;

/// A new directory holding more files than this is handed to a full scan rather than listed
/// into the debouncer (a whole history moved into a source tree at once).
pub const NEW_DIR_MAX_FILES: usize = 10_000;

/// What the watcher tells the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// These paths changed.
    Changed(Vec<PathBuf>),
    /// The watch plan may have changed: re-evaluate it ([`Watcher::refresh`]); scan only if
    /// that watches something new.
    Refresh,
    /// Scan everything (overflow, watcher error, a planned directory appearing).
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

/// Computes the watch plan from what is on disk now.
pub type Plan = Box<dyn Fn() -> Vec<WatchDir> + Send>;

/// The running watcher. Dropping it stops watching.
pub struct Watcher {
    shared: Arc<Mutex<Shared>>,
    plan: Plan,
}

/// Why a directory is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    /// The nearest existing ancestor of a planned directory that does not exist yet.
    Ancestor,
    /// A planned directory.
    Planned(WatchDepth),
}

impl Role {
    fn recursive(self) -> bool {
        self == Role::Planned(WatchDepth::Tree)
    }
}

/// What the watcher and its debouncer share: notify itself (the debouncer adds watches for
/// new directories), the plan in force and the watches held.
struct Shared {
    notify: notify::RecommendedWatcher,
    /// The plan in force (its directories may not exist).
    plan: Vec<WatchDir>,
    /// The watches held for the plan, by path.
    watched: BTreeMap<PathBuf, Role>,
    /// Directories that appeared in an entries-and-new-dirs directory, watched (entries only)
    /// since then.
    recent: BTreeMap<PathBuf, Instant>,
    /// How long `recent` directories stay watched.
    recent_keep: Duration,
    /// Set when the watch limit was hit: scans carry the load.
    degraded: Option<String>,
}

/// Where an event's path lies relative to the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A planned directory or an ancestor of one.
    Planned,
    /// Inside a planned tree.
    InTree,
    /// An entry of an entries-only planned directory (`new_dirs`: its new subdirectories are
    /// watched for a while).
    Entry { new_dirs: bool },
    /// An entry of a recently appeared directory.
    InRecent,
    /// Nothing the plan asks for.
    Outside,
}

impl Watcher {
    /// Starts watching what `plan` names (re-evaluated at each [`refresh`](Self::refresh));
    /// hints go to `tx`.
    pub fn start(
        plan: Plan,
        debounce: Duration,
        tx: mpsc::UnboundedSender<Hint>,
    ) -> Result<Watcher, WatchError> {
        let (raw_tx, raw_rx) = std_mpsc::channel::<notify::Result<notify::Event>>();
        let forward = move |result: notify::Result<notify::Event>| {
            // Dropped here, on notify's thread, so that opensyncd's own reads never wake the
            // debouncer (where the kernel cannot leave them out: not on Linux).
            if result.as_ref().is_ok_and(is_read_only) {
                return;
            }
            let _ = raw_tx.send(result);
        };
        let notify = notify::RecommendedWatcher::new(forward, watch_config())?;
        let shared = Arc::new(Mutex::new(Shared {
            notify,
            plan: Vec::new(),
            watched: BTreeMap::new(),
            recent: BTreeMap::new(),
            recent_keep: RECENT_DIR_KEEP,
            degraded: None,
        }));
        let debounce = debounce.max(Duration::from_millis(10));
        // A weak handle: the debouncer must not keep notify (and so its own input) alive
        // once the watcher is dropped.
        let for_debouncer = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("opensyncd-watch".into())
            .spawn(move || debounce_loop(raw_rx, debounce, &for_debouncer, &tx))
            .map_err(notify::Error::io)?;
        let mut watcher = Watcher { shared, plan };
        watcher.refresh()?;
        Ok(watcher)
    }

    /// Re-evaluates the plan and (re-)establishes watches to match it: the planned
    /// directories that exist as the plan says, the nearest existing ancestor of those that do
    /// not (entries only); drops the rest, and the recent directories older than
    /// [`RECENT_DIR_KEEP`]. Returns true when anything new is watched (the caller then
    /// rescans, since files may predate the watch).
    ///
    /// While degraded (the watch limit was hit), every planned watch is asked for again, held
    /// ones included (notify adds what a tree is missing); when none hits the limit any more
    /// — the user raised it, or a tree shrank — the watcher is trusted again, and the
    /// refresh returns true: events were missed meanwhile.
    pub fn refresh(&mut self) -> Result<bool, WatchError> {
        let plan = (self.plan)();
        lock(&self.shared).apply(plan, Instant::now())
    }

    /// Replaces the plan (the configuration changed what to watch); it takes effect at the
    /// next [`refresh`](Self::refresh).
    pub fn set_plan(&mut self, plan: Plan) {
        self.plan = plan;
    }

    /// Every directory watched (planned, ancestors of missing ones, recent), sorted.
    pub fn watched(&self) -> Vec<PathBuf> {
        let shared = lock(&self.shared);
        let mut all: Vec<PathBuf> = shared
            .watched
            .keys()
            .chain(shared.recent.keys())
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Each watch held for the plan, with whether it is recursive (recent directories
    /// aside).
    pub fn watches(&self) -> Vec<(PathBuf, bool)> {
        lock(&self.shared)
            .watched
            .iter()
            .map(|(path, role)| (path.clone(), role.recursive()))
            .collect()
    }

    /// The directories watched because they appeared recently in an entries-and-new-dirs
    /// directory.
    pub fn recent_dirs(&self) -> Vec<PathBuf> {
        lock(&self.shared).recent.keys().cloned().collect()
    }

    /// Set when the watch limit was hit: events are missing for part of the tree, so scans
    /// carry the load.
    pub fn degraded(&self) -> Option<String> {
        lock(&self.shared).degraded.clone()
    }
}

/// The shared state, even if a thread panicked holding it (it holds no invariant a panic
/// could break halfway: at worst a watch is held that the next refresh drops).
fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn apply(&mut self, plan: Vec<WatchDir>, now: Instant) -> Result<bool, WatchError> {
        let mut wanted: BTreeMap<PathBuf, Role> = BTreeMap::new();
        let mut want = |path: PathBuf, role: Role| {
            let entry = wanted.entry(path).or_insert(role);
            // Two plans on one directory: the deeper watch serves both.
            *entry = (*entry).max(role);
        };
        for dir in &plan {
            if dir.path.is_dir() {
                want(dir.path.clone(), Role::Planned(dir.depth));
            } else if let Some(ancestor) = nearest_existing_ancestor(&dir.path) {
                want(ancestor, Role::Ancestor);
            }
        }
        self.plan = plan;
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(path, role)| {
                wanted
                    .get(*path)
                    .is_none_or(|new| new.recursive() != role.recursive())
            })
            .map(|(path, _)| path.clone())
            .collect();
        for path in stale {
            let _ = self.notify.unwatch(&path);
            self.watched.remove(&path);
        }
        self.prune_recent(now);
        let mut added = false;
        // While degraded, held watches may lack parts of their trees: ask for them again.
        let retry_held = self.degraded.is_some();
        for (path, role) in wanted {
            if let Some(held) = self.watched.get_mut(&path) {
                // Same notify mode: only the role changes.
                *held = role;
                if !retry_held {
                    continue;
                }
            }
            let mode = if role.recursive() {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match self.notify.watch(&path, mode) {
                Ok(()) => {
                    if self.watched.insert(path.clone(), role).is_none() {
                        tracing::debug!(path = %path.display(), ?role, "watching");
                        added = true;
                    }
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    self.hit_limit();
                    return Ok(added);
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {
                    // Vanished between the check and the watch; the next refresh retries.
                }
                Err(e) => return Err(e.into()),
            }
        }
        if retry_held && let Some(was) = self.degraded.take() {
            tracing::info!(%was, "every planned directory is watched again; trusting the watcher");
            added = true;
        }
        Ok(added)
    }

    fn hit_limit(&mut self) {
        let err = WatchError::Limit {
            current: inotify_limit(),
        };
        // Said once; while degraded, each retry that hits it again is only a debug line.
        if self.degraded.is_none() {
            tracing::error!("{err}");
        } else {
            tracing::debug!("{err}");
        }
        self.degraded = Some(err.to_string());
    }

    /// Stops watching the recent directories that are no longer recent.
    fn prune_recent(&mut self, now: Instant) {
        let keep = self.recent_keep;
        let old: Vec<PathBuf> = self
            .recent
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= keep)
            .map(|(path, _)| path.clone())
            .collect();
        for path in old {
            self.recent.remove(&path);
            if !self.watched.contains_key(&path) {
                // Gone already (a reverted message) is fine: nothing to stop watching.
                let _ = self.notify.unwatch(&path);
            }
        }
    }

    /// Keeps at most [`RECENT_DIRS_MAX`] recent directories, dropping the oldest: a bound
    /// whatever a tool does (a live user makes a few dozen in [`RECENT_DIR_KEEP`]).
    fn cap_recent(&mut self) {
        while self.recent.len() > RECENT_DIRS_MAX {
            let Some(oldest) = self
                .recent
                .iter()
                .min_by_key(|(_, since)| **since)
                .map(|(path, _)| path.clone())
            else {
                return;
            };
            self.recent.remove(&oldest);
            if !self.watched.contains_key(&oldest) {
                let _ = self.notify.unwatch(&oldest);
            }
        }
    }

    fn place(&self, path: &Path) -> Place {
        if self.plan.iter().any(|d| d.path.starts_with(path)) {
            return Place::Planned;
        }
        let parent = path.parent();
        let mut place = Place::Outside;
        for dir in &self.plan {
            match dir.depth {
                WatchDepth::Tree if path.starts_with(&dir.path) => return Place::InTree,
                WatchDepth::Entries if parent == Some(dir.path.as_path()) => {
                    place = Place::Entry { new_dirs: false };
                }
                WatchDepth::EntriesAndNewDirs if parent == Some(dir.path.as_path()) => {
                    return Place::Entry { new_dirs: true };
                }
                _ => {}
            }
        }
        if place == Place::Outside && parent.is_some_and(|p| self.recent.contains_key(p)) {
            place = Place::InRecent;
        }
        place
    }

    /// Makes sure a watch covers the new directory `dir` (see [`Place`]) before its files are
    /// listed. A directory that vanished meanwhile needs none; the watch limit or another
    /// notify failure is the error (the caller asks for a full scan, with it as the reason).
    fn cover_new_dir(&mut self, dir: &Path, place: Place, now: Instant) -> Result<(), String> {
        let mode = match place {
            // notify watches a new directory of a tree itself, but only after handing out
            // the event; our call is answered by notify's thread after that, so it is the
            // barrier after which listing the directory misses nothing.
            Place::InTree => RecursiveMode::Recursive,
            Place::Entry { new_dirs: true } => {
                self.prune_recent(now);
                RecursiveMode::NonRecursive
            }
            _ => return Ok(()),
        };
        match self.notify.watch(dir, mode) {
            Ok(()) => {
                if mode == RecursiveMode::NonRecursive {
                    self.recent.insert(dir.to_path_buf(), now);
                    self.cap_recent();
                }
                Ok(())
            }
            Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => Ok(()),
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                self.hit_limit();
                Err(format!(
                    "the watch limit was hit watching {}",
                    dir.display()
                ))
            }
            Err(e) => Err(format!("could not watch {}: {e}", dir.display())),
        }
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

/// What notify is asked to report: every change, and a close after writing (a write through
/// a memory map raises no modify event), but no opens. Opens change nothing, yet each one
/// woke notify's thread: every read of a file by opensyncd itself (one per append it syncs),
/// by the tool, by an editor or a backup, and every directory listed by a scan. On Linux the
/// kernel now leaves them out of the queue; elsewhere [`is_read_only`] drops what remains.
fn watch_config() -> notify::Config {
    notify::Config::default()
        .with_event_kinds(notify::EventKindMask::CORE | notify::EventKindMask::ACCESS_CLOSE)
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

/// Whether the event says its path appeared (created, or moved in).
fn appeared(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Name(
                RenameMode::To | RenameMode::Both | RenameMode::Any
            ))
    )
}

/// Whether the event says an entry appeared or vanished (not only that it was written).
fn entry_changed(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    )
}

/// The files below `dir` (into subdirectories when `deep`; symlinked directories are not
/// followed), or `None` when there are more than `max`.
fn list_files(dir: &Path, deep: bool, max: usize, out: &mut Vec<PathBuf>) -> Option<()> {
    // A directory that cannot be read (vanished, no permission) has nothing to hand out;
    // the scan is the truth if it matters.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Some(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                if deep {
                    list_files(&path, deep, max, out)?;
                }
            }
            _ => {
                if out.len() >= max {
                    return None;
                }
                out.push(path);
            }
        }
    }
    Some(())
}

/// Events waiting for their debounce period to end.
#[derive(Default)]
struct Pending {
    /// Changed paths, with the time of the first event of their burst.
    changed: HashMap<PathBuf, Instant>,
    /// The plan may have changed, since when.
    refresh: Option<Instant>,
    /// A full scan is needed: why, and since when.
    rescan: Option<(String, Instant)>,
}

impl Pending {
    fn add(&mut self, event: notify::Event, shared: &Mutex<Shared>, now: Instant) {
        if event.need_rescan() {
            self.rescan_because("the watcher lost events (overflow)".into(), now);
            return;
        }
        let appeared = appeared(&event.kind);
        let entry_changed = entry_changed(&event.kind);
        for path in event.paths {
            let mut shared = lock(shared);
            let place = shared.place(&path);
            match place {
                Place::Planned => {
                    self.rescan_because(
                        format!("source directory {} appeared or changed", path.display()),
                        now,
                    );
                }
                Place::Outside => {}
                // A symlink to a directory is not followed, as scans do not (a link loop
                // cannot make us watch or list forever).
                Place::InTree | Place::Entry { .. } | Place::InRecent
                    if appeared && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) =>
                {
                    if let Err(why) = shared.cover_new_dir(&path, place, now) {
                        self.rescan_because(why, now);
                        continue;
                    }
                    drop(shared);
                    self.new_dir(&path, place, now);
                }
                Place::InTree | Place::Entry { .. } | Place::InRecent => {
                    if entry_changed && place == (Place::Entry { new_dirs: false }) {
                        self.refresh.get_or_insert(now);
                    }
                    self.changed.entry(path).or_insert(now);
                }
            }
        }
    }

    /// A directory appeared (and a watch covers it, or it is not to be watched): its files
    /// are changed paths.
    fn new_dir(&mut self, dir: &Path, place: Place, now: Instant) {
        let deep = match place {
            Place::InTree => true,
            Place::Entry { new_dirs: true } => false,
            // Not watched (a directory in a data dir, or in a message's directory): its files
            // are nobody's units.
            _ => return,
        };
        let mut files = Vec::new();
        if list_files(dir, deep, NEW_DIR_MAX_FILES, &mut files).is_none() {
            self.rescan_because(
                format!(
                    "new directory {} holds more than {NEW_DIR_MAX_FILES} files",
                    dir.display()
                ),
                now,
            );
            return;
        }
        tracing::debug!(dir = %dir.display(), files = files.len(), "new directory");
        for file in files {
            self.changed.entry(file).or_insert(now);
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
        [first_change, self.refresh, first_rescan]
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
        // The refresh first: the changed paths may belong to what it watches anew.
        if self.refresh.is_some_and(|at| at + debounce <= now) {
            self.refresh = None;
            hints.push(Hint::Refresh);
        }
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
    shared: &Weak<Mutex<Shared>>,
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
            Ok(Ok(event)) => {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                pending.add(event, &shared, Instant::now());
            }
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

    /// Receives hints until `path` is among the changed ones; every hint seen on the way
    /// (that one included) is returned. Panics when it does not come.
    fn hints_until_changed(rx: &mut mpsc::UnboundedReceiver<Hint>, path: &Path) -> Vec<Hint> {
        let mut seen = Vec::new();
        let came = recv_until(rx, |h| {
            seen.push(h.clone());
            matches!(h, Hint::Changed(p) if p.iter().any(|p| p == path))
        });
        assert!(came, "{} was not reported; saw {seen:?}", path.display());
        seen
    }

    /// None of `seen` asks for a full scan.
    fn assert_no_full_scan(seen: &[Hint]) {
        assert!(
            !seen.iter().any(|h| matches!(h, Hint::Rescan(_))),
            "{seen:?}"
        );
    }

    fn fixed(plan: Vec<WatchDir>) -> Plan {
        Box::new(move || plan.clone())
    }

    fn start(plan: Vec<WatchDir>) -> (Watcher, mpsc::UnboundedReceiver<Hint>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let w = Watcher::start(fixed(plan), Duration::from_millis(50), tx).unwrap();
        (w, rx)
    }

    /// A watcher degraded by the watch limit: while degraded, a refresh asks for the tree
    /// again, and once that works the watcher is trusted again (the refresh says so, for the
    /// caller's scan) and the tree is watched throughout. (That a repeated `watch` adds the
    /// part of a tree the limit left out is notify's: since notify 9 `unwatch` removes only
    /// what was asked for, so a test can no longer cut a hole in a tree to show it.)
    #[test]
    fn a_degraded_watcher_is_trusted_again_once_every_watch_holds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sessions");
        let sub = root.join("2026/12/06");
        std::fs::create_dir_all(&sub).unwrap();
        let (mut w, mut rx) = start(vec![WatchDir::tree(root.clone())]);
        lock(&w.shared).degraded = Some("the watch limit was hit".into());
        assert!(w.degraded().is_some());
        assert!(w.refresh().unwrap(), "the refresh must ask for a scan");
        assert_eq!(w.degraded(), None);
        assert_eq!(w.watches(), vec![(root.clone(), true)]);
        let file = sub.join("rollout.jsonl");
        std::fs::write(&file, b"x\n").unwrap();
        hints_until_changed(&mut rx, &file);
        // Trusted again: the next refresh has nothing new to report.
        assert!(!w.refresh().unwrap());
    }

    /// A new plan (the configuration names other directories) takes effect at the next
    /// refresh: the old directories are no longer watched, the new ones are.
    #[test]
    fn a_new_plan_moves_the_watches() {
        let dir = tempfile::tempdir().unwrap();
        let before = dir.path().join("before");
        let after = dir.path().join("after");
        std::fs::create_dir(&before).unwrap();
        std::fs::create_dir(&after).unwrap();
        let (mut w, mut rx) = start(vec![WatchDir::tree(before.clone())]);
        w.set_plan(fixed(vec![WatchDir::tree(after.clone())]));
        assert!(
            w.refresh().unwrap(),
            "a newly watched directory asks for a scan"
        );
        assert_eq!(w.watches(), vec![(after.clone(), true)]);
        let file = after.join("a.jsonl");
        std::fs::write(&file, b"x\n").unwrap();
        hints_until_changed(&mut rx, &file);
    }

    #[test]
    fn changes_in_a_tree_become_hints() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sessions");
        std::fs::create_dir(&root).unwrap();
        let (w, mut rx) = start(vec![WatchDir::tree(root.clone())]);
        assert_eq!(w.watches(), vec![(root.clone(), true)]);
        let file = root.join("a.jsonl");
        std::fs::write(&file, b"x\n").unwrap();
        hints_until_changed(&mut rx, &file);
    }

    /// A directory moved into a tree with a file already in it (written before any watch
    /// could see it), and one created and written at once: both files are handed out, and
    /// neither is a full scan.
    #[test]
    fn a_new_directorys_files_are_hinted_without_a_full_scan() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("projects");
        std::fs::create_dir(&root).unwrap();
        let outside = dir.path().join("elsewhere");
        std::fs::create_dir_all(outside.join("nested")).unwrap();
        std::fs::write(outside.join("nested/old.jsonl"), b"x\n").unwrap();
        let (_w, mut rx) = start(vec![WatchDir::tree(root.clone())]);

        std::fs::rename(&outside, root.join("moved")).unwrap();
        let seen = hints_until_changed(&mut rx, &root.join("moved/nested/old.jsonl"));
        assert_no_full_scan(&seen);

        let fresh = root.join("fresh/deeper");
        std::fs::create_dir_all(&fresh).unwrap();
        std::fs::write(fresh.join("new.jsonl"), b"y\n").unwrap();
        let seen = hints_until_changed(&mut rx, &fresh.join("new.jsonl"));
        assert_no_full_scan(&seen);
        // Written again after it was listed: the tree's watch covers it.
        std::fs::write(fresh.join("later.jsonl"), b"z\n").unwrap();
        hints_until_changed(&mut rx, &fresh.join("later.jsonl"));
    }

    #[test]
    fn reading_a_file_is_not_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sessions");
        std::fs::create_dir(&root).unwrap();
        let file = root.join("a.jsonl");
        std::fs::write(&file, b"x\n").unwrap();
        let (_w, mut rx) = start(vec![WatchDir::tree(root.clone())]);
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

    /// Below the debouncer: on Linux notify's own thread is not woken by a read at all, as
    /// the kernel is not asked for opens. Events come in order, so once the later write's
    /// event is in, nothing from the reads can still come.
    #[cfg(target_os = "linux")]
    #[test]
    fn notify_is_not_told_of_reads() {
        use notify::Watcher as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.jsonl");
        std::fs::write(&file, b"x\n").unwrap();
        let (tx, rx) = std_mpsc::channel();
        let mut watcher = notify::RecommendedWatcher::new(tx, watch_config()).unwrap();
        watcher
            .watch(dir.path(), notify::RecursiveMode::Recursive)
            .unwrap();
        for _ in 0..5 {
            let _ = std::fs::read(&file).unwrap();
        }
        let _ = std::fs::read_dir(dir.path()).unwrap().count();
        let marker = dir.path().join("b.jsonl");
        std::fs::write(&marker, b"y\n").unwrap();
        // Its last event is the close after writing.
        let written = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let mut seen = Vec::new();
        while !seen
            .iter()
            .any(|e: &notify::Event| e.paths.contains(&marker) && e.kind == written)
        {
            let event = rx.recv_timeout(Duration::from_secs(10));
            seen.push(event.expect("the write was not reported").unwrap());
        }
        assert!(
            seen.iter().all(|e| !e.paths.contains(&file)
                && !e.paths.contains(&dir.path().to_path_buf())
                && !matches!(e.kind, EventKind::Access(AccessKind::Open(_)))),
            "reads reached notify's thread: {seen:?}"
        );
        // A write still does, and its close too.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"z\n"))
            .unwrap();
        let mut kinds = Vec::new();
        while !kinds.contains(&written) {
            let event = rx.recv_timeout(Duration::from_secs(10));
            let event = event.expect("the append was not reported").unwrap();
            assert_eq!(event.paths, vec![file.clone()]);
            kinds.push(event.kind);
        }
        assert!(
            kinds
                .iter()
                .any(|k| matches!(k, EventKind::Modify(ModifyKind::Data(_)))),
            "{kinds:?}"
        );
    }

    /// Until it exists, a planned directory is covered by its nearest ancestor; what else
    /// appears there is not ours (no scan for it), the directory appearing is.
    #[test]
    fn a_missing_directory_is_picked_up_when_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".codex").join("sessions");
        let (mut w, mut rx) = start(vec![WatchDir::tree(root.clone())]);
        assert_eq!(w.watches(), vec![(dir.path().to_path_buf(), false)]);
        std::fs::create_dir(dir.path().join("unrelated")).unwrap();
        std::fs::write(dir.path().join("unrelated.txt"), b"x").unwrap();
        std::fs::create_dir_all(&root).unwrap();
        let mut first = None;
        assert!(recv_until(&mut rx, |h| match h {
            Hint::Rescan(why) => {
                first = Some(why.clone());
                true
            }
            Hint::Changed(paths) => panic!("not ours: {paths:?}"),
            Hint::Refresh => panic!("not ours: a refresh"),
        }));
        let why = first.unwrap();
        assert!(
            why.contains(".codex") && !why.contains("unrelated"),
            "{why}"
        );
        assert!(w.refresh().unwrap());
        assert_eq!(w.watches(), vec![(root, true)]);
    }

    /// OpenCode's `storage/part/`: the message directories there at the start are not
    /// watched; one that appears is, with the files written into it before and after its
    /// watch existed, until it is no longer recent.
    #[test]
    fn new_directories_in_an_entries_dir_are_watched_while_recent() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("part");
        std::fs::create_dir_all(part.join("msg_old")).unwrap();
        std::fs::write(part.join("msg_old/prt_1.json"), b"{}").unwrap();
        let (mut w, mut rx) = start(vec![WatchDir::entries_and_new_dirs(part.clone())]);
        assert_eq!(w.watched(), vec![part.clone()]);
        assert_eq!(w.watches(), vec![(part.clone(), false)]);

        let msg = part.join("msg_new");
        std::fs::create_dir(&msg).unwrap();
        std::fs::write(msg.join("prt_1.json"), b"{}").unwrap();
        let seen = hints_until_changed(&mut rx, &msg.join("prt_1.json"));
        assert_no_full_scan(&seen);
        assert_eq!(w.recent_dirs(), vec![msg.clone()]);
        std::fs::write(msg.join("prt_2.json"), b"{}").unwrap();
        hints_until_changed(&mut rx, &msg.join("prt_2.json"));

        // Past the bound, the oldest recent directory goes first.
        let second = part.join("msg_newer");
        std::fs::create_dir(&second).unwrap();
        std::fs::write(second.join("prt_1.json"), b"{}").unwrap();
        hints_until_changed(&mut rx, &second.join("prt_1.json"));
        {
            let mut shared = lock(&w.shared);
            assert_eq!(shared.recent.len(), 2);
            let newest = shared.recent[&second];
            shared.recent.insert(part.join("msg_extra"), newest);
            let many: Vec<PathBuf> = (0..RECENT_DIRS_MAX)
                .map(|i| part.join(format!("msg_fake_{i:04}")))
                .collect();
            for fake in many {
                shared.recent.insert(fake, newest);
            }
            shared.cap_recent();
            assert_eq!(shared.recent.len(), RECENT_DIRS_MAX);
            assert!(!shared.recent.contains_key(&msg), "the oldest was kept");
            shared.recent.retain(|p, _| *p == second);
        }

        // Still recent at a refresh: kept; once no longer recent: dropped.
        assert!(!w.refresh().unwrap());
        assert_eq!(w.recent_dirs(), vec![second]);
        lock(&w.shared).recent_keep = Duration::ZERO;
        assert!(!w.refresh().unwrap());
        assert!(w.recent_dirs().is_empty());
        assert_eq!(w.watched(), vec![part]);
    }

    /// An entry appearing in an entries-only directory asks for a refresh (and is a change).
    #[test]
    fn an_entry_appearing_in_an_entries_dir_asks_for_a_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("opencode");
        std::fs::create_dir(&data).unwrap();
        let (_w, mut rx) = start(vec![WatchDir::entries(data.clone())]);
        let db = data.join("opencode.db");
        std::fs::write(&db, b"").unwrap();
        let seen = hints_until_changed(&mut rx, &db);
        assert!(seen.contains(&Hint::Refresh), "{seen:?}");
    }

    /// OpenCode's plan, end to end: a live JSON tree has no watch per message directory; the
    /// database appearing asks for a refresh, which drops every watch under `storage/`.
    #[test]
    fn opencode_database_appearing_drops_the_storage_watches() {
        use crate::sources::{Source, opencode::OpenCode};
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("opencode");
        let storage = data.join("storage");
        std::fs::create_dir_all(storage.join("session/proj")).unwrap();
        std::fs::write(storage.join("session/proj/ses_1.json"), b"{}").unwrap();
        std::fs::create_dir_all(storage.join("message/ses_1")).unwrap();
        std::fs::write(storage.join("message/ses_1/msg_1.json"), b"{}").unwrap();
        for msg in ["msg_1", "msg_2", "msg_3"] {
            std::fs::create_dir_all(storage.join("part").join(msg)).unwrap();
            std::fs::write(storage.join("part").join(msg).join("prt_1.json"), b"{}").unwrap();
        }
        let roots = vec![data.clone()];
        let (tx, mut rx) = mpsc::unbounded_channel();
        let plan: Plan = Box::new(move || OpenCode.watch_plan(&roots));
        let mut w = Watcher::start(plan, Duration::from_millis(50), tx).unwrap();
        assert_eq!(
            w.watches(),
            vec![
                (data.clone(), false),
                (storage.join("message"), true),
                (storage.join("part"), false),
                (storage.join("session"), true),
            ]
        );

        std::fs::write(data.join("opencode.db"), b"").unwrap();
        assert!(recv_until(&mut rx, |h| *h == Hint::Refresh));
        assert!(!w.refresh().unwrap(), "nothing new is watched");
        assert_eq!(w.watches(), vec![(data.clone(), false)]);
        assert!(
            !w.watched().iter().any(|p| p.starts_with(&storage)),
            "{:?}",
            w.watched()
        );

        // Started with the database already there: nothing under `storage/` either.
        let roots = vec![data.clone()];
        let (tx, _rx) = mpsc::unbounded_channel();
        let plan: Plan = Box::new(move || OpenCode.watch_plan(&roots));
        let w = Watcher::start(plan, Duration::from_millis(50), tx).unwrap();
        assert_eq!(w.watches(), vec![(data, false)]);
        assert!(w.recent_dirs().is_empty());
    }
}
