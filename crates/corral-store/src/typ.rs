//! The openraft type configuration, declared once, and short aliases for the types built on it.

use std::io::Cursor;

use crate::txn::{Txn, TxnResult};

openraft::declare_raft_types!(
    /// Corral's Raft: a log of [`Txn`]s, each applied to the object store as one revision.
    pub TypeConfig:
        D = Txn,
        R = TxnResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, Node>;
