//! `audit`: compare what the OpenSync server holds for some sessions with what `export` says it
//! should hold, field by field under the server's own rules, and repair the differences by
//! re-sending exactly the differing records through the per-record routes.
//!
//! What the server holds is read with its API routes (`GET /api/sessions?limit=N`, then
//! `GET /api/sessions/get?id=` per session); what it should hold is `oneshot::export`, the same
//! payloads the daemon sends. The comparison follows the server's write rules
//! (`spec/opensync-api.md` §3), because they decide what a re-send can change:
//!
//! - a token total of 0 (or absent) never overwrites, and a string field export leaves out
//!   never clears the server's value: such differences are reported as unrepairable;
//! - cost is compared within 1e-6 (a float that went through JSON and Convex);
//! - `createdAt` and a message's `role` are fixed when the row is inserted: a wrong one is
//!   reported, never "repaired";
//! - there is no delete route: a message only the server holds, or a row stored twice, stays.
//!
//! Repair sends the session payload and/or the differing messages with their full parts
//! through `/sync/session` and `/sync/message` (never `/sync/batch`, which wipes parts and
//! drops `createdAt`). Before sending it waits out the server's dedup windows, which would
//! otherwise skip the write silently: a session written in the last 10 s, a message whose
//! stored `createdAt` is within 5 s of now. Then it fetches again and compares, up to
//! [`REPAIR_ROUNDS`] times. It needs neither the ledger nor the lock: ids are stable and the
//! payloads are export's, so a write racing the daemon's carries the same content.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use crate::clock::Clock;
use crate::config::Config;
use crate::model::{MessagePayload, Part, Role, SessionPayload};
use crate::oneshot;
use crate::push::{Backoff, Client, ErrorClass, PushError, ServerMessage, ServerSession};

/// `--limit` when none is given.
pub const DEFAULT_LIMIT: usize = 20;
/// Cost differences below this are float noise, not differences.
pub const COST_TOLERANCE: f64 = 1e-6;
/// The server skips a message update while `now - createdAt` is below this.
pub const MESSAGE_WINDOW_MS: i64 = 5_000;
/// The server skips a session update (same title, model, path, tokens) while `now - updatedAt`
/// is below this.
pub const SESSION_WINDOW_MS: i64 = 10_000;
/// Added to every window: our clock and the server's are not the same clock.
pub const WINDOW_MARGIN_MS: i64 = 1_000;
/// A window further away than this (a `createdAt` in the future) is not waited for.
pub const MAX_WINDOW_WAIT_MS: i64 = 60_000;
/// Send, fetch again, compare: at most this many times.
pub const REPAIR_ROUNDS: usize = 3;
/// Listing sizes tried in turn to find one session by its id (there is no pagination).
const SEARCH_LIMITS: [usize; 4] = [100, 1_000, 10_000, 100_000];
/// Attempts per request when the server answers with a transient error.
const ATTEMPTS: u32 = 5;
/// How much of a text or JSON value a difference shows.
const PREVIEW_CHARS: usize = 60;

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

/// `--session ID`: the session in export, and its row found in a listing large enough.
fn select_one(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    client: &Client,
    id: &str,
    report: &mut Report,
) -> Result<Vec<Target>> {
    report.selection = format!("session {id}");
    let mut local: Option<(SessionPayload, Vec<MessagePayload>)> = None;
    let export = oneshot::export(cfg, &[], Some(id), &mut |e| {
        local = Some((e.session, e.messages));
        Ok(())
    })?;
    note_export_problems(&export, report);
    let (rows, searched) = rt.block_on(find_listed(client, id))?;
    let Some((session, messages)) = local else {
        if rows.is_empty() {
            bail!("there is no session {id}, neither in export nor on the server");
        }
        bail!(
            "session {id} is on the server but not in this machine's export (nothing local to \
             compare it with: another machine, another tool's plugin, or deleted logs)"
        );
    };
    if rows.is_empty()
        && let Some(note) = searched
    {
        report.notes.push(note);
    }
    Ok(vec![target(session, messages, rows)])
}

/// Finds the rows of one session by listing ever more sessions (there is no lookup by id and
/// no pagination). A listing that hits the server's read limits falls back to
/// `/sync/sessions/list`, which at least says whether the session exists.
async fn find_listed(client: &Client, id: &str) -> Result<(Vec<ServerSession>, Option<String>)> {
    for limit in SEARCH_LIMITS {
        let listing = match with_retry(|| client.api_sessions(limit)).await {
            Ok(listing) => listing,
            Err(e) if e.is_read_limit() => {
                let ids = with_retry(|| client.list_sessions())
                    .await
                    .map_err(|e| fatal(e, "listing session ids"))?;
                if ids.iter().any(|x| x == id) {
                    bail!(
                        "session {id} is on the server, but the server cannot list enough \
                         sessions to find it (its read limits: {e})"
                    );
                }
                return Ok((Vec::new(), None));
            }
            Err(e) => return Err(fatal(e, "listing sessions")),
        };
        let rows: Vec<ServerSession> = listing
            .iter()
            .filter(|s| s.external_id == id)
            .cloned()
            .collect();
        if !rows.is_empty() || listing.len() < limit {
            return Ok((rows, None));
        }
    }
    Ok((
        Vec::new(),
        Some(format!(
            "session {id} is not among the {} most recently updated sessions on the server; \
             treated as missing",
            SEARCH_LIMITS[SEARCH_LIMITS.len() - 1]
        )),
    ))
}

/// `--limit N`: the N most recently updated sessions on the server, and the local sessions
/// the server does not have (all reported; at most N kept for a repair, newest first).
fn select_recent(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    client: &Client,
    limit: usize,
    opts: &Options,
    report: &mut Report,
) -> Result<(Vec<Target>, Vec<Difference>)> {
    report.selection = format!("the {limit} most recently updated session(s) on the server");
    let listing = match rt.block_on(with_retry(|| client.api_sessions(limit))) {
        Ok(listing) => listing,
        Err(e) if e.is_read_limit() => bail!(
            "the server cannot list {limit} sessions at once (its read limits: {e}); use a \
             smaller --limit"
        ),
        Err(e) => return Err(fatal(e, "listing sessions")),
    };
    let all_ids: Option<HashSet<String>> = match rt.block_on(with_retry(|| client.list_sessions()))
    {
        Ok(ids) => Some(ids.into_iter().collect()),
        Err(e) if e.class() == ErrorClass::AuthPaused || e.class() == ErrorClass::WrongUrl => {
            return Err(fatal(e, "listing session ids"));
        }
        Err(e) => {
            report.notes.push(format!(
                "could not list every session id on the server, so local sessions missing from \
                 it are not reported: {e}"
            ));
            None
        }
    };
    let mut rows: BTreeMap<String, Vec<ServerSession>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for s in listing {
        let list = rows.entry(s.external_id.clone()).or_insert_with(|| {
            order.push(s.external_id.clone());
            Vec::new()
        });
        list.push(s);
    }
    let mut found: HashMap<String, Target> = HashMap::new();
    // The `limit` newest (by start time) of the missing sessions, for a repair: memory stays
    // bounded however many are missing.
    let mut missing: BinaryHeap<Reverse<Newest>> = BinaryHeap::new();
    let mut missing_ids: Vec<(Option<i64>, String, usize)> = Vec::new();
    let export = oneshot::export(cfg, &[], None, &mut |e| {
        let id = e.session.external_id.clone();
        if let Some(listed) = rows.remove(&id) {
            found.insert(id, target(e.session, e.messages, listed));
        } else if all_ids.as_ref().is_some_and(|ids| !ids.contains(&id)) {
            missing_ids.push((e.session.created_at, id, e.messages.len()));
            if opts.repair {
                let seq = missing_ids.len();
                missing.push(Reverse(Newest {
                    created_at: e.session.created_at,
                    seq,
                    session: e.session,
                    messages: e.messages,
                }));
                if missing.len() > limit {
                    missing.pop(); // the oldest
                }
            }
        }
        Ok(())
    })?;
    note_export_problems(&export, report);
    let mut targets: Vec<Target> = Vec::new();
    for id in order {
        match found.remove(&id) {
            Some(t) => targets.push(t),
            None => report.not_local.push(id),
        }
    }
    report.missing_on_server = missing_ids.len();
    let mut missing: Vec<Newest> = missing.into_iter().map(|Reverse(n)| n).collect();
    missing.sort_by(|a, b| b.cmp(a));
    let kept: HashSet<String> = missing
        .iter()
        .map(|n| n.session.external_id.clone())
        .collect();
    let mut untargeted = Vec::new();
    missing_ids.sort_by_key(|(created, _, _)| std::cmp::Reverse(*created));
    for (_, id, messages) in &missing_ids {
        if !kept.contains(id) {
            untargeted.push(missing_session(id, *messages));
        }
    }
    if opts.repair && !untargeted.is_empty() {
        report.notes.push(format!(
            "{} local session(s) are not on the server; this run sends the {} newest \
             (--limit); run it again for more",
            missing_ids.len(),
            kept.len()
        ));
    }
    targets.extend(
        missing
            .into_iter()
            .map(|n| target(n.session, n.messages, Vec::new())),
    );
    Ok((targets, untargeted))
}

/// A local session the server lacks, ordered by start time (then by export order).
struct Newest {
    created_at: Option<i64>,
    seq: usize,
    session: SessionPayload,
    messages: Vec<MessagePayload>,
}

impl PartialEq for Newest {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Newest {}

impl PartialOrd for Newest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Newest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.created_at, self.seq).cmp(&(other.created_at, other.seq))
    }
}

fn target(
    session: SessionPayload,
    messages: Vec<MessagePayload>,
    rows: Vec<ServerSession>,
) -> Target {
    let count = rows.len();
    // The server writes to the first row by creation; `createdAt` is the closest we see.
    let listed = rows
        .into_iter()
        .min_by(|a, b| a.created_at.total_cmp(&b.created_at));
    Target {
        session,
        messages,
        listed,
        fetched: Fetched::Pending,
        rows: count,
    }
}

fn note_export_problems(export: &oneshot::ExportReport, report: &mut Report) {
    if !export.unreadable.is_empty() {
        report.notes.push(format!(
            "{} local file(s) could not be read, so export may lack what they hold: {}",
            export.unreadable.len(),
            export.unreadable.join("; ")
        ));
    }
}

/// A session's messages from the server, with read limits and 404 as outcomes, not errors.
async fn fetch_messages(client: &Client, server_id: &str) -> Result<Fetched> {
    match with_retry(|| client.api_session(server_id)).await {
        Ok(Some(detail)) => Ok(Fetched::Messages(detail.messages)),
        Ok(None) => Ok(Fetched::NotFound),
        Err(e) if e.is_read_limit() => Ok(Fetched::TooLarge(e.to_string())),
        Err(e) => Err(fatal(e, "reading a session")),
    }
}

/// Sends `op` until it succeeds or fails for a reason retrying cannot fix (a read limit is
/// one: the same read fails the same way).
async fn with_retry<T, F, Fut>(op: F) -> Result<T, PushError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, PushError>>,
{
    let mut backoff = Backoff::new(
        Duration::from_millis(500),
        Duration::from_secs(10),
        rand::SeedableRng::from_rng(&mut rand::rng()),
    );
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e)
                if e.class() == ErrorClass::Retry
                    && !e.is_read_limit()
                    && backoff.attempts() + 1 < ATTEMPTS =>
            {
                tokio::time::sleep(backoff.next_delay(e.retry_after())).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A failure that stops the audit, said in the user's terms.
fn fatal(e: PushError, doing: &str) -> anyhow::Error {
    match e.class() {
        ErrorClass::AuthPaused => anyhow!(
            "{doing}: the server refused the API key ({e}); run `opensyncd login` with a \
             current key"
        ),
        ErrorClass::WrongUrl => anyhow!(
            "{doing}: the server does not answer like OpenSync ({e}); check the URL with \
             `opensyncd verify`"
        ),
        _ => anyhow!("{doing}: {e}"),
    }
}

fn missing_session(id: &str, messages: usize) -> Difference {
    Difference {
        session: id.to_string(),
        message: None,
        field: "session".into(),
        server: None,
        export: Some(format!("a session with {messages} message(s)")),
        fix: Fix::SendSession,
    }
}

fn impossible(reason: &str) -> Fix {
    Fix::Impossible {
        reason: reason.to_string(),
    }
}

/// Every difference of one target (nothing for the messages of a session the server could
/// not return: that is reported as too large, not as a difference).
fn compare_target(t: &Target) -> Vec<Difference> {
    let mut out = Vec::new();
    let Some(listed) = &t.listed else {
        out.push(missing_session(t.id(), t.messages.len()));
        return out;
    };
    if matches!(t.fetched, Fetched::NotFound) {
        return out; // deleted since it was listed: reported as such
    }
    if t.rows > 1 {
        out.push(Difference {
            session: t.id().to_string(),
            message: None,
            field: "duplicate".into(),
            server: Some(format!("{} rows", t.rows)),
            export: Some("one session".into()),
            fix: impossible(
                "a session stored twice cannot be merged: the server has no delete route",
            ),
        });
    }
    compare_session(&t.session, listed, &mut out);
    if let Fetched::Messages(server) = &t.fetched {
        compare_messages(t.id(), &t.messages, server, &mut out);
    }
    out
}

/// Session fields under the server's rules.
pub fn compare_session(want: &SessionPayload, have: &ServerSession, out: &mut Vec<Difference>) {
    let sid = &want.external_id;
    let mut push = |field: &str, server: Option<String>, export: Option<String>, fix: Fix| {
        out.push(Difference {
            session: sid.clone(),
            message: None,
            field: field.to_string(),
            server,
            export,
            fix,
        });
    };
    for (field, w, h) in [
        ("title", &want.title, &have.title),
        ("projectPath", &want.project_path, &have.project_path),
        ("projectName", &want.project_name, &have.project_name),
        ("model", &want.model, &have.model),
        ("provider", &want.provider, &have.provider),
    ] {
        if w != h {
            let fix = if w.is_some() {
                Fix::ResendSession
            } else {
                impossible("export has no value, and the server keeps a value once set")
            };
            push(field, h.as_deref().map(quote), w.as_deref().map(quote), fix);
        }
    }
    for (field, w, h) in [
        ("promptTokens", want.prompt_tokens, have.prompt_tokens),
        (
            "completionTokens",
            want.completion_tokens,
            have.completion_tokens,
        ),
    ] {
        let expected = w.unwrap_or(0);
        if expected as f64 != h {
            let fix = if expected > 0 {
                Fix::ResendSession
            } else {
                impossible("export's total is 0, and the server never overwrites a total with 0")
            };
            push(field, Some(number(h)), Some(expected.to_string()), fix);
        }
    }
    let expected_cost = want.cost.unwrap_or(0.0);
    if (expected_cost - have.cost).abs() > COST_TOLERANCE
        || expected_cost.is_nan() != have.cost.is_nan()
    {
        let fix = if want.cost.is_some() {
            Fix::ResendSession
        } else {
            impossible("export's cost is 0, which is never sent, so the server keeps its value")
        };
        push(
            "cost",
            Some(number(have.cost)),
            Some(number(expected_cost)),
            fix,
        );
    }
    if want.duration_ms.map(|d| d as f64) != have.duration_ms {
        let fix = if want.duration_ms.is_some() {
            Fix::ResendSession
        } else {
            impossible("export has no duration, and the server keeps a value once set")
        };
        push(
            "durationMs",
            have.duration_ms.map(number),
            want.duration_ms.map(|d| d.to_string()),
            fix,
        );
    }
    if let Some(created) = want.created_at
        && created as f64 != have.created_at
    {
        push(
            "createdAt",
            Some(timestamp(have.created_at)),
            Some(timestamp(created as f64)),
            impossible("the server fixes createdAt when it inserts a session"),
        );
    }
}

/// A session's messages: missing ones, ones only the server has, rows stored twice, and per
/// message every field the server returns.
pub fn compare_messages(
    session: &str,
    want: &[MessagePayload],
    have: &[ServerMessage],
    out: &mut Vec<Difference>,
) {
    let mut by_id: HashMap<&str, &ServerMessage> = HashMap::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for m in have {
        by_id.entry(m.external_id.as_str()).or_insert(m);
        *counts.entry(m.external_id.as_str()).or_default() += 1;
    }
    let diff = |message: &str, field: &str, server, export, fix| Difference {
        session: session.to_string(),
        message: Some(message.to_string()),
        field: field.to_string(),
        server,
        export,
        fix,
    };
    for (id, n) in &counts {
        if *n > 1 {
            out.push(diff(
                id,
                "duplicate",
                Some(format!("{n} rows")),
                Some("one message".into()),
                impossible(
                    "a message stored twice cannot be removed: the server has no delete route",
                ),
            ));
        }
    }
    let wanted: HashSet<&str> = want.iter().map(|m| m.external_id.as_str()).collect();
    for w in want {
        let id = w.external_id.as_str();
        let Some(h) = by_id.get(id) else {
            out.push(diff(
                id,
                "message",
                None,
                Some(describe_message(
                    role_name(w.role),
                    w.text_content.as_deref(),
                    w.parts.len(),
                )),
                Fix::ResendMessage,
            ));
            continue;
        };
        if role_name(w.role) != h.role {
            out.push(diff(
                id,
                "role",
                Some(h.role.clone()),
                Some(role_name(w.role).to_string()),
                impossible("the server never changes a message's role"),
            ));
        }
        for (field, wv, hv) in [
            ("textContent", &w.text_content, &h.text_content),
            ("model", &w.model, &h.model),
        ] {
            if wv != hv {
                let fix = if wv.is_some() {
                    Fix::ResendMessage
                } else {
                    impossible("export has no value, and the server keeps a value once set")
                };
                out.push(diff(
                    id,
                    field,
                    hv.as_deref().map(quote),
                    wv.as_deref().map(quote),
                    fix,
                ));
            }
        }
        for (field, wv, hv) in [
            ("promptTokens", w.prompt_tokens, h.prompt_tokens),
            ("completionTokens", w.completion_tokens, h.completion_tokens),
            ("durationMs", w.duration_ms, h.duration_ms),
        ] {
            if wv.map(|v| v as f64) != hv {
                let fix = if wv.is_some() {
                    Fix::ResendMessage
                } else {
                    impossible("export has no value, and the server keeps a value once set")
                };
                out.push(diff(
                    id,
                    field,
                    hv.map(number),
                    wv.map(|v| v.to_string()),
                    fix,
                ));
            }
        }
        if let Some(created) = w.created_at
            && created as f64 != h.created_at
        {
            out.push(diff(
                id,
                "createdAt",
                Some(timestamp(h.created_at)),
                Some(timestamp(created as f64)),
                impossible("the server fixes createdAt when it inserts a message"),
            ));
        }
        if let Some((server, export)) = parts_difference(&h.parts, &w.parts) {
            out.push(diff(
                id,
                "parts",
                Some(server),
                Some(export),
                Fix::ResendMessage,
            ));
        }
    }
    let mut extra: Vec<&ServerMessage> = by_id
        .values()
        .filter(|m| !wanted.contains(m.external_id.as_str()))
        .copied()
        .collect();
    extra.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
    for m in extra {
        out.push(diff(
            &m.external_id,
            "message",
            Some(describe_message(
                &m.role,
                m.text_content.as_deref(),
                m.parts.len(),
            )),
            None,
            impossible("only the server has it, and the server has no delete route"),
        ));
    }
}

/// How two part lists differ, described for a human (`None`: equal).
pub fn parts_difference(server: &[Part], export: &[Part]) -> Option<(String, String)> {
    if server.len() != export.len() {
        let kinds = |parts: &[Part]| {
            let names: Vec<&str> = parts.iter().map(|p| p.kind.as_str()).collect();
            format!("{} part(s) [{}]", parts.len(), names.join(", "))
        };
        return Some((kinds(server), kinds(export)));
    }
    let (i, (s, e)) = server
        .iter()
        .zip(export)
        .enumerate()
        .find(|(_, (s, e))| s.kind != e.kind || !json_equal(&s.content, &e.content))?;
    let show = |p: &Part| format!("part {i}: {} {}", p.kind, preview(&p.content.to_string()));
    Some((show(s), show(e)))
}

/// JSON equality as the server stores values: numbers are float64 (so `1` equals `1.0`, and
/// integers beyond 2^53 compare as the server rounds them); key order does not matter.
pub fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
        Role::Tool => "tool",
        Role::Unknown => "unknown",
    }
}

fn describe_message(role: &str, text: Option<&str>, parts: usize) -> String {
    match text {
        Some(t) => format!("{role} message {} with {parts} part(s)", quote(t)),
        None => format!("{role} message without text, {parts} part(s)"),
    }
}

/// A string shown quoted, shortened past [`PREVIEW_CHARS`] with its full length.
fn quote(s: &str) -> String {
    let count = s.chars().count();
    if count <= PREVIEW_CHARS {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(PREVIEW_CHARS).collect();
        format!("{head:?}… ({count} chars)")
    }
}

fn preview(s: &str) -> String {
    let count = s.chars().count();
    if count <= PREVIEW_CHARS {
        s.to_string()
    } else {
        let head: String = s.chars().take(PREVIEW_CHARS).collect();
        format!("{head}… ({count} chars)")
    }
}

/// A number the server holds, shown without a trailing `.0`.
fn number(v: f64) -> String {
    format!("{v}")
}

fn timestamp(ms: f64) -> String {
    format!("{} ({})", number(ms), iso(ms as i64))
}

/// Epoch ms as `YYYY-MM-DDTHH:MM:SS.mmmZ` (civil-from-days, proleptic Gregorian).
fn iso(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Until when the server would skip a write made now (`None`: it would not): `last_ms` is
/// the server's timestamp the window runs from (a session's `updatedAt`, a message's
/// `createdAt`), `window_ms` its length.
pub fn window_until(last_ms: f64, window_ms: i64, now_ms: i64) -> Option<i64> {
    let until = (last_ms as i64)
        .saturating_add(window_ms)
        .saturating_add(WINDOW_MARGIN_MS);
    (now_ms < until).then_some(until)
}

/// One session's writes in a repair round.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    /// Index into the targets.
    index: usize,
    /// Send the session payload (first).
    session: bool,
    /// Indexes into the target's messages to send, in export's order.
    messages: Vec<usize>,
}

/// What one repair round sends, and how long it must wait before.
#[derive(Debug, Default, PartialEq)]
struct RoundPlan {
    plans: Vec<Planned>,
    /// Send no earlier than this (epoch ms, this machine's clock), and why.
    wait: Option<(i64, String)>,
    /// Messages not sent because their window ends too far ahead: (id, explanation).
    deferred: Vec<(String, String)>,
}

/// Records the server refused, or deferred past their window: not sent again in this run.
#[derive(Debug, Default)]
struct GivenUp {
    sessions: HashSet<String>,
    messages: HashSet<String>,
}

impl GivenUp {
    fn covers(&self, d: &Difference) -> bool {
        self.sessions.contains(&d.session)
            || d.message
                .as_ref()
                .is_some_and(|m| self.messages.contains(m))
    }
}

/// Whether the server's session dedup check, time aside, would skip writing `want` over
/// `have` (`sessions.upsert`): title, model and project path unchanged, and each token total
/// 0, absent or unchanged. Any other change (cost, duration, provider, project name) is then
/// dropped inside the window.
pub fn session_write_skippable(want: &SessionPayload, have: &ServerSession) -> bool {
    let same_total = |w: Option<u64>, h: f64| w.is_none_or(|w| w == 0 || w as f64 == h);
    want.title == have.title
        && want.model == have.model
        && want.project_path == have.project_path
        && same_total(want.prompt_tokens, have.prompt_tokens)
        && same_total(want.completion_tokens, have.completion_tokens)
}

/// Which records of each target a round sends, and the server windows it must wait for: a
/// session written less than 10 s ago (by its `updatedAt`) whose write the server would skip
/// ([`session_write_skippable`]; from the second round on, any such session, in case the
/// server's rule is not the one we know), a message whose stored `createdAt` is less than 5 s
/// ago, each plus [`WINDOW_MARGIN_MS`]. A message whose window ends more than
/// [`MAX_WINDOW_WAIT_MS`] ahead (its `createdAt` lies in the future) is deferred.
fn plan_round(
    targets: &[Target],
    diffs: &[Vec<Difference>],
    given_up: &GivenUp,
    round: usize,
    now: i64,
) -> RoundPlan {
    let mut out = RoundPlan::default();
    let later = |until: i64, reason: &dyn Fn() -> String, out: &mut RoundPlan| {
        if until > now && out.wait.as_ref().is_none_or(|(w, _)| until > *w) {
            out.wait = Some((until, reason()));
        }
    };
    for (index, (t, d)) in targets.iter().zip(diffs).enumerate() {
        if given_up.sessions.contains(t.id()) {
            continue;
        }
        let whole = d.iter().any(|x| x.fix == Fix::SendSession);
        let session = whole || d.iter().any(|x| x.fix == Fix::ResendSession);
        let wanted: HashSet<&str> = d
            .iter()
            .filter(|x| x.fix == Fix::ResendMessage)
            .filter_map(|x| x.message.as_deref())
            .collect();
        let stored_created: HashMap<&str, f64> = match &t.fetched {
            Fetched::Messages(server) => server
                .iter()
                .map(|m| (m.external_id.as_str(), m.created_at))
                .collect(),
            _ => HashMap::new(),
        };
        let mut messages = Vec::new();
        for (i, m) in t.messages.iter().enumerate() {
            let id = m.external_id.as_str();
            if !(whole || wanted.contains(id)) || given_up.messages.contains(id) {
                continue;
            }
            if let Some(until) = stored_created
                .get(id)
                .and_then(|c| window_until(*c, MESSAGE_WINDOW_MS, now))
            {
                if until - now > MAX_WINDOW_WAIT_MS {
                    out.deferred.push((
                        id.to_string(),
                        format!(
                            "message {id} of session {}: its stored createdAt is {}s ahead of \
                             this machine's clock, and the server ignores updates until 5 s \
                             after it; run audit --repair again later",
                            t.id(),
                            (until - now - MESSAGE_WINDOW_MS - WINDOW_MARGIN_MS) / 1000
                        ),
                    ));
                    continue;
                }
                later(
                    until,
                    &|| {
                        format!(
                            "message {id} was created less than 5 s ago by the server's \
                             record, and the server skips an update within 5 s of that"
                        )
                    },
                    &mut out,
                );
            }
            messages.push(i);
        }
        if let (true, Some(listed)) = (session, &t.listed)
            && (round > 1 || session_write_skippable(&t.session, listed))
            && let Some(until) = window_until(listed.updated_at, SESSION_WINDOW_MS, now)
        {
            let ago = (now - listed.updated_at as i64).max(0) / 1000;
            later(
                until,
                &|| {
                    format!(
                        "session {} was written {ago}s ago, and the server skips an update \
                         within 10 s of the last write",
                        t.id()
                    )
                },
                &mut out,
            );
        }
        if session || !messages.is_empty() {
            out.plans.push(Planned {
                index,
                session,
                messages,
            });
        }
    }
    out
}

/// Sends what differs, waits out the windows, fetches again and compares, up to
/// [`REPAIR_ROUNDS`] times.
async fn repair(
    client: &Client,
    targets: &mut [Target],
    untargeted: &[Difference],
    report: &Report,
    progress: &mut dyn FnMut(Progress),
) -> Result<RepairReport> {
    let mut out = RepairReport::default();
    let mut diffs: Vec<Vec<Difference>> = targets.iter().map(compare_target).collect();
    let mut given_up = GivenUp::default();
    // The clock the engine plans its windows with (a test may drive it).
    let clock = Clock::from_env();
    for round in 1..=REPAIR_ROUNDS {
        let now = clock.now_ms();
        let plan = plan_round(targets, &diffs, &given_up, round, now);
        for (id, why) in plan.deferred {
            given_up.messages.insert(id);
            out.deferred.push(why);
        }
        if plan.plans.is_empty() {
            break;
        }
        out.rounds = round;
        if let Some((until, reason)) = plan.wait {
            let wait = Duration::from_millis(until.saturating_sub(now).max(0) as u64);
            progress(Progress::Waiting { wait, reason });
            tokio::time::sleep(wait).await;
            out.waited_ms += wait.as_millis() as u64;
        }
        progress(Progress::Sending {
            round,
            sessions: plan.plans.iter().filter(|p| p.session).count(),
            messages: plan.plans.iter().map(|p| p.messages.len()).sum(),
        });
        for p in &plan.plans {
            send_planned(client, &targets[p.index], p, &mut out, &mut given_up).await?;
        }
        let touched: Vec<usize> = plan.plans.iter().map(|p| p.index).collect();
        refetch(client, targets, &touched).await?;
        for &i in &touched {
            diffs[i] = compare_target(&targets[i]);
        }
        let pending = diffs
            .iter()
            .flatten()
            .any(|d| d.fix.repairable() && !given_up.covers(d));
        if !pending {
            break;
        }
    }
    let mut remaining: Vec<Difference> = diffs.into_iter().flatten().collect();
    remaining.extend(untargeted.iter().cloned());
    let now_keys: HashSet<_> = remaining.iter().map(Difference::key).collect();
    out.fixed = report
        .differences
        .iter()
        .filter(|d| d.fix.repairable() && !now_keys.contains(&d.key()))
        .count();
    out.remaining = remaining;
    Ok(out)
}

/// Sends one target's planned writes: the session payload first (so messages never
/// auto-create a bare session), then the messages in export's order.
async fn send_planned(
    client: &Client,
    t: &Target,
    plan: &Planned,
    out: &mut RepairReport,
    given_up: &mut GivenUp,
) -> Result<()> {
    if plan.session {
        match send(|| client.upsert_session(&t.session)).await? {
            None => out.sessions_sent += 1,
            Some(reason) => {
                out.refused.push(format!("session {}: {reason}", t.id()));
                given_up.sessions.insert(t.id().to_string());
                return Ok(());
            }
        }
    }
    for &i in &plan.messages {
        let m = &t.messages[i];
        match send(|| client.upsert_message(m)).await? {
            None => out.messages_sent += 1,
            Some(reason) => {
                out.refused.push(format!(
                    "message {} of session {}: {reason}",
                    m.external_id,
                    t.id()
                ));
                given_up.messages.insert(m.external_id.clone());
            }
        }
    }
    Ok(())
}

/// Sends one record: `Ok(None)` when acknowledged, `Ok(Some(reason))` when the server refuses
/// it for good, `Err` when nothing more can be sent (the key, the URL).
async fn send<F, Fut>(op: F) -> Result<Option<String>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), PushError>>,
{
    match with_retry(op).await {
        Ok(()) => Ok(None),
        Err(e) => match e.class() {
            ErrorClass::AuthPaused | ErrorClass::WrongUrl => Err(fatal(e, "repairing")),
            _ => Ok(Some(e.to_string())),
        },
    }
}

/// Reads again what the server holds for the touched targets: by their document id when
/// known, else (sessions just created, sessions too large to read) from a fresh listing —
/// they were just written, so they are at its top.
async fn refetch(client: &Client, targets: &mut [Target], touched: &[usize]) -> Result<()> {
    let need_listing: Vec<usize> = touched
        .iter()
        .copied()
        .filter(|&i| {
            targets[i].listed.is_none() || matches!(targets[i].fetched, Fetched::TooLarge(_))
        })
        .collect();
    if !need_listing.is_empty() {
        let listing = with_retry(|| client.api_sessions(need_listing.len() + 100))
            .await
            .map_err(|e| fatal(e, "listing sessions"))?;
        for &i in &need_listing {
            let rows: Vec<ServerSession> = listing
                .iter()
                .filter(|s| s.external_id == targets[i].id())
                .cloned()
                .collect();
            if !rows.is_empty() {
                let t = &mut targets[i];
                *t = target(
                    std::mem::take(&mut t.session),
                    std::mem::take(&mut t.messages),
                    rows,
                );
            }
        }
    }
    for &i in touched {
        let Some(id) = targets[i].listed.as_ref().map(|l| l.id.clone()) else {
            continue;
        };
        match with_retry(|| client.api_session(&id)).await {
            Ok(Some(detail)) => {
                let t = &mut targets[i];
                t.listed = Some(detail.session);
                t.fetched = Fetched::Messages(detail.messages);
            }
            Ok(None) => targets[i].fetched = Fetched::NotFound,
            Err(e) if e.is_read_limit() => {
                targets[i].fetched = Fetched::TooLarge(e.to_string());
            }
            Err(e) => return Err(fatal(e, "reading a session again after the repair")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn server_session() -> ServerSession {
        ServerSession {
            id: "sessions_1".into(),
            external_id: "s1".into(),
            title: Some("Fix the build".into()),
            project_path: Some("/home/dev/p".into()),
            project_name: Some("p".into()),
            model: Some("claude-sonnet-4-5".into()),
            provider: Some("anthropic".into()),
            prompt_tokens: 1200.0,
            completion_tokens: 80.0,
            total_tokens: 1280.0,
            cost: 0.0123,
            duration_ms: Some(60_000.0),
            is_public: false,
            message_count: 2.0,
            created_at: 1_780_000_000_000.0,
            updated_at: 1_780_000_100_000.0,
        }
    }

    fn payload() -> SessionPayload {
        SessionPayload {
            external_id: "s1".into(),
            title: Some("Fix the build".into()),
            project_path: Some("/home/dev/p".into()),
            project_name: Some("p".into()),
            model: Some("claude-sonnet-4-5".into()),
            provider: Some("anthropic".into()),
            source: "claude-code".into(),
            prompt_tokens: Some(1200),
            completion_tokens: Some(80),
            cost: Some(0.0123),
            duration_ms: Some(60_000),
            created_at: Some(1_780_000_000_000),
        }
    }

    fn fields(diffs: &[Difference]) -> Vec<(&str, bool)> {
        diffs
            .iter()
            .map(|d| (d.field.as_str(), d.fix.repairable()))
            .collect()
    }

    #[test]
    fn equal_session_has_no_difference_and_cost_noise_is_ignored() {
        let mut out = Vec::new();
        let mut have = server_session();
        // 0.0123 + 4e-7: float noise within the 1e-6 tolerance.
        have.cost = 0.012_300_4;
        compare_session(&payload(), &have, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // 0.0123 + 2e-6: a real difference.
        have.cost = 0.012_302;
        compare_session(&payload(), &have, &mut out);
        assert_eq!(fields(&out), [("cost", true)]);
    }

    #[test]
    fn server_rules_decide_what_is_repairable() {
        let mut want = payload();
        want.title = None; // export has no title; the server keeps "Fix the build"
        want.completion_tokens = None; // 0 is never sent; the server keeps 80
        want.prompt_tokens = Some(1500); // a real change: re-send
        want.created_at = Some(1_780_000_000_001); // off by 1 ms: reported, unrepairable
        let mut out = Vec::new();
        compare_session(&want, &server_session(), &mut out);
        assert_eq!(
            fields(&out),
            [
                ("title", false),
                ("promptTokens", true),
                ("completionTokens", false),
                ("createdAt", false)
            ]
        );
        assert_eq!(out[1].server.as_deref(), Some("1200"));
        assert_eq!(out[1].export.as_deref(), Some("1500"));
        assert!(
            out[3]
                .server
                .as_deref()
                .unwrap()
                .contains("2026-05-28T20:26:40.000Z")
        );
    }

    fn message(id: &str, text: &str, parts: Vec<Part>) -> MessagePayload {
        MessagePayload {
            session_external_id: "s1".into(),
            external_id: id.into(),
            role: Role::Assistant,
            text_content: Some(text.into()),
            model: None,
            prompt_tokens: None,
            completion_tokens: None,
            duration_ms: None,
            source: "claude-code".into(),
            parts,
            created_at: Some(1_780_000_000_000),
        }
    }

    fn stored(m: &MessagePayload) -> ServerMessage {
        ServerMessage {
            id: format!("messages_{}", m.external_id),
            external_id: m.external_id.clone(),
            role: role_name(m.role).into(),
            text_content: m.text_content.clone(),
            model: m.model.clone(),
            prompt_tokens: None,
            completion_tokens: None,
            duration_ms: None,
            created_at: m.created_at.unwrap_or(0) as f64,
            parts: m.parts.clone(),
        }
    }

    #[test]
    fn messages_missing_extra_changed_and_duplicated_are_each_reported() {
        let a = message("a", "hello", vec![Part::text("hello")]);
        let b = message(
            "b",
            "ran it",
            vec![Part::tool_call("bash", json!({"cmd": "ls", "n": 1}))],
        );
        let c = message("c", "gone", vec![]);
        let mut b_stored = stored(&b);
        // Convex returns numbers as float64: 1.0 equals 1, and key order is irrelevant.
        b_stored.parts[0].content = json!({"args": {"n": 1.0, "cmd": "ls"}, "name": "bash"});
        let mut a_stored = stored(&a);
        a_stored.text_content = Some("hel".into());
        a_stored.role = "user".into();
        let foreign = ServerMessage {
            external_id: "z".into(),
            ..stored(&a)
        };
        let have = vec![a_stored, b_stored.clone(), b_stored, foreign];
        let mut out = Vec::new();
        compare_messages("s1", &[a, b, c], &have, &mut out);
        let got: Vec<(Option<&str>, &str, bool)> = out
            .iter()
            .map(|d| (d.message.as_deref(), d.field.as_str(), d.fix.repairable()))
            .collect();
        assert_eq!(
            got,
            [
                (Some("b"), "duplicate", false),
                (Some("a"), "role", false),
                (Some("a"), "textContent", true),
                (Some("c"), "message", true),
                (Some("z"), "message", false),
            ]
        );
    }

    #[test]
    fn parts_differences_name_the_first_differing_part() {
        let export = vec![Part::text("a"), Part::tool_result(json!("ok"))];
        let mut server = export.clone();
        assert_eq!(parts_difference(&server, &export), None);
        server[1] = Part::tool_result(json!("failed"));
        let (s, e) = parts_difference(&server, &export).unwrap();
        assert_eq!(s, r#"part 1: tool-result {"result":"failed"}"#);
        assert_eq!(e, r#"part 1: tool-result {"result":"ok"}"#);
        let (s, e) = parts_difference(&[], &export).unwrap();
        assert_eq!(s, "0 part(s) []");
        assert_eq!(e, "2 part(s) [text, tool-result]");
    }

    #[test]
    fn json_equality_is_the_servers() {
        assert!(json_equal(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!json_equal(&json!("1"), &json!(1)));
        // 2^53 + 1 is stored as 2^53 by a float64 server.
        assert!(json_equal(
            &json!(9_007_199_254_740_993u64),
            &json!(9_007_199_254_740_992u64)
        ));
    }

    #[test]
    fn windows_run_from_the_servers_timestamps_with_a_margin() {
        let now = 1_780_000_000_000;
        // Written 3 s ago: skipped until 10 s + 1 s margin after the write.
        assert_eq!(
            window_until((now - 3_000) as f64, SESSION_WINDOW_MS, now),
            Some(now - 3_000 + 10_000 + 1_000)
        );
        // Written 11 s ago: free.
        assert_eq!(
            window_until((now - 11_000) as f64, SESSION_WINDOW_MS, now),
            None
        );
        // A message created 2 s in the future: 5 s + 1 s after that.
        assert_eq!(
            window_until((now + 2_000) as f64, MESSAGE_WINDOW_MS, now),
            Some(now + 8_000)
        );
    }

    fn target_of(
        session: SessionPayload,
        messages: Vec<MessagePayload>,
        listed: ServerSession,
        stored: Vec<ServerMessage>,
    ) -> Target {
        Target {
            session,
            messages,
            listed: Some(listed),
            fetched: Fetched::Messages(stored),
            rows: 1,
        }
    }

    fn diff(session: &str, message: Option<&str>, field: &str, fix: Fix) -> Difference {
        Difference {
            session: session.into(),
            message: message.map(str::to_string),
            field: field.into(),
            server: None,
            export: None,
            fix,
        }
    }

    #[test]
    fn a_round_waits_for_the_latest_window_and_defers_a_future_message() {
        let now = 1_780_000_000_000;
        // s1: its cost differs, and it was written 3 s ago.
        let mut listed1 = server_session();
        listed1.updated_at = (now - 3_000) as f64;
        let t1 = target_of(payload(), vec![], listed1, vec![]);
        // s2: m1 created 1 s ago (window), m2 created 2 min in the future (deferred), m3 not
        // on the server (an insert: no window); the session itself was written long ago.
        let mut p2 = payload();
        p2.external_id = "s2".into();
        let msgs: Vec<MessagePayload> = ["m1", "m2", "m3"]
            .iter()
            .map(|id| message(id, "x", vec![]))
            .collect();
        let mut stored1 = stored(&msgs[0]);
        stored1.created_at = (now - 1_000) as f64;
        let mut stored2 = stored(&msgs[1]);
        stored2.created_at = (now + 120_000) as f64;
        let mut listed2 = server_session();
        listed2.external_id = "s2".into();
        listed2.updated_at = (now - 60_000) as f64;
        let t2 = target_of(p2.clone(), msgs, listed2.clone(), vec![stored1, stored2]);
        // s3: refused earlier in this run.
        let mut p3 = p2.clone();
        p3.external_id = "s3".into();
        let t3 = target_of(p3, vec![], listed2, vec![]);
        let diffs = vec![
            vec![diff("s1", None, "cost", Fix::ResendSession)],
            vec![
                diff("s2", Some("m1"), "textContent", Fix::ResendMessage),
                diff("s2", Some("m2"), "parts", Fix::ResendMessage),
                diff("s2", Some("m3"), "message", Fix::ResendMessage),
            ],
            vec![diff("s3", None, "title", Fix::ResendSession)],
        ];
        let mut given_up = GivenUp::default();
        given_up.sessions.insert("s3".into());
        let targets = [t1, t2, t3];
        let plan = plan_round(&targets, &diffs, &given_up, 1, now);
        assert_eq!(
            plan.plans,
            [
                Planned {
                    index: 0,
                    session: true,
                    messages: vec![]
                },
                Planned {
                    index: 1,
                    session: false,
                    messages: vec![0, 2]
                },
            ]
        );
        // s1's window: written at now - 3 s, + 10 s, + 1 s margin = now + 8 s; m1's ends at
        // now - 1 s + 5 s + 1 s = now + 5 s, earlier.
        let (until, reason) = plan.wait.unwrap();
        assert_eq!(until, now + 8_000);
        assert!(reason.contains("session s1 was written 3s ago"), "{reason}");
        assert_eq!(plan.deferred.len(), 1);
        assert_eq!(plan.deferred[0].0, "m2");
        assert!(
            plan.deferred[0].1.contains("120s ahead"),
            "{}",
            plan.deferred[0].1
        );

        // A title change is never skipped by the server: no need to wait for s1 in round 1
        // (m1's window remains), but a second round waits whatever changed.
        let mut targets = targets;
        targets[0].session.title = Some("new title".into());
        let plan = plan_round(&targets, &diffs, &given_up, 1, now);
        assert_eq!(plan.wait.unwrap().0, now + 5_000);
        let plan = plan_round(&targets, &diffs, &given_up, 2, now);
        assert_eq!(plan.wait.unwrap().0, now + 8_000);
    }

    #[test]
    fn the_session_window_skips_only_what_the_server_compares() {
        let have = server_session();
        assert!(session_write_skippable(&payload(), &have));
        let mut want = payload();
        want.cost = Some(5.0);
        want.duration_ms = Some(1);
        want.provider = Some("other".into());
        want.project_name = Some("other".into());
        want.completion_tokens = None; // absent: not compared
        assert!(
            session_write_skippable(&want, &have),
            "these changes are dropped"
        );
        let changes: [fn(&mut SessionPayload); 6] = [
            |p| p.title = Some("t".into()),
            |p| p.title = None,
            |p| p.model = Some("m".into()),
            |p| p.project_path = Some("/x".into()),
            |p| p.prompt_tokens = Some(1201),
            |p| p.completion_tokens = Some(81),
        ];
        for change in changes {
            let mut want = payload();
            change(&mut want);
            assert!(!session_write_skippable(&want, &have), "{want:?}");
        }
    }

    #[test]
    fn previews_are_short_and_say_the_full_length() {
        let long = "x".repeat(100);
        assert_eq!(quote(&long), format!("\"{}\"… (100 chars)", "x".repeat(60)));
        assert_eq!(quote("é\n"), "\"é\\n\"");
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_780_000_000_000), "2026-05-28T20:26:40.000Z");
        assert_eq!(iso(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }
}
