//! The source abstraction: what every tool-specific parser emits (`Record`), the incremental
//! line-parser interface for the append-only JSONL tools, and the registry that finds each
//! tool's files on disk.
//!
//! Parsers are pure: bytes (and persisted parser state) in, records (and new state) out. They
//! never touch the network or the ledger. Processing a file in any number of append steps must
//! yield exactly the records of processing it once; `tests` hold every parser to that.

pub mod claude;
pub mod codex;
pub mod opencode;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{MessagePayload, SourceId, Tokens};

/// Options that change what a parser emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseOptions {
    /// Include thinking / reasoning text as `reasoning` parts.
    pub sync_thinking: bool,
    /// Include tool calls and tool results.
    pub sync_tool_calls: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            sync_thinking: false,
            sync_tool_calls: true,
        }
    }
}

/// Facts about a session observed in one record. Merge rules (see `aggregate`): `title` and
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

/// A line the parser could not use. The caller counts it and moves on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    /// Not JSON, or not the JSON shape the record type requires.
    #[error("malformed line: {0}")]
    Malformed(String),
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

/// Something the engine reads as one unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Unit {
    /// An append-only JSONL transcript (Claude Code session or subagent file, Codex rollout).
    Jsonl {
        /// Which tool wrote it.
        source: SourceId,
        /// The file.
        path: PathBuf,
    },
    /// One OpenCode session in JSON storage (`storage/session/<project>/<ses>.json` plus its
    /// message and part files).
    OpenCodeSession {
        /// The `storage/` directory.
        storage: PathBuf,
        /// `ses_...` id.
        session_id: String,
    },
    /// An OpenCode SQLite database (`opencode.db`).
    OpenCodeDb {
        /// The database file.
        path: PathBuf,
    },
}

impl Unit {
    /// The tool the unit belongs to.
    pub fn source(&self) -> SourceId {
        match self {
            Unit::Jsonl { source, .. } => *source,
            Unit::OpenCodeSession { .. } | Unit::OpenCodeDb { .. } => SourceId::OpenCode,
        }
    }

    /// Stable key for the ledger's files tree.
    pub fn ledger_key(&self) -> String {
        match self {
            Unit::Jsonl { source, path } => format!("jsonl\0{source}\0{}", path.display()),
            Unit::OpenCodeSession {
                storage,
                session_id,
            } => {
                format!("ocjson\0{}\0{session_id}", storage.display())
            }
            Unit::OpenCodeDb { path } => format!("ocdb\0{}", path.display()),
        }
    }

    /// A short human description.
    pub fn describe(&self) -> String {
        match self {
            Unit::Jsonl { path, .. } => path.display().to_string(),
            Unit::OpenCodeSession {
                storage,
                session_id,
            } => {
                format!("{} (session {session_id})", storage.display())
            }
            Unit::OpenCodeDb { path } => path.display().to_string(),
        }
    }
}

/// Where each tool keeps its files (resolved by `config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Roots {
    /// Claude Code config dirs (each has `projects/`).
    pub claude: Vec<PathBuf>,
    /// Codex homes (each has `sessions/` and `archived_sessions/`).
    pub codex: Vec<PathBuf>,
    /// OpenCode data dirs (each may have `storage/` and `opencode.db`).
    pub opencode: Vec<PathBuf>,
    /// An explicit OpenCode database path (`OPENCODE_DB`).
    pub opencode_db: Option<PathBuf>,
    /// Legacy `~/.opencode` dirs.
    pub opencode_legacy: Vec<PathBuf>,
}

impl Roots {
    /// The directories to watch for one source (they may not exist yet).
    pub fn watch_dirs(&self, source: SourceId) -> Vec<PathBuf> {
        match source {
            SourceId::ClaudeCode => self.claude.iter().map(|r| r.join("projects")).collect(),
            SourceId::CodexCli => self
                .codex
                .iter()
                .flat_map(|r| [r.join("sessions"), r.join("archived_sessions")])
                .collect(),
            SourceId::OpenCode => {
                let mut dirs: Vec<PathBuf> = self.opencode.clone();
                dirs.extend(self.opencode_legacy.iter().cloned());
                if let Some(parent) = self.opencode_db.as_ref().and_then(|db| db.parent()) {
                    dirs.push(parent.to_path_buf());
                }
                dirs
            }
        }
    }
}

/// Lists every unit of `source` currently on disk. Missing roots are not an error.
pub fn scan(source: SourceId, roots: &Roots) -> Vec<Unit> {
    let mut units = match source {
        SourceId::ClaudeCode => claude::scan(&roots.claude),
        SourceId::CodexCli => codex::scan(&roots.codex),
        SourceId::OpenCode => opencode::scan(roots),
    };
    units.sort();
    units.dedup();
    units
}

/// Maps a changed path (from a file event) to the unit it belongs to, if any.
pub fn unit_for_path(path: &Path, roots: &Roots) -> Option<Unit> {
    claude::unit_for_path(path, &roots.claude)
        .or_else(|| codex::unit_for_path(path, &roots.codex))
        .or_else(|| opencode::unit_for_path(path, roots))
}

/// Creates the line parser for a JSONL unit, resuming from `state` when given.
///
/// A state that does not deserialize (written by an incompatible version) is an error; the
/// caller then restarts the file from offset 0 with a fresh parser.
pub fn line_parser(
    source: SourceId,
    path: &Path,
    state: Option<&serde_json::Value>,
    opts: ParseOptions,
) -> Result<Box<dyn LineParser>, LineError> {
    match source {
        SourceId::ClaudeCode => Ok(Box::new(claude::ClaudeParser::new(path, state, opts)?)),
        SourceId::CodexCli => Ok(Box::new(codex::CodexParser::new(path, state, opts)?)),
        SourceId::OpenCode => Err(LineError::Malformed(format!(
            "{} is not a line-oriented source",
            source.as_str()
        ))),
    }
}

/// Recursively lists files under `dir` whose name satisfies `keep`. Unreadable directories
/// are skipped (the caller's next scan retries). Symlinked directories are not followed, so
/// a link loop cannot hang a scan.
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
        } else if (file_type.is_file() || file_type.is_symlink()) && keep(&path) {
            out.push(path);
        }
    }
}
