//! One simulated agent: its process state, its real gossip core and membership view,
//! its metadata replica, and (while it leads) its controllers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use agent::data::reconciler::{Pass, Reconciler};
use agent::membership::report::LoadSummary;
use agent::membership::{CoreParts, GossipCore, GossipId, LocalMember, Membership};
use agent::metrics::GossipTraffic;
use agent::seam::StateHandle;
use shared::model::NodeId;

use crate::cluster::{endpoint, peer_addr};
use crate::config::{PAUSED_INBOX_MAX, SimConfig};
use crate::copies::{Copies, SimCopies};
use crate::event::{Event, Generation};
use crate::leader::LeaderControllers;
use crate::seam::{ProposalId, Proposals, SimMeta};
use crate::time::{Micros, VirtualClock};

/// What the agent's process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// Running.
    Up,
    /// Stopped (a long GC pause); resumes by itself.
    Paused,
    /// Dead until restarted.
    Crashed,
}

/// One agent.
pub struct SimAgent {
    /// Node id.
    pub id: NodeId,
    /// Zone.
    pub zone: String,
    /// Incarnation of the current (or last) process.
    pub incarnation: u64,
    /// Process instance, bumped at every restart.
    pub generation: Generation,
    /// Process state.
    pub process: Process,
    /// The real gossip core (`None` once crashed).
    pub core: Option<GossipCore>,
    /// The gossip view the core maintains.
    pub membership: Membership,
    /// The local metadata replica (kept across restarts, like the agent's redb file).
    pub replica: StateHandle,
    /// Highest log entry already on its way to the replica.
    pub apply_target: u64,
    /// The agent's side of the metadata log seam.
    pub meta: Arc<SimMeta>,
    /// Controllers, while this agent leads.
    pub leader: Option<LeaderControllers>,
    /// Events that arrived while paused, handled at resume.
    pub deferred: Vec<Event>,
    /// Datagrams among `deferred` (bounded like the driver's inbox).
    pub deferred_datagrams: usize,
    /// The agent's own reconciler, one pass at a time (`None` while crashed).
    pub reconciler: Option<ReconcileTask>,
    /// Its replica has caught up with the log since the process started: orphaned
    /// copies may be dropped (the agent's `caught_up`).
    pub caught_up: Arc<AtomicBool>,
    /// Proposals waiting for this replica to apply their entry: (index, proposal).
    pub awaiting: Vec<(u64, ProposalId)>,
    /// Read barriers waiting for this replica to apply the leader's commit index then:
    /// (index, barrier).
    pub barriers: Vec<(u64, ProposalId)>,
    /// When the agent last heard from a leader (the leader: from a quorum of voters):
    /// its metadata is confirmed current, so it may hold read leases (`MetaFreshness`).
    pub leader_contact_at: Option<Micros>,
}

impl SimAgent {
    /// A new agent process (first start) with replica `replica`.
    pub fn new(cfg: &SimConfig, id: NodeId, replica: StateHandle, proposals: &Proposals) -> Self {
        SimAgent {
            id,
            zone: cfg.zone_of(id),
            incarnation: 1,
            generation: 0,
            process: Process::Crashed,
            core: None,
            membership: Membership::new(id, GossipTraffic::default()),
            apply_target: replica.applied_index(),
            replica,
            meta: Arc::new(SimMeta::new(id, proposals.clone())),
            leader: None,
            deferred: Vec::new(),
            deferred_datagrams: 0,
            reconciler: None,
            caught_up: Arc::new(AtomicBool::new(false)),
            awaiting: Vec::new(),
            barriers: Vec::new(),
            leader_contact_at: None,
        }
    }

    /// Starts a process: a fresh gossip core and view (a new process remembers nothing
    /// of gossip), seeded from `seed`.
    pub fn boot(&mut self, cfg: &SimConfig, clock: &VirtualClock, seed: u64, copies: &Copies) {
        self.generation += 1;
        self.process = Process::Up;
        self.membership = Membership::new(self.id, GossipTraffic::default());
        self.leader = None;
        self.deferred.clear();
        self.deferred_datagrams = 0;
        self.caught_up = Arc::new(AtomicBool::new(false));
        self.reconciler = Some(ReconcileTask::new(Reconciler::new(
            Arc::new(copies.of(self.id)),
            self.replica.clone(),
            self.meta.clone(),
            self.caught_up.clone(),
        )));
        self.awaiting.clear();
        self.barriers.clear();
        self.leader_contact_at = None;
        self.apply_target = self.replica.applied_index();
        let replica = self.replica.clone();
        let id = self.id;
        let status = Arc::new(move || {
            let owned = replica.read(|s| s.node(id).map_or(0, |n| n.partition_ids.len()));
            let load = LoadSummary {
                partitions_owned: owned as u32,
                ..LoadSummary::default()
            };
            (replica.applied_index(), load)
        });
        self.core = Some(GossipCore::new(CoreParts {
            local: LocalMember {
                id: GossipId::new(self.id, peer_addr(self.id), self.incarnation),
                zone: self.zone.clone(),
                endpoint: endpoint(self.id),
            },
            config: cfg.gossip.clone(),
            membership: self.membership.clone(),
            state: self.replica.clone(),
            status,
            clock: clock.unix_clock(),
            seed: Some(seed),
        }));
    }

    /// The process dies.
    pub fn crash(&mut self) {
        self.process = Process::Crashed;
        self.core = None;
        self.leader = None;
        self.reconciler = None;
        self.deferred.clear();
        self.deferred_datagrams = 0;
        self.awaiting.clear();
        self.barriers.clear();
    }

    /// Keeps an event that arrived while paused (datagrams only up to the inbox bound,
    /// like the driver's channel).
    pub fn defer(&mut self, event: Event) {
        if matches!(event, Event::Datagram { .. }) {
            if self.deferred_datagrams >= PAUSED_INBOX_MAX {
                return;
            }
            self.deferred_datagrams += 1;
        }
        self.deferred.push(event);
    }

    /// Whether the process is running (not paused, not crashed).
    pub fn is_up(&self) -> bool {
        self.process == Process::Up
    }

    /// Whether the process exists (running or paused).
    pub fn is_alive(&self) -> bool {
        self.process != Process::Crashed
    }

    /// Whether the replica just caught up with the log's commit index `committed`
    /// (orphaned copies may go from now on).
    pub fn note_caught_up(&self, committed: u64) -> bool {
        self.applied() >= committed && !self.caught_up.swap(true, Ordering::AcqRel)
    }

    /// Log index applied by the replica.
    pub fn applied(&self) -> u64 {
        self.replica.applied_index()
    }

    /// Whether the agent may serve as primary at `now`: it runs and its metadata was
    /// confirmed current within `lease` (a read lease is held only while it is).
    pub fn holds_lease(&self, now: Micros, lease: Micros) -> bool {
        self.is_up()
            && self
                .leader_contact_at
                .is_some_and(|t| now.saturating_sub(t) <= lease)
    }
}

type PassFuture = Pin<Box<dyn Future<Output = anyhow::Result<Pass>> + Send>>;

/// The agent's reconciler run as the agent runs it: one pass at a time, another right
/// after it when woken meanwhile. A pass that found nothing to do is remembered with the
/// applied index it saw, so the loop can skip passes that cannot find anything new.
pub struct ReconcileTask {
    reconciler: Reconciler<SimMeta, SimCopies>,
    pass: Option<PassFuture>,
    rerun: bool,
    /// The applied index at which the last pass found nothing to do.
    pub idle_at: Option<u64>,
}

impl ReconcileTask {
    fn new(reconciler: Reconciler<SimMeta, SimCopies>) -> Self {
        ReconcileTask {
            reconciler,
            pass: None,
            rerun: false,
            idle_at: None,
        }
    }

    /// Starts a pass, or asks for another after the running one; `applied` is the
    /// replica's applied index now.
    pub fn wake(&mut self, applied: u64) {
        if self.pass.is_some() {
            self.rerun = true;
        } else {
            let reconciler = self.reconciler.clone();
            self.pass = Some(Box::pin(async move { reconciler.step().await }));
        }
        self.poll(applied);
    }

    /// Polls the running pass (after an outcome it waits for arrived).
    pub fn poll(&mut self, applied: u64) {
        let mut cx = Context::from_waker(Waker::noop());
        let Some(pass) = self.pass.as_mut() else {
            return;
        };
        let Poll::Ready(result) = pass.as_mut().poll(&mut cx) else {
            return;
        };
        self.pass = None;
        // A failed pass is retried at the next tick or apply, as the agent's loop does.
        self.idle_at = matches!(result, Ok(Pass::Idle)).then_some(applied);
        if std::mem::take(&mut self.rerun) {
            self.wake(applied);
        }
    }
}
