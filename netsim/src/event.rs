//! The events of a run and their queue. Events at the same instant are handled in the
//! order they were scheduled, so the order never depends on anything but the seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use agent::membership::GossipId;
use foca::Timer;
use shared::model::{NodeId, PartitionId};

use crate::faults::Fault;
use crate::seam::ProposalId;
use crate::time::Micros;

/// A process instance of an agent: bumped at every restart, so events meant for a
/// crashed process are recognised and dropped.
pub type Generation = u32;

/// A periodic duty of an agent's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Gossip a status report (`gossip.status_interval_ms`).
    Status,
    /// Announce to registered agents gossip has not met (`DISCOVERY_INTERVAL`).
    Discovery,
    /// Copy foca's member states into the view (`STATE_REFRESH`).
    Refresh,
    /// Reconcile local partitions with the replica (the controllers' tick).
    Reconcile,
}

/// A leader-only controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    /// `agent::control::failure::FailureDetector`.
    Failure,
    /// `agent::control::recovery::RecoveryCoordinator`.
    Recovery,
    /// `agent::control::assigner::PartitionAssigner`, when enabled.
    Assigner,
    /// `agent::control::voters::VoterManager`.
    Voters,
    /// `agent::control::keys::SigningKeyKeeper`.
    Keys,
    /// `agent::control::scaler::Scaler`, when enabled: woken every planning interval
    /// only, as the agent runs it.
    Scaler,
}

/// Something that happens at an instant.
#[derive(Debug)]
pub enum Event {
    /// A gossip datagram arrives.
    Datagram {
        /// Receiver.
        to: NodeId,
        /// Sender (for the trace).
        from: NodeId,
        /// Bytes, envelope included.
        bytes: Vec<u8>,
    },
    /// A foca timer expires.
    GossipTimer {
        /// Agent.
        node: NodeId,
        /// Its process.
        generation: Generation,
        /// The timer.
        timer: Timer<GossipId>,
    },
    /// A periodic duty is due.
    Tick {
        /// Agent.
        node: NodeId,
        /// Its process.
        generation: Generation,
        /// Which duty.
        tick: Tick,
    },
    /// A leader controller is due (its tick or a wake-up on apply).
    Control {
        /// Agent.
        node: NodeId,
        /// Its process.
        generation: Generation,
        /// Which controller.
        controller: Controller,
    },
    /// Log entries up to `upto` reach an agent's replica.
    Apply {
        /// Agent.
        node: NodeId,
        /// Its process.
        generation: Generation,
        /// Last entry carried.
        upto: u64,
    },
    /// A reconciler's fill of a new copy from its primary is done.
    FillDone {
        /// Agent.
        node: NodeId,
        /// Its process.
        generation: Generation,
        /// The fill.
        fill: crate::copies::FillId,
        /// The partition filled.
        partition_id: PartitionId,
    },
    /// A proposal tries to reach the leader (again).
    ProposalSend(ProposalId),
    /// A proposal reaches the leader of `term`.
    ProposalArrive {
        /// The proposal.
        id: ProposalId,
        /// Term it was sent in.
        term: u64,
    },
    /// The leader of `term` has replicated a proposal to a quorum.
    ProposalCommit {
        /// The proposal.
        id: ProposalId,
        /// Term it was accepted in.
        term: u64,
    },
    /// The proposer stops waiting (`http.leader_wait_ms`).
    ProposalDeadline(ProposalId),
    /// The leader of `term` sends heartbeats (and catches replicas up).
    Heartbeat {
        /// Term.
        term: u64,
    },
    /// Voters hold an election.
    Election,
    /// The operation drivers' tick (on the controllers' tick).
    Rebalance,
    /// An operation's step work is done, or its retry pause is over.
    DriveTimer(shared::model::OperationId),
    /// The Scaler plans a round (`hot-split`).
    Scale,
    /// An agent's first process starts.
    Boot(NodeId),
    /// A paused process resumes.
    Resume {
        /// Agent.
        node: NodeId,
        /// Its process.
        generation: Generation,
    },
    /// A fault the scenario scheduled.
    Fault(Fault),
    /// The observer samples every agent's view.
    Sample,
}

impl Event {
    /// The agent process an event is for, if it is for one.
    pub fn process(&self) -> Option<(NodeId, Option<Generation>)> {
        match self {
            Event::Datagram { to, .. } => Some((*to, None)),
            Event::GossipTimer {
                node, generation, ..
            }
            | Event::Tick {
                node, generation, ..
            }
            | Event::Control {
                node, generation, ..
            }
            | Event::Apply {
                node, generation, ..
            }
            | Event::FillDone {
                node, generation, ..
            } => Some((*node, Some(*generation))),
            _ => None,
        }
    }
}

/// Events by time, then by scheduling order. The heap holds small keys; the events
/// themselves stay put in slots (moving large events through the heap dominated).
#[derive(Default)]
pub struct EventQueue {
    heap: BinaryHeap<Reverse<(Micros, u64, usize)>>,
    slots: Vec<Option<Event>>,
    free: Vec<usize>,
    seq: u64,
}

impl EventQueue {
    /// Schedules `event` at `at`.
    pub fn push(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    /// The time of the next event.
    pub fn next_time(&self) -> Option<Micros> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Takes the next event.
    pub fn pop(&mut self) -> Option<(Micros, Event)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        let event = self.slots[slot]
            .take()
            .expect("a queued slot holds its event");
        self.free.push(slot);
        Some((at, event))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_instant_keeps_scheduling_order() {
        let mut q = EventQueue::default();
        q.push(5, Event::Sample);
        q.push(3, Event::Election);
        q.push(5, Event::Heartbeat { term: 1 });
        let order: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|(t, e)| format!("{t}:{e:?}"))
            .collect();
        assert_eq!(order, ["3:Election", "5:Sample", "5:Heartbeat { term: 1 }"]);
    }
}
