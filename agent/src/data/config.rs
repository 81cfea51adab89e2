//! The data plane's settings (`[data]` in the agent's configuration).

use serde::{Deserialize, Serialize};

/// Data-plane settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Largest item value (JSON text) accepted, in bytes.
    pub max_value_bytes: usize,
    /// How long a primary may serve reads after its replicas last confirmed it (a read
    /// lease). Must be shorter than `controllers.failure_suspicion_hold_ms` (and so than
    /// `controllers.failure_confirm_window_ms`).
    pub read_lease_ms: u64,
    /// The primary renews its read leases this often.
    pub lease_renew_interval_ms: u64,
    /// A replica that does not answer a replication request within this long fails the
    /// write (503).
    pub replica_timeout_ms: u64,
    /// A replica that has failed to confirm writes or lease renewals for this long is
    /// dropped from its partition's replica set (through Raft), so writes continue; the
    /// recovery coordinator then adds a replacement.
    pub replica_drop_after_ms: u64,
    /// Records kept in each partition's log for replicas to catch up from; a replica
    /// further behind gets a snapshot.
    pub log_retain_records: u64,
    /// Attempts of a forwarding agent when the route turns out stale or the primary
    /// unreachable, before it answers 503.
    pub route_attempts: usize,
    /// A partition copy (a move, a replica caught up by snapshot) travels in chunks of
    /// about this many bytes of items, each one message.
    pub snapshot_chunk_bytes: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            max_value_bytes: shared::data::DEFAULT_MAX_VALUE_BYTES,
            read_lease_ms: 2000,
            lease_renew_interval_ms: 500,
            replica_timeout_ms: 1000,
            replica_drop_after_ms: 5000,
            log_retain_records: 10_000,
            route_attempts: 8,
            snapshot_chunk_bytes: super::store::SNAPSHOT_CHUNK_BYTES,
        }
    }
}
