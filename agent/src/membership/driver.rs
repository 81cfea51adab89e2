//! The gossip driver: one task owns the `Foca` instance and feeds it datagrams, timers
//! and status reports; everything foca asks for (sends, timers, notifications) is
//! drained from an `AccumulatingRuntime` after every call.

use std::collections::BTreeSet;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PeriodicParams, PostcardCodec, Timer};
use rand::SeedableRng;
use rand::rngs::StdRng;
use shared::failure::GossipState;
use shared::model::{NodeId, NodeStatus};
use tokio::sync::mpsc;

use super::GossipId;
use super::report::{LoadSummary, StatusBroadcasts, StatusReport};
use super::view::Membership;
use crate::config::GossipConfig;
use crate::meta::state_machine::StateHandle;
use crate::node::Clock;
use crate::transport::{DatagramHandler, DatagramSender};

/// Bytes before foca's packet in every datagram: the sender's node id, so any datagram
/// counts as a direct proof of life even when foca discards it (e.g. from a member it
/// believes down).
const ENVELOPE_BYTES: usize = 8;

/// Datagrams waiting for the driver; beyond this they are dropped, like a full UDP buffer.
const INBOX_CAPACITY: usize = 4096;

/// How often the view is refreshed from foca's member states (suspicions start and end
/// without a notification).
const STATE_REFRESH: Duration = Duration::from_millis(100);

/// How often registered agents that gossip has not met are announced to.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// Unknown registered agents announced to per discovery round.
const ANNOUNCES_PER_ROUND: usize = 3;

/// Cluster size foca's defaults are derived from (the fields we set override them).
const EXPECTED_CLUSTER_SIZE: u32 = 100;

/// The foca configuration for `c`.
pub fn foca_config(c: &GossipConfig) -> foca::Config {
    let size = NonZeroU32::new(EXPECTED_CLUSTER_SIZE).expect("non-zero");
    let mut config = foca::Config::new_lan(size);
    let ms = Duration::from_millis;
    config.probe_period = ms(c.probe_period_ms);
    config.probe_rtt = ms(c.probe_rtt_ms);
    config.num_indirect_probes =
        NonZeroUsize::new(c.num_indirect_probes).unwrap_or(NonZeroUsize::MIN);
    config.suspect_to_down_after = ms(c.suspect_to_down_after_ms);
    config.max_transmissions = NonZeroU8::new(c.max_transmissions).unwrap_or(NonZeroU8::MIN);
    config.max_packet_size = NonZeroUsize::new(c.max_packet_bytes).unwrap_or(NonZeroUsize::MIN);
    config.periodic_gossip = Some(PeriodicParams {
        frequency: ms(c.gossip_interval_ms),
        num_members: NonZeroUsize::new(c.gossip_fanout).unwrap_or(NonZeroUsize::MIN),
    });
    config.periodic_announce = Some(PeriodicParams {
        frequency: ms(c.announce_interval_ms),
        num_members: NonZeroUsize::MIN,
    });
    config
}

/// Produces the dynamic part of this agent's status report: applied index and load.
pub type StatusSource = Arc<dyn Fn() -> (u64, LoadSummary) + Send + Sync>;

/// Who this agent is in gossip.
#[derive(Debug, Clone)]
pub struct LocalMember {
    /// Gossip identity.
    pub id: GossipId,
    /// Zone.
    pub zone: String,
    /// HTTP endpoint.
    pub endpoint: String,
}

/// Hands arriving datagrams to the driver.
struct Inbox(mpsc::Sender<Vec<u8>>);

impl DatagramHandler for Inbox {
    fn deliver(&self, payload: Vec<u8>) {
        // A full inbox drops the datagram: SWIM tolerates loss, a blocked transport not.
        let _ = self.0.try_send(payload);
    }
}

type Swim = Foca<GossipId, PostcardCodec, StdRng, StatusBroadcasts>;

/// The driver's state.
pub struct GossipDriver {
    foca: Swim,
    runtime: AccumulatingRuntime<GossipId>,
    membership: Membership,
    local: LocalMember,
    sender: Arc<dyn DatagramSender>,
    state: StateHandle,
    status: StatusSource,
    clock: Clock,
    status_interval: Duration,
    timers: mpsc::UnboundedSender<Timer<GossipId>>,
    timer_rx: mpsc::UnboundedReceiver<Timer<GossipId>>,
    inbox_rx: mpsc::Receiver<Vec<u8>>,
    version: u64,
    rng: StdRng,
}

/// Everything the driver needs.
pub struct DriverParts {
    /// This agent.
    pub local: LocalMember,
    /// Gossip settings.
    pub config: GossipConfig,
    /// The view the driver maintains.
    pub membership: Membership,
    /// Datagram transport.
    pub sender: Arc<dyn DatagramSender>,
    /// Local metadata replica (which agents are registered, and where).
    pub state: StateHandle,
    /// Applied index and load for the status reports.
    pub status: StatusSource,
    /// Clock seam.
    pub clock: Clock,
    /// RNG seed (`None`: from the OS); the simulator passes one for reproducibility.
    pub seed: Option<u64>,
}

impl GossipDriver {
    /// Builds the driver and the datagram handler to register with the transport.
    pub fn new(parts: DriverParts) -> (Self, Arc<dyn DatagramHandler>) {
        let mut rng = match parts.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng::<StdRng>(),
        };
        let foca_rng = StdRng::from_rng(&mut rng);
        let handler = StatusBroadcasts::new(parts.membership.clone(), parts.clock.clone());
        let foca = Foca::with_custom_broadcast(
            parts.local.id.clone(),
            foca_config(&parts.config),
            foca_rng,
            PostcardCodec,
            handler,
        );
        let (timers, timer_rx) = mpsc::unbounded_channel();
        let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
        let driver = GossipDriver {
            foca,
            runtime: AccumulatingRuntime::new(),
            membership: parts.membership,
            local: parts.local,
            sender: parts.sender,
            state: parts.state,
            status: parts.status,
            clock: parts.clock,
            status_interval: Duration::from_millis(parts.config.status_interval_ms),
            timers,
            timer_rx,
            inbox_rx,
            version: 0,
            rng,
        };
        (driver, Arc::new(Inbox(inbox_tx)))
    }

    /// Runs until the inbox is closed (the transport is gone).
    pub async fn run(mut self) {
        let mut status_tick = tokio::time::interval(self.status_interval);
        let mut discovery_tick = tokio::time::interval(DISCOVERY_INTERVAL);
        let mut refresh_tick = tokio::time::interval(STATE_REFRESH);
        for tick in [&mut status_tick, &mut discovery_tick, &mut refresh_tick] {
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                datagram = self.inbox_rx.recv() => match datagram {
                    Some(datagram) => self.on_datagram(&datagram),
                    None => return,
                },
                Some(timer) = self.timer_rx.recv() => {
                    if let Err(e) = self.foca.handle_timer(timer, &mut self.runtime) {
                        tracing::debug!(error = %e, "gossip timer");
                    }
                }
                _ = status_tick.tick() => self.publish_status(),
                _ = discovery_tick.tick() => self.discover(),
                _ = refresh_tick.tick() => self.refresh_states(),
            }
            self.drain();
        }
    }

    /// One datagram: the envelope proves its sender alive; foca handles the rest.
    fn on_datagram(&mut self, datagram: &[u8]) {
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

    /// Gossips a fresh status report (this agent's heartbeat).
    fn publish_status(&mut self) {
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
    fn discover(&mut self) {
        let now = (self.clock)();
        let me = self.local.id.node_id;
        let registered: Vec<GossipId> = self.state.read(|s| {
            s.nodes()
                .filter(|n| n.node_id != me)
                .filter(|n| !matches!(n.status, NodeStatus::Decommissioned | NodeStatus::Failed))
                .map(|n| GossipId::new(n.node_id, n.peer_addr.clone(), n.incarnation))
                .collect()
        });
        // Members foca holds as down are announced to as well: after this agent was cut
        // off (everyone down, foca idle) or a member came back, this rejoins within a
        // discovery round instead of foca's minute-long announce-to-down period.
        let known: BTreeSet<NodeId> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() != foca::State::Down)
            .map(|m| m.id().node_id)
            .collect();
        let mut unknown = Vec::new();
        for id in registered {
            self.membership.watch(id.node_id, now);
            if !known.contains(&id.node_id) {
                unknown.push(id);
            }
        }
        for _ in 0..ANNOUNCES_PER_ROUND.min(unknown.len()) {
            let pick = rand::RngExt::random_range(&mut self.rng, 0..unknown.len());
            let dst = unknown.swap_remove(pick);
            if let Err(e) = self.foca.announce(dst, &mut self.runtime) {
                tracing::debug!(error = %e, "gossip announce");
            }
        }
    }

    /// Copies foca's member states into the view.
    fn refresh_states(&mut self) {
        let now = (self.clock)();
        for member in self.foca.iter_membership_state() {
            let state = match member.state() {
                foca::State::Alive => GossipState::Alive,
                foca::State::Suspect => GossipState::Suspect,
                foca::State::Down => GossipState::Down,
            };
            self.membership
                .set_gossip_state(member.id().node_id, state, now);
        }
    }

    /// Carries out what foca asked for during the last call.
    fn drain(&mut self) {
        let me = self.local.id.node_id.to_le_bytes();
        while let Some((dst, data)) = self.runtime.to_send() {
            let mut datagram = Vec::with_capacity(ENVELOPE_BYTES + data.len());
            datagram.extend_from_slice(&me);
            datagram.extend_from_slice(&data);
            self.membership.count_sent(datagram.len());
            let sender = self.sender.clone();
            tokio::spawn(async move {
                if let Err(e) = sender.send_datagram(&dst.peer_addr, datagram).await {
                    tracing::trace!(peer = %dst.peer_addr, error = %e, "gossip datagram not sent");
                }
            });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let timers = self.timers.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = timers.send(timer);
            });
        }
        let mut states_changed = false;
        while let Some(notification) = self.runtime.to_notify() {
            states_changed = true;
            self.on_notification(notification);
        }
        if states_changed {
            self.refresh_states();
        }
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
