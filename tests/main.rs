//! The one integration test binary (ripgrep-style): every test module below shares the
//! OpenSync emulation in `support/` and drives the real `opensyncd` binary or library.

mod home;
mod support;

mod architecture;
mod audit;
mod bad_files;
mod claude_source;
mod cli;
mod cli_daemon;
mod client;
mod codex_source;
mod cursor_source;
mod daemon;
mod droid_source;
mod emulation;
mod exclude;
mod fold_property;
mod incremental;
mod opencode_source;
mod packaging;
mod pi_source;
mod pricing;
mod real_fixtures;
mod redaction;
mod reliability;
mod terminal;
mod truth;
mod truth_model;
