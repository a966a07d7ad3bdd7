//! Corral's placement core: given an immutable [`Snapshot`] of the nodes and the pods bound to
//! them, pick a node for a pending pod the way the Kubernetes default scheduler does. Feasibility
//! (filters, each with the reason text Kubernetes prints) → rank (scores 0..100, weighted) →
//! select (highest total, ties to the lowest node name). No I/O, no async: a driver lists nodes
//! and pods, builds a snapshot, places a whole batch of pending pods against it with
//! [`schedule_batch`] (or [`schedule()`] then [`Snapshot::assume`] per pod), and binds the results
//! in one write.
//!
//! Layout:
//! - [`resources`]: cpu/memory amounts and a pod's effective request (init containers, sidecars,
//!   overhead, limits standing in for requests).
//! - [`pod`]: [`PodInfo`], what scheduling reads from a pod (requests, host ports, tolerations,
//!   node selector and affinity, controller owner).
//! - [`node`]: [`NodeInfo`], a node's labels, taints, readiness, allocatable and what its pods use.
//! - [`affinity`]: required node affinity (`nodeSelectorTerms`: `In`, `NotIn`, `Exists`,
//!   `DoesNotExist`, `Gt`, `Lt`, `matchFields` on `metadata.name`).
//! - [`filter`]: the feasibility checks and their reason strings.
//! - [`score`]: least-allocated resources and spreading of a controller's pods.
//! - [`volumes`]: persistent volume claims in placement (Kubernetes' VolumeBinding and
//!   VolumeRestrictions): [`volumes::VolumeState`], the pre-filter and the per-node filter.
//! - [`snapshot`]: [`Snapshot`]: building it, `assume` and `forget`.
//! - [`mod@schedule`]: [`schedule()`], [`schedule_batch`], [`Placement`], [`Unschedulable`] and the
//!   "0/3 nodes are available: ..." message.
//! - [`error`]: [`InvalidField`], a bad field in a pod or node, named by path, value and rule.
//! - [`driver`]: the leader-run scheduler ([`driver::run`]): informers, queue, batches, binds,
//!   PodScheduled conditions and events.

pub mod affinity;
pub mod driver;
pub mod error;
pub mod filter;
mod json;
pub mod node;
pub mod pod;
pub mod resources;
pub mod schedule;
pub mod score;
pub mod snapshot;
#[cfg(test)]
mod testing;
pub mod volumes;

pub use driver::{SchedulerOptions, run};
pub use error::InvalidField;
pub use node::{NodeInfo, Taint};
pub use pod::{HostPort, PodInfo, Toleration};
pub use resources::Resources;
pub use schedule::{Placement, ScheduleError, Unschedulable, schedule, schedule_batch};
pub use snapshot::{Snapshot, SnapshotError, SnapshotWarning};
