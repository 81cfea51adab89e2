//! Per-partition activity seen by this agent: operations served as primary over a
//! sliding window, and how far each replica is behind (LSN and time since it last had
//! everything). Feeds `/metrics`, the gossiped load summary and the Scaler.

use std::collections::HashMap;
use std::sync::Mutex;

use shared::data::LogPosition;
use shared::model::{NodeId, PartitionId};
use tokio::time::Instant;

use super::lock;

/// Length of the ops/sec window, in one-second buckets.
const WINDOW_SECONDS: usize = 10;

/// Operations of one partition in one-second buckets.
#[derive(Debug, Clone)]
struct OpsWindow {
    /// Buckets indexed by second (modulo the window), with the second each counts.
    buckets: [(u64, u64); WINDOW_SECONDS],
}

impl OpsWindow {
    fn new() -> Self {
        OpsWindow {
            buckets: [(0, 0); WINDOW_SECONDS],
        }
    }

    fn add(&mut self, second: u64) {
        let slot = &mut self.buckets[(second as usize) % WINDOW_SECONDS];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
    }

    /// Mean operations per second over the complete seconds of the window.
    fn rate(&self, second: u64) -> f64 {
        let oldest = second.saturating_sub(WINDOW_SECONDS as u64);
        let total: u64 = self
            .buckets
            .iter()
            .filter(|(s, _)| *s >= oldest && *s < second)
            .map(|(_, n)| n)
            .sum();
        total as f64 / WINDOW_SECONDS as f64
    }
}

/// One replica as its primary sees it.
#[derive(Debug, Clone, Copy, Default)]
struct ReplicaProgress {
    /// Last LSN the replica confirmed.
    acked_lsn: u64,
    /// The primary's last LSN when it last heard.
    primary_lsn: u64,
    /// Since when the replica lacks records (`None` when it has everything).
    behind_since: Option<Instant>,
    /// Since when the replica has not answered at all (`None` when it last did).
    silent_since: Option<Instant>,
}

/// A point-in-time view of one partition for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionSample {
    /// Partition.
    pub partition_id: PartitionId,
    /// Operations per second served as primary (mean over the window).
    pub ops_per_sec: f64,
    /// Per replica: (replica, LSNs behind, milliseconds behind).
    pub replica_lag: Vec<(NodeId, u64, u64)>,
}

/// Activity counters of one agent.
pub struct PartitionActivity {
    origin: Instant,
    ops: Mutex<HashMap<PartitionId, OpsWindow>>,
    replicas: Mutex<HashMap<(PartitionId, NodeId), ReplicaProgress>>,
}

impl Default for PartitionActivity {
    fn default() -> Self {
        PartitionActivity {
            origin: Instant::now(),
            ops: Mutex::default(),
            replicas: Mutex::default(),
        }
    }
}

impl PartitionActivity {
    fn second(&self) -> u64 {
        self.origin.elapsed().as_secs()
    }

    /// Counts one operation served as the primary of `pid`.
    pub fn record_op(&self, pid: PartitionId) {
        let second = self.second();
        lock(&self.ops)
            .entry(pid)
            .or_insert_with(OpsWindow::new)
            .add(second);
    }

    /// `replica` confirmed everything up to `pos` while the primary was at `primary_lsn`.
    pub fn record_ack(
        &self,
        pid: PartitionId,
        replica: NodeId,
        pos: LogPosition,
        primary_lsn: u64,
    ) {
        let mut replicas = lock(&self.replicas);
        let progress = replicas.entry((pid, replica)).or_default();
        progress.acked_lsn = pos.lsn;
        progress.primary_lsn = primary_lsn.max(pos.lsn);
        progress.behind_since = None;
        progress.silent_since = None;
    }

    /// `replica` answered (a lease renewal): it is reachable, whatever its LSN lag.
    pub fn confirmed(&self, pid: PartitionId, replica: NodeId) {
        if let Some(progress) = lock(&self.replicas).get_mut(&(pid, replica)) {
            progress.silent_since = None;
        }
    }

    /// `replica` failed to confirm the record at `primary_lsn` (or to answer at all);
    /// returns how long it has been silent.
    pub fn record_behind(
        &self,
        pid: PartitionId,
        replica: NodeId,
        primary_lsn: u64,
    ) -> std::time::Duration {
        let mut replicas = lock(&self.replicas);
        let progress = replicas.entry((pid, replica)).or_default();
        progress.primary_lsn = progress.primary_lsn.max(primary_lsn);
        if progress.acked_lsn < progress.primary_lsn {
            progress.behind_since.get_or_insert_with(Instant::now);
        }
        progress
            .silent_since
            .get_or_insert_with(Instant::now)
            .elapsed()
    }

    /// Forgets partitions this agent no longer leads (their series leave the metrics).
    pub fn retain(&self, led: impl Fn(PartitionId) -> bool) {
        lock(&self.ops).retain(|pid, _| led(*pid));
        lock(&self.replicas).retain(|(pid, _), _| led(*pid));
    }

    /// Every partition with activity or replicas, ordered by id.
    pub fn samples(&self) -> Vec<PartitionSample> {
        let second = self.second();
        let now = Instant::now();
        let mut by_pid: std::collections::BTreeMap<PartitionId, PartitionSample> =
            std::collections::BTreeMap::new();
        for (pid, window) in lock(&self.ops).iter() {
            by_pid
                .entry(*pid)
                .or_insert_with(|| empty(*pid))
                .ops_per_sec = window.rate(second);
        }
        for ((pid, replica), p) in lock(&self.replicas).iter() {
            let lag_ms = p
                .behind_since
                .map_or(0, |since| now.duration_since(since).as_millis() as u64);
            by_pid
                .entry(*pid)
                .or_insert_with(|| empty(*pid))
                .replica_lag
                .push((*replica, p.primary_lsn.saturating_sub(p.acked_lsn), lag_ms));
        }
        by_pid.into_values().collect()
    }

    /// Operations per second over all partitions led here.
    pub fn total_ops_per_sec(&self) -> f64 {
        let second = self.second();
        lock(&self.ops).values().map(|w| w.rate(second)).sum()
    }

    /// The worst replica lag of the partitions led here, in milliseconds.
    pub fn max_replica_lag_ms(&self) -> u64 {
        let now = Instant::now();
        lock(&self.replicas)
            .values()
            .filter_map(|p| p.behind_since)
            .map(|since| now.duration_since(since).as_millis() as u64)
            .max()
            .unwrap_or(0)
    }
}

fn empty(pid: PartitionId) -> PartitionSample {
    PartitionSample {
        partition_id: pid,
        ops_per_sec: 0.0,
        replica_lag: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rate_counts_complete_seconds_only() {
        let mut w = OpsWindow::new();
        for _ in 0..30 {
            w.add(5);
        }
        w.add(6);
        // At second 6, only second 5 is complete: 30 ops over a 10 s window.
        assert!((w.rate(6) - 3.0).abs() < 1e-9);
        // Eleven seconds later everything has left the window.
        assert_eq!(w.rate(17), 0.0);
    }

    #[test]
    fn replica_lag_clears_on_ack() {
        let a = PartitionActivity::default();
        a.record_behind(1, 2, 10);
        let s = a.samples();
        assert_eq!(s[0].replica_lag, vec![(2, 10, s[0].replica_lag[0].2)]);
        a.record_ack(1, 2, LogPosition { lsn: 10, epoch: 1 }, 10);
        assert_eq!(a.samples()[0].replica_lag, vec![(2, 0, 0)]);
        assert_eq!(a.max_replica_lag_ms(), 0);
    }
}
