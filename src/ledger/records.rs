//! What the ledger stores — per unit, per session, per message, deferred writes, quarantined
//! records — and `Commit`, everything learnt from one acknowledged read of a unit.

use serde::{Deserialize, Serialize};

use crate::fold::{Facts, SessionState, Usage, UsageRow};
use crate::model::SessionPayload;
use crate::tail::Checkpoint;

/// What is stored per unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// JSONL units: where reading stopped.
    pub checkpoint: Checkpoint,
    /// Parser / snapshot state at the checkpoint.
    pub state: Option<serde_json::Value>,
    /// Length and mtime seen at the last commit (cheap "unchanged?" test for scans).
    pub len: u64,
    /// Modification time (ms) at the last commit.
    pub mtime_ms: i64,
    /// Lines that did not parse (cumulative).
    pub malformed_lines: u64,
    /// Lines over the size cap (cumulative).
    pub skipped_long_lines: u64,
    /// Session keys this unit has fed (their contributions are retracted when the unit is
    /// read again from its start or is gone).
    #[serde(default)]
    pub sessions: Vec<String>,
    /// The unit itself, so that one whose file is gone can still be processed (retracted).
    #[serde(default)]
    pub unit: Option<crate::sources::Unit>,
}

/// What is stored per session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Folded metadata and totals.
    pub state: SessionState,
    /// The last acknowledged session payload; `None` = never created on the server.
    pub acked: Option<SessionPayload>,
    /// Wall-clock ms of the last acknowledged write touching this session (session or
    /// message: both bump the server's `updatedAt`, which starts its 10 s window).
    pub last_write_ms: i64,
    /// Number of messages acknowledged.
    pub messages: u64,
    /// The last create went over a row the server may already have held (a lost ledger,
    /// `--force`, a crash): fields `acked` has no value for may hold older ones there, which
    /// the server's 10 s window compares against.
    #[serde(default)]
    pub held_partly_unknown: bool,
    /// Models without a price (cost counted as 0).
    pub unpriced_models: Vec<String>,
}

impl SessionRecord {
    /// A session never sent.
    pub fn new(state: SessionState) -> SessionRecord {
        SessionRecord {
            state,
            acked: None,
            last_write_ms: 0,
            messages: 0,
            held_partly_unknown: false,
            unpriced_models: Vec::new(),
        }
    }
}

/// What is stored per message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The session key it was sent under.
    pub session: String,
    /// Hash of the acknowledged payload.
    pub hash: u128,
    /// The `createdAt` the server stored at insert (epoch ms): its 5 s window for updates
    /// runs from there.
    #[serde(default)]
    pub created_ms: i64,
}

impl MessageRecord {
    /// The hash of a message whose content on the server is not known (`sync --force` forgot
    /// it): no payload hashes to it (a 128-bit hash is 0 with negligible odds), so the
    /// message is sent again, under the window its kept `created_ms` starts.
    pub const UNKNOWN_HASH: u128 = 0;
}

/// A write held back because the server would silently skip it now (its dedup windows), to
/// be sent once the window has passed. Kept in the ledger, so it survives restarts and crashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deferred {
    /// When it may be sent (epoch ms).
    pub due_ms: i64,
    /// The session key.
    pub session: String,
    /// The message payload (shaped, as it will be sent) and its hash; `None` for a session
    /// write, which sends the session's state as it is at that moment.
    pub message: Option<(crate::model::MessagePayload, u128)>,
    /// Send it even if the ledger already records this content as acknowledged: the
    /// acknowledgement may have been for a write the server skipped. For a session write: send
    /// it even if a later write seems to carry the same state, because what the server holds
    /// is uncertain until a write outside its window.
    #[serde(default)]
    pub confirm: bool,
}

/// The `deferred` tree key of a message write.
pub fn deferred_message_key(external_id: &str) -> String {
    format!("m\0{external_id}")
}

/// The `deferred` tree key of a session write.
pub fn deferred_session_key(session_key: &str) -> String {
    format!("s\0{session_key}")
}

/// A record the server rejected for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    /// `session` or `message`.
    pub kind: String,
    /// Its external id.
    pub id: String,
    /// The server's reason.
    pub reason: String,
    /// When (epoch ms).
    pub at_ms: i64,
    /// Hash of the rejected payload (a changed payload is tried again).
    pub hash: u128,
    /// The ledger key of the record (a session key, a message id).
    #[serde(default)]
    pub key: String,
    /// A refused message as it was before shaping, to be shaped again and retried when the
    /// settings change or on `sync --retry-rejected`.
    #[serde(default)]
    pub raw: Option<crate::model::MessagePayload>,
}

/// All writes from one acknowledged unit of work.
#[derive(Debug, Default)]
pub struct Commit {
    /// Unit key → new file record.
    pub files: Vec<(String, FileRecord)>,
    /// Units whose file is gone: their records are removed.
    pub forget_files: Vec<String>,
    /// Session key → new session record.
    pub sessions: Vec<(String, SessionRecord)>,
    /// Message id → record.
    pub messages: Vec<(String, MessageRecord)>,
    /// Fold: (session key, unit id) → facts (`None` removes).
    pub facts: Vec<(String, Option<Facts>)>,
    /// Fold: (session key, usage key) → row (`None` removes).
    pub usage: Vec<(String, Option<UsageRow>)>,
    /// Fold: session key → usage totals.
    pub totals: Vec<(String, Usage)>,
    /// Writes held for the server's windows (`None` removes one that was sent).
    pub deferred: Vec<(String, Option<Deferred>)>,
    /// Quarantined records (`None` releases one the server took after all).
    pub quarantine: Vec<(String, Option<Quarantined>)>,
}

impl Commit {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.forget_files.is_empty()
            && self.sessions.is_empty()
            && self.messages.is_empty()
            && self.facts.is_empty()
            && self.usage.is_empty()
            && self.totals.is_empty()
            && self.deferred.is_empty()
            && self.quarantine.is_empty()
    }
}
