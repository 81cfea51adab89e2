//! The reconciler of every agent, without a data plane: it asks the shared
//! `reconcile_plan` which assigned copies are not reported ready, "fills" them from
//! their primaries (a drawn copy time; the primary must be running and reachable), and
//! reports them with `PartitionsReadyAt` (or `PartitionsReady` for a new table's), one
//! pass at a time, like the agent's reconciler.

use std::collections::BTreeSet;

use shared::command::MetaCommand;
use shared::lifecycle::reconcile_plan;
use shared::model::{NodeId, NodeStatus, PartitionId, TableStatus};

use super::Simulation;
use crate::cluster::register;
use crate::config::{FILL_MAX_US, FILL_MIN_US, LEADER_WAIT_US};
use crate::event::Event;

impl Simulation {
    /// The agent's join loop: while its replica does not show its current incarnation
    /// registered, it (re-)registers; an incarnation committed FAILED while the process
    /// runs is given up for the next one, as `agent::meta::join` does.
    pub(super) fn keep_registered(&mut self, node: NodeId) {
        let agent = self.agents.get_mut(&node).expect("known");
        let record = agent
            .replica
            .read(|s| s.node(node).map(|n| (n.status, n.incarnation)));
        if let Some((NodeStatus::Failed, incarnation)) = record
            && incarnation == agent.incarnation
        {
            agent.incarnation += 1;
        }
        let incarnation = agent.incarnation;
        if record.is_none_or(|(_, registered)| registered < incarnation) {
            let cmd = register(&self.cfg, node, incarnation, self.clock.unix_ms());
            self.propose(node, cmd);
        }
    }

    /// Starts a reconcile pass on `node` unless one runs.
    pub(super) fn reconcile(&mut self, node: NodeId) {
        let agent = &self.agents[&node];
        if agent.reconciling || agent.reconciled_idle == Some(agent.applied()) {
            return;
        }
        let (fills, fresh) = agent.replica.read(|s| {
            // Storage is allocated the moment a copy is assigned (nothing to derive or
            // allocate); what is left is the reports.
            let local: BTreeSet<PartitionId> = s
                .node(node)
                .map(|n| n.partition_ids.clone())
                .unwrap_or_default();
            let plan = reconcile_plan(s, node, &local, false);
            let mut fills = Vec::new();
            let mut fresh = Vec::new();
            for pid in plan.report_ready {
                let Some(p) = s.partition(pid) else { continue };
                let creating = s
                    .table(p.table_id)
                    .is_some_and(|t| t.status == TableStatus::Creating);
                if creating {
                    fresh.push(pid);
                } else {
                    fills.push((pid, p.epoch));
                }
            }
            (fills, fresh)
        });
        let quiet = fresh.is_empty() && fills.is_empty();
        // A report in flight is not sent again until it may have been lost.
        let now = self.now();
        let agent = self.agents.get_mut(&node).expect("known");
        agent
            .fresh_reported
            .retain(|pid, at| fresh.contains(pid) && now < *at + 2 * LEADER_WAIT_US);
        let fresh: Vec<PartitionId> = fresh
            .into_iter()
            .filter(|pid| !agent.fresh_reported.contains_key(pid))
            .collect();
        for pid in &fresh {
            agent.fresh_reported.insert(*pid, now);
        }
        if !fresh.is_empty() {
            let cmd = MetaCommand::PartitionsReady {
                node_id: node,
                partition_ids: fresh,
            };
            self.propose(node, cmd);
        }
        if fills.is_empty() {
            if quiet {
                let agent = self.agents.get_mut(&node).expect("known");
                agent.reconciled_idle = Some(agent.applied());
            }
            return;
        }
        // Copies fill concurrently; the pass reports once all are done.
        let longest = (0..fills.len())
            .map(|_| self.rng.between(FILL_MIN_US, FILL_MAX_US))
            .max()
            .unwrap_or(0);
        let agent = self.agents.get_mut(&node).expect("known");
        agent.reconciling = true;
        let generation = agent.generation;
        let at = self.now() + longest;
        self.queue.push(
            at,
            Event::FillDone {
                node,
                generation,
                partitions: fills,
            },
        );
    }

    pub(super) fn on_fill_done(&mut self, node: NodeId, partitions: Vec<(PartitionId, u64)>) {
        let agent = self.agents.get_mut(&node).expect("known");
        agent.reconciling = false;
        agent.reconciled_idle = None;
        // A copy whose primary is down or cut off did not fill: the next pass retries.
        let filled: Vec<(PartitionId, u64)> = self.agents[&node].replica.read(|s| {
            partitions
                .into_iter()
                .filter(|(pid, _)| {
                    s.partition(*pid).is_some_and(|p| {
                        let primary = p.primary_node_id;
                        primary == node
                            || self.agents.get(&primary).is_some_and(|a| a.is_up())
                                && self.net.mutual(node, primary)
                    })
                })
                .collect()
        });
        if !filled.is_empty() {
            let cmd = MetaCommand::PartitionsReadyAt {
                node_id: node,
                partitions: filled,
            };
            self.propose(node, cmd);
        }
    }
}
