//! The agent's configuration file: parsed with unknown fields rejected, then validated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::placement::{PlacementConfig, VoterConfig};

pub use crate::data::DataConfig;

/// Smallest accepted gossip packet: room for a membership update and a status report.
const MIN_GOSSIP_PACKET_BYTES: usize = 512;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown fields.
    #[error("cannot parse {path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole agent configuration (see `config.example.toml` for every field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This agent's id, unique in the cluster, never 0.
    pub node_id: u64,
    /// Availability zone ("" when zones are not used).
    #[serde(default)]
    pub zone: String,
    /// Directory holding the metadata log, state machine snapshot and partition data.
    pub data_dir: PathBuf,
    /// The cluster's id (an agent refuses to join, or start on the data of, another).
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    /// Whether this agent creates the cluster on its first start (once every seed answered
    /// that it belongs to none; see `bootstrap`). Otherwise `agent init` creates it.
    #[serde(default)]
    pub bootstrap: bool,
    /// Peer (QUIC) addresses of agents to join through.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Listen and advertised addresses.
    pub listen: ListenConfig,
    /// Certificate files for mutual TLS between agents.
    pub tls: TlsConfig,
    /// Raft timing and log compaction.
    #[serde(default)]
    pub raft: RaftConfig,
    /// Partition placement.
    #[serde(default)]
    pub placement: PlacementSection,
    /// Voter set management.
    #[serde(default)]
    pub voters: VotersSection,
    /// SWIM gossip membership (foca) carried in QUIC datagrams.
    #[serde(default)]
    pub gossip: GossipConfig,
    /// Leader-only controllers and agent reconcilers.
    #[serde(default)]
    pub controllers: ControllersConfig,
    /// HTTP API.
    #[serde(default)]
    pub http: HttpConfig,
    /// Data plane: item limits, replication and read leases.
    #[serde(default)]
    pub data: DataConfig,
    /// Access control: credential lifetimes, key rotation, verification cache, audit.
    #[serde(default)]
    pub auth: AuthConfig,
    /// The Scaler: hot and large partition splits, capacity changes, scale-out moves.
    #[serde(default)]
    pub scaler: ScalerSection,
    /// Graceful shutdown (SIGTERM): hand-overs before the agent exits.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
}

fn default_cluster_name() -> String {
    "local".to_string()
}

/// Listen and advertised addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// QUIC listen address for Raft and other peer traffic.
    pub peer: SocketAddr,
    /// HTTP listen address for the API.
    pub http: SocketAddr,
    /// Peer address other agents use to reach this one (defaults to `peer`).
    #[serde(default)]
    pub advertise_peer: Option<String>,
    /// HTTP endpoint clients use to reach this agent (defaults to `http://{http}`).
    #[serde(default)]
    pub advertise_http: Option<String>,
}

impl ListenConfig {
    /// Listening on `peer` and `http`, advertising the same addresses.
    pub fn on(peer: SocketAddr, http: SocketAddr) -> ListenConfig {
        ListenConfig {
            peer,
            http,
            advertise_peer: None,
            advertise_http: None,
        }
    }
}

/// Paths of the PEM files for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Cluster CA certificate.
    pub ca_cert: PathBuf,
    /// This node's certificate, signed by the cluster CA.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// Raft timing and compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    /// Leader heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many applied entries.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind the last snapshot (for lagging followers).
    pub max_in_snapshot_log_to_keep: u64,
    /// Timeout of one peer RPC.
    pub rpc_timeout_ms: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_logs_since_last: 5000,
            max_in_snapshot_log_to_keep: 1000,
            rpc_timeout_ms: 5000,
        }
    }
}

/// Partition placement settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlacementSection {
    /// Replicas per partition (primary included).
    pub replication_factor: usize,
    /// One partition per this many write units.
    pub write_units_per_partition: u64,
    /// One partition per this many read units.
    pub read_units_per_partition: u64,
    /// Partitions of a new ON_DEMAND table.
    pub on_demand_initial_partitions: u32,
    /// Upper bound on partitions of one table.
    pub max_partitions_per_table: u32,
}

impl Default for PlacementSection {
    fn default() -> Self {
        let d = PlacementConfig::default();
        PlacementSection {
            replication_factor: d.replication_factor,
            write_units_per_partition: d.write_units_per_partition,
            read_units_per_partition: d.read_units_per_partition,
            on_demand_initial_partitions: d.on_demand_initial_partitions,
            max_partitions_per_table: d.max_partitions_per_table,
        }
    }
}

/// Voter set settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VotersSection {
    /// Voters while the cluster is small.
    pub voters_small: usize,
    /// Voters once the cluster has at least `large_cluster_min_nodes` nodes.
    pub voters_large: usize,
    /// Node count from which `voters_large` applies.
    pub large_cluster_min_nodes: usize,
    /// A learner is promoted only when its log is within this many entries of the leader's.
    pub promote_max_lag_entries: u64,
}

impl Default for VotersSection {
    fn default() -> Self {
        let d = VoterConfig::default();
        VotersSection {
            voters_small: d.voters_small,
            voters_large: d.voters_large,
            large_cluster_min_nodes: d.large_cluster_min_nodes,
            promote_max_lag_entries: 100,
        }
    }
}

/// SWIM gossip settings (foca's configuration, plus the status heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GossipConfig {
    /// Each agent probes one member this often (round robin over a shuffled list): the
    /// time until some live member probes a dead one, and so its first suspicion.
    pub probe_period_ms: u64,
    /// A probe unanswered after this long is retried through indirect probes.
    pub probe_rtt_ms: u64,
    /// Members asked to probe indirectly.
    pub num_indirect_probes: usize,
    /// A suspected member that does not refute within this long is declared down.
    pub suspect_to_down_after_ms: u64,
    /// Membership updates are pushed to `gossip_fanout` random members this often.
    pub gossip_interval_ms: u64,
    /// Members each periodic gossip goes to.
    pub gossip_fanout: usize,
    /// Times each update or status report is piggybacked before it is dropped.
    pub max_transmissions: u8,
    /// Largest gossip datagram, in bytes (must fit one QUIC datagram).
    pub max_packet_bytes: usize,
    /// Each agent gossips a fresh status report (its heartbeat) this often.
    pub status_interval_ms: u64,
    /// Others' reports an agent re-gossips at once: the latest fresh ones it took in.
    pub max_relayed_reports: usize,
    /// Each agent announces itself to one random member this often (heals partitions).
    pub announce_interval_ms: u64,
    /// Each agent also announces itself this often to the members it considers down...
    pub down_announce_interval_ms: u64,
    /// ...up to this many of them each time.
    pub down_announce_fanout: usize,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            probe_period_ms: 300,
            probe_rtt_ms: 200,
            num_indirect_probes: 10,
            suspect_to_down_after_ms: 2000,
            gossip_interval_ms: 100,
            gossip_fanout: 3,
            max_transmissions: 10,
            max_packet_bytes: 1100,
            status_interval_ms: 1000,
            max_relayed_reports: 128,
            announce_interval_ms: 30_000,
            down_announce_interval_ms: 1000,
            down_announce_fanout: 128,
        }
    }
}

/// Controller and reconciler settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllersConfig {
    /// Period of the controllers' safety re-check (they also wake on every apply).
    pub tick_interval_ms: u64,
    /// A DELETING table is purged after this long even if a node never released its storage
    /// (that node drops the orphaned storage when it next reconciles).
    pub delete_release_timeout_ms: u64,
    /// Pause between attempts to join the cluster through the seeds.
    pub join_retry_interval_ms: u64,
    /// The leader places no new partition on a peer that has not answered any RPC for
    /// this long (its own view, like SUSPECTED; never committed).
    pub peer_unreachable_after_ms: u64,
    /// The leader commits `NodeFailed` for a node with no proof of life (direct or
    /// gossiped, a Raft reply; any incarnation) for this long...
    pub failure_confirm_window_ms: u64,
    /// ...that gossip has also suspected for at least this long (its chance to refute
    /// the suspicion). Longer than `data.read_lease_ms` (a suspicion starts after the
    /// last acknowledgement a cut-off primary got, so its lease has lapsed before it is
    /// failed), at most `failure_confirm_window_ms`.
    pub failure_suspicion_hold_ms: u64,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        ControllersConfig {
            tick_interval_ms: 500,
            delete_release_timeout_ms: 10_000,
            join_retry_interval_ms: 500,
            peer_unreachable_after_ms: 1500,
            failure_confirm_window_ms: 3000,
            failure_suspicion_hold_ms: 2200,
        }
    }
}

/// The Scaler (see `config.example.toml`; the rest of `shared::scaler::ScalerConfig`
/// keeps its defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalerSection {
    /// Whether the leader runs the Scaler at all.
    pub enabled: bool,
    /// How often the leader gathers partition loads and plans.
    pub planning_interval_ms: u64,
    /// A partition is hot when its load stayed above its threshold this long.
    pub hot_window_ms: u64,
    /// Load samples further apart than this leave a hole in the hot window (not hot).
    pub max_sample_gap_ms: u64,
    /// Hot threshold, in percent of the partition's share of its table's capacity.
    pub hot_threshold_percent: u64,
    /// A partition below this many ops/s is never hot.
    pub hot_min_ops_per_sec: u64,
    /// Per-partition ops/s limit of ON_DEMAND tables.
    pub on_demand_partition_ops_limit: u64,
    /// A partition larger than this is split.
    pub max_partition_size_bytes: u64,
    /// Most migrations running into or out of one node.
    pub max_migrations_per_node: usize,
    /// Most migrations running in the cluster.
    pub max_migrations_per_cluster: usize,
    /// Most splits and merges running in the cluster.
    pub max_splits_per_cluster: usize,
    /// Allowed distance of a node's replica and primary counts from the even share.
    pub imbalance_tolerance: usize,
    /// Whether a capacity decrease merges adjacent cold partitions.
    pub merge_cold_partitions: bool,
    /// Highest combined load of two partitions to merge, in percent of one's capacity.
    pub merge_max_load_percent: u64,
    /// Highest combined size of two partitions to merge, in percent of the split size.
    pub merge_max_size_percent: u64,
}

impl Default for ScalerSection {
    fn default() -> Self {
        let d = shared::scaler::ScalerConfig::default();
        ScalerSection {
            enabled: true,
            planning_interval_ms: d.planning_interval_ms,
            hot_window_ms: d.hot_window_ms,
            max_sample_gap_ms: d.max_sample_gap_ms,
            hot_threshold_percent: d.hot_threshold_percent,
            hot_min_ops_per_sec: d.hot_min_ops_per_sec,
            on_demand_partition_ops_limit: d.on_demand_partition_ops_limit,
            max_partition_size_bytes: d.max_partition_size_bytes,
            max_migrations_per_node: d.max_migrations_per_node,
            max_migrations_per_cluster: d.max_migrations_per_cluster,
            max_splits_per_cluster: d.max_in_place_ops_per_cluster,
            imbalance_tolerance: d.rebalance.tolerance,
            merge_cold_partitions: d.merge_cold_partitions,
            merge_max_load_percent: d.merge_max_load_percent,
            merge_max_size_percent: d.merge_max_size_percent,
        }
    }
}

/// Access control (see `config.example.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of a credential when the request names none, in seconds.
    pub default_ttl_secs: u64,
    /// Shortest credential lifetime a caller may ask for, in seconds.
    pub min_ttl_secs: u64,
    /// Longest credential lifetime a caller may ask for, in seconds.
    pub max_ttl_secs: u64,
    /// Clock difference tolerated between the signing leader and a verifying agent.
    pub clock_skew_secs: u64,
    /// The leader replaces its signing key when it is this old, in seconds.
    pub key_rotation_period_secs: u64,
    /// Verified credentials cached per agent (by token hash, until expiry).
    pub verified_cache_entries: usize,
    /// Control-plane mutations kept in this agent's in-memory audit log (`GET /audit`).
    pub audit_log_entries: usize,
}

impl AuthConfig {
    /// How long a retired signing key still verifies tokens: the longest credential
    /// lifetime plus the clock skew tolerated, in milliseconds.
    pub fn grace_ms(&self) -> u64 {
        (self.max_ttl_secs + self.clock_skew_secs) * 1000
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            default_ttl_secs: 3600,
            min_ttl_secs: 60,
            max_ttl_secs: 12 * 3600,
            clock_skew_secs: 30,
            key_rotation_period_secs: 7 * 24 * 3600,
            verified_cache_entries: 100_000,
            audit_log_entries: 10_000,
        }
    }
}

/// HTTP API settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a request may wait for the leader (forwarding, read index) before 503.
    pub leader_wait_ms: u64,
    /// A connection whose request headers are not complete this long after they began
    /// is closed (slow or stalled clients holding connections open).
    pub header_read_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 1024 * 1024,
            leader_wait_ms: 3000,
            header_read_timeout_ms: 10_000,
        }
    }
}

/// Graceful shutdown settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long a stopping agent spends handing its partitions over and leaving their
    /// replica sets before it exits anyway (what is left waits for failure detection).
    pub handover_timeout_ms: u64,
    /// Partitions handed over at once (each pauses its own writes for one switch).
    pub handover_parallelism: usize,
    /// After the hand-overs, how long the HTTP API waits for clients to close their
    /// connections (every answer says `Connection: close` by then) before it closes the
    /// rest: a request sent on a connection as the server closes it gets no answer.
    pub client_close_grace_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            handover_timeout_ms: 10_000,
            handover_parallelism: 16,
            client_close_grace_ms: 2000,
        }
    }
}

impl Config {
    /// Agent `node_id` of cluster `cluster_name` with every tunable section at its
    /// default: no zone, no seeds, not the bootstrap agent.
    pub fn with_defaults(
        node_id: u64,
        cluster_name: &str,
        data_dir: PathBuf,
        listen: ListenConfig,
        tls: TlsConfig,
    ) -> Config {
        Config {
            node_id,
            zone: String::new(),
            data_dir,
            cluster_name: cluster_name.to_string(),
            bootstrap: false,
            seeds: Vec::new(),
            listen,
            tls,
            raft: Default::default(),
            placement: Default::default(),
            voters: Default::default(),
            gossip: Default::default(),
            controllers: Default::default(),
            http: Default::default(),
            data: Default::default(),
            auth: Default::default(),
            scaler: Default::default(),
            shutdown: Default::default(),
        }
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and consistency of the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.node_id == 0 {
            return bad("node_id must be at least 1");
        }
        if self.http.header_read_timeout_ms == 0 {
            return bad("http.header_read_timeout_ms must be at least 1");
        }
        if self.shutdown.handover_parallelism == 0 {
            return bad("shutdown.handover_parallelism must be at least 1");
        }
        if !self.bootstrap && self.seeds.is_empty() {
            return bad("an agent that does not bootstrap needs at least one seed");
        }
        let r = &self.raft;
        if r.heartbeat_interval_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_interval_ms {
            return bad("raft.election_timeout_min_ms must exceed raft.heartbeat_interval_ms > 0");
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return bad("raft.election_timeout_max_ms must exceed raft.election_timeout_min_ms");
        }
        if r.snapshot_logs_since_last == 0 || r.rpc_timeout_ms == 0 {
            return bad("raft.snapshot_logs_since_last and raft.rpc_timeout_ms must be positive");
        }
        let p = &self.placement;
        if p.replication_factor == 0 || p.write_units_per_partition == 0 {
            return bad("placement.replication_factor and units per partition must be positive");
        }
        if p.read_units_per_partition == 0 || p.on_demand_initial_partitions == 0 {
            return bad("placement units per partition and initial partitions must be positive");
        }
        if p.max_partitions_per_table == 0 {
            return bad("placement.max_partitions_per_table must be positive");
        }
        let v = &self.voters;
        if v.voters_small == 0 || v.voters_large < v.voters_small {
            return bad("voters.voters_small must be positive and at most voters.voters_large");
        }
        if self.controllers.peer_unreachable_after_ms <= self.raft.heartbeat_interval_ms {
            return bad(
                "controllers.peer_unreachable_after_ms must exceed raft.heartbeat_interval_ms",
            );
        }
        if self.raft.rpc_timeout_ms <= self.http.leader_wait_ms {
            // A forwarded write must be answered by the leader (which gives up after
            // leader_wait_ms) before the transport gives up on it.
            return bad("raft.rpc_timeout_ms must exceed http.leader_wait_ms");
        }
        let g = &self.gossip;
        if g.probe_rtt_ms == 0 || g.probe_period_ms <= g.probe_rtt_ms {
            return bad("gossip.probe_period_ms must exceed gossip.probe_rtt_ms > 0");
        }
        if g.num_indirect_probes == 0 || g.gossip_fanout == 0 || g.max_transmissions == 0 {
            return bad("gossip probes, fan-out and transmissions must be positive");
        }
        if g.suspect_to_down_after_ms == 0 || g.gossip_interval_ms == 0 {
            return bad("gossip.suspect_to_down_after_ms and gossip_interval_ms must be positive");
        }
        if g.status_interval_ms == 0
            || g.max_relayed_reports == 0
            || g.announce_interval_ms == 0
            || g.down_announce_interval_ms == 0
            || g.down_announce_fanout == 0
        {
            return bad(
                "gossip.status_interval_ms, max_relayed_reports, announce_interval_ms, \
                 down_announce_interval_ms and down_announce_fanout must be positive",
            );
        }
        if !(MIN_GOSSIP_PACKET_BYTES..=crate::transport::MAX_DATAGRAM_BYTES)
            .contains(&g.max_packet_bytes)
        {
            return bad("gossip.max_packet_bytes must be 512 to 1150 (one QUIC datagram)");
        }
        if self.controllers.failure_confirm_window_ms <= g.suspect_to_down_after_ms {
            // A suspicion must have run its course in gossip (refuted or down) before the
            // leader turns it into a committed failure.
            return bad(
                "controllers.failure_confirm_window_ms must exceed gossip.suspect_to_down_after_ms",
            );
        }
        if self.controllers.failure_suspicion_hold_ms > self.controllers.failure_confirm_window_ms {
            return bad(
                "controllers.failure_suspicion_hold_ms must not exceed failure_confirm_window_ms",
            );
        }
        let d = &self.data;
        if d.read_lease_ms >= self.controllers.failure_suspicion_hold_ms {
            // The window of silence counts from the leader's last proof of life, which may
            // precede a cut by a status interval; the suspicion comes after the cut, and
            // it is what keeps a cut-off primary's lease from outliving its replacement.
            return bad(
                "data.read_lease_ms must be shorter than controllers.failure_suspicion_hold_ms",
            );
        }
        if d.read_lease_ms >= self.controllers.failure_confirm_window_ms {
            // A primary cut off from the cluster must stop serving reads before the leader
            // can declare it failed and promote another replica.
            return bad(
                "data.read_lease_ms must be shorter than controllers.failure_confirm_window_ms",
            );
        }
        if d.lease_renew_interval_ms == 0 || d.lease_renew_interval_ms >= d.read_lease_ms {
            return bad(
                "data.lease_renew_interval_ms must be positive and below data.read_lease_ms",
            );
        }
        if d.max_value_bytes == 0 || d.replica_timeout_ms == 0 || d.route_attempts == 0 {
            return bad(
                "data.max_value_bytes, replica_timeout_ms and route_attempts must be positive",
            );
        }
        // A chunk and one item above it must fit in one message.
        let chunk_room = crate::transport::MAX_MESSAGE_BYTES / 2;
        if d.snapshot_chunk_bytes == 0 || d.snapshot_chunk_bytes > chunk_room {
            return bad("data.snapshot_chunk_bytes must be positive and at most 32 MiB");
        }
        if d.replica_drop_after_ms <= self.controllers.failure_confirm_window_ms {
            // A dead replica is the failure detector's to handle; dropping is for a replica
            // alive to the cluster but not to its primary.
            return bad(
                "data.replica_drop_after_ms must exceed controllers.failure_confirm_window_ms",
            );
        }
        if d.log_retain_records == 0 {
            return bad("data.log_retain_records must be positive");
        }
        if self.cluster_name.is_empty()
            || self.cluster_name.len() > shared::validate::CLUSTER_ID_MAX_LEN
        {
            return bad("cluster_name must be 1 to 255 bytes");
        }
        if let Err(e) = self.scaler_config().check() {
            return Err(ConfigError::Invalid(format!("[scaler]: {e}")));
        }
        let a = &self.auth;
        if a.min_ttl_secs == 0 || a.min_ttl_secs > a.max_ttl_secs {
            return bad("auth.min_ttl_secs must be positive and at most auth.max_ttl_secs");
        }
        if !(a.min_ttl_secs..=a.max_ttl_secs).contains(&a.default_ttl_secs) {
            return bad("auth.default_ttl_secs must be within auth.min_ttl_secs..=max_ttl_secs");
        }
        if a.key_rotation_period_secs == 0 || a.verified_cache_entries == 0 {
            return bad(
                "auth.key_rotation_period_secs and verified_cache_entries must be positive",
            );
        }
        if a.audit_log_entries == 0 {
            return bad("auth.audit_log_entries must be positive");
        }
        if self.http.max_body_bytes == 0 || self.http.leader_wait_ms == 0 {
            return bad("http.max_body_bytes and http.leader_wait_ms must be positive");
        }
        Ok(())
    }

    /// Peer address advertised to other agents.
    pub fn advertised_peer(&self) -> String {
        self.listen
            .advertise_peer
            .clone()
            .unwrap_or_else(|| self.listen.peer.to_string())
    }

    /// HTTP endpoint advertised to clients.
    pub fn advertised_http(&self) -> String {
        self.listen
            .advertise_http
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen.http))
    }

    /// Placement settings for the pure planner.
    pub fn placement_config(&self) -> PlacementConfig {
        let p = &self.placement;
        PlacementConfig {
            replication_factor: p.replication_factor,
            write_units_per_partition: p.write_units_per_partition,
            read_units_per_partition: p.read_units_per_partition,
            on_demand_initial_partitions: p.on_demand_initial_partitions,
            max_partitions_per_table: p.max_partitions_per_table,
        }
    }

    /// The Scaler's planner settings.
    pub fn scaler_config(&self) -> shared::scaler::ScalerConfig {
        let c = &self.scaler;
        let mut cfg = shared::scaler::ScalerConfig {
            planning_interval_ms: c.planning_interval_ms,
            hot_window_ms: c.hot_window_ms,
            max_sample_gap_ms: c.max_sample_gap_ms,
            hot_threshold_percent: c.hot_threshold_percent,
            hot_min_ops_per_sec: c.hot_min_ops_per_sec,
            on_demand_partition_ops_limit: c.on_demand_partition_ops_limit,
            max_partition_size_bytes: c.max_partition_size_bytes,
            max_migrations_per_node: c.max_migrations_per_node,
            max_migrations_per_cluster: c.max_migrations_per_cluster,
            max_in_place_ops_per_cluster: c.max_splits_per_cluster,
            merge_cold_partitions: c.merge_cold_partitions,
            merge_max_load_percent: c.merge_max_load_percent,
            merge_max_size_percent: c.merge_max_size_percent,
            placement: self.placement_config(),
            ..Default::default()
        };
        cfg.rebalance.tolerance = c.imbalance_tolerance;
        cfg
    }

    /// Voter settings for the pure planner.
    pub fn voter_config(&self) -> VoterConfig {
        VoterConfig {
            voters_small: self.voters.voters_small,
            voters_large: self.voters.voters_large,
            large_cluster_min_nodes: self.voters.large_cluster_min_nodes,
        }
    }

    /// Tick of the controllers.
    pub fn tick_interval(&self) -> Duration {
        Duration::from_millis(self.controllers.tick_interval_ms)
    }
}

impl TlsConfig {
    /// The files this section names.
    pub fn files(&self) -> crate::transport::tls::TlsFiles {
        crate::transport::tls::TlsFiles {
            ca_cert: self.ca_cert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

impl From<crate::transport::tls::TlsFiles> for TlsConfig {
    fn from(files: crate::transport::tls::TlsFiles) -> Self {
        TlsConfig {
            ca_cert: files.ca_cert,
            cert: files.cert,
            key: files.key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.toml");
        let config = Config::load(&path).expect("config.example.toml must be valid");
        assert_eq!(
            config.raft,
            RaftConfig::default(),
            "example documents the defaults"
        );
        assert_eq!(config.placement, PlacementSection::default());
        assert_eq!(config.voters, VotersSection::default());
        assert_eq!(config.gossip, GossipConfig::default());
        assert_eq!(config.data, DataConfig::default());
        assert_eq!(config.controllers, ControllersConfig::default());
        assert_eq!(config.http, HttpConfig::default());
    }

    #[test]
    fn gossip_settings_and_the_failure_window_are_checked() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.toml");
        let valid = Config::load(&path).expect("valid example");
        let broken: [fn(&mut Config); 7] = [
            |c| c.data.read_lease_ms = c.controllers.failure_confirm_window_ms,
            |c| c.controllers.failure_confirm_window_ms = c.gossip.suspect_to_down_after_ms,
            |c| {
                c.controllers.failure_suspicion_hold_ms =
                    c.controllers.failure_confirm_window_ms + 1
            },
            |c| c.controllers.failure_suspicion_hold_ms = c.data.read_lease_ms,
            |c| c.gossip.max_packet_bytes = crate::transport::MAX_DATAGRAM_BYTES + 1,
            |c| c.gossip.probe_rtt_ms = c.gossip.probe_period_ms,
            |c| c.gossip.gossip_fanout = 0,
        ];
        for (i, breaking) in broken.iter().enumerate() {
            let mut c = valid.clone();
            breaking(&mut c);
            assert!(c.validate().is_err(), "case {i} accepted");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = "node_id = 1\ndata_dir = \"/x\"\nbogus = 3\n";
        assert!(toml::from_str::<Config>(text).is_err());
    }
}
