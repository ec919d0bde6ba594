//! In-process OpenSync emulation (being written).
