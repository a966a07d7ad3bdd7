//! The DNS flags of `corral server` and `corral up`, and starting the cluster DNS server beside
//! the API (on every server: all of them answer).

use std::net::SocketAddr;

use clap::Args;
use corral_dns::{DnsConfig, DnsServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug, Clone)]
pub struct DnsArgs {
    /// The cluster domain DNS answers for (`<svc>.<ns>.svc.<domain>`).
    #[arg(long, env = "CORRAL_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Where DNS forwards names outside the cluster domain (IP:PORT[,IP:PORT...]; a bare IP
    /// means port 53). Without one such names are refused.
    #[arg(long, env = "CORRAL_DNS_UPSTREAM", default_value = "")]
    pub dns_upstream: String,
}

/// Binds the DNS server on `listen` and serves it until `shutdown`, reading Services and
/// Endpoints through the API server at `api`; answers where it listens.
pub async fn start(
    listen: SocketAddr,
    args: &DnsArgs,
    api: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let mut config = DnsConfig::new(listen);
    config.domain = args.cluster_domain.clone();
    config.upstreams =
        corral_dns::parse_upstreams(&args.dns_upstream).map_err(anyhow::Error::msg)?;
    let server = DnsServer::bind(config).await?;
    let addr = server.local_addr();
    let client = corral_client::Client::connect(&[crate::server::loopback(api).to_string()])?;
    Ok((addr, tokio::spawn(server.run(client, shutdown))))
}
