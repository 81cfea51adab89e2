//! Prometheus metrics of an agent, served at `/metrics` in OpenMetrics text format.
//! Counters and histograms are updated where things happen; gauges of the metadata
//! (Raft position, tables, partitions) are refreshed from the local replica at scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use shared::model::{NodeId, NodeStatus, TableStatus};
use shared::state::MetaState;

/// Smallest commit-latency bucket, in seconds (an fsync here is about 0.2 ms).
const COMMIT_BUCKET_START_SECONDS: f64 = 0.000_25;
/// Number of commit-latency buckets (doubling: up to about 2 s).
const COMMIT_BUCKET_COUNT: u16 = 14;
/// Smallest recovery-duration bucket, in seconds.
const RECOVERY_BUCKET_START_SECONDS: f64 = 0.01;
/// Number of recovery-duration buckets (doubling: up to about 80 s).
const RECOVERY_BUCKET_COUNT: u16 = 14;

/// Gossip traffic counters, shared with the gossip driver (clones count into the same
/// series).
#[derive(Clone, Debug, Default)]
pub struct GossipTraffic {
    /// Datagrams sent.
    pub sent_datagrams: Counter,
    /// Bytes sent.
    pub sent_bytes: Counter,
    /// Datagrams received.
    pub received_datagrams: Counter,
    /// Bytes received.
    pub received_bytes: Counter,
}

/// A node in this agent's view.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// Node id.
    pub node_id: String,
}

/// A partition in this agent's view.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Partition id.
    pub partition_id: String,
}

/// One replica of a partition led by this agent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    /// Partition id.
    pub partition_id: String,
    /// Replica node id.
    pub replica: String,
}

/// One partition's data-plane figures on this agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionFigures {
    /// Partition id.
    pub partition_id: shared::model::PartitionId,
    /// Operations per second served here as primary.
    pub ops_per_sec: f64,
    /// Items stored here (any role); `None` when not stored here.
    pub items: Option<u64>,
    /// Bytes stored here.
    pub bytes: Option<u64>,
    /// Per replica (when led here): (replica, LSNs behind, milliseconds behind).
    pub replica_lag: Vec<(NodeId, u64, u64)>,
}

/// One node as this agent sees it, for the per-node gauges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSample {
    /// Node id.
    pub node_id: NodeId,
    /// Status in this agent's view (SUSPECTED included).
    pub status: NodeStatus,
    /// Time since the last proof of life; `None` when never heard from.
    pub staleness_ms: Option<u64>,
}

/// Kind of a multi-step operation: `split` or `move`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The kind.
    pub kind: &'static str,
}

/// Kind and outcome (`completed`, `rolled_back`, `failed`) of a finished operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationOutcomeLabels {
    /// The kind.
    pub kind: &'static str,
    /// The outcome.
    pub outcome: &'static str,
}

fn pause_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        COMMIT_BUCKET_START_SECONDS,
        2.0,
        COMMIT_BUCKET_COUNT,
    ))
}

/// A long-lived task of the agent, by name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    /// The task's name (`assigner`, `reconciler`, ...).
    pub task: &'static str,
}

/// Outcome of a credential check: `verified` (signature checked), `cached`, `refused`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenCheckLabels {
    /// The outcome.
    pub outcome: &'static str,
}

/// Outcome of a metadata proposal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProposalLabels {
    /// `applied`, `rejected` (a committed no-op) or `unavailable` (no leader).
    pub outcome: &'static str,
}

/// Tables per status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// Table status.
    pub status: &'static str,
}

/// One of this agent's TLS certificates: `node` or `ca`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    /// Which certificate.
    pub cert: &'static str,
}

/// Outcome of a TLS reload: `ok` or `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// The outcome.
    pub outcome: &'static str,
}

/// Every metric of one agent.
pub struct AgentMetrics {
    registry: Registry,
    /// Time from proposing a metadata command on this agent to its commit and apply.
    pub meta_commit_seconds: Histogram,
    /// Metadata proposals made through this agent, by outcome.
    pub meta_proposals: Family<ProposalLabels, Counter>,
    /// `NodeFailed` decisions this agent committed as leader (repeats not counted).
    pub node_failed_decisions: Counter,
    /// Partition changes committed by this agent's recovery coordinator.
    pub partitions_repaired: Counter,
    /// Time from a committed `NodeFailed` to the commit that left the node no partitions.
    pub recovery_seconds: Histogram,
    /// Times this agent saw the Raft leader change.
    pub leader_changes: Counter,
    /// HTTP requests served by this agent.
    pub http_requests: Counter,
    /// Write pause of each split or move this agent drove, by kind (`split`, `move`).
    pub write_pause_seconds: Family<OperationLabels, Histogram, fn() -> Histogram>,
    /// Operations this agent drove to an end, by kind and outcome.
    pub operations_finished: Family<OperationOutcomeLabels, Counter>,
    /// Credentials this agent signed as leader.
    pub credentials_issued: Counter,
    /// Credential checks on the data path, by outcome.
    pub token_checks: Family<TokenCheckLabels, Counter>,
    /// Gossip traffic.
    pub gossip: GossipTraffic,
    /// Long-lived tasks that panicked or stopped unexpectedly, by task.
    pub task_failures: Family<TaskLabels, Counter>,
    /// Unix time at which each TLS certificate in use expires.
    pub tls_cert_expiry_seconds: Family<CertLabels, Gauge>,
    /// TLS reloads (SIGHUP) by outcome: `ok` or `error` (the old files stay in use).
    pub tls_reloads: Family<ReloadLabels, Counter>,
    node_staleness_seconds: Family<NodeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    nodes_by_status: Family<StatusLabels, Gauge>,
    meta_applied_lag_entries: Gauge,
    meta_replication_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    partition_ops: Family<PartitionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    partition_items: Family<PartitionLabels, Gauge>,
    partition_bytes: Family<PartitionLabels, Gauge>,
    replica_lag_lsn: Family<ReplicaLabels, Gauge>,
    replica_lag_seconds: Family<ReplicaLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    raft_term: Gauge,
    raft_applied_index: Gauge,
    raft_is_leader: Gauge,
    raft_voters: Gauge,
    raft_learners: Gauge,
    tables: Family<StatusLabels, Gauge>,
    partitions: Gauge,
    nodes: Gauge,
    local_partitions: Gauge,
}

/// What a scrape reports besides the counters: this agent's views at scrape time.
pub struct ScrapeView<'a> {
    /// Raft position and role.
    pub raft: RaftView,
    /// Local metadata replica.
    pub state: &'a MetaState,
    /// Partitions with storage on this agent.
    pub local_partitions: usize,
    /// Every known node as this agent sees it.
    pub nodes: Vec<NodeSample>,
    /// Entries the leader has applied that this agent has not (as gossiped).
    pub applied_lag_entries: u64,
    /// How long this agent's metadata replica has been behind the leader.
    pub replication_lag_ms: u64,
    /// Data-plane figures of the partitions stored or led here.
    pub partitions: Vec<PartitionFigures>,
}

/// A point-in-time view of Raft for the gauges.
pub struct RaftView {
    /// Current term.
    pub term: u64,
    /// Applied index of this node.
    pub applied_index: u64,
    /// Whether this node leads.
    pub is_leader: bool,
    /// Voter count.
    pub voters: usize,
    /// Learner count.
    pub learners: usize,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let buckets = exponential_buckets(COMMIT_BUCKET_START_SECONDS, 2.0, COMMIT_BUCKET_COUNT);
        let recovery =
            exponential_buckets(RECOVERY_BUCKET_START_SECONDS, 2.0, RECOVERY_BUCKET_COUNT);
        let m = AgentMetrics {
            registry: Registry::with_prefix("agent"),
            meta_commit_seconds: Histogram::new(buckets),
            meta_proposals: Family::default(),
            node_failed_decisions: Counter::default(),
            partitions_repaired: Counter::default(),
            recovery_seconds: Histogram::new(recovery),
            leader_changes: Counter::default(),
            http_requests: Counter::default(),
            write_pause_seconds: Family::new_with_constructor(pause_histogram),
            operations_finished: Family::default(),
            credentials_issued: Counter::default(),
            token_checks: Family::default(),
            task_failures: Family::default(),
            tls_cert_expiry_seconds: Family::default(),
            tls_reloads: Family::default(),
            gossip: GossipTraffic::default(),
            node_staleness_seconds: Family::default(),
            nodes_by_status: Family::default(),
            meta_applied_lag_entries: Gauge::default(),
            meta_replication_lag_seconds: Gauge::default(),
            partition_ops: Family::default(),
            partition_items: Family::default(),
            partition_bytes: Family::default(),
            replica_lag_lsn: Family::default(),
            replica_lag_seconds: Family::default(),
            raft_term: Gauge::default(),
            raft_applied_index: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_voters: Gauge::default(),
            raft_learners: Gauge::default(),
            tables: Family::default(),
            partitions: Gauge::default(),
            nodes: Gauge::default(),
            local_partitions: Gauge::default(),
        };
        m.register_all()
    }

    fn register_all(mut self) -> Self {
        let r = &mut self.registry;
        let commit_help = "Metadata commit latency seen by proposals made through this agent";
        r.register(
            "meta_commit_seconds",
            commit_help,
            self.meta_commit_seconds.clone(),
        );
        r.register(
            "meta_proposals",
            "Metadata proposals by outcome",
            self.meta_proposals.clone(),
        );
        r.register(
            "node_failed_decisions",
            "NodeFailed decisions committed by this agent as leader",
            self.node_failed_decisions.clone(),
        );
        r.register(
            "partitions_repaired",
            "Partition changes committed by this agent's recovery coordinator",
            self.partitions_repaired.clone(),
        );
        r.register(
            "recovery_seconds",
            "Time from a committed NodeFailed to the failed node holding no partition",
            self.recovery_seconds.clone(),
        );
        r.register(
            "raft_leader_changes",
            "Raft leader changes seen by this agent",
            self.leader_changes.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests served by this agent",
            self.http_requests.clone(),
        );
        r.register(
            "operation_write_pause_seconds",
            "Writes paused by each split (fence to children writable) or move (tail to swap)",
            self.write_pause_seconds.clone(),
        );
        r.register(
            "operations_finished",
            "Splits and moves driven by this agent, by kind and outcome",
            self.operations_finished.clone(),
        );
        r.register(
            "credentials_issued",
            "Credentials signed by this agent as leader",
            self.credentials_issued.clone(),
        );
        r.register(
            "token_checks",
            "Credential checks on the data path by outcome (verified, cached, refused)",
            self.token_checks.clone(),
        );
        r.register(
            "task_failures",
            "Long-lived tasks that panicked or stopped unexpectedly, by task",
            self.task_failures.clone(),
        );
        r.register(
            "tls_cert_expiry_seconds",
            "Unix time at which each TLS certificate in use (node, ca) expires",
            self.tls_cert_expiry_seconds.clone(),
        );
        r.register(
            "tls_reloads",
            "TLS certificate reloads (SIGHUP) by outcome (ok, error: the previous ones stay)",
            self.tls_reloads.clone(),
        );
        let g = &self.gossip;
        r.register(
            "gossip_sent_datagrams",
            "Gossip datagrams sent",
            g.sent_datagrams.clone(),
        );
        r.register(
            "gossip_sent_bytes",
            "Gossip bytes sent",
            g.sent_bytes.clone(),
        );
        r.register(
            "gossip_received_datagrams",
            "Gossip datagrams received",
            g.received_datagrams.clone(),
        );
        r.register(
            "gossip_received_bytes",
            "Gossip bytes received",
            g.received_bytes.clone(),
        );
        r.register(
            "node_heartbeat_staleness_seconds",
            "Time since this agent last had a proof of life from each node",
            self.node_staleness_seconds.clone(),
        );
        r.register(
            "nodes_by_status",
            "Nodes by status in this agent's view (SUSPECTED is gossip-level)",
            self.nodes_by_status.clone(),
        );
        r.register(
            "meta_applied_lag_entries",
            "Metadata entries applied by the leader and not yet by this agent",
            self.meta_applied_lag_entries.clone(),
        );
        r.register(
            "meta_replication_lag_seconds",
            "How long this agent's metadata replica has been behind the leader",
            self.meta_replication_lag_seconds.clone(),
        );
        r.register(
            "partition_ops_per_second",
            "Operations served per second as primary (10 s window)",
            self.partition_ops.clone(),
        );
        r.register(
            "partition_items",
            "Items stored in each local partition copy",
            self.partition_items.clone(),
        );
        r.register(
            "partition_bytes",
            "Key and value bytes stored in each local partition copy",
            self.partition_bytes.clone(),
        );
        r.register(
            "partition_replica_lag_lsn",
            "Log records a replica lacks, per partition led here",
            self.replica_lag_lsn.clone(),
        );
        r.register(
            "partition_replica_lag_seconds",
            "How long a replica has lacked records, per partition led here",
            self.replica_lag_seconds.clone(),
        );
        r.register("raft_term", "Current Raft term", self.raft_term.clone());
        r.register(
            "raft_applied_index",
            "Last applied log index",
            self.raft_applied_index.clone(),
        );
        r.register(
            "raft_is_leader",
            "1 when this agent leads",
            self.raft_is_leader.clone(),
        );
        r.register("raft_voters", "Raft voters", self.raft_voters.clone());
        r.register("raft_learners", "Raft learners", self.raft_learners.clone());
        r.register("tables", "Tables by status", self.tables.clone());
        r.register(
            "partitions",
            "Partitions in the cluster",
            self.partitions.clone(),
        );
        r.register(
            "nodes",
            "Nodes registered in the cluster",
            self.nodes.clone(),
        );
        let local_help = "Partitions with storage on this agent";
        r.register(
            "local_partitions",
            local_help,
            self.local_partitions.clone(),
        );
        self
    }

    /// Records one proposal: its latency when it reached the state machine.
    pub fn observe_proposal(&self, outcome: &'static str, seconds: Option<f64>) {
        self.meta_proposals
            .get_or_create(&ProposalLabels { outcome })
            .inc();
        if let Some(s) = seconds {
            self.meta_commit_seconds.observe(s);
        }
    }

    /// Refreshes the gauges and encodes every metric.
    pub fn render(&self, view: &ScrapeView<'_>) -> String {
        let (raft, state) = (&view.raft, view.state);
        self.raft_term.set(raft.term as i64);
        self.raft_applied_index.set(raft.applied_index as i64);
        self.raft_is_leader.set(i64::from(raft.is_leader));
        self.raft_voters.set(raft.voters as i64);
        self.raft_learners.set(raft.learners as i64);
        for (status, name) in [
            (TableStatus::Creating, "CREATING"),
            (TableStatus::Active, "ACTIVE"),
            (TableStatus::Deleting, "DELETING"),
            (TableStatus::Scaling, "SCALING"),
        ] {
            let count = state.tables().filter(|t| t.status == status).count();
            self.tables
                .get_or_create(&StatusLabels { status: name })
                .set(count as i64);
        }
        self.partitions.set(state.partition_count() as i64);
        self.nodes.set(state.nodes().count() as i64);
        self.local_partitions.set(view.local_partitions as i64);
        self.render_nodes(&view.nodes);
        self.render_partitions(&view.partitions);
        self.meta_applied_lag_entries
            .set(view.applied_lag_entries as i64);
        self.meta_replication_lag_seconds
            .set(view.replication_lag_ms as f64 / 1000.0);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl AgentMetrics {
    fn render_partitions(&self, partitions: &[PartitionFigures]) {
        // Cleared first so a partition that moved away leaves the series too.
        self.partition_ops.clear();
        self.partition_items.clear();
        self.partition_bytes.clear();
        self.replica_lag_lsn.clear();
        self.replica_lag_seconds.clear();
        for p in partitions {
            let labels = PartitionLabels {
                partition_id: p.partition_id.to_string(),
            };
            self.partition_ops.get_or_create(&labels).set(p.ops_per_sec);
            if let Some(items) = p.items {
                self.partition_items
                    .get_or_create(&labels)
                    .set(items as i64);
            }
            if let Some(bytes) = p.bytes {
                self.partition_bytes
                    .get_or_create(&labels)
                    .set(bytes as i64);
            }
            for (replica, lsn, ms) in &p.replica_lag {
                let labels = ReplicaLabels {
                    partition_id: p.partition_id.to_string(),
                    replica: replica.to_string(),
                };
                self.replica_lag_lsn.get_or_create(&labels).set(*lsn as i64);
                self.replica_lag_seconds
                    .get_or_create(&labels)
                    .set(*ms as f64 / 1000.0);
            }
        }
    }

    fn render_nodes(&self, nodes: &[NodeSample]) {
        // Cleared first so a node that left the cluster leaves the series too.
        self.node_staleness_seconds.clear();
        for n in nodes {
            if let Some(ms) = n.staleness_ms {
                self.node_staleness_seconds
                    .get_or_create(&NodeLabels {
                        node_id: n.node_id.to_string(),
                    })
                    .set(ms as f64 / 1000.0);
            }
        }
        for (status, name) in [
            (NodeStatus::Healthy, "HEALTHY"),
            (NodeStatus::Suspected, "SUSPECTED"),
            (NodeStatus::Failed, "FAILED"),
            (NodeStatus::Draining, "DRAINING"),
            (NodeStatus::Decommissioned, "DECOMMISSIONED"),
        ] {
            let count = nodes.iter().filter(|n| n.status == status).count();
            self.nodes_by_status
                .get_or_create(&StatusLabels { status: name })
                .set(count as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_with_observed_values() {
        let m = AgentMetrics::new();
        m.observe_proposal("applied", Some(0.001));
        m.observe_proposal("unavailable", None);
        let view = RaftView {
            term: 3,
            applied_index: 42,
            is_leader: true,
            voters: 3,
            learners: 2,
        };
        m.node_failed_decisions.inc();
        let state = MetaState::default();
        let nodes = vec![
            NodeSample {
                node_id: 2,
                status: NodeStatus::Suspected,
                staleness_ms: Some(1500),
            },
            NodeSample {
                node_id: 3,
                status: NodeStatus::Healthy,
                staleness_ms: None,
            },
        ];
        let text = m.render(&ScrapeView {
            raft: view,
            state: &state,
            local_partitions: 7,
            nodes,
            applied_lag_entries: 4,
            replication_lag_ms: 250,
            partitions: vec![PartitionFigures {
                partition_id: 9,
                ops_per_sec: 12.5,
                items: Some(3),
                bytes: Some(120),
                replica_lag: vec![(2, 5, 1500)],
            }],
        });
        assert!(text.contains(r#"agent_partition_ops_per_second{partition_id="9"} 12.5"#));
        assert!(text.contains(r#"agent_partition_items{partition_id="9"} 3"#));
        assert!(
            text.contains(r#"agent_partition_replica_lag_lsn{partition_id="9",replica="2"} 5"#)
        );
        assert!(text.contains(r#"agent_node_heartbeat_staleness_seconds{node_id="2"} 1.5"#));
        assert!(
            !text.contains(r#"node_id="3""#),
            "never heard: no staleness series"
        );
        assert!(text.contains(r#"agent_nodes_by_status{status="SUSPECTED"} 1"#));
        assert!(text.contains("agent_node_failed_decisions_total 1"));
        assert!(text.contains("agent_meta_applied_lag_entries 4"));
        assert!(text.contains("agent_meta_replication_lag_seconds 0.25"));
        assert!(text.contains("agent_raft_term 3"), "{text}");
        assert!(text.contains("agent_raft_applied_index 42"));
        assert!(text.contains("agent_meta_commit_seconds_count 1"));
        assert!(text.contains(r#"agent_meta_proposals_total{outcome="unavailable"} 1"#));
        assert!(text.contains("agent_local_partitions 7"));
        assert!(text.ends_with("# EOF\n"));
    }
}
