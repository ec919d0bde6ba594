//! Finding a conversation's files: its transcripts (main, flat, subagents) under a Cursor
//! root, the scan of every conversation (transcripts and spool files), and the conversation a
//! changed path belongs to.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sources::cursor_spool::valid_conversation_id;

/// A conversation's transcript files under one root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranscriptFiles {
    /// `<id>/<id>.jsonl`, else the flat `<id>.jsonl`.
    pub main: Option<PathBuf>,
    /// `<id>/subagents/*.jsonl`, sorted.
    pub subagents: Vec<PathBuf>,
}

impl TranscriptFiles {
    /// No transcript at all.
    pub fn is_empty(&self) -> bool {
        self.main.is_none() && self.subagents.is_empty()
    }
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Every `projects/<slug>/agent-transcripts` directory under `root`.
fn transcript_dirs(root: &Path) -> Vec<PathBuf> {
    read_dir_sorted(&root.join("projects"))
        .into_iter()
        .map(|slug| slug.join("agent-transcripts"))
        .filter(|d| d.is_dir())
        .collect()
}

pub(super) fn jsonl_stem(path: &Path) -> Option<&str> {
    (path.extension()? == "jsonl")
        .then(|| path.file_stem()?.to_str())
        .flatten()
}

/// A conversation's transcripts under `root` (the first slug that has any, in name order).
pub fn find_transcripts(root: &Path, id: &str) -> TranscriptFiles {
    let mut found = TranscriptFiles::default();
    if !valid_conversation_id(id) {
        return found;
    }
    for dir in transcript_dirs(root) {
        let nested = dir.join(id).join(format!("{id}.jsonl"));
        let flat = dir.join(format!("{id}.jsonl"));
        if found.main.is_none() {
            found.main = [nested, flat].into_iter().find(|p| p.is_file());
        }
        if found.subagents.is_empty() {
            found.subagents = read_dir_sorted(&dir.join(id).join("subagents"))
                .into_iter()
                .filter(|p| jsonl_stem(p).is_some_and(valid_conversation_id) && p.is_file())
                .collect();
        }
        if found.main.is_some() {
            break;
        }
    }
    found
}

/// The main transcript of a conversation under any of `roots`.
pub fn find_main_transcript(roots: &[PathBuf], id: &str) -> Option<PathBuf> {
    roots.iter().find_map(|r| find_transcripts(r, id).main)
}

/// The root a conversation belongs to: the first that holds a transcript of it, else the first
/// root (a conversation known only from the spool).
fn root_of(roots: &[PathBuf], id: &str) -> Option<PathBuf> {
    roots
        .iter()
        .find(|r| !find_transcripts(r, id).is_empty())
        .or(roots.first())
        .cloned()
}

static LEGACY_LOGGED: AtomicBool = AtomicBool::new(false);

/// Every conversation on disk: `(root, conversation id)`, sorted and unique.
pub fn scan(roots: &[PathBuf], spool_dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut legacy = 0usize;
    for root in roots {
        for dir in transcript_dirs(root) {
            for entry in read_dir_sorted(&dir) {
                let name = entry
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                if entry.is_dir() {
                    let has_any = entry.join(format!("{name}.jsonl")).is_file()
                        || entry.join("subagents").is_dir();
                    if valid_conversation_id(&name) && has_any {
                        out.push((root.clone(), name));
                    }
                } else if let Some(stem) = jsonl_stem(&entry) {
                    if valid_conversation_id(stem) {
                        out.push((root.clone(), stem.to_string()));
                    }
                } else if name.ends_with(".txt") {
                    legacy += 1;
                }
            }
        }
    }
    for file in read_dir_sorted(spool_dir) {
        if let Some(id) = jsonl_stem(&file).filter(|id| valid_conversation_id(id))
            && let Some(root) = root_of(roots, id)
        {
            out.push((root, id.to_string()));
        }
    }
    if legacy > 0 && !LEGACY_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::info!(
            files = legacy,
            "Cursor legacy .txt agent transcripts are not read (an old format Cursor itself no \
             longer loads); only .jsonl transcripts and hook events are synced"
        );
    }
    out.sort();
    out.dedup();
    out
}

/// The conversation a changed path belongs to, if it is a transcript, a subagent transcript,
/// a conversation directory or a spool file.
pub fn conversation_for_path(
    path: &Path,
    roots: &[PathBuf],
    spool_dir: &Path,
) -> Option<(PathBuf, String)> {
    if path.parent() == Some(spool_dir) {
        let id = jsonl_stem(path).filter(|id| valid_conversation_id(id))?;
        return Some((root_of(roots, id)?, id.to_string()));
    }
    for root in roots {
        let Ok(rel) = path.strip_prefix(root.join("projects")) else {
            continue;
        };
        let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
        let id = match parts.as_slice() {
            [_, "agent-transcripts", file] if file.ends_with(".jsonl") => {
                file.strip_suffix(".jsonl")
            }
            [_, "agent-transcripts", id] if !id.contains('.') => Some(*id),
            [_, "agent-transcripts", id, file] if *file == format!("{id}.jsonl") => Some(*id),
            [_, "agent-transcripts", id, "subagents", ..] => Some(*id),
            _ => None,
        }?;
        return valid_conversation_id(id).then(|| (root.clone(), id.to_string()));
    }
    None
}
