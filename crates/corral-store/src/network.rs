//! Raft traffic over gRPC (`corral.v1.Raft` on --peer-listen): the client side openraft drives
//! (append entries, vote, snapshot chunks) and the server side that feeds a peer's calls to the
//! local Raft, plus the two calls only the leader answers: a forwarded write and a read index.
//! Payloads are JSON of openraft's own (serde) types.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_proto::v1::RaftMessage;
use corral_proto::v1::raft_client::RaftClient;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tonic::transport::{Channel, Endpoint};

use crate::txn::{Txn, TxnResult};
use crate::typ::{Node, NodeId, TypeConfig};

/// Lazily connected gRPC channels to peers, by Raft address.
#[derive(Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, RaftClient<Channel>>>>,
}

impl Peers {
    pub fn client(&self, addr: &str) -> Result<RaftClient<Channel>, String> {
        let mut map = self
            .channels
            .lock()
            .map_err(|_| "peer table lock poisoned".to_string())?;
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5));
        let client = RaftClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        map.insert(addr.to_string(), client.clone());
        Ok(client)
    }
}

pub fn encode<T: Serialize>(v: &T) -> Result<RaftMessage, tonic::Status> {
    serde_json::to_vec(v)
        .map(|data| RaftMessage {
            data,
            payload: Vec::new(),
        })
        .map_err(|e| tonic::Status::internal(format!("encoding a Raft message: {e}")))
}

pub fn decode<T: DeserializeOwned>(m: &RaftMessage) -> Result<T, tonic::Status> {
    serde_json::from_slice(&m.data)
        .map_err(|e| tonic::Status::invalid_argument(format!("decoding a Raft message: {e}")))
}

pub struct NetworkFactory {
    pub peers: Peers,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConn;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerConn {
            target,
            client: self.peers.client(&node.addr),
        }
    }
}

pub struct PeerConn {
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

fn transport_error<E: std::error::Error>(status: &tonic::Status) -> RpcErr<E> {
    let io = std::io::Error::other(status.to_string());
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => {
            RPCError::Unreachable(Unreachable::new(&io))
        }
        _ => RPCError::Network(NetworkError::new(&io)),
    }
}

impl PeerConn {
    async fn call<Req, Resp, E>(
        &mut self,
        which: &'static str,
        req: &Req,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = self.client.as_mut().map_err(|e| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.clone())))
        })?;
        let mut msg = encode(req).map_err(|s| {
            RPCError::Network(NetworkError::new(&std::io::Error::other(s.to_string())))
        })?;
        msg.payload = payload;
        let mut request = tonic::Request::new(msg);
        request.set_timeout(option.hard_ttl());
        let resp = match which {
            "append" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        }
        .map_err(|s| transport_error::<E>(&s))?;
        let result: Result<Resp, RaftError<NodeId, E>> = decode(resp.get_ref()).map_err(|s| {
            RPCError::Network(NetworkError::new(&std::io::Error::other(s.to_string())))
        })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.call("append", &rpc, Vec::new(), &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let mut rpc = rpc;
        let chunk = std::mem::take(&mut rpc.data);
        self.call("snapshot", &rpc, chunk, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.call("vote", &rpc, Vec::new(), &option).await
    }

    /// Retry an unreachable peer every 100 ms (openraft's default waits 500 ms), so a restarted
    /// server is caught up, and can take part in the next election, within a few heartbeats.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}

/// What a leader answers to a forwarded write.
#[derive(Debug, Serialize, Deserialize)]
pub enum Forwarded {
    Applied(TxnResult),
    /// The receiver is not the leader (any more); the caller retries against `leader`.
    NotLeader {
        leader: Option<NodeId>,
    },
    Failed(String),
}

/// What a leader answers to a read-index request.
#[derive(Debug, Serialize, Deserialize)]
pub enum ReadIndex {
    Index(u64),
    NotLeader { leader: Option<NodeId> },
    Failed(String),
}

/// A cluster-admin request run on the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipChange {
    Add { id: NodeId, addr: String },
    Remove { id: NodeId },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ChangeResult {
    Done,
    NotLeader { leader: Option<NodeId> },
    Failed(String),
}

/// The peer-facing gRPC service of one server.
pub struct RaftService {
    pub(crate) store: crate::node::Store,
}

#[tonic::async_trait]
impl corral_proto::v1::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref())?;
        let res = self.store.raft().append_entries(rpc).await;
        encode(&res).map(tonic::Response::new)
    }

    async fn vote(
        &self,
        req: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let rpc: VoteRequest<NodeId> = decode(req.get_ref())?;
        let res = self.store.raft().vote(rpc).await;
        encode(&res).map(tonic::Response::new)
    }

    async fn install_snapshot(
        &self,
        req: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let mut rpc: InstallSnapshotRequest<TypeConfig> = decode(req.get_ref())?;
        rpc.data = req.into_inner().payload;
        let res = self.store.raft().install_snapshot(rpc).await;
        encode(&res).map(tonic::Response::new)
    }

    async fn forward(
        &self,
        req: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let txn: Txn = decode(req.get_ref())?;
        encode(&self.store.write_as_leader(txn).await).map(tonic::Response::new)
    }

    async fn read_index(
        &self,
        _req: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        encode(&self.store.read_index_as_leader().await).map(tonic::Response::new)
    }

    async fn change_membership(
        &self,
        req: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let change: MembershipChange = decode(req.get_ref())?;
        encode(&self.store.change_membership_as_leader(change).await).map(tonic::Response::new)
    }
}
