//! The source abstraction: what every tool-specific parser emits (`Record`), the two ways a
//! unit is read (an incremental [`LineParser`] for append-only files, a [`Snapshot`] for files
//! rewritten in place), the [`Source`] trait each tool implements (its roots, what to watch
//! and how deep, its units, its reader) and the [`REGISTRY`] of tools.
//!
//! Parsers are pure: bytes (and persisted parser state) in, records (and new state) out. They
//! never touch the network or the ledger. Processing a file in any number of append steps must
//! yield exactly the records of processing it once; `tests` hold every parser to that.

pub mod claude;
pub mod codex;
pub mod cursor;
pub mod cursor_spool;
pub mod droid;
pub mod json;
pub mod opencode;
pub mod pi;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exclude::Exclude;
use crate::model::{MessagePayload, SourceId, Tokens};

/// Options that change what a parser emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseOptions {
    /// Include thinking / reasoning text as `reasoning` parts.
    pub sync_thinking: bool,
    /// Include tool calls and tool results.
    pub sync_tool_calls: bool,
    /// Include the turns of subagents (Claude Code `subagents/`), marked, in their parent
    /// session (their usage always counts).
    #[serde(default = "yes")]
    pub sync_subagents: bool,
}

fn yes() -> bool {
    true
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            sync_thinking: false,
            sync_tool_calls: true,
            sync_subagents: true,
        }
    }
}

/// Facts about a session observed in one record. Merge rules (see `fold::Facts`): `title` and
/// `project_path` keep the first value seen, `title_override`, `model` and `provider` the latest,
/// timestamps widen the session's time span, `duration_ms` keeps the largest.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionFacts {
    /// The session's external id.
    pub session_id: String,
    /// Title candidate (first real prompt); first one wins.
    pub title: Option<String>,
    /// A title the tool itself maintains (OpenCode); latest wins and beats `title`.
    pub title_override: Option<String>,
    /// Working directory; first one wins.
    pub project_path: Option<String>,
    /// Model in use; latest wins.
    pub model: Option<String>,
    /// Provider; latest wins.
    pub provider: Option<String>,
    /// A moment the session was active (epoch ms): widens `[created, last]`.
    pub at_ms: Option<i64>,
    /// An explicit duration reported by the tool; the largest wins.
    pub duration_ms: Option<u64>,
    /// From a secondary file of the session (a subagent transcript): its title, project and
    /// model are used only when no primary file gives them.
    #[serde(default)]
    pub secondary: bool,
}

/// How repeated usage facts with the same key combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsageMerge {
    /// Field-wise maximum (Claude: lines of one API call repeat usage; the last holds the final
    /// output count).
    Max,
    /// The newest value replaces the old (OpenCode messages rewritten in place; Codex running
    /// per-model totals).
    Replace,
}

/// Token usage attributed to a session under a de-duplication key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageFact {
    /// The session the usage is billed to (a subagent file bills its parent).
    pub session_id: String,
    /// De-duplication key, unique within the session (e.g. `message.id:requestId`).
    pub key: String,
    /// How a repeat of `key` combines with the stored value.
    pub merge: UsageMerge,
    /// Model that consumed the tokens (used for pricing).
    pub model: Option<String>,
    /// The tokens.
    pub tokens: Tokens,
    /// Cost the tool itself computed (USD); used instead of the price table when > 0.
    pub cost: Option<f64>,
}

/// One thing a parser learned from the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// Session metadata.
    Session(SessionFacts),
    /// A complete message, ready to send (before redaction and size caps, which the planner
    /// applies). A later record with the same `external_id` replaces an earlier one.
    Message(MessagePayload),
    /// Token usage.
    Usage(UsageFact),
}

impl Record {
    /// The session the record belongs to.
    pub fn session_id(&self) -> &str {
        match self {
            Record::Session(f) => &f.session_id,
            Record::Message(m) => &m.session_external_id,
            Record::Usage(u) => &u.session_id,
        }
    }
}

/// A line the parser could not use. The caller counts it and moves on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    /// Not JSON, or not the JSON shape the record type requires.
    #[error("malformed line: {0}")]
    Malformed(String),
}

/// A line parser's saved state, read back to resume where it stopped (`parser` names it in
/// the error: state from another version that no longer fits makes the caller re-read the
/// file from its start).
pub(crate) fn resume_state<T: serde::de::DeserializeOwned>(
    state: &serde_json::Value,
    parser: &str,
) -> Result<T, LineError> {
    T::deserialize(state).map_err(|e| LineError::Malformed(format!("{parser} parser state: {e}")))
}

/// A unit could not be read (reported, retried on the next pass).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The unit is not read that way (a bug in the caller).
    #[error("{unit}: {what}")]
    Unsupported {
        /// The unit.
        unit: String,
        /// What was asked.
        what: &'static str,
    },
    /// The store could not be read (a database error, say).
    #[error("{0}")]
    Read(String),
}

/// An incremental parser of one append-only JSONL file.
pub trait LineParser: Send {
    /// Parses one complete line (no trailing newline). Unknown record types are skipped
    /// silently (Ok with no records); lines that are not JSON are `Err` and skipped.
    fn parse_line(&mut self, line: &[u8], out: &mut Vec<Record>) -> Result<(), LineError>;

    /// The state to persist so that a new parser resumed from it continues exactly where this
    /// one stopped.
    fn save_state(&self) -> serde_json::Value;
}

/// The lines of one read that did not parse.
#[derive(Debug, Default)]
pub struct Unparsed {
    /// How many: lines that are not JSON, or not the shape their record type requires.
    pub lines: u64,
    /// The first one's error (the daemon names it in one warning per read).
    pub first: Option<LineError>,
}

/// Parses each line of one read into `out`, skipping blank ones. The daemon, `export` and the
/// pending check all read lines through this, so they count the same lines as malformed.
pub fn parse_lines<'a>(
    parser: &mut dyn LineParser,
    lines: impl Iterator<Item = &'a [u8]>,
    out: &mut Vec<Record>,
) -> Unparsed {
    let mut unparsed = Unparsed::default();
    for line in lines {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Err(err) = parser.parse_line(line, out) {
            unparsed.lines += 1;
            unparsed.first.get_or_insert(err);
        }
    }
    unparsed
}

/// Everything read from a snapshot unit in one pass. The records are the unit's *whole*
/// current contribution to each session they name (files rewritten in place are re-read as a
/// whole, not appended to).
#[derive(Debug)]
pub struct Snapshot {
    /// The records.
    pub records: Vec<Record>,
    /// State to persist once `records` are acknowledged.
    pub state: serde_json::Value,
    /// The read stopped at a size bound; call again with `state`.
    pub more: bool,
}

/// How a unit is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Access {
    /// An append-only file, tailed line by line from a checkpoint ([`LineParser`]).
    Lines,
    /// Something rewritten in place, re-read as a whole when it changes ([`Snapshot`]).
    Snapshot,
}

/// Something the engine reads as one unit of work: a transcript file, or (snapshot sources) a
/// session stored across several files, or a database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Unit {
    /// Which tool wrote it.
    pub source: SourceId,
    /// How it is read.
    pub access: Access,
    /// The file (or the directory a multi-file unit lives in, e.g. OpenCode's `storage/`).
    #[serde(with = "os_path")]
    pub path: PathBuf,
    /// The part of `path` this unit covers, when `path` holds many (an OpenCode session id).
    pub part: Option<String>,
}

/// A path as JSON: a string when it is UTF-8 (as serde writes paths), else its raw bytes, so
/// that a file whose name is not UTF-8 still has a unit that can be stored and read back.
mod os_path {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        match path.to_str() {
            Some(text) => s.serialize_str(text),
            None => s.serialize_bytes(path.as_os_str().as_bytes()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Text(String),
            Bytes(Vec<u8>),
        }
        Ok(match Stored::deserialize(d)? {
            Stored::Text(text) => PathBuf::from(text),
            Stored::Bytes(bytes) => PathBuf::from(std::ffi::OsString::from_vec(bytes)),
        })
    }
}

impl Unit {
    /// An append-only file.
    pub fn lines(source: SourceId, path: PathBuf) -> Unit {
        Unit {
            source,
            access: Access::Lines,
            path,
            part: None,
        }
    }

    /// A snapshot unit: `path`, or the `part` of it.
    pub fn snapshot(source: SourceId, path: PathBuf, part: Option<String>) -> Unit {
        Unit {
            source,
            access: Access::Snapshot,
            path,
            part,
        }
    }

    /// Stable key for the ledger's files tree.
    pub fn ledger_key(&self) -> String {
        // The first three sources' keys predate this struct; they are kept so that an existing
        // ledger's checkpoints stay valid.
        let path = path_key(&self.path);
        match (self.access, self.source, &self.part) {
            (Access::Lines, source, _) => format!("jsonl\0{source}\0{path}"),
            (Access::Snapshot, SourceId::OpenCode, Some(part)) => {
                format!("ocjson\0{path}\0{part}")
            }
            (Access::Snapshot, SourceId::OpenCode, None) => format!("ocdb\0{path}"),
            (Access::Snapshot, source, part) => format!(
                "snap\0{source}\0{path}\0{}",
                part.as_deref().unwrap_or_default()
            ),
        }
    }

    /// A short human description.
    pub fn describe(&self) -> String {
        match &self.part {
            Some(part) => format!("{} ({part})", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

/// How far a watch on a directory reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchDepth {
    /// The directory's entries only: files appearing, changing or vanishing in it. An entry
    /// appearing or vanishing may change the plan itself (OpenCode's database appearing
    /// freezes its JSON tree), so the watcher re-evaluates the plan then.
    Entries,
    /// The entries, and for a while each directory that appears in it, entries only: OpenCode's
    /// `storage/part/` (one directory per message, written into just after it appears).
    EntriesAndNewDirs,
    /// The whole tree below the directory, new subdirectories included.
    Tree,
}

/// One directory the watcher should watch (it may not exist yet: then its nearest existing
/// ancestor is watched until it appears).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchDir {
    /// The directory.
    pub path: PathBuf,
    /// How far the watch reaches.
    pub depth: WatchDepth,
}

impl WatchDir {
    /// The whole tree below `path`.
    pub fn tree(path: PathBuf) -> WatchDir {
        WatchDir {
            path,
            depth: WatchDepth::Tree,
        }
    }

    /// The entries of `path` only.
    pub fn entries(path: PathBuf) -> WatchDir {
        WatchDir {
            path,
            depth: WatchDepth::Entries,
        }
    }

    /// The entries of `path`, and of each directory that appears in it for a while.
    pub fn entries_and_new_dirs(path: PathBuf) -> WatchDir {
        WatchDir {
            path,
            depth: WatchDepth::EntriesAndNewDirs,
        }
    }
}

/// One tool: where its files live and how to read them. Adding a tool is one implementation
/// of this trait in its own file and one line in [`REGISTRY`] (see ARCHITECTURE.md).
pub trait Source: Sync {
    /// Its id.
    fn id(&self) -> SourceId;

    /// Its roots when the config does not override them: the tool's own environment
    /// variables first, then its default directories under `home`. They may not exist.
    fn default_roots(&self, env: &dyn Fn(&str) -> Option<String>, home: &Path) -> Vec<PathBuf>;

    /// The directories this tool's files live in under `roots` (they may not exist yet): what
    /// `status` and the start-up log name, and by default what is watched, each as a tree.
    fn watch_dirs(&self, roots: &[PathBuf]) -> Vec<PathBuf>;

    /// What the watcher watches for this tool, and how deep (re-evaluated at each watcher
    /// refresh, so it may depend on what is on disk). By default each of
    /// [`watch_dirs`](Source::watch_dirs) as a whole tree; a source whose tree has a directory
    /// per message overrides it so that notify does not hold a watch per message.
    fn watch_plan(&self, roots: &[PathBuf]) -> Vec<WatchDir> {
        self.watch_dirs(roots)
            .into_iter()
            .map(WatchDir::tree)
            .collect()
    }

    /// Every unit currently on disk. Missing roots are not an error.
    fn scan(&self, roots: &[PathBuf]) -> Vec<Unit>;

    /// The unit a changed path (from a file event) belongs to, if any.
    fn unit_for_path(&self, path: &Path, roots: &[PathBuf]) -> Option<Unit>;

    /// The parser of an [`Access::Lines`] unit, resuming from `state`. A state that does not
    /// deserialize (written by an incompatible version) is an error; the caller then restarts
    /// the file from offset 0 with a fresh parser.
    fn line_parser(
        &self,
        unit: &Unit,
        _state: Option<&serde_json::Value>,
        _opts: ParseOptions,
    ) -> Result<Box<dyn LineParser>, LineError> {
        Err(LineError::Malformed(format!(
            "{} is not read line by line",
            unit.describe()
        )))
    }

    /// Reads an [`Access::Snapshot`] unit, resuming from `state`.
    fn read_snapshot(
        &self,
        unit: &Unit,
        _state: Option<&serde_json::Value>,
        _opts: ParseOptions,
    ) -> Result<Snapshot, SourceError> {
        Err(SourceError::Unsupported {
            unit: unit.describe(),
            what: "snapshot read",
        })
    }

    /// Whether the unit still exists on disk (a unit that is gone has its contribution
    /// retracted).
    fn exists(&self, unit: &Unit) -> bool {
        unit.path.exists()
    }

    /// The unit that must be read before this one, if any: a Claude Code subagent file's
    /// main transcript, so that the session is created from the main transcript (its start
    /// time, title and project) whichever file the daemon happens to see first.
    fn leader(&self, _unit: &Unit) -> Option<Unit> {
        None
    }

    /// Units whose records belong to the same sessions share a group key, so `export` can
    /// fold a session from all its units at once (Claude Code subagent files go with their
    /// parent transcript). By default every unit is its own group.
    fn group_key(&self, unit: &Unit) -> String {
        unit.ledger_key()
    }
}

/// Every source, in display order.
pub static REGISTRY: &[&dyn Source] = &[
    &claude::ClaudeCode,
    &codex::Codex,
    &opencode::OpenCode,
    &pi::Pi,
    &droid::FactoryDroid,
    &cursor::Cursor,
];

/// The source with this id.
pub fn source(id: SourceId) -> &'static dyn Source {
    // Every SourceId has exactly one registry entry (checked by a test below).
    REGISTRY
        .iter()
        .copied()
        .find(|s| s.id() == id)
        .unwrap_or(REGISTRY[0])
}

/// Where each tool keeps its files (resolved by `config`), and the `exclude` patterns every
/// scan and file event applies before anything is opened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Roots(
    pub std::collections::BTreeMap<SourceId, Vec<PathBuf>>,
    #[serde(skip)] pub Exclude,
);

impl Roots {
    /// The `exclude` patterns.
    pub fn exclude(&self) -> &Exclude {
        &self.1
    }

    /// Sets the `exclude` patterns.
    pub fn set_exclude(&mut self, exclude: Exclude) {
        self.1 = exclude;
    }

    /// The roots of one source (empty when it has none).
    pub fn get(&self, source: SourceId) -> &[PathBuf] {
        self.0.get(&source).map(Vec::as_slice).unwrap_or_default()
    }

    /// Sets the roots of one source.
    pub fn set(&mut self, source: SourceId, roots: Vec<PathBuf>) {
        self.0.insert(source, roots);
    }

    /// The directories to watch for one source (they may not exist yet).
    pub fn watch_dirs(&self, source: SourceId) -> Vec<PathBuf> {
        self::source(source).watch_dirs(self.get(source))
    }

    /// What the watcher watches for one source, as things are on disk now.
    pub fn watch_plan(&self, source: SourceId) -> Vec<WatchDir> {
        self::source(source).watch_plan(self.get(source))
    }
}

/// Lists every unit of `source` currently on disk, except excluded ones. Missing roots are not
/// an error.
pub fn scan(source: SourceId, roots: &Roots) -> Vec<Unit> {
    scan_counting_excluded(source, roots).0
}

/// [`scan`], and how many units the `exclude` patterns left out (for `status`).
pub fn scan_counting_excluded(source: SourceId, roots: &Roots) -> (Vec<Unit>, usize) {
    let mut units = self::source(source).scan(roots.get(source));
    units.sort();
    units.dedup();
    let before = units.len();
    units.retain(|u| !roots.exclude().matches_path(&u.path));
    let excluded = before - units.len();
    (units, excluded)
}

/// Maps a changed path (from a file event) to the unit it belongs to, if any. Excluded paths
/// and files that are not regular (a FIFO would block the reader) map to none; a path that no
/// longer exists still maps to its unit, so that its checkpoint can be dropped.
pub fn unit_for_path(path: &Path, roots: &Roots) -> Option<Unit> {
    if roots.exclude().matches_path(path) {
        return None;
    }
    let unit = REGISTRY
        .iter()
        .find_map(|s| s.unit_for_path(path, roots.get(s.id())))?;
    if roots.exclude().matches_path(&unit.path) {
        return None;
    }
    if unit.access == Access::Lines
        && std::fs::symlink_metadata(&unit.path).is_ok()
        && let Err(why) = check_regular(&unit.path)
    {
        report_skipped_once(&unit.path, &why);
        return None;
    }
    Some(unit)
}

/// Creates the line parser for a line unit, resuming from `state` when given.
pub fn line_parser(
    unit: &Unit,
    state: Option<&serde_json::Value>,
    opts: ParseOptions,
) -> Result<Box<dyn LineParser>, LineError> {
    source(unit.source).line_parser(unit, state, opts)
}

/// Reads a snapshot unit, resuming from `state`.
pub fn read_snapshot(
    unit: &Unit,
    state: Option<&serde_json::Value>,
    opts: ParseOptions,
) -> Result<Snapshot, SourceError> {
    source(unit.source).read_snapshot(unit, state, opts)
}

/// Summarises which sources exist on disk (for `verify`).
pub fn inventory(
    roots: &Roots,
    sources: &[SourceId],
) -> std::collections::BTreeMap<SourceId, (Vec<PathBuf>, usize)> {
    let mut out = std::collections::BTreeMap::new();
    for source in sources {
        let dirs: Vec<PathBuf> = roots
            .watch_dirs(*source)
            .into_iter()
            .filter(|d| d.exists())
            .collect();
        out.insert(*source, (dirs, scan(*source, roots).len()));
    }
    out
}

/// How much of a file the "what does it start with" lookups read: its complete lines within
/// the first 64 KiB (a first line longer than that is read whole, up to 16 MiB).
const FIRST_LINES_BUDGET: usize = 64 * 1024;
const FIRST_LINES_MAX_LINE: usize = 16 * 1024 * 1024;
/// The most a thread keeps between lookups: what a read of the budget takes (`tail` reads
/// 256 KiB blocks past it).
const FIRST_LINES_KEEP: usize = FIRST_LINES_BUDGET + 256 * 1024;

thread_local! {
    /// The buffer [`with_first_lines`] reads into, kept per thread: a fresh one per call was
    /// a zeroed 320 KiB allocation (the allocator's `memset`) for a few lines, and these
    /// lookups run once per subagent file and once per sibling of an orphaned one.
    static FIRST_LINES: std::cell::RefCell<crate::tail::Chunk> =
        std::cell::RefCell::new(crate::tail::Chunk::default());
}

/// Calls `look` with the first lines of `path` (exactly `tail::read_lines(file, 0, 64 KiB,
/// 16 MiB)`, read into a buffer reused by the thread); `None` when the file cannot be opened
/// or read.
pub(crate) fn with_first_lines<R>(
    path: &Path,
    look: impl FnOnce(&crate::tail::Chunk) -> R,
) -> Option<R> {
    let mut file = std::fs::File::open(path).ok()?;
    FIRST_LINES.with(|cell| {
        // A lookup never runs inside another one; if it ever did, it reads on its own buffer.
        let mut own = crate::tail::Chunk::default();
        let mut borrowed = cell.try_borrow_mut().ok();
        let chunk = borrowed.as_deref_mut().unwrap_or(&mut own);
        crate::tail::read_lines_into(
            &mut file,
            0,
            FIRST_LINES_BUDGET,
            FIRST_LINES_MAX_LINE,
            chunk,
        )
        .ok()?;
        let seen = look(chunk);
        if chunk.buf.len() > FIRST_LINES_KEEP {
            // A long first line grew the buffer: not kept for the thread's lifetime (each of
            // the daemon's threads would hold it).
            *chunk = crate::tail::Chunk::default();
        }
        Some(seen)
    })
}

/// `~` and `~/…` relative to `home`; other paths as given.
pub(crate) fn expand_tilde(p: &str, home: &Path) -> PathBuf {
    if p == "~" {
        home.to_path_buf()
    } else if let Some(rest) = p.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(p)
    }
}

/// Recursively lists files under `dir` whose name satisfies `keep`. Unreadable directories
/// are skipped (the caller's next scan retries). Symlinked directories are not followed, so
/// a link loop cannot hang a scan. A name that passes `keep` but is not a regular file (a
/// FIFO, a socket, a device, a dangling symlink or a symlink loop) is skipped without being
/// opened — opening a FIFO blocks — and named once in the log; so is a name that is not
/// UTF-8 (that file is still read).
pub(crate) fn walk_files(dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if file_type.is_dir() {
            walk_files(&path, keep, out);
        } else if keep(&path) {
            // The directory entry already says "regular file" for most: no extra stat then.
            let verdict = if file_type.is_file() {
                Ok(())
            } else {
                check_regular(&path)
            };
            match verdict {
                Ok(()) => {
                    if path.file_name().is_some_and(|n| n.to_str().is_none()) {
                        report_once(&path, || {
                            tracing::warn!(
                                file = %path.display(),
                                "the file name is not valid UTF-8; it is synced, and shown with \
                                 U+FFFD in place of the bytes that are not"
                            )
                        });
                    }
                    out.push(path);
                }
                Err(why) => report_skipped_once(&path, &why),
            }
        }
    }
}

/// Whether `path` is a regular file (following symlinks) that can be opened without blocking;
/// otherwise what it is instead, in words.
pub fn check_regular(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => {
            let t = meta.file_type();
            Err(if t.is_fifo() {
                "a FIFO (named pipe), not a regular file".into()
            } else if t.is_socket() {
                "a socket, not a regular file".into()
            } else if t.is_block_device() || t.is_char_device() {
                "a device, not a regular file".into()
            } else if t.is_dir() {
                "a directory named like a transcript".into()
            } else {
                "not a regular file".into()
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            Err("a symlink loop (the link never reaches a file)".into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("a dangling symlink (its target does not exist)".into())
        }
        Err(e) => Err(format!("unreadable ({e})")),
    }
}

/// Logs once per process that `path` is skipped and why (a rescan every few minutes must not
/// repeat it).
fn report_skipped_once(path: &Path, why: &str) {
    report_once(
        path,
        || tracing::warn!(file = %path.display(), "skipped: {why}"),
    );
}

fn report_once(path: &Path, log: impl FnOnce()) {
    static REPORTED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<PathBuf>>> =
        std::sync::LazyLock::new(Default::default);
    let first = REPORTED
        .lock()
        .map(|mut seen| seen.insert(path.to_path_buf()))
        .unwrap_or(true);
    if first {
        log();
    }
}

/// A path as text for a ledger key: itself when it is UTF-8; otherwise its valid parts with
/// each other byte written `\xNN`, so that two names differing only in such bytes never share
/// a key (a lossy conversion would merge them).
pub fn path_key(path: &Path) -> std::borrow::Cow<'_, str> {
    use std::os::unix::ffi::OsStrExt;
    if let Some(s) = path.to_str() {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every non-blank line reaches the parser once, in order; those it refuses are counted
    /// and the first refusal is kept.
    #[test]
    fn parse_lines_skips_blank_lines_and_counts_the_refused_ones() {
        struct Recorder(Vec<String>);
        impl LineParser for Recorder {
            fn parse_line(&mut self, line: &[u8], _: &mut Vec<Record>) -> Result<(), LineError> {
                let line = String::from_utf8_lossy(line).into_owned();
                self.0.push(line.clone());
                if line.starts_with("bad") {
                    return Err(LineError::Malformed(line));
                }
                Ok(())
            }
            fn save_state(&self) -> serde_json::Value {
                serde_json::Value::Null
            }
        }
        let lines: [&[u8]; 7] = [b"one", b"", b" \t\r", b"bad 1", b"two", b"bad 2", b"  x "];
        let mut parser = Recorder(Vec::new());
        let unparsed = parse_lines(&mut parser, lines.into_iter(), &mut Vec::new());
        assert_eq!(parser.0, ["one", "bad 1", "two", "bad 2", "  x "]);
        assert_eq!(unparsed.lines, 2);
        assert!(
            matches!(&unparsed.first, Some(LineError::Malformed(l)) if l == "bad 1"),
            "{:?}",
            unparsed.first
        );

        let mut parser = Recorder(Vec::new());
        let clean = parse_lines(&mut parser, [b"ok".as_slice()].into_iter(), &mut Vec::new());
        assert_eq!((clean.lines, clean.first.is_none()), (0, true));
    }

    /// The reused buffer gives exactly what a fresh `read_lines` gives, in any order of
    /// files: a long file read first leaves nothing behind for a short one read after it.
    #[test]
    fn first_lines_on_a_reused_buffer_are_a_fresh_reads_lines() {
        let dir = tempfile::tempdir().unwrap();
        let long_line = format!("{{\"x\":\"{}\"}}", "a".repeat(200 * 1024));
        let files: Vec<(&str, String)> = vec![
            (
                "big",
                format!("{long_line}\n{}", "{\"n\":1}\r\n".repeat(20_000)),
            ),
            ("small", "{\"n\":2}\n{\"n\":3}\npartial".to_string()),
            ("empty", String::new()),
            ("big-again", "{\"n\":4}\n".repeat(30_000)),
            ("no-newline", "{\"n\":5}".to_string()),
        ];
        for (name, text) in &files {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let mut file = std::fs::File::open(&path).unwrap();
            let fresh = crate::tail::read_lines(&mut file, 0, 64 * 1024, 16 * 1024 * 1024).unwrap();
            let expected: Vec<Vec<u8>> = fresh.iter_lines().map(<[u8]>::to_vec).collect();
            let (lines, more, end) = with_first_lines(&path, |chunk| {
                let lines: Vec<Vec<u8>> = chunk.iter_lines().map(<[u8]>::to_vec).collect();
                (lines, chunk.more, chunk.end)
            })
            .unwrap();
            assert_eq!(lines, expected, "{name}");
            if *name == "small" {
                // Written out: two complete lines; the unterminated tail is not a line yet.
                assert_eq!(lines, [b"{\"n\":2}".to_vec(), b"{\"n\":3}".to_vec()]);
                assert_eq!(end, 16);
            }
            assert_eq!((more, end), (fresh.more, fresh.end), "{name}");
        }
        assert!(with_first_lines(&dir.path().join("absent"), |_| ()).is_none());
    }

    #[test]
    fn a_unit_with_a_name_that_is_not_utf8_survives_json() {
        use std::os::unix::ffi::OsStrExt;
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"/p/c1a0-\xff\xfe.jsonl"));
        let unit = Unit::lines(SourceId::ClaudeCode, odd.clone());
        let json = serde_json::to_vec(&unit).unwrap();
        let back: Unit = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.path, odd);
        // UTF-8 paths are stored as before (a plain string).
        let plain = Unit::lines(SourceId::ClaudeCode, PathBuf::from("/p/a.jsonl"));
        let v = serde_json::to_value(&plain).unwrap();
        assert_eq!(v["path"], "/p/a.jsonl");
        // Ledger keys keep names apart that a lossy conversion would merge.
        let other = PathBuf::from(std::ffi::OsStr::from_bytes(b"/p/c1a0-\xfe\xff.jsonl"));
        assert_ne!(
            unit.ledger_key(),
            Unit::lines(SourceId::ClaudeCode, other).ledger_key()
        );
    }

    #[test]
    fn every_source_id_has_exactly_one_registry_entry() {
        for id in SourceId::ALL {
            assert_eq!(REGISTRY.iter().filter(|s| s.id() == id).count(), 1, "{id}");
        }
        assert_eq!(REGISTRY.len(), SourceId::ALL.len());
    }
}
