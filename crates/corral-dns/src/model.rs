//! What DNS needs of Services and Endpoints, read from their Kubernetes JSON. Anything the DNS
//! cannot use (an address that is not an IP, a port without a number) is left out with a debug
//! line: the API server validated the objects, so this only guards the name server against
//! whatever slipped through.

use std::net::IpAddr;

use serde_json::Value;

/// The Service annotation that makes not-ready addresses count as ready (spec 2.1, _ready_).
pub const TOLERATE_UNREADY: &str = "service.alpha.kubernetes.io/tolerate-unready-endpoints";

/// One Service, as DNS sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    pub kind: ServiceKind,
    pub ports: Vec<PortInfo>,
    /// `spec.publishNotReadyAddresses` or the tolerate-unready annotation: every address counts
    /// as ready.
    pub publish_not_ready: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServiceKind {
    /// A Service with cluster IPs (one per family). Empty while none is allocated yet.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the name answers the ready endpoints.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

/// A port of a Service or of an Endpoints subset.
#[derive(Debug, Clone, PartialEq)]
pub struct PortInfo {
    /// Lowercased; empty for an unnamed port (which gets no SRV record).
    pub name: String,
    /// Lowercased (`tcp`, `udp`, `sctp`).
    pub protocol: String,
    pub port: u16,
}

/// One Endpoints object, as DNS sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndpointsInfo {
    pub namespace: String,
    pub name: String,
    pub subsets: Vec<Subset>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subset {
    pub ready: Vec<Address>,
    pub not_ready: Vec<Address>,
    pub ports: Vec<PortInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    pub ip: IpAddr,
    /// The endpoint's `hostname` field, lowercased (StatefulSet pods, pods with hostname and
    /// subdomain).
    pub hostname: Option<String>,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn ports(v: Option<&Value>) -> Vec<PortInfo> {
    let Some(items) = v.and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|p| {
            let port = p.get("port").and_then(Value::as_u64)?;
            let port = u16::try_from(port).ok()?;
            let protocol = p
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_ascii_lowercase();
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase();
            Some(PortInfo {
                name,
                protocol,
                port,
            })
        })
        .collect()
}

impl ServiceInfo {
    pub fn from_json(obj: &Value) -> Option<ServiceInfo> {
        let namespace = str_at(obj, "/metadata/namespace").to_ascii_lowercase();
        let name = str_at(obj, "/metadata/name").to_ascii_lowercase();
        if namespace.is_empty() || name.is_empty() {
            return None;
        }
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let kind = if str_at(spec, "/type") == "ExternalName" {
            let target = str_at(spec, "/externalName");
            if target.is_empty() {
                tracing::debug!(%namespace, %name, "ExternalName service without externalName");
                return None;
            }
            ServiceKind::ExternalName(target.to_ascii_lowercase())
        } else if str_at(spec, "/clusterIP") == "None" {
            ServiceKind::Headless
        } else {
            let mut texts: Vec<&str> = spec
                .get("clusterIPs")
                .and_then(Value::as_array)
                .map(|ips| ips.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if texts.is_empty() {
                texts.push(str_at(spec, "/clusterIP"));
            }
            let ips = texts
                .into_iter()
                .filter(|t| !t.is_empty())
                .filter_map(|t| match t.parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        tracing::debug!(%namespace, %name, ip = t, "ignoring a cluster IP that is not an IP");
                        None
                    }
                })
                .collect();
            ServiceKind::ClusterIp(ips)
        };
        let annotated = obj
            .pointer(&format!(
                "/metadata/annotations/{}",
                TOLERATE_UNREADY.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let publish = spec
            .get("publishNotReadyAddresses")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Some(ServiceInfo {
            namespace,
            name,
            kind,
            ports: ports(spec.get("ports")),
            publish_not_ready: annotated || publish,
        })
    }
}

fn addresses(v: Option<&Value>) -> Vec<Address> {
    let Some(items) = v.and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|a| {
            let ip = a.get("ip").and_then(Value::as_str)?.parse().ok()?;
            let hostname = a
                .get("hostname")
                .and_then(Value::as_str)
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase);
            Some(Address { ip, hostname })
        })
        .collect()
}

impl EndpointsInfo {
    pub fn from_json(obj: &Value) -> Option<EndpointsInfo> {
        let namespace = str_at(obj, "/metadata/namespace").to_ascii_lowercase();
        let name = str_at(obj, "/metadata/name").to_ascii_lowercase();
        if namespace.is_empty() || name.is_empty() {
            return None;
        }
        let subsets = obj
            .get("subsets")
            .and_then(Value::as_array)
            .map(|subsets| {
                subsets
                    .iter()
                    .map(|s| Subset {
                        ready: addresses(s.get("addresses")),
                        not_ready: addresses(s.get("notReadyAddresses")),
                        ports: ports(s.get("ports")),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(EndpointsInfo {
            namespace,
            name,
            subsets,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn services_of_every_kind_are_read() {
        let cluster = json!({"metadata": {"namespace": "Default", "name": "Web"},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10"],
                     "ports": [{"name": "HTTP", "port": 80, "protocol": "TCP"}, {"port": 81}]}});
        let s = ServiceInfo::from_json(&cluster).expect("a service");
        assert_eq!((s.namespace.as_str(), s.name.as_str()), ("default", "web"));
        assert_eq!(
            s.kind,
            ServiceKind::ClusterIp(vec![
                "10.96.0.10".parse().expect("ip"),
                "fd00::10".parse().expect("ip")
            ])
        );
        assert_eq!(s.ports[0].name, "http");
        assert_eq!(s.ports[1].protocol, "tcp");
        assert!(!s.publish_not_ready);

        let headless = json!({"metadata": {"namespace": "d", "name": "h",
            "annotations": {TOLERATE_UNREADY: "true"}}, "spec": {"clusterIP": "None"}});
        let h = ServiceInfo::from_json(&headless).expect("a service");
        assert_eq!(h.kind, ServiceKind::Headless);
        assert!(h.publish_not_ready);

        let ext = json!({"metadata": {"namespace": "d", "name": "e"},
            "spec": {"type": "ExternalName", "externalName": "WWW.Example.com"}});
        assert_eq!(
            ServiceInfo::from_json(&ext).expect("a service").kind,
            ServiceKind::ExternalName("www.example.com".into())
        );
        let pending =
            json!({"metadata": {"namespace": "d", "name": "p"}, "spec": {"ports": [{"port": 1}]}});
        assert_eq!(
            ServiceInfo::from_json(&pending).expect("a service").kind,
            ServiceKind::ClusterIp(vec![])
        );
        assert!(ServiceInfo::from_json(&json!({"metadata": {"name": "x"}})).is_none());
    }

    #[test]
    fn endpoints_keep_ready_and_not_ready_apart() {
        let ep = json!({"metadata": {"namespace": "d", "name": "h"}, "subsets": [{
            "addresses": [{"ip": "10.0.0.1", "hostname": "Web-0"}, {"ip": "bogus"}],
            "notReadyAddresses": [{"ip": "10.0.0.2"}],
            "ports": [{"name": "http", "port": 8080}, {"name": "big", "port": 70000}]}]});
        let e = EndpointsInfo::from_json(&ep).expect("endpoints");
        let s = &e.subsets[0];
        assert_eq!(s.ready.len(), 1);
        assert_eq!(s.ready[0].hostname.as_deref(), Some("web-0"));
        assert_eq!(s.not_ready[0].ip, "10.0.0.2".parse::<IpAddr>().expect("ip"));
        assert_eq!(s.ports.len(), 1, "a port number over 65535 is left out");
    }
}
