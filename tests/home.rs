//! A test builder for process-level tests (after `just`'s): a temporary HOME with the tools'
//! directories, and the real `opensyncd` binary run inside it with a clean environment.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The real binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_opensyncd"))
}

/// A temporary home directory for one test.
pub struct TestHome {
    _dir: tempfile::TempDir,
    /// `$HOME`.
    pub home: PathBuf,
    env: Vec<(String, String)>,
}

impl TestHome {
    /// An empty home.
    pub fn new() -> TestHome {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("create home");
        TestHome {
            _dir: dir,
            home,
            env: Vec::new(),
        }
    }

    /// Adds an environment variable to every command (e.g. `CLAUDE_CONFIG_DIR`).
    pub fn with_env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> TestHome {
        self.env.push((
            key.to_string(),
            value.as_ref().to_string_lossy().into_owned(),
        ));
        self
    }

    /// `~/.opensyncd-test` (OPENSYNCD_HOME): opensyncd's own config and state.
    pub fn opensyncd_home(&self) -> PathBuf {
        self.home.join(".opensyncd-test")
    }

    /// `~/.claude/projects`.
    pub fn claude_projects(&self) -> PathBuf {
        self.home.join(".claude/projects")
    }

    /// `~/.codex`.
    pub fn codex_home(&self) -> PathBuf {
        self.home.join(".codex")
    }

    /// `~/.local/share/opencode`.
    pub fn opencode_data(&self) -> PathBuf {
        self.home.join(".local/share/opencode")
    }

    /// A command running the real binary in this home, with nothing of the caller's
    /// environment that could point it elsewhere.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("OPENSYNCD_HOME", self.opensyncd_home())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OPENSYNCD_LOG_LEVEL", "info")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs to completion (bounded), returning the output.
    pub fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.cmd(args), Duration::from_secs(120))
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "opensyncd {args:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `opensyncd status ARGS` and returns stdout. `status` exits with its state
    /// (0 ok, 3 degraded, 4 paused, 5 not logged in): any of those is a status shown; 1 or
    /// anything else is a failure.
    pub fn status(&self, args: &[&str]) -> String {
        let mut all = vec!["status"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            matches!(out.status.code(), Some(0 | 3 | 4 | 5)),
            "opensyncd {all:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Logs in non-interactively.
    pub fn login(&self, url: &str, key: &str) {
        let mut cmd = self.cmd(&["login", "--url", url, "--key-stdin"]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn login");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(key.as_bytes())
            .expect("write key");
        let out = wait_bounded(child, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "login failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the daemon; it is killed when the handle drops.
    pub fn spawn_daemon(&self, extra_env: &[(&str, &str)]) -> DaemonProcess {
        let mut cmd = self.cmd(&["run"]);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let log = self.home.join(format!("daemon-{}.log", std::process::id()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        cmd.stdout(Stdio::null()).stderr(log_file);
        let child = cmd.spawn().expect("spawn daemon");
        let daemon = DaemonProcess {
            child: Some(child),
            log,
        };
        daemon.wait_ready(self);
        daemon
    }
}

/// A running daemon.
pub struct DaemonProcess {
    child: Option<Child>,
    /// Its stderr log.
    pub log: PathBuf,
}

impl DaemonProcess {
    fn wait_ready(&self, home: &TestHome) {
        let socket = home.opensyncd_home().join("state/control.sock");
        // Ask the socket directly: `opensyncd status` would fall back to reading the ledger
        // itself (taking the lock) while the daemon is still starting.
        let ok = wait_until(Duration::from_secs(30), || daemon_answers(&socket));
        let _ = home;
        assert!(ok, "daemon did not become ready; log:\n{}", self.log_text());
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for exit (bounded); returns the exit status and how long it took.
    pub fn wait_exit(&mut self, within: Duration) -> (std::process::ExitStatus, Duration) {
        let start = Instant::now();
        let mut child = self.child.take().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return (status, start.elapsed());
            }
            if start.elapsed() > within {
                let _ = child.kill();
                panic!(
                    "daemon did not exit within {within:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// Whether the process is still alive (not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether a daemon answers a status request on its control socket.
pub fn daemon_answers(socket: &Path) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"{\"cmd\":\"status\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).is_ok() && line.contains("\"status\"")
}

/// The pids in a daemon log's "opensyncd started" lines, in order (a restart in place logs
/// the same pid again).
pub fn started_pids(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("opensyncd started"))
        .filter_map(|l| l.split("pid=").nth(1)?.split_whitespace().next())
        .collect()
}

/// Waits until `cond` holds, checking often, up to `within`.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::park_timeout(Duration::from_millis(25));
    }
}

fn run_bounded(mut cmd: Command, within: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    wait_bounded(child, within)
}

pub fn wait_bounded(mut child: Child, within: Duration) -> Output {
    // Drain pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = stdout.as_mut() {
            use std::io::Read;
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = stderr.as_mut() {
            use std::io::Read;
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("command did not finish within {within:?}");
        }
        std::thread::park_timeout(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file_type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A plain web server (not OpenSync) on a loopback port that answers every request with an
/// HTML page and `status`: what a wrong URL points at. Returns its base URL. The server thread
/// lives as long as the test process.
pub fn web_page_server(status: u16) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let body = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n\
                        <body>\n<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web \
                        server is successfully installed and working.</p>\n</body>\n</html>\n";
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Whatever\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}
