//! systemd user unit and macOS LaunchAgent: render, install, uninstall, status.
//! STUB: being written.
