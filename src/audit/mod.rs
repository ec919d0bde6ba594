//! `audit`: compare what the OpenSync server holds for some sessions with what `export` says it
//! should hold, field by field under the server's own rules, and repair the differences by
//! re-sending exactly the differing records through the per-record routes.
//!
//! What the server holds is read with its API routes (`GET /api/sessions?limit=N`, then
//! `GET /api/sessions/get?id=` per session); what it should hold is `oneshot::export`, the same
//! payloads the daemon sends. It needs neither the ledger nor the lock: ids are stable and the
//! payloads are export's, so a write racing the daemon's carries the same content.
//!
//! This module holds the report's types and runs the three steps, one submodule each:
//! `fetch` pairs export's sessions with the server's rows and reads their messages,
//! `compare` finds the differences under the server's write rules, and `repair` re-sends
//! what differs, waiting out the server's dedup windows, then fetches and compares again.

mod compare;
mod fetch;
mod repair;
#[cfg(test)]
mod test_support;

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::Config;
use crate::model::{MessagePayload, SessionPayload};
use crate::push::{Client, ServerMessage, ServerSession};

use compare::compare_target;
use fetch::{fetch_messages, select_one, select_recent};
use repair::repair;

pub use compare::{
    COST_TOLERANCE, compare_messages, compare_session, json_equal, parts_difference,
};
pub use repair::{
    MAX_WINDOW_WAIT_MS, MESSAGE_WINDOW_MS, REPAIR_ROUNDS, SESSION_WINDOW_MS, WINDOW_MARGIN_MS,
    session_write_skippable, window_until,
};

/// `--limit` when none is given.
pub const DEFAULT_LIMIT: usize = 20;

/// Which sessions to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One session, by its id (`externalId` on the server, the id `export` prints).
    Session(String),
    /// The N sessions the server updated most recently, plus local sessions the server does
    /// not have at all (reported; `--repair` sends at most N of them, newest first).
    Recent(usize),
}

/// What to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The sessions.
    pub selection: Selection,
    /// Re-send what differs, then check again.
    pub repair: bool,
}

/// What a repair can do about a difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "repair", rename_all = "kebab-case")]
pub enum Fix {
    /// Re-send the session payload (`/sync/session`).
    ResendSession,
    /// Re-send the message with its full parts (`/sync/message`).
    ResendMessage,
    /// The server does not have the session: send it and all its messages.
    SendSession,
    /// The per-record routes cannot change this.
    Impossible {
        /// Why.
        reason: String,
    },
}

impl Fix {
    /// Whether a repair can make this equal.
    pub fn repairable(&self) -> bool {
        !matches!(self, Fix::Impossible { .. })
    }
}

/// One way the server differs from `export`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    /// The session's id.
    pub session: String,
    /// The message's id, for a message-level difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The field as the API spells it (`title`, `cost`, `parts`, ...), or `session` /
    /// `message` for a whole record, or `duplicate` for a row stored twice.
    pub field: String,
    /// What the server holds, shortened for reading (`None`: nothing).
    pub server: Option<String>,
    /// What `export` has (`None`: nothing).
    pub export: Option<String>,
    /// What repair does about it.
    pub fix: Fix,
}

impl Difference {
    /// The key that identifies "the same difference" before and after a repair.
    fn key(&self) -> (String, Option<String>, String) {
        (
            self.session.clone(),
            self.message.clone(),
            self.field.clone(),
        )
    }
}

/// A listed session whose messages the server could not return.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TooLarge {
    /// The session's id.
    pub session: String,
    /// The server's error.
    pub detail: String,
}

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepairReport {
    /// Send-fetch-compare rounds run.
    pub rounds: usize,
    /// Session payloads sent.
    pub sessions_sent: usize,
    /// Messages sent.
    pub messages_sent: usize,
    /// Time spent waiting for the server's dedup windows.
    pub waited_ms: u64,
    /// Differences found before the repair that are now equal.
    pub fixed: usize,
    /// Records the server refused, with its reason.
    pub refused: Vec<String>,
    /// Records not sent because the server's window would have skipped them for too long.
    pub deferred: Vec<String>,
    /// What still differs (fetched again after the repair).
    pub remaining: Vec<Difference>,
}

/// Everything `audit` found (and did).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Which sessions were audited, in words.
    pub selection: String,
    /// Sessions compared with the server (too-large ones included: their session fields were).
    pub compared: usize,
    /// Of those, sessions with no difference.
    pub equal: usize,
    /// Every difference found, before any repair.
    pub differences: Vec<Difference>,
    /// Sessions whose messages the server is unable to return (its read limits).
    pub too_large: Vec<TooLarge>,
    /// Listed sessions the server then answered 404 for (deleted in between).
    pub not_found: Vec<String>,
    /// Listed sessions `export` does not have (another machine, another tool's plugin,
    /// deleted logs, a disabled source): nothing local to compare them with.
    pub not_local: Vec<String>,
    /// Local sessions the server does not have at all.
    pub missing_on_server: usize,
    /// Things worth knowing that are not differences.
    pub notes: Vec<String>,
    /// What `--repair` did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairReport>,
}

impl Report {
    /// The differences that remain: after a repair, what it could not fix; else all found.
    pub fn outstanding(&self) -> &[Difference] {
        match &self.repair {
            Some(r) => &r.remaining,
            None => &self.differences,
        }
    }
}

/// Progress worth telling a human while it happens.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Waiting for the server's dedup windows before sending.
    Waiting {
        /// How long.
        wait: Duration,
        /// Which record sets the wait, and why.
        reason: String,
    },
    /// A repair round is sending.
    Sending {
        /// Round number (1-based).
        round: usize,
        /// Session payloads about to be sent.
        sessions: usize,
        /// Messages about to be sent.
        messages: usize,
    },
}

/// What the server returned for a session's messages.
#[derive(Debug, Clone)]
enum Fetched {
    /// The messages, in the server's order.
    Messages(Vec<ServerMessage>),
    /// Too large to return (its read limits).
    TooLarge(String),
    /// Listed, then 404.
    NotFound,
    /// Not read yet (or the server does not have the session: `Target::listed` is `None`).
    Pending,
}

/// One audited session: export's payloads and the server's rows.
#[derive(Debug, Clone)]
struct Target {
    session: SessionPayload,
    messages: Vec<MessagePayload>,
    /// The listing's row (`None`: not on the server).
    listed: Option<ServerSession>,
    fetched: Fetched,
    /// Rows the listing holds for this id (more than one: stored twice).
    rows: usize,
}

impl Target {
    fn id(&self) -> &str {
        &self.session.external_id
    }
}

/// Runs the audit (and the repair, when asked) against the server `client` talks to.
pub fn audit(
    cfg: &Config,
    client: &Client,
    opts: &Options,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut report = Report::default();
    let (mut targets, untargeted) = match &opts.selection {
        Selection::Session(id) => (select_one(&rt, cfg, client, id, &mut report)?, Vec::new()),
        Selection::Recent(limit) => select_recent(&rt, cfg, client, *limit, opts, &mut report)?,
    };
    for target in &mut targets {
        if let (Some(listed), Fetched::Pending) = (&target.listed, &target.fetched) {
            target.fetched = rt.block_on(fetch_messages(client, &listed.id))?;
        }
    }
    for target in &targets {
        match &target.fetched {
            Fetched::TooLarge(detail) => report.too_large.push(TooLarge {
                session: target.id().to_string(),
                detail: detail.clone(),
            }),
            Fetched::NotFound => report.not_found.push(target.id().to_string()),
            _ => {}
        }
    }
    let mut compared = 0;
    let mut equal = 0;
    for target in &targets {
        let diffs = compare_target(target);
        if target.listed.is_some() && !matches!(target.fetched, Fetched::NotFound) {
            compared += 1;
            equal += usize::from(diffs.is_empty());
        }
        report.differences.extend(diffs);
    }
    report.differences.extend(untargeted.iter().cloned());
    report.compared = compared;
    report.equal = equal;
    if opts.repair {
        let repair = rt.block_on(repair(client, &mut targets, &untargeted, &report, progress))?;
        report.repair = Some(repair);
    }
    Ok(report)
}
