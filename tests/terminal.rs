//! What a person at a terminal sees: interactive `login` asking again after a wrong URL or a
//! wrong key, and colour that follows `NO_COLOR` and `--color`. The terminal is a real pty
//! provided by `script(1)` (util-linux), driven expect-style: each answer is typed only after
//! its prompt has appeared. `script` needs no extra crate (expectrl/rexpect pull in nix and
//! a pty layer to build) and is on every Linux CI image.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::home::{TestHome, binary, wait_bounded, wait_until};
use crate::support::Emulation;

const KEY: &str = "osk_terminalTestKey0123456789abcdefgh";

/// A command running inside a pseudo-terminal, its output collected as it comes.
struct Terminal {
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    fn spawn(home: &TestHome, args: &[&str], extra_env: &[(&str, &str)]) -> Terminal {
        let line = std::iter::once(binary().display().to_string())
            .chain(args.iter().map(|a| format!("'{a}'")))
            .collect::<Vec<_>>()
            .join(" ");
        // Run `script` with the test home's environment (the same clean one `cmd` builds).
        let template = home.cmd(&[]);
        let mut cmd = Command::new("script");
        cmd.args(["-q", "-e", "-c", &line, "/dev/null"]).env_clear();
        for (k, v) in template.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .expect("script(1) from util-linux is needed for the terminal tests");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal { child, output }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` has appeared `count` times in the output.
    fn expect(&self, needle: &str, count: usize) {
        let ok = wait_until(Duration::from_secs(60), || {
            self.text().matches(needle).count() >= count
        });
        assert!(
            ok,
            "never saw {needle:?} ×{count}; output so far:\n{}",
            self.text()
        );
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\r").unwrap();
        stdin.flush().unwrap();
    }

    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let stdin = self.child.stdin.take();
        let out = wait_bounded(self.child, Duration::from_secs(60));
        drop(stdin);
        let text = String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned();
        (out.status, text)
    }
}

#[test]
fn interactive_login_asks_again_after_a_wrong_url_and_a_wrong_key() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    let web = crate::home::web_page_server(200);
    let mut term = Terminal::spawn(&home, &["login"], &[]);

    // 1: a plain web server: said in one line, then the URL is asked for again.
    term.expect("OpenSync URL", 1);
    term.type_line(&web);
    term.expect("API key", 1);
    term.type_line(KEY);
    term.expect("does not look like OpenSync", 1);
    // 2: the right URL; the key typed the first time is kept (it was never checked).
    term.expect("OpenSync URL", 2);
    term.type_line(&emu.url());
    let (status, text) = term.finish();
    assert_eq!(text.matches("API key (osk_").count(), 1, "{text}");
    assert!(status.success(), "{text}");
    assert!(text.contains("Logged in to"), "{text}");
    assert!(
        !text.contains("<html") && !text.contains("Welcome to nginx!</"),
        "{text}"
    );

    // A wrong key, then the right one.
    let home = TestHome::new();
    let mut term = Terminal::spawn(&home, &["login", "--url", &emu.url()], &[]);
    term.expect("API key", 1);
    term.type_line("osk_wrongwrongwrongwrongwrongwrong12");
    term.expect("refused the API key", 1);
    term.expect("API key (osk_", 2);
    term.type_line(KEY);
    let (status, text) = term.finish();
    assert!(status.success(), "{text}");
    assert!(text.contains("Logged in to"), "{text}");
    assert_eq!(
        std::fs::read_to_string(home.opensyncd_home().join("config/credentials"))
            .unwrap()
            .trim(),
        KEY
    );

    // Three wrong keys: it gives up with the reason and saves nothing.
    let home = TestHome::new();
    let mut term = Terminal::spawn(&home, &["login", "--url", &emu.url()], &[]);
    for attempt in 1..=3 {
        term.expect("API key (osk_", attempt);
        term.type_line("osk_wrongwrongwrongwrongwrongwrong12");
    }
    let (status, text) = term.finish();
    assert!(!status.success(), "{text}");
    assert_eq!(text.matches("refused the API key").count(), 3, "{text}");
    assert!(!home.opensyncd_home().join("config/credentials").exists());
}

#[test]
fn colour_follows_no_color_and_the_color_flag() {
    let home = TestHome::new();
    let project = home.claude_projects().join("-home-dev-project");
    std::fs::create_dir_all(&project).unwrap();
    // A dangling symlink makes `export` print one warning: a log line, coloured or not.
    std::os::unix::fs::symlink("/nonexistent.jsonl", project.join("gone.jsonl")).unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let (status, text) = Terminal::spawn(&home, args, env).finish();
        assert!(status.success(), "{text}");
        assert!(text.contains("dangling symlink"), "{text}");
        text.contains("\u{1b}[")
    };
    assert!(run(&["export"], &[]), "a terminal gets colour by default");
    assert!(
        !run(&["export"], &[("NO_COLOR", "1")]),
        "NO_COLOR is honoured"
    );
    assert!(!run(&["--color", "never", "export"], &[]));
    assert!(run(&["--color", "always", "export"], &[("NO_COLOR", "1")]));
}

/// indicatif's `{bytes}`: binary units, two decimals (`12.34 KiB`).
fn indicatif_bytes(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.2} KiB", n as f64 / 1024.0),
        n => format!("{:.2} MiB", n as f64 / 1048576.0),
    }
}

#[test]
fn sync_on_a_terminal_draws_a_byte_bar_with_rate_and_eta() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    home.login(&emu.url(), KEY);
    let project = home.claude_projects().join("-home-dev-project");
    std::fs::create_dir_all(&project).unwrap();
    let mut total = 0u64;
    for i in 0..6u32 {
        let sid = format!("7e4a0000-0000-4000-8000-{i:012}");
        let text = crate::daemon::Transcripts::claude_session(&sid, 6);
        total += text.len() as u64;
        std::fs::write(project.join(format!("{sid}.jsonl")), text).unwrap();
    }
    // 6 sessions × (1 create + 12 messages) requests at 100 ms each, 4 at a time: the sync
    // lasts at least 2 s, long enough for the bar to be drawn with a rate.
    emu.set_latency(Duration::from_millis(100));
    let (status, text) = Terminal::spawn(&home, &["sync"], &[]).finish();
    assert!(status.success(), "{text}");
    // The total is what the files hold (sizes summed here, formatted as indicatif does).
    let total = indicatif_bytes(total);
    assert!(
        text.contains(&format!("/{total} ")),
        "no byte total {total}:\n{text}"
    );
    assert!(text.contains("B/s, ETA "), "no rate and ETA:\n{text}");
    assert!(text.contains("/6 files)"), "{text}");
    assert!(text.contains("Synced 6 file(s)"), "{text}");
}
