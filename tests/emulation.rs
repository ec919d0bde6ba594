//! The server emulation itself, checked against `spec/opensync-api.md` with raw HTTP (not our
//! client), so the other tests can trust that it is as strict, and as quirky, as the server.

use serde_json::{Value, json};

use crate::support::Emulation;

const KEY_A: &str = "osk_emulationUserA000000000000000000";
const KEY_B: &str = "osk_emulationUserB000000000000000000";

struct Raw {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
}

impl Raw {
    fn new(emu: &Emulation) -> Raw {
        opensyncd::push::install_crypto_provider();
        Raw {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::new(),
            base: emu.url(),
        }
    }

    fn post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        self.rt.block_on(async {
            let resp = self
                .http
                .post(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {key}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }

    fn get(&self, auth: Option<&str>, path: &str) -> (u16, Value) {
        self.rt.block_on(async {
            let mut req = self.http.get(format!("{}{path}", self.base));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }
}

fn hour_ago_ms() -> i64 {
    opensyncd::engine::now_ms() - 3_600_000
}

#[test]
fn validation_refuses_null_wrong_types_and_extra_part_keys_with_500() {
    let emu = Emulation::with_key(KEY_A);
    let raw = Raw::new(&emu);
    let (status, body) = raw.post(
        KEY_A,
        "/sync/session",
        json!({"externalId": "s", "title": null}),
    );
    assert_eq!(status, 500);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("ArgumentValidationError")
    );
    let (status, _) = raw.post(
        KEY_A,
        "/sync/session",
        json!({"externalId": "s", "promptTokens": "12"}),
    );
    assert_eq!(status, 500);
    let (status, body) = raw.post(
        KEY_A,
        "/sync/message",
        json!({"sessionExternalId": "s", "externalId": "m", "role": "assistant",
               "parts": [{"type": "tool-call", "toolName": "Bash"}]}),
    );
    assert_eq!(status, 500);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("extra field `toolName`"),
        "{body}"
    );
    assert!(
        emu.all_messages().is_empty(),
        "a refused write changed state"
    );
}

#[test]
fn auth_answers_match_the_server() {
    let emu = Emulation::with_key(KEY_A);
    let raw = Raw::new(&emu);
    let (status, body) = raw.get(None, "/health");
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = raw.get(Some("Bearer not-a-key"), "/sync/sessions/list");
    assert_eq!(status, 401);
    assert_eq!(body["error"], "Invalid API key format");
    let (status, body) = raw.post("wrong", "/sync/session", json!({"externalId": "s"}));
    assert_eq!(status, 401);
    assert_eq!(body["error"], "Invalid or expired token");
    let (status, body) = raw.post(
        "osk_revokedOrNeverIssued0000000000000",
        "/sync/session",
        json!({"externalId": "s"}),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("Invalid API key"))
    );
    let (status, _) = raw.get(Some(&format!("Bearer {KEY_A}")), "/nope");
    assert_eq!(status, 404);
}

#[test]
fn message_ids_are_global_across_sessions_and_users() {
    let emu = Emulation::with_key(KEY_A);
    let user_b = emu.add_user(KEY_B);
    let raw = Raw::new(&emu);
    let msg = |session: &str, text: &str| {
        json!({"sessionExternalId": session, "externalId": "1", "role": "user",
               "textContent": text, "createdAt": hour_ago_ms()})
    };
    assert_eq!(
        raw.post(KEY_A, "/sync/message", msg("a-session", "A's")).0,
        200
    );
    assert_eq!(
        raw.post(KEY_B, "/sync/message", msg("b-session", "B's")).0,
        200
    );
    // B's write updated A's row, which stays in A's session; B's session has no message.
    let all = emu.all_messages();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].text_content.as_deref(), Some("B's"));
    assert!(emu.messages_of_session(user_b, "b-session").is_empty());
    assert_eq!(
        emu.messages_of_session(emu.default_user(), "a-session")
            .len(),
        1
    );
}

#[test]
fn dedup_windows_silently_drop_updates() {
    let emu = Emulation::with_key(KEY_A);
    let raw = Raw::new(&emu);
    let user = emu.default_user();
    // Session: a cost-only change within 10 s is skipped (and still answers ok).
    raw.post(
        KEY_A,
        "/sync/session",
        json!({"externalId": "s", "title": "t", "cost": 1.0}),
    );
    let (status, body) = raw.post(
        KEY_A,
        "/sync/session",
        json!({"externalId": "s", "title": "t", "cost": 2.0}),
    );
    assert_eq!((status, body["ok"].as_bool()), (200, Some(true)));
    assert_eq!(emu.session(user, "s").unwrap().cost, 1.0);
    // A token change goes through; zero tokens keep the stored value.
    raw.post(
        KEY_A,
        "/sync/session",
        json!({"externalId": "s", "title": "t", "promptTokens": 10, "completionTokens": 5}),
    );
    raw.post(
        KEY_A,
        "/sync/session",
        json!({"externalId": "s", "title": "t2", "promptTokens": 0}),
    );
    let s = emu.session(user, "s").unwrap();
    assert_eq!((s.prompt_tokens, s.completion_tokens), (10, 5));

    // Message: re-sent within 5 s of its own createdAt → ignored.
    let now = opensyncd::engine::now_ms();
    let m = |text: &str, at: i64| {
        json!({"sessionExternalId": "s", "externalId": "m", "role": "assistant",
               "textContent": text, "createdAt": at})
    };
    raw.post(KEY_A, "/sync/message", m("partial", now));
    raw.post(KEY_A, "/sync/message", m("final", now));
    assert_eq!(
        emu.messages_of_session(user, "s")[0]
            .text_content
            .as_deref(),
        Some("partial")
    );
    // An old message updates, but its createdAt never changes.
    raw.post(KEY_A, "/sync/message", {
        let mut v = m("old", hour_ago_ms());
        v["externalId"] = "m-old".into();
        v
    });
    let first_created = emu.messages_of_session(user, "s")[1].created_at;
    raw.post(KEY_A, "/sync/message", {
        let mut v = m("old, edited", hour_ago_ms() + 60_000);
        v["externalId"] = "m-old".into();
        v
    });
    let edited = &emu.messages_of_session(user, "s")[1];
    assert_eq!(edited.text_content.as_deref(), Some("old, edited"));
    assert_eq!(edited.created_at, first_created);
}

#[test]
fn batch_strips_parts_of_existing_messages_and_refuses_created_at_with_ok() {
    let emu = Emulation::with_key(KEY_A);
    emu.disable_windows();
    let raw = Raw::new(&emu);
    let user = emu.default_user();
    raw.post(
        KEY_A,
        "/sync/message",
        json!({"sessionExternalId": "s", "externalId": "m", "role": "assistant",
               "textContent": "hi", "createdAt": hour_ago_ms(),
               "parts": [{"type": "text", "content": "hi"}]}),
    );
    assert_eq!(emu.messages_of_session(user, "s")[0].parts.len(), 1);
    let (status, body) = raw.post(
        KEY_A,
        "/sync/batch",
        json!({"messages": [{"sessionExternalId": "s", "externalId": "m", "role": "assistant",
                             "textContent": "hi", "parts": [{"type": "text", "content": "hi"}]}]}),
    );
    assert_eq!((status, body["ok"].as_bool()), (200, Some(true)));
    assert!(
        emu.messages_of_session(user, "s")[0].parts.is_empty(),
        "batch re-insert of parts should be missing, as on the real server"
    );
    // createdAt in a batch: the whole array is refused, yet the answer is 200 ok.
    let (status, body) = raw.post(
        KEY_A,
        "/sync/batch",
        json!({"messages": [{"sessionExternalId": "s", "externalId": "m2", "role": "user",
                             "createdAt": 1}]}),
    );
    assert_eq!((status, body["ok"].as_bool()), (200, Some(true)));
    assert_eq!(body["messages"], 0);
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("Messages batch error:"),
        "{body}"
    );
    assert_eq!(emu.messages_of_session(user, "s").len(), 1);
}
