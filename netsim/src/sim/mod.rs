//! The simulation: agents, network, metadata log and the event loop that drives them
//! in virtual time. Handlers live in submodules by subject: gossip, the log and its
//! replication, leader controllers, the reconciler, and faults.

mod control;
mod drive;
mod faults;
mod gossip;
mod log;
mod reconcile;
mod scaler;

use std::collections::{BTreeMap, BTreeSet};

use agent::seam::StateHandle;
use shared::model::NodeId;
use shared::placement::{VoterCandidate, VoterConfig, learners_to_promote, voter_target};

use crate::agent::SimAgent;
use crate::cluster::initial_state;
use crate::config::{REPLICA_CHECK_US, SAMPLE_US, START_SPREAD_US, SimConfig};
use crate::error::SimError;
use crate::event::{Event, EventQueue};
use crate::faults::Fault;
use crate::invariants::Invariants;
use crate::metalog::SimLog;
use crate::network::Network;
use crate::observe::Observer;
use crate::rng::SimRng;
use crate::seam::Proposals;
use crate::time::{Micros, VirtualClock, millis};
use crate::trace::Trace;
use crate::truth::Truth;

pub use drive::Rebalancer;
pub use log::InFlight;
pub use scaler::{ChildMove, LoadModel, SharedLoadModel, SimLoads, SimScaler, SplitDone};

/// How often the node-state timeline is sampled.
const TIMELINE_EVERY_SAMPLES: u64 = 10;

/// A run.
pub struct Simulation {
    pub(crate) cfg: SimConfig,
    pub(crate) clock: VirtualClock,
    pub(crate) queue: EventQueue,
    pub(crate) rng: SimRng,
    pub(crate) net: Network,
    pub(crate) agents: BTreeMap<NodeId, SimAgent>,
    pub(crate) log: SimLog,
    pub(crate) proposals: Proposals,
    pub(crate) inflight: BTreeMap<u64, InFlight>,
    /// Results of committed proposals until the proposer's replica applies them.
    pub(crate) pending_outcomes: BTreeMap<u64, shared::command::MetaResult>,
    pub(crate) truth: Truth,
    pub(crate) trace: Trace,
    pub(crate) observer: Observer,
    pub(crate) invariants: Invariants,
    pub(crate) rebalancer: Option<Rebalancer>,
    pub(crate) scaler: Option<SimScaler>,
    /// The membership the leader's Voter Manager sees and changes.
    pub(crate) voters: crate::seam::SimVoters,
    /// Every node's partition copies, as their reconcilers see and change them.
    pub(crate) copies: crate::copies::Copies,
    samples: u64,
}

impl Simulation {
    /// A run of `cfg`, recording into `trace`; nothing happens until [`Self::start`].
    pub fn new(cfg: SimConfig, trace: Trace) -> Result<Self, SimError> {
        if cfg.nodes == 0 {
            return Err(SimError::BadParameters("a cluster needs a node".into()));
        }
        let state = initial_state(&cfg)?;
        let mut rng = SimRng::new(cfg.seed);
        let mut net = Network::new(cfg.net.clone(), rng.next_seed());
        let proposals = Proposals::default();
        let mut agents = BTreeMap::new();
        for id in 1..=cfg.nodes as NodeId {
            net.place(id, (id as usize) % cfg.zones.max(1));
            let replica = StateHandle::detached(state.clone());
            agents.insert(id, SimAgent::new(&cfg, id, replica, &proposals));
        }
        let window = millis(cfg.failure_confirm_window_ms);
        Ok(Simulation {
            invariants: Invariants::new(&state, window),
            log: SimLog::new(state, cfg.kept_versions),
            clock: VirtualClock::default(),
            queue: EventQueue::default(),
            rng,
            net,
            agents,
            proposals,
            inflight: BTreeMap::new(),
            pending_outcomes: BTreeMap::new(),
            truth: Truth::default(),
            trace,
            observer: Observer::default(),
            cfg,
            rebalancer: None,
            scaler: None,
            voters: crate::seam::SimVoters::default(),
            copies: crate::copies::Copies::default(),
            samples: 0,
        })
    }

    /// Boots every agent at a random instant within `START_SPREAD_US`, makes the first
    /// voters and leader, and starts sampling.
    pub fn start(&mut self) {
        let ids: Vec<NodeId> = self.agents.keys().copied().collect();
        for id in ids {
            let at = self.rng.between(0, START_SPREAD_US);
            self.queue.push(at, Event::Boot(id));
        }
        self.log.voters = initial_voters(&self.log, &self.agents);
        // The first leader is elected once every process runs.
        self.log.electing = true;
        self.queue.push(START_SPREAD_US, Event::Election);
        self.queue.push(SAMPLE_US, Event::Sample);
        self.truth.update(0, &self.agents, &self.net);
    }

    /// Schedules `fault` at `at`.
    pub fn schedule(&mut self, at: Micros, fault: Fault) {
        self.queue.push(at, Event::Fault(fault));
    }

    /// Runs every event up to and including `until`; the clock ends at `until`.
    pub fn run_until(&mut self, until: Micros) {
        while self.queue.next_time().is_some_and(|t| t <= until) {
            let (at, event) = self.queue.pop().expect("peeked");
            self.clock.advance_to(at);
            self.handle(event);
        }
        self.clock.advance_to(until.max(self.clock.now()));
    }

    /// Runs until `done` holds (checked every `every`) or `deadline`; the instant it
    /// first held.
    pub fn run_until_true(
        &mut self,
        deadline: Micros,
        every: Micros,
        mut done: impl FnMut(&Simulation) -> bool,
    ) -> Option<Micros> {
        loop {
            if done(self) {
                return Some(self.now());
            }
            if self.now() >= deadline {
                return None;
            }
            let next = (self.now() + every).min(deadline);
            self.run_until(next);
        }
    }

    /// Adds a new agent (the next id, zones round robin): its replica starts from the
    /// log's current state (a snapshot), it boots now and registers itself.
    pub fn add_node(&mut self) -> NodeId {
        let id = self.agents.keys().next_back().map_or(1, |n| n + 1);
        self.net.place(id, (id as usize) % self.cfg.zones.max(1));
        let replica = StateHandle::detached(self.log.state().clone());
        replica.install_detached(self.log.state().clone(), self.log.commit_index());
        let agent = SimAgent::new(&self.cfg, id, replica, &self.proposals);
        self.agents.insert(id, agent);
        self.queue.push(self.now(), Event::Boot(id));
        id
    }

    /// Has the observer follow `node` from `at` (suspicion, failure, the rerouting of
    /// `partitions`), as it follows crashed nodes.
    pub fn follow(
        &mut self,
        node: NodeId,
        at: Micros,
        partitions: &BTreeSet<shared::model::PartitionId>,
    ) {
        self.observer.follow(node, at, partitions);
    }

    /// Virtual now.
    pub fn now(&self) -> Micros {
        self.clock.now()
    }

    /// The run's parameters.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The agents.
    pub fn agents(&self) -> &BTreeMap<NodeId, SimAgent> {
        &self.agents
    }

    /// The metadata log.
    pub fn log(&self) -> &SimLog {
        &self.log
    }

    /// The measurements.
    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    /// The invariant checker.
    pub fn invariants(&self) -> &Invariants {
        &self.invariants
    }

    /// Replicas that took the log's current state, theirs being no longer kept (as a
    /// follower behind the purged log gets a snapshot).
    pub fn snapshot_installs(&self) -> u64 {
        self.log.snapshot_installs
    }

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Runs the liveness check now.
    pub fn check_healed(&mut self) {
        let now = self.now();
        self.invariants.check_healed(
            now,
            self.log.state(),
            self.log.commit_index(),
            &self.agents,
            self.cfg.replication_factor,
        );
    }

    fn handle(&mut self, event: Event) {
        self.record(&event);
        if let Some((node, generation)) = event.process() {
            let Some(agent) = self.agents.get_mut(&node) else {
                return;
            };
            if !agent.is_alive() || generation.is_some_and(|g| g != agent.generation) {
                return;
            }
            if !agent.is_up() {
                agent.defer(event);
                return;
            }
        }
        match event {
            Event::Datagram { to, bytes, .. } => self.on_datagram(to, &bytes),
            Event::GossipTimer { node, timer, .. } => self.on_gossip_timer(node, timer),
            Event::Tick { node, tick, .. } => self.on_tick(node, tick),
            Event::Control {
                node, controller, ..
            } => self.on_control(node, controller),
            Event::Apply { node, upto, .. } => self.on_apply(node, upto),
            Event::FillDone {
                node,
                fill,
                partition_id,
                ..
            } => self.on_fill_done(node, fill, partition_id),
            Event::ProposalSend(id) => self.on_proposal_send(id),
            Event::ProposalArrive { id, term } => self.on_proposal_arrive(id, term),
            Event::ProposalCommit { id, term } => self.on_proposal_commit(id, term),
            Event::ProposalDeadline(id) => self.on_proposal_deadline(id),
            Event::Heartbeat { term } => self.on_heartbeat(term),
            Event::Election => self.on_election(),
            Event::Boot(node) => self.boot_agent(node, self.now()),
            Event::Rebalance => self.on_rebalance(),
            Event::DriveTimer(id) => self.on_drive_timer(id),
            Event::Scale => self.on_scale(),
            Event::Resume { node, generation } => self.on_resume(node, generation),
            Event::Fault(fault) => self.on_fault(fault),
            Event::Sample => self.on_sample(),
        }
        self.dispatch_proposals();
    }

    fn record(&mut self, event: &Event) {
        let now = self.clock.now();
        match event {
            Event::Datagram { to, from, bytes } => self.trace.record(
                now,
                format_args!("dgram {from}->{to} {}B", bytes.len()),
                bytes,
            ),
            other => self.trace.record(now, format_args!("{other:?}"), &[]),
        }
    }

    fn on_sample(&mut self) {
        let now = self.now();
        self.samples += 1;
        self.observer.sample_suspicions(now, &self.agents);
        if self.samples.is_multiple_of(TIMELINE_EVERY_SAMPLES) {
            let leader = self.log.leader.and_then(|l| self.agents.get(&l));
            let crashed = self.agents.values().filter(|a| !a.is_alive()).count();
            self.observer.sample_states(now, leader, crashed);
        }
        if self.samples.is_multiple_of(REPLICA_CHECK_US / SAMPLE_US) {
            self.invariants.check_replicas(now, &self.agents);
        }
        self.queue.push(now + SAMPLE_US, Event::Sample);
    }

    /// The agents whose process exists (running or paused).
    pub fn alive_agents(&self) -> BTreeSet<NodeId> {
        self.agents
            .values()
            .filter(|a| a.is_alive())
            .map(|a| a.id)
            .collect()
    }
}

/// The first voters: the voter target over all nodes, spread over zones.
fn initial_voters(log: &SimLog, agents: &BTreeMap<NodeId, SimAgent>) -> BTreeSet<NodeId> {
    let target = voter_target(agents.len(), &VoterConfig::default());
    let candidates: Vec<VoterCandidate> = log
        .state()
        .nodes()
        .map(|n| VoterCandidate {
            node_id: n.node_id,
            zone: n.zone.clone(),
        })
        .collect();
    learners_to_promote(&[], &candidates, target)
        .into_iter()
        .collect()
}
