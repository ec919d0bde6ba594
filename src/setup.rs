//! Adds and removes the tools' hooks that nudge the running daemon (Codex `notify`, Claude Code
//! `settings.json` hooks), merging without clobbering and reversibly.
//! STUB: being written.
