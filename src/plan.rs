//! Records plus ledger state become per-session work: what is new or changed, in send order.
//! STUB: being written.
