//! What `status` reports, computed from the ledger, the files on disk and (when a daemon
//! runs) its live counters: per source, files and sessions known, the backlog not yet
//! acknowledged, quarantined records, unpriced models, and transcripts at risk of Claude Code's
//! 30-day cleanup.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::engine::Counters;
use crate::ledger::{Ledger, LedgerError, Quarantined};
use crate::model::SourceId;
use crate::sources::{self, Access, Roots};

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
        }
    }
}

/// Fills the ledger- and disk-derived parts of the status.
pub fn collect(
    ledger: &Ledger,
    roots: &Roots,
    sources_enabled: &[SourceId],
    now_ms: i64,
) -> Result<Status, LedgerError> {
    let mut status = Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Status::default()
    };
    let mut files: HashMap<String, crate::ledger::FileRecord> = HashMap::new();
    for item in ledger.files() {
        let (key, rec) = item?;
        status.malformed_lines += rec.malformed_lines;
        status.skipped_long_lines += rec.skipped_long_lines;
        files.insert(key, rec);
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
            if unit.path.file_name().is_some_and(|n| n.to_str().is_none()) {
                odd_names.push(unit.path.clone());
            }
            s.files += 1;
            let rec = files.get(&unit.ledger_key());
            match unit.access {
                Access::Lines => {
                    let Ok(meta) = std::fs::metadata(&unit.path) else {
                        continue;
                    };
                    let offset = rec.map_or(0, |r| r.checkpoint.offset);
                    let pending = meta.len().saturating_sub(offset);
                    if pending > 0 || meta.len() < offset {
                        s.backlog_files += 1;
                        s.backlog_bytes += pending;
                        let age_days = meta
                            .modified()
                            .ok()
                            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                            .map(|d| (now_ms - d.as_millis() as i64) / 86_400_000)
                            .unwrap_or(0);
                        if *source == SourceId::ClaudeCode
                            && age_days >= CLAUDE_CLEANUP_DAYS - CLEANUP_WARN_DAYS
                        {
                            s.at_risk_files += 1;
                        }
                    }
                }
                Access::Snapshot => {
                    if rec.is_none() {
                        s.backlog_files += 1;
                    }
                }
            }
        }
        per_source.insert(*source, s);
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
    line("sync", status.auth.clone());
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

fn human_bytes(b: u64) -> String {
    match b {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b if b < 1024 * 1024 * 1024 => format!("{:.1} MiB", b as f64 / 1048576.0),
        b => format!("{:.2} GiB", b as f64 / 1073741824.0),
    }
}
