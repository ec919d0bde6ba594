//! Shell completions and the man page, generated from the clap definitions.
//! STUB: being written.
