//! The state machine: objects by key with revisions, the watch history, and snapshots, on RocksDB.
//!
//! Applying a batch of entries is one WriteBatch holding every object change, every watch event
//! and the last-applied log id, so a restart resumes exactly where applying stopped. Once written,
//! the batch's events are published to in-process watchers; a watcher that falls behind reads
//! them back from the history column family.

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::db::{
    CF_EVENTS, CF_OBJECTS, CF_SM, cf, get_json, read_err, sync_opts, to_json, write_err,
};
use crate::txn::{Change, Stored, TxnResult, decide, decide_each};
use crate::typ::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// What a change did to a key, as watchers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change at one revision. `value` is the object after a put, or the last value before a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub revision: u64,
    pub idx: u16,
    pub kind: EventKind,
    pub key: String,
    pub value: String,
    pub prev: Option<String>,
}

#[derive(Debug, Clone)]
enum WatchMsg {
    Event(Arc<Event>),
    /// The state was replaced by a snapshot: watchers must relist.
    Reset,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The asked-for revision is older than the kept history (or a snapshot replaced it).
    #[error("revision {requested} is compacted; the oldest kept is {oldest}")]
    Expired { requested: u64, oldest: u64 },
    #[error("the store is shutting down")]
    Closed,
    #[error("reading the watch history failed: {0}")]
    Storage(String),
}

/// Read access to the applied state, shared by the API server and watchers.
#[derive(Clone)]
pub struct StoreReader {
    db: Arc<DB>,
    events: broadcast::Sender<WatchMsg>,
    applied: watch::Receiver<u64>,
}

fn event_key(revision: u64, idx: u16) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&revision.to_be_bytes());
    k[8..].copy_from_slice(&idx.to_be_bytes());
    k
}

fn upper_bound_of_prefix(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    end.push(0xFF);
    end
}

impl StoreReader {
    /// The revision (log index) the state machine has applied up to.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the state machine has applied `revision`.
    pub async fn wait_applied(&self, revision: u64) -> Result<(), WatchError> {
        let mut rx = self.applied.clone();
        rx.wait_for(|a| *a >= revision)
            .await
            .map(|_| ())
            .map_err(|_| WatchError::Closed)
    }

    pub fn get(&self, key: &str) -> Result<Option<Stored>, StorageError> {
        match self
            .db
            .get_pinned_cf(cf(&self.db, CF_OBJECTS), key)
            .map_err(read_err)?
        {
            None => Ok(None),
            Some(b) => Stored::decode(&b)
                .map(Some)
                .ok_or_else(|| read_err(format!("stored value of {key} is corrupt"))),
        }
    }

    /// Every object under `prefix`, read from one consistent view, and the revision of that view.
    pub fn list(&self, prefix: &str) -> Result<(Vec<Stored>, u64), StorageError> {
        let snap = self.db.snapshot();
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        let applied: Option<LogId> = match self
            .db
            .get_cf_opt(cf(&self.db, CF_SM), "applied", &ro)
            .map_err(read_err)?
        {
            Some(b) => serde_json::from_slice(&b).map_err(read_err)?,
            None => None,
        };
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        ro.set_iterate_upper_bound(upper_bound_of_prefix(prefix));
        let mut out = Vec::new();
        let it = self.db.iterator_cf_opt(
            cf(&self.db, CF_OBJECTS),
            ro,
            IteratorMode::From(prefix.as_bytes(), Direction::Forward),
        );
        for kv in it {
            let (k, v) = kv.map_err(read_err)?;
            let stored = Stored::decode(&v).ok_or_else(|| {
                read_err(format!(
                    "stored value of {} is corrupt",
                    String::from_utf8_lossy(&k)
                ))
            })?;
            out.push(stored);
        }
        Ok((out, applied.map(|l| l.index).unwrap_or(0)))
    }

    /// The oldest revision a watch may start after.
    pub fn compacted(&self) -> Result<u64, StorageError> {
        Ok(get_json::<u64>(&self.db, CF_SM, "compacted")?.unwrap_or(0))
    }

    /// A watch on every key under `prefix` that changes after revision `from`.
    pub fn watch(&self, prefix: &str, from: u64) -> Result<Watcher, WatchError> {
        let rx = self.events.subscribe();
        let compacted = self
            .compacted()
            .map_err(|e| WatchError::Storage(e.to_string()))?;
        if from < compacted {
            return Err(WatchError::Expired {
                requested: from,
                oldest: compacted,
            });
        }
        Ok(Watcher {
            reader: self.clone(),
            prefix: prefix.to_string(),
            pos: (from, u16::MAX),
            rx,
            backlog: VecDeque::new(),
            catching_up: true,
        })
    }

    fn read_history(&self, after: (u64, u16), limit: usize) -> Result<Vec<Event>, WatchError> {
        let storage = |e: &dyn std::fmt::Display| WatchError::Storage(e.to_string());
        let compacted = self.compacted().map_err(|e| storage(&e))?;
        if after.0 < compacted {
            return Err(WatchError::Expired {
                requested: after.0,
                oldest: compacted,
            });
        }
        let start = if after.1 == u16::MAX {
            event_key(after.0 + 1, 0)
        } else {
            event_key(after.0, after.1 + 1)
        };
        let it = self.db.iterator_cf(
            cf(&self.db, CF_EVENTS),
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for kv in it.take(limit) {
            let (_, v) = kv.map_err(|e| storage(&e))?;
            out.push(serde_json::from_slice(&v).map_err(|e| storage(&e))?);
        }
        Ok(out)
    }
}

/// Delivers, in revision order and exactly once, every change under its prefix after its start.
pub struct Watcher {
    reader: StoreReader,
    prefix: String,
    /// The last (revision, op index) looked at.
    pos: (u64, u16),
    rx: broadcast::Receiver<WatchMsg>,
    backlog: VecDeque<Arc<Event>>,
    catching_up: bool,
}

const HISTORY_CHUNK: usize = 1024;

impl Watcher {
    /// The revision up to which every change has been delivered (for bookmarks).
    pub fn progress(&mut self) -> u64 {
        // Applied is published after the events it covers are sent: read it first, and if no
        // event is then waiting, everything up to it has been seen.
        let applied = self.reader.applied();
        if self.backlog.is_empty()
            && !self.catching_up
            && self.rx.is_empty()
            && applied > self.pos.0
        {
            self.pos = (applied, u16::MAX);
        }
        self.pos.0
    }

    pub async fn next(&mut self) -> Result<Arc<Event>, WatchError> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                return Ok(e);
            }
            if self.catching_up {
                let events = self.reader.read_history(self.pos, HISTORY_CHUNK)?;
                self.catching_up = events.len() == HISTORY_CHUNK;
                for e in events {
                    self.pos = (e.revision, e.idx);
                    if e.key.starts_with(&self.prefix) {
                        self.backlog.push_back(Arc::new(e));
                    }
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(WatchMsg::Event(e)) => {
                    if (e.revision, e.idx) <= self.pos {
                        continue;
                    }
                    self.pos = (e.revision, e.idx);
                    if e.key.starts_with(&self.prefix) {
                        return Ok(e);
                    }
                }
                Ok(WatchMsg::Reset) => {
                    let oldest = self.reader.compacted().unwrap_or(self.pos.0);
                    return Err(WatchError::Expired {
                        requested: self.pos.0,
                        oldest,
                    });
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
                Err(broadcast::error::RecvError::Closed) => return Err(WatchError::Closed),
            }
        }
    }
}

/// How much watch history the state machine keeps (in revisions) before compacting.
#[derive(Debug, Clone, Copy)]
pub struct HistoryConfig {
    pub keep_revisions: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            keep_revisions: 100_000,
        }
    }
}

pub struct StateMachine {
    db: Arc<DB>,
    events: broadcast::Sender<WatchMsg>,
    applied_tx: watch::Sender<u64>,
    reader: StoreReader,
    history: HistoryConfig,
    compacted: u64,
}

#[derive(Serialize, Deserialize)]
struct SnapshotData {
    applied: Option<LogId>,
    membership: StoredMembership,
    objects: Vec<(String, u64, String)>,
}

/// The current snapshot is kept as its JSON meta and its raw bytes, under two keys.
fn put_snapshot(
    db: &DB,
    batch: &mut rocksdb::WriteBatch,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), StorageError> {
    batch.put_cf(cf(db, CF_SM), "snapshot_meta", to_json(meta)?);
    batch.put_cf(cf(db, CF_SM), "snapshot_data", data);
    Ok(())
}

impl StateMachine {
    pub fn new(db: Arc<DB>, history: HistoryConfig) -> Result<Self, StorageError> {
        let applied: Option<LogId> = get_json(&db, CF_SM, "applied")?;
        let compacted: u64 = get_json(&db, CF_SM, "compacted")?.unwrap_or(0);
        let (applied_tx, applied_rx) = watch::channel(applied.map(|l| l.index).unwrap_or(0));
        let (events, _) = broadcast::channel(16 * 1024);
        let reader = StoreReader {
            db: db.clone(),
            events: events.clone(),
            applied: applied_rx,
        };
        Ok(Self {
            db,
            events,
            applied_tx,
            reader,
            history,
            compacted,
        })
    }

    pub fn reader(&self) -> StoreReader {
        self.reader.clone()
    }

    fn compact_if_due(
        &mut self,
        batch: &mut rocksdb::WriteBatch,
        applied: u64,
    ) -> Result<(), StorageError> {
        let keep = self.history.keep_revisions.max(1);
        // Compact in steps of a tenth of the kept history, not on every apply.
        if applied <= self.compacted + keep + keep / 10 {
            return Ok(());
        }
        let new_compacted = applied - keep;
        batch.delete_range_cf(
            cf(&self.db, CF_EVENTS),
            event_key(0, 0),
            event_key(new_compacted + 1, 0),
        );
        batch.put_cf(cf(&self.db, CF_SM), "compacted", to_json(&new_compacted)?);
        self.compacted = new_compacted;
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = get_json(&self.db, CF_SM, "applied")?;
        let membership = get_json(&self.db, CF_SM, "membership")?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<TxnResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let db = self.db.clone();
        let objects = cf(&db, CF_OBJECTS);
        let events_cf = cf(&db, CF_EVENTS);
        let mut batch = rocksdb::WriteBatch::default();
        let mut overlay: HashMap<String, Option<Stored>> = HashMap::new();
        let mut published = Vec::new();
        let mut results = Vec::new();
        let mut last = None;
        let mut membership = None;
        for entry in entries {
            let revision = entry.log_id.index;
            last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => results.push(TxnResult::Committed {
                    revision,
                    results: vec![],
                }),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    results.push(TxnResult::Committed {
                        revision,
                        results: vec![],
                    });
                }
                EntryPayload::Normal(txn) => {
                    let mut read_err_seen = None;
                    let current = |key: &str| match overlay.get(key) {
                        Some(v) => v.clone(),
                        None => match self.reader.get(key) {
                            Ok(v) => v,
                            Err(e) => {
                                read_err_seen = Some(e);
                                None
                            }
                        },
                    };
                    let decided = if txn.independent {
                        Ok(decide_each(&txn, revision, current))
                    } else {
                        decide(&txn, revision, current)
                            .map(|changes| changes.into_iter().map(Ok).collect())
                    };
                    if let Some(e) = read_err_seen {
                        return Err(e);
                    }
                    match decided {
                        Err((op, failure)) => results.push(TxnResult::Failed {
                            revision,
                            op,
                            failure,
                        }),
                        Ok(outcomes) => {
                            let mut op_results = Vec::with_capacity(outcomes.len());
                            let mut idx: u16 = 0;
                            for outcome in outcomes {
                                let change = match outcome {
                                    Ok(change) => change,
                                    Err(failure) => {
                                        op_results.push(Err(failure));
                                        continue;
                                    }
                                };
                                let event = match change {
                                    Change::Put { key, value, prev } => {
                                        let stored = Stored {
                                            revision,
                                            value: value.clone(),
                                        };
                                        batch.put_cf(objects, key.as_bytes(), stored.encode());
                                        overlay.insert(key.clone(), Some(stored));
                                        Event {
                                            revision,
                                            idx,
                                            kind: EventKind::Put,
                                            key,
                                            value,
                                            prev,
                                        }
                                    }
                                    Change::Delete { key, prev } => {
                                        batch.delete_cf(objects, key.as_bytes());
                                        overlay.insert(key.clone(), None);
                                        Event {
                                            revision,
                                            idx,
                                            kind: EventKind::Delete,
                                            key,
                                            value: prev,
                                            prev: None,
                                        }
                                    }
                                };
                                batch.put_cf(events_cf, event_key(revision, idx), to_json(&event)?);
                                idx = idx.checked_add(1).ok_or_else(|| {
                                    write_err("a transaction has over 65535 operations")
                                })?;
                                op_results.push(Ok(crate::txn::OpResult {
                                    key: event.key.clone(),
                                    value: event.value.clone(),
                                }));
                                published.push(Arc::new(event));
                            }
                            if txn.independent {
                                results.push(TxnResult::Each {
                                    revision,
                                    results: op_results,
                                });
                            } else {
                                results.push(TxnResult::Committed {
                                    revision,
                                    results: op_results.into_iter().flatten().collect(),
                                });
                            }
                        }
                    }
                }
            }
        }
        let Some(last) = last else { return Ok(results) };
        batch.put_cf(cf(&db, CF_SM), "applied", to_json(&Some(last))?);
        if let Some(m) = &membership {
            batch.put_cf(cf(&db, CF_SM), "membership", to_json(m)?);
        }
        self.compact_if_due(&mut batch, last.index)?;
        db.write(batch).map_err(write_err)?;
        for e in published {
            // No receiver is fine: nobody is watching.
            let _ = self.events.send(WatchMsg::Event(e));
        }
        self.applied_tx.send_replace(last.index);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let data: SnapshotData = serde_json::from_slice(&bytes).map_err(read_err)?;
        let db = self.db.clone();
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_range_cf(
            cf(&db, CF_OBJECTS),
            [0u8].as_slice(),
            [0xFFu8; 4].as_slice(),
        );
        batch.delete_range_cf(
            cf(&db, CF_EVENTS),
            event_key(0, 0),
            event_key(u64::MAX, u16::MAX),
        );
        for (key, revision, value) in data.objects {
            batch.put_cf(
                cf(&db, CF_OBJECTS),
                key.as_bytes(),
                Stored { revision, value }.encode(),
            );
        }
        let applied = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        batch.put_cf(cf(&db, CF_SM), "applied", to_json(&meta.last_log_id)?);
        batch.put_cf(
            cf(&db, CF_SM),
            "membership",
            to_json(&meta.last_membership)?,
        );
        batch.put_cf(cf(&db, CF_SM), "compacted", to_json(&applied)?);
        put_snapshot(&db, &mut batch, meta, &bytes)?;
        db.write_opt(batch, &sync_opts()).map_err(write_err)?;
        self.compacted = applied;
        let _ = self.events.send(WatchMsg::Reset);
        self.applied_tx.send_replace(applied);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some(meta) = get_json::<SnapshotMeta>(&self.db, CF_SM, "snapshot_meta")? else {
            return Ok(None);
        };
        let data = self
            .db
            .get_cf(cf(&self.db, CF_SM), "snapshot_data")
            .map_err(read_err)?
            .unwrap_or_default();
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

pub struct SnapshotBuilder {
    db: Arc<DB>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let db = self.db.clone();
        let snap = db.snapshot();
        let read = |key: &str| -> Result<Option<Vec<u8>>, StorageError> {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snap);
            db.get_cf_opt(cf(&db, CF_SM), key, &ro).map_err(read_err)
        };
        let applied: Option<LogId> = match read("applied")? {
            Some(b) => serde_json::from_slice(&b).map_err(read_err)?,
            None => None,
        };
        let membership: StoredMembership = match read("membership")? {
            Some(b) => serde_json::from_slice(&b).map_err(read_err)?,
            None => StoredMembership::default(),
        };
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        let mut objects = Vec::new();
        for kv in db.iterator_cf_opt(cf(&db, CF_OBJECTS), ro, IteratorMode::Start) {
            let (k, v) = kv.map_err(read_err)?;
            let key = String::from_utf8(k.to_vec()).map_err(read_err)?;
            let s = Stored::decode(&v)
                .ok_or_else(|| read_err(format!("stored value of {key} is corrupt")))?;
            objects.push((key, s.revision, s.value));
        }
        let data = serde_json::to_vec(&SnapshotData {
            applied,
            membership: membership.clone(),
            objects,
        })
        .map_err(write_err)?;
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id: format!("{}-{}", applied.map(|l| l.index).unwrap_or(0), uuid_like()),
        };
        let mut batch = rocksdb::WriteBatch::default();
        put_snapshot(&db, &mut batch, &meta, &data)?;
        db.write_opt(batch, &sync_opts()).map_err(write_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}")
}
