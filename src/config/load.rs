//! The layering: defaults < `config.toml` < `OPENSYNCD_*` < flags, each value checked and
//! remembered with its origin; the file's entries read with their line numbers.

use std::collections::BTreeMap;
use std::path::Path;

use super::Config;
use super::error::{ConfigError, Origin, closest};
use super::keys::{
    ENV_PREFIX, NON_CONFIG_VARS, SETTABLE_KEYS, check_value, default_table, env_var_of,
    is_known_non_config_var, parse_text_value,
};
use super::paths::{Paths, opensyncd_env};

/// The resolved configuration, where each value came from, and what was ignored.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// For every key, where its value came from.
    pub origins: BTreeMap<String, Origin>,
    /// Things that were ignored (unknown `OPENSYNCD_*` variables), one line each.
    pub warnings: Vec<String>,
}

/// Loads the configuration: defaults < `config.toml` < `OPENSYNCD_*` < `overrides` (flags).
/// Unknown `OPENSYNCD_*` variables are ignored (see [`load_layers`] for the warnings).
pub fn load(paths: &Paths, overrides: &figment::value::Dict) -> Result<Config, ConfigError> {
    load_layers(&paths.config_file(), &opensyncd_env(), overrides).map(|l| l.config)
}

/// [`load`] with the origin of every value and the warnings.
pub fn load_with_origins(
    paths: &Paths,
    overrides: &figment::value::Dict,
) -> Result<Loaded, ConfigError> {
    load_layers(&paths.config_file(), &opensyncd_env(), overrides)
}

/// The layering itself, from explicit inputs: the config file's path, the `OPENSYNCD_*`
/// variables and the flags (`overrides`, keyed by config key).
pub fn load_layers(
    config_file: &Path,
    env: &[(String, Option<String>)],
    overrides: &figment::value::Dict,
) -> Result<Loaded, ConfigError> {
    let mut values: BTreeMap<String, (toml::Value, Origin)> = BTreeMap::new();
    let mut warnings = Vec::new();

    // The file.
    let text = match std::fs::read(config_file) {
        Ok(bytes) => Some(String::from_utf8(bytes).map_err(|_| {
            ConfigError::Invalid(format!(
                "{} is not UTF-8 text; fix or delete it",
                config_file.display()
            ))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ConfigError::Io {
                path: config_file.to_path_buf(),
                source,
            });
        }
    };
    if let Some(text) = &text {
        for (key, value, line) in file_entries(config_file, text)? {
            let origin = Origin::File {
                path: config_file.to_path_buf(),
                line,
            };
            let checked = check_value(&key, &value).map_err(|reason| ConfigError::Value {
                key: key.clone(),
                reason,
                origin: Some(origin.clone()),
            })?;
            values.insert(key, (checked, origin));
        }
    }

    // The environment.
    for (var, raw) in env {
        let Some(name) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = name.to_ascii_lowercase();
        if !SETTABLE_KEYS.contains(&key.as_str()) {
            if !is_known_non_config_var(var) {
                warnings.push(unknown_var_warning(var));
            }
            continue;
        }
        let origin = Origin::Env { var: var.clone() };
        let bad = |reason: String| ConfigError::Value {
            key: key.clone(),
            reason,
            origin: Some(origin.clone()),
        };
        let Some(raw) = raw else {
            return Err(bad("the value is not UTF-8 text".into()));
        };
        if raw.trim().is_empty() {
            // `OPENSYNCD_URL=` in a shell means "not set", not "the empty URL".
            continue;
        }
        let value = parse_text_value(&key, raw).map_err(bad)?;
        values.insert(key, (value, origin));
    }

    // The flags.
    for (key, value) in overrides {
        let origin = Origin::Flag {
            flag: format!("--{}", key.replace('_', "-")),
        };
        let bad = |reason: String| ConfigError::Value {
            key: key.clone(),
            reason,
            origin: Some(origin.clone()),
        };
        let value = toml::Value::try_from(value).map_err(|e| bad(e.to_string()))?;
        let value = match &value {
            toml::Value::String(s) => parse_text_value(key, s).map_err(bad)?,
            _ => check_value(key, &value).map_err(bad)?,
        };
        values.insert(key.clone(), (value, origin));
    }

    let mut table = default_table();
    for (key, (value, _)) in &values {
        table.insert(key.clone(), value.clone());
    }
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
    let origin_of = |key: &str| {
        values
            .get(key)
            .map_or(Origin::Default, |(_, origin)| origin.clone())
    };
    if let Err(ConfigError::Value { key, reason, .. }) = config.validate() {
        let origin = origin_of(&key);
        return Err(ConfigError::Value {
            reason,
            origin: Some(origin),
            key,
        });
    }
    let origins = SETTABLE_KEYS
        .iter()
        .map(|k| (k.to_string(), origin_of(k)))
        .collect();
    Ok(Loaded {
        config,
        origins,
        warnings,
    })
}

fn unknown_var_warning(var: &str) -> String {
    let known: Vec<String> = SETTABLE_KEYS
        .iter()
        .map(|k| env_var_of(k))
        .chain(NON_CONFIG_VARS.iter().map(|(n, _)| n.to_string()))
        .collect();
    let hint = match closest(var, known.iter().map(String::as_str)) {
        Some(near) => format!(" (did you mean {near}?)"),
        None => String::new(),
    };
    format!("ignoring {var}: it is not an opensyncd setting{hint}")
}

/// The file's top-level `key = value` entries with their 1-based line, checked for unknown
/// keys and sections.
fn file_entries(path: &Path, text: &str) -> Result<Vec<(String, toml::Value, usize)>, ConfigError> {
    let doc = toml_edit::Document::parse(text).map_err(|e| syntax_error(path, text, &e))?;
    let mut out = Vec::new();
    for (key, item) in doc.as_table().iter() {
        let at = doc
            .as_table()
            .key(key)
            .and_then(toml_edit::Key::span)
            .or_else(|| item.span())
            .map_or(0, |s| s.start);
        let line = line_of(text, at);
        let origin = Origin::File {
            path: path.to_path_buf(),
            line,
        };
        let Some(value) = item.as_value() else {
            return Err(ConfigError::Value {
                key: key.to_string(),
                reason: "is a section (`[...]`); opensyncd's settings are plain `key = value` \
                         lines at the top of the file"
                    .into(),
                origin: Some(origin),
            });
        };
        if !SETTABLE_KEYS.contains(&key) {
            return Err(ConfigError::UnknownKey {
                key: key.to_string(),
                origin: Some(origin),
            });
        }
        out.push((key.to_string(), to_toml(value), line));
    }
    Ok(out)
}

pub(super) fn syntax_error(path: &Path, text: &str, e: &toml_edit::TomlError) -> ConfigError {
    let at = e.span().map_or(0, |s| s.start).min(text.len());
    let line = line_of(text, at);
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    ConfigError::Syntax {
        path: path.to_path_buf(),
        line,
        column: text[line_start..at].chars().count() + 1,
        message: format!(
            "not valid TOML ({})",
            e.message().lines().next().unwrap_or("syntax error").trim()
        ),
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A `toml_edit` value as a plain `toml` value.
fn to_toml(value: &toml_edit::Value) -> toml::Value {
    use toml_edit::Value as V;
    match value {
        V::String(s) => toml::Value::String(s.value().clone()),
        V::Integer(i) => toml::Value::Integer(*i.value()),
        V::Float(f) => toml::Value::Float(*f.value()),
        V::Boolean(b) => toml::Value::Boolean(*b.value()),
        V::Datetime(d) => toml::Value::String(d.value().to_string()),
        V::Array(a) => toml::Value::Array(a.iter().map(to_toml).collect()),
        V::InlineTable(t) => toml::Value::Table(
            t.iter()
                .map(|(k, value)| (k.to_string(), to_toml(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn unknown_opensyncd_variables_are_ignored_with_one_warning_each() {
        let (_dir, path) = file_with("");
        let loaded = load_layers(
            &path,
            &env(&[
                ("OPENSYNCD_CONCURENCY", "8"),
                ("OPENSYNCD_REAL_FIXTURES", "/x"),
                ("OPENSYNCD_HOME", "/h"),
                ("OPENSYNCD_TEST_FAULT", "x"),
                ("OPENSYNCD_WHATEVER", "1"),
                ("OPENSYNCD_DEBOUNCE_MS", "250"),
            ]),
            &figment::value::Dict::new(),
        )
        .unwrap();
        assert_eq!(loaded.config.debounce_ms, 250);
        assert_eq!(loaded.config.concurrency, 16);
        assert_eq!(
            loaded.warnings,
            [
                "ignoring OPENSYNCD_CONCURENCY: it is not an opensyncd setting (did you mean \
                 OPENSYNCD_CONCURRENCY?)",
                "ignoring OPENSYNCD_WHATEVER: it is not an opensyncd setting",
            ]
        );
    }

    #[test]
    fn errors_name_the_variable_or_the_file_and_line() {
        let none = figment::value::Dict::new();
        let (_dir, path) = file_with("# mine\nconcurrency = 8\n\ntransport = \"foo\"\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}, line 4: `transport`: `foo` is not a valid transport; valid values: \
                 per-record, batch",
                path.display()
            )
        );
        assert!(!err.contains("TOML source string") && !err.contains("default."));

        let (_dir, path) = file_with("concurrency = 0\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}, line 1: `concurrency`: 0 is out of range: it must be between 1 and 64",
                path.display()
            )
        );

        let (_dir, path) = file_with("a = 1\nconcurency = 8\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}, line 1: unknown key `a`", path.display())),
            "{err}"
        );
        let (_dir, path) = file_with("concurency = 8\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert!(err.contains("did you mean `concurrency`?"), "{err}");

        let (_dir, path) = file_with("url = \"https://x.convex.site\"\nconcurrency = = 3\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}, line 2, column", path.display())),
            "{err}"
        );
        assert!(err.contains("not valid TOML"), "{err}");

        let (_dir, path) = file_with("[daemon]\nconcurrency = 3\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("section"), "{err}");

        let (_dir, path) = file_with("");
        let err = load_layers(&path, &env(&[("OPENSYNCD_CONCURRENCY", "abc")]), &none)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "environment variable OPENSYNCD_CONCURRENCY: `abc` is not a whole number"
        );
        let err = load_layers(&path, &env(&[("OPENSYNCD_CONCURRENCY", "99")]), &none)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "environment variable OPENSYNCD_CONCURRENCY: 99 is out of range: it must be \
             between 1 and 64"
        );
        let mut flags = figment::value::Dict::new();
        flags.insert("log_level".into(), "verbose".into());
        let err = load_layers(&path, &[], &flags).unwrap_err().to_string();
        assert!(
            err.starts_with("--log-level: `verbose` is not a log level"),
            "{err}"
        );
    }

    #[test]
    fn bytes_that_are_not_text_are_named_not_swallowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, b"concurrency = 8\n\xff\xfe\n").unwrap();
        let err = load_layers(&path, &[], &figment::value::Dict::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not UTF-8 text"), "{err}");
        let (_dir, empty) = file_with("");
        let err = load_layers(
            &empty,
            &[("OPENSYNCD_URL".to_string(), None)],
            &figment::value::Dict::new(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "environment variable OPENSYNCD_URL: the value is not UTF-8 text"
        );
        // An unknown variable whose value is not UTF-8 is still only a warning.
        let loaded = load_layers(
            &empty,
            &[("OPENSYNCD_NOPE".to_string(), None)],
            &figment::value::Dict::new(),
        )
        .unwrap();
        assert_eq!(loaded.warnings.len(), 1);
    }

    #[test]
    fn every_value_knows_where_it_came_from() {
        let (_dir, path) = file_with("# comment\n\ndebounce_ms = 100\nconcurrency = 2\n");
        let mut flags = figment::value::Dict::new();
        flags.insert("log_level".into(), "debug".into());
        let loaded = load_layers(
            &path,
            &env(&[("OPENSYNCD_CONCURRENCY", "3"), ("OPENSYNCD_URL", "")]),
            &flags,
        )
        .unwrap();
        assert_eq!(loaded.config.concurrency, 3);
        assert_eq!(loaded.config.debounce_ms, 100);
        assert_eq!(loaded.config.url, None, "an empty variable is not set");
        assert_eq!(
            loaded.origins["debounce_ms"],
            Origin::File {
                path: path.clone(),
                line: 3
            }
        );
        assert_eq!(
            loaded.origins["concurrency"],
            Origin::Env {
                var: "OPENSYNCD_CONCURRENCY".into()
            }
        );
        assert_eq!(
            loaded.origins["log_level"],
            Origin::Flag {
                flag: "--log-level".into()
            }
        );
        assert_eq!(loaded.origins["redact"], Origin::Default);
        assert_eq!(loaded.origins.len(), SETTABLE_KEYS.len());
    }
}
