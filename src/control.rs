//! The control socket (`<state>/control.sock`, JSON lines): the protocol (`Request`,
//! `Reply`), the server side the daemon runs (accept, decode, hand each request to the daemon's
//! loop, write the reply) and the client side the CLI uses to reach a running daemon.
//!
//! One request line, one reply line — except a `sync` that asks for progress, which gets
//! `progress` lines while it works and its `synced` line last. A client that did not ask for
//! progress never gets a line it does not know.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::config::Paths;
use crate::pending::DryRun;
use crate::progress::SyncProgress;
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
        /// Send `progress` replies while working (before the final `synced`).
        #[serde(default)]
        progress: bool,
    },
    /// What a sync of this selection would send, without sending (`sync --dry-run`).
    DryRun {
        /// Selection.
        selection: Selection,
    },
    /// The hold file changed (`opensyncd pause` / `resume`): obey it. The reply comes once
    /// no request is on the wire any more.
    Hold,
    /// `opensyncd logout`: forget the key and stop pushing now. The reply comes once no
    /// request is on the wire any more: nothing is sent with the old key after it.
    Logout,
    /// Stop (drain, exit) as on SIGTERM (`logout --purge`).
    Stop,
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
    /// Where a sync stands (only to a `sync` that asked for progress).
    Progress {
        /// The progress.
        progress: SyncProgress,
    },
    /// What a sync would send.
    DryRun {
        /// The findings.
        report: DryRun,
    },
    /// Accepted.
    Ok,
    /// Failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Where a request's replies go (server side): progress lines, if the client asked for them,
/// then exactly one final reply.
pub struct Replier {
    done: oneshot::Sender<Reply>,
    progress: Option<mpsc::UnboundedSender<Reply>>,
}

impl Replier {
    /// A replier and the receivers its replies arrive on (tests, and the accept loop).
    pub fn new(
        progress: bool,
    ) -> (
        Replier,
        oneshot::Receiver<Reply>,
        mpsc::UnboundedReceiver<Reply>,
    ) {
        let (done, done_rx) = oneshot::channel();
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Replier {
                done,
                progress: progress.then_some(tx),
            },
            done_rx,
            rx,
        )
    }

    /// Sends the final reply.
    pub fn send(self, reply: Reply) -> Result<(), Reply> {
        self.done.send(reply)
    }

    /// Sends a progress line, if the client asked for them.
    pub fn progress(&self, progress: SyncProgress) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(Reply::Progress { progress });
        }
    }

    /// Whether the client asked for progress lines.
    pub fn wants_progress(&self) -> bool {
        self.progress.is_some()
    }
}

/// A decoded request and where its replies go (server side).
pub type ControlMsg = (Request, Replier);

pub fn bind_control_socket(path: &Path) -> Result<tokio::net::UnixListener> {
    // A socket file left by a crashed daemon: we hold the lock, so nobody else is listening.
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// Writes one reply as a JSON line.
async fn write_reply(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> bool {
    let mut text = serde_json::to_string(reply).unwrap_or_default();
    text.push('\n');
    write.write_all(text.as_bytes()).await.is_ok()
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
            let request = match serde_json::from_str::<Request>(&line) {
                Ok(request) => request,
                Err(err) => {
                    let reply = Reply::Error {
                        message: format!("bad request: {err}"),
                    };
                    write_reply(&mut write, &reply).await;
                    return;
                }
            };
            let wants_progress = matches!(request, Request::Sync { progress: true, .. });
            let (replier, mut done, mut progress) = Replier::new(wants_progress);
            if tx.send((request, replier)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    biased;
                    Some(line) = progress.recv() => {
                        if !write_reply(&mut write, &line).await {
                            return;
                        }
                    }
                    reply = &mut done => {
                        let reply = reply.unwrap_or(Reply::Error {
                            message: "the daemon is stopping".into(),
                        });
                        write_reply(&mut write, &reply).await;
                        return;
                    }
                }
            }
        });
    }
}

/// Sends `request` to the running daemon. `Ok(None)` when no daemon is listening.
pub fn request(
    paths: &Paths,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Option<Reply>> {
    request_with_progress(paths, request, timeout, &mut |_| {})
}

/// [`request`], handing each `progress` line to `on_progress` until the final reply comes.
/// `timeout` bounds the whole exchange; running out of it is an error whose chain holds an
/// [`std::io::ErrorKind::TimedOut`] or `WouldBlock` I/O error.
pub fn request_with_progress(
    paths: &Paths,
    request: &Request,
    timeout: Option<Duration>,
    on_progress: &mut dyn FnMut(SyncProgress),
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
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    stream.set_write_timeout(timeout.or(Some(Duration::from_secs(5))))?;
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    (&stream).write_all(text.as_bytes())?;
    let mut reader = BufReader::new(&stream);
    loop {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // A zero read timeout means "none": wait at least a millisecond.
            stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        }
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .with_context(|| format!("waiting for the daemon on {}", path.display()))?;
        if line.trim().is_empty() {
            return Err(anyhow!(
                "the daemon closed the connection without answering"
            ));
        }
        match serde_json::from_str(&line).context("reading the daemon's reply")? {
            Reply::Progress { progress } => on_progress(progress),
            reply => return Ok(Some(reply)),
        }
    }
}

/// Whether an error from [`request`] is its timeout running out.
pub fn is_timeout(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            )
        })
    })
}

/// Asks a running daemon to reload; `Ok(false)` when none runs.
pub fn notify_reload(paths: &Paths) -> Result<bool> {
    Ok(request(paths, &Request::Reload, Some(Duration::from_secs(5)))?.is_some())
}
