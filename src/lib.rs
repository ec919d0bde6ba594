//! opensyncd keeps AI coding sessions (Claude Code, Codex CLI, OpenCode) in an OpenSync
//! dashboard: it watches the tools' session logs, reads only what is new, and pushes it with
//! retry, never losing or duplicating a record. See `README.md` and `DESIGN.md`-style notes in
//! each module's header.

pub mod answer_text;
pub mod assets;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod credentials;
pub mod cursor_hook;
pub mod daemon;
pub mod deliver;
pub mod engine;
pub mod exclude;
pub mod fold;
pub mod health;
pub mod json_edit;
pub mod keyed_locks;
pub mod ledger;
pub mod lock;
pub mod logfile;
pub mod model;
pub mod oneshot;
pub mod pause;
pub mod pending;
pub mod plan;
pub mod prices;
pub mod pricing;
pub mod private_fs;
pub mod progress;
pub mod push;
pub mod redact;
pub mod selection;
pub mod service;
pub mod setup;
pub mod sources;
pub mod status;
pub mod tail;
pub mod watch;
pub mod wiring;
