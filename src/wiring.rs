//! Builds the working parts from configuration and credentials — payload shaping (prices,
//! redaction, caps), the HTTP client, the engine — the same way for the daemon, the one-shot
//! commands and the CLI, so none of them reaches into another for its wiring.

use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{self, Config, Paths};
use crate::credentials::{self, ApiKey};
use crate::engine::Engine;
use crate::ledger::Ledger;
use crate::plan::Shaping;
use crate::push::{Client, ClientOptions};
use crate::redact::Redactor;

/// Payload shaping (pricing, redaction, caps) from the config.
pub fn build_engine_shaping(cfg: &Config) -> Result<Shaping> {
    let pricing = crate::prices::load_configured(cfg).map_err(|e| anyhow!("pricing_file: {e}"))?;
    let redactor = Redactor::new(cfg.redact, &cfg.redact_patterns)
        .map_err(|e| anyhow!("redact_patterns: {e}"))?;
    let shaping = Shaping {
        pricing,
        redactor,
        max_part_bytes: cfg.max_part_bytes,
        max_body_bytes: cfg.max_body_bytes,
    };
    Ok(shaping)
}

/// Everything the engine needs, built from config + credentials.
pub fn build_engine(
    cfg: &Config,
    ledger: Ledger,
    client: Option<Client>,
    stopping: watch::Receiver<bool>,
    clock: Clock,
) -> Result<Engine> {
    let shaping = build_engine_shaping(cfg)?;
    let client = client.map(|c| c.with_max_body(cfg.max_body_bytes));
    let mut engine = Engine::new(
        ledger,
        cfg.parse_options(),
        shaping,
        client,
        cfg.max_line_bytes,
        stopping,
        clock,
    );
    engine.batch = cfg.transport == config::Transport::Batch;
    Ok(engine)
}

/// Builds a client from config + the stored key; `Ok(None)` when not logged in.
pub fn build_client(cfg: &Config, paths: &Paths) -> Result<Option<Client>> {
    let Some((key, _)) = credentials::load(paths, &config::process_env).map_err(|e| anyhow!(e))?
    else {
        return Ok(None);
    };
    let Some(url) = cfg.url.as_deref() else {
        return Ok(None);
    };
    let url = config::normalize_url(url).map_err(|e| anyhow!(e))?;
    Ok(Some(client_for(cfg, &url, &key)?))
}

fn client_for(cfg: &Config, url: &str, key: &ApiKey) -> Result<Client> {
    Client::new(ClientOptions {
        url: url.to_string(),
        api_key: key.clone(),
        request_timeout: Duration::from_secs(cfg.request_timeout_secs),
        connect_timeout: Duration::from_secs(cfg.connect_timeout_secs),
    })
    .map_err(|e| anyhow!("creating the HTTP client: {e}"))
}

/// Checks a key against the server with an authenticated request (used by `login`).
pub fn verify_credentials(cfg: &Config, url: &str, key: &ApiKey) -> Result<()> {
    let client = client_for(cfg, url, key)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(client.check_auth())
        .map_err(|e| anyhow!("{url}: {e}"))
}
