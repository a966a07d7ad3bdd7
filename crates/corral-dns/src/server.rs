//! The DNS server: UDP and TCP sockets on one address, served by hickory-server with the
//! [`Handler`], fed by the informers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use corral_client::Client;
use hickory_server::Server;
use hickory_server::proto::rr::LowerName;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::forward::Forwarder;
use crate::handler::{Handler, ZoneHandle};
use crate::zone::{DomainError, ZoneConfig};

/// How long a TCP connection may stay silent before the server closes it.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How long an upstream gets to answer before the next one is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The DNS server's settings (flags `--dns`, `--cluster-domain`, `--dns-upstream`).
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where UDP and TCP listen (port 0: a free port, the same for both).
    pub listen: SocketAddr,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// Where names outside the zone are forwarded; none: they are refused.
    pub upstreams: Vec<SocketAddr>,
    /// Record TTL (and the SOA minimum), seconds.
    pub ttl: u32,
}

impl DnsConfig {
    pub fn new(listen: SocketAddr) -> DnsConfig {
        DnsConfig {
            listen,
            domain: "cluster.local".into(),
            upstreams: Vec::new(),
            ttl: crate::zone::DEFAULT_TTL,
        }
    }
}

/// What kept the DNS server from starting.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("cannot listen for DNS on {addr} ({protocol}): {source}")]
    Bind {
        addr: SocketAddr,
        protocol: &'static str,
        source: std::io::Error,
    },
}

/// Bound sockets, ready to serve.
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
    zone: ZoneConfig,
    forwarder: Arc<Forwarder>,
}

impl DnsServer {
    /// Binds UDP and TCP on `config.listen` (with port 0, one free port for both).
    pub async fn bind(config: DnsConfig) -> Result<DnsServer, DnsError> {
        let mut zone = ZoneConfig::new(&config.domain)?;
        zone.ttl = config.ttl;
        if !config.listen.ip().is_unspecified() {
            zone.nameservers = vec![config.listen.ip()];
        }
        let (udp, tcp) = bind_pair(config.listen).await?;
        let addr = udp.local_addr().map_err(|source| DnsError::Bind {
            addr: config.listen,
            protocol: "udp",
            source,
        })?;
        Ok(DnsServer {
            udp,
            tcp,
            addr,
            zone,
            forwarder: Arc::new(Forwarder::new(config.upstreams, UPSTREAM_TIMEOUT)),
        })
    }

    /// Where UDP and TCP listen.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown`, with the zone fed through `client`'s informers.
    pub async fn run(self, client: Client, shutdown: CancellationToken) {
        let handle = ZoneHandle::default();
        let origin = LowerName::new(&self.zone.domain);
        let feed = tokio::spawn(crate::feed::run(
            client,
            self.zone,
            handle.clone(),
            shutdown.clone(),
        ));
        let mut server = Server::new(Handler::new(handle, self.forwarder, origin));
        server.register_socket(self.udp);
        server.register_listener(self.tcp, TCP_IDLE, 64);
        shutdown.cancelled().await;
        if let Err(e) = server.shutdown_gracefully().await {
            tracing::warn!(error = %e, "DNS server stopped with an error");
        }
        let _ = feed.await;
    }
}

async fn bind_pair(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let bind_err = |addr, protocol| {
        move |source| DnsError::Bind {
            addr,
            protocol,
            source,
        }
    };
    if listen.port() != 0 {
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(bind_err(listen, "udp"))?;
        let tcp = TcpListener::bind(listen)
            .await
            .map_err(bind_err(listen, "tcp"))?;
        return Ok((udp, tcp));
    }
    // Port 0: a UDP port whose TCP twin is free too.
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(bind_err(listen, "udp"))?;
        let addr = udp.local_addr().map_err(bind_err(listen, "udp"))?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(DnsError::Bind {
        addr: listen,
        protocol: "tcp",
        source: last.unwrap_or_else(|| std::io::Error::other("no free port pair")),
    })
}
