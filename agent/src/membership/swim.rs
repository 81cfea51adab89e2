//! The gossip core: the `Foca` instance, the status reports, discovery and the view, with
//! no task, channel or socket. Every input is a method call; what foca asks for (sends
//! and timers) is handed back by [`GossipCore::drain`]. The agent's [`GossipDriver`]
//! runs it under tokio over QUIC datagrams; `netsim` runs the same core in a
//! discrete-event loop over a simulated network.
//!
//! [`GossipDriver`]: super::GossipDriver

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::SeedableRng;
use rand::rngs::StdRng;
use shared::failure::GossipState;
use shared::model::{NodeId, NodeStatus, UnixMillis};

use super::GossipId;
use super::driver::{LocalMember, StatusSource, foca_config};
use super::report::{StatusBroadcasts, StatusReport};
use super::view::Membership;
use crate::config::GossipConfig;
use crate::seam::Clock;
use crate::seam::StateHandle;

/// Bytes before foca's packet in every datagram: the sender's node id, so any datagram
/// counts as a direct proof of life even when foca discards it (e.g. from a member it
/// believes down).
const ENVELOPE_BYTES: usize = 8;

/// Unknown registered agents announced to per discovery round.
const ANNOUNCES_PER_ROUND: usize = 3;

type Swim = Foca<GossipId, PostcardCodec, StdRng, StatusBroadcasts>;

/// Everything the core needs (the driver's parts less the transport).
pub struct CoreParts {
    /// This agent.
    pub local: LocalMember,
    /// Gossip settings.
    pub config: GossipConfig,
    /// The view the core maintains.
    pub membership: Membership,
    /// Local metadata replica (which agents are registered, and where).
    pub state: StateHandle,
    /// Applied index and load for the status reports.
    pub status: StatusSource,
    /// Clock seam.
    pub clock: Clock,
    /// RNG seed (`None`: from the OS); the simulator passes one for reproducibility.
    pub seed: Option<u64>,
}

/// A suspicion held this many times `suspect_to_down_after` has lost its down timer.
const STALE_SUSPECT_FACTOR: u64 = 3;

/// What foca asked for during the calls since the last [`GossipCore::drain`].
#[derive(Default)]
pub struct GossipEffects {
    /// Datagrams to send: destination and bytes (envelope included).
    pub datagrams: Vec<(GossipId, Vec<u8>)>,
    /// Timers to hand back to [`GossipCore::handle_timer`] once their delay has passed.
    pub timers: Vec<(Duration, Timer<GossipId>)>,
}

/// One agent's gossip state machine.
pub struct GossipCore {
    foca: Swim,
    runtime: AccumulatingRuntime<GossipId>,
    membership: Membership,
    local: LocalMember,
    state: StateHandle,
    status: StatusSource,
    clock: Clock,
    version: u64,
    rng: StdRng,
    /// Foca's belief about each member as last copied into the view: a refresh writes
    /// only what changed (the view's lock once), not every member.
    copied: BTreeMap<NodeId, GossipState>,
    /// The last refresh's walk of foca's members, in foca's order (stable between its
    /// shuffles), so a walk compares most members by position, not by a map lookup; and
    /// a spare buffer for the next walk.
    last_walk: Vec<(NodeId, GossipState)>,
    spare_walk: Vec<(NodeId, GossipState)>,
    /// Members foca holds SUSPECT: the identity and incarnation, and since when.
    suspects: BTreeMap<NodeId, (GossipId, foca::Incarnation, UnixMillis)>,
    /// A suspicion older than this has lost its down timer (see `sweep_stale_suspects`).
    stale_suspect_after_ms: u64,
}

impl GossipCore {
    /// Builds the core; nothing is sent until the first call.
    pub fn new(parts: CoreParts) -> Self {
        let mut rng = match parts.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng::<StdRng>(),
        };
        let foca_rng = StdRng::from_rng(&mut rng);
        let handler = StatusBroadcasts::new(
            parts.membership.clone(),
            parts.clock.clone(),
            parts.config.max_relayed_reports,
        );
        let foca = Foca::with_custom_broadcast(
            parts.local.id.clone(),
            foca_config(&parts.config),
            foca_rng,
            PostcardCodec,
            handler,
        );
        GossipCore {
            foca,
            runtime: AccumulatingRuntime::new(),
            membership: parts.membership,
            local: parts.local,
            state: parts.state,
            status: parts.status,
            clock: parts.clock,
            version: 0,
            rng,
            copied: BTreeMap::new(),
            last_walk: Vec::new(),
            spare_walk: Vec::new(),
            suspects: BTreeMap::new(),
            stale_suspect_after_ms: parts
                .config
                .suspect_to_down_after_ms
                .saturating_mul(STALE_SUSPECT_FACTOR),
        }
    }

    /// This agent's current gossip identity (renewed after a false "down").
    pub fn identity(&self) -> &GossipId {
        &self.local.id
    }

    /// One datagram: the envelope proves its sender alive; foca handles the rest.
    pub fn handle_datagram(&mut self, datagram: &[u8]) {
        self.membership.count_received(datagram.len());
        let Some((sender, packet)) = datagram.split_first_chunk::<ENVELOPE_BYTES>() else {
            return;
        };
        let now = (self.clock)();
        self.membership
            .proof_of_life(NodeId::from_le_bytes(*sender), now);
        if let Err(e) = self.foca.handle_data(packet, &mut self.runtime) {
            tracing::debug!(error = %e, "gossip datagram refused");
        }
    }

    /// A timer foca scheduled has expired.
    pub fn handle_timer(&mut self, timer: Timer<GossipId>) {
        if let Err(e) = self.foca.handle_timer(timer, &mut self.runtime) {
            tracing::debug!(error = %e, "gossip timer");
        }
    }

    /// Leaves the cluster for good (a graceful stop): tells a few members this identity is
    /// down, so every view stops counting on it at once, and stops taking part. A restart
    /// comes back as a new identity (a new incarnation).
    pub fn leave(&mut self) {
        if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::debug!(error = %e, "gossip leave");
        }
    }

    /// Gossips a fresh status report (this agent's heartbeat).
    pub fn publish_status(&mut self) {
        self.version += 1;
        let (applied_index, load) = (self.status)();
        let report = StatusReport {
            node_id: self.local.id.node_id,
            incarnation: self.local.id.incarnation,
            version: self.version,
            zone: self.local.zone.clone(),
            endpoint: self.local.endpoint.clone(),
            applied_index,
            load,
        };
        match postcard::to_stdvec(&report) {
            Ok(bytes) => {
                if let Err(e) = self.foca.add_broadcast(&bytes) {
                    tracing::warn!(error = %e, "status report not gossiped");
                }
            }
            Err(e) => tracing::warn!(error = %e, "status report not encoded"),
        }
    }

    /// Watches every registered agent, and announces this one to those gossip has not met
    /// (a new agent learns the members from the metadata after it joins).
    pub fn discover(&mut self) {
        let now = (self.clock)();
        let me = self.local.id.node_id;
        // Members foca holds as down are announced to as well: after this agent was cut
        // off (everyone down, foca idle) or a member came back, this rejoins within a
        // discovery round instead of foca's minute-long announce-to-down period.
        let known: BTreeSet<NodeId> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() != foca::State::Down)
            .map(|m| m.id().node_id)
            .collect();
        let (registered, mut unknown) = self.state.read(|s| {
            let mut registered = Vec::new();
            let mut unknown = Vec::new();
            let listed = s
                .nodes()
                .filter(|n| n.node_id != me)
                .filter(|n| !matches!(n.status, NodeStatus::Decommissioned | NodeStatus::Failed));
            for n in listed {
                registered.push(n.node_id);
                if !known.contains(&n.node_id) {
                    unknown.push(GossipId::new(n.node_id, n.peer_addr.clone(), n.incarnation));
                }
            }
            (registered, unknown)
        });
        self.membership.watch_all(&registered, now);
        for _ in 0..ANNOUNCES_PER_ROUND.min(unknown.len()) {
            let pick = rand::RngExt::random_range(&mut self.rng, 0..unknown.len());
            let dst = unknown.swap_remove(pick);
            if let Err(e) = self.foca.announce(dst, &mut self.runtime) {
                tracing::debug!(error = %e, "gossip announce");
            }
        }
    }

    /// What foca itself believes of `node` now (the view holds its last copy).
    pub fn foca_state(&self, node: NodeId) -> Option<GossipState> {
        self.foca
            .iter_membership_state()
            .find(|m| m.id().node_id == node)
            .map(|m| match m.state() {
                foca::State::Alive => GossipState::Alive,
                foca::State::Suspect => GossipState::Suspect,
                foca::State::Down => GossipState::Down,
            })
    }

    /// Copies foca's member states into the view: those that changed since the last
    /// copy (foca holds one identity per node id, its address).
    pub fn refresh_states(&mut self) {
        let now = (self.clock)();
        let mut changed: Vec<(NodeId, GossipState)> = Vec::new();
        let mut walk = std::mem::take(&mut self.spare_walk);
        walk.clear();
        for (i, member) in self.foca.iter_membership_state().enumerate() {
            let state = match member.state() {
                foca::State::Alive => GossipState::Alive,
                foca::State::Suspect => GossipState::Suspect,
                foca::State::Down => GossipState::Down,
            };
            let node = member.id().node_id;
            walk.push((node, state));
            if state == GossipState::Suspect {
                let incarnation = member.incarnation();
                match self.suspects.get(&node) {
                    Some((id, inc, _)) if id == member.id() && *inc == incarnation => {}
                    _ => {
                        let entry = (member.id().clone(), incarnation, now);
                        self.suspects.insert(node, entry);
                    }
                }
            } else if !self.suspects.is_empty() {
                self.suspects.remove(&node);
            }
            // Every member of the last walk was copied as that walk saw it.
            let copied = match self.last_walk.get(i) {
                Some(&(n, s)) if n == node => Some(s),
                _ => self.copied.get(&node).copied(),
            };
            if copied != Some(state) {
                changed.push((node, state));
            }
        }
        self.spare_walk = std::mem::replace(&mut self.last_walk, walk);
        self.sweep_stale_suspects(now);
        if changed.is_empty() {
            return;
        }
        self.copied.extend(changed.iter().copied());
        self.membership.set_gossip_states(&changed, now);
    }

    /// Declares down the members foca has held SUSPECT (at one incarnation) for far
    /// longer than `suspect_to_down_after`: their down timer was dropped. Foca drops
    /// every pending timer when this agent is itself declared down and rejoins, and a
    /// member it suspected then stays suspected until it refutes, which it does only if
    /// the suspicion reaches it. This does what the lost timer would have done (the
    /// down state is gossiped; a live member rejoins, answering the announcements to
    /// down members).
    fn sweep_stale_suspects(&mut self, now: UnixMillis) {
        let stale: Vec<foca::Member<GossipId>> = self
            .suspects
            .values()
            .filter(|(_, _, since)| now.saturating_sub(*since) > self.stale_suspect_after_ms)
            .map(|(id, inc, _)| foca::Member::new(id.clone(), *inc, foca::State::Down))
            .collect();
        if stale.is_empty() {
            return;
        }
        for m in &stale {
            tracing::info!(
                node_id = m.id().node_id,
                "gossip suspicion outlived its timer; down"
            );
            self.suspects.remove(&m.id().node_id);
        }
        if let Err(e) = self
            .foca
            .apply_many(stale.into_iter(), true, &mut self.runtime)
        {
            tracing::debug!(error = %e, "gossip stale suspicion");
        }
    }

    /// Takes what foca asked for during the calls since the last drain (each datagram
    /// framed with this agent's envelope and counted as sent), and records its
    /// notifications in the view.
    pub fn drain(&mut self) -> GossipEffects {
        let mut effects = GossipEffects::default();
        let me = self.local.id.node_id.to_le_bytes();
        while let Some((dst, data)) = self.runtime.to_send() {
            let mut datagram = Vec::with_capacity(ENVELOPE_BYTES + data.len());
            datagram.extend_from_slice(&me);
            datagram.extend_from_slice(&data);
            self.membership.count_sent(datagram.len());
            effects.datagrams.push((dst, datagram));
        }
        while let Some(scheduled) = self.runtime.to_schedule() {
            effects.timers.push(scheduled);
        }
        let mut states_changed = false;
        while let Some(notification) = self.runtime.to_notify() {
            states_changed = true;
            self.on_notification(notification);
        }
        if states_changed {
            self.refresh_states();
        }
        effects
    }

    fn on_notification(&mut self, notification: OwnedNotification<GossipId>) {
        let now = (self.clock)();
        match notification {
            // A member that is up, or renamed (restarted or renewed), is alive: a renamed
            // member is never a failed one.
            OwnedNotification::MemberUp(id) | OwnedNotification::Rename(_, id) => {
                self.membership.proof_of_life(id.node_id, now);
            }
            OwnedNotification::MemberDown(id) => {
                tracing::info!(node_id = id.node_id, "gossip declared a member down");
            }
            OwnedNotification::Rejoin(id) => {
                tracing::warn!(
                    generation = id.generation,
                    "gossip declared this agent down; rejoined"
                );
                self.local.id = id;
                self.membership.declared_down().notify_one();
            }
            OwnedNotification::Defunct => {
                tracing::warn!("gossip declared this agent down");
                self.membership.declared_down().notify_one();
            }
            OwnedNotification::Active | OwnedNotification::Idle => {}
        }
    }
}
