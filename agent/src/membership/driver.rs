//! The gossip driver: one task owns the [`GossipCore`] and feeds it datagrams, timers
//! and ticks; after every call it carries out what the core drained (sends and timers)
//! with tokio tasks over the datagram transport.

use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use foca::{PeriodicParams, Timer};
use tokio::sync::{mpsc, oneshot};

use super::GossipId;
use super::report::LoadSummary;
use super::swim::{CoreParts, GossipCore};
use super::view::Membership;
use crate::config::GossipConfig;
use crate::seam::Clock;
use crate::seam::StateHandle;
use crate::transport::{DatagramHandler, DatagramSender};

/// Datagrams waiting for the driver; beyond this they are dropped, like a full UDP buffer.
const INBOX_CAPACITY: usize = 4096;

/// How often the view is refreshed from foca's member states (suspicions start and end
/// without a notification).
pub const STATE_REFRESH: Duration = Duration::from_millis(100);

/// How often registered agents that gossip has not met are announced to.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);

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
    // A member that cannot hear this agent (a one-way cut) declares it down, but still
    // hears it: these announcements are its proof of life for the leader, so that a
    // leader whose own messages are cut off does not fail the nodes it cannot reach.
    config.periodic_announce_to_down_members = Some(PeriodicParams {
        frequency: ms(c.down_announce_interval_ms),
        num_members: NonZeroUsize::new(c.down_announce_fanout).unwrap_or(NonZeroUsize::MIN),
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

/// The driver's state.
pub struct GossipDriver {
    core: GossipCore,
    sender: Arc<dyn DatagramSender>,
    status_interval: Duration,
    timers: mpsc::UnboundedSender<Timer<GossipId>>,
    timer_rx: mpsc::UnboundedReceiver<Timer<GossipId>>,
    inbox_rx: mpsc::Receiver<Vec<u8>>,
    leave_tx: mpsc::Sender<oneshot::Sender<()>>,
    leave_rx: mpsc::Receiver<oneshot::Sender<()>>,
}

/// Makes the running driver leave the cluster (see [`GossipCore::leave`]).
#[derive(Clone)]
pub struct GossipLeave(mpsc::Sender<oneshot::Sender<()>>);

impl GossipLeave {
    /// Leaves, and returns once the announcements were handed to the transport (at once
    /// if the driver is gone).
    pub async fn leave(&self) {
        let (done, sent) = oneshot::channel();
        if self.0.send(done).await.is_ok() {
            let _ = sent.await;
        }
    }
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
        let status_interval = Duration::from_millis(parts.config.status_interval_ms);
        let core = GossipCore::new(CoreParts {
            local: parts.local,
            config: parts.config,
            membership: parts.membership,
            state: parts.state,
            status: parts.status,
            clock: parts.clock,
            seed: parts.seed,
        });
        let (timers, timer_rx) = mpsc::unbounded_channel();
        let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_CAPACITY);
        let (leave_tx, leave_rx) = mpsc::channel(1);
        let driver = GossipDriver {
            core,
            sender: parts.sender,
            status_interval,
            timers,
            timer_rx,
            inbox_rx,
            leave_tx,
            leave_rx,
        };
        (driver, Arc::new(Inbox(inbox_tx)))
    }

    /// A handle that makes this driver leave the cluster.
    pub fn leave_handle(&self) -> GossipLeave {
        GossipLeave(self.leave_tx.clone())
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
                    Some(datagram) => self.core.handle_datagram(&datagram),
                    None => return,
                },
                Some(timer) = self.timer_rx.recv() => self.core.handle_timer(timer),
                _ = status_tick.tick() => self.core.publish_status(),
                _ = discovery_tick.tick() => self.core.discover(),
                _ = refresh_tick.tick() => self.core.refresh_states(),
                Some(done) = self.leave_rx.recv() => {
                    self.core.leave();
                    self.send_now().await;
                    let _ = done.send(());
                }
            }
            self.carry_out();
        }
    }

    /// Sends what the core has to send now, waiting for every datagram to be handed over.
    async fn send_now(&mut self) {
        let effects = self.core.drain();
        let sends = effects.datagrams.into_iter().map(|(dst, datagram)| {
            let sender = self.sender.clone();
            async move {
                let _ = sender.send_datagram(&dst.peer_addr, datagram).await;
            }
        });
        futures::future::join_all(sends).await;
    }

    /// Carries out what the core asked for during the last call.
    fn carry_out(&mut self) {
        let effects = self.core.drain();
        for (dst, datagram) in effects.datagrams {
            let sender = self.sender.clone();
            tokio::spawn(async move {
                if let Err(e) = sender.send_datagram(&dst.peer_addr, datagram).await {
                    tracing::trace!(peer = %dst.peer_addr, error = %e, "gossip datagram not sent");
                }
            });
        }
        for (after, timer) in effects.timers {
            let timers = self.timers.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = timers.send(timer);
            });
        }
    }
}
