//! One simulated agent: its process state, its real gossip core and membership view,
//! its metadata replica, and (while it leads) its controllers.

use std::sync::Arc;

use agent::membership::report::LoadSummary;
use agent::membership::{CoreParts, GossipCore, GossipId, LocalMember, Membership};
use agent::metrics::GossipTraffic;
use agent::seam::StateHandle;
use shared::model::NodeId;

use crate::cluster::{endpoint, peer_addr};
use crate::config::{PAUSED_INBOX_MAX, SimConfig};
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
    /// A reconcile pass (fills) is running.
    pub reconciling: bool,
    /// The applied index at which a reconcile pass last found nothing to do (the next
    /// pass is skipped until the replica moves on).
    pub reconciled_idle: Option<u64>,
    /// A new table's copies reported ready, and when: not reported again while the
    /// report may still commit (the agent's reconciler awaits its report).
    pub fresh_reported: std::collections::BTreeMap<shared::model::PartitionId, crate::time::Micros>,
    /// Proposals waiting for this replica to apply their entry: (index, proposal).
    pub awaiting: Vec<(u64, ProposalId)>,
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
            reconciling: false,
            reconciled_idle: None,
            fresh_reported: std::collections::BTreeMap::new(),
            awaiting: Vec::new(),
            leader_contact_at: None,
        }
    }

    /// Starts a process: a fresh gossip core and view (a new process remembers nothing
    /// of gossip), seeded from `seed`.
    pub fn boot(&mut self, cfg: &SimConfig, clock: &VirtualClock, seed: u64) {
        self.generation += 1;
        self.process = Process::Up;
        self.membership = Membership::new(self.id, GossipTraffic::default());
        self.leader = None;
        self.deferred.clear();
        self.deferred_datagrams = 0;
        self.reconciling = false;
        self.reconciled_idle = None;
        self.fresh_reported.clear();
        self.awaiting.clear();
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
        self.deferred.clear();
        self.deferred_datagrams = 0;
        self.awaiting.clear();
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
