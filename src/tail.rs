//! Reading an append-only file from a committed offset: the identity check that decides
//! whether the offset still applies, and the reader that returns only new *complete* lines.
//!
//! Identity (after Vector's and Filebeat's lessons): a device/inode pair is not enough (inodes
//! are reused, editors replace files), and a path is not enough either (rotation, rename). We
//! fingerprint content instead: the hash of the file's first bytes and of the bytes just before
//! the committed offset. If the file is shorter than the offset, or either hash differs, the
//! file was truncated or replaced and is read again from 0; deterministic record ids make the
//! overlap harmless. A rename keeps the content, so the check passes and reading resumes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

use crate::model::content_hash;

/// How many bytes the head and tail fingerprints cover.
const FINGERPRINT_BYTES: u64 = 1024;

/// Where reading a file stopped, and what the bytes around that point looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Byte offset just past the last acknowledged line.
    pub offset: u64,
    /// Hash of the first `min(offset, 1024)` bytes.
    pub head_hash: u128,
    /// Hash of the `min(offset, 1024)` bytes before `offset`.
    pub tail_hash: u128,
}

/// The result of comparing a file with its checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Same file: resume at the checkpoint's offset.
    Same,
    /// Truncated, rewritten or replaced: read from 0.
    Changed,
}

/// Compares `file` (of current length `len`) with `checkpoint`.
pub fn check_identity(file: &mut File, len: u64, checkpoint: &Checkpoint) -> io::Result<Identity> {
    if checkpoint.offset == 0 {
        return Ok(Identity::Same);
    }
    if len < checkpoint.offset {
        return Ok(Identity::Changed);
    }
    let fresh = fingerprint(file, checkpoint.offset)?;
    Ok(if fresh == *checkpoint {
        Identity::Same
    } else {
        Identity::Changed
    })
}

/// Fingerprints `file` at `offset` (which must not exceed its length).
pub fn fingerprint(file: &mut File, offset: u64) -> io::Result<Checkpoint> {
    let window = offset.min(FINGERPRINT_BYTES);
    let head = read_exact_at(file, 0, window)?;
    let tail = read_exact_at(file, offset - window, window)?;
    Ok(Checkpoint {
        offset,
        head_hash: content_hash(&head),
        tail_hash: content_hash(&tail),
    })
}

fn read_exact_at(file: &mut File, at: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// Complete lines read from a file.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The buffer the file was read into (newlines included, and possibly bytes past the last
    /// line, kept for the next read); `lines` index into it.
    pub buf: Vec<u8>,
    /// Each complete line's byte range in `buf`, without its `\n` (and without a `\r`).
    pub lines: Vec<std::ops::Range<usize>>,
    /// File offset of `buf[0]`.
    pub start: u64,
    /// File offset just past the last complete line consumed (including skipped ones).
    pub end: u64,
    /// Lines longer than the cap that were skipped (their bytes are not in `lines`).
    pub skipped_long_lines: u64,
    /// True when the chunk stopped at the byte budget with more complete data behind it.
    pub more: bool,
}

impl Chunk {
    /// Iterates the complete lines.
    pub fn iter_lines(&self) -> impl Iterator<Item = &[u8]> {
        self.lines.iter().map(|r| &self.buf[r.clone()])
    }
}

/// Bytes asked of the file per `read`. A line's length is checked against the cap at the end
/// of each block, so this also decides which over-long lines are noticed.
const BLOCK: usize = 256 * 1024;

/// Reads complete lines starting at `from`, stopping once about `budget` bytes of lines were
/// gathered (a line is never split: a single line may exceed the budget up to `max_line`). A
/// line still incomplete and longer than `max_line` at the end of a block is skipped without
/// being buffered and counted in `skipped_long_lines`. A trailing partial line is left for the
/// next call.
///
/// The file is read straight into the returned buffer, sized once for what can come (the
/// budget, or the rest of the file when smaller), so each byte is copied once, by the kernel.
pub fn read_lines(file: &mut File, from: u64, budget: usize, max_line: usize) -> io::Result<Chunk> {
    let mut chunk = Chunk::default();
    read_lines_into(file, from, budget, max_line, &mut chunk)?;
    Ok(chunk)
}

/// [`read_lines`] into `chunk`, reusing its buffer (a reader of many files allocates and
/// faults in its buffer once, not once per read).
pub fn read_lines_into(
    file: &mut File,
    from: u64,
    budget: usize,
    max_line: usize,
    chunk: &mut Chunk,
) -> io::Result<()> {
    file.seek(SeekFrom::Start(from))?;
    let ahead = file
        .metadata()
        .map_or(0, |m| m.len().saturating_sub(from))
        .min(budget as u64) as usize;
    let mut buf = std::mem::take(&mut chunk.buf);
    if buf.len() > 4 * (budget + BLOCK) {
        // A buffer an over-long line once grew is not kept for every later read.
        buf = Vec::new();
    }
    if buf.is_empty() {
        // Zeroed by the allocator (fresh pages for large sizes), not by a pass over the bytes.
        buf = vec![0u8; ahead + BLOCK];
    } else if buf.len() < ahead + BLOCK {
        buf.resize(ahead + BLOCK, 0);
    }
    *chunk = Chunk {
        start: from,
        end: from,
        lines: std::mem::take(&mut chunk.lines),
        ..Chunk::default()
    };
    chunk.lines.clear();
    // Where the next read goes: the end of what is kept, or the start of a line being skipped.
    let mut filled = 0usize;
    // Start of the current (unfinished) line in `buf`, or `None` while skipping an over-long one.
    let mut line_start = Some(0usize);
    // Bytes of the complete lines kept (their `\n` excluded): what the budget counts.
    let mut kept = 0usize;
    let mut skipping_from: u64 = 0;
    // File offset of the next byte to look at.
    let mut pos = from;
    loop {
        if kept >= budget && line_start == Some(filled) {
            // Budget reached at a line boundary: more may follow.
            chunk.more = true;
            break;
        }
        if buf.len() < filled + BLOCK {
            buf.resize(filled + BLOCK, 0);
        }
        let n = match file.read(&mut buf[filled..filled + BLOCK]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let end = filled + n;
        let mut cursor = filled;
        while cursor < end {
            match memchr::memchr(b'\n', &buf[cursor..end]) {
                Some(i) => {
                    let newline = cursor + i;
                    match line_start {
                        Some(start) => {
                            let mut line_end = newline;
                            if line_end > start && buf[line_end - 1] == b'\r' {
                                line_end -= 1;
                            }
                            chunk.lines.push(start..line_end);
                            kept += newline - start;
                        }
                        None => {
                            chunk.skipped_long_lines += 1;
                            tracing::warn!(
                                offset = skipping_from,
                                max_line,
                                "skipped a line longer than max_line_bytes"
                            );
                        }
                    }
                    pos += (newline + 1 - cursor) as u64;
                    chunk.end = pos;
                    cursor = newline + 1;
                    line_start = Some(cursor);
                    if kept >= budget && cursor < end {
                        // Stop early; the remainder of this block is re-read next time.
                        chunk.more = true;
                        chunk.buf = buf;
                        return Ok(());
                    }
                }
                None => {
                    if let Some(start) = line_start
                        && end - start > max_line
                    {
                        // Over the cap: drop what we have of it and skip to its end, reading
                        // over its bytes.
                        skipping_from = pos;
                        line_start = None;
                        filled = start;
                    }
                    pos += (end - cursor) as u64;
                    cursor = end;
                }
            }
        }
        if line_start.is_some() {
            filled = end;
        }
    }
    // A trailing partial line is not among `lines`: it is re-read once complete.
    chunk.buf = buf;
    Ok(())
}

/// A file's modification time in epoch milliseconds (0 when the platform cannot say).
pub fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(bytes).unwrap();
        let f = File::open(tmp.path()).unwrap();
        (tmp, f)
    }

    fn lines(chunk: &Chunk) -> Vec<String> {
        chunk
            .iter_lines()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    #[test]
    fn only_complete_lines_are_returned() {
        let (_t, mut f) = file_with(b"a\nbb\r\nccc");
        let chunk = read_lines(&mut f, 0, 1 << 20, 1 << 20).unwrap();
        assert_eq!(lines(&chunk), ["a", "bb"]);
        assert_eq!(chunk.end, 6);
        assert!(!chunk.more);
        let again = read_lines(&mut f, chunk.end, 1 << 20, 1 << 20).unwrap();
        assert!(again.lines.is_empty());
        assert_eq!(again.end, 6, "a partial line does not move the offset");
    }

    #[test]
    fn budget_splits_at_line_boundaries() {
        let (_t, mut f) = file_with(b"1111\n2222\n3333\n");
        let first = read_lines(&mut f, 0, 6, 1 << 20).unwrap();
        assert_eq!(lines(&first), ["1111", "2222"]);
        assert!(first.more);
        let second = read_lines(&mut f, first.end, 6, 1 << 20).unwrap();
        assert_eq!(lines(&second), ["3333"]);
        assert_eq!(second.end, 15);
    }

    #[test]
    fn a_reused_chunk_reads_what_a_fresh_one_reads() {
        // One chunk carried across files of different sizes (export's workers do this): each
        // read gives the lines a fresh read gives, whatever an earlier file left in the buffer.
        let long = format!("{}\n", "y".repeat(300_000));
        let files: [&[u8]; 4] = [long.as_bytes(), b"a\nbb\r\nccc", b"", b"1111\n2222\n3333\n"];
        let mut chunk = Chunk::default();
        for bytes in files {
            let (_t, mut f) = file_with(bytes);
            let fresh = read_lines(&mut f, 0, 6, 1 << 20).unwrap();
            read_lines_into(&mut f, 0, 6, 1 << 20, &mut chunk).unwrap();
            assert_eq!(lines(&chunk), lines(&fresh));
            assert_eq!(
                (chunk.start, chunk.end, chunk.more),
                (fresh.start, fresh.end, fresh.more)
            );
            assert_eq!(chunk.skipped_long_lines, fresh.skipped_long_lines);
        }
        let (_t, mut f) = file_with(b"1111\n2222\n3333\n");
        read_lines_into(&mut f, 5, 6, 1 << 20, &mut chunk).unwrap();
        assert_eq!(lines(&chunk), ["2222", "3333"]);
        assert_eq!(chunk.end, 15);
    }

    #[test]
    fn over_long_lines_are_skipped_not_stalled() {
        let mut data = b"ok1\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 600_000));
        data.extend_from_slice(b"\nok2\n");
        let (_t, mut f) = file_with(&data);
        let chunk = read_lines(&mut f, 0, 1 << 20, 100_000).unwrap();
        assert_eq!(lines(&chunk), ["ok1", "ok2"]);
        assert_eq!(chunk.skipped_long_lines, 1);
        assert_eq!(chunk.end, data.len() as u64);
    }

    #[test]
    fn identity_detects_truncation_and_rewrite_but_not_append() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(b"first line\nsecond line\n").unwrap();
        let mut f = File::open(tmp.path()).unwrap();
        let cp = fingerprint(&mut f, 23).unwrap();
        tmp.write_all(b"third\n").unwrap();
        let len = tmp.as_file().metadata().unwrap().len();
        assert_eq!(check_identity(&mut f, len, &cp).unwrap(), Identity::Same);

        // Same first line, different content after it, same length or longer.
        std::fs::write(tmp.path(), b"first line\nSECOND LINE\nthird\n").unwrap();
        let mut f = File::open(tmp.path()).unwrap();
        assert_eq!(check_identity(&mut f, 29, &cp).unwrap(), Identity::Changed);

        std::fs::write(tmp.path(), b"first").unwrap();
        let mut f = File::open(tmp.path()).unwrap();
        assert_eq!(check_identity(&mut f, 5, &cp).unwrap(), Identity::Changed);
    }
}
