//! Everything a run is made of, with the defaults the scenarios use.

use agent::config::GossipConfig;

use crate::metalog::DEFAULT_KEPT_VERSIONS;
use crate::network::NetConfig;
use crate::time::{Micros, millis, secs};

/// Zones the nodes are spread over (round robin).
pub const ZONES: usize = 3;
/// Nodes (primary included) per partition.
pub const REPLICATION_FACTOR: usize = 3;
/// Partitions per table when the scenario does not say (tables = partitions / this).
pub const PARTITIONS_PER_TABLE: usize = 100;
/// Agents start at a random instant within this spread (processes do not start in
/// lock step).
pub const START_SPREAD_US: Micros = millis(1_000);
/// The leader's failure rule: silent this long (agent default
/// `controllers.failure_confirm_window_ms`)...
pub const FAILURE_CONFIRM_WINDOW_MS: u64 = 3_000;
/// ...and suspected by gossip at least this long (agent default
/// `controllers.failure_suspicion_hold_ms`).
pub const FAILURE_SUSPICION_HOLD_MS: u64 = 2_200;
/// Period of the leader controllers' re-check, and of the reconciler (agent default
/// `controllers.tick_interval_ms`).
pub const CONTROLLER_TICK_US: Micros = millis(500);
/// Period of the failure detector's re-check (agent's `FAILURE_CHECK_INTERVAL`).
pub const FAILURE_CHECK_US: Micros = millis(100);
/// Raft heartbeat period (agent default `raft.heartbeat_interval_ms`).
pub const RAFT_HEARTBEAT_US: Micros = millis(100);
/// Raft election timeout bounds (agent defaults).
pub const ELECTION_TIMEOUT_MIN_US: Micros = millis(400);
/// Upper bound of the election timeout.
pub const ELECTION_TIMEOUT_MAX_US: Micros = millis(800);
/// Time to make one log entry durable (an fsync of redb's log).
pub const FSYNC_US: Micros = millis(2);
/// Time for an agent to apply a batch of entries to its replica.
pub const APPLY_US: Micros = 100;
/// How long a proposer waits for the leader and for its own replica (agent default
/// `http.leader_wait_ms`); past it the outcome is unknown to it.
pub const LEADER_WAIT_US: Micros = millis(3_000);
/// Pause before a proposer asks again when no leader is reachable (`MetaClient`).
pub const NO_LEADER_BACKOFF_US: Micros = millis(50);
/// Shortest time to fill a new replica copy from its primary.
pub const FILL_MIN_US: Micros = millis(200);
/// Longest time to fill a new replica copy (uniform in between: partitions differ in
/// size).
pub const FILL_MAX_US: Micros = millis(2_000);
/// Datagrams a paused agent's inbox holds (the driver's `INBOX_CAPACITY`).
pub const PAUSED_INBOX_MAX: usize = 4096;
/// How long a primary serves reads after its metadata was last confirmed current (agent
/// default `data.read_lease_ms`).
pub const READ_LEASE_US: Micros = millis(2_000);
/// A DELETING table is purged after this long (agent default
/// `controllers.delete_release_timeout_ms`).
pub const ASSIGNER_DELETE_RELEASE_TIMEOUT_MS: u64 = 10_000;
/// How often the observer samples every agent's view.
pub const SAMPLE_US: Micros = millis(100);
/// How often the invariants over every agent's replica are checked.
pub const REPLICA_CHECK_US: Micros = secs(1);

/// A run's parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Agents at the start (ids 1..=nodes).
    pub nodes: usize,
    /// Zones.
    pub zones: usize,
    /// Partitions in all (0: no tables).
    pub partitions: usize,
    /// Tables the partitions are spread over.
    pub tables: usize,
    /// Nodes per partition.
    pub replication_factor: usize,
    /// Network.
    pub net: NetConfig,
    /// Gossip (the agent's defaults).
    pub gossip: GossipConfig,
    /// The leader's failure confirmation window (silence).
    pub failure_confirm_window_ms: u64,
    /// How long the suspicion must have held within it.
    pub failure_suspicion_hold_ms: u64,
    /// Whether the leader runs the Partition Assigner (`provision`; the other scenarios
    /// start with every table ACTIVE and leave it off).
    pub assigner: bool,
    /// The log keeps its state after each of its last `kept_versions` entries for the
    /// replicas to take; one further behind gets the current state (with 0, every one).
    pub kept_versions: usize,
}

impl SimConfig {
    /// The defaults for `nodes` agents and `partitions` partitions under `seed`.
    pub fn new(seed: u64, nodes: usize, partitions: usize) -> Self {
        SimConfig {
            seed,
            nodes,
            zones: ZONES,
            partitions,
            tables: partitions.div_ceil(PARTITIONS_PER_TABLE),
            replication_factor: REPLICATION_FACTOR,
            net: NetConfig::default(),
            gossip: GossipConfig::default(),
            failure_confirm_window_ms: FAILURE_CONFIRM_WINDOW_MS,
            failure_suspicion_hold_ms: FAILURE_SUSPICION_HOLD_MS,
            assigner: false,
            kept_versions: DEFAULT_KEPT_VERSIONS,
        }
    }

    /// Zone name of node `id`.
    pub fn zone_of(&self, id: u64) -> String {
        zone_name((id as usize) % self.zones.max(1))
    }
}

/// The name of zone number `i`.
pub fn zone_name(i: usize) -> String {
    format!("zone-{i}")
}
