//! Corral's controllers. They run on the Raft leader only (registered with the server's
//! `LeaderHost`), act only on committed state read through the API (informers), and make every
//! write with a resourceVersion precondition, so a deposed leader's late write is a Conflict.
//!
//! Layout:
//! - [`runtime`]: the control-loop runtime: a workqueue (dedupe, one reconcile per key at a
//!   time, per-key exponential back-off), expectations, periodic resync.
//! - [`replicaset`]: ReplicaSet → pods; [`deployment`]: Deployment → ReplicaSets (rolling
//!   update, Recreate, revisions); [`daemonset`]: one pod per eligible node;
//!   [`statefulset`]: ordered pods with stable names and claims, ControllerRevisions. [`job`],
//!   [`cronjob`]: batch.
//! - [`gc`]: garbage collection by ownerReferences; [`namespace`]: namespace deletion;
//!   [`serviceaccount`]: the default ServiceAccount and its token in every namespace.
//! - [`endpoints`]: each Service's Endpoints from the ready and not-ready pods its selector
//!   matches.
//! - [`persistentvolume`]: binding claims to volumes, phases, reclaiming (Retain, Recycle,
//!   Delete), the pvc/pv protection finalizers; [`local_path`]: Corral's built-in provisioner
//!   (a directory on one node); [`volume_helper`]: the helper pods that remove or scrub a
//!   volume's directory on its node.
//! - [`node_lifecycle`]: node heartbeats → `Ready=Unknown`, the `not-ready` / `unreachable`
//!   taints, pods marked not ready, and taint-based eviction of the pods on tainted nodes.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod local_path;
pub mod namespace;
pub mod node_lifecycle;
pub mod persistentvolume;
pub mod replicaset;
pub mod runtime;
pub mod serviceaccount;
pub mod statefulset;
pub mod volume_helper;
