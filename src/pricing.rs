//! Model prices (bundled table, user override file) and cost computation.
//! STUB: filled in by the pricing/redaction work.

use std::path::Path;

use crate::model::Tokens;

/// A price table: USD per million tokens for input, output, cache read and cache write.
#[derive(Debug, Clone, Default)]
pub struct Pricing {}

impl Pricing {
    /// A table with no prices (every model unknown).
    pub fn empty() -> Pricing {
        Pricing {}
    }

    /// The bundled table.
    pub fn bundled() -> Pricing {
        Pricing {}
    }

    /// The bundled table overridden by a user file.
    pub fn load(_override_file: Option<&Path>) -> Result<Pricing, String> {
        Ok(Pricing::bundled())
    }

    /// Cost of `tokens` on `model`, or `None` when the model has no known price.
    pub fn cost(&self, _model: &str, _tokens: &Tokens) -> Option<f64> {
        None
    }
}
