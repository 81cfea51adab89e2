//! The metadata log's traffic: proposals travel to the leader, commit once a quorum of
//! voters holds them (a commit delay drawn from the network's latencies plus fsyncs),
//! and reach every replica after a propagation delay; heartbeats catch lagging replicas
//! up and tell the leader who answers; elections pick a new leader among live voters.

use std::collections::BTreeSet;

use agent::seam::{MembersView, MetaClientError};
use shared::command::{MetaCommand, MetaResult};
use shared::model::NodeId;

use super::Simulation;
use super::reconcile::may_change_copies;
use crate::cluster::peer_addr;
use crate::config::{
    APPLY_US, ELECTION_TIMEOUT_MAX_US, ELECTION_TIMEOUT_MIN_US, FSYNC_US, LEADER_WAIT_US,
    NO_LEADER_BACKOFF_US, RAFT_HEARTBEAT_US,
};
use crate::event::Event;
use crate::seam::{ProposalId, ProposalOutcome, Request};
use crate::time::Micros;

/// A proposal between its submission and its outcome.
pub struct InFlight {
    /// Proposing agent.
    pub from: NodeId,
    /// Its process.
    pub generation: u32,
    /// The command.
    pub command: MetaCommand,
    /// A controller's future waits for the outcome (otherwise nobody does).
    pub awaited: bool,
    /// Who to tell when the proposal commits (or never will).
    pub then: Option<Then>,
}

/// Who hears a proposal's outcome at its commit instant (or when it never will).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// An operation's driver (`drive.rs`).
    Drive(shared::model::OperationId),
}

impl Simulation {
    /// Proposes `command` from agent `from` with nobody awaiting the outcome (the
    /// reconciler's reports, a restarted agent's registration).
    pub(crate) fn propose(&mut self, from: NodeId, command: MetaCommand) {
        self.propose_then(from, command, None);
    }

    /// Proposes `command` from `from`; `then` hears the outcome.
    pub(crate) fn propose_then(&mut self, from: NodeId, command: MetaCommand, then: Option<Then>) {
        let id = self.proposals.lock().next_id();
        self.send_proposal(id, from, command, false);
        if let Some(p) = self.inflight.get_mut(&id) {
            p.then = then;
        }
    }

    /// Sends out what the controllers' and reconcilers' futures submitted (a barrier
    /// answered at once lets its reconciler go on and submit more), and schedules the
    /// fills they asked for.
    pub(super) fn dispatch_proposals(&mut self) {
        loop {
            let outgoing = self.proposals.lock().take_outgoing();
            if outgoing.is_empty() {
                break;
            }
            for p in outgoing {
                match p.request {
                    Request::Command(command) => self.send_proposal(p.id, p.from, command, true),
                    Request::Barrier => self.read_barrier(p.id, p.from),
                }
            }
        }
        self.dispatch_copies();
    }

    fn send_proposal(&mut self, id: ProposalId, from: NodeId, command: MetaCommand, awaited: bool) {
        let generation = self.agents[&from].generation;
        self.inflight.insert(
            id,
            InFlight {
                from,
                generation,
                command,
                awaited,
                then: None,
            },
        );
        let now = self.now();
        self.queue.push(now, Event::ProposalSend(id));
        // `MetaClient` waits for the leader, then for its own replica.
        self.queue
            .push(now + 2 * LEADER_WAIT_US, Event::ProposalDeadline(id));
    }

    /// The proposal's sender, if its process still runs.
    fn proposer(&self, id: ProposalId) -> Option<NodeId> {
        let p = self.inflight.get(&id)?;
        let agent = &self.agents[&p.from];
        (agent.is_alive() && agent.generation == p.generation).then_some(p.from)
    }

    pub(super) fn on_proposal_send(&mut self, id: ProposalId) {
        let Some(from) = self.proposer(id) else {
            // The proposer died before the proposal left: it never commits.
            let then = self.inflight.remove(&id).and_then(|p| p.then);
            if let Some(then) = then {
                self.on_then(then, None);
            }
            return;
        };
        let now = self.now();
        let leader = self
            .log
            .leader
            .filter(|l| self.agents[l].is_alive() && self.net.mutual(from, *l));
        match leader {
            Some(leader) => {
                let delay = self.net.latency(&mut self.rng, from, leader);
                let term = self.log.term;
                self.queue
                    .push(now + delay, Event::ProposalArrive { id, term });
            }
            None => self
                .queue
                .push(now + NO_LEADER_BACKOFF_US, Event::ProposalSend(id)),
        }
    }

    pub(super) fn on_proposal_arrive(&mut self, id: ProposalId, term: u64) {
        if !self.inflight.contains_key(&id) {
            return;
        }
        let now = self.now();
        let leading = self.log.term == term && self.leader_running();
        if !leading {
            // Not the leader any more: `MetaClient` asks again.
            self.queue
                .push(now + NO_LEADER_BACKOFF_US, Event::ProposalSend(id));
            return;
        }
        // Without a reachable quorum the write hangs until the proposer's deadline.
        if let Some(delay) = self.commit_delay() {
            self.queue
                .push(now + delay, Event::ProposalCommit { id, term });
        }
    }

    /// Whether the leader's process is running.
    fn leader_running(&self) -> bool {
        self.log.leader.is_some_and(|l| self.agents[&l].is_up())
    }

    /// Time for the leader to make an entry durable on a quorum: its own fsync, and the
    /// round trips to the fastest voters that complete the quorum, each with an fsync.
    fn commit_delay(&mut self) -> Option<Micros> {
        let leader = self.log.leader?;
        let others: Vec<NodeId> = self
            .log
            .voters
            .iter()
            .copied()
            .filter(|v| *v != leader && self.agents[v].is_up() && self.net.mutual(leader, *v))
            .collect();
        let mut rtts: Vec<Micros> = others
            .into_iter()
            .map(|v| {
                self.net.latency(&mut self.rng, leader, v)
                    + FSYNC_US
                    + self.net.latency(&mut self.rng, v, leader)
            })
            .collect();
        rtts.sort_unstable();
        let needed = self.log.quorum().saturating_sub(1);
        match needed {
            0 => Some(FSYNC_US),
            n => rtts.get(n - 1).map(|rtt| (*rtt).max(FSYNC_US)),
        }
    }

    pub(super) fn on_proposal_commit(&mut self, id: ProposalId, term: u64) {
        if self.log.term != term || !self.leader_running() || !self.inflight.contains_key(&id) {
            return;
        }
        let command = self.inflight[&id].command.clone();
        let (index, result) = self.log.commit(command.clone());
        self.after_commit(index, &command, &result);
        let then = self.inflight.get_mut(&id).and_then(|p| p.then.take());
        if let Some(then) = then {
            self.on_then(then, Some(&result));
        }
        match self.proposer(id) {
            Some(from) => {
                self.agents
                    .get_mut(&from)
                    .expect("known")
                    .awaiting
                    .push((index, id));
                self.pending_outcomes.insert(id, result);
            }
            None => {
                self.inflight.remove(&id);
            }
        }
        self.replicate(index);
    }

    /// Checks and measures one commit.
    fn after_commit(&mut self, index: u64, command: &MetaCommand, result: &MetaResult) {
        let now = self.now();
        let agents = &self.agents;
        let live = |n: NodeId| {
            agents
                .get(&n)
                .filter(|a| a.is_alive())
                .map(|a| a.incarnation)
        };
        self.invariants
            .after_commit(now, command, result, self.log.state(), &self.truth, &live);
        let false_positive = match command {
            MetaCommand::NodeFailed {
                node_id,
                incarnation,
                ..
            } => result.is_ok() && live(*node_id) == Some(*incarnation),
            _ => false,
        };
        let alive = self.alive_agents();
        self.observer
            .committed(now, index, command, self.log.state(), alive, false_positive);
    }

    /// Sends the log up to `upto` to every replica the leader reaches.
    fn replicate(&mut self, upto: u64) {
        let Some(leader) = self.log.leader else {
            return;
        };
        let targets: Vec<NodeId> = self
            .agents
            .values()
            .filter(|a| a.is_alive() && a.apply_target < upto)
            .filter(|a| self.net.connected(leader, a.id))
            .map(|a| a.id)
            .collect();
        for node in targets {
            let delay = self.net.latency(&mut self.rng, leader, node) + APPLY_US;
            self.schedule_apply(node, upto, self.now() + delay);
        }
    }

    /// Entries up to `upto` reach `node`'s replica at `at`.
    pub(super) fn schedule_apply(&mut self, node: NodeId, upto: u64, at: Micros) {
        let agent = self.agents.get_mut(&node).expect("known");
        if upto > agent.apply_target {
            agent.apply_target = upto;
            let generation = agent.generation;
            self.queue.push(
                at,
                Event::Apply {
                    node,
                    generation,
                    upto,
                },
            );
        }
    }

    pub(super) fn on_apply(&mut self, node: NodeId, upto: u64) {
        let from = self.agents[&node].applied();
        if upto <= from {
            return;
        }
        // The log's state as of `upto` is what applying the entries gives (apply is
        // deterministic). A replica so far behind that it is no longer kept gets the
        // current state, as openraft sends a snapshot to a follower behind its purged log.
        let (upto, state) = match self.log.version(upto) {
            Some(state) => (upto, state),
            None => {
                self.log.snapshot_installs += 1;
                (self.log.commit_index(), self.log.state())
            }
        };
        self.agents[&node]
            .replica
            .install_detached(state.clone(), upto);
        let now = self.now();
        self.observer.applied(node, from, upto, now);
        self.deliver_outcomes(node);
        self.deliver_barriers(node);
        self.wake_controllers(node);
        let changes = (from + 1..=upto).any(|i| may_change_copies(self.log.entry(i), node));
        let committed = self.log.commit_index();
        let agent = self.agents.get_mut(&node).expect("known");
        agent.apply_target = agent.apply_target.max(upto);
        let changes = agent.note_caught_up(committed) || changes;
        if let Some(task) = agent.reconciler.as_mut() {
            if changes {
                task.idle_at = None;
            } else if task.idle_at == Some(from) {
                // Nothing applied can give the reconciler work: its idle pass holds.
                task.idle_at = Some(upto);
            }
        }
        self.reconcile(node);
    }

    /// Hands their outcome to the proposals whose entry `node`'s replica now holds.
    fn deliver_outcomes(&mut self, node: NodeId) {
        let agent = self.agents.get_mut(&node).expect("known");
        let applied = agent.applied();
        let (done, waiting): (Vec<_>, Vec<_>) = agent
            .awaiting
            .drain(..)
            .partition(|(index, _)| *index <= applied);
        agent.awaiting = waiting;
        for (_, id) in done {
            if let Some(result) = self.pending_outcomes.remove(&id) {
                self.resolve(id, Ok(result));
            }
        }
    }

    /// Ends proposal `id` with `outcome`, handing it to the controller awaiting it.
    fn resolve(&mut self, id: ProposalId, outcome: ProposalOutcome) {
        let Some(p) = self.inflight.remove(&id) else {
            return;
        };
        if p.awaited {
            self.proposals.lock().resolve(id, outcome);
            self.poll_controllers(p.from);
            self.poll_reconciler(p.from);
        }
    }

    /// Tells `then` the outcome of its proposal (`None`: it never commits).
    fn on_then(&mut self, then: Then, result: Option<&MetaResult>) {
        match then {
            Then::Drive(id) => self.on_drive_outcome(id, result),
        }
    }

    pub(super) fn on_proposal_deadline(&mut self, id: ProposalId) {
        self.pending_outcomes.remove(&id);
        let then = self.inflight.get_mut(&id).and_then(|p| p.then.take());
        if let Some(then) = then {
            self.on_then(then, None);
        }
        let why = "no outcome within the leader wait".to_string();
        self.resolve(id, Err(MetaClientError::Unknown(why)));
    }

    /// Makes `node` the leader of a new term at `at`.
    pub(super) fn become_leader(&mut self, node: NodeId, at: Micros) {
        self.log.term += 1;
        self.log.leader = Some(node);
        self.log.electing = false;
        let term = self.log.term;
        let commit = self.log.commit_index();
        // A new leader holds every committed entry; its replica applies them at once.
        self.schedule_apply(node, commit, at + APPLY_US);
        self.queue.push(at, Event::Heartbeat { term });
        self.start_controllers(node, term, at);
    }

    pub(super) fn on_heartbeat(&mut self, term: u64) {
        if term != self.log.term {
            return;
        }
        let Some(leader) = self.log.leader else {
            return;
        };
        if !self.leader_running() || !self.leader_has_quorum(leader) {
            // Followers hear nothing for an election timeout and elect another.
            self.log.leader = None;
            self.schedule_election();
            return;
        }
        let now = self.now();
        let commit = self.log.commit_index();
        // Whoever the heartbeat reaches knows its metadata is current (the leader: it
        // has just confirmed its quorum).
        let heard: Vec<NodeId> = self
            .agents
            .values()
            .filter(|a| a.is_up() && self.net.connected(leader, a.id))
            .map(|a| a.id)
            .collect();
        for node in heard {
            self.agents.get_mut(&node).expect("known").leader_contact_at = Some(now);
        }
        let reached: Vec<NodeId> = self
            .agents
            .values()
            .filter(|a| a.is_up() && a.id != leader && self.net.mutual(leader, a.id))
            .map(|a| a.id)
            .collect();
        if let Some(controllers) = self.agents[&leader].leader.as_ref() {
            for node in &reached {
                controllers.contacts.record(&peer_addr(*node));
            }
        }
        for &node in &reached {
            if self.agents[&node].apply_target < commit {
                let delay = self.net.latency(&mut self.rng, leader, node) + APPLY_US;
                self.schedule_apply(node, commit, now + delay);
            }
        }
        self.refresh_voters(leader, &reached);
        let oldest_needed = self
            .agents
            .values()
            .filter(|a| a.is_alive())
            .map(|a| a.applied() + 1)
            .min()
            .unwrap_or(commit);
        self.log.forget_versions_before(oldest_needed);
        self.queue
            .push(now + RAFT_HEARTBEAT_US, Event::Heartbeat { term });
    }

    /// Whether a quorum of voters (the leader included) exchanges with the leader.
    fn leader_has_quorum(&self, leader: NodeId) -> bool {
        let answering = self
            .log
            .voters
            .iter()
            .filter(|v| **v == leader || self.agents[*v].is_up() && self.net.mutual(leader, **v))
            .count();
        answering >= self.log.quorum()
    }

    fn schedule_election(&mut self) {
        if self.log.electing {
            return;
        }
        self.log.electing = true;
        let timeout = self
            .rng
            .between(ELECTION_TIMEOUT_MIN_US, ELECTION_TIMEOUT_MAX_US);
        self.queue.push(self.now() + timeout, Event::Election);
    }

    pub(super) fn on_election(&mut self) {
        self.log.electing = false;
        if self.log.leader.is_some() {
            return;
        }
        let candidates: Vec<NodeId> = self
            .log
            .voters
            .iter()
            .copied()
            .filter(|c| self.agents[c].is_up() && self.leader_has_quorum(*c))
            .collect();
        if candidates.is_empty() {
            self.schedule_election();
            return;
        }
        let winner = candidates[self.rng.index(candidates.len())];
        // One round of vote requests and answers.
        let peer = self.log.voters.iter().copied().find(|v| *v != winner);
        let rtt = peer.map_or(0, |p| {
            self.net.latency(&mut self.rng, winner, p) + self.net.latency(&mut self.rng, p, winner)
        });
        self.become_leader(winner, self.now() + rtt + FSYNC_US);
    }

    /// The leader's heartbeat as its Voter Manager sees it: the voter set it asked for
    /// takes effect, and its view of the membership is refreshed (every registered node
    /// it did not remove is a learner, each known to hold the log up to its applied
    /// index when the leader reaches it).
    pub(super) fn refresh_voters(&mut self, leader: NodeId, reached: &[NodeId]) {
        let mut board = self.voters.lock();
        if let Some(voters) = board.pending.take() {
            self.trace
                .record(self.now(), format_args!("voters {voters:?}"), &[]);
            self.log.voters = voters;
        }
        let registered: BTreeSet<NodeId> = self.agents[&leader]
            .replica
            .read(|s| s.nodes().map(|n| n.node_id).collect());
        let learners = registered
            .into_iter()
            .filter(|n| !self.log.voters.contains(n) && !board.removed.contains(n))
            .collect();
        let matched = reached
            .iter()
            .chain(std::iter::once(&leader))
            .map(|n| (*n, self.agents[n].applied()))
            .collect();
        board.view = MembersView {
            me: leader,
            voters: self.log.voters.clone(),
            learners,
            last_log_index: self.log.commit_index(),
            matched,
        };
    }
}
