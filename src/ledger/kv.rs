//! The ledger's storage: named tables of key → bytes in one SQLite file (`ledger.sqlite3`),
//! with point reads, prefix and paged scans, and atomic multi-table writes.
//!
//! Why SQLite rather than sled (the first store): sled 0.34 keeps an in-memory page table
//! entry for every 16 records of the ledger and seven I/O threads that wake every second.
//! On a user with 118k session files (a 318k-message ledger) that was ~19 MiB of RSS at open
//! and ~26 MiB after one scan; SQLite's index lives on disk and its page cache is capped
//! (`CACHE_KIB`), so the same ledger opens and scans in ~6 MiB, and an idle daemon has no
//! store thread at all. SQLite is already linked (bundled) for OpenCode's `opencode.db`.
//! Figures and commands: BENCHMARKS.md, section 5.
//!
//! Durability: write-ahead log with `synchronous=FULL`, so a write transaction is on disk
//! when it returns — what the ledger's "never points past acknowledged data" invariant
//! needs across a crash or a power cut. One connection, behind a mutex: the daemon's
//! ledger traffic is small point reads and one commit per acknowledged unit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

/// The file inside the ledger directory.
pub(super) const DB_FILE: &str = "ledger.sqlite3";

/// SQLite's page cache, per connection: enough for one unit's records, flat in ledger size.
const CACHE_KIB: i64 = 2048;

/// Rows fetched per step of a paged scan (the mutex is released between steps).
const PAGE_ROWS: usize = 256;

/// One table of the ledger (see the ledger module's header for what each holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    Files,
    Sessions,
    Messages,
    Facts,
    Usage,
    Totals,
    Deferred,
    Quarantine,
    Meta,
}

impl Table {
    /// Every table, in the order they are created and migrated.
    pub(super) const ALL: [Table; 9] = [
        Table::Files,
        Table::Sessions,
        Table::Messages,
        Table::Facts,
        Table::Usage,
        Table::Totals,
        Table::Deferred,
        Table::Quarantine,
        Table::Meta,
    ];

    /// The table's name, in SQL and in a sled ledger (the same names, so a migration is a
    /// copy).
    pub(super) fn name(self) -> &'static str {
        match self {
            Table::Files => "files",
            Table::Sessions => "sessions",
            Table::Messages => "messages",
            Table::Facts => "facts",
            Table::Usage => "usage",
            Table::Totals => "totals",
            Table::Deferred => "deferred",
            Table::Quarantine => "quarantine",
            Table::Meta => "meta",
        }
    }
}

/// A stored (key, value) pair.
pub(super) type Row = (Vec<u8>, Vec<u8>);

/// One write of an atomic group: `value` `None` removes the key.
pub(super) struct Write<'a> {
    pub table: Table,
    pub key: &'a [u8],
    pub value: Option<Vec<u8>>,
}

/// The opened store. Clones share the connection.
#[derive(Clone)]
pub(super) struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (or creates) the store at `file` and makes sure every table exists.
    pub(super) fn open(file: &Path) -> Result<Store, rusqlite::Error> {
        let conn = Connection::open(file)?;
        configure(&conn)?;
        create_tables(&conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves SQLite consistent (an open
        // transaction is rolled back when its guard drops), so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key`.
    pub(super) fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, rusqlite::Error> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT v FROM {} WHERE k = ?1", table.name()))?;
        stmt.query_row([key], |row| row.get(0)).optional()
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    ///
    /// Here and in `page`, one statement per shape of bound rather than one with
    /// `?1 IS NULL OR …`: SQLite plans a range search over the key only for a plain bound, and
    /// a paged scan that read the table from its start on every page would be quadratic.
    pub(super) fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<Row>, rusqlite::Error> {
        let conn = self.conn();
        let rows = match prefix_end(prefix) {
            Some(end) => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT k, v FROM {} WHERE k >= ?1 AND k < ?2 ORDER BY k",
                    table.name()
                ))?;
                stmt.query_map(params![prefix, end], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT k, v FROM {} WHERE k >= ?1 ORDER BY k",
                    table.name()
                ))?;
                stmt.query_map(params![prefix], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(rows)
    }

    /// Up to [`PAGE_ROWS`] (key, value) pairs after `after` (from the start when `None`), in
    /// key order.
    fn page(&self, table: Table, after: Option<&[u8]>) -> Result<Vec<Row>, rusqlite::Error> {
        let conn = self.conn();
        let limit = PAGE_ROWS as i64;
        match after {
            Some(after) => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT k, v FROM {} WHERE k > ?1 ORDER BY k LIMIT ?2",
                    table.name()
                ))?;
                stmt.query_map(params![after, limit], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            }
            None => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT k, v FROM {} ORDER BY k LIMIT ?1",
                    table.name()
                ))?;
                stmt.query_map(params![limit], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            }
        }
    }

    /// Every (key, value) of `table`, in key order, read a page at a time: the store is free
    /// for other reads and writes between pages, and a row written behind the scan's
    /// position is not seen by it (as with sled's iterators, which this replaces).
    pub(super) fn iter(&self, table: Table) -> Rows {
        Rows {
            store: self.clone(),
            table,
            after: None,
            buffered: std::collections::VecDeque::new(),
            done: false,
        }
    }

    /// Number of keys in `table`.
    pub(super) fn count(&self, table: Table) -> Result<u64, rusqlite::Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT count(*) FROM {}", table.name()))?;
        stmt.query_row([], |row| row.get::<_, i64>(0).map(|n| n as u64))
    }

    /// Applies `writes` atomically and durably (one transaction).
    pub(super) fn write(&self, writes: &[Write<'_>]) -> Result<(), rusqlite::Error> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for w in writes {
            match &w.value {
                Some(value) => {
                    let mut stmt = tx.prepare_cached(&format!(
                        "INSERT OR REPLACE INTO {} (k, v) VALUES (?1, ?2)",
                        w.table.name()
                    ))?;
                    stmt.execute(params![w.key, value])?;
                }
                None => {
                    let mut stmt =
                        tx.prepare_cached(&format!("DELETE FROM {} WHERE k = ?1", w.table.name()))?;
                    stmt.execute([w.key])?;
                }
            }
        }
        tx.commit()
    }

    /// Copies the write-ahead log into the database file and empties it.
    pub(super) fn checkpoint(&self) -> Result<(), rusqlite::Error> {
        self.conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    }

    /// Removes every key of `table`.
    pub(super) fn clear(&self, table: Table) -> Result<(), rusqlite::Error> {
        self.conn()
            .execute(&format!("DELETE FROM {}", table.name()), [])
            .map(|_| ())
    }
}

/// A paged scan of one table ([`Store::iter`]).
pub(super) struct Rows {
    store: Store,
    table: Table,
    after: Option<Vec<u8>>,
    buffered: std::collections::VecDeque<Row>,
    done: bool,
}

impl Iterator for Rows {
    type Item = Result<Row, rusqlite::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() && !self.done {
            match self.store.page(self.table, self.after.as_deref()) {
                Ok(page) => {
                    self.done = page.len() < PAGE_ROWS;
                    self.after = page.last().map(|(k, _)| k.clone());
                    self.buffered.extend(page);
                }
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            }
        }
        self.buffered.pop_front().map(Ok)
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key,
/// the prefix is all 0xFF).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    // Another opensyncd process never writes at the same time (the single-instance lock is
    // taken first), but a one-shot command may read while the daemon commits.
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    // `journal_mode` answers with the mode it set; a file that is not a database fails here.
    let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA cache_size = -{CACHE_KIB};"
    ))
}

fn create_tables(conn: &Connection) -> Result<(), rusqlite::Error> {
    for table in Table::ALL {
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;",
            table.name()
        ))?;
    }
    Ok(())
}

/// Writes every table of the sled ledger in `sled_dir` into a new store at `file`, in one
/// transaction. The caller moves the file into place only once this returned.
pub(super) fn copy_from_sled(sled_dir: &Path, file: &Path) -> Result<u64, MigrateError> {
    let db = sled::Config::new()
        .path(sled_dir)
        .cache_capacity(4 * 1024 * 1024)
        .open()
        .map_err(MigrateError::Sled)?;
    for stale in [file.to_path_buf(), with_suffix(file, "-journal")] {
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(MigrateError::Io(e)),
            _ => {}
        }
    }
    let mut conn = Connection::open(file).map_err(MigrateError::Sqlite)?;
    // A rollback journal, not a WAL: the file is complete and alone once closed, so it can
    // be renamed into place.
    conn.execute_batch("PRAGMA journal_mode = DELETE; PRAGMA synchronous = FULL;")
        .map_err(MigrateError::Sqlite)?;
    create_tables(&conn).map_err(MigrateError::Sqlite)?;
    let tx = conn.transaction().map_err(MigrateError::Sqlite)?;
    let mut copied = 0;
    for table in Table::ALL {
        let tree = db.open_tree(table.name()).map_err(MigrateError::Sled)?;
        let mut stmt = tx
            .prepare(&format!(
                "INSERT OR REPLACE INTO {} (k, v) VALUES (?1, ?2)",
                table.name()
            ))
            .map_err(MigrateError::Sqlite)?;
        for item in tree.iter() {
            let (k, v) = item.map_err(MigrateError::Sled)?;
            stmt.execute(params![&k[..], &v[..]])
                .map_err(MigrateError::Sqlite)?;
            copied += 1;
        }
    }
    tx.commit().map_err(MigrateError::Sqlite)?;
    conn.close().map_err(|(_, e)| MigrateError::Sqlite(e))?;
    Ok(copied)
}

/// Why a sled ledger could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Reading the sled ledger failed (damaged, or an I/O error).
    #[error("reading the earlier (sled) ledger: {0}")]
    Sled(sled::Error),
    /// Writing the new store failed.
    #[error("writing the new ledger: {0}")]
    Sqlite(rusqlite::Error),
    /// Clearing what an interrupted copy left failed.
    #[error("clearing an interrupted copy: {0}")]
    Io(std::io::Error),
}

/// `path` with `suffix` appended to its file name.
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_scans_stop_at_the_prefix_and_pages_see_every_row_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(DB_FILE)).unwrap();
        let keys: Vec<Vec<u8>> = (0..(PAGE_ROWS * 2 + 7))
            .map(|i| format!("s{}\0{i:05}", i % 3).into_bytes())
            .chain([b"s1".to_vec(), b"s1\x01".to_vec(), vec![0xFF, 0xFF]])
            .collect();
        let writes: Vec<Write<'_>> = keys
            .iter()
            .map(|k| Write {
                table: Table::Usage,
                key: k,
                value: Some(k.clone()),
            })
            .collect();
        store.write(&writes).unwrap();
        let s1 = store.scan_prefix(Table::Usage, b"s1\0").unwrap();
        assert_eq!(
            s1.len(),
            keys.iter().filter(|k| k.starts_with(b"s1\0")).count()
        );
        assert!(s1.iter().all(|(k, v)| k.starts_with(b"s1\0") && k == v));
        assert_eq!(store.scan_prefix(Table::Usage, &[0xFF]).unwrap().len(), 1);
        let mut all: Vec<Vec<u8>> = store.iter(Table::Usage).map(|r| r.unwrap().0).collect();
        assert_eq!(all.len(), keys.len());
        let mut sorted = keys.clone();
        sorted.sort();
        all.dedup();
        assert_eq!(all, sorted, "in key order, each once");
        assert_eq!(store.count(Table::Usage).unwrap(), keys.len() as u64);
        assert_eq!(store.count(Table::Files).unwrap(), 0);
    }

    #[test]
    fn a_group_of_writes_lands_whole_and_removes_what_it_removes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(DB_FILE)).unwrap();
        store
            .write(&[Write {
                table: Table::Files,
                key: b"a",
                value: Some(b"1".to_vec()),
            }])
            .unwrap();
        store
            .write(&[
                Write {
                    table: Table::Files,
                    key: b"a",
                    value: None,
                },
                Write {
                    table: Table::Sessions,
                    key: b"s",
                    value: Some(b"2".to_vec()),
                },
            ])
            .unwrap();
        assert_eq!(store.get(Table::Files, b"a").unwrap(), None);
        assert_eq!(
            store.get(Table::Sessions, b"s").unwrap(),
            Some(b"2".to_vec())
        );
        drop(store);
        let reopened = Store::open(&dir.path().join(DB_FILE)).unwrap();
        assert_eq!(
            reopened.get(Table::Sessions, b"s").unwrap(),
            Some(b"2".to_vec())
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_fails_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(DB_FILE);
        std::fs::write(&file, b"\x00garbage\xff".repeat(512)).unwrap();
        let err = Store::open(&file).err().expect("garbage opened");
        assert!(
            matches!(
                err.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase)
            ),
            "{err}"
        );
    }
}
