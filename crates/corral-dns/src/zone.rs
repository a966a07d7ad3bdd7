//! The cluster zone, computed ahead: every name the Kubernetes DNS specification (schema 1.1.0)
//! gives the cluster's Services and Endpoints, with its records by type, in one hash map. A
//! query is a hash lookup ([`Zone::lookup`]); nothing is read from the API or the informers
//! while answering. [`Zone::build`] is pure: the feed rebuilds the zone from the informers'
//! caches when they change and swaps it in whole.
//!
//! Names (`<zone>` is the cluster domain, `cluster.local` by default; TTL 5 s, as CoreDNS):
//!
//! | name | records |
//! |---|---|
//! | `<zone>` | SOA, NS `ns.dns.<zone>` |
//! | `dns-version.<zone>` | TXT `"1.1.0"` |
//! | `<svc>.<ns>.svc.<zone>` | A/AAAA: the cluster IPs; headless: every ready endpoint address (NXDOMAIN with none); ExternalName: CNAME |
//! | `<hostname>.<svc>.<ns>.svc.<zone>` | A/AAAA of the ready endpoints of a headless service with that hostname; an endpoint without `hostname` is named by its address with dashes (`10-1-2-3`), as CoreDNS names it |
//! | `_<port>._<proto>.<svc>.<ns>.svc.<zone>` | SRV for each named port: to the service name, or for a headless service one per ready endpoint to its hostname name; the targets' A/AAAA go in the additional section |
//! | `<d>.<c>.<b>.<a>.in-addr.arpa`, `….ip6.arpa` | PTR: cluster IPs to the service name, headless endpoint addresses to their hostname name |
//! | `<a>-<b>-<c>-<d>.<ns>.pod.<zone>` | A (the spec's deprecated pod records), for an existing namespace |
//!
//! A name that exists, even only as an empty non-terminal (`svc.<zone>`, `<ns>.svc.<zone>` for an
//! existing namespace, `_tcp.<svc>.<ns>.svc.<zone>`), answers a type it lacks with NOERROR and no
//! answer (NODATA); any other name in the zone is NXDOMAIN. Both carry the zone's SOA in the
//! authority section, whose minimum (the negative-caching TTL) is the record TTL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::model::{Address, EndpointsInfo, ServiceInfo, ServiceKind};

/// The schema version served at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// Kubernetes' (CoreDNS's) record TTL.
pub const DEFAULT_TTL: u32 = 5;
/// CNAMEs followed inside the zone before giving up.
const MAX_CNAME_CHAIN: usize = 8;

/// A cluster domain that is not a valid DNS name.
#[derive(Debug, thiserror::Error)]
#[error("--cluster-domain {domain:?} is not a valid DNS name: {reason}")]
pub struct DomainError {
    pub domain: String,
    pub reason: String,
}

/// What the zone is built with besides the objects.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// The cluster domain, fully qualified and lowercased (`cluster.local.`).
    pub domain: Name,
    pub ttl: u32,
    /// The addresses `ns.dns.<zone>` answers (the NS record's glue), when known.
    pub nameservers: Vec<IpAddr>,
}

impl ZoneConfig {
    /// The cluster domain as given on the command line (`cluster.local`, with or without the
    /// final dot).
    pub fn new(domain: &str) -> Result<ZoneConfig, DomainError> {
        let err = |reason: &str| DomainError {
            domain: domain.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = domain.trim().trim_end_matches('.');
        if trimmed.is_empty() {
            return Err(err("it is empty"));
        }
        for label in trimmed.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(err(&format!(
                    "label {label:?} must be 1-63 letters, digits or '-', not starting or ending with '-'"
                )));
            }
        }
        let name = Name::from_ascii(format!("{}.", trimmed.to_ascii_lowercase()))
            .map_err(|e| err(&e.to_string()))?;
        Ok(ZoneConfig {
            domain: name,
            ttl: DEFAULT_TTL,
            nameservers: Vec::new(),
        })
    }
}

/// The records of one type at one name, and what goes in the additional section with them.
#[derive(Debug)]
struct RrSet {
    rtype: RecordType,
    records: Vec<Record>,
    additionals: Vec<Record>,
}

/// One name of the zone. No record sets: an empty non-terminal (the name exists).
#[derive(Debug, Default)]
struct Node {
    rrsets: Vec<RrSet>,
}

impl Node {
    fn get(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
    }
}

/// An authoritative answer. Records are borrowed from the zone; `synthesized` holds the few made
/// for this query alone (pod names), sent after `answers`.
#[derive(Debug)]
pub struct Answer<'z> {
    pub rcode: ResponseCode,
    pub answers: Vec<&'z Record>,
    pub synthesized: Vec<Record>,
    /// The SOA of a negative answer.
    pub authority: Option<&'z Record>,
    pub additionals: Vec<&'z Record>,
    /// A CNAME led out of the zone: the name to resolve upstream (same type), if one is
    /// configured, and append.
    pub chase: Option<Name>,
}

impl<'z> Answer<'z> {
    fn new(rcode: ResponseCode) -> Self {
        Answer {
            rcode,
            answers: Vec::new(),
            synthesized: Vec::new(),
            authority: None,
            additionals: Vec::new(),
            chase: None,
        }
    }
}

/// What the zone says about a question.
#[derive(Debug)]
pub enum Lookup<'z> {
    /// The name is the cluster's: this is the answer (AA set).
    Answer(Answer<'z>),
    /// Not a cluster name: forward it upstream, or refuse.
    Elsewhere,
}

/// The computed zone. Immutable: a change builds a new one.
#[derive(Debug)]
pub struct Zone {
    origin: LowerName,
    soa: Record,
    reverse_v4: LowerName,
    reverse_v6: LowerName,
    soa_v4: Record,
    soa_v6: Record,
    names: HashMap<LowerName, Node>,
    /// Namespaces that exist (for `<ns>.svc`, `<ns>.pod` and pod names).
    namespaces: HashSet<String>,
    ttl: u32,
    /// Records held, for logs and the benchmark.
    record_count: usize,
}

fn soa_record(apex: &Name, domain: &Name, ttl: u32, serial: u32) -> Record {
    // CoreDNS's values: refresh 2 h, retry 30 min, expire 1 day, minimum = the record TTL.
    let mname = Name::from_ascii("ns.dns")
        .and_then(|n| n.append_domain(domain))
        .unwrap_or_else(|_| domain.clone());
    let rname = Name::from_ascii("hostmaster")
        .and_then(|n| n.append_domain(domain))
        .unwrap_or_else(|_| domain.clone());
    Record::from_rdata(
        apex.clone(),
        ttl,
        RData::SOA(SOA::new(mname, rname, serial, 7200, 1800, 86400, ttl)),
    )
}

/// The name an endpoint without `hostname` goes by: its address with dashes, as CoreDNS names
/// it (`10.1.2.3` → `10-1-2-3`, `fd00::1` → `fd00--1`).
pub fn system_hostname(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// Collects records while building, without duplicates.
struct Builder {
    origin: Name,
    ttl: u32,
    names: HashMap<LowerName, Node>,
    seen: HashSet<(LowerName, RData)>,
    /// SRV name → (port, target), weighted once all are known.
    srv: BTreeMap<LowerName, Vec<(u16, Name)>>,
}

impl Builder {
    /// `<relative>.<zone>`; `None` (and a debug line) when that is not a valid name.
    fn name(&self, relative: &str) -> Option<Name> {
        match Name::from_ascii(relative).and_then(|n| n.append_domain(&self.origin)) {
            Ok(n) => Some(n.to_lowercase()),
            Err(e) => {
                tracing::debug!(name = relative, error = %e, "left out of the DNS zone");
                None
            }
        }
    }

    fn exists(&mut self, name: &Name) {
        self.names.entry(LowerName::new(name)).or_default();
    }

    fn add(&mut self, name: &Name, rdata: RData) {
        let key = LowerName::new(name);
        if !self.seen.insert((key.clone(), rdata.clone())) {
            return;
        }
        let rtype = rdata.record_type();
        let record = Record::from_rdata(name.clone(), self.ttl, rdata);
        let node = self.names.entry(key).or_default();
        match node.rrsets.iter_mut().find(|s| s.rtype == rtype) {
            Some(set) => set.records.push(record),
            None => node.rrsets.push(RrSet {
                rtype,
                records: vec![record],
                additionals: Vec::new(),
            }),
        }
    }

    fn add_address(&mut self, name: &Name, ip: IpAddr) {
        self.add(name, address_rdata(ip));
    }

    fn add_ptr(&mut self, ip: IpAddr, target: &Name) {
        let reverse = Name::from(ip).to_lowercase();
        self.add(&reverse, RData::PTR(PTR(target.clone())));
    }

    fn add_srv(&mut self, name: &Name, port: u16, target: &Name) {
        let list = self.srv.entry(LowerName::new(name)).or_default();
        if !list.iter().any(|(p, t)| *p == port && t == target) {
            list.push((port, target.clone()));
        }
    }

    fn service(&mut self, svc: &ServiceInfo, endpoints: Option<&EndpointsInfo>) {
        let Some(base) = self.name(&format!("{}.{}.svc", svc.name, svc.namespace)) else {
            return;
        };
        match &svc.kind {
            ServiceKind::ExternalName(target) => {
                match Name::from_ascii(target.trim_end_matches('.'))
                    .map(|mut n| {
                        n.set_fqdn(true);
                        n
                    })
                    .map_err(|e| e.to_string())
                {
                    Ok(target) => self.add(&base, RData::CNAME(CNAME(target.to_lowercase()))),
                    Err(e) => {
                        tracing::debug!(service = %base, error = %e, "ExternalName is not a DNS name")
                    }
                }
            }
            ServiceKind::ClusterIp(ips) => {
                // The name exists even while no cluster IP is allocated (NODATA, not NXDOMAIN).
                self.exists(&base);
                for ip in ips {
                    self.add_address(&base, *ip);
                    self.add_ptr(*ip, &base);
                }
                for port in svc.ports.iter().filter(|p| !p.name.is_empty()) {
                    if let Some(srv) = self.srv_name(port, &base) {
                        self.add_srv(&srv, port.port, &base);
                    }
                }
            }
            ServiceKind::Headless => {
                let Some(endpoints) = endpoints else { return };
                for subset in &endpoints.subsets {
                    let ready: Vec<&Address> = if svc.publish_not_ready {
                        subset.ready.iter().chain(&subset.not_ready).collect()
                    } else {
                        subset.ready.iter().collect()
                    };
                    for address in ready {
                        let host = address
                            .hostname
                            .clone()
                            .unwrap_or_else(|| system_hostname(address.ip));
                        let Some(target) = Name::from_ascii(&host)
                            .and_then(|h| h.append_domain(&base))
                            .ok()
                        else {
                            tracing::debug!(service = %base, hostname = host, "endpoint hostname is not a DNS label");
                            continue;
                        };
                        let target = target.to_lowercase();
                        self.add_address(&base, address.ip);
                        self.add_address(&target, address.ip);
                        self.add_ptr(address.ip, &target);
                        for port in subset.ports.iter().filter(|p| !p.name.is_empty()) {
                            if let Some(srv) = self.srv_name(port, &base) {
                                self.add_srv(&srv, port.port, &target);
                            }
                        }
                    }
                }
            }
        }
    }

    fn srv_name(&self, port: &crate::model::PortInfo, base: &Name) -> Option<Name> {
        Name::from_ascii(format!("_{}._{}", port.name, port.protocol))
            .and_then(|n| n.append_domain(base))
            .map(|n| n.to_lowercase())
            .ok()
    }

    /// SRV records with their weights (the 100 shared out, as CoreDNS does), then the
    /// additional sections (SRV targets' and the NS name's addresses), then the empty
    /// non-terminals between every name and the apex.
    fn finish(mut self) -> HashMap<LowerName, Node> {
        let srv = std::mem::take(&mut self.srv);
        for (name, targets) in srv {
            let weight = u16::try_from((100 / targets.len().max(1)).max(1)).unwrap_or(1);
            for (port, target) in targets {
                self.add(&name, RData::SRV(SRV::new(0, weight, port, target)));
            }
        }
        let mut extras: Vec<(LowerName, RecordType, Vec<Record>)> = Vec::new();
        for (name, node) in &self.names {
            for set in &node.rrsets {
                let targets: Vec<&Name> = set
                    .records
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(srv) => Some(&srv.target),
                        RData::NS(ns) => Some(&ns.0),
                        _ => None,
                    })
                    .collect();
                if targets.is_empty() {
                    continue;
                }
                let mut additionals = Vec::new();
                for target in targets {
                    if let Some(t) = self.names.get(&LowerName::new(target)) {
                        for rtype in [RecordType::A, RecordType::AAAA] {
                            if let Some(s) = t.get(rtype) {
                                additionals.extend(s.records.iter().cloned());
                            }
                        }
                    }
                }
                extras.push((name.clone(), set.rtype, additionals));
            }
        }
        for (name, rtype, additionals) in extras {
            if let Some(set) = self
                .names
                .get_mut(&name)
                .and_then(|n| n.rrsets.iter_mut().find(|s| s.rtype == rtype))
            {
                set.additionals = additionals;
            }
        }
        let apex = LowerName::new(&self.origin);
        let mut missing = Vec::new();
        for name in self.names.keys() {
            if !apex.zone_of(name) {
                continue; // reverse names: no empty non-terminals (not our zone's tree)
            }
            let mut parent = name.base_name();
            while parent.num_labels() > apex.num_labels() {
                if !self.names.contains_key(&parent) {
                    missing.push(parent.clone());
                }
                parent = parent.base_name();
            }
        }
        for name in missing {
            self.names.entry(name).or_default();
        }
        self.names
    }
}

impl Zone {
    /// Builds the zone from the current objects. `serial` is the SOA serial (it only has to
    /// grow: the feed passes the time of the build).
    pub fn build<'a>(
        config: &ZoneConfig,
        services: impl IntoIterator<Item = &'a ServiceInfo>,
        endpoints: &HashMap<(String, String), EndpointsInfo>,
        namespaces: impl IntoIterator<Item = String>,
        serial: u32,
    ) -> Zone {
        let origin = config.domain.to_lowercase();
        let ttl = config.ttl;
        let mut b = Builder {
            origin: origin.clone(),
            ttl,
            names: HashMap::new(),
            seen: HashSet::new(),
            srv: BTreeMap::new(),
        };
        let soa = soa_record(&origin, &origin, ttl, serial);
        b.add(&origin, soa.data.clone());
        if let Some(ns) = b.name("ns.dns") {
            b.add(&origin, RData::NS(NS(ns.clone())));
            for ip in &config.nameservers {
                b.add_address(&ns, *ip);
            }
        }
        if let Some(version) = b.name("dns-version") {
            b.add(
                &version,
                RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
            );
        }
        for relative in ["svc", "pod"] {
            if let Some(n) = b.name(relative) {
                b.exists(&n);
            }
        }
        let mut known = HashSet::new();
        for ns in namespaces {
            let ns = ns.to_ascii_lowercase();
            for kind in ["svc", "pod"] {
                if let Some(n) = b.name(&format!("{ns}.{kind}")) {
                    b.exists(&n);
                }
            }
            known.insert(ns);
        }
        for svc in services {
            let eps = endpoints.get(&(svc.namespace.clone(), svc.name.clone()));
            b.service(svc, eps);
        }
        let names = b.finish();
        let record_count = names
            .values()
            .flat_map(|n| &n.rrsets)
            .map(|s| s.records.len())
            .sum();
        let reverse_v4 = Name::from_ascii("in-addr.arpa.").unwrap_or_else(|_| Name::root());
        let reverse_v6 = Name::from_ascii("ip6.arpa.").unwrap_or_else(|_| Name::root());
        Zone {
            origin: LowerName::new(&origin),
            soa,
            soa_v4: soa_record(&reverse_v4, &origin, ttl, serial),
            soa_v6: soa_record(&reverse_v6, &origin, ttl, serial),
            reverse_v4: LowerName::new(&reverse_v4),
            reverse_v6: LowerName::new(&reverse_v6),
            names,
            namespaces: known,
            ttl,
            record_count,
        }
    }

    /// The cluster domain (`cluster.local.`).
    pub fn origin(&self) -> &LowerName {
        &self.origin
    }

    /// Names held (including empty non-terminals) and records held.
    pub fn size(&self) -> (usize, usize) {
        (self.names.len(), self.record_count)
    }

    /// The answer to `qname`/`qtype` (class IN).
    pub fn lookup(&self, qname: &LowerName, qtype: RecordType) -> Lookup<'_> {
        let in_zone = self.origin.zone_of(qname);
        let soa = if in_zone {
            &self.soa
        } else if self.reverse_v4.zone_of(qname) {
            &self.soa_v4
        } else if self.reverse_v6.zone_of(qname) {
            &self.soa_v6
        } else {
            return Lookup::Elsewhere;
        };
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return Lookup::Answer(Answer::new(ResponseCode::Refused));
        }
        let Some(node) = self.names.get(qname) else {
            if !in_zone {
                // An address that is not the cluster's: its owner's DNS answers.
                return Lookup::Elsewhere;
            }
            if let Some(ip) = self.pod_address(qname) {
                let mut answer = Answer::new(ResponseCode::NoError);
                let rdata = address_rdata(ip);
                if qtype == rdata.record_type() || qtype == RecordType::ANY {
                    answer
                        .synthesized
                        .push(Record::from_rdata((**qname).clone(), self.ttl, rdata));
                } else {
                    answer.authority = Some(soa);
                }
                return Lookup::Answer(answer);
            }
            let mut answer = Answer::new(ResponseCode::NXDomain);
            answer.authority = Some(soa);
            return Lookup::Answer(answer);
        };
        let mut answer = Answer::new(ResponseCode::NoError);
        if qtype == RecordType::ANY {
            for set in &node.rrsets {
                answer.answers.extend(set.records.iter());
            }
            if answer.answers.is_empty() {
                answer.authority = Some(soa);
            }
            return Lookup::Answer(answer);
        }
        if let Some(set) = node.get(qtype) {
            answer.answers.extend(set.records.iter());
            answer.additionals.extend(set.additionals.iter());
            return Lookup::Answer(answer);
        }
        if let Some(cname) = node.get(RecordType::CNAME) {
            self.follow(cname, qtype, &mut answer);
            return Lookup::Answer(answer);
        }
        answer.authority = Some(soa);
        Lookup::Answer(answer)
    }

    /// Follows a CNAME chain inside the zone (RFC 1034 4.3.2); a target outside it is left for
    /// the caller to resolve upstream. The response code is that of the last name (RFC 6604).
    fn follow<'z>(&'z self, mut cname: &'z RrSet, qtype: RecordType, answer: &mut Answer<'z>) {
        for _ in 0..MAX_CNAME_CHAIN {
            let Some(record) = cname.records.first() else {
                return;
            };
            answer.answers.push(record);
            let RData::CNAME(target) = &record.data else {
                return;
            };
            let target = LowerName::new(&target.0);
            if !self.origin.zone_of(&target) {
                answer.chase = Some((*target).clone());
                return;
            }
            match self.names.get(&target) {
                None => {
                    answer.rcode = ResponseCode::NXDomain;
                    answer.authority = Some(&self.soa);
                    return;
                }
                Some(node) => {
                    if let Some(set) = node.get(qtype) {
                        answer.answers.extend(set.records.iter());
                        answer.additionals.extend(set.additionals.iter());
                        return;
                    }
                    match node.get(RecordType::CNAME) {
                        Some(next) => cname = next,
                        None => {
                            answer.authority = Some(&self.soa);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// `<a>-<b>-<c>-<d>.<ns>.pod.<zone>` (or an IPv6 address with dashes) in an existing
    /// namespace: the address.
    fn pod_address(&self, qname: &LowerName) -> Option<IpAddr> {
        if qname.num_labels() != self.origin.num_labels() + 3 {
            return None;
        }
        let mut labels = qname.iter();
        let ip = std::str::from_utf8(labels.next()?).ok()?;
        let ns = std::str::from_utf8(labels.next()?).ok()?;
        if labels.next()? != b"pod" || !self.namespaces.contains(ns) {
            return None;
        }
        if ip.contains("--") || ip.matches('-').count() > 3 {
            ip.replace('-', ":")
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        } else {
            ip.replace('-', ".")
                .parse::<Ipv4Addr>()
                .ok()
                .map(IpAddr::V4)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use serde_json::json;

    use super::*;

    fn zone() -> Zone {
        let services: Vec<ServiceInfo> = [
            json!({"metadata": {"namespace": "default", "name": "web"},
                "spec": {"clusterIP": "10.96.0.10", "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]}}),
            json!({"metadata": {"namespace": "default", "name": "dual"},
                "spec": {"clusterIPs": ["10.96.0.11", "fd00::11"], "ports": [{"port": 1}]}}),
            json!({"metadata": {"namespace": "default", "name": "nginx"},
                "spec": {"clusterIP": "None", "ports": [{"name": "web", "port": 80}]}}),
            json!({"metadata": {"namespace": "default", "name": "empty"},
                "spec": {"clusterIP": "None"}}),
            json!({"metadata": {"namespace": "default", "name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "www.example.com"}}),
            json!({"metadata": {"namespace": "default", "name": "alias"},
                "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}}),
            json!({"metadata": {"namespace": "default", "name": "dangling"},
                "spec": {"type": "ExternalName", "externalName": "nope.default.svc.cluster.local"}}),
        ]
        .iter()
        .filter_map(ServiceInfo::from_json)
        .collect();
        let mut endpoints = HashMap::new();
        for ep in [
            json!({"metadata": {"namespace": "default", "name": "nginx"}, "subsets": [{
                "addresses": [{"ip": "10.1.0.1", "hostname": "web-0"}, {"ip": "10.1.0.2", "hostname": "web-1"},
                              {"ip": "10.1.0.3"}],
                "notReadyAddresses": [{"ip": "10.1.0.4", "hostname": "web-2"}],
                "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}]}]}),
            json!({"metadata": {"namespace": "default", "name": "empty"}, "subsets": [{
                "notReadyAddresses": [{"ip": "10.1.0.9"}], "ports": [{"port": 1}]}]}),
        ] {
            let e = EndpointsInfo::from_json(&ep).expect("endpoints");
            endpoints.insert((e.namespace.clone(), e.name.clone()), e);
        }
        let mut config = ZoneConfig::new("cluster.local").expect("valid domain");
        config.nameservers = vec!["10.96.0.53".parse().expect("ip")];
        Zone::build(
            &config,
            &services,
            &endpoints,
            ["default".to_string(), "kube-system".to_string()],
            7,
        )
    }

    fn q(name: &str) -> LowerName {
        LowerName::from(Name::from_str(name).expect("a name"))
    }

    /// (rcode, answers as "name type data", authority type)
    fn ask(z: &Zone, name: &str, t: RecordType) -> (ResponseCode, Vec<String>, Option<String>) {
        match z.lookup(&q(name), t) {
            Lookup::Elsewhere => (ResponseCode::Refused, vec!["elsewhere".into()], None),
            Lookup::Answer(a) => (
                a.rcode,
                a.answers
                    .iter()
                    .copied()
                    .chain(a.synthesized.iter())
                    .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
                    .collect(),
                a.authority
                    .map(|r| format!("{} {}", r.name, r.record_type())),
            ),
        }
    }

    fn data(z: &Zone, name: &str, t: RecordType) -> Vec<String> {
        let (rcode, answers, _) = ask(z, name, t);
        assert_eq!(rcode, ResponseCode::NoError, "{name} {t}");
        let mut d: Vec<String> = answers
            .iter()
            .map(|a| a.split(' ').skip(2).collect::<Vec<_>>().join(" "))
            .collect();
        d.sort();
        d
    }

    const NODATA: (ResponseCode, usize) = (ResponseCode::NoError, 0);

    fn shape(z: &Zone, name: &str, t: RecordType) -> (ResponseCode, usize) {
        let (rcode, answers, authority) = ask(z, name, t);
        if answers.is_empty() {
            assert_eq!(
                authority.as_deref(),
                Some("cluster.local. SOA"),
                "{name} {t}: negative answers carry the SOA"
            );
        }
        (rcode, answers.len())
    }

    #[test]
    fn a_cluster_ip_service_answers_its_ip_srv_and_ptr() {
        let z = zone();
        assert_eq!(
            data(&z, "web.default.svc.cluster.local.", RecordType::A),
            ["10.96.0.10"]
        );
        assert_eq!(
            data(&z, "WEB.Default.SVC.cluster.LOCAL.", RecordType::A),
            ["10.96.0.10"],
            "names are case-insensitive"
        );
        assert_eq!(
            data(
                &z,
                "_http._tcp.web.default.svc.cluster.local.",
                RecordType::SRV
            ),
            ["0 100 80 web.default.svc.cluster.local."]
        );
        match z.lookup(
            &q("_http._tcp.web.default.svc.cluster.local."),
            RecordType::SRV,
        ) {
            Lookup::Answer(a) => {
                let extra: Vec<String> = a.additionals.iter().map(|r| r.data.to_string()).collect();
                assert_eq!(extra, ["10.96.0.10"], "the target's A goes along");
            }
            Lookup::Elsewhere => panic!("in zone"),
        }
        assert_eq!(
            data(&z, "10.0.96.10.in-addr.arpa.", RecordType::PTR),
            ["web.default.svc.cluster.local."]
        );
        // Unnamed ports have no SRV; the name exists with other types.
        assert_eq!(
            shape(&z, "web.default.svc.cluster.local.", RecordType::AAAA),
            NODATA
        );
        assert_eq!(
            shape(&z, "web.default.svc.cluster.local.", RecordType::TXT),
            NODATA
        );
        assert_eq!(
            shape(
                &z,
                "_81._tcp.web.default.svc.cluster.local.",
                RecordType::SRV
            ),
            (ResponseCode::NXDomain, 0)
        );
        assert_eq!(
            shape(
                &z,
                "_http._udp.web.default.svc.cluster.local.",
                RecordType::SRV
            ),
            (ResponseCode::NXDomain, 0)
        );
        assert_eq!(
            shape(&z, "_tcp.web.default.svc.cluster.local.", RecordType::SRV),
            NODATA,
            "an empty non-terminal exists"
        );
    }

    #[test]
    fn dual_stack_services_answer_a_and_aaaa_and_both_reverse_trees() {
        let z = zone();
        assert_eq!(
            data(&z, "dual.default.svc.cluster.local.", RecordType::A),
            ["10.96.0.11"]
        );
        assert_eq!(
            data(&z, "dual.default.svc.cluster.local.", RecordType::AAAA),
            ["fd00::11"]
        );
        assert_eq!(
            data(
                &z,
                "1.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
                RecordType::PTR
            ),
            ["dual.default.svc.cluster.local."]
        );
    }

    #[test]
    fn a_headless_service_answers_its_ready_endpoints_only() {
        let z = zone();
        assert_eq!(
            data(&z, "nginx.default.svc.cluster.local.", RecordType::A),
            ["10.1.0.1", "10.1.0.2", "10.1.0.3"],
            "the not-ready 10.1.0.4 is left out"
        );
        assert_eq!(
            data(&z, "web-0.nginx.default.svc.cluster.local.", RecordType::A),
            ["10.1.0.1"]
        );
        assert_eq!(
            data(
                &z,
                "10-1-0-3.nginx.default.svc.cluster.local.",
                RecordType::A
            ),
            ["10.1.0.3"],
            "an endpoint without hostname goes by its dashed address"
        );
        assert_eq!(
            shape(&z, "web-2.nginx.default.svc.cluster.local.", RecordType::A),
            (ResponseCode::NXDomain, 0),
            "a not-ready endpoint has no name"
        );
        assert_eq!(
            data(
                &z,
                "_web._tcp.nginx.default.svc.cluster.local.",
                RecordType::SRV
            ),
            [
                "0 33 8080 10-1-0-3.nginx.default.svc.cluster.local.",
                "0 33 8080 web-0.nginx.default.svc.cluster.local.",
                "0 33 8080 web-1.nginx.default.svc.cluster.local.",
            ]
        );
        match z.lookup(
            &q("_web._tcp.nginx.default.svc.cluster.local."),
            RecordType::SRV,
        ) {
            Lookup::Answer(a) => assert_eq!(a.additionals.len(), 3),
            Lookup::Elsewhere => panic!("in zone"),
        }
        assert_eq!(
            data(&z, "1.0.1.10.in-addr.arpa.", RecordType::PTR),
            ["web-0.nginx.default.svc.cluster.local."]
        );
        assert_eq!(
            data(&z, "3.0.1.10.in-addr.arpa.", RecordType::PTR),
            ["10-1-0-3.nginx.default.svc.cluster.local."]
        );
        // No ready endpoint: NXDOMAIN (spec 2.4.1), and its not-ready address has no PTR.
        assert_eq!(
            shape(&z, "empty.default.svc.cluster.local.", RecordType::A),
            (ResponseCode::NXDomain, 0)
        );
        assert!(matches!(
            z.lookup(&q("9.0.1.10.in-addr.arpa."), RecordType::PTR),
            Lookup::Elsewhere
        ));
    }

    #[test]
    fn publish_not_ready_counts_every_address() {
        let svc = ServiceInfo::from_json(&json!({"metadata": {"namespace": "d", "name": "h"},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": true}}))
        .expect("a service");
        let ep = EndpointsInfo::from_json(&json!({"metadata": {"namespace": "d", "name": "h"},
            "subsets": [{"notReadyAddresses": [{"ip": "10.2.0.1"}]}]}))
        .expect("endpoints");
        let endpoints = HashMap::from([(("d".to_string(), "h".to_string()), ep)]);
        let z = Zone::build(
            &ZoneConfig::new("cluster.local").expect("valid"),
            [&svc],
            &endpoints,
            ["d".to_string()],
            1,
        );
        assert_eq!(
            data(&z, "h.d.svc.cluster.local.", RecordType::A),
            ["10.2.0.1"]
        );
    }

    #[test]
    fn external_name_is_a_cname_followed_inside_the_zone() {
        let z = zone();
        let (rcode, answers, _) = ask(&z, "ext.default.svc.cluster.local.", RecordType::A);
        assert_eq!(rcode, ResponseCode::NoError);
        assert_eq!(
            answers,
            ["ext.default.svc.cluster.local. CNAME www.example.com."]
        );
        match z.lookup(&q("ext.default.svc.cluster.local."), RecordType::A) {
            Lookup::Answer(a) => assert_eq!(
                a.chase.map(|n| n.to_string()).as_deref(),
                Some("www.example.com.")
            ),
            Lookup::Elsewhere => panic!("in zone"),
        }
        let (_, answers, _) = ask(&z, "alias.default.svc.cluster.local.", RecordType::A);
        assert_eq!(
            answers,
            [
                "alias.default.svc.cluster.local. CNAME web.default.svc.cluster.local.",
                "web.default.svc.cluster.local. A 10.96.0.10"
            ]
        );
        let (rcode, answers, authority) =
            ask(&z, "dangling.default.svc.cluster.local.", RecordType::A);
        assert_eq!(rcode, ResponseCode::NXDomain, "the last name's code");
        assert_eq!(answers.len(), 1);
        assert_eq!(authority.as_deref(), Some("cluster.local. SOA"));
        assert_eq!(
            data(&z, "ext.default.svc.cluster.local.", RecordType::CNAME),
            ["www.example.com."]
        );
    }

    #[test]
    fn nxdomain_and_nodata_follow_the_tree() {
        let z = zone();
        for name in [
            "cluster.local.",
            "svc.cluster.local.",
            "pod.cluster.local.",
            "default.svc.cluster.local.",
            "kube-system.svc.cluster.local.",
            "default.pod.cluster.local.",
            "dns.cluster.local.",
        ] {
            assert_eq!(shape(&z, name, RecordType::A), NODATA, "{name}");
        }
        for name in [
            "nope.default.svc.cluster.local.",
            "nosuchns.svc.cluster.local.",
            "web.nosuchns.svc.cluster.local.",
            "x.cluster.local.",
            "a.b.web.default.svc.cluster.local.",
            "1-2-3-4.nosuchns.pod.cluster.local.",
            "not-an-ip.default.pod.cluster.local.",
        ] {
            assert_eq!(
                shape(&z, name, RecordType::A),
                (ResponseCode::NXDomain, 0),
                "{name}"
            );
        }
    }

    #[test]
    fn apex_version_and_pod_records() {
        let z = zone();
        let soa = data(&z, "cluster.local.", RecordType::SOA);
        assert_eq!(
            soa,
            ["ns.dns.cluster.local. hostmaster.cluster.local. 7 7200 1800 86400 5"]
        );
        assert_eq!(
            data(&z, "cluster.local.", RecordType::NS),
            ["ns.dns.cluster.local."]
        );
        assert_eq!(
            data(&z, "ns.dns.cluster.local.", RecordType::A),
            ["10.96.0.53"]
        );
        assert_eq!(
            data(&z, "dns-version.cluster.local.", RecordType::TXT),
            ["1.1.0"]
        );
        assert_eq!(
            shape(&z, "dns-version.cluster.local.", RecordType::A),
            NODATA
        );
        assert_eq!(
            data(&z, "10-244-1-7.default.pod.cluster.local.", RecordType::A),
            ["10.244.1.7"]
        );
        assert_eq!(
            data(&z, "fd00--7.default.pod.cluster.local.", RecordType::AAAA),
            ["fd00::7"]
        );
        assert_eq!(
            shape(
                &z,
                "10-244-1-7.default.pod.cluster.local.",
                RecordType::AAAA
            ),
            NODATA
        );
        assert_eq!(
            ask(&z, "cluster.local.", RecordType::AXFR).0,
            ResponseCode::Refused,
            "no zone transfers"
        );
        let (_, answers, _) = ask(&z, "web.default.svc.cluster.local.", RecordType::ANY);
        assert_eq!(answers.len(), 1);
    }

    #[test]
    fn names_outside_the_zone_are_elsewhere() {
        let z = zone();
        for name in [
            "example.com.",
            "local.",
            "cluster.local.example.com.",
            "1.2.3.4.in-addr.arpa.",
        ] {
            assert!(
                matches!(z.lookup(&q(name), RecordType::A), Lookup::Elsewhere),
                "{name}"
            );
        }
    }

    #[test]
    fn a_custom_domain_and_bad_domains() {
        let mut config = ZoneConfig::new("Corp.Example.").expect("valid");
        config.ttl = 30;
        let svc = ServiceInfo::from_json(&json!({"metadata": {"namespace": "d", "name": "s"},
            "spec": {"clusterIP": "10.0.0.1"}}))
        .expect("a service");
        let z = Zone::build(&config, [&svc], &HashMap::new(), ["d".to_string()], 1);
        assert_eq!(z.origin().to_string(), "corp.example.");
        assert_eq!(
            data(&z, "s.d.svc.corp.example.", RecordType::A),
            ["10.0.0.1"]
        );
        assert!(matches!(
            z.lookup(&q("s.d.svc.cluster.local."), RecordType::A),
            Lookup::Elsewhere
        ));
        for bad in ["", ".", "a..b", "-x.local", "under_score.local"] {
            assert!(ZoneConfig::new(bad).is_err(), "{bad:?}");
        }
    }
}
