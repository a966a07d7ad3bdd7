//! Corral's replicated object store: openraft (storage-v2) with a RocksDB log and state machine,
//! Raft traffic over gRPC, and etcd's semantics on top: every write is one Raft entry whose log
//! index is the revision, transactions with preconditions, a watch history with compaction, and
//! snapshots that lagging or new servers install.
//!
//! Layout:
//! - `typ`: the openraft type configuration and aliases.
//! - `txn`: transactions and the pure function deciding one against current state.
//! - `db`: the RocksDB instance and its column families.
//! - `log_store`: the Raft log (group-committed appends, synced vote/truncate/purge).
//! - `state_machine`: objects, watch history, snapshots; `StoreReader` and `Watcher` for readers.
//! - `network`: gRPC Raft transport, client and server, plus leader forwarding.
//! - `node`: `Store`, one server's replica: bootstrap, write, read barrier, membership.
//! - `leader`: `LeaderHost`, which runs components only while this server leads.

// openraft's storage traits return its `StorageError` (large); the helpers around them share it
// rather than converting back and forth on every call.
#![allow(clippy::result_large_err)]

pub mod db;
pub mod leader;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod txn;
pub mod typ;

pub use leader::{Component, LeaderHost, component};
pub use network::MembershipChange;
pub use node::{Store, StoreConfig, StoreError};
pub use state_machine::{Event, EventKind, HistoryConfig, StoreReader, WatchError, Watcher};
pub use txn::{Action, Failure, Op, OpResult, Pre, Stored, Txn, TxnResult};
