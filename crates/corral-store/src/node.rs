//! One server's replica of the store: opens RocksDB, runs openraft, bootstraps from the static
//! peer list, and offers writes (forwarded to the leader when this server is not it), linearizable
//! read barriers (read index) and membership changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::v1::raft_client::RaftClient;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::db;
use crate::log_store::LogStore;
use crate::network::{
    ChangeResult, Forwarded, MembershipChange, NetworkFactory, Peers, RaftService, ReadIndex,
    decode, encode,
};
use crate::state_machine::{HistoryConfig, StateMachine, StoreReader};
use crate::txn::{Txn, TxnResult};
use crate::typ::{NodeId, Raft, RaftMetrics};

/// How a server's replica is set up. Defaults suit a LAN or loopback cluster.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub id: NodeId,
    pub data_dir: PathBuf,
    /// This server's Raft (peer) address as the others reach it.
    pub advertise: String,
    /// The initial members (id → Raft address); used once, when the store is empty.
    pub peers: BTreeMap<NodeId, String>,
    /// Do not bootstrap: wait to be added to an existing cluster with AddServer.
    pub join: bool,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many applied entries since the last.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot (for lagging followers).
    pub keep_logs: u64,
    pub history: HistoryConfig,
    /// How long a write waits for a leader before it answers Unavailable.
    pub write_timeout: Duration,
}

impl StoreConfig {
    pub fn new(
        id: NodeId,
        data_dir: PathBuf,
        advertise: String,
        peers: BTreeMap<NodeId, String>,
    ) -> Self {
        Self {
            id,
            data_dir,
            advertise,
            peers,
            join: false,
            heartbeat_ms: 50,
            election_min_ms: 100,
            election_max_ms: 200,
            snapshot_every: 10_000,
            keep_logs: 1_000,
            history: HistoryConfig::default(),
            write_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Open(#[from] db::OpenError),
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    #[error("starting Raft: {0}")]
    Start(String),
    /// No leader could take the request in time (retryable).
    #[error("no leader is available: {message}")]
    NoLeader {
        message: String,
        leader: Option<String>,
    },
    /// The request reached a leader that failed while handling it: it may or may not have been applied.
    #[error("the write's outcome is unknown: {0}")]
    Ambiguous(String),
    #[error("storage: {0}")]
    Storage(String),
}

struct Inner {
    id: NodeId,
    raft: Raft,
    reader: StoreReader,
    peers: Peers,
    write_timeout: Duration,
}

/// True when a call failed before the request could reach the peer (no connection could be made),
/// so retrying it elsewhere cannot apply it twice.
fn never_sent(s: &tonic::Status) -> bool {
    let mut text = format!("{} {:?}", s.message(), s);
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        text.push_str(&e.to_string());
        source = e.source();
    }
    s.code() == tonic::Code::Unavailable
        && (text.contains("tcp connect error")
            || text.contains("Connection refused")
            || text.contains("ConnectionRefused"))
}

/// A handle on the local replica; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    pub async fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            StoreError::Storage(format!("creating {}: {e}", cfg.data_dir.display()))
        })?;
        let rdb = db::open(&cfg.data_dir.join("db"))?;
        let log = LogStore::new(rdb.clone());
        let sm =
            StateMachine::new(rdb, cfg.history).map_err(|e| StoreError::Storage(e.to_string()))?;
        let reader = sm.reader();
        let config = openraft::Config {
            cluster_name: "corral".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_min_ms,
            election_timeout_max: cfg.election_max_ms,
            install_snapshot_timeout: 2_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: cfg.keep_logs,
            // openraft 0.9 gives an AppendEntries RPC one heartbeat interval to complete and
            // resends the same range when it does not: a bounded number of entries per RPC keeps
            // a lagging follower's catch-up inside that window.
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StoreError::Config(e.to_string()))?;
        let peers = Peers::default();
        let raft = Raft::new(
            cfg.id,
            Arc::new(config),
            NetworkFactory {
                peers: peers.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(|e| StoreError::Start(e.to_string()))?;
        let store = Store {
            inner: Arc::new(Inner {
                id: cfg.id,
                raft,
                reader,
                peers,
                write_timeout: cfg.write_timeout,
            }),
        };
        if !cfg.join
            && !store
                .inner
                .raft
                .is_initialized()
                .await
                .map_err(|e| StoreError::Start(e.to_string()))?
        {
            let mut members = BTreeMap::new();
            for (id, addr) in &cfg.peers {
                members.insert(*id, BasicNode { addr: addr.clone() });
            }
            if members.is_empty() {
                members.insert(
                    cfg.id,
                    BasicNode {
                        addr: cfg.advertise.clone(),
                    },
                );
            }
            if !members.contains_key(&cfg.id) {
                return Err(StoreError::Config(format!(
                    "--peers does not list this server's id {}",
                    cfg.id
                )));
            }
            // Every member may call this with the same list; the ones that lose simply follow.
            if let Err(e) = store.inner.raft.initialize(members).await {
                tracing::debug!(error = %e, "initialize: already initialized elsewhere");
            }
        }
        Ok(store)
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub fn reader(&self) -> &StoreReader {
        &self.inner.reader
    }

    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.inner.raft.metrics()
    }

    /// The gRPC service peers call; mount it on the --peer-listen server.
    pub fn raft_service(&self) -> corral_proto::v1::raft_server::RaftServer<RaftService> {
        corral_proto::v1::raft_server::RaftServer::new(RaftService {
            store: self.clone(),
        })
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20)
    }

    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
    }

    /// (leader id, its Raft address) as this server currently knows them.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.inner.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Some((id, addr))
    }

    fn addr_of(&self, id: NodeId) -> Option<String> {
        let m = self.inner.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// Waits (until `deadline`) for a leader other than `not`.
    async fn wait_leader(&self, deadline: Instant, not: Option<NodeId>) -> Option<NodeId> {
        let mut rx = self.inner.raft.metrics();
        loop {
            let leader = rx.borrow_and_update().current_leader;
            if let Some(l) = leader
                && Some(l) != not
            {
                return Some(l);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if tokio::time::timeout(left, rx.changed())
                .await
                .ok()?
                .is_err()
            {
                return None;
            }
        }
    }

    /// A gRPC client to the peer port of `leader`.
    fn leader_client(&self, leader: NodeId) -> Result<RaftClient<Channel>, StoreError> {
        let addr = self
            .addr_of(leader)
            .ok_or_else(|| self.no_leader(format!("the address of leader {leader} is unknown")))?;
        self.inner.peers.client(&addr).map_err(StoreError::Storage)
    }

    fn no_leader(&self, message: impl Into<String>) -> StoreError {
        StoreError::NoLeader {
            message: message.into(),
            leader: self.leader().map(|l| l.1),
        }
    }

    /// Proposes `txn` and waits for it to be applied here or on the leader. Retries (until the
    /// write timeout) while there is no leader or the leader changes before taking the entry.
    pub async fn write(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let deadline = Instant::now() + self.inner.write_timeout;
        let mut not: Option<NodeId> = None;
        loop {
            let Some(leader) = self.wait_leader(deadline, not).await else {
                return Err(self.no_leader("no leader was elected in time"));
            };
            let attempt = if leader == self.inner.id {
                self.write_as_leader(txn.clone()).await
            } else {
                self.forward(leader, &txn).await?
            };
            match attempt {
                Forwarded::Applied(r) => return Ok(r),
                Forwarded::NotLeader { leader: next } => {
                    not = if next.is_some() && next != Some(leader) {
                        None
                    } else {
                        Some(leader)
                    };
                    if Instant::now() >= deadline {
                        return Err(self.no_leader("the leader kept changing"));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Forwarded::Failed(e) => return Err(StoreError::Ambiguous(e)),
            }
        }
    }

    async fn forward(&self, leader: NodeId, txn: &Txn) -> Result<Forwarded, StoreError> {
        let Some(addr) = self.addr_of(leader) else {
            return Ok(Forwarded::NotLeader { leader: None });
        };
        let mut client = self
            .inner
            .peers
            .client(&addr)
            .map_err(StoreError::Storage)?;
        let msg = encode(txn).map_err(|s| StoreError::Storage(s.message().to_string()))?;
        match client.forward(msg).await {
            Ok(resp) => {
                decode(resp.get_ref()).map_err(|s| StoreError::Ambiguous(s.message().to_string()))
            }
            // Refused before anything was sent: the leader is gone, wait for the next.
            Err(s) if never_sent(&s) => Ok(Forwarded::NotLeader { leader: None }),
            Err(s) => Err(StoreError::Ambiguous(format!(
                "forwarding to the leader {leader} at {addr}: {s}"
            ))),
        }
    }

    pub(crate) async fn write_as_leader(&self, txn: Txn) -> Forwarded {
        match self.inner.raft.client_write(txn).await {
            Ok(resp) => Forwarded::Applied(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Forwarded::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(e) => Forwarded::Failed(e.to_string()),
        }
    }

    pub(crate) async fn read_index_as_leader(&self) -> ReadIndex {
        match self.inner.raft.get_read_log_id().await {
            Ok((read, _applied)) => ReadIndex::Index(read.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                ReadIndex::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(e) => ReadIndex::Failed(e.to_string()),
        }
    }

    /// Returns once this replica has applied everything committed before the call: a read after
    /// it is linearizable (openraft's read index; a follower asks the leader for the index).
    pub async fn linearizable_barrier(&self) -> Result<u64, StoreError> {
        let deadline = Instant::now() + self.inner.write_timeout;
        let mut not = None;
        loop {
            let Some(leader) = self.wait_leader(deadline, not).await else {
                return Err(self.no_leader("no leader to confirm a linearizable read"));
            };
            let answer = if leader == self.inner.id {
                self.read_index_as_leader().await
            } else {
                let mut client = self.leader_client(leader)?;
                match client
                    .read_index(corral_proto::v1::RaftMessage::default())
                    .await
                {
                    Ok(resp) => decode(resp.get_ref())
                        .map_err(|s| StoreError::Storage(s.message().to_string()))?,
                    Err(_) => ReadIndex::NotLeader { leader: None },
                }
            };
            match answer {
                ReadIndex::Index(i) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::timeout(left, self.inner.reader.wait_applied(i))
                        .await
                        .map_err(|_| self.no_leader("this server is too far behind the leader"))?
                        .map_err(|e| StoreError::Storage(e.to_string()))?;
                    return Ok(i);
                }
                ReadIndex::NotLeader { .. } => {
                    not = Some(leader);
                    if Instant::now() >= deadline {
                        return Err(self.no_leader("the leader kept changing"));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                // The leader could not hear from a quorum in time (a loaded cluster): ask again.
                ReadIndex::Failed(e) => {
                    if Instant::now() >= deadline {
                        return Err(self.no_leader(e));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    pub(crate) async fn change_membership_as_leader(
        &self,
        change: MembershipChange,
    ) -> ChangeResult {
        let raft = &self.inner.raft;
        let not_leader = |e: &dyn std::fmt::Display| ChangeResult::Failed(e.to_string());
        if !self.is_leader() {
            return ChangeResult::NotLeader {
                leader: raft.metrics().borrow().current_leader,
            };
        }
        let voters: BTreeSet<NodeId> = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        match change {
            MembershipChange::Add { id, addr } => {
                if let Err(e) = raft.add_learner(id, BasicNode { addr }, true).await {
                    return not_leader(&e);
                }
                let mut next = voters;
                next.insert(id);
                match raft.change_membership(next, false).await {
                    Ok(_) => ChangeResult::Done,
                    Err(e) => not_leader(&e),
                }
            }
            MembershipChange::Remove { id } => {
                let mut next = voters;
                if !next.remove(&id) {
                    return ChangeResult::Failed(format!("server {id} is not a voting member"));
                }
                if next.is_empty() {
                    return ChangeResult::Failed("cannot remove the last server".into());
                }
                match raft.change_membership(next, false).await {
                    Ok(_) => ChangeResult::Done,
                    Err(e) => not_leader(&e),
                }
            }
        }
    }

    /// Adds or removes a server, on the leader wherever it is.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.inner.write_timeout * 3;
        loop {
            let Some(leader) = self.wait_leader(deadline, None).await else {
                return Err(self.no_leader("no leader to change membership"));
            };
            let res = if leader == self.inner.id {
                self.change_membership_as_leader(change.clone()).await
            } else {
                let mut client = self.leader_client(leader)?;
                let msg =
                    encode(&change).map_err(|s| StoreError::Storage(s.message().to_string()))?;
                match client.change_membership(msg).await {
                    Ok(resp) => decode(resp.get_ref())
                        .map_err(|s| StoreError::Storage(s.message().to_string()))?,
                    Err(s) => ChangeResult::Failed(s.to_string()),
                }
            };
            match res {
                ChangeResult::Done => return Ok(()),
                ChangeResult::NotLeader { .. } if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ChangeResult::NotLeader { .. } => {
                    return Err(self.no_leader("the leader kept changing"));
                }
                ChangeResult::Failed(e) => return Err(StoreError::Storage(e)),
            }
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}
