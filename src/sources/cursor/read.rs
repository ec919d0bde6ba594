//! Reading one conversation: its files measured together under the spool's shared lock (so
//! what is read is consistent with the order the hook recorded), cut at those lengths, skipped
//! while nothing changed.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::Value;

use super::files::{find_transcripts, jsonl_stem};
use super::merge::conversation_records;
use super::transcript::Transcript;
use crate::model::content_hash;
use crate::sources::cursor_spool;
use crate::sources::{ParseOptions, Record};

/// One file as measured for a read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cut {
    path: PathBuf,
    len: u64,
    mtime_ns: u128,
    created_ms: i64,
}

impl Cut {
    fn of(path: &Path) -> Option<Cut> {
        let meta = std::fs::metadata(path).ok()?;
        let ms = |t: std::time::SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let modified = meta.modified().ok();
        Some(Cut {
            path: path.to_path_buf(),
            len: meta.len(),
            mtime_ns: modified
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos()),
            // Birth time where the file system records one; the mtime is the fallback (not
            // stable: it moves with every append).
            created_ms: meta.created().ok().or(modified).map_or(0, ms),
        })
    }

    /// The file's bytes up to the measured length (it may have grown since).
    fn read(&self) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::with_capacity(self.len as usize);
        std::fs::File::open(&self.path)?
            .take(self.len)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// The files of one conversation, measured together.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Measured {
    main: Option<Cut>,
    subagents: Vec<Cut>,
    spool: Option<Cut>,
}

impl Measured {
    fn fingerprint(&self) -> String {
        let mut text = String::new();
        for cut in self
            .main
            .iter()
            .chain(&self.subagents)
            .chain(self.spool.iter())
        {
            text.push_str(&format!(
                "{}\0{}\0{}\n",
                cut.path.display(),
                cut.len,
                cut.mtime_ns
            ));
        }
        format!("{:032x}", content_hash(text.as_bytes()))
    }
}

/// Measures transcript and spool together: under the spool's shared lock, so no hook can
/// measure the transcript and append between our two measurements (see the module header).
fn measure(root: &Path, spool_dir: &Path, id: &str) -> Measured {
    let spool_path = spool_dir.join(format!("{id}.jsonl"));
    let transcripts = || {
        let t = find_transcripts(root, id);
        (
            t.main.as_deref().and_then(Cut::of),
            t.subagents.iter().filter_map(|p| Cut::of(p)).collect(),
        )
    };
    for _ in 0..3 {
        match std::fs::File::open(&spool_path) {
            Ok(file) => {
                let locked = lock_shared(&file);
                let (main, subagents) = transcripts();
                let spool = Cut::of(&spool_path);
                if locked {
                    let _ = file.unlock();
                }
                return Measured {
                    main,
                    subagents,
                    spool,
                };
            }
            Err(_) => {
                // No spool: measure the transcript, then make sure none appeared meanwhile
                // (its first event may predate lines we just measured).
                let (main, subagents) = transcripts();
                if !spool_path.exists() {
                    return Measured {
                        main,
                        subagents,
                        spool: None,
                    };
                }
            }
        }
    }
    let (main, subagents) = transcripts();
    Measured {
        main,
        subagents,
        spool: Cut::of(&spool_path),
    }
}

/// Takes the shared lock, waiting at most a second (a hook holds it for one append).
fn lock_shared(file: &std::fs::File) -> bool {
    let start = Instant::now();
    loop {
        match file.try_lock_shared() {
            Ok(()) => return true,
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < Duration::from_secs(1) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return false,
        }
    }
}

/// What one read of a conversation produced.
#[derive(Debug)]
pub struct ConversationRead {
    /// The conversation's records (empty when nothing changed since `state`).
    pub records: Vec<Record>,
    /// State to persist once the records are acknowledged (a fingerprint of the files).
    pub state: Value,
    /// Lines that did not parse (transcripts and spool).
    pub malformed: usize,
}

/// Reads one conversation whole, unless its files are unchanged since `state`.
pub fn read_conversation(
    root: &Path,
    spool_dir: &Path,
    id: &str,
    state: Option<&Value>,
    opts: ParseOptions,
) -> std::io::Result<ConversationRead> {
    let measured = measure(root, spool_dir, id);
    let fingerprint = measured.fingerprint();
    let state_value = serde_json::json!({ "fingerprint": fingerprint });
    if state
        .and_then(|s| s.get("fingerprint"))
        .and_then(Value::as_str)
        == Some(&fingerprint)
    {
        return Ok(ConversationRead {
            records: Vec::new(),
            state: state_value,
            malformed: 0,
        });
    }
    let read = |cut: &Cut, stem: &str| -> std::io::Result<Transcript> {
        match cut.read() {
            Ok(bytes) => Ok(Transcript::parse(stem, &bytes, cut.created_ms)),
            // Deleted between measuring and reading: nothing of it this time.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Transcript::parse(stem, b"", cut.created_ms))
            }
            Err(e) => Err(e),
        }
    };
    let main = measured.main.as_ref().map(|c| read(c, id)).transpose()?;
    let mut subagents = Vec::new();
    for cut in &measured.subagents {
        let stem = jsonl_stem(&cut.path).unwrap_or_default().to_string();
        subagents.push(read(cut, &stem)?);
    }
    let (events, bad_spool) = match &measured.spool {
        Some(cut) => match cut.read() {
            Ok(bytes) => cursor_spool::parse_spool(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
            Err(e) => return Err(e),
        },
        None => (Vec::new(), 0),
    };
    let malformed = bad_spool
        + main.as_ref().map_or(0, |t| t.malformed)
        + subagents.iter().map(|t| t.malformed).sum::<usize>();
    Ok(ConversationRead {
        records: conversation_records(id, main.as_ref(), &subagents, &events, opts),
        state: state_value,
        malformed,
    })
}
