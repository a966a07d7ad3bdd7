//! Pod addresses for the process runtime.
//!
//! The process runtime has no pod network: a container is a process in the node's network
//! namespace, and by default every pod's IP is the node's address. With `--pod-ip-range` (a
//! range inside `127.0.0.0/8`) each pod gets an address of its own instead. Linux routes the
//! whole of `127.0.0.0/8` to the loopback interface, so the address needs no set-up: a process
//! that binds it (its `status.podIP` comes through the downward API) is reachable there, two
//! pods may both listen on port 80, and the cluster's DNS names point at each pod separately.
//! A process that binds `0.0.0.0` is reachable at its pod address too.
//!
//! Addresses are handed out in turn (a replacement pod gets a new one, as a CNI plugin's
//! host-local allocator does) and given back when the pod's worker ends. After an agent
//! restart a pod keeps the address its status already shows.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

/// A range of IPv4 addresses inside `127.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopbackRange {
    base: u32,
    prefix: u8,
}

impl LoopbackRange {
    /// Parses `A.B.C.D/N`; the range must lie inside `127.0.0.0/8` and hold at least two
    /// usable addresses (N between 8 and 30).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("pod IP range {text:?}: expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("pod IP range {text:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("pod IP range {text:?}: {prefix:?} is not a prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "pod IP range {text:?}: the prefix length must be between 8 and 30"
            ));
        }
        if addr.octets()[0] != 127 {
            return Err(format!(
                "pod IP range {text:?}: must lie inside 127.0.0.0/8 (the process runtime has no \
                 pod network; loopback addresses need no set-up)"
            ));
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        Ok(LoopbackRange {
            base: u32::from(addr) & mask,
            prefix,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// Whether `ip` is a usable address of the range (not its first or last).
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.base && ip < self.base + self.size() - 1
    }
}

impl std::fmt::Display for LoopbackRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// Which address each pod (by uid) has.
#[derive(Debug)]
pub struct PodIps {
    node_ip: IpAddr,
    range: Option<LoopbackRange>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    by_pod: HashMap<String, Ipv4Addr>,
    used: HashMap<Ipv4Addr, String>,
    /// Offset in the range where the next search starts.
    next: u32,
}

impl PodIps {
    /// Every pod gets `node_ip`, unless a range is given.
    pub fn new(node_ip: IpAddr, range: Option<LoopbackRange>) -> Self {
        PodIps {
            node_ip,
            range,
            state: Mutex::new(State::default()),
        }
    }

    /// The address of the pod `uid`: the one it has, else `previous` (what its status shows)
    /// when that is in the range and free, else the next free one. The node's address when there
    /// is no range, or (after a warning in the log) when the range is full.
    pub fn assign(&self, uid: &str, previous: Option<IpAddr>) -> IpAddr {
        let Some(range) = self.range else {
            return self.node_ip;
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = st.by_pod.get(uid) {
            return IpAddr::V4(*ip);
        }
        let wanted = match previous {
            Some(IpAddr::V4(ip)) if range.holds(ip) && !st.used.contains_key(&ip) => Some(ip),
            _ => None,
        };
        let ip = wanted.or_else(|| {
            let usable = range.size() - 2;
            (0..usable)
                .map(|i| Ipv4Addr::from(range.base + 1 + (st.next + i) % usable))
                .find(|ip| !st.used.contains_key(ip))
        });
        let Some(ip) = ip else {
            tracing::warn!(%range, uid, "the pod IP range is full; the pod gets the node's address");
            return self.node_ip;
        };
        st.next = (u32::from(ip) - range.base) % (range.size() - 2);
        st.by_pod.insert(uid.to_string(), ip);
        st.used.insert(ip, uid.to_string());
        IpAddr::V4(ip)
    }

    /// Gives the pod's address back.
    pub fn release(&self, uid: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = st.by_pod.remove(uid) {
            st.used.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().expect("an address"))
    }

    #[test]
    fn ranges_must_be_loopback_with_room() {
        assert_eq!(
            LoopbackRange::parse("127.1.2.3/16")
                .expect("valid")
                .to_string(),
            "127.1.0.0/16"
        );
        for (bad, why) in [
            ("10.0.0.0/16", "inside 127.0.0.0/8"),
            ("127.0.0.0/31", "between 8 and 30"),
            ("127.0.0.0", "ADDRESS/PREFIX"),
            ("127.0.0.x/16", "not an IPv4 address"),
            ("127.0.0.0/x", "not a prefix length"),
        ] {
            let e = LoopbackRange::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn without_a_range_every_pod_has_the_node_address() {
        let ips = PodIps::new(v4("127.0.0.1"), None);
        assert_eq!(ips.assign("a", None), v4("127.0.0.1"));
        assert_eq!(ips.assign("b", Some(v4("127.1.0.9"))), v4("127.0.0.1"));
    }

    #[test]
    fn pods_get_their_own_addresses_in_turn_and_keep_them() {
        let range = LoopbackRange::parse("127.1.0.0/30").expect("range");
        let ips = PodIps::new(v4("127.0.0.1"), Some(range));
        assert_eq!(ips.assign("a", None), v4("127.1.0.1"));
        assert_eq!(ips.assign("b", None), v4("127.1.0.2"));
        assert_eq!(ips.assign("a", None), v4("127.1.0.1"), "stable per pod");
        // Full: the node's address.
        assert_eq!(ips.assign("c", None), v4("127.0.0.1"));
        ips.release("a");
        assert_eq!(ips.assign("d", None), v4("127.1.0.1"));
    }

    #[test]
    fn a_replacement_gets_a_new_address_and_a_restart_keeps_the_old_one() {
        let range = LoopbackRange::parse("127.2.0.0/24").expect("range");
        let ips = PodIps::new(v4("127.0.0.1"), Some(range));
        let first = ips.assign("web-0-a", None);
        ips.release("web-0-a");
        let second = ips.assign("web-0-b", None);
        assert_ne!(
            first, second,
            "the replacement does not reuse the address at once"
        );
        // An agent restarting with a pod whose status shows an address keeps it.
        let again = PodIps::new(v4("127.0.0.1"), Some(range));
        assert_eq!(again.assign("x", Some(v4("127.2.0.77"))), v4("127.2.0.77"));
        // ... unless it is outside the range or taken.
        assert_ne!(again.assign("y", Some(v4("127.2.0.77"))), v4("127.2.0.77"));
        assert_ne!(again.assign("z", Some(v4("127.9.0.1"))), v4("127.9.0.1"));
    }
}
