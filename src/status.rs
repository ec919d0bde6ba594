//! What `status` reports, computed from the ledger, the files on disk and (when a daemon
//! runs) its live counters: the state of syncing first (`health`), then per source, files and
//! sessions known, the backlog not yet acknowledged (`pending`, the definition `sync
//! --dry-run` shares), quarantined records, unpriced models, and transcripts at risk of Claude
//! Code's 30-day cleanup.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::engine::Counters;
use crate::health::{SyncState, human_bytes};
use crate::ledger::{Ledger, LedgerError, Quarantined};
use crate::model::SourceId;
use crate::pause::Hold;
use crate::pending;
use crate::sources::{self, Access, ParseOptions, Roots};

/// Claude Code deletes transcripts older than this many days (its default `cleanupPeriodDays`).
pub const CLAUDE_CLEANUP_DAYS: i64 = 30;
/// Warn about unsynced transcripts this many days before the cleanup.
pub const CLEANUP_WARN_DAYS: i64 = 5;

/// One source's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceStatus {
    /// The source id.
    pub source: String,
    /// Units (files, OpenCode sessions/dbs) on disk.
    pub files: usize,
    /// Units with data not yet acknowledged.
    pub backlog_files: usize,
    /// Bytes of JSONL not yet acknowledged.
    pub backlog_bytes: u64,
    /// Sessions the ledger knows.
    pub sessions: usize,
    /// Messages acknowledged.
    pub messages: u64,
    /// Unsynced transcripts older than the cleanup warning age.
    pub at_risk_files: usize,
    /// Units on disk left out by the `exclude` patterns (never read).
    #[serde(default)]
    pub excluded_files: usize,
}

/// The whole status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// The state of syncing (what `status` leads with, and its exit code).
    #[serde(default)]
    pub health: Option<SyncState>,
    /// The hold put by `opensyncd pause` or `logout`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// Who holds the single-instance lock when it is not a daemon that answers (pid and
    /// command), and whether a daemon waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_holder: Option<String>,
    /// Daemon pid, if one answered.
    pub daemon_pid: Option<u32>,
    /// Daemon uptime in seconds.
    pub uptime_secs: Option<u64>,
    /// opensyncd version.
    pub version: String,
    /// Server URL.
    pub url: Option<String>,
    /// The key, masked.
    pub api_key: Option<String>,
    /// `ok`, `not logged in`, or why pushing is paused.
    pub auth: String,
    /// Watching problems (e.g. the inotify limit).
    pub watch_warning: Option<String>,
    /// Per source.
    pub sources: Vec<SourceStatus>,
    /// Live counters (daemon) or empty.
    pub counters: Option<CountersView>,
    /// Number of quarantined records.
    pub quarantined: usize,
    /// The most recent quarantined records.
    pub recent_quarantine: Vec<Quarantined>,
    /// Every record the server refused, newest first (`status --rejected`).
    #[serde(default)]
    pub rejected: Vec<Quarantined>,
    /// Writes held back because the server would skip them now (its dedup windows).
    #[serde(default)]
    pub deferred_writes: usize,
    /// The ledger was started over (damaged or lost): why, and when (epoch ms).
    #[serde(default)]
    pub ledger_started_over: Option<(String, i64)>,
    /// Model → number of sessions using it without a known price.
    pub unpriced_models: BTreeMap<String, usize>,
    /// Model → the tokens whose cost is left out for want of a price.
    #[serde(default)]
    pub unpriced_tokens: BTreeMap<String, crate::model::Tokens>,
    /// Malformed lines skipped (cumulative, from the ledger).
    pub malformed_lines: u64,
    /// Lines over the size cap skipped (cumulative, from the ledger).
    pub skipped_long_lines: u64,
    /// Messages acknowledged in total.
    pub messages: usize,
    /// Human warnings worth a line each.
    pub warnings: Vec<String>,
    /// The `exclude` patterns in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Sessions the ledger knows whose project path an `exclude` pattern matches.
    #[serde(default)]
    pub excluded_sessions: usize,
    /// The background service (systemd unit / LaunchAgent), as the service manager reports it;
    /// filled in by the CLI, which is the process allowed to ask the service manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<crate::service::ServiceStatus>,
}

/// Counters as shown.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CountersView {
    /// Requests sent.
    pub requests: u64,
    /// Retries.
    pub retries: u64,
    /// Sessions written.
    pub sessions_sent: u64,
    /// Messages written.
    pub messages_sent: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Epoch ms of the last acknowledged request.
    pub last_success_ms: Option<i64>,
    /// The last error and when.
    pub last_error: Option<(i64, String)>,
    /// Bytes read and acknowledged since the daemon started.
    #[serde(default)]
    pub bytes_committed: u64,
    /// Since when requests have been failing in a row (transient errors).
    #[serde(default)]
    pub failing_since_ms: Option<i64>,
    /// When the next attempt of a failing request is due.
    #[serde(default)]
    pub next_attempt_ms: Option<i64>,
}

impl From<&Counters> for CountersView {
    fn from(c: &Counters) -> Self {
        CountersView {
            requests: c.requests,
            retries: c.retries,
            sessions_sent: c.sessions_sent,
            messages_sent: c.messages_sent,
            rejected: c.rejected,
            last_success_ms: c.last_success_ms,
            last_error: c.last_error.clone(),
            bytes_committed: c.bytes_committed,
            failing_since_ms: c.failing_since_ms,
            next_attempt_ms: c.next_attempt_ms,
        }
    }
}

/// Fills the ledger- and disk-derived parts of the status. The backlog is what
/// [`pending::check`] finds, unit by unit: the same test `sync --dry-run` and `sync` apply.
pub fn collect(
    ledger: &Ledger,
    roots: &Roots,
    sources_enabled: &[SourceId],
    parse: ParseOptions,
    now_ms: i64,
) -> Result<Status, LedgerError> {
    let mut status = Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Status::default()
    };
    let mut known: HashMap<String, SourceId> = HashMap::new();
    for item in ledger.files() {
        let (key, rec) = item?;
        status.malformed_lines += rec.malformed_lines;
        status.skipped_long_lines += rec.skipped_long_lines;
        if let Some(unit) = rec.unit {
            known.insert(key, unit.source);
        }
    }
    let mut per_source: BTreeMap<SourceId, SourceStatus> = BTreeMap::new();
    let mut odd_names: Vec<std::path::PathBuf> = Vec::new();
    status.exclude = roots.exclude().patterns().to_vec();
    for source in sources_enabled {
        let mut s = SourceStatus {
            source: source.as_str().to_string(),
            ..SourceStatus::default()
        };
        let (units, excluded) = sources::scan_counting_excluded(*source, roots);
        s.excluded_files = excluded;
        for unit in units {
            known.remove(&unit.ledger_key());
            if unit.path.file_name().is_some_and(|n| n.to_str().is_none()) {
                odd_names.push(unit.path.clone());
            }
            s.files += 1;
            let Some(pending) = pending::check(ledger, &unit, parse)? else {
                continue;
            };
            s.backlog_files += 1;
            s.backlog_bytes += pending.bytes;
            if *source == SourceId::ClaudeCode && unit.access == Access::Lines {
                let age_days = std::fs::metadata(&unit.path)
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| (now_ms - d.as_millis() as i64) / 86_400_000)
                    .unwrap_or(0);
                if age_days >= CLAUDE_CLEANUP_DAYS - CLEANUP_WARN_DAYS {
                    s.at_risk_files += 1;
                }
            }
        }
        per_source.insert(*source, s);
    }
    // Units the ledger knows that are gone from disk: processing them retracts what they fed
    // (`sync --dry-run` lists them too).
    for source in known.into_values() {
        if let Some(s) = per_source.get_mut(&source) {
            s.backlog_files += 1;
        }
    }
    for item in ledger.sessions() {
        let (_, rec) = item?;
        if let Some(s) = per_source.get_mut(&rec.state.source) {
            s.sessions += 1;
            s.messages += rec.messages;
        }
        if rec
            .state
            .facts
            .project_path
            .as_ref()
            .is_some_and(|p| roots.exclude().matches_project(&p.value))
        {
            status.excluded_sessions += 1;
        }
        for model in rec.unpriced_models {
            // A model without a price has all its table-priced tokens unpriced.
            if let Some(bands) = rec.state.usage.0.get(&model) {
                let tokens = status.unpriced_tokens.entry(model.clone()).or_default();
                for bucket in bands.values() {
                    tokens.add(&bucket.priced);
                }
            }
            *status.unpriced_models.entry(model).or_default() += 1;
        }
    }
    let mut quarantine: Vec<Quarantined> = Vec::new();
    for item in ledger.quarantine() {
        quarantine.push(item?.1);
    }
    status.quarantined = quarantine.len();
    quarantine.sort_by_key(|q| std::cmp::Reverse(q.at_ms));
    status.rejected = quarantine.iter().map(without_payload).collect();
    quarantine.truncate(5);
    status.recent_quarantine = quarantine.iter().map(without_payload).collect();
    status.deferred_writes = ledger.deferred_count();
    status.ledger_started_over = ledger.started_over()?;
    if let Some((why, at)) = &status.ledger_started_over {
        status.warnings.push(format!(
            "the ledger was started over {} ago ({why}); what the server held was learnt from \
             it and re-sent record by record — nothing is duplicated",
            ago(*at)
        ));
    }
    status.messages = ledger.message_count();
    status.sources = per_source.into_values().collect();
    for s in &status.sources {
        if s.at_risk_files > 0 {
            status.warnings.push(format!(
                "{} Claude Code transcript(s) older than {} days are not fully synced; Claude Code \
                 deletes transcripts after {} days (cleanupPeriodDays). Is the daemon running and \
                 logged in?",
                s.at_risk_files,
                CLAUDE_CLEANUP_DAYS - CLEANUP_WARN_DAYS,
                CLAUDE_CLEANUP_DAYS
            ));
        }
    }
    if !odd_names.is_empty() {
        status.warnings.push(format!(
            "{} file name(s) are not valid UTF-8; they are synced, and shown with U+FFFD in \
             place of the bytes that are not: {}",
            odd_names.len(),
            odd_names
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !status.unpriced_models.is_empty() {
        status.warnings.push(format!(
            "no price known for {} model(s): {}; those tokens are counted but not costed, so \
             those sessions' cost is the priced part only (run `opensyncd prices update`, or add \
             the models to a pricing_file)",
            status.unpriced_models.len(),
            status
                .unpriced_models
                .iter()
                .map(|(model, sessions)| {
                    let t = status
                        .unpriced_tokens
                        .get(model)
                        .copied()
                        .unwrap_or_default();
                    format!(
                        "{} ({sessions} session(s), {} prompt + {} completion tokens)",
                        if model.is_empty() {
                            "(model not recorded)"
                        } else {
                            model
                        },
                        t.prompt(),
                        t.output
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(status)
}

/// Says in `status` what the batch transport costs: the messages it inserts get the sync time as
/// their `createdAt` on the dashboard (the batch route cannot carry one).
pub fn note_transport(status: &mut Status, transport: crate::config::Transport) {
    if transport == crate::config::Transport::Batch {
        status.warnings.push(
            "transport = batch: messages of sessions new to the server go by /sync/batch and get \
             the sync time as their createdAt on the dashboard (their order is kept); set \
             transport = per-record to keep every message's own time"
                .into(),
        );
    }
}

/// Renders the status for humans.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<16} {v}\n"));
    let now = crate::engine::now_ms();
    if let Some(state) = &status.health {
        line("state", state.headline(now));
    }
    if let Some(holder) = &status.lock_holder {
        line("lock", holder.clone());
    }
    line(
        "daemon",
        match (status.daemon_pid, status.uptime_secs) {
            (Some(pid), Some(up)) => format!("running (pid {pid}, up {})", human_duration(up)),
            _ => {
                "not running (start it with `opensyncd service install` or `opensyncd run`)".into()
            }
        },
    );
    line(
        "server",
        status.url.clone().unwrap_or_else(|| "(not set)".into()),
    );
    line(
        "api key",
        status.api_key.clone().unwrap_or_else(|| "(not set)".into()),
    );
    if let Some(service) = &status.service {
        line("service", service.summary());
    }
    if status.health.is_none() {
        line("sync", status.auth.clone());
    }
    if let Some(c) = &status.counters {
        line(
            "last push",
            c.last_success_ms
                .map_or("never (since start)".into(), |ms| {
                    format!("{} ago", ago(ms))
                }),
        );
        if let Some((at, err)) = &c.last_error {
            line("last error", format!("{} ago: {err}", ago(*at)));
        }
        line(
            "this run",
            format!(
                "{} requests, {} retries, {} sessions and {} messages written, {} rejected",
                c.requests, c.retries, c.sessions_sent, c.messages_sent, c.rejected
            ),
        );
    }
    for s in &status.sources {
        line(
            &s.source,
            format!(
                "{} files, {} sessions, {} messages synced; backlog: {} files ({}){}",
                s.files,
                s.sessions,
                s.messages,
                s.backlog_files,
                human_bytes(s.backlog_bytes),
                if s.excluded_files > 0 {
                    format!("; {} files excluded", s.excluded_files)
                } else {
                    String::new()
                }
            ),
        );
    }
    if !status.exclude.is_empty() {
        let files: usize = status.sources.iter().map(|s| s.excluded_files).sum();
        line(
            "excluded",
            format!(
                "{files} files never read, {} known sessions in excluded projects (exclude = {})",
                status.excluded_sessions,
                status.exclude.join(", ")
            ),
        );
    }
    if status.malformed_lines + status.skipped_long_lines > 0 {
        line(
            "skipped",
            format!(
                "{} malformed lines, {} over-long lines",
                status.malformed_lines, status.skipped_long_lines
            ),
        );
    }
    if status.deferred_writes > 0 {
        line(
            "waiting",
            format!(
                "{} update(s) waiting for the server's dedup window (sent within seconds)",
                status.deferred_writes
            ),
        );
    }
    line("quarantined", status.quarantined.to_string());
    for q in &status.recent_quarantine {
        line("", format!("{} {}: {}", q.kind, q.id, q.reason));
    }
    if status.quarantined > status.recent_quarantine.len() {
        line("", "… `opensyncd status --rejected` lists them all".into());
    }
    if let Some(w) = &status.watch_warning {
        line("watching", w.clone());
    }
    for w in &status.warnings {
        line("warning", w.clone());
    }
    out
}

/// Every refused record with its reason (`status --rejected`).
pub fn render_rejected(status: &Status) -> String {
    if status.rejected.is_empty() {
        return "The server refused no record.\n".into();
    }
    let mut out = String::new();
    for q in &status.rejected {
        out.push_str(&format!(
            "{} ago  {} {}\n    {}\n",
            ago(q.at_ms),
            q.kind,
            q.id,
            q.reason
        ));
    }
    out.push_str(
        "They are sent again when redaction or size caps change, or with \
         `opensyncd sync --retry-rejected`.\n",
    );
    out
}

/// A quarantine entry as shown: without the kept payload.
fn without_payload(q: &Quarantined) -> Quarantined {
    Quarantined {
        raw: None,
        ..q.clone()
    }
}

fn ago(ms: i64) -> String {
    let secs = ((crate::engine::now_ms() - ms) / 1000).max(0) as u64;
    human_duration(secs)
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
