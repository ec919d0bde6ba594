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
use crate::flow::{Flow, FlowOptions};
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
    engine.flow = Flow::new(FlowOptions::with_max(cfg.concurrency));
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

/// Why a server did not accept a URL and key, in one line each (never the body of an answer).
#[derive(Debug, thiserror::Error)]
pub enum ServerProblem {
    /// Something answered, but not OpenSync (a web page, the Convex dashboard, a 404).
    #[error("{url} does not look like OpenSync: it answered {what}. {hint}")]
    WrongUrl {
        /// The URL.
        url: String,
        /// What came back, in one line.
        what: String,
        /// What to do.
        hint: String,
    },
    /// OpenSync answered and refused the key.
    #[error(
        "the server at {url} refused the API key ({message}); check it in the dashboard under Settings → API Key"
    )]
    KeyRefused {
        /// The URL.
        url: String,
        /// The server's message.
        message: String,
    },
    /// Nothing answered.
    #[error("cannot reach {url}: {detail}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// Anything else (a server error, say).
    #[error("{url}: {detail}")]
    Other {
        /// The URL.
        url: String,
        /// What happened.
        detail: String,
    },
}

/// What to do about a URL that is not OpenSync's API.
fn wrong_url_hint(url: &str) -> String {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host == "dashboard.convex.dev" || host.ends_with(".convex.dev") {
        "That is the Convex dashboard; the API is your deployment's \
         https://<name>.convex.site URL (Settings → URL & Deploy Key → HTTP Actions URL)."
            .into()
    } else {
        "Use your deployment's https://<name>.convex.site URL (the Convex dashboard shows it as \
         the HTTP Actions URL)."
            .into()
    }
}

/// Checks a key against the server with an authenticated request (`login`, `set url`).
pub fn verify_credentials(cfg: &Config, url: &str, key: &ApiKey) -> Result<(), ServerProblem> {
    use crate::push::{ErrorClass, PushError};
    let other = |detail: String| ServerProblem::Other {
        url: url.to_string(),
        detail,
    };
    let client = client_for(cfg, url, key).map_err(|e| other(format!("{e:#}")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| other(format!("starting the async runtime: {e}")))?;
    let Err(err) = rt.block_on(client.check_auth()) else {
        return Ok(());
    };
    let url = url.to_string();
    Err(match (&err, err.class()) {
        (PushError::Network { detail, .. }, _) => ServerProblem::Unreachable {
            url,
            detail: detail.clone(),
        },
        // Not JSON: a web server, a dashboard or a proxy answered, whatever the status says.
        (
            PushError::Status {
                status,
                message,
                json: false,
                ..
            },
            _,
        ) if *status < 500 => ServerProblem::WrongUrl {
            hint: wrong_url_hint(&url),
            what: format!("HTTP {status} with {message}"),
            url,
        },
        (PushError::Status { message, .. }, ErrorClass::AuthPaused) => ServerProblem::KeyRefused {
            url,
            message: message.clone(),
        },
        (
            PushError::Status {
                status, message, ..
            },
            ErrorClass::WrongUrl,
        ) => ServerProblem::WrongUrl {
            hint: wrong_url_hint(&url),
            what: format!("HTTP {status} with {message}"),
            url,
        },
        (PushError::BadResponse { detail, .. }, _) => ServerProblem::WrongUrl {
            hint: wrong_url_hint(&url),
            what: detail
                .strip_prefix("not OpenSync's JSON (")
                .and_then(|d| d.strip_suffix(')'))
                .unwrap_or(detail)
                .to_string(),
            url,
        },
        _ => other(err.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_convex_dashboard_gets_its_own_hint() {
        assert!(
            wrong_url_hint("https://dashboard.convex.dev/t/me/p/happy-cat-123")
                .contains("That is the Convex dashboard")
        );
        let plain = wrong_url_hint("https://example.com:8443/x");
        assert!(!plain.contains("dashboard;"), "{plain}");
        assert!(plain.contains(".convex.site"), "{plain}");
    }
}
