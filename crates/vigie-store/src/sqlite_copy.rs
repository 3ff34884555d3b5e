//! A consistent copy of any SQLite database while it is in use (vigie's
//! own store, an application's): SQLite's `VACUUM INTO`, which reads the
//! database inside one read transaction, so writers go on and the copy
//! is a database as of one instant — never the live file, whose bytes a
//! writer may be changing while they are read.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::{Result, StoreError};

/// Copies the database at `src` into `dest` (which must not exist yet),
/// opening `src` read-only.
pub fn sqlite_copy(src: &Path, dest: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let dest = dest
        .to_str()
        .ok_or_else(|| StoreError::Sqlite(rusqlite::Error::InvalidPath(dest.to_owned())))?;
    conn.execute("VACUUM INTO ?1", [dest])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_being_written_is_copied_whole() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("app.db");
        let mut w = Connection::open(&src).unwrap();
        w.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER);")
            .unwrap();
        // A write transaction open while the copy is taken: the copy
        // holds what was committed, not the half-done.
        for n in 0..100 {
            w.execute("INSERT INTO t VALUES (?1)", [n]).unwrap();
        }
        let tx = w.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (1000)", []).unwrap();
        let dest = dir.path().join("copy.db");
        sqlite_copy(&src, &dest).unwrap();
        tx.commit().unwrap();
        let copy = Connection::open(&dest).unwrap();
        let (count, max): (i64, i64) = copy
            .query_row("SELECT count(*), max(n) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((count, max), (100, 99));
        // An existing destination is refused, not overwritten.
        assert!(sqlite_copy(&src, &dest).is_err());
    }
}
