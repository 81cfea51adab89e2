//! Measurements of a run: when crashed nodes were first suspected and failed, when
//! their partitions were rerouted and when every agent saw the new routing, how long
//! routing changes took to reach each agent, and a timeline of node states as the
//! leader shows them.

use std::collections::{BTreeMap, BTreeSet};

use shared::command::MetaCommand;
use shared::failure::{GossipState, view_status};
use shared::model::{NodeId, NodeStatus, PartitionId};
use shared::state::MetaState;

use crate::agent::SimAgent;
use crate::time::Micros;

/// A routing change on its way to every agent.
#[derive(Debug, Clone)]
struct RoutingCommit {
    at: Micros,
    waiting: BTreeSet<NodeId>,
    visible_at: Option<Micros>,
}

/// What happened to one crashed node.
#[derive(Debug, Clone, Default)]
pub struct Victim {
    /// When it crashed (or was cut off).
    pub crashed_at: Micros,
    /// When some running agent's gossip first stopped seeing it alive.
    pub suspected_at: Option<Micros>,
    /// When its `NodeFailed` was committed.
    pub failed_at: Option<Micros>,
    /// Partitions it held, each with the commit (time, index) that moved it off, once.
    pub partitions: BTreeMap<PartitionId, Option<(Micros, u64)>>,
}

/// Node counts at one instant, as the leader shows them (and the truth).
#[derive(Debug, Clone, Copy, Default)]
pub struct StateSample {
    /// Virtual time.
    pub at: Micros,
    /// HEALTHY in the leader's view.
    pub healthy: usize,
    /// SUSPECTED in the leader's view.
    pub suspected: usize,
    /// FAILED (committed).
    pub failed: usize,
    /// Processes really crashed.
    pub crashed: usize,
}

/// A committed `NodeFailed`.
#[derive(Debug, Clone, Copy)]
pub struct FailureRecord {
    /// Node.
    pub node: NodeId,
    /// Incarnation judged dead.
    pub incarnation: u64,
    /// Commit time.
    pub at: Micros,
    /// The judged incarnation was running (a false positive).
    pub false_positive: bool,
}

/// The run's measurements.
#[derive(Default)]
pub struct Observer {
    routing: BTreeMap<u64, RoutingCommit>,
    /// Delay from each routing commit to its apply on each agent.
    pub propagation_us: Vec<Micros>,
    /// Committed failures.
    pub failures: Vec<FailureRecord>,
    /// Crashed nodes being followed.
    pub victims: BTreeMap<NodeId, Victim>,
    /// Node states over time.
    pub timeline: Vec<StateSample>,
    /// Commits.
    pub commits: u64,
}

impl Observer {
    /// Follows `node` from `at` on (suspicion, failure, the rerouting of `partitions`):
    /// a crashed node, or one a scenario cuts off.
    pub fn follow(&mut self, node: NodeId, at: Micros, partitions: &BTreeSet<PartitionId>) {
        self.victims.insert(
            node,
            Victim {
                crashed_at: at,
                partitions: partitions.iter().map(|p| (*p, None)).collect(),
                ..Victim::default()
            },
        );
    }

    /// `node` crashed at `at` holding `partitions`.
    pub fn crashed(&mut self, node: NodeId, at: Micros, partitions: &BTreeSet<PartitionId>) {
        self.follow(node, at, partitions);
        for commit in self.routing.values_mut() {
            if commit.waiting.remove(&node) && commit.waiting.is_empty() {
                commit.visible_at.get_or_insert(at);
            }
        }
    }

    /// Entry `index` committed `cmd` at `at`; `alive` are the agents that must see it.
    pub fn committed(
        &mut self,
        at: Micros,
        index: u64,
        cmd: &MetaCommand,
        state: &MetaState,
        alive: BTreeSet<NodeId>,
        false_positive: bool,
    ) {
        self.commits += 1;
        if let MetaCommand::NodeFailed {
            node_id,
            incarnation,
            ..
        } = cmd
        {
            self.failures.push(FailureRecord {
                node: *node_id,
                incarnation: *incarnation,
                at,
                false_positive,
            });
            if let Some(v) = self.victims.get_mut(node_id) {
                v.failed_at.get_or_insert(at);
            }
        }
        if !matches!(
            cmd,
            MetaCommand::RepairPartitions { .. } | MetaCommand::CommitMove { .. }
        ) {
            return;
        }
        self.routing.insert(
            index,
            RoutingCommit {
                at,
                waiting: alive,
                visible_at: None,
            },
        );
        for (node, victim) in &mut self.victims {
            for (pid, moved) in &mut victim.partitions {
                let gone = state
                    .partition(*pid)
                    .is_none_or(|p| p.all_nodes().all(|n| n != *node));
                if moved.is_none() && gone {
                    *moved = Some((at, index));
                }
            }
        }
    }

    /// Agent `node` applied entries `(from, to]` at `at`.
    pub fn applied(&mut self, node: NodeId, from: u64, to: u64, at: Micros) {
        for commit in self.routing.range_mut(from + 1..=to).map(|(_, c)| c) {
            if commit.waiting.remove(&node) {
                self.propagation_us.push(at - commit.at);
                if commit.waiting.is_empty() {
                    commit.visible_at = Some(at);
                }
            }
        }
    }

    /// When the routing commit at `index` had reached every agent.
    pub fn visible_at(&self, index: u64) -> Option<Micros> {
        self.routing.get(&index).and_then(|c| c.visible_at)
    }

    /// Records the first suspicion of every followed victim by any running agent.
    pub fn sample_suspicions(&mut self, at: Micros, agents: &BTreeMap<NodeId, SimAgent>) {
        for (node, victim) in &mut self.victims {
            if victim.suspected_at.is_some() {
                continue;
            }
            let suspected = agents.values().filter(|a| a.is_up()).any(|a| {
                a.membership
                    .peer(*node)
                    .is_some_and(|p| p.gossip != GossipState::Alive)
            });
            if suspected {
                victim.suspected_at = Some(at);
            }
        }
    }

    /// Records node counts as `leader` shows them.
    pub fn sample_states(&mut self, at: Micros, leader: Option<&SimAgent>, crashed: usize) {
        let mut sample = StateSample {
            at,
            crashed,
            ..StateSample::default()
        };
        if let Some(leader) = leader {
            let observations = leader.membership.observations();
            leader.replica.read(|s| {
                for node in s.nodes() {
                    match view_status(node, observations.get(&node.node_id)) {
                        NodeStatus::Healthy => sample.healthy += 1,
                        NodeStatus::Suspected => sample.suspected += 1,
                        NodeStatus::Failed => sample.failed += 1,
                        _ => {}
                    }
                }
            });
        }
        self.timeline.push(sample);
    }
}
