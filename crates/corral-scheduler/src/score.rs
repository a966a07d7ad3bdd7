//! Ranking of the feasible nodes. Each score is 0..=[`MAX_NODE_SCORE`]; a node's total is the
//! weighted sum:
//!
//! - [`least_allocated`] (weight [`LEAST_ALLOCATED_WEIGHT`]): Kubernetes' `NodeResourcesFit`
//!   with the `LeastAllocated` strategy: the share of cpu and of memory left free once the pod is
//!   added, averaged (cpu and memory weigh 1 each). Requests count with the scoring floor, so
//!   pods that request nothing still weigh on a node.
//! - [`spread`] (weight [`SPREAD_WEIGHT`]): pods with the same controller owner go where fewer of
//!   them already run, normalized as Kubernetes' `SelectorSpread` did:
//!   `100 × (max − count) / max` over the feasible nodes. A pod without a controller owner scores
//!   0 everywhere. The weight is that of `PodTopologySpread`, which replaced `SelectorSpread`.

use crate::node::NodeInfo;
use crate::pod::PodInfo;

pub const MAX_NODE_SCORE: i64 = 100;
pub const LEAST_ALLOCATED_WEIGHT: i64 = 1;
pub const SPREAD_WEIGHT: i64 = 2;

/// The free share of one resource after the request, 0..=100; 0 when over capacity
/// (Kubernetes' `leastRequestedScore`).
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    let free = i128::from(capacity) - i128::from(requested);
    let score = free * i128::from(MAX_NODE_SCORE) / i128::from(capacity);
    i64::try_from(score).expect("a share of 0..=100 fits in i64")
}

/// `LeastAllocated` for cpu and memory, with this pod added to what the node already holds.
/// A resource the node has none of is left out of the average.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let requested = node.nonzero_requested().plus(pod.requests().nonzero);
    let capacity = node.allocatable();
    let (mut sum, mut weights) = (0, 0);
    for (req, cap) in [
        (requested.milli_cpu, capacity.milli_cpu),
        (requested.memory, capacity.memory),
    ] {
        if cap == 0 {
            continue;
        }
        sum += least_requested_score(req, cap);
        weights += 1;
    }
    if weights == 0 { 0 } else { sum / weights }
}

/// Spreading: `count` pods of the owner on this node, `max` on the fullest feasible node.
pub fn spread(count: usize, max: usize) -> i64 {
    if max == 0 {
        return MAX_NODE_SCORE;
    }
    let share = (max.saturating_sub(count) as u128) * (MAX_NODE_SCORE as u128) / max as u128;
    i64::try_from(share).expect("a share of 0..=100 fits in i64")
}

/// The weighted total.
pub fn total(least_allocated: i64, spread: i64) -> i64 {
    least_allocated * LEAST_ALLOCATED_WEIGHT + spread * SPREAD_WEIGHT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bound_to, node, pod, pod_info, pod_requesting, with_pods};

    #[test]
    fn least_requested_is_the_free_share() {
        let table = [
            // (requested, capacity, score)
            (0, 4000, 100),
            (1000, 4000, 75),
            (3999, 4000, 0),
            (4000, 4000, 0),
            (5000, 4000, 0),
            (1, 3, 66),
            (100, 0, 0),
        ];
        for (requested, capacity, want) in table {
            assert_eq!(
                least_requested_score(requested, capacity),
                want,
                "{requested}/{capacity}"
            );
        }
    }

    #[test]
    fn least_allocated_averages_cpu_and_memory_after_adding_the_pod() {
        let empty = with_pods(&node("n1", "4", "4Gi", "110"), &[]);
        let busy = with_pods(
            &node("n1", "4", "4Gi", "110"),
            &[bound_to(pod_requesting("a", "2", "1Gi"), "n1")],
        );
        let table = [
            // cpu 1/4 used → 75, memory 1/4 → 75.
            ("an empty node", pod_requesting("p", "1", "1Gi"), &empty, 75),
            // cpu 3/4 → 25, memory 2/4 → 50; (25 + 50) / 2.
            ("a busy node", pod_requesting("p", "1", "1Gi"), &busy, 37),
            // 100m and 200Mi floors: cpu (4000-100)/4000 → 97, memory (4096-200)/4096 → 95.
            (
                "a pod requesting nothing counts at the floor",
                pod("p"),
                &empty,
                96,
            ),
        ];
        for (case, pod, node, want) in table {
            assert_eq!(least_allocated(&pod_info(&pod), node), want, "{case}");
        }
        let no_memory = with_pods(&node("n1", "4", "0", "110"), &[]);
        assert_eq!(
            least_allocated(&pod_info(&pod_requesting("p", "1", "1Gi")), &no_memory),
            75,
            "memory is left out"
        );
    }

    #[test]
    fn spreading_prefers_nodes_with_fewer_pods_of_the_owner() {
        let table = [
            // (count, max, score)
            (0, 0, 100),
            (0, 2, 100),
            (1, 2, 50),
            (2, 2, 0),
            (1, 3, 66),
        ];
        for (count, max, want) in table {
            assert_eq!(spread(count, max), want, "{count} of {max}");
        }
        assert_eq!(total(75, 50), 175);
    }
}
