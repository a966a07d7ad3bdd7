//! The one RocksDB instance a server keeps, and its column families: one per concern.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `log` | log index (u64 big-endian) | JSON Raft entry |
//! | `raft` | `vote`, `committed`, `purged` | JSON |
//! | `objects` | storage key | revision (u64 BE) + object JSON |
//! | `events` | revision (u64 BE) + op index (u16 BE) | JSON watch event |
//! | `sm` | `applied`, `membership`, `compacted` | JSON |

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options};

use crate::typ::{NodeId, StorageError};

pub const CF_LOG: &str = "log";
pub const CF_RAFT: &str = "raft";
pub const CF_OBJECTS: &str = "objects";
pub const CF_EVENTS: &str = "events";
pub const CF_SM: &str = "sm";

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the store in {dir}: {source}")]
    Rocks { dir: String, source: rocksdb::Error },
}

pub fn open(dir: &Path) -> Result<Arc<DB>, OpenError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    let cfs = [CF_LOG, CF_RAFT, CF_OBJECTS, CF_EVENTS, CF_SM]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|source| OpenError::Rocks {
        dir: dir.display().to_string(),
        source,
    })?;
    Ok(Arc::new(db))
}

pub fn cf<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    db.cf_handle(name)
        .expect("every column family is created when the store is opened")
}

pub fn sync_opts() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(true);
    w
}

pub fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

pub fn read_err(e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::<NodeId>::read(&io_err(e)).into()
}

pub fn write_err(e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::<NodeId>::write(&io_err(e)).into()
}

pub fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub fn get_json<T: serde::de::DeserializeOwned>(
    db: &DB,
    cf_name: &str,
    key: &str,
) -> Result<Option<T>, StorageError> {
    match db.get_cf(cf(db, cf_name), key).map_err(read_err)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| read_err(format!("{cf_name}/{key}: {e}"))),
    }
}

pub fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(write_err)
}
