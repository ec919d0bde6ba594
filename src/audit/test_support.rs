//! Real-shaped records shared by the audit's unit tests: a stored session and export's
//! payload for it that compare equal, and a message with its stored row.

use super::compare::role_name;
use crate::model::{MessagePayload, Part, Role, SessionPayload};
use crate::push::{ServerMessage, ServerSession};

pub(super) fn server_session() -> ServerSession {
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

pub(super) fn payload() -> SessionPayload {
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

pub(super) fn message(id: &str, text: &str, parts: Vec<Part>) -> MessagePayload {
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

pub(super) fn stored(m: &MessagePayload) -> ServerMessage {
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
