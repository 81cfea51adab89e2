//! The format version recorded in each redb file the agent writes (`meta.redb`,
//! `partitions.redb`): checked when the file is opened, so an agent never misreads a
//! file a newer agent wrote. See `shared::format` for the versions and the rule.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use shared::format::{FormatError, check_version};

/// "version" → the format version of the file's records.
const FORMAT: TableDefinition<&str, u16> = TableDefinition::new("format");
const KEY_VERSION: &str = "version";

/// Why a file's format could not be checked or is not readable.
#[derive(Debug, thiserror::Error)]
pub enum StoreFormatError {
    /// The file holds a format this agent does not read.
    #[error("{0}")]
    Format(#[from] FormatError),
    /// The database failed.
    #[error("reading the format version: {0}")]
    Db(#[from] redb::Error),
}

/// Checks the format version recorded in `db` against `known`, the newest this agent
/// reads, and records one in a file that has none: `known` in a new file, 1 in a file
/// written before versions were recorded. Returns the version found.
pub fn check_store_format(
    db: &Database,
    what: &'static str,
    known: u16,
) -> Result<u16, StoreFormatError> {
    let empty = db
        .begin_read()
        .map_err(redb::Error::from)?
        .list_tables()
        .map_err(redb::Error::from)?
        .next()
        .is_none();
    let mut txn = db.begin_write().map_err(redb::Error::from)?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(redb::Error::from)?;
    let found = {
        let mut table = txn.open_table(FORMAT).map_err(redb::Error::from)?;
        let found = table
            .get(KEY_VERSION)
            .map_err(redb::Error::from)?
            .map(|v| v.value());
        match found {
            Some(version) => version,
            None => {
                // A new file takes this agent's version; one with tables but no version
                // was written before versions were recorded: version 1.
                let version = if empty { known } else { 1 };
                table
                    .insert(KEY_VERSION, version)
                    .map_err(redb::Error::from)?;
                version
            }
        }
    };
    check_version(what, found, known)?;
    txn.commit().map_err(redb::Error::from)?;
    Ok(found)
}

/// Records `version` as the file's format (tests: a file of a newer agent).
#[cfg(test)]
pub fn record_store_format(db: &Database, version: u16) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(FORMAT)?.insert(KEY_VERSION, version)?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("x.redb")).unwrap();
        (dir, db)
    }

    #[test]
    fn a_new_file_records_version_1_and_reads_it_back() {
        let (_dir, db) = db();
        assert_eq!(check_store_format(&db, "x", 1).unwrap(), 1);
        assert_eq!(check_store_format(&db, "x", 1).unwrap(), 1);
    }

    #[test]
    fn a_file_written_before_versions_were_recorded_is_version_1() {
        let (_dir, db) = db();
        let txn = db.begin_write().unwrap();
        txn.open_table(TableDefinition::<u64, u64>::new("log"))
            .unwrap()
            .insert(1, 1)
            .unwrap();
        txn.commit().unwrap();
        assert_eq!(check_store_format(&db, "x", 3).unwrap(), 1);
    }

    #[test]
    fn a_file_of_a_newer_format_is_refused_with_its_name() {
        let (_dir, db) = db();
        record_store_format(&db, 2).unwrap();
        let err = check_store_format(&db, "the partition store", 1).unwrap_err();
        assert!(
            matches!(
                err,
                StoreFormatError::Format(FormatError::Newer {
                    found: 2,
                    known: 1,
                    ..
                })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("the partition store"), "{err}");
    }
}
