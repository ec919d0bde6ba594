//! `set` and `--unset`: a value checked as `set` would store it, and the edit of that one key
//! in `config.toml`'s text, everything else kept byte for byte.

use std::path::Path;

use super::Config;
use super::error::ConfigError;
use super::keys::{SETTABLE_KEYS, default_table, parse_text_value};
use super::load::syntax_error;
use super::paths::Paths;

/// Validates `value` for `key` (as `set` would store it) and returns the TOML value.
pub fn parse_setting(key: &str, value: &str) -> Result<toml_edit::Value, ConfigError> {
    if !SETTABLE_KEYS.contains(&key) {
        return Err(ConfigError::UnknownKey {
            key: key.to_string(),
            origin: None,
        });
    }
    let bad = |reason: String| ConfigError::Value {
        key: key.into(),
        reason,
        origin: None,
    };
    let parsed = parse_text_value(key, value).map_err(bad)?;
    // Validate the result by applying it to a default config.
    let mut table = default_table();
    table.insert(key.to_string(), parsed.clone());
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
    config.validate()?;
    to_edit_value(&parsed).map_err(bad)
}

fn to_edit_value(value: &toml::Value) -> Result<toml_edit::Value, String> {
    Ok(match value {
        toml::Value::String(s) => s.as_str().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push(to_edit_value(item)?);
            }
            array.into()
        }
        other => return Err(format!("{other} cannot be stored")),
    })
}

/// Sets (or with `None`, removes) `key` in `config.toml`. Only the text of that key changes:
/// an existing value is replaced where it stands (its comment kept), a new key is added at the
/// end of the top-level settings, and a removed key takes its own line(s) with it and nothing
/// else.
pub fn write_key(
    paths: &Paths,
    key: &str,
    value: Option<toml_edit::Value>,
) -> Result<(), ConfigError> {
    let file = paths.config_file();
    let text = read_config_text(&file)?;
    let new = edit_key_text(&file, &text, key, value.as_ref())?;
    if new == text {
        return Ok(());
    }
    let io = |source| ConfigError::Io {
        path: file.clone(),
        source,
    };
    crate::private_fs::ensure_private_dir(&paths.config_dir).map_err(io)?;
    crate::private_fs::write_atomic(&file, new.as_bytes(), 0o600).map_err(io)
}

/// Removes `key` from `config.toml`; `Ok(false)` when it was not set there.
pub fn remove_key(paths: &Paths, key: &str) -> Result<bool, ConfigError> {
    let file = paths.config_file();
    let text = read_config_text(&file)?;
    let present = toml_edit::Document::parse(text.as_str())
        .map_err(|e| syntax_error(&file, &text, &e))?
        .as_table()
        .contains_key(key);
    if present {
        write_key(paths, key, None)?;
    }
    Ok(present)
}

fn read_config_text(file: &Path) -> Result<String, ConfigError> {
    match std::fs::read(file) {
        Ok(bytes) => String::from_utf8(bytes)
            .map_err(|_| ConfigError::Invalid(format!("{} is not UTF-8 text", file.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ConfigError::Io {
            path: file.to_path_buf(),
            source,
        }),
    }
}

/// The text of `config.toml` with `key` set to `value` (or removed).
fn edit_key_text(
    file: &Path,
    text: &str,
    key: &str,
    value: Option<&toml_edit::Value>,
) -> Result<String, ConfigError> {
    let doc = toml_edit::Document::parse(text).map_err(|e| syntax_error(file, text, &e))?;
    let spans = doc
        .as_table()
        .get_key_value(key)
        .and_then(|(k, item)| Some((k.span()?, item.span()?)));
    match (spans, value) {
        (Some((_, value_span)), Some(value)) => {
            let mut fresh = value.clone();
            fresh.decor_mut().clear();
            let rendered = fresh.to_string();
            Ok(format!(
                "{}{}{}",
                &text[..value_span.start],
                rendered.trim(),
                &text[value_span.end..]
            ))
        }
        (Some((key_span, value_span)), None) => {
            let start = text[..key_span.start].rfind('\n').map_or(0, |i| i + 1);
            let end = text[value_span.end..]
                .find('\n')
                .map_or(text.len(), |i| value_span.end + i + 1);
            Ok(format!("{}{}", &text[..start], &text[end..]))
        }
        (None, Some(value)) => {
            let mut doc: toml_edit::DocumentMut = text
                .parse()
                .map_err(|e: toml_edit::TomlError| syntax_error(file, text, &e))?;
            doc[key] = toml_edit::value(value.clone());
            Ok(doc.to_string())
        }
        (None, None) => Ok(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_validates_keys_and_values() {
        assert!(matches!(
            parse_setting("nope", "1"),
            Err(ConfigError::UnknownKey { .. })
        ));
        let msg = parse_setting("nope", "1").unwrap_err().to_string();
        assert!(
            msg.contains("debounce_ms") && msg.contains("sync_thinking"),
            "{msg}"
        );
        let msg = parse_setting("concurency", "1").unwrap_err().to_string();
        assert!(msg.contains("did you mean `concurrency`?"), "{msg}");
        assert!(parse_setting("sync_thinking", "maybe").is_err());
        assert!(parse_setting("concurrency", "0").is_err());
        assert!(parse_setting("concurrency", "-3").is_err());
        assert_eq!(
            parse_setting("concurrency", "8").unwrap().as_integer(),
            Some(8)
        );
        let msg = parse_setting("transport", "foo").unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid value for `transport`: `foo` is not a valid transport; valid values: \
             per-record, batch"
        );
        assert!(parse_setting("transport", "batch").is_ok());
        assert!(parse_setting("sources", "claude-code,codex").is_ok());
        assert!(parse_setting("sources", "vim").is_err());
        assert!(parse_setting("url", "http://example.com").is_err());
        assert!(parse_setting("exclude", "~/work/secret/**, *.draft.jsonl").is_ok());
    }

    #[test]
    fn set_and_unset_edit_only_that_key() {
        let path = Path::new("config.toml");
        let original = "# my settings\nconcurrency = 8 # tuned\n\n[unrelated]\nx = 1\n";
        // Replacing a value keeps its comment and everything else.
        let replaced = edit_key_text(
            path,
            original,
            "concurrency",
            Some(&toml_edit::Value::from(2)),
        )
        .unwrap();
        assert_eq!(
            replaced,
            "# my settings\nconcurrency = 2 # tuned\n\n[unrelated]\nx = 1\n"
        );
        // A new key and its removal give back the original bytes.
        let added = edit_key_text(
            path,
            original,
            "debounce_ms",
            Some(&toml_edit::Value::from(50)),
        )
        .unwrap();
        assert!(added.contains("debounce_ms = 50\n"), "{added}");
        assert_eq!(
            edit_key_text(path, &added, "debounce_ms", None).unwrap(),
            original
        );
        // Removing a key takes its own line only: the comment above stays.
        assert_eq!(
            edit_key_text(path, original, "concurrency", None).unwrap(),
            "# my settings\n\n[unrelated]\nx = 1\n"
        );
        // A multi-line list goes as a whole.
        let lists = "sources = [\n  \"claude-code\",\n  \"opencode\",\n]\nredact = true\n";
        assert_eq!(
            edit_key_text(path, lists, "sources", None).unwrap(),
            "redact = true\n"
        );
        assert_eq!(edit_key_text(path, "", "redact", None).unwrap(), "");
    }
}
