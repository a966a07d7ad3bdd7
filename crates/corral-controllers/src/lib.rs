//! Corral's controllers. They run on the Raft leader only (registered with the server's
//! `LeaderHost`), act only on committed state read through the API (informers), and make every
//! write with a resourceVersion precondition, so a deposed leader's late write is a Conflict.
//!
//! Layout:
//! - [`node_lifecycle`]: node heartbeats → `Ready=Unknown`, the `not-ready` / `unreachable`
//!   taints, pods marked not ready, and taint-based eviction of the pods on tainted nodes.

pub mod node_lifecycle;
