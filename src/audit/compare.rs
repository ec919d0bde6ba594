//! The field-by-field comparison of a session on the server with export's, under the
//! server's write rules (`spec/opensync-api.md` §3), because they decide what a re-send can
//! change:
//!
//! - a token total of 0 (or absent) never overwrites, and a string field export leaves out
//!   never clears the server's value: such differences are reported as unrepairable;
//! - cost is compared within 1e-6 (a float that went through JSON and Convex);
//! - `createdAt` and a message's `role` are fixed when the row is inserted: a wrong one is
//!   reported, never "repaired";
//! - there is no delete route: a message only the server holds, or a row stored twice, stays.
//!
//! Each difference is described for a human: values quoted and shortened, timestamps in ISO.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Difference, Fetched, Fix, Target};
use crate::model::{MessagePayload, Part, Role, SessionPayload};
use crate::push::{ServerMessage, ServerSession};

/// Cost differences below this are float noise, not differences.
pub const COST_TOLERANCE: f64 = 1e-6;
/// How much of a text or JSON value a difference shows.
const PREVIEW_CHARS: usize = 60;

pub(super) fn missing_session(id: &str, messages: usize) -> Difference {
    Difference {
        session: id.to_string(),
        message: None,
        field: "session".into(),
        server: None,
        export: Some(format!("a session with {messages} message(s)")),
        fix: Fix::SendSession,
    }
}

/// Why a field export leaves out cannot be repaired.
const KEEPS_ITS_VALUE: &str = "export has no value, and the server keeps a value once set";

/// `resend` when export has a value to send, else why the server keeps its own.
fn resend_or(resend: Fix, export_has_value: bool, reason: &str) -> Fix {
    if export_has_value {
        resend
    } else {
        impossible(reason)
    }
}

fn impossible(reason: &str) -> Fix {
    Fix::Impossible {
        reason: reason.to_string(),
    }
}

/// Every difference of one target (nothing for the messages of a session the server could
/// not return: that is reported as too large, not as a difference).
pub(super) fn compare_target(t: &Target) -> Vec<Difference> {
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
            let fix = resend_or(Fix::ResendSession, w.is_some(), KEEPS_ITS_VALUE);
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
            let fix = resend_or(
                Fix::ResendSession,
                expected > 0,
                "export's total is 0, and the server never overwrites a total with 0",
            );
            push(field, Some(number(h)), Some(expected.to_string()), fix);
        }
    }
    let expected_cost = want.cost.unwrap_or(0.0);
    if (expected_cost - have.cost).abs() > COST_TOLERANCE
        || expected_cost.is_nan() != have.cost.is_nan()
    {
        let fix = resend_or(
            Fix::ResendSession,
            want.cost.is_some(),
            "export's cost is 0, which is never sent, so the server keeps its value",
        );
        push(
            "cost",
            Some(number(have.cost)),
            Some(number(expected_cost)),
            fix,
        );
    }
    if want.duration_ms.map(|d| d as f64) != have.duration_ms {
        let fix = resend_or(
            Fix::ResendSession,
            want.duration_ms.is_some(),
            "export has no duration, and the server keeps a value once set",
        );
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
                let fix = resend_or(Fix::ResendMessage, wv.is_some(), KEEPS_ITS_VALUE);
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
                let fix = resend_or(Fix::ResendMessage, wv.is_some(), KEEPS_ITS_VALUE);
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

pub(super) fn role_name(role: Role) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{message, payload, server_session, stored};
    use super::*;
    use serde_json::json;

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
    fn previews_are_short_and_say_the_full_length() {
        let long = "x".repeat(100);
        assert_eq!(quote(&long), format!("\"{}\"… (100 chars)", "x".repeat(60)));
        assert_eq!(quote("é\n"), "\"é\\n\"");
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_780_000_000_000), "2026-05-28T20:26:40.000Z");
        assert_eq!(iso(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }
}
