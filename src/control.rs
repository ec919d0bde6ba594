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
use std::time::{Duration, Instant};

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

pub async fn accept_loop(
    listener: tokio::net::UnixListener,
    tx: mpsc::Sender<ControlMsg>,
    restarting_marker: PathBuf,
) {
    let restarting_marker = std::sync::Arc::new(restarting_marker);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tx = tx.clone();
        let restarting_marker = restarting_marker.clone();
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
                        let reply = match reply {
                            Ok(reply) => reply,
                            // Unanswered by an image about to be replaced: closing without a
                            // reply makes the client ask the new one (see the marker).
                            Err(_) if restarting_marker.exists() => return,
                            Err(_) => Reply::Error {
                                message: "the daemon is stopping".into(),
                            },
                        };
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

/// How long a request without a timeout of its own waits for a daemon restarting in place.
const RESTART_PATIENCE: Duration = Duration::from_secs(30);
/// How often the socket is tried again meanwhile.
const RESTART_POLL: Duration = Duration::from_millis(100);

/// [`request`], handing each `progress` line to `on_progress` until the final reply comes.
/// `timeout` bounds the whole exchange; running out of it is an error whose chain holds an
/// [`std::io::ErrorKind::TimedOut`] or `WouldBlock` I/O error (or, while the daemon restarts
/// in place, an error that says so).
///
/// A daemon restarting in place (same pid, a fresh image) stops listening for up to a second
/// or so, and drops the connections it had not answered. When the restart marker names a live
/// process, such a gap is waited out and the request sent again (every request is safe to
/// repeat: the old image did not act on one it did not answer, or acted idempotently), within
/// `timeout`, or for 30 s from the first sign of the restart.
pub fn request_with_progress(
    paths: &Paths,
    request: &Request,
    timeout: Option<Duration>,
    on_progress: &mut dyn FnMut(SyncProgress),
) -> Result<Option<Reply>> {
    let start = Instant::now();
    // When a restart was first seen: without a timeout of its own, a request (a long `sync`)
    // waits for the restart from then on, not from when it was sent.
    let mut restart_seen: Option<Instant> = None;
    loop {
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        let outcome = exchange(paths, request, left, on_progress)?;
        let restarting = match &outcome {
            Exchange::Answered(_) => None,
            Exchange::NoDaemon | Exchange::Dropped(_) => restarting_daemon(paths),
        };
        match (outcome, restarting) {
            (Exchange::Answered(reply), _) => return Ok(Some(reply)),
            (_, Some(pid)) => {
                let seen = *restart_seen.get_or_insert_with(Instant::now);
                let give_up = match timeout {
                    Some(timeout) => start + timeout,
                    None => seen + RESTART_PATIENCE,
                };
                if Instant::now() + RESTART_POLL >= give_up {
                    return Err(anyhow!(
                        "the daemon (pid {pid}) is restarting in place and did not answer within {:.0?}",
                        give_up.saturating_duration_since(seen)
                    ));
                }
                std::thread::sleep(RESTART_POLL);
            }
            (Exchange::NoDaemon, None) => return Ok(None),
            (Exchange::Dropped(err), None) => return Err(err),
        }
    }
}

/// How one try at the socket went.
enum Exchange {
    Answered(Reply),
    /// Nothing listens on the socket (or there is no socket).
    NoDaemon,
    /// The connection broke, or closed, before the final reply.
    Dropped(anyhow::Error),
}

fn exchange(
    paths: &Paths,
    request: &Request,
    timeout: Option<Duration>,
    on_progress: &mut dyn FnMut(SyncProgress),
) -> Result<Exchange> {
    use std::io::ErrorKind;
    let path = paths.control_socket();
    let stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(Exchange::NoDaemon);
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
    };
    let broken = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        )
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    // What is left of a request's time can be nothing (a wait for a restart that overslept
    // its deadline).
    stream.set_write_timeout(socket_timeout(timeout.unwrap_or(Duration::from_secs(5))))?;
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    match (&stream).write_all(text.as_bytes()) {
        Ok(()) => {}
        Err(e) if broken(&e) => {
            return Ok(Exchange::Dropped(
                anyhow!(e).context("sending to the daemon"),
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("sending to {}", path.display())),
    }
    let mut reader = BufReader::new(&stream);
    loop {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            stream.set_read_timeout(socket_timeout(left))?;
        }
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(_) => {}
            Err(e) if broken(&e) => {
                return Ok(Exchange::Dropped(
                    anyhow!(e).context(format!("waiting for the daemon on {}", path.display())),
                ));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("waiting for the daemon on {}", path.display()));
            }
        }
        if line.trim().is_empty() {
            return Ok(Exchange::Dropped(anyhow!(
                "the daemon closed the connection without answering"
            )));
        }
        match serde_json::from_str(&line).context("reading the daemon's reply")? {
            Reply::Progress { progress } => on_progress(progress),
            reply => return Ok(Exchange::Answered(reply)),
        }
    }
}

/// A socket timeout for what is left of a request's time, at least a millisecond: a zero
/// read timeout means "wait forever" and a zero write timeout is refused, while running out
/// of time must stay a timeout.
fn socket_timeout(left: Duration) -> Option<Duration> {
    Some(left.max(Duration::from_millis(1)))
}

/// The pid in the restart marker, if the marker is there and its process still runs.
fn restarting_daemon(paths: &Paths) -> Option<u32> {
    let text = std::fs::read_to_string(paths.restarting_marker()).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    process_exists(pid).then_some(pid)
}

/// Whether process `pid` still exists, where that can be told (Linux's `/proc`); elsewhere it
/// is assumed to. For the pids daemons leave in their marker files (this one, the lock's
/// waiting marker).
pub fn process_exists(pid: u32) -> bool {
    !cfg!(target_os = "linux") || Path::new(&format!("/proc/{pid}")).exists()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn paths_in(dir: &Path) -> Paths {
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir).unwrap();
        Paths {
            config_dir: dir.join("config"),
            state_dir,
            log_file: None,
        }
    }

    #[test]
    fn no_socket_and_no_marker_is_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths_in(dir.path());
        assert!(matches!(request(&paths, &Request::Status, None), Ok(None)));
    }

    /// A marker left by a daemon that died (no such process) is not waited on.
    #[test]
    fn a_marker_naming_a_dead_process_is_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths_in(dir.path());
        std::fs::write(paths.restarting_marker(), "4000000000\n").unwrap();
        assert_eq!(restarting_daemon(&paths), None);
        assert!(matches!(request(&paths, &Request::Status, None), Ok(None)));
    }

    /// A try made with nothing left of the request's time (after a wait for a restart) times
    /// out like any other, rather than failing on the zero timeout the socket refuses.
    #[test]
    fn a_try_with_no_time_left_is_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths_in(dir.path());
        // Accepts connections (the kernel's backlog) and never answers.
        let _listener = std::os::unix::net::UnixListener::bind(paths.control_socket()).unwrap();
        match exchange(&paths, &Request::Status, Some(Duration::ZERO), &mut |_| {}) {
            Err(err) => assert!(is_timeout(&err), "{err:#}"),
            Ok(_) => panic!("a daemon that never answers answered"),
        }
    }

    /// A restart that does not finish within the request's time is reported as such, not as
    /// "no daemon".
    #[test]
    fn a_restart_that_outlasts_the_timeout_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths_in(dir.path());
        let me = std::process::id();
        std::fs::write(paths.restarting_marker(), format!("{me}\n")).unwrap();
        assert_eq!(restarting_daemon(&paths), Some(me));
        let err = request(&paths, &Request::Status, Some(Duration::from_millis(250)))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("the daemon (pid {me}) is restarting in place")),
            "{err}"
        );
    }
}
