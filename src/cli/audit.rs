//! `opensyncd audit`: runs `crate::audit` and prints what it found and repaired, one line a
//! human can act on per difference (or the report as JSON), and fails while differences
//! remain so scripts can rely on the exit status.

use anyhow::{Result, anyhow, bail};

use super::AuditArgs;
use crate::audit::{self, Difference, Fix, Options, Progress, Report, Selection};
use crate::config::{Config, Paths};

/// How many ids a list line shows before "and N more".
const LISTED_IDS: usize = 10;

pub(super) fn cmd_audit(paths: &Paths, cfg: &Config, args: AuditArgs) -> Result<()> {
    let client = crate::wiring::build_client(cfg, paths)?
        .ok_or_else(|| anyhow!("not logged in: run `opensyncd login` first"))?
        .with_max_body(cfg.max_body_bytes);
    let selection = match &args.session {
        Some(id) => Selection::Session(id.clone()),
        None => Selection::Recent(args.limit.map_or(audit::DEFAULT_LIMIT, |n| n as usize)),
    };
    let opts = Options {
        selection,
        repair: args.repair,
    };
    let mut progress = |p: Progress| match p {
        Progress::Waiting { wait, reason } => eprintln!(
            "waiting {:.1}s for the server's dedup window ({reason})",
            wait.as_secs_f64()
        ),
        Progress::Sending {
            round,
            sessions,
            messages,
        } => eprintln!(
            "repair round {round}: sending {sessions} session(s) and {messages} message(s)"
        ),
    };
    let report = audit::audit(cfg, &client, &opts, &mut progress)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    let outstanding = report.outstanding();
    if outstanding.is_empty() {
        return Ok(());
    }
    let repairable = outstanding.iter().filter(|d| d.fix.repairable()).count();
    if report.repair.is_some() {
        bail!(
            "{} difference(s) remain after the repair ({repairable} that a re-send should fix)",
            outstanding.len()
        );
    }
    let again = match &args.session {
        Some(id) => format!("opensyncd audit --session {id} --repair"),
        None => "opensyncd audit --repair".to_string(),
    };
    bail!(
        "{} difference(s) between the server and export; {repairable} can be repaired \
         (`{again}`)",
        outstanding.len()
    );
}

/// The human report.
fn render(report: &Report) -> String {
    let mut out = String::new();
    let differing: std::collections::BTreeSet<&str> = report
        .differences
        .iter()
        .map(|d| d.session.as_str())
        .collect();
    out.push_str(&format!(
        "Audited {} against export: {} compared, {} equal",
        report.selection, report.compared, report.equal
    ));
    if !report.too_large.is_empty() {
        out.push_str(&format!(
            ", {} too large for the server to return",
            report.too_large.len()
        ));
    }
    out.push_str(&format!(
        "; {} difference(s) in {} session(s).\n",
        report.differences.len(),
        differing.len()
    ));
    for d in &report.differences {
        out.push_str(&line(d));
    }
    for t in &report.too_large {
        out.push_str(&format!(
            "{}: too large for the server to return (its read limits: {}); its session fields \
             were compared, its messages could not be\n",
            t.session, t.detail
        ));
    }
    for id in &report.not_found {
        out.push_str(&format!(
            "{id}: listed, then not found on the server (deleted meanwhile?); not compared\n"
        ));
    }
    if !report.not_local.is_empty() {
        out.push_str(&format!(
            "not in this machine's export, so not compared (another machine, another tool's \
             plugin, deleted logs or a disabled source): {}\n",
            ids(&report.not_local)
        ));
    }
    if report.missing_on_server > 0 {
        out.push_str(&format!(
            "{} local session(s) are not on the server at all\n",
            report.missing_on_server
        ));
    }
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    if let Some(r) = &report.repair {
        let repairable = report
            .differences
            .iter()
            .filter(|d| d.fix.repairable())
            .count();
        out.push_str(&format!(
            "Repair: {} round(s), sent {} session(s) and {} message(s), waited {:.1}s for the \
             server's dedup windows; {} of the {repairable} repairable difference(s) are now \
             equal.\n",
            r.rounds,
            r.sessions_sent,
            r.messages_sent,
            r.waited_ms as f64 / 1000.0,
            r.fixed
        ));
        for refused in &r.refused {
            out.push_str(&format!("refused by the server: {refused}\n"));
        }
        for deferred in &r.deferred {
            out.push_str(&format!("not sent yet: {deferred}\n"));
        }
        if r.remaining.is_empty() {
            out.push_str("The audited sessions now equal export.\n");
        } else {
            out.push_str(&format!("Still different ({}):\n", r.remaining.len()));
            for d in &r.remaining {
                out.push_str("  ");
                out.push_str(&line(d));
            }
        }
    }
    out
}

/// One difference on one line: where, what each side has, what repair does.
fn line(d: &Difference) -> String {
    let place = match &d.message {
        Some(m) => format!("{} message {m}", d.session),
        None => d.session.clone(),
    };
    let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "nothing".into());
    let fix = match &d.fix {
        Fix::ResendSession => "repair re-sends the session".to_string(),
        Fix::ResendMessage => "repair re-sends the message".to_string(),
        Fix::SendSession => "repair sends it with its messages".to_string(),
        Fix::Impossible { reason } => format!("cannot be repaired: {reason}"),
    };
    format!(
        "{place}: {}: the server has {}, export has {} — {fix}\n",
        d.field,
        side(&d.server),
        side(&d.export)
    )
}

fn ids(list: &[String]) -> String {
    let shown: Vec<&str> = list.iter().take(LISTED_IDS).map(String::as_str).collect();
    let more = list.len().saturating_sub(LISTED_IDS);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
