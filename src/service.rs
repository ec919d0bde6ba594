//! The background service: renders the systemd user unit or the macOS LaunchAgent for the
//! installed binary, and installs, removes or inspects it through the platform's service
//! manager (`systemctl --user`, `launchctl`).
//!
//! Every action is first built as a list of [`Step`]s (files to write or remove, commands to
//! run), so `--dry-run` prints exactly what a real run does, and the real run is that same
//! list executed in order. The service manager is only ever reached as an external program;
//! tests put a stub `systemctl`/`launchctl` on `PATH`.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The unit template shipped in the repository (packages install it as is).
pub const SYSTEMD_UNIT_TEMPLATE: &str = include_str!("../systemd/opensyncd.service");
/// The LaunchAgent template (`@BINARY@`, `@LOG_FILE@` are filled in at install).
pub const LAUNCHD_PLIST_TEMPLATE: &str = include_str!("../launchd/dev.opensyncd.opensyncd.plist");
/// The systemd unit name.
pub const SYSTEMD_UNIT: &str = "opensyncd.service";
/// The LaunchAgent label.
pub const LAUNCHD_LABEL: &str = "dev.opensyncd.opensyncd";

/// Which service manager runs the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// systemd user instance (Linux).
    Systemd,
    /// launchd per-user agent (macOS).
    Launchd,
}

impl Manager {
    fn name(self) -> &'static str {
        match self {
            Manager::Systemd => "systemd user unit",
            Manager::Launchd => "LaunchAgent",
        }
    }
}

/// Variables the service keeps from the shell `service install` ran in, when set there: where
/// the tools keep their logs and where opensyncd keeps its own files. A service manager starts
/// the daemon with its own environment, which would otherwise lose them. (Never the API key:
/// a unit file is no place for a secret.)
pub const KEPT_VARIABLES: &[&str] = &[
    "OPENSYNCD_HOME",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "XDG_DATA_HOME",
    "CLAUDE_CONFIG_DIR",
    "CODEX_HOME",
    "OPENCODE_DB",
    "PI_CODING_AGENT_DIR",
];

/// Where and what to install, resolved from the environment.
#[derive(Debug, Clone)]
pub struct Target {
    /// The service manager.
    pub manager: Manager,
    /// The file `install` writes.
    pub unit_path: PathBuf,
    /// The binary the service runs.
    pub binary: PathBuf,
    /// The LaunchAgent's log file.
    pub log_file: PathBuf,
    /// The user id (launchd domain `gui/<uid>`).
    pub uid: u32,
    /// [`KEPT_VARIABLES`] that are set, with their values, in that order.
    pub environment: Vec<(String, String)>,
}

impl Target {
    /// Resolves the target for this machine. `OPENSYNCD_SERVICE_MANAGER` (`systemd` or
    /// `launchd`) overrides the platform default, so either can be rendered anywhere.
    pub fn detect(env: &dyn Fn(&str) -> Option<String>, binary: PathBuf) -> Result<Target> {
        let manager = match env("OPENSYNCD_SERVICE_MANAGER").as_deref() {
            Some("systemd") => Manager::Systemd,
            Some("launchd") => Manager::Launchd,
            Some(other) => {
                bail!("OPENSYNCD_SERVICE_MANAGER={other:?} is not valid; use systemd or launchd")
            }
            None if cfg!(target_os = "macos") => Manager::Launchd,
            None => Manager::Systemd,
        };
        let home = crate::config::home_dir(env);
        let unit_path = match manager {
            Manager::Systemd => env("XDG_CONFIG_HOME")
                .filter(|v| Path::new(v).is_absolute())
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".config"))
                .join("systemd/user")
                .join(SYSTEMD_UNIT),
            Manager::Launchd => home
                .join("Library/LaunchAgents")
                .join(format!("{LAUNCHD_LABEL}.plist")),
        };
        // The owner of the home directory is the user the agent belongs to; this avoids an
        // unsafe `getuid` call for the one number launchd needs.
        let uid = std::fs::metadata(&home).map(|m| m.uid()).unwrap_or(0);
        let environment = KEPT_VARIABLES
            .iter()
            .filter_map(|name| {
                let value = env(name).filter(|v| !v.is_empty())?;
                Some((name.to_string(), value))
            })
            .collect();
        Ok(Target {
            manager,
            unit_path,
            binary,
            log_file: home.join("Library/Logs/opensyncd.log"),
            uid,
            environment,
        })
    }

    /// The unit or plist text for this target.
    pub fn render(&self) -> Result<String> {
        let binary = self.binary.to_str().with_context(|| {
            format!(
                "the binary path {} is not UTF-8; install opensyncd somewhere else",
                self.binary.display()
            )
        })?;
        match self.manager {
            Manager::Systemd => render_systemd_unit_with_env(binary, &self.environment),
            Manager::Launchd => {
                let log = self
                    .log_file
                    .to_str()
                    .context("the log path is not UTF-8")?;
                render_launchd_plist_with_env(binary, log, &self.environment)
            }
        }
    }

    fn domain(&self) -> String {
        format!("gui/{}", self.uid)
    }

    fn service_target(&self) -> String {
        format!("gui/{}/{LAUNCHD_LABEL}", self.uid)
    }
}

/// The unit with `ExecStart` pointing at `binary` (quoted when it contains spaces).
pub fn render_systemd_unit(binary: &str) -> String {
    let exec = if binary.contains(char::is_whitespace) || binary.contains('"') {
        format!("\"{}\"", binary.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        binary.to_string()
    };
    SYSTEMD_UNIT_TEMPLATE.replace(
        "ExecStart=/usr/bin/opensyncd run",
        &format!("ExecStart={exec} run"),
    )
}

/// The unit with `ExecStart` pointing at `binary` and one `Environment=` line per variable
/// (quoted and escaped for systemd: `\\`, `\"` and `%%`).
pub fn render_systemd_unit_with_env(
    binary: &str,
    environment: &[(String, String)],
) -> Result<String> {
    let mut unit = render_systemd_unit(binary);
    if environment.is_empty() {
        return Ok(unit);
    }
    let mut lines =
        String::from("# Kept from the environment `opensyncd service install` ran in.\n");
    for (name, value) in environment {
        if value.contains(['\n', '\r']) {
            bail!("{name} contains a line break; a unit file cannot keep it");
        }
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('%', "%%");
        let _ = writeln!(lines, "Environment=\"{name}={escaped}\"");
    }
    let anchor = "ExecReload=";
    let at = unit.find(anchor).unwrap_or(unit.len());
    unit.insert_str(at, &lines);
    Ok(unit)
}

/// The plist with the binary and log file filled in (XML-escaped).
pub fn render_launchd_plist(binary: &str, log_file: &str) -> String {
    LAUNCHD_PLIST_TEMPLATE
        .replace("@BINARY@", &xml_escape(binary))
        .replace("@LOG_FILE@", &xml_escape(log_file))
}

/// [`render_launchd_plist`] with an `EnvironmentVariables` dictionary for the variables.
pub fn render_launchd_plist_with_env(
    binary: &str,
    log_file: &str,
    environment: &[(String, String)],
) -> Result<String> {
    let mut plist = render_launchd_plist(binary, log_file);
    if environment.is_empty() {
        return Ok(plist);
    }
    let mut dict = String::from(
        "\t<!-- Kept from the environment `opensyncd service install` ran in. -->\n\
         \t<key>EnvironmentVariables</key>\n\t<dict>\n",
    );
    for (name, value) in environment {
        let _ = write!(
            dict,
            "\t\t<key>{}</key>\n\t\t<string>{}</string>\n",
            xml_escape(name),
            xml_escape(value)
        );
    }
    dict.push_str("\t</dict>\n");
    let anchor = "\t<key>RunAtLoad</key>";
    let at = plist.find(anchor).unwrap_or(plist.len());
    plist.insert_str(at, &dict);
    Ok(plist)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One thing install or uninstall does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the directory (and its parents).
    CreateDir(PathBuf),
    /// Write the file (mode 0644).
    Write {
        /// Where.
        path: PathBuf,
        /// What.
        contents: String,
    },
    /// Remove the file if it exists.
    Remove(PathBuf),
    /// Remove the directory if it is empty (what install created).
    RemoveDirIfEmpty(PathBuf),
    /// Run a command.
    Run {
        /// The program and its arguments.
        argv: Vec<String>,
        /// A failure is expected in some states (e.g. stopping what is not running).
        may_fail: bool,
    },
}

fn run(argv: &[&str], may_fail: bool) -> Step {
    Step::Run {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        may_fail,
    }
}

/// The steps of `service install`.
pub fn install_steps(target: &Target) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    if let Some(dir) = target.unit_path.parent()
        && !dir.is_dir()
    {
        steps.push(Step::CreateDir(dir.to_path_buf()));
    }
    match target.manager {
        Manager::Systemd => {
            steps.push(Step::Write {
                path: target.unit_path.clone(),
                contents: target.render()?,
            });
            steps.push(run(&["systemctl", "--user", "daemon-reload"], false));
            steps.push(run(&["systemctl", "--user", "enable", SYSTEMD_UNIT], false));
            // `restart` starts it when stopped and picks up a new binary when running.
            steps.push(run(
                &["systemctl", "--user", "restart", SYSTEMD_UNIT],
                false,
            ));
        }
        Manager::Launchd => {
            if let Some(dir) = target.log_file.parent()
                && !dir.is_dir()
            {
                steps.push(Step::CreateDir(dir.to_path_buf()));
            }
            steps.push(Step::Write {
                path: target.unit_path.clone(),
                contents: target.render()?,
            });
            // Unload an older copy first; fails harmlessly when none is loaded.
            steps.push(run(
                &["launchctl", "bootout", &target.service_target()],
                true,
            ));
            steps.push(run(
                &["launchctl", "enable", &target.service_target()],
                false,
            ));
            let plist = target.unit_path.to_string_lossy().into_owned();
            steps.push(run(
                &["launchctl", "bootstrap", &target.domain(), &plist],
                false,
            ));
        }
    }
    Ok(steps)
}

/// The steps of `service uninstall`: the reverse of install.
pub fn uninstall_steps(target: &Target) -> Vec<Step> {
    let mut steps = Vec::new();
    match target.manager {
        Manager::Systemd => {
            steps.push(run(
                &["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT],
                true,
            ));
            steps.push(Step::Remove(target.unit_path.clone()));
            steps.push(run(&["systemctl", "--user", "daemon-reload"], false));
            steps.push(run(
                &["systemctl", "--user", "reset-failed", SYSTEMD_UNIT],
                true,
            ));
            // Install may have created ~/.config/systemd/user; leave no empty trace.
            if let Some(user_dir) = target.unit_path.parent() {
                steps.push(Step::RemoveDirIfEmpty(user_dir.to_path_buf()));
                if let Some(systemd_dir) = user_dir.parent() {
                    steps.push(Step::RemoveDirIfEmpty(systemd_dir.to_path_buf()));
                }
            }
        }
        Manager::Launchd => {
            steps.push(run(
                &["launchctl", "bootout", &target.service_target()],
                true,
            ));
            steps.push(Step::Remove(target.unit_path.clone()));
        }
    }
    steps
}

/// Describes a step the way `--dry-run` prints it (files in full).
pub fn describe(step: &Step) -> String {
    match step {
        Step::CreateDir(dir) => format!("create directory {}\n", dir.display()),
        Step::Write { path, contents } => {
            let mut out = format!("write {}:\n", path.display());
            for line in contents.lines() {
                let _ = writeln!(out, "    {line}");
            }
            out
        }
        Step::Remove(path) => format!("remove {}\n", path.display()),
        Step::RemoveDirIfEmpty(dir) => format!("remove directory {} if empty\n", dir.display()),
        Step::Run { argv, may_fail } => format!(
            "run: {}{}\n",
            argv.join(" "),
            if *may_fail {
                "   (a failure here is fine)"
            } else {
                ""
            }
        ),
    }
}

/// Checks that the service manager can be reached before anything is written, so that an
/// install never stops half-way (a unit file written but never enabled). `Err` says what is
/// missing and what to do.
pub fn check_manager(target: &Target) -> Result<()> {
    if target.manager != Manager::Systemd {
        return Ok(());
    }
    if let Some(problem) = systemd_user_manager_problem() {
        bail!(
            "no systemd user manager is reachable ({problem}); nothing was changed. On a \
             machine reached over SSH, run `loginctl enable-linger $USER` and log in again; in \
             a container or WSL without systemd, run `opensyncd run` under your own supervisor \
             (its log: `opensyncd logs`)"
        );
    }
    Ok(())
}

/// Why `systemctl --user` cannot talk to a user manager, or `None` when it can.
pub fn systemd_user_manager_problem() -> Option<String> {
    match Command::new("systemctl")
        .args(["--user", "show-environment"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stderr);
            let first = text.lines().next().unwrap_or("").trim();
            Some(if first.is_empty() {
                format!("`systemctl --user` failed: {}", o.status)
            } else {
                format!("`systemctl --user`: {first}")
            })
        }
        Err(e) => Some(format!("`systemctl` could not be run: {e}")),
    }
}

/// The unit or plist file of an installed service, if any (the user's own first, then the
/// packaged ones).
pub fn installed_unit(target: &Target) -> Option<PathBuf> {
    match target.manager {
        Manager::Systemd => {
            let packaged = [
                "/etc/systemd/user/opensyncd.service",
                "/usr/lib/systemd/user/opensyncd.service",
            ];
            std::iter::once(target.unit_path.clone())
                .chain(packaged.iter().map(PathBuf::from))
                .find(|p| p.is_file())
        }
        Manager::Launchd => Some(target.unit_path.clone()).filter(|p| p.is_file()),
    }
}

/// Runs the steps in order, stopping at the first failure that matters.
pub fn execute(steps: &[Step], out: &mut dyn FnMut(&str)) -> Result<()> {
    for step in steps {
        match step {
            Step::CreateDir(dir) => std::fs::create_dir_all(dir)
                .with_context(|| format!("creating {}", dir.display()))?,
            Step::Write { path, contents } => {
                write_file(path, contents)?;
                out(&format!("wrote {}", path.display()));
            }
            Step::Remove(path) => match std::fs::remove_file(path) {
                Ok(()) => out(&format!("removed {}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            },
            Step::RemoveDirIfEmpty(dir) => {
                // Fails when not empty or absent; both mean "leave it".
                let _ = std::fs::remove_dir(dir);
            }
            Step::Run { argv, may_fail } => {
                let result = Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(Stdio::null())
                    .output();
                let shown = argv.join(" ");
                match result {
                    Ok(o) if o.status.success() => out(&format!("ran {shown}")),
                    Ok(_) | Err(_) if *may_fail => {}
                    Ok(o) => bail!(
                        "`{shown}` failed ({}): {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    Err(e) => bail!("could not run `{shown}`: {e}"),
                }
            }
        }
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp-opensyncd");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// What `service status` (and `status`/`verify`) report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ServiceStatus {
    /// "systemd user unit" or "LaunchAgent".
    pub manager: String,
    /// The unit/plist file found, if any.
    pub unit_file: Option<PathBuf>,
    /// The binary the installed unit runs, if it could be read.
    pub runs_binary: Option<String>,
    /// enabled / disabled / ... as the manager says; None when it could not be asked.
    pub enabled: Option<String>,
    /// active / inactive / failed / running ...; None when it could not be asked.
    pub active: Option<String>,
    /// Why the service manager could not be asked (no systemd user manager, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
}

impl ServiceStatus {
    /// One line for `status` and `verify`.
    pub fn summary(&self) -> String {
        if let Some(problem) = &self.unreachable {
            return match &self.unit_file {
                Some(path) => format!(
                    "{} {} (state unknown: {problem})",
                    self.manager,
                    path.display()
                ),
                None => format!("{} not checked: {problem}", self.manager),
            };
        }
        match &self.unit_file {
            None => format!("no {} installed: `opensyncd service install`", self.manager),
            Some(path) => format!(
                "{} {} ({}, {})",
                self.manager,
                path.display(),
                self.enabled.as_deref().unwrap_or("enabled: unknown"),
                self.active.as_deref().unwrap_or("state unknown")
            ),
        }
    }

    /// Installed and running.
    pub fn is_running(&self) -> bool {
        self.unit_file.is_some()
            && matches!(
                self.active.as_deref(),
                Some("active" | "running" | "activating")
            )
    }
}

/// Asks the service manager about the service (never fails: unknowns stay `None`).
pub fn status(target: &Target) -> ServiceStatus {
    let query = |argv: &[&str]| -> Option<(bool, String)> {
        let out = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    match target.manager {
        Manager::Systemd => {
            let unit_file = installed_unit(target);
            let runs_binary = unit_file.as_ref().and_then(|p| exec_start_binary(p));
            if let Some(problem) = systemd_user_manager_problem() {
                return ServiceStatus {
                    manager: Manager::Systemd.name().into(),
                    unit_file,
                    runs_binary,
                    enabled: None,
                    active: None,
                    unreachable: Some(problem),
                };
            }
            let first_line = |s: String| s.lines().next().unwrap_or("").trim().to_string();
            let enabled = query(&["systemctl", "--user", "is-enabled", SYSTEMD_UNIT])
                .map(|(_, s)| first_line(s))
                .filter(|s| !s.is_empty());
            let active = query(&["systemctl", "--user", "is-active", SYSTEMD_UNIT])
                .map(|(_, s)| first_line(s))
                .filter(|s| !s.is_empty());
            ServiceStatus {
                manager: Manager::Systemd.name().into(),
                unit_file,
                runs_binary,
                enabled,
                active,
                unreachable: None,
            }
        }
        Manager::Launchd => {
            let unit_file = Some(target.unit_path.clone()).filter(|p| p.is_file());
            let printed = query(&["launchctl", "print", &target.service_target()]);
            let (enabled, active) = match printed {
                None => (None, None),
                Some((false, _)) => (Some("not loaded".into()), Some("not running".into())),
                Some((true, text)) => {
                    let state = text
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("state = "))
                        .unwrap_or("loaded")
                        .to_string();
                    (Some("loaded".into()), Some(state))
                }
            };
            ServiceStatus {
                manager: Manager::Launchd.name().into(),
                runs_binary: unit_file
                    .as_ref()
                    .map(|_| target.binary.display().to_string()),
                unit_file,
                enabled,
                active,
                unreachable: None,
            }
        }
    }
}

fn exec_start_binary(unit: &Path) -> Option<String> {
    let text = std::fs::read_to_string(unit).ok()?;
    let exec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))?
        .trim();
    Some(match exec.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or("").to_string(),
        None => exec.split_whitespace().next().unwrap_or("").to_string(),
    })
}

/// A hint worth printing after a systemd install: without lingering, user services stop when
/// the user's last session ends (e.g. logging out of an SSH box).
pub fn linger_hint(target: &Target, user: Option<&str>) -> Option<String> {
    if target.manager != Manager::Systemd {
        return None;
    }
    let user = user.unwrap_or("$USER");
    let lingering = Command::new("loginctl")
        .args(["show-user", user, "--property=Linger", "--value"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "yes");
    match lingering {
        Some(true) => None,
        _ => Some(format!(
            "The service runs while you are logged in. To keep it running after you log out \
             (a server reached over SSH, say): loginctl enable-linger {user}"
        )),
    }
}

/// A warning when the binary looks like a build-tree or temporary path, which would break
/// the service after `cargo clean` or a reboot.
pub fn binary_warning(binary: &Path) -> Option<String> {
    let s = binary.to_string_lossy();
    let fragile = s.contains("/target/debug/")
        || s.contains("/target/release/")
        || s.starts_with("/tmp/")
        || s.contains("/.cargo/registry/");
    fragile.then(|| {
        format!(
            "the service will run {s}, which looks like a build or temporary path; \
             consider `cargo install --path .` (or a package) and installing from there"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_exec_start_is_the_binary_quoted_when_needed() {
        let unit = render_systemd_unit("/opt/my tools/opensyncd");
        assert!(unit.contains("ExecStart=\"/opt/my tools/opensyncd\" run\n"));
        assert_eq!(unit.matches("ExecStart=").count(), 1);
        let plain = render_systemd_unit("/home/u/.cargo/bin/opensyncd");
        assert!(plain.contains("ExecStart=/home/u/.cargo/bin/opensyncd run\n"));
    }

    #[test]
    fn kept_variables_become_environment_lines_escaped_for_systemd() {
        let env = vec![
            (
                "CLAUDE_CONFIG_DIR".to_string(),
                "/home/u/my claude".to_string(),
            ),
            ("CODEX_HOME".to_string(), r#"/x/100%"q"\b"#.to_string()),
        ];
        let unit = render_systemd_unit_with_env("/usr/bin/opensyncd", &env).unwrap();
        assert!(unit.contains("Environment=\"CLAUDE_CONFIG_DIR=/home/u/my claude\"\n"));
        assert!(unit.contains(r#"Environment="CODEX_HOME=/x/100%%\"q\"\\b""#));
        assert!(unit.find("Environment=").unwrap() > unit.find("[Service]").unwrap());
        let bad = vec![("CODEX_HOME".to_string(), "a\nb".to_string())];
        assert!(render_systemd_unit_with_env("/usr/bin/opensyncd", &bad).is_err());
        assert_eq!(
            render_systemd_unit_with_env("/usr/bin/opensyncd", &[]).unwrap(),
            render_systemd_unit("/usr/bin/opensyncd")
        );
    }

    #[test]
    fn plist_values_are_escaped() {
        let plist = render_launchd_plist("/Users/a&b/bin/opensyncd", "/Users/a&b/Library/Logs/x");
        assert!(plist.contains("<string>/Users/a&amp;b/bin/opensyncd</string>"));
        assert!(!plist.contains('@'));
    }
}
