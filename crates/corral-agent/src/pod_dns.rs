//! A pod's resolver configuration as the kubelet works it out (`pkg/kubelet/network/dns`): from
//! `spec.dnsPolicy`, `spec.dnsConfig`, `spec.hostNetwork`, the agent's `--cluster-dns` and
//! `--cluster-domain`, and the node's own `/etc/resolv.conf`.
//!
//! - `ClusterFirst` (the default): the cluster DNS servers, the search path
//!   `<ns>.svc.<domain> svc.<domain> <domain>` and `ndots:5`. A `hostNetwork` pod with
//!   `ClusterFirst` uses the node's resolver instead (`ClusterFirstWithHostNet` keeps the
//!   cluster's). Without `--cluster-dns` the kubelet falls back to `Default` and says so.
//! - `Default`: the node's resolver.
//! - `None`: only what `spec.dnsConfig` gives.
//! - `spec.dnsConfig` is then merged in: nameservers and searches appended (without
//!   duplicates), options merged by name (the pod's value wins).

use std::net::IpAddr;

use serde_json::Value;

use crate::runtime::DnsConfig;

/// Kubernetes' default cluster domain.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The agent's cluster DNS settings (kubelet's `--cluster-dns`, `--cluster-domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    pub servers: Vec<IpAddr>,
    pub domain: String,
}

impl Default for ClusterDns {
    fn default() -> Self {
        ClusterDns {
            servers: Vec::new(),
            domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
        }
    }
}

/// What [`pod_dns`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDns {
    /// `None`: the runtime keeps the node's resolver as it is.
    pub config: Option<DnsConfig>,
    /// The kubelet's `MissingClusterDNS` warning, when the pod wanted the cluster DNS and the
    /// agent has none configured.
    pub warning: Option<String>,
}

/// The pod's resolver configuration. `host` reads the node's resolver (only called when the
/// node's configuration has to be merged with the pod's `dnsConfig`).
pub fn pod_dns(pod: &Value, cluster: &ClusterDns, host: impl FnOnce() -> DnsConfig) -> PodDns {
    let policy = pod
        .pointer("/spec/dnsPolicy")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("ClusterFirst");
    let host_network = pod
        .pointer("/spec/hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let pod_config = pod.pointer("/spec/dnsConfig").filter(|v| v.is_object());
    let mut warning = None;
    let mut kind = match policy {
        "ClusterFirstWithHostNet" => Kind::Cluster,
        "ClusterFirst" if !host_network => Kind::Cluster,
        "None" => Kind::None,
        _ => Kind::Host,
    };
    if kind == Kind::Cluster && cluster.servers.is_empty() {
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let ns = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        warning = Some(format!(
            "pod: \"{name}_{ns}\". kubelet does not have ClusterDNS IP configured and cannot create Pod using \"{policy}\" policy. Falling back to \"Default\" policy."
        ));
        kind = Kind::Host;
    }
    let mut config = match kind {
        Kind::Cluster => {
            let ns = pod
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default");
            let domain = cluster.domain.trim_end_matches('.');
            DnsConfig {
                nameservers: cluster.servers.iter().map(IpAddr::to_string).collect(),
                searches: vec![
                    format!("{ns}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.to_string(),
                ],
                options: vec!["ndots:5".to_string()],
            }
        }
        Kind::None => DnsConfig::default(),
        Kind::Host => match pod_config {
            // The runtime's own copy of the node's resolver serves as it is.
            None => {
                return PodDns {
                    config: None,
                    warning,
                };
            }
            Some(_) => host(),
        },
    };
    if let Some(extra) = pod_config {
        merge(&mut config, extra);
    }
    PodDns {
        config: Some(config),
        warning,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cluster,
    Host,
    None,
}

/// Appends `spec.dnsConfig` to `config` as the kubelet's `appendDNSConfig` does.
fn merge(config: &mut DnsConfig, extra: &Value) {
    let strings = |key: &str| -> Vec<String> {
        extra
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    for ns in strings("nameservers") {
        if !config.nameservers.contains(&ns) {
            config.nameservers.push(ns);
        }
    }
    for s in strings("searches") {
        if !config.searches.contains(&s) {
            config.searches.push(s);
        }
    }
    for opt in extra
        .get("options")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = opt.get("name").and_then(Value::as_str) else {
            continue;
        };
        let text = match opt.get("value").and_then(Value::as_str) {
            Some(v) => format!("{name}:{v}"),
            None => name.to_string(),
        };
        let same_name = |o: &String| o.split(':').next() == Some(name);
        match config.options.iter_mut().find(|o| same_name(o)) {
            Some(o) => *o = text,
            None => config.options.push(text),
        }
    }
}

/// The pod's host name (`spec.hostname`, else its name, cut to 63 characters) and domain
/// (`<subdomain>.<namespace>.svc.<cluster domain>` when it has `spec.subdomain`, else empty).
pub fn pod_hostname(pod: &Value, cluster_domain: &str) -> (String, String) {
    let text = |ptr: &str| {
        pod.pointer(ptr)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let mut hostname = text("/spec/hostname")
        .or_else(|| text("/metadata/name"))
        .unwrap_or_default()
        .to_string();
    if hostname.len() > 63 {
        let mut cut = 63;
        while !hostname.is_char_boundary(cut) {
            cut -= 1;
        }
        hostname.truncate(cut);
        hostname = hostname.trim_end_matches(['-', '.']).to_string();
    }
    let ns = text("/metadata/namespace").unwrap_or("default");
    let domain = text("/spec/subdomain")
        .map(|sub| format!("{sub}.{ns}.svc.{}", cluster_domain.trim_end_matches('.')))
        .unwrap_or_default();
    (hostname, domain)
}

/// Reads a resolv.conf: `nameserver`, `search` (and `domain`), `options`; comments and unknown
/// lines are skipped.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut c = DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => c.nameservers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                c.searches = words.map(str::to_string).collect();
            }
            Some("options") => c.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    c
}

/// The node's resolver (`/etc/resolv.conf`); empty when unreadable.
pub fn node_resolv_conf() -> DnsConfig {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| parse_resolv_conf(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cluster() -> ClusterDns {
        ClusterDns {
            servers: vec!["10.96.0.10".parse().expect("ip")],
            domain: "cluster.local".into(),
        }
    }

    fn host() -> DnsConfig {
        parse_resolv_conf(
            "# the node's\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n",
        )
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "web-0", "namespace": "shop"}, "spec": spec})
    }

    #[test]
    fn cluster_first_gives_the_kubernetes_search_path_and_ndots_5() {
        let d = pod_dns(&pod(json!({})), &cluster(), host);
        let c = d.config.expect("a config");
        assert_eq!(
            c.resolv_conf(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        assert_eq!(d.warning, None);
    }

    #[test]
    fn a_custom_cluster_domain_and_two_servers() {
        let cl = ClusterDns {
            servers: vec![
                "172.30.0.11".parse().expect("ip"),
                "172.30.0.12".parse().expect("ip"),
            ],
            domain: "corral.test.".into(),
        };
        let c = pod_dns(&pod(json!({"dnsPolicy": "ClusterFirst"})), &cl, host)
            .config
            .expect("a config");
        assert_eq!(c.nameservers, ["172.30.0.11", "172.30.0.12"]);
        assert_eq!(
            c.searches,
            ["shop.svc.corral.test", "svc.corral.test", "corral.test"]
        );
    }

    #[test]
    fn host_network_uses_the_node_resolver_unless_cluster_first_with_host_net() {
        let d = pod_dns(&pod(json!({"hostNetwork": true})), &cluster(), || {
            panic!("not read without dnsConfig")
        });
        assert_eq!(d.config, None);
        let c = pod_dns(
            &pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            &cluster(),
            host,
        )
        .config
        .expect("a config");
        assert_eq!(c.nameservers, ["10.96.0.10"]);
    }

    #[test]
    fn without_cluster_dns_it_falls_back_to_default_with_a_warning() {
        let d = pod_dns(&pod(json!({})), &ClusterDns::default(), host);
        assert_eq!(d.config, None);
        let w = d.warning.expect("a warning");
        assert!(
            w.contains("kubelet does not have ClusterDNS IP configured"),
            "{w}"
        );
        assert!(w.contains("\"web-0_shop\""), "{w}");
    }

    #[test]
    fn none_takes_only_the_pods_dns_config() {
        let c = pod_dns(
            &pod(json!({"dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.2.3.4"],
                "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]
            }})),
            &cluster(),
            host,
        )
        .config
        .expect("a config");
        assert_eq!(
            c.resolv_conf(),
            "search ns1.svc.cluster-domain.example my.dns.search.suffix\nnameserver 1.2.3.4\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn dns_config_merges_into_cluster_first_options_by_name() {
        let c = pod_dns(
            &pod(json!({"dnsConfig": {
                "nameservers": ["10.96.0.10", "8.8.8.8"],
                "searches": ["svc.cluster.local", "extra.example"],
                "options": [{"name": "ndots", "value": "1"}, {"name": "timeout", "value": "2"}]
            }})),
            &cluster(),
            host,
        )
        .config
        .expect("a config");
        assert_eq!(c.nameservers, ["10.96.0.10", "8.8.8.8"]);
        assert_eq!(
            c.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "extra.example"
            ]
        );
        assert_eq!(c.options, ["ndots:1", "timeout:2"]);
    }

    #[test]
    fn default_with_dns_config_merges_into_the_nodes_resolver() {
        let c = pod_dns(
            &pod(json!({"dnsPolicy": "Default", "dnsConfig": {"options": [{"name": "edns0"}, {"name": "ndots", "value": "3"}]}})),
            &cluster(),
            host,
        )
        .config
        .expect("a config");
        assert_eq!(c.nameservers, ["192.0.2.53"]);
        assert_eq!(c.searches, ["corp.example"]);
        assert_eq!(c.options, ["edns0", "ndots:3"]);
    }

    #[test]
    fn hostname_and_subdomain_give_the_pods_fqdn() {
        let p = json!({"metadata": {"name": "web-0", "namespace": "shop"},
                       "spec": {"subdomain": "nginx"}});
        assert_eq!(
            pod_hostname(&p, "cluster.local"),
            (
                "web-0".to_string(),
                "nginx.shop.svc.cluster.local".to_string()
            )
        );
        let p = json!({"metadata": {"name": "x"}, "spec": {"hostname": "db"}});
        assert_eq!(
            pod_hostname(&p, "cluster.local"),
            ("db".to_string(), String::new())
        );
        let long = "a".repeat(62) + "-b";
        let p = json!({"metadata": {"name": long}});
        assert_eq!(pod_hostname(&p, "cluster.local").0, "a".repeat(62));
    }

    #[test]
    fn resolv_conf_parsing_skips_comments_and_unknown_lines() {
        let c = parse_resolv_conf(
            "; generated\nnameserver 127.0.0.11 # embedded\nsortlist 10.0.0.0\nsearch a.example b.example\noptions ndots:0 rotate\n",
        );
        assert_eq!(c.nameservers, ["127.0.0.11"]);
        assert_eq!(c.searches, ["a.example", "b.example"]);
        assert_eq!(c.options, ["ndots:0", "rotate"]);
    }
}
