//! Names outside the cluster zone go to the configured upstream servers: the client's query as
//! it came (same id, same EDNS), over UDP from a fresh socket per query (a random source port),
//! again over TCP when the UDP answer is truncated, to the next upstream when one does not
//! answer in time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream DNS server is configured")]
    NoUpstream,
    #[error("upstream {upstream}: {message}")]
    Failed {
        upstream: SocketAddr,
        message: String,
    },
}

/// The upstream servers, tried in turn (starting with the next one for each query, so the load
/// is spread).
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    next: AtomicUsize,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Forwarder {
        Forwarder {
            upstreams,
            timeout,
            next: AtomicUsize::new(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    /// Sends `query` (a DNS message on the wire) and answers the first upstream's reply.
    pub async fn exchange(&self, query: &[u8]) -> Result<Message, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = ForwardError::NoUpstream;
        for i in 0..self.upstreams.len() {
            let upstream = self.upstreams[(start + i) % self.upstreams.len()];
            match tokio::time::timeout(self.timeout, exchange_one(upstream, query)).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(message)) => last = ForwardError::Failed { upstream, message },
                Err(_) => {
                    last = ForwardError::Failed {
                        upstream,
                        message: format!("no answer within {:?}", self.timeout),
                    }
                }
            }
            tracing::debug!(error = %last, "upstream DNS failed; trying the next");
        }
        Err(last)
    }

    /// Resolves `name`/`qtype` upstream (recursion desired): the records of the answer section.
    pub async fn resolve(&self, name: &Name, qtype: RecordType) -> Result<Message, ForwardError> {
        let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(name.clone(), qtype));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        msg.set_edns(edns);
        let bytes = msg.to_vec().map_err(|e| ForwardError::Failed {
            upstream: self
                .upstreams
                .first()
                .copied()
                .unwrap_or(([0, 0, 0, 0], 0).into()),
            message: format!("cannot encode the query: {e}"),
        })?;
        self.exchange(&bytes).await
    }
}

fn id_of(message: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*message.first()?, *message.get(1)?]))
}

async fn exchange_one(upstream: SocketAddr, query: &[u8]) -> Result<Message, String> {
    let local: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(upstream).await.map_err(|e| e.to_string())?;
    socket.send(query).await.map_err(|e| e.to_string())?;
    let id = id_of(query);
    let mut buf = vec![0u8; 65535];
    let reply = loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // A reply to another query (a stray or spoofed datagram) is not ours: keep waiting.
        if id_of(&buf[..n]) != id {
            continue;
        }
        match Message::from_vec(&buf[..n]) {
            Ok(m) => break m,
            Err(e) => return Err(format!("unreadable reply: {e}")),
        }
    };
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    exchange_tcp(upstream, query).await
}

async fn exchange_tcp(upstream: SocketAddr, query: &[u8]) -> Result<Message, String> {
    let mut stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long for TCP".to_string())?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    Message::from_vec(&buf).map_err(|e| format!("unreadable reply: {e}"))
}
