//! Read leases. A primary serves reads of a partition only until `read_lease_ms` after
//! the moment it last asked its replicas and every one of them confirmed it as the
//! primary of the current epoch (every acknowledged write does this too). Measured on
//! this process's monotonic clock from when the confirmation was requested, so a
//! primary paused or cut off stops serving within the lease, which is shorter than the
//! failure-confirmation window after which the leader may promote another replica.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use shared::data::{DataPeerReply, DataPeerRequest, ReplicaReply, ReplicaRequest};
use shared::model::{NodeId, PartitionId, TableStatus};
use tokio::time::Instant;

use super::{DataPlane, lock};

/// Leases held by this agent as a primary, and granted by it as a replica, per
/// partition: (epoch, valid until).
///
/// A replica that granted a lease to one primary grants none to another until that grant
/// has expired (and a replica promoted to primary does not take a lease over its own
/// grant either): so a new primary starts serving reads only after the old primary's
/// lease ran out, even if the replica's metadata lagged when it granted. The same
/// primary at a new epoch (a replica set change that kept it) is not held up.
/// A grant is timed from its receipt, after the primary started timing its lease, so it
/// outlasts the lease it backs.
#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<PartitionId, (u64, Instant)>>,
    /// As a replica: to which primary, until when.
    granted: Mutex<HashMap<PartitionId, (NodeId, Instant)>>,
    /// As a primary handing its partition over (a move): the epoch at which it no
    /// longer takes or renews a lease.
    surrendered: Mutex<HashMap<PartitionId, u64>>,
}

impl Leases {
    /// As a replica: grants `primary` a lease of `pid` for `duration` from now, unless a
    /// grant to another primary is still running.
    pub(super) fn grant(&self, pid: PartitionId, primary: NodeId, duration: Duration) -> bool {
        let now = Instant::now();
        let mut granted = lock(&self.granted);
        match granted.get(&pid) {
            Some((p, until)) if *p != primary && now < *until => false,
            _ => {
                granted.insert(pid, (primary, now + duration));
                true
            }
        }
    }

    /// As a primary about to hand `pid` over: stops serving reads at `epoch` now, and
    /// renews no lease at that epoch any more.
    pub(super) fn surrender(&self, pid: PartitionId, epoch: u64) {
        lock(&self.surrendered).insert(pid, epoch);
        lock(&self.held).remove(&pid);
    }

    /// Whether this primary surrendered `pid` at `epoch` (it asks for no grant then).
    pub(super) fn is_surrendered(&self, pid: PartitionId, epoch: u64) -> bool {
        lock(&self.surrendered).get(&pid) == Some(&epoch)
    }

    /// Takes back a surrender (the hand-over did not happen).
    pub(super) fn resume(&self, pid: PartitionId) {
        lock(&self.surrendered).remove(&pid);
    }

    /// As a replica: forgets the grant to `primary` (it surrendered its lease), so
    /// another primary may get one at once.
    pub(super) fn release_grant(&self, pid: PartitionId, primary: NodeId) {
        let mut granted = lock(&self.granted);
        if granted.get(&pid).is_some_and(|(p, _)| *p == primary) {
            granted.remove(&pid);
        }
    }

    /// Drops the surrender marks of partitions no longer led here.
    pub(super) fn forget_surrenders(&self, led: &std::collections::HashSet<PartitionId>) {
        lock(&self.surrendered).retain(|pid, _| led.contains(pid));
    }

    /// Whether a grant to a primary other than `me` is still running here.
    fn blocked(&self, pid: PartitionId, me: NodeId, now: Instant) -> bool {
        lock(&self.granted)
            .get(&pid)
            .is_some_and(|(p, until)| *p != me && now < *until)
    }

    /// Extends the lease of primary `me` on `pid` at `epoch` to `until` (never shortens
    /// it), unless this agent granted another primary a lease that is still running.
    pub(super) fn renew(&self, me: NodeId, pid: PartitionId, epoch: u64, until: Instant) {
        if self.blocked(pid, me, Instant::now())
            || lock(&self.surrendered).get(&pid) == Some(&epoch)
        {
            return;
        }
        let mut held = lock(&self.held);
        let entry = held.entry(pid).or_insert((epoch, until));
        if entry.0 != epoch {
            *entry = (epoch, until);
        } else if until > entry.1 {
            entry.1 = until;
        }
    }

    /// Whether this agent may serve reads of `pid` at `epoch` at `now`.
    pub(super) fn holds(&self, pid: PartitionId, epoch: u64, now: Instant) -> bool {
        lock(&self.held)
            .get(&pid)
            .is_some_and(|(e, until)| *e == epoch && now < *until)
    }
}

impl DataPlane {
    /// Renews the read leases of every partition this agent leads, every
    /// `lease_renew_interval_ms`, until the process stops.
    pub async fn run_leases(self: std::sync::Arc<Self>) {
        let interval = Duration::from_millis(self.config.lease_renew_interval_ms);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.renew_leases().await;
        }
    }

    /// Drops per-partition bookkeeping of partitions this agent no longer leads (activity
    /// series) or that no longer exist (locks, accepted epochs), once per round.
    fn forget_gone(&self, led: &[(PartitionId, u64, Vec<NodeId>)]) {
        let led: std::collections::HashSet<PartitionId> = led.iter().map(|(p, _, _)| *p).collect();
        self.primary.activity.retain(|pid| led.contains(&pid));
        self.leases.forget_surrenders(&led);
        let exists = |pid: &PartitionId| self.state.read(|s| s.partition(*pid).is_some());
        // A lock in use is held through its Arc elsewhere: dropping the map's entry is safe.
        lock(&self.primary.writers).retain(|pid, _| exists(pid));
        lock(&self.replica.locks).retain(|pid, _| exists(pid));
        lock(&self.replica.accepted).retain(|pid, _| exists(pid));
    }

    /// One renewal round: one request per replica node for all partitions it holds.
    async fn renew_leases(&self) {
        let started = Instant::now();
        let led: Vec<(PartitionId, u64, Vec<NodeId>)> = self.state.read(|s| {
            s.partitions()
                .filter(|p| p.primary_node_id == self.me)
                .filter(|p| {
                    s.table(p.table_id).is_some_and(|t| {
                        matches!(t.status, TableStatus::Active | TableStatus::Scaling)
                    })
                })
                .map(|p| (p.partition_id, p.epoch, p.replica_node_ids.clone()))
                .collect()
        });
        self.forget_gone(&led);
        // A partition being handed over asks its replicas for nothing more.
        let led: Vec<_> = led
            .into_iter()
            .filter(|(pid, epoch, _)| !self.leases.is_surrendered(*pid, *epoch))
            .collect();
        // Cut off from the metadata majority, this agent may have been replaced already.
        if led.is_empty() || !self.meta_fresh() {
            return;
        }
        let mut per_node: BTreeMap<NodeId, Vec<(PartitionId, u64)>> = BTreeMap::new();
        for (pid, epoch, replicas) in &led {
            for r in replicas {
                per_node.entry(*r).or_default().push((*pid, *epoch));
            }
        }
        let timeout = Duration::from_millis(self.config.replica_timeout_ms);
        let asks = per_node.into_iter().map(|(node, entries)| async move {
            let request = DataPeerRequest::Replica(ReplicaRequest::Lease {
                primary: self.me,
                entries: entries.clone(),
            });
            // `None`: the replica did not answer (unreachable), as opposed to refusing.
            let granted: Vec<Option<bool>> = match self.rpc(node, request, timeout).await {
                Ok(DataPeerReply::Replica(ReplicaReply::Lease(granted)))
                    if granted.len() == entries.len() =>
                {
                    granted.into_iter().map(Some).collect()
                }
                _ => vec![None; entries.len()],
            };
            entries
                .into_iter()
                .zip(granted)
                .map(move |((pid, _), ok)| ((pid, node), ok))
        });
        let answers: HashMap<(PartitionId, NodeId), Option<bool>> = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let until = started + self.lease_duration();
        let mut alone = Vec::new();
        for (pid, epoch, replicas) in &led {
            if replicas.is_empty() {
                alone.push((*pid, *epoch));
                continue;
            }
            let mut all = true;
            for r in replicas {
                match answers.get(&(*pid, *r)) {
                    Some(Some(true)) => self.primary.activity.confirmed(*pid, *r),
                    // No answer at all: the same as a write it did not confirm.
                    Some(None) | None => {
                        all = false;
                        let lsn = self.store.position(*pid).map_or(0, |p| p.lsn);
                        self.replica_failing(*pid, *epoch, *r, lsn);
                    }
                    Some(Some(false)) => all = false,
                }
            }
            if all {
                self.leases.renew(self.me, *pid, *epoch, until);
            }
        }
        // A partition without replicas has no one to confirm it: the metadata does, once
        // a read barrier shows this agent is still its primary at that epoch.
        if !alone.is_empty() && self.meta.linearizable_barrier().await.is_ok() {
            for (pid, epoch) in alone {
                let still = self.state.read(|s| {
                    s.partition(pid)
                        .is_some_and(|p| p.primary_node_id == self.me && p.epoch == epoch)
                });
                if still {
                    self.leases.renew(self.me, pid, epoch, until);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: NodeId = 1;

    #[test]
    fn a_lease_is_per_epoch_and_expires() {
        let leases = Leases::default();
        let now = Instant::now();
        leases.renew(ME, 1, 3, now + Duration::from_secs(2));
        assert!(leases.holds(1, 3, now));
        assert!(!leases.holds(1, 4, now), "another epoch holds nothing");
        assert!(!leases.holds(1, 3, now + Duration::from_secs(2)), "expired");
        assert!(!leases.holds(2, 3, now));
        // A renewal never shortens; a new epoch replaces.
        leases.renew(ME, 1, 3, now + Duration::from_secs(1));
        assert!(leases.holds(1, 3, now + Duration::from_millis(1500)));
        leases.renew(ME, 1, 4, now + Duration::from_secs(1));
        assert!(!leases.holds(1, 3, now));
        assert!(leases.holds(1, 4, now));
    }

    #[test]
    fn a_surrendered_lease_stops_at_once_and_a_released_grant_frees_the_replica() {
        let leases = Leases::default();
        let now = Instant::now();
        let lease = Duration::from_secs(2);
        leases.renew(ME, 1, 3, now + lease);
        leases.surrender(1, 3);
        assert!(!leases.holds(1, 3, now), "no reads after the surrender");
        leases.renew(ME, 1, 3, now + lease);
        assert!(
            !leases.holds(1, 3, now),
            "no renewal at the surrendered epoch"
        );
        leases.resume(1);
        leases.renew(ME, 1, 3, now + lease);
        assert!(leases.holds(1, 3, now), "taken back");
        let replica = Leases::default();
        assert!(replica.grant(1, 2, lease));
        replica.release_grant(1, 5);
        assert!(
            !replica.grant(1, 3, lease),
            "only the named primary's grant goes"
        );
        replica.release_grant(1, 2);
        assert!(
            replica.grant(1, 3, lease),
            "the new primary gets one at once"
        );
    }

    #[test]
    fn a_running_grant_blocks_other_primaries() {
        let leases = Leases::default();
        let lease = Duration::from_secs(2);
        assert!(leases.grant(7, 2, lease));
        assert!(leases.grant(7, 2, lease), "the same primary renews");
        assert!(
            !leases.grant(7, 3, lease),
            "another primary waits for the grant"
        );
        // Promoted meanwhile: this agent takes no lease over its own grant to node 2.
        leases.renew(ME, 7, 4, Instant::now() + lease);
        assert!(!leases.holds(7, 4, Instant::now()));
        let short = Leases::default();
        assert!(short.grant(7, 2, Duration::ZERO));
        assert!(short.grant(7, 3, lease), "an expired grant blocks nothing");
        // The primary the grant names is not held up at a new epoch.
        let own = Leases::default();
        assert!(own.grant(7, ME, lease));
        own.renew(ME, 7, 9, Instant::now() + lease);
        assert!(own.holds(7, 9, Instant::now()));
    }
}
