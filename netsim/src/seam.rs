//! The simulator's side of the agent's seams: the controllers' metadata log
//! ([`MetaLog`]), the leader's record of peers that answered ([`ContactAges`]) and the
//! replicas' log positions ([`ReplicaPositions`]). The real `FailureDetector` and
//! `RecoveryCoordinator` run against these.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use agent::metrics::AgentMetrics;
use agent::seam::ContactAges;
use agent::seam::ReplicaPositions;
use agent::seam::{MembersView, MetaClientError, MetaLog, VoterMembership};
use agent::transport::BoxFuture;
use shared::command::{MetaCommand, MetaResult};
use shared::data::LogPosition;
use shared::model::{NodeId, PartitionId};

use crate::time::{Micros, VirtualClock};

/// Identifies one proposal.
pub type ProposalId = u64;

/// What an agent asks of the log.
#[derive(Debug, Clone)]
pub enum Request {
    /// Commit this command.
    Command(MetaCommand),
    /// A read barrier: answered once the asker's replica holds what the leader had
    /// committed when asked.
    Barrier,
}

/// What an agent proposed (or asked) and is waiting for.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Its id.
    pub id: ProposalId,
    /// The proposing agent.
    pub from: NodeId,
    /// What it asks.
    pub request: Request,
}

/// Outcome of one proposal, as `MetaClient::propose` returns it.
pub type ProposalOutcome = Result<MetaResult, MetaClientError>;

/// Proposals on their way to the simulated log, and outcomes on their way back. The
/// event loop drains the former and fills the latter; futures poll the latter.
#[derive(Default)]
pub struct ProposalBox {
    next_id: ProposalId,
    outgoing: Vec<Proposal>,
    outcomes: BTreeMap<ProposalId, ProposalOutcome>,
    /// Who to wake when an outcome arrives (inside a `join_all` of many, only woken
    /// futures are polled again).
    wakers: BTreeMap<ProposalId, Waker>,
}

impl ProposalBox {
    /// A new proposal id (for proposals made outside a future).
    pub fn next_id(&mut self) -> ProposalId {
        self.next_id += 1;
        self.next_id
    }

    /// Queues `request` by `from`; returns its id.
    pub fn submit(&mut self, from: NodeId, request: Request) -> ProposalId {
        let id = self.next_id();
        self.outgoing.push(Proposal { id, from, request });
        id
    }

    /// Takes every queued proposal, in submission order.
    pub fn take_outgoing(&mut self) -> Vec<Proposal> {
        std::mem::take(&mut self.outgoing)
    }

    /// Records the outcome of proposal `id`.
    pub fn resolve(&mut self, id: ProposalId, outcome: ProposalOutcome) {
        self.outcomes.insert(id, outcome);
        if let Some(waker) = self.wakers.remove(&id) {
            waker.wake();
        }
    }

    /// Forgets the outcome of a proposal nobody waits for any more.
    pub fn forget(&mut self, id: ProposalId) {
        self.outcomes.remove(&id);
        self.wakers.remove(&id);
    }

    fn take_outcome(&mut self, id: ProposalId) -> Option<ProposalOutcome> {
        self.outcomes.remove(&id)
    }
}

/// Shared handle on the [`ProposalBox`].
#[derive(Clone, Default)]
pub struct Proposals(Arc<Mutex<ProposalBox>>);

impl Proposals {
    /// The box; nothing holds it across a call that can panic half-way, so a poisoned
    /// lock is still consistent.
    pub fn lock(&self) -> MutexGuard<'_, ProposalBox> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One agent's [`MetaLog`]: proposals go to the simulated log through the box.
pub struct SimMeta {
    node_id: NodeId,
    proposals: Proposals,
    metrics: AgentMetrics,
}

impl SimMeta {
    /// The log as agent `node_id` sees it.
    pub fn new(node_id: NodeId, proposals: Proposals) -> Self {
        SimMeta {
            node_id,
            proposals,
            metrics: AgentMetrics::new(),
        }
    }
}

impl MetaLog for SimMeta {
    fn node_id(&self) -> NodeId {
        self.node_id
    }

    fn propose(&self, cmd: MetaCommand) -> BoxFuture<'_, ProposalOutcome> {
        Box::pin(Pending {
            proposals: self.proposals.clone(),
            state: PendingState::Unsent(self.node_id, Some(Request::Command(cmd))),
        })
    }

    /// The simulated log takes proposals from any node to its leader: both ways of
    /// proposing are the same here.
    fn propose_via_leader(&self, cmd: MetaCommand) -> BoxFuture<'_, ProposalOutcome> {
        self.propose(cmd)
    }

    fn read_barrier(&self) -> BoxFuture<'_, Result<(), MetaClientError>> {
        let pending = Pending {
            proposals: self.proposals.clone(),
            state: PendingState::Unsent(self.node_id, Some(Request::Barrier)),
        };
        Box::pin(async move { pending.await.map(|_| ()) })
    }

    fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }
}

enum PendingState {
    Unsent(NodeId, Option<Request>),
    Sent(ProposalId),
}

/// A proposal's future: submitted on first poll, ready once the loop resolved it.
struct Pending {
    proposals: Proposals,
    state: PendingState,
}

impl Future for Pending {
    type Output = ProposalOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ProposalOutcome> {
        let this = &mut *self;
        let mut proposals = this.proposals.lock();
        match &mut this.state {
            PendingState::Unsent(from, request) => {
                let request = request
                    .take()
                    .expect("a future is not polled after it submitted");
                let id = proposals.submit(*from, request);
                this.state = PendingState::Sent(id);
                proposals.wakers.insert(id, cx.waker().clone());
                Poll::Pending
            }
            // The loop polls the waiting agent's tasks after each resolution; the waker
            // matters to a `join_all` of many inside them.
            PendingState::Sent(id) => match proposals.take_outcome(*id) {
                Some(outcome) => Poll::Ready(outcome),
                None => {
                    proposals.wakers.insert(*id, cx.waker().clone());
                    Poll::Pending
                }
            },
        }
    }
}

/// The leader's record of which peers answered its (simulated) Raft heartbeats.
pub struct SimContacts {
    clock: VirtualClock,
    last: Mutex<HashMap<String, Micros>>,
}

impl SimContacts {
    /// An empty record on `clock`.
    pub fn new(clock: VirtualClock) -> Self {
        SimContacts {
            clock,
            last: Mutex::default(),
        }
    }

    /// The peer at `addr` answered now.
    pub fn record(&self, addr: &str) {
        let now = self.clock.now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.insert(addr.to_string(), now);
    }
}

impl ContactAges for SimContacts {
    fn ages(&self) -> HashMap<String, Duration> {
        let now = self.clock.now();
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.iter()
            .map(|(a, t)| (a.clone(), Duration::from_micros(now.saturating_sub(*t))))
            .collect()
    }
}

/// Replica positions: the simulator has no data plane, so no copy is known to be ahead
/// of another and promotion falls to the planner's tie-breaks (ready, HEALTHY, fewest
/// primaries, lowest id).
pub struct SimPositions;

impl ReplicaPositions for SimPositions {
    fn collect_positions(
        &self,
        _wanted: BTreeMap<NodeId, Vec<PartitionId>>,
    ) -> BoxFuture<'_, HashMap<(PartitionId, NodeId), LogPosition>> {
        Box::pin(std::future::ready(HashMap::new()))
    }
}

/// What the simulated log shows the leader's Voter Manager, and the change it asked for.
#[derive(Debug, Default)]
pub struct VoterBoard {
    /// The membership as of the leader's last heartbeat.
    pub view: MembersView,
    /// Members the manager removed (until it adds them back as learners).
    pub removed: BTreeSet<NodeId>,
    /// A new voter set, applied by the log at the leader's next heartbeat.
    pub pending: Option<BTreeSet<NodeId>>,
}

/// The agent's `VoterMembership` seam over the simulated log: the view is refreshed at
/// every heartbeat of the leader, and a change takes effect at the next one (openraft
/// commits a membership change through the log; netsim applies it at once).
#[derive(Clone, Default)]
pub struct SimVoters(Arc<Mutex<VoterBoard>>);

impl SimVoters {
    /// The board; nothing panics while holding it.
    pub fn lock(&self) -> MutexGuard<'_, VoterBoard> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl VoterMembership for SimVoters {
    fn members(&self) -> MembersView {
        self.lock().view.clone()
    }

    fn remove(&self, nodes: BTreeSet<NodeId>) -> BoxFuture<'_, Result<(), String>> {
        let mut board = self.lock();
        board.view.learners.retain(|n| !nodes.contains(n));
        board.removed.extend(nodes);
        Box::pin(std::future::ready(Ok(())))
    }

    fn replace_voters(&self, voters: BTreeSet<NodeId>) -> BoxFuture<'_, Result<(), String>> {
        self.lock().pending = Some(voters);
        Box::pin(std::future::ready(Ok(())))
    }

    fn add_learner(&self, node: NodeId, _addr: String) -> BoxFuture<'_, Result<(), String>> {
        let mut board = self.lock();
        board.removed.remove(&node);
        board.view.learners.insert(node);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The leader's signing keys in netsim, for the agent's own key keeper: made from the
/// node id and a generation (no key file), with the agent's default periods; a rotation
/// publishes the new key and retires the old one through the log, as the agent's
/// credential issuer does.
pub struct SimKeys {
    meta: Arc<SimMeta>,
    clock: agent::seam::Clock,
    generation: Mutex<u32>,
    auth: agent::config::AuthConfig,
}

impl SimKeys {
    /// The keys of the node `meta` proposes for, on `clock`.
    pub fn new(meta: Arc<SimMeta>, clock: agent::seam::Clock) -> Self {
        SimKeys {
            meta,
            clock,
            generation: Mutex::new(1),
            auth: agent::config::AuthConfig::default(),
        }
    }

    fn key(&self, generation: u32) -> (String, [u8; 32]) {
        let node = self.meta.node_id();
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&node.to_le_bytes());
        seed[8..12].copy_from_slice(&generation.to_le_bytes());
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        (format!("node{node}-g{generation}"), public)
    }

    fn generation(&self) -> u32 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl agent::seam::SigningKeyRing for SimKeys {
    type Held<'a> = ();

    /// One keeper per leader and no operator: nothing to serialize with.
    fn hold(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn current(&self) -> (String, [u8; 32]) {
        self.key(self.generation())
    }

    fn rotation_period_ms(&self) -> u64 {
        self.auth.key_rotation_period_secs * 1000
    }

    fn grace_ms(&self) -> u64 {
        self.auth.grace_ms()
    }

    fn rotate<'a>(&'a self, _held: &'a ()) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let old = self.current().0;
            let now_ms = (self.clock)();
            let next = self.generation() + 1;
            let (kid, public_key) = self.key(next);
            let publish = MetaCommand::PublishSigningKey {
                kid,
                public_key,
                node_id: self.meta.node_id(),
                now_ms,
            };
            match self.meta.propose(publish).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(e) => return Err(e.to_string()),
            }
            *self.generation.lock().unwrap_or_else(|e| e.into_inner()) = next;
            let retire = MetaCommand::RetireSigningKey {
                kid: old,
                now_ms,
                trusted_until_ms: now_ms + self.grace_ms(),
            };
            self.meta
                .propose(retire)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
