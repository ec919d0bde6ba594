//! The shapes the read routes (`/api/sessions`, `/api/sessions/get`) answer with, read
//! leniently: optional fields may be absent, numbers are Convex float64s.

use serde::Deserialize;

use crate::model::Part;

/// A session as the read routes (`/api/sessions`, `/api/sessions/get`) return it. Numbers are
/// Convex float64s, so they are read as `f64` (a fractional value written by another client
/// must not make the whole answer unreadable).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerSession {
    /// The server's document id (what `/api/sessions/get?id=` takes).
    pub id: String,
    /// The client's session id.
    pub external_id: String,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Project path.
    #[serde(default)]
    pub project_path: Option<String>,
    /// Project name.
    #[serde(default)]
    pub project_name: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Prompt tokens (0 when never set).
    #[serde(default)]
    pub prompt_tokens: f64,
    /// Completion tokens (0 when never set).
    #[serde(default)]
    pub completion_tokens: f64,
    /// Prompt + completion, recomputed by the server.
    #[serde(default)]
    pub total_tokens: f64,
    /// USD (0 when never set).
    #[serde(default)]
    pub cost: f64,
    /// Duration.
    #[serde(default)]
    pub duration_ms: Option<f64>,
    /// Shared publicly.
    #[serde(default)]
    pub is_public: bool,
    /// Messages inserted (never decremented, never recomputed).
    #[serde(default)]
    pub message_count: f64,
    /// Epoch ms, fixed at insert.
    pub created_at: f64,
    /// Epoch ms (server clock) of the last write to the session or one of its messages.
    pub updated_at: f64,
}

/// A message as `/api/sessions/get` returns it.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerMessage {
    /// The server's document id.
    pub id: String,
    /// The client's message id.
    pub external_id: String,
    /// `user`, `assistant`, `system`, `tool` or `unknown`.
    pub role: String,
    /// Text.
    #[serde(default)]
    pub text_content: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: Option<f64>,
    /// Completion tokens.
    #[serde(default)]
    pub completion_tokens: Option<f64>,
    /// Duration.
    #[serde(default)]
    pub duration_ms: Option<f64>,
    /// Epoch ms, fixed at insert.
    pub created_at: f64,
    /// Parts in order.
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// The answer of `/api/sessions/get`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct SessionDetail {
    /// The session.
    pub session: ServerSession,
    /// Its messages, ordered by `createdAt` (ties in insertion order).
    pub messages: Vec<ServerMessage>,
}

#[derive(Deserialize)]
pub(super) struct SessionListing {
    pub(super) sessions: Vec<ServerSession>,
}
