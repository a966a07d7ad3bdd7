//! Service ClusterIPs: the range they come from (`--service-cluster-ip-range`), which address a
//! Service asks for, the choice of a free one, and the allocation records that make each address
//! unique cluster-wide.
//!
//! An allocated address is a store key of its own, `/_clusterips/<ip>`, written in the same
//! transaction as the Service that holds it, with the precondition that the key is absent. Two
//! Services racing for one address cannot both commit: the loser's transaction fails as a whole
//! and it picks again. Deleting the Service deletes the key in the same transaction. The record's
//! value is shaped like Kubernetes' `networking.k8s.io/v1` `IPAddress` (named by the address, with
//! a `parentRef` to the Service), and carries the Service's uid as its `metadata.uid`, so a
//! release can be made conditional on still belonging to that Service.
//!
//! The choice follows Kubernetes' allocator: the range's network and broadcast addresses are never
//! used; the first usable address is the `kubernetes` Service's; the lower part of the range (16
//! to 256 addresses, `min(max(16, size/16), 256)`) is kept for Services that ask for a specific
//! address, and dynamic allocation takes a random free address from the upper part first.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::{Value, json};

/// The default of `--service-cluster-ip-range`, as kubeadm's.
pub const DEFAULT_SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/12";

/// The store prefix of allocation records.
pub const ALLOCATION_PREFIX: &str = "/_clusterips/";

/// The largest range: 20 host bits, as kube-apiserver allows (a /12 for IPv4).
const MAX_HOST_BITS: u8 = 20;

/// A range Service ClusterIPs are allocated from (IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceIpRange {
    network: u32,
    prefix: u8,
}

impl Default for ServiceIpRange {
    fn default() -> Self {
        Self {
            network: u32::from(Ipv4Addr::new(10, 96, 0, 0)),
            prefix: 12,
        }
    }
}

impl fmt::Display for ServiceIpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

impl std::str::FromStr for ServiceIpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// Why an address a Service asked for cannot be its.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationError {
    /// Another Service holds it.
    Allocated(Ipv4Addr),
    /// Outside the usable addresses of the range.
    NotInRange(Ipv4Addr, ServiceIpRange),
    /// The range's first address, kept for the `kubernetes` Service.
    Reserved(Ipv4Addr),
    /// Every address is taken.
    Full(ServiceIpRange),
}

impl fmt::Display for AllocationError {
    /// Kubernetes' allocator's words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocationError::Allocated(ip) => {
                write!(
                    f,
                    "failed to allocate IP {ip}: provided IP is already allocated"
                )
            }
            AllocationError::NotInRange(ip, range) => write!(
                f,
                "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. \
                 The range of valid IPs is {range}"
            ),
            AllocationError::Reserved(ip) => write!(
                f,
                "failed to allocate IP {ip}: provided IP is reserved for the \"kubernetes\" \
                 Service in namespace \"default\""
            ),
            AllocationError::Full(range) => write!(
                f,
                "failed to allocate a serviceIP: range is full (every address of \
                 --service-cluster-ip-range {range} is allocated)"
            ),
        }
    }
}

impl ServiceIpRange {
    /// Reads a range as `--service-cluster-ip-range` takes it: an IPv4 CIDR between /12 and /30.
    /// Host bits are cleared (`10.96.0.5/12` is `10.96.0.0/12`), as Kubernetes does.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let Some((addr, prefix)) = text.split_once('/') else {
            return Err(format!(
                "{text:?} is not a CIDR: expected an address and a prefix length, such as {DEFAULT_SERVICE_CLUSTER_IP_RANGE}"
            ));
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not a CIDR: {addr:?} is not an IP address"))?;
        let IpAddr::V4(ip) = ip else {
            return Err(format!(
                "{text:?} is an IPv6 range: Corral allocates IPv4 ClusterIPs only (single-stack IPv4)"
            ));
        };
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| {
            format!("{text:?} is not a CIDR: {prefix:?} is not a prefix length from 0 to 32")
        })?;
        if 32 - prefix > MAX_HOST_BITS {
            return Err(format!(
                "specified {text} is too large; for 32-bit addresses, the mask must be >= {}",
                32 - MAX_HOST_BITS
            ));
        }
        if prefix > 30 {
            return Err(format!(
                "specified {text} is too small: a /{prefix} leaves no address for Services besides \
                 the network, broadcast and kubernetes Service addresses; the mask must be <= 30"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            network: u32::from(ip) & mask,
            prefix,
        })
    }

    /// The first usable address (network + 1): the `kubernetes` Service's.
    fn base(&self) -> u32 {
        self.network + 1
    }

    /// How many addresses Services can have: the range without its network and broadcast
    /// addresses.
    pub fn size(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The address of the `kubernetes` Service in `default`: the range's first usable address.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base())
    }

    /// Whether a Service may have this address (inside the range, neither the network nor the
    /// broadcast address).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip >= self.base() && ip - self.base() < self.size()
    }

    /// How many addresses at the bottom of the range are kept for Services asking for one
    /// (Kubernetes' `calculateRangeOffset`: `min(max(16, size/16), 256)`, none for ranges of 16
    /// addresses or fewer).
    pub fn static_band(&self) -> u32 {
        let cidr_size = 1u32 << (32 - self.prefix);
        if cidr_size <= 16 {
            0
        } else {
            (cidr_size / 16).clamp(16, 256)
        }
    }

    /// Checks an address a Service asks for by name: `service` is `namespace/name` (only
    /// `default/kubernetes` may have the range's first address).
    pub fn check_requested(
        &self,
        ip: Ipv4Addr,
        service: &str,
        allocated: &HashSet<Ipv4Addr>,
    ) -> Result<(), AllocationError> {
        if !self.contains(ip) {
            return Err(AllocationError::NotInRange(ip, *self));
        }
        if ip == self.kubernetes_service_ip() && service != "default/kubernetes" {
            return Err(AllocationError::Reserved(ip));
        }
        if allocated.contains(&ip) {
            return Err(AllocationError::Allocated(ip));
        }
        Ok(())
    }

    /// A free address for a Service that asked for none: a random one (`seed`) from the upper,
    /// dynamic part of the range, else from the lower part; never the `kubernetes` Service's.
    pub fn choose(
        &self,
        allocated: &HashSet<Ipv4Addr>,
        seed: u64,
    ) -> Result<Ipv4Addr, AllocationError> {
        let size = self.size();
        let band = self.static_band().min(size);
        // Offsets from `base`; offset 0 is the kubernetes Service's.
        let upper = (band.max(1), size);
        let lower = (1, band.max(1));
        for (from, to) in [upper, lower] {
            if from >= to {
                continue;
            }
            let len = to - from;
            let start = u32::try_from(seed % u64::from(len)).unwrap_or(0);
            for i in 0..len {
                let offset = from + (start + i) % len;
                let ip = Ipv4Addr::from(self.base() + offset);
                if !allocated.contains(&ip) {
                    return Ok(ip);
                }
            }
        }
        Err(AllocationError::Full(*self))
    }
}

/// What a Service needs from the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// No address: `ExternalName`, or headless (`clusterIP: None`).
    Nothing,
    /// Any free address (`clusterIP` empty).
    Any,
    /// This one. (An address that does not parse is validation's to report.)
    Exactly(Ipv4Addr),
}

fn cluster_ip_of(svc: &Value) -> &str {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn needs_cluster_ip(svc: &Value) -> bool {
    svc.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName")
}

/// What the (defaulted, valid) Service asks for.
pub fn wanted(svc: &Value) -> Wanted {
    if !needs_cluster_ip(svc) {
        return Wanted::Nothing;
    }
    match cluster_ip_of(svc) {
        "" => Wanted::Any,
        "None" => Wanted::Nothing,
        ip => match ip.parse::<Ipv4Addr>() {
            Ok(ip) => Wanted::Exactly(ip),
            Err(_) => Wanted::Nothing,
        },
    }
}

/// The address a stored Service holds (and so has an allocation record for), if any.
pub fn held(svc: &Value) -> Option<Ipv4Addr> {
    match wanted(svc) {
        Wanted::Exactly(ip) => Some(ip),
        _ => None,
    }
}

/// Gives the Service its address: `spec.clusterIP` and `spec.clusterIPs`.
pub fn assign(svc: &mut Value, ip: Ipv4Addr) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("clusterIP".into(), json!(ip.to_string()));
        spec.insert("clusterIPs".into(), json!([ip.to_string()]));
    }
}

/// The store key of an address's allocation record.
pub fn allocation_key(ip: Ipv4Addr) -> String {
    format!("{ALLOCATION_PREFIX}{ip}")
}

/// The address an allocation record's key names.
pub fn ip_of_key(key: &str) -> Option<Ipv4Addr> {
    key.strip_prefix(ALLOCATION_PREFIX)?.parse().ok()
}

/// The allocation record of `ip` for the Service (its namespace, name and uid).
pub fn allocation_record(ip: Ipv4Addr, svc: &Value) -> Value {
    let meta = svc.get("metadata").cloned().unwrap_or(Value::Null);
    let field = |k: &str| {
        meta.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": ip.to_string(),
            "uid": field("uid"),
            "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv4",
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
            },
        },
        "spec": {
            "parentRef": {
                "group": "",
                "resource": "services",
                "namespace": field("namespace"),
                "name": field("name"),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("an address")
    }

    #[test]
    fn ranges_parse_as_kube_apiserver_takes_them() {
        let r = ServiceIpRange::parse("10.96.0.0/12").expect("default");
        assert_eq!(r, ServiceIpRange::default());
        assert_eq!(r.to_string(), "10.96.0.0/12");
        assert_eq!(r.size(), (1 << 20) - 2);
        assert_eq!(r.kubernetes_service_ip(), ip("10.96.0.1"));
        assert_eq!(
            ServiceIpRange::parse("10.96.7.5/24")
                .expect("host bits cleared")
                .to_string(),
            "10.96.7.0/24"
        );
        for (bad, why) in [
            ("10.96.0.0", "not a CIDR"),
            ("10.96.0/12", "not an IP address"),
            ("10.96.0.0/33", "prefix length"),
            ("10.96.0.0/x", "prefix length"),
            (
                "10.0.0.0/8",
                "too large; for 32-bit addresses, the mask must be >= 12",
            ),
            ("10.96.0.0/31", "too small"),
            ("fd00::/108", "IPv6"),
        ] {
            let err = ServiceIpRange::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_network_broadcast_and_outside_addresses_are_not_in_range() {
        let r = ServiceIpRange::parse("10.0.0.0/24").expect("range");
        assert!(!r.contains(ip("10.0.0.0")), "network");
        assert!(!r.contains(ip("10.0.0.255")), "broadcast");
        assert!(!r.contains(ip("10.0.1.1")));
        assert!(!r.contains(ip("9.255.255.255")));
        assert!(r.contains(ip("10.0.0.1")));
        assert!(r.contains(ip("10.0.0.254")));
        assert_eq!(r.size(), 254);
    }

    #[test]
    fn a_requested_address_must_be_in_range_free_and_not_the_kubernetes_services() {
        let r = ServiceIpRange::parse("10.96.0.0/12").expect("range");
        let taken: HashSet<Ipv4Addr> = [ip("10.96.0.10")].into();
        assert_eq!(
            r.check_requested(ip("10.96.0.11"), "default/web", &taken),
            Ok(())
        );
        let err = r
            .check_requested(ip("10.96.0.10"), "default/web", &taken)
            .expect_err("taken");
        assert_eq!(
            err.to_string(),
            "failed to allocate IP 10.96.0.10: provided IP is already allocated"
        );
        let err = r
            .check_requested(ip("10.200.0.1"), "default/web", &taken)
            .expect_err("outside");
        assert_eq!(
            err.to_string(),
            "failed to allocate IP 10.200.0.1: the provided IP (10.200.0.1) is not in the valid \
             range. The range of valid IPs is 10.96.0.0/12"
        );
        assert!(matches!(
            r.check_requested(ip("10.96.0.0"), "default/web", &taken),
            Err(AllocationError::NotInRange(..))
        ));
        assert!(matches!(
            r.check_requested(ip("10.96.0.1"), "default/web", &taken),
            Err(AllocationError::Reserved(_))
        ));
        assert_eq!(
            r.check_requested(ip("10.96.0.1"), "default/kubernetes", &taken),
            Ok(())
        );
    }

    #[test]
    fn dynamic_addresses_come_from_the_upper_band_first_and_never_repeat() {
        let r = ServiceIpRange::parse("10.0.0.0/24").expect("range");
        assert_eq!(r.static_band(), 16);
        let mut taken = HashSet::new();
        // 254 usable, minus the kubernetes Service's: 253 dynamic addresses.
        for seed in 0..253u64 {
            let got = r
                .choose(&taken, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .expect("free");
            assert!(r.contains(got));
            assert_ne!(got, r.kubernetes_service_ip());
            if taken.len() < 254 - 16 {
                assert!(
                    u32::from(got) - u32::from(r.kubernetes_service_ip()) >= 16,
                    "{got} is in the static band while the upper band has room"
                );
            }
            assert!(taken.insert(got), "{got} chosen twice");
        }
        let err = r.choose(&taken, 7).expect_err("full");
        assert_eq!(err, AllocationError::Full(r));
        assert!(err.to_string().contains("range is full"));
    }

    #[test]
    fn small_ranges_have_no_static_band_and_large_ones_at_most_256() {
        let small = ServiceIpRange::parse("10.0.0.0/28").expect("range");
        assert_eq!(small.static_band(), 0);
        let mut taken = HashSet::new();
        for seed in 0..13u64 {
            taken.insert(small.choose(&taken, seed).expect("free"));
        }
        assert_eq!(taken.len(), 13, "14 usable, minus the kubernetes Service's");
        assert!(small.choose(&taken, 0).is_err());
        assert_eq!(
            ServiceIpRange::parse("10.96.0.0/12")
                .expect("range")
                .static_band(),
            256
        );
        let tiny = ServiceIpRange::parse("10.0.0.0/30").expect("range");
        assert_eq!(
            tiny.choose(&HashSet::new(), 99).expect("one"),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn what_a_service_wants_and_holds() {
        let svc = |spec: Value| json!({"kind": "Service", "spec": spec});
        assert_eq!(wanted(&svc(json!({"type": "ClusterIP"}))), Wanted::Any);
        assert_eq!(
            wanted(&svc(json!({"clusterIP": ""}))),
            Wanted::Any,
            "type defaults to ClusterIP"
        );
        assert_eq!(wanted(&svc(json!({"clusterIP": "None"}))), Wanted::Nothing);
        assert_eq!(
            wanted(&svc(
                json!({"type": "ExternalName", "externalName": "db.example.com"})
            )),
            Wanted::Nothing
        );
        assert_eq!(
            wanted(&svc(json!({"type": "NodePort", "clusterIP": "10.96.0.9"}))),
            Wanted::Exactly(ip("10.96.0.9"))
        );
        assert_eq!(
            held(&svc(json!({"clusterIP": "10.96.0.9"}))),
            Some(ip("10.96.0.9"))
        );
        assert_eq!(held(&svc(json!({"clusterIP": "None"}))), None);
        let mut s = svc(json!({"ports": [{"port": 80}]}));
        assign(&mut s, ip("10.96.3.4"));
        assert_eq!(s["spec"]["clusterIP"], "10.96.3.4");
        assert_eq!(s["spec"]["clusterIPs"], json!(["10.96.3.4"]));
    }

    #[test]
    fn allocation_records_name_their_service_and_key() {
        let svc = json!({"kind": "Service", "metadata": {"name": "web", "namespace": "prod", "uid": "u-1"}});
        let rec = allocation_record(ip("10.96.0.42"), &svc);
        assert_eq!(rec["metadata"]["name"], "10.96.0.42");
        assert_eq!(rec["metadata"]["uid"], "u-1");
        assert_eq!(rec["spec"]["parentRef"]["namespace"], "prod");
        assert_eq!(rec["spec"]["parentRef"]["name"], "web");
        let key = allocation_key(ip("10.96.0.42"));
        assert_eq!(key, "/_clusterips/10.96.0.42");
        assert_eq!(ip_of_key(&key), Some(ip("10.96.0.42")));
        assert_eq!(ip_of_key("/pods/default/x"), None);
    }
}
