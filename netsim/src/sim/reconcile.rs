//! Each agent's join loop and **the agent's own `Reconciler`** (`agent::data::reconciler`)
//! over netsim's copies (`crate::copies`) and log: it runs on every reconcile tick and
//! whenever its replica applies an entry that can change its plan, one pass at a time.
//! What is simulated here is only the world around it: a fill takes a drawn copy time
//! and succeeds if the primary runs and is reachable when it is done, and a read
//! barrier is answered once the replica holds the leader's commit index.

use shared::command::{MetaCommand, MetaOutcome};
use shared::lifecycle::{incarnation_failed, registered};
use shared::model::NodeId;

use agent::seam::MetaClientError;

use super::Simulation;
use crate::cluster::register;
use crate::config::{FILL_MAX_US, FILL_MIN_US};
use crate::copies::FillId;
use crate::event::Event;
use crate::seam::ProposalId;

impl Simulation {
    /// The agent's join loop (the joining itself is simulated; its decisions are the
    /// agent's): while its replica does not show its current incarnation registered, it
    /// (re-)registers; an incarnation committed FAILED while the process runs is given up
    /// for the next one, as `agent::join` does.
    pub(super) fn keep_registered(&mut self, node: NodeId) {
        let agent = self.agents.get_mut(&node).expect("known");
        let incarnation = agent.incarnation;
        if agent
            .replica
            .read(|s| incarnation_failed(s, node, incarnation))
        {
            agent.incarnation += 1;
        }
        let incarnation = agent.incarnation;
        if !agent.replica.read(|s| registered(s, node, incarnation)) {
            let cmd = register(&self.cfg, node, incarnation, self.clock.unix_ms());
            self.propose(node, cmd);
        }
    }

    /// Wakes `node`'s reconciler (its tick, or an entry applied that may change its
    /// plan), unless its last pass found nothing at the index its replica still shows:
    /// that pass's empty plan holds (the plan is a function of the replica, the local
    /// copies and the catch-up flag, and a plan is not free: it scans operations).
    pub(super) fn reconcile(&mut self, node: NodeId) {
        let agent = self.agents.get_mut(&node).expect("known");
        let applied = agent.applied();
        if let Some(task) = agent.reconciler.as_mut()
            && task.idle_at != Some(applied)
        {
            task.wake(applied);
        }
    }

    /// Answers the read barriers of `node` its replica now satisfies.
    pub(super) fn deliver_barriers(&mut self, node: NodeId) {
        let agent = self.agents.get_mut(&node).expect("known");
        let applied = agent.applied();
        let before = agent.barriers.len();
        let mut done = Vec::new();
        agent.barriers.retain(|&(index, id)| {
            let held = index <= applied;
            if held {
                done.push(id);
            }
            !held
        });
        if before == agent.barriers.len() {
            return;
        }
        let mut proposals = self.proposals.lock();
        for id in done {
            proposals.resolve(id, Ok(Ok(MetaOutcome::Done)));
        }
        drop(proposals);
        self.poll_reconciler(node);
    }

    /// Polls `node`'s reconciler: an outcome it waits for arrived.
    pub(super) fn poll_reconciler(&mut self, node: NodeId) {
        let Some(agent) = self.agents.get_mut(&node) else {
            return;
        };
        let applied = agent.applied();
        if let Some(task) = agent.reconciler.as_mut() {
            task.poll(applied);
        }
    }

    /// Schedules the fills the reconcilers asked for: each is done after a drawn copy
    /// time (concurrent fills overlap, as the agent's do).
    pub(super) fn dispatch_copies(&mut self) {
        let asked = self.copies.lock().take_outgoing();
        for fill in asked {
            let generation = self.agents[&fill.node].generation;
            let at = self.now() + self.rng.between(FILL_MIN_US, FILL_MAX_US);
            self.queue.push(
                at,
                Event::FillDone {
                    node: fill.node,
                    generation,
                    fill: fill.id,
                    partition_id: fill.partition_id,
                },
            );
        }
    }

    /// A fill is done: it took if the partition's primary (at the end) runs and is
    /// reachable; otherwise the reconciler's next pass asks again.
    pub(super) fn on_fill_done(
        &mut self,
        node: NodeId,
        fill: FillId,
        partition_id: shared::model::PartitionId,
    ) {
        let primary = self.agents[&node]
            .replica
            .read(|s| s.partition(partition_id).map(|p| p.primary_node_id));
        let outcome = match primary {
            Some(p) if p == node => Ok(()),
            Some(p)
                if self.agents.get(&p).is_some_and(|a| a.is_up()) && self.net.mutual(node, p) =>
            {
                Ok(())
            }
            Some(p) => Err(format!("primary {p} not reachable")),
            None => Err(format!("partition {partition_id} is gone")),
        };
        self.copies.lock().resolve(fill, outcome);
        self.poll_reconciler(node);
    }

    /// A read barrier of `from`: answered at once when its replica holds the leader's
    /// commit index, else when it applies it; refused when no running leader is
    /// reachable (the agent's barrier gives up after its wait, and the pass keeps what
    /// it would have dropped).
    pub(super) fn read_barrier(&mut self, id: ProposalId, from: NodeId) {
        let reachable = self
            .log
            .leader
            .is_some_and(|l| self.agents[&l].is_up() && (l == from || self.net.mutual(from, l)));
        if !reachable {
            let why = "no leader reachable".to_string();
            self.proposals
                .lock()
                .resolve(id, Err(MetaClientError::NoLeader(why)));
            self.poll_reconciler(from);
            return;
        }
        let committed = self.log.commit_index();
        let agent = self.agents.get_mut(&from).expect("known");
        if agent.applied() >= committed {
            self.proposals.lock().resolve(id, Ok(Ok(MetaOutcome::Done)));
            self.poll_reconciler(from);
        } else {
            agent.barriers.push((committed, id));
        }
    }
}

/// Whether applying `cmd` can change what `node`'s reconciler finds to do after a pass
/// that found nothing: a new or changed assignment, a split or merge, a move's switch,
/// an operation's end (a rolled-back move leaves its copy behind), a table's deletion,
/// or its own records.
pub(super) fn may_change_copies(cmd: &MetaCommand, node: NodeId) -> bool {
    match cmd {
        MetaCommand::AssignPartitions { .. }
        | MetaCommand::SplitPartition { .. }
        | MetaCommand::MergePartitions { .. }
        | MetaCommand::RepairPartitions { .. }
        | MetaCommand::FinishOperation { .. }
        | MetaCommand::DeleteTable { .. }
        | MetaCommand::PurgeTable { .. } => true,
        MetaCommand::CommitMove { from, to, .. } => *from == node || *to == node,
        MetaCommand::PartitionsReady { node_id, .. }
        | MetaCommand::PartitionsReadyAt { node_id, .. }
        | MetaCommand::PartitionsReleased { node_id, .. }
        | MetaCommand::RegisterNode { node_id, .. }
        | MetaCommand::NodeFailed { node_id, .. } => *node_id == node,
        _ => false,
    }
}
