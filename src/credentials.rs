//! The API key: where it comes from (`OPENSYNCD_API_KEY`, else the 0600 credentials file),
//! how it is checked and stored, and a type whose `Debug`/`Display` never reveal it.

use std::fmt;

use crate::config::Paths;
use crate::private_fs::{ensure_private_dir, write_atomic};

/// An OpenSync API key. Its `Debug` and `Display` show only `osk_****last4`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Trims whitespace and checks the `osk_` prefix and the key alphabet.
    pub fn parse(raw: &str) -> Result<ApiKey, String> {
        let key = raw.trim();
        if key.is_empty() {
            return Err("the API key is empty".into());
        }
        if !key.starts_with("osk_") {
            return Err(
                "an OpenSync API key starts with `osk_` (copy it from Settings → API \
                        Key in your dashboard)"
                    .into(),
            );
        }
        if key.len() < 8
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err("the API key has unexpected characters; paste it again".into());
        }
        Ok(ApiKey(key.to_string()))
    }

    /// The secret itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `osk_****last4`.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks a secret as `osk_****last4` (or `****` when too short to show anything).
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "****".into();
    }
    let last4: String = chars[chars.len() - 4..].iter().collect();
    let prefix = if secret.starts_with("osk_") {
        "osk_"
    } else {
        ""
    };
    format!("{prefix}****{last4}")
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.masked())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Where the key in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `OPENSYNCD_API_KEY`.
    Environment,
    /// The credentials file.
    File,
}

/// Loads the key: the environment wins over the file. `Ok(None)` = not logged in.
pub fn load(
    paths: &Paths,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(ApiKey, KeySource)>, String> {
    if let Some(raw) = env("OPENSYNCD_API_KEY").filter(|k| !k.trim().is_empty()) {
        return ApiKey::parse(&raw)
            .map(|k| Some((k, KeySource::Environment)))
            .map_err(|e| format!("OPENSYNCD_API_KEY: {e}"));
    }
    let file = paths.credentials_file();
    match std::fs::read_to_string(&file) {
        Ok(text) => ApiKey::parse(&text)
            .map(|k| Some((k, KeySource::File)))
            .map_err(|e| format!("{}: {e}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

/// Saves the key to the credentials file (0600, in a 0700 dir), atomically.
pub fn save(paths: &Paths, key: &ApiKey) -> std::io::Result<()> {
    ensure_private_dir(&paths.config_dir)?;
    write_atomic(
        &paths.credentials_file(),
        format!("{}\n", key.expose()).as_bytes(),
        0o600,
    )
}

/// Removes the credentials file. `Ok(false)` when there was none.
pub fn remove(paths: &Paths) -> std::io::Result<bool> {
    match std::fs::remove_file(paths.credentials_file()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_checked_trimmed_and_never_shown() {
        let key = ApiKey::parse("  osk_abcdefghijklmnopqrstuvwxyz012345\n").unwrap();
        assert_eq!(key.expose(), "osk_abcdefghijklmnopqrstuvwxyz012345");
        assert_eq!(key.masked(), "osk_****2345");
        assert_eq!(format!("{key:?}"), "ApiKey(osk_****2345)");
        assert!(!format!("{key} {key:?} {key:#?}").contains("abcdefgh"));
        assert!(ApiKey::parse("sk-abc").is_err());
        assert!(ApiKey::parse("osk_has space inside").is_err());
        assert!(ApiKey::parse("").is_err());
    }

    #[test]
    fn credentials_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            config_dir: dir.path().join("cfg"),
            state_dir: dir.path().join("state"),
            log_file: None,
        };
        let key = ApiKey::parse("osk_abcdefghijklmnopqrstuvwxyz012345").unwrap();
        save(&paths, &key).unwrap();
        let mode = std::fs::metadata(paths.credentials_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&paths.config_dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let none = |_: &str| None;
        assert_eq!(load(&paths, &none).unwrap(), Some((key, KeySource::File)));
        assert!(remove(&paths).unwrap());
        assert_eq!(load(&paths, &none).unwrap(), None);
    }
}
