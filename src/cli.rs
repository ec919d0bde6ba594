//! The clap command line; the only place that prints for humans.
//! STUB: being written.
