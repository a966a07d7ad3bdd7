//! The cluster DNS server: Kubernetes DNS-Based Service Discovery (schema 1.1.0) for the
//! cluster domain, on UDP and TCP, served by hickory-server. Every Corral server runs one (and
//! `corral up` does); each answers from its own informers' caches, so any server answers while
//! any other is down.
//!
//! The answers are computed ahead: the feed turns the Services, Endpoints and Namespaces into a
//! [`Zone`] (a hash map from name to its records by type) whenever they change, and a query is
//! one lookup in it. Names outside the zone are forwarded to the configured upstreams, or
//! refused when there are none.
//!
//! Layout:
//! - `model`: what DNS reads of Services and Endpoints.
//! - `zone`: the zone, built from them (pure), and its lookup: the records of every name the
//!   spec defines, NXDOMAIN versus NODATA, the SOA of negative answers.
//! - `handler`: hickory's `RequestHandler`: EDNS, opcodes, one question, the zone or the
//!   upstream.
//! - `forward`: the upstream exchange (UDP, TCP after truncation, next upstream on failure).
//! - `feed`: informers → debounced rebuilds of the zone.
//! - `server`: binding UDP and TCP, running hickory's `Server` until shutdown.

mod feed;
pub mod forward;
pub mod handler;
pub mod model;
mod server;
pub mod zone;

pub use server::{DnsConfig, DnsError, DnsServer};
pub use zone::{DEFAULT_TTL, SCHEMA_VERSION, Zone, ZoneConfig};

/// Parses `--dns-upstream` (`HOST:PORT[,HOST:PORT...]`, a bare IP meaning port 53).
pub fn parse_upstreams(text: &str) -> Result<Vec<std::net::SocketAddr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<std::net::SocketAddr>()
                .or_else(|_| {
                    s.parse::<std::net::IpAddr>()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                })
                .map_err(|_| {
                    format!("--dns-upstream: {s:?} is not IP:PORT (or an IP, for port 53)")
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn upstreams_parse_with_or_without_a_port() {
        assert_eq!(
            super::parse_upstreams("10.0.0.1, 127.0.0.1:5353,[::1]:53").expect("valid"),
            vec![
                "10.0.0.1:53".parse().expect("addr"),
                "127.0.0.1:5353".parse().expect("addr"),
                "[::1]:53".parse().expect("addr"),
            ]
        );
        assert!(
            super::parse_upstreams("")
                .expect("empty is none")
                .is_empty()
        );
        let err = super::parse_upstreams("dns.example:53").expect_err("a host name");
        assert!(err.contains("dns.example:53"), "{err}");
    }
}
