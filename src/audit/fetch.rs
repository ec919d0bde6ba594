//! Which sessions an audit covers and what the server holds for them: export's sessions
//! paired with the server's listed rows (by id, or the N most recently updated plus the local
//! ones the server lacks), their messages read per session, read again after a repair, and
//! every request retried through transient errors, with the failures that stop an audit said
//! in the user's terms.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use super::compare::missing_session;
use super::{Difference, Fetched, Options, Report, Target};
use crate::config::Config;
use crate::model::{MessagePayload, SessionPayload};
use crate::oneshot;
use crate::push::{Backoff, Client, ErrorClass, PushError, ServerSession};

/// Listing sizes tried in turn to find one session by its id (there is no pagination).
const SEARCH_LIMITS: [usize; 4] = [100, 1_000, 10_000, 100_000];
/// Attempts per request when the server answers with a transient error.
const ATTEMPTS: u32 = 5;

/// `--session ID`: the session in export, and its row found in a listing large enough.
pub(super) fn select_one(
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
pub(super) fn select_recent(
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
pub(super) async fn fetch_messages(client: &Client, server_id: &str) -> Result<Fetched> {
    match with_retry(|| client.api_session(server_id)).await {
        Ok(Some(detail)) => Ok(Fetched::Messages(detail.messages)),
        Ok(None) => Ok(Fetched::NotFound),
        Err(e) if e.is_read_limit() => Ok(Fetched::TooLarge(e.to_string())),
        Err(e) => Err(fatal(e, "reading a session")),
    }
}

/// Sends `op` until it succeeds or fails for a reason retrying cannot fix (a read limit is
/// one: the same read fails the same way).
pub(super) async fn with_retry<T, F, Fut>(op: F) -> Result<T, PushError>
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
pub(super) fn fatal(e: PushError, doing: &str) -> anyhow::Error {
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

/// Reads again what the server holds for the touched targets: by their document id when
/// known, else (sessions just created, sessions too large to read) from a fresh listing —
/// they were just written, so they are at its top.
pub(super) async fn refetch(
    client: &Client,
    targets: &mut [Target],
    touched: &[usize],
) -> Result<()> {
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
