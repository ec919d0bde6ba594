//! Identity check and complete-line reading from a committed offset.
//! STUB: being written.
