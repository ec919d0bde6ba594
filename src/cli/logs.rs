//! `logs`: the daemon's log, from wherever it is kept — the user journal when the systemd unit
//! is installed, the LaunchAgent's log file on macOS, the daemon's own log file otherwise.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::LogsArgs;
use super::hooks::service_target;
use crate::config::Paths;
use crate::service::{self, Manager};

/// Where the daemon's log is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LogLocation {
    /// The user journal (`journalctl --user -u opensyncd.service`).
    Journal,
    /// A file.
    File(PathBuf),
}

/// The systemd unit installed: the journal. The LaunchAgent installed: its log file. Neither:
/// the file a daemon started by hand writes.
pub(super) fn log_location(paths: &Paths, target: &service::Target) -> LogLocation {
    match (target.manager, service::installed_unit(target)) {
        (Manager::Systemd, Some(_)) => LogLocation::Journal,
        (Manager::Launchd, Some(_)) => LogLocation::File(target.log_file.clone()),
        (_, None) => LogLocation::File(paths.own_log_file()),
    }
}

pub(super) fn cmd_logs(paths: &Paths, args: LogsArgs) -> Result<()> {
    let target = service_target()?;
    match log_location(paths, &target) {
        LogLocation::Journal => {
            let lines = args.lines.to_string();
            let mut cmd = std::process::Command::new("journalctl");
            cmd.args([
                "--user",
                "-u",
                service::SYSTEMD_UNIT,
                "-n",
                &lines,
                "--no-pager",
            ]);
            if args.follow {
                cmd.arg("-f");
            }
            let status = cmd.status().context(
                "running journalctl (the systemd unit is installed, so its log is in the journal)",
            )?;
            if !status.success() {
                bail!(
                    "`journalctl --user -u {}` failed ({status})",
                    service::SYSTEMD_UNIT
                );
            }
            Ok(())
        }
        LogLocation::File(path) => show_file(&path, args.lines, args.follow),
    }
}

fn show_file(path: &Path, lines: usize, follow: bool) -> Result<()> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no log yet: {} does not exist (a daemon started with `opensyncd run` writes it; \
             the service's log is in the journal or the LaunchAgent's file)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    out.write_all(last_lines(&text, lines))?;
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut pos = text.len() as u64;
    let mut inode = file.metadata()?.ino();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(meta) = std::fs::metadata(path) else {
            continue; // between a rotation's rename and the new file
        };
        if meta.ino() != inode || meta.len() < pos {
            // Rotated or truncated: the new file from its start.
            match std::fs::File::open(path) {
                Ok(f) => {
                    file = f;
                    inode = meta.ino();
                    pos = 0;
                }
                Err(_) => continue,
            }
        }
        if meta.len() > pos {
            file.seek(SeekFrom::Start(pos))?;
            let mut new = Vec::new();
            file.read_to_end(&mut new)?;
            pos += new.len() as u64;
            out.write_all(&new)?;
            out.flush()?;
        }
    }
}

/// The last `n` lines of `text` (all of it when it has fewer).
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
        .map_or(0, |(i, _)| i + 1);
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_counts_from_the_end() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc\n", 5), b"a\nb\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"", 3), b"");
        assert_eq!(last_lines(b"a\n", 0), b"");
    }
}
