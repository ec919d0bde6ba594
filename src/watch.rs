//! notify watches plus scans, turned into a set of dirty units.
//! STUB: being written.
