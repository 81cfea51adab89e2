//! Faults a scenario injects at chosen virtual instants.

use std::collections::BTreeSet;

use shared::model::NodeId;

use crate::time::Micros;

/// One fault (or the end of one).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The process dies: no more sends, timers or applies; in-flight datagrams to it
    /// are lost.
    Crash(NodeId),
    /// A crashed node starts again as a new process with the next incarnation, and
    /// registers through the metadata log.
    Restart(NodeId),
    /// The process stops (a long GC pause): datagrams queue up to the inbox bound,
    /// timers fire late; it resumes by itself after `for_us`.
    Pause {
        /// Paused node.
        node: NodeId,
        /// How long.
        for_us: Micros,
    },
    /// Every node of the zone crashes at once.
    LoseZone(String),
    /// Nothing from `from` reaches `to`; with `both_ways`, nothing from `to` reaches
    /// `from` either.
    Partition {
        /// Name to heal it by.
        name: String,
        /// One side.
        from: BTreeSet<NodeId>,
        /// The other side.
        to: BTreeSet<NodeId>,
        /// Cut both directions (otherwise only `from → to`).
        both_ways: bool,
    },
    /// Removes the partition named so.
    Heal(String),
    /// Datagram loss on every link.
    SetLoss(f64),
    /// Removes every partition and loss.
    HealAll,
}

/// A fault at an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledFault {
    /// When.
    pub at: Micros,
    /// What.
    pub fault: Fault,
}
