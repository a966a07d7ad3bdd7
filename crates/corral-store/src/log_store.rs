//! The Raft log on RocksDB.
//!
//! Vote, truncate and purge are synced before they return. Appends are written at once (so the
//! replication tasks can read them) and made durable by a flusher thread that syncs the RocksDB
//! write-ahead log once for every batch of appends waiting, then reports them flushed to openraft:
//! group commit, so a thousand concurrent writers cost a handful of fsyncs, not a thousand.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::mpsc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{DB, Direction, IteratorMode};

use crate::db::{
    CF_LOG, CF_RAFT, cf, get_json, index_key, read_err, sync_opts, to_json, write_err,
};
use crate::typ::{Entry, LogId, StorageError, TypeConfig, Vote};

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    flusher: mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        // The flusher must not keep the database open once the store is dropped.
        let fdb = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name("corral-log-flush".into())
            .spawn(move || flush_loop(fdb, rx))
            .expect("spawning the log flusher thread");
        Self { db, flusher: tx }
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut it = self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(kv) => {
                let (_, v) = kv.map_err(read_err)?;
                let e: Entry = serde_json::from_slice(&v).map_err(read_err)?;
                Ok(Some(e.log_id))
            }
        }
    }
}

/// Waits for appends, syncs the WAL once for all that are waiting, then reports each flushed.
fn flush_loop(db: std::sync::Weak<DB>, rx: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = match db.upgrade() {
            Some(db) => db
                .flush_wal(true)
                .map_err(|e| std::io::Error::other(e.to_string())),
            None => Err(std::io::Error::other("the store was closed")),
        };
        for cb in batch {
            cb.log_io_completed(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::other(e.to_string())),
            );
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            cf(&self.db, CF_LOG),
            IteratorMode::From(&index_key(start), Direction::Forward),
        );
        for kv in it {
            let (k, v) = kv.map_err(read_err)?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(read_err)?);
            if !range.contains(&idx) {
                break;
            }
            out.push(serde_json::from_slice(&v).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = get_json(&self.db, CF_RAFT, "purged")?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.db
            .put_cf_opt(cf(&self.db, CF_RAFT), "vote", to_json(vote)?, &sync_opts())
            .map_err(write_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        get_json(&self.db, CF_RAFT, "vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-learning the commit index from the leader.
        self.db
            .put_cf(cf(&self.db, CF_RAFT), "committed", to_json(&committed)?)
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(get_json::<Option<LogId>>(&self.db, CF_RAFT, "committed")?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = rocksdb::WriteBatch::default();
        let log = cf(&self.db, CF_LOG);
        for e in entries {
            batch.put_cf(log, index_key(e.log_id.index), to_json(&e)?);
        }
        self.db.write(batch).map_err(write_err)?;
        self.flusher
            .send(callback)
            .map_err(|_| write_err("the log flusher thread has stopped"))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_range_cf(
            cf(&self.db, CF_LOG),
            index_key(log_id.index),
            index_key(u64::MAX),
        );
        self.db.write_opt(batch, &sync_opts()).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The state machine's applied data must be durable before the entries behind it go.
        self.db.flush_wal(true).map_err(write_err)?;
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(cf(&self.db, CF_RAFT), "purged", to_json(&log_id)?);
        batch.delete_range_cf(
            cf(&self.db, CF_LOG),
            index_key(0),
            index_key(log_id.index + 1),
        );
        self.db.write_opt(batch, &sync_opts()).map_err(write_err)
    }
}
