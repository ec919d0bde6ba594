//! `synctest`: one test session and message, with ids fixed per machine, sent and confirmed
//! through the server's listing.

use anyhow::{Result, anyhow};

use crate::engine::now_ms;
use crate::model::SourceId;
use crate::push::Client;

/// What `synctest` created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynctestReport {
    /// The test session's external id.
    pub session_id: String,
    /// The test message's external id.
    pub message_id: String,
    /// How its visibility was confirmed.
    pub visible: String,
}

/// Creates (or updates) a test session with one message and confirms the server lists it.
/// The ids are fixed per machine, so running it again updates the same rows.
pub fn synctest(client: &Client) -> Result<SynctestReport> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let session_id = format!("opensyncd-synctest-{host}");
    let message_id = format!("{session_id}:message-1");
    let now = now_ms();
    let text = "opensyncd synctest: if you can read this, opensyncd can sync to this dashboard. \
                Safe to delete.";
    let session = crate::model::SessionPayload {
        external_id: session_id.clone(),
        title: Some("opensyncd synctest".into()),
        source: SourceId::OpenCode.as_str().into(),
        created_at: Some(now),
        ..Default::default()
    };
    let message = crate::model::MessagePayload {
        session_external_id: session_id.clone(),
        external_id: message_id.clone(),
        role: crate::model::Role::Assistant,
        text_content: Some(text.into()),
        model: None,
        prompt_tokens: None,
        completion_tokens: None,
        duration_ms: None,
        source: SourceId::OpenCode.as_str().into(),
        parts: vec![crate::model::Part::text(text)],
        created_at: Some(now),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        client
            .upsert_session(&session)
            .await
            .map_err(|e| anyhow!("creating the session: {e}"))?;
        client
            .upsert_message(&message)
            .await
            .map_err(|e| anyhow!("creating the message: {e}"))?;
        let listed = client
            .list_sessions()
            .await
            .map_err(|e| anyhow!("listing sessions: {e}"))?;
        if !listed.contains(&session_id) {
            return Err(anyhow!(
                "the server acknowledged the session but /sync/sessions/list does not show it"
            ));
        }
        Ok(SynctestReport {
            session_id: session_id.clone(),
            message_id: message_id.clone(),
            visible: "The session is listed by the server (/sync/sessions/list); open your \
                      dashboard to see it."
                .into(),
        })
    })
}
