//! The control socket (`<state>/control.sock`, one JSON line each way): the protocol
//! (`Request`, `Reply`), the server side the daemon runs (accept, decode, hand each request to
//! the daemon's loop, write the reply) and the client side the CLI uses to reach a running
//! daemon.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::config::Paths;
use crate::selection::{Selection, SyncSummary};
use crate::status::Status;

/// A request over the control socket (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Current status.
    Status,
    /// Scan and push now; the reply comes when the selected work is done.
    Sync {
        /// Selection.
        selection: Selection,
    },
    /// A tool's hook fired: look now (reply at once).
    Hook {
        /// Event name.
        event: String,
        /// A path worth looking at first (e.g. Claude's `transcript_path`).
        path: Option<PathBuf>,
    },
    /// Reload config and credentials (after `login`).
    Reload,
}

/// A reply over the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Status.
    Status {
        /// The status.
        status: Box<Status>,
    },
    /// The sync finished.
    Synced {
        /// Summary.
        summary: SyncSummary,
    },
    /// Accepted.
    Ok,
    /// Failed.
    Error {
        /// Why.
        message: String,
    },
}

/// A decoded request and where its reply goes (server side).
pub type ControlMsg = (Request, oneshot::Sender<Reply>);

pub fn bind_control_socket(path: &Path) -> Result<tokio::net::UnixListener> {
    // A socket file left by a crashed daemon: we hold the lock, so nobody else is listening.
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

pub async fn accept_loop(listener: tokio::net::UnixListener, tx: mpsc::Sender<ControlMsg>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            let Ok(Some(line)) = lines.next_line().await else {
                return;
            };
            let reply = match serde_json::from_str::<Request>(&line) {
                Ok(request) => {
                    let (reply_tx, reply_rx) = oneshot::channel();
                    if tx.send((request, reply_tx)).await.is_err() {
                        return;
                    }
                    reply_rx.await.unwrap_or(Reply::Error {
                        message: "the daemon is stopping".into(),
                    })
                }
                Err(err) => Reply::Error {
                    message: format!("bad request: {err}"),
                },
            };
            let mut text = serde_json::to_string(&reply).unwrap_or_default();
            text.push('\n');
            let _ = write.write_all(text.as_bytes()).await;
        });
    }
}

/// Sends `request` to the running daemon. `Ok(None)` when no daemon is listening.
pub fn request(
    paths: &Paths,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Option<Reply>> {
    let path = paths.control_socket();
    let stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
    };
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout.or(Some(Duration::from_secs(5))))?;
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    (&stream).write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .with_context(|| format!("waiting for the daemon on {}", path.display()))?;
    if line.trim().is_empty() {
        return Err(anyhow!(
            "the daemon closed the connection without answering"
        ));
    }
    Ok(Some(
        serde_json::from_str(&line).context("reading the daemon's reply")?,
    ))
}

/// Asks a running daemon to reload; `Ok(false)` when none runs.
pub fn notify_reload(paths: &Paths) -> Result<bool> {
    Ok(request(paths, &Request::Reload, Some(Duration::from_secs(5)))?.is_some())
}
