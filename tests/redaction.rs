//! Redaction against a corpus of made-up, real-shaped secrets (every one must be caught, in
//! message text, tool arguments and tool results) and a corpus of look-alikes that must pass
//! through unchanged. None of these secrets is real.

use opensyncd::model::{MessagePayload, Part, Role};
use opensyncd::redact::{Redactor, sanitize_message};
use serde_json::json;

/// (kind, the secret, a realistic context with `{}` where the secret goes).
const SECRETS: &[(&str, &str, &str)] = &[
    (
        "aws-access-key-id",
        "AKIAIOSFODNN7EXAMPLQ",
        "aws configure set aws_access_key_id {}",
    ),
    (
        "aws-access-key-id",
        "ASIAJ7Q3EXAMPLE4ZZ2Q",
        "export AWS_ACCESS_KEY_ID={}",
    ),
    (
        "aws-secret-access-key",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = {}",
    ),
    (
        "aws-secret-access-key",
        "Zb8n2Kq9+Xw4Lr7Tp1Vy6Hs3Jd5Fg0Mc2Na8Qe4R",
        "\"AWS_SECRET_ACCESS_KEY\": \"{}\"",
    ),
    (
        "github-token",
        "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R",
        "git remote set-url origin https://x-access-token@github.com # token {}",
    ),
    (
        "github-token",
        "gho_Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8",
        "GH_TOKEN {} in use",
    ),
    (
        "github-token",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR",
        "fine-grained: {}",
    ),
    (
        "gitlab-token",
        "glpat-xY7zW3vU9tS1rQ5pO2nM",
        "curl --header 'PRIVATE-TOKEN: {}' https://gitlab.example/api/v4/projects",
    ),
    (
        "openai-key",
        "sk-proj-4fGh7JkL9mNp2QrS5tUv8WxY1zAb3CdE6fGh9JkL",
        "OPENAI_API_KEY={}",
    ),
    (
        "openai-key",
        "sk-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90",
        "client = OpenAI(api_key=\"{}\")",
    ),
    (
        "anthropic-key",
        "sk-ant-api03-Xy9_Wv8-Ut7Sr6Qp5On4Ml3Kj2Ih1Gf0Ed9Cb8Aa7",
        "ANTHROPIC_API_KEY: {}",
    ),
    (
        "opensync-key",
        "osk_Qw3rTy8uIo2pAs5dFg7hJk1lZx4cVb6n",
        "opensyncd login --key {}",
    ),
    (
        "slack-token",
        "xoxb-2048-4096-AbCdEfGhIjKlMnOpQrStUvWx",
        "SLACK_BOT={} ./notify.sh",
    ),
    (
        "slack-token",
        "xoxp-1234567890-0987654321-ZyXwVuTsRqPo",
        "token={}&channel=C123",
    ),
    (
        "jwt",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "Cookie: session={}",
    ),
    (
        "private-key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----",
        "cat ~/.ssh/id_rsa\n{}\n",
    ),
    (
        "private-key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----",
        "{}",
    ),
    (
        "url-password",
        "hunter2-Pa55",
        "DATABASE_URL=postgres://app:{}@db.internal:5432/prod",
    ),
    (
        "url-password",
        "s3cr3t!x",
        "git clone https://alice:{}@gitlab.example/team/repo.git",
    ),
    (
        "authorization-header",
        "dGVzdHVzZXI6dGVzdHBhc3N3b3Jk",
        "curl -H 'Authorization: Basic {}' https://api.example",
    ),
    (
        "authorization-header",
        "a8f5f167f44f4964e6c998dee827110c",
        "Authorization: token {}",
    ),
    (
        "bearer-token",
        "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA",
        "curl -H \"Authorization: Bearer {}\" https://api.example/v1",
    ),
    ("env-secret", "Tr0ub4dor&3-horse", "DB_PASSWORD={}"),
    ("env-secret", "a1b2c3d4e5f6g7h8", "CLIENT_SECRET=\"{}\""),
    ("env-secret", "p4ssw0rd-qwerty", "SMTP_PASSWORD: {}"),
    (
        "env-secret",
        "9f8e7d6c5b4a3210ffee",
        "STRIPE_WEBHOOK_SECRET={}",
    ),
    (
        "stripe-key",
        "sk_live_51HxYzAbCdEfGhIjKlMnOpQr",
        "Stripe.api_key = '{}'",
    ),
    (
        "google-api-key",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
        "https://maps.googleapis.com/maps/api/js?key={}",
    ),
];

/// Text that looks a little like secrets and must survive unchanged.
const LOOKALIKES: &[&str] = &[
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "session 019e1625-789d-76c0-80ab-3724b5ddb799 started",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    "I'll ask the sk team and the ghost_ protocol owners",
    "task_complete, msg_01XyZ9abcdEFGHijklMNOP, ses_4f3a2b1c0d9e, prt_0a1b2c3d4e5f",
    "integrity sha512-Lh5eMz3bNf5GdrNR4Yo2XJXlLgmXlBXNmxUcD1rmPl5g1hmV5QSlRDGWQzL6xZBfC/rE2LmFt4HCsPrOPIW1Fw==",
    "deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
    "see https://github.com/rust-lang/rust/issues/12345 and https://example.com/a?b=c",
    "The Authorization header carries the key; set it before calling the API.",
    "PASSWORD_MIN_LENGTH=8",
    "const token = getToken();",
    "a password: it must be at least 12 characters",
    "Bearer tokens are sent in headers",
    "eyJ is how base64 JSON starts",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host",
];

fn message(text: &str, args: serde_json::Value, result: serde_json::Value) -> MessagePayload {
    MessagePayload {
        session_external_id: "s".into(),
        external_id: "m".into(),
        role: Role::Assistant,
        text_content: Some(text.to_string()),
        model: None,
        prompt_tokens: None,
        completion_tokens: None,
        duration_ms: None,
        source: "claude-code".into(),
        parts: vec![
            Part::text(text),
            Part::tool_call("Bash", args),
            Part::tool_result(result),
        ],
        created_at: None,
    }
}

#[test]
fn every_secret_in_the_corpus_is_caught_everywhere() {
    let redactor = Redactor::new(true, &[]).unwrap();
    let mut missed = Vec::new();
    for (kind, secret, context) in SECRETS {
        let text = context.replace("{}", secret);
        let mut m = message(
            &text,
            json!({"command": text, "env": {"nested": [text.clone()]}}),
            json!({"stdout": text, "stderr": ""}),
        );
        sanitize_message(&mut m, &redactor, 256 * 1024);
        let sent = serde_json::to_string(&m).unwrap();
        // The distinctive part of the secret (its tail) must be gone from the whole payload.
        let tail: String = secret
            .chars()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if sent.contains(&tail) {
            missed.push(format!("{kind}: {text}"));
        }
        assert!(sent.contains("[REDACTED:"), "{kind}: no marker in {sent}");
    }
    println!(
        "secrets caught: {}/{}",
        SECRETS.len() - missed.len(),
        SECRETS.len()
    );
    assert!(
        missed.is_empty(),
        "missed {} of {}:\n{}",
        missed.len(),
        SECRETS.len(),
        missed.join("\n")
    );
}

#[test]
fn look_alikes_survive_unchanged() {
    let redactor = Redactor::new(true, &[]).unwrap();
    let mut changed = Vec::new();
    for text in LOOKALIKES {
        if redactor.redact_str(text) != *text {
            changed.push(format!("{text}  =>  {}", redactor.redact_str(text)));
        }
    }
    println!("false positives: {}/{}", changed.len(), LOOKALIKES.len());
    assert!(
        changed.is_empty(),
        "false positives:\n{}",
        changed.join("\n")
    );
}

#[test]
fn user_patterns_and_the_off_switch_work() {
    let redactor = Redactor::new(true, &[r"ACME-\d{6}".to_string()]).unwrap();
    assert_eq!(
        redactor.redact_str("ticket ACME-123456 done"),
        "ticket [REDACTED:custom-1] done"
    );
    let off = Redactor::new(false, &[]).unwrap();
    let text = "OPENAI_API_KEY=sk-proj-4fGh7JkL9mNp2QrS5tUv8WxY1zAb3CdE6fGh9JkL";
    assert_eq!(off.redact_str(text), text);
}

#[test]
fn oversized_content_is_capped_with_a_marker_and_shaping_is_deterministic() {
    let redactor = Redactor::new(true, &[]).unwrap();
    let huge = "x".repeat(3 * 1024 * 1024);
    let build = || {
        let mut m = message(
            &huge,
            json!({"$schema": "http://json-schema.org", "q": 1}),
            json!({"stdout": huge}),
        );
        sanitize_message(&mut m, &redactor, 256 * 1024);
        m
    };
    let m = build();
    assert!(m.text_content.as_ref().unwrap().len() <= 256 * 1024);
    assert!(
        m.text_content
            .as_ref()
            .unwrap()
            .contains("truncated by opensyncd")
    );
    assert!(
        m.parts[1].content["args"].is_string(),
        "a `$` key must be stringified"
    );
    assert!(serde_json::to_vec(&m).unwrap().len() < 2 * 1024 * 1024);
    assert_eq!(
        serde_json::to_string(&m).unwrap(),
        serde_json::to_string(&build()).unwrap()
    );
}

#[test]
fn too_many_parts_are_folded_into_a_marker() {
    let redactor = Redactor::disabled();
    let mut m = message("t", json!({}), json!({}));
    m.parts = (0..9000).map(|i| Part::text(format!("p{i}"))).collect();
    sanitize_message(&mut m, &redactor, 256 * 1024);
    assert_eq!(m.parts.len(), opensyncd::redact::MAX_PARTS);
    assert!(
        m.parts
            .last()
            .unwrap()
            .content
            .as_str()
            .unwrap()
            .contains("more parts omitted")
    );
}
