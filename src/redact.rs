//! Secret redaction, size caps with a visible truncation marker, and JSON key sanitising —
//! everything applied to a payload before it leaves the machine.
//! NOT BUILT YET: redaction and caps are pending; nothing is redacted by this build.

use crate::model::MessagePayload;

/// Redacts known secret patterns (plus user patterns) from text and JSON.
#[derive(Debug, Clone)]
pub struct Redactor {
    enabled: bool,
}

impl Redactor {
    /// Builds a redactor; `extra` are user regexes.
    pub fn new(enabled: bool, _extra: &[String]) -> Result<Redactor, String> {
        Ok(Redactor { enabled })
    }

    /// Whether redaction is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }
}

/// Applies redaction, caps and key sanitising to a message in place.
pub fn sanitize_message(_msg: &mut MessagePayload, _redactor: &Redactor, _max_part_bytes: usize) {}
impl Redactor {
    /// Redacts secrets in `s`. NOT BUILT YET: returns `s` unchanged.
    pub fn redact_str<'a>(&self, s: &'a str) -> std::borrow::Cow<'a, str> {
        s.into()
    }
}
