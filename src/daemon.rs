//! Wiring of the long-running service: lock, signals, engine loop, control socket, sd_notify.
//! STUB: being written.
