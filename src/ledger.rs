//! The sled ledger: files, sessions, messages and meta trees; what has been acknowledged.
//! STUB: being written.
