//! Prometheus metrics of an agent, served at `/metrics` in OpenMetrics text format.
//! Counters and histograms are updated where things happen; gauges of the metadata
//! (Raft position, tables, partitions) are refreshed from the local replica at scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use shared::model::TableStatus;
use shared::state::MetaState;

/// Smallest commit-latency bucket, in seconds (an fsync here is about 0.2 ms).
const COMMIT_BUCKET_START_SECONDS: f64 = 0.000_25;
/// Number of commit-latency buckets (doubling: up to about 2 s).
const COMMIT_BUCKET_COUNT: u16 = 14;

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

/// Every metric of one agent.
pub struct AgentMetrics {
    registry: Registry,
    /// Time from proposing a metadata command on this agent to its commit and apply.
    pub meta_commit_seconds: Histogram,
    /// Metadata proposals made through this agent, by outcome.
    pub meta_proposals: Family<ProposalLabels, Counter>,
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
        let m = AgentMetrics {
            registry: Registry::with_prefix("agent"),
            meta_commit_seconds: Histogram::new(buckets),
            meta_proposals: Family::default(),
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
    pub fn render(&self, raft: &RaftView, state: &MetaState, local_partitions: usize) -> String {
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
        self.local_partitions.set(local_partitions as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
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
        let text = m.render(&view, &MetaState::default(), 7);
        assert!(text.contains("agent_raft_term 3"), "{text}");
        assert!(text.contains("agent_raft_applied_index 42"));
        assert!(text.contains("agent_meta_commit_seconds_count 1"));
        assert!(text.contains(r#"agent_meta_proposals_total{outcome="unavailable"} 1"#));
        assert!(text.contains("agent_local_partitions 7"));
        assert!(text.ends_with("# EOF\n"));
    }
}
