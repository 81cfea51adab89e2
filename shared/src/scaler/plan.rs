//! One round of the Scaler: the passes in the order of the module documentation, the
//! partitions they claim and the slots they use.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::load::{WindowLoad, covered_window, latest};
use super::{
    MoveReason, PartitionLoad, RunningOp, ScalerAction, ScalerConfig, ScalerInput, ScalerPlan,
    SplitChildren, SplitReason, TableScaling, capacity_completion_seconds,
};
use crate::model::{
    CapacityMode, NodeId, NodeStatus, Partition, PartitionId, PartitionStatus, Table, TableId,
    TableStatus,
};
use crate::placement::partition_count;
use crate::rebalance::{RebalanceConfig, plan_rebalance};

/// Slots taken by running and planned operations, against the configured limits.
#[derive(Debug, Default)]
struct Budget {
    per_node: BTreeMap<NodeId, usize>,
    migrations: usize,
    in_place: usize,
}

impl Budget {
    fn from_running(running: &[RunningOp]) -> Self {
        let mut budget = Budget::default();
        for op in running {
            match *op {
                RunningOp::Move { from, to, .. } => budget.take_migration(from, to),
                RunningOp::Split { .. } | RunningOp::Merge { .. } => budget.in_place += 1,
                RunningOp::Other { .. } => {}
            }
        }
        budget
    }

    fn migration_fits(&self, cfg: &ScalerConfig, from: NodeId, to: NodeId) -> bool {
        let node_fits =
            |n| self.per_node.get(&n).copied().unwrap_or(0) < cfg.max_migrations_per_node;
        self.migrations < cfg.max_migrations_per_cluster && node_fits(from) && node_fits(to)
    }

    fn take_migration(&mut self, from: NodeId, to: NodeId) {
        self.migrations += 1;
        for n in [from, to] {
            *self.per_node.entry(n).or_default() += 1;
        }
    }
}

/// A split or merge waiting for a slot, ranked by tier then pressure.
struct InPlace {
    tier: u8,
    pressure: f64,
    action: ScalerAction,
}

/// What moving a hot child needs, or why it is not planned.
enum ChildMove {
    Planned(ScalerAction),
    Deferred,
    Settled,
}

/// The planning state of one round.
pub(super) struct Round<'a> {
    input: &'a ScalerInput<'a>,
    cfg: &'a ScalerConfig,
    /// Partitions with a running operation, a non-HEALTHY status, or an action planned.
    claimed: BTreeSet<PartitionId>,
    budget: Budget,
    /// Partition-count change per table of running splits (+1) and merges (-1).
    running_delta: BTreeMap<TableId, isize>,
    /// The same for the splits and merges planned this round.
    planned_delta: BTreeMap<TableId, isize>,
    /// Merges each SCALING table wanted and could have had but for the limits (or is
    /// bringing together by co-location steps).
    merges_wanted: BTreeMap<TableId, usize>,
    /// Whether some SCALING table still has more partitions than it needs: scale-out
    /// moves wait, so as not to undo the co-location of the pairs to merge.
    merging: bool,
    /// Latest load of each participating node's primaries, updated by planned moves.
    node_load: BTreeMap<NodeId, f64>,
    /// Primaries each node leads (committed).
    primaries: BTreeMap<NodeId, usize>,
    /// Partitions of each table (committed).
    committed: BTreeMap<TableId, usize>,
    plan: ScalerPlan,
}

impl<'a> Round<'a> {
    pub(super) fn new(input: &'a ScalerInput<'a>, cfg: &'a ScalerConfig) -> Self {
        let state = input.state;
        let mut claimed: BTreeSet<PartitionId> = input
            .running
            .iter()
            .flat_map(RunningOp::partitions)
            .collect();
        let unsettled = state
            .partitions()
            .filter(|p| p.status != PartitionStatus::Healthy);
        claimed.extend(unsettled.map(|p| p.partition_id));
        let mut running_delta: BTreeMap<TableId, isize> = BTreeMap::new();
        for op in input.running {
            let (pid, delta) = match *op {
                RunningOp::Split { partition_id } => (partition_id, 1),
                RunningOp::Merge { left, .. } => (left, -1),
                _ => continue,
            };
            if let Some(p) = state.partition(pid) {
                *running_delta.entry(p.table_id).or_default() += delta;
            }
        }
        let mut round = Round {
            input,
            cfg,
            claimed,
            budget: Budget::from_running(input.running),
            running_delta,
            planned_delta: BTreeMap::new(),
            merges_wanted: BTreeMap::new(),
            merging: false,
            node_load: BTreeMap::new(),
            primaries: BTreeMap::new(),
            committed: BTreeMap::new(),
            plan: ScalerPlan::default(),
        };
        round.node_load = round.node_loads();
        for p in state.partitions() {
            *round.primaries.entry(p.primary_node_id).or_default() += 1;
            *round.committed.entry(p.table_id).or_default() += 1;
        }
        round
    }

    pub(super) fn run(mut self) -> ScalerPlan {
        self.plan_hot_and_large();
        self.plan_capacity_splits();
        if self.cfg.merge_cold_partitions {
            self.plan_merges();
        }
        self.plan_child_moves();
        if !self.merging {
            self.plan_scale_out();
        }
        self.plan.scaling = self.scaling_progress();
        self.plan
    }

    // ---- Facts -------------------------------------------------------------------

    fn load(&self, pid: PartitionId) -> Option<&PartitionLoad> {
        self.input.loads.get(&pid)
    }

    fn window(&self, pid: PartitionId) -> Option<WindowLoad> {
        let samples = &self.load(pid)?.samples;
        let (window, gap) = (self.cfg.hot_window_ms, self.cfg.max_sample_gap_ms);
        covered_window(samples, self.input.now_ms, window, gap)
    }

    /// The latest load of a partition (0 without a sample in the hot window).
    fn latest(&self, pid: PartitionId) -> f64 {
        self.fresh(pid, self.cfg.hot_window_ms).unwrap_or(0.0)
    }

    fn fresh(&self, pid: PartitionId, max_age_ms: u64) -> Option<f64> {
        latest(&self.load(pid)?.samples, self.input.now_ms, max_age_ms)
    }

    fn size(&self, pid: PartitionId) -> u64 {
        self.load(pid).map_or(0, |l| l.size_bytes)
    }

    /// Nodes that may take part in an operation: HEALTHY and reachable.
    fn usable(&self, n: NodeId) -> bool {
        let healthy = self
            .input
            .state
            .node(n)
            .is_some_and(|n| n.status == NodeStatus::Healthy);
        healthy && !self.input.unreachable.contains(&n)
    }

    /// Whether an operation may start on `p` now (see the module documentation).
    fn eligible(&self, p: &Partition) -> bool {
        let table_ok = self
            .input
            .state
            .table(p.table_id)
            .is_some_and(|t| matches!(t.status, TableStatus::Active | TableStatus::Scaling));
        table_ok
            && !self.claimed.contains(&p.partition_id)
            && p.is_ready()
            && p.all_nodes().all(|n| self.usable(n))
    }

    fn eligible_id(&self, pid: PartitionId) -> bool {
        self.input
            .state
            .partition(pid)
            .is_some_and(|p| self.eligible(p))
    }

    /// Committed partitions of a table.
    fn committed(&self, table_id: TableId) -> usize {
        self.committed.get(&table_id).copied().unwrap_or(0)
    }

    /// Partitions of a table counting running and planned splits and merges.
    fn effective_count(&self, table_id: TableId) -> usize {
        let now = self.committed(table_id) as isize;
        let delta = |m: &BTreeMap<TableId, isize>| m.get(&table_id).copied().unwrap_or(0);
        (now + delta(&self.running_delta) + delta(&self.planned_delta)).max(0) as usize
    }

    /// The partition count `table`'s capacity needs.
    fn target(&self, table: &Table) -> usize {
        partition_count(&table.capacity, &self.cfg.placement) as usize
    }

    /// What one partition of `table` may carry when it has `partitions` partitions.
    fn partition_capacity(&self, table: &Table, partitions: usize) -> f64 {
        match table.capacity.mode {
            CapacityMode::Provisioned => {
                let units = table.capacity.read_units + table.capacity.write_units;
                units as f64 / partitions.max(1) as f64
            }
            CapacityMode::OnDemand => self.cfg.on_demand_partition_ops_limit as f64,
        }
    }

    /// The load above which a partition of `table` is hot.
    fn hot_threshold(&self, table: &Table) -> f64 {
        let capacity = self.partition_capacity(table, self.committed(table.table_id));
        let threshold = match table.capacity.mode {
            CapacityMode::Provisioned => capacity * self.cfg.hot_threshold_percent as f64 / 100.0,
            CapacityMode::OnDemand => capacity,
        };
        threshold.max(self.cfg.hot_min_ops_per_sec as f64)
    }

    fn node_loads(&self) -> BTreeMap<NodeId, f64> {
        let state = self.input.state;
        let mut loads: BTreeMap<NodeId, f64> = state
            .nodes()
            .filter(|n| self.usable(n.node_id))
            .map(|n| (n.node_id, 0.0))
            .collect();
        for p in state.partitions() {
            if let Some(load) = loads.get_mut(&p.primary_node_id) {
                *load += self.latest(p.partition_id);
            }
        }
        loads
    }

    // ---- Splits and merges -------------------------------------------------------

    /// Whether a table may grow by one more partition.
    fn below_partition_cap(&self, table_id: TableId) -> bool {
        self.effective_count(table_id) < self.cfg.max_partitions_per_table
    }

    fn hot_or_large(&self, p: &Partition, table: &Table) -> Option<InPlace> {
        let split = |reason, tier, pressure| InPlace {
            tier,
            pressure,
            action: ScalerAction::Split {
                partition_id: p.partition_id,
                expected_epoch: p.epoch,
                reason,
            },
        };
        let threshold = self.hot_threshold(table);
        if let Some(w) = self.window(p.partition_id).filter(|w| w.min > threshold) {
            let reason = SplitReason::Hot {
                sustained_ops_per_sec: w.min,
                threshold_ops_per_sec: threshold,
            };
            return Some(split(reason, 0, w.min / threshold));
        }
        let (size, max) = (self.size(p.partition_id), self.cfg.max_partition_size_bytes);
        (size > max).then(|| {
            let reason = SplitReason::Large {
                size_bytes: size,
                max_size_bytes: max,
            };
            split(reason, 1, size as f64 / max as f64)
        })
    }

    fn plan_hot_and_large(&mut self) {
        let state = self.input.state;
        let mut candidates: Vec<InPlace> = state
            .partitions()
            .filter(|p| p.range.low < p.range.high && self.eligible(p))
            .filter_map(|p| self.hot_or_large(p, state.table(p.table_id)?))
            .collect();
        candidates.sort_by(|a, b| {
            a.tier
                .cmp(&b.tier)
                .then(b.pressure.total_cmp(&a.pressure))
                .then(a.action.partitions()[0].cmp(&b.action.partitions()[0]))
        });
        for c in candidates {
            let table_id = self.table_of(c.action.partitions()[0]);
            if table_id.is_some_and(|t| self.below_partition_cap(t)) {
                self.admit_in_place(c.action);
            }
        }
    }

    fn table_of(&self, pid: PartitionId) -> Option<TableId> {
        self.input.state.partition(pid).map(|p| p.table_id)
    }

    /// Plans a split or merge if a slot is free (otherwise counts it as deferred).
    fn admit_in_place(&mut self, action: ScalerAction) -> bool {
        if self.budget.in_place >= self.cfg.max_in_place_ops_per_cluster {
            self.plan.deferred += 1;
            return false;
        }
        self.budget.in_place += 1;
        let pids = action.partitions();
        if let Some(table_id) = self.table_of(pids[0]) {
            let delta = if pids.len() == 2 { -1 } else { 1 };
            *self.planned_delta.entry(table_id).or_default() += delta;
        }
        self.claimed.extend(pids);
        self.plan.actions.push(action);
        true
    }

    /// Tables that may change partition count for capacity, by id.
    fn capacity_tables(&self, status: &[TableStatus]) -> Vec<&'a Table> {
        let mut tables: Vec<&Table> = self
            .input
            .state
            .tables()
            .filter(|t| status.contains(&t.status))
            .collect();
        tables.sort_by_key(|t| t.table_id);
        tables
    }

    fn plan_capacity_splits(&mut self) {
        for table in self.capacity_tables(&[TableStatus::Active, TableStatus::Scaling]) {
            let target = self.target(table).min(self.cfg.max_partitions_per_table);
            let mut parts: Vec<&Partition> = self
                .input
                .state
                .partitions_of(table.table_id)
                .into_iter()
                .filter(|p| p.range.low < p.range.high && self.eligible(p))
                .collect();
            // Busiest, then largest, then widest first: the split relieves the most,
            // and without metrics the ranges stay even.
            parts.sort_by(|a, b| {
                let (la, lb) = (self.latest(a.partition_id), self.latest(b.partition_id));
                lb.total_cmp(&la)
                    .then(self.size(b.partition_id).cmp(&self.size(a.partition_id)))
                    .then((b.range.high - b.range.low).cmp(&(a.range.high - a.range.low)))
                    .then(a.partition_id.cmp(&b.partition_id))
            });
            for p in parts {
                let partitions = self.effective_count(table.table_id);
                if partitions >= target {
                    break;
                }
                let reason = SplitReason::Capacity { partitions, target };
                let action = ScalerAction::Split {
                    partition_id: p.partition_id,
                    expected_epoch: p.epoch,
                    reason,
                };
                if !self.admit_in_place(action) {
                    break;
                }
            }
        }
    }

    /// Whether two adjacent partitions are cold and small enough to merge (wherever
    /// their copies are): `Ok(Some(combined load))`, `Ok(None)` when not, `Err(())`
    /// while either's load is not yet observed over a covered window (after a leader
    /// change, say): then the merge may still come.
    fn mergeable(
        &self,
        table: &Table,
        target: usize,
        l: &Partition,
        r: &Partition,
    ) -> Result<Option<f64>, ()> {
        let adjacent = l.range.high.checked_add(1) == Some(r.range.low);
        if !adjacent {
            return Ok(None);
        }
        let (Some(lw), Some(rw)) = (self.window(l.partition_id), self.window(r.partition_id))
        else {
            return Err(());
        };
        let load = lw.max + rw.max;
        let max_load =
            self.partition_capacity(table, target) * self.cfg.merge_max_load_percent as f64 / 100.0;
        let size = self
            .size(l.partition_id)
            .saturating_add(self.size(r.partition_id));
        // The percentage is below 100, so the product fits back in a u64.
        let max_size = (u128::from(self.cfg.max_partition_size_bytes)
            * u128::from(self.cfg.merge_max_size_percent)
            / 100) as u64;
        Ok((load <= max_load && size <= max_size).then_some(load))
    }

    /// Merges of cold adjacent pairs of SCALING tables above their target count, the
    /// pairs covering the narrowest range first, pairs at even positions first (so that
    /// the ranges stay even, as the splits left them: the first with the second, the
    /// third with the fourth...), then those needing the fewest co-location steps,
    /// then the coldest. A pair held
    /// by the same nodes merges; any other gets one co-location step per round: the
    /// right partition's primary role handed to the left's primary when they hold the
    /// same nodes, else one of its copies moved onto a node of the left one.
    fn plan_merges(&mut self) {
        for table in self.capacity_tables(&[TableStatus::Scaling]) {
            let target = self.target(table);
            if self.effective_count(table.table_id) <= target {
                continue;
            }
            self.merging = true;
            let parts = self.input.state.partitions_of(table.table_id);
            let mut unobserved = 0;
            let mut pairs: Vec<MergePair<'_>> = Vec::new();
            for (i, w) in parts.windows(2).enumerate() {
                let width = w[1].range.high - w[0].range.low;
                let steps = co_location_steps(w[0], w[1]);
                match self.mergeable(table, target, w[0], w[1]) {
                    Ok(Some(load)) => pairs.push(MergePair {
                        rank: (width, i % 2 == 1, steps),
                        load,
                        left: w[0],
                        right: w[1],
                    }),
                    Ok(None) => {}
                    Err(()) => unobserved += 1,
                }
            }
            if unobserved > 0 {
                // Their load is still to be observed: the table is not done merging.
                *self.merges_wanted.entry(table.table_id).or_default() += unobserved;
            }
            pairs.sort_by(|a, b| {
                (a.rank.cmp(&b.rank))
                    .then(a.load.total_cmp(&b.load))
                    .then(a.left.range.low.cmp(&b.left.range.low))
            });
            // Pairs being brought together count towards the merges still to come.
            let mut gathering = 0;
            for pair in pairs {
                let (l, r, steps) = (pair.left, pair.right, pair.rank.2);
                let partitions = self.effective_count(table.table_id);
                if partitions <= target + gathering {
                    break;
                }
                let wanted = |round: &mut Self| {
                    *round.merges_wanted.entry(table.table_id).or_default() += 1;
                };
                let claimed = |p: &Partition| self.claimed.contains(&p.partition_id);
                if claimed(l) || claimed(r) || !self.eligible_id_unclaimed(l, r) {
                    // A co-location step (or another operation) still running on it:
                    // the pair's merge is still to come.
                    let running = |p: &Partition| {
                        let pid = p.partition_id;
                        self.input
                            .running
                            .iter()
                            .any(|op| op.partitions().contains(&pid))
                    };
                    if running(l) || running(r) {
                        wanted(self);
                    }
                    continue;
                }
                if steps == 0 {
                    let action = ScalerAction::Merge {
                        left: l.partition_id,
                        right: r.partition_id,
                        expected_epochs: (l.epoch, r.epoch),
                        partitions,
                        target,
                    };
                    if !self.admit_in_place(action) {
                        wanted(self);
                    }
                    continue;
                }
                gathering += 1;
                wanted(self);
                match self.co_location_step(l, r) {
                    Some(action @ ScalerAction::Move { .. }) => {
                        self.claimed.insert(l.partition_id);
                        self.take_move(action);
                    }
                    Some(action) => {
                        self.claimed.extend([l.partition_id, r.partition_id]);
                        self.plan.actions.push(action);
                    }
                    None => self.plan.deferred += 1,
                }
            }
        }
    }

    /// Whether both partitions of a pair may take part in an operation now, ignoring
    /// claims (checked apart).
    fn eligible_id_unclaimed(&self, l: &Partition, r: &Partition) -> bool {
        let usable = |p: &Partition| {
            let table_ok = self
                .input
                .state
                .table(p.table_id)
                .is_some_and(|t| t.status == TableStatus::Scaling);
            table_ok && p.is_ready() && p.all_nodes().all(|n| self.usable(n))
        };
        usable(l) && usable(r)
    }

    /// The next step bringing `r`'s copies onto `l`'s nodes: a primary hand-over when
    /// they hold the same nodes, else the move of one copy of `r` on a node outside `l`
    /// to a node of `l` without one (same zone first, replicas before the primary),
    /// within the migration limits; `None` when the limits leave no room this round.
    fn co_location_step(&self, l: &Partition, r: &Partition) -> Option<ScalerAction> {
        let lset: BTreeSet<NodeId> = l.all_nodes().collect();
        let rset: BTreeSet<NodeId> = r.all_nodes().collect();
        if lset == rset {
            return Some(ScalerAction::HandOverPrimary {
                partition_id: r.partition_id,
                from: r.primary_node_id,
                to: l.primary_node_id,
                expected_epoch: r.epoch,
            });
        }
        let state = self.input.state;
        let zone = |n: NodeId| state.node(n).map(|n| n.zone.clone());
        let mut options: Vec<(bool, bool, NodeId, NodeId)> = rset
            .difference(&lset)
            .flat_map(|&from| lset.difference(&rset).map(move |&to| (from, to)))
            .filter(|&(from, to)| self.budget.migration_fits(self.cfg, from, to))
            .map(|(from, to)| (zone(from) != zone(to), from == r.primary_node_id, from, to))
            .collect();
        options.sort();
        let &(_, _, from, to) = options.first()?;
        Some(ScalerAction::Move {
            partition_id: r.partition_id,
            from,
            to,
            expected_epoch: r.epoch,
            reason: MoveReason::CoLocate {
                with: l.partition_id,
            },
        })
    }

    // ---- Migrations --------------------------------------------------------------

    fn plan_child_moves(&mut self) {
        let mut pairs: Vec<SplitChildren> = self.input.hot_split_children.to_vec();
        pairs.sort();
        pairs.dedup();
        let busiest = |c: &SplitChildren| {
            let l = self.latest(c.left).max(self.latest(c.right));
            Reverse(OrdF64(l))
        };
        pairs.sort_by_key(|c| (busiest(c), *c));
        for pair in pairs {
            match self.child_move(&pair) {
                ChildMove::Planned(action) => {
                    self.plan.settled_children.push(pair);
                    self.take_move(action);
                }
                ChildMove::Deferred => self.plan.deferred += 1,
                ChildMove::Settled => self.plan.settled_children.push(pair),
            }
        }
    }

    /// The move of the busier child of a hot split, if one is still worth it.
    fn child_move(&self, pair: &SplitChildren) -> ChildMove {
        let state = self.input.state;
        let (Some(l), Some(r)) = (state.partition(pair.left), state.partition(pair.right)) else {
            return ChildMove::Settled;
        };
        let expired =
            self.input.now_ms.saturating_sub(pair.split_at_ms) >= self.cfg.child_move_deadline_ms;
        let deleting = state
            .table(l.table_id)
            .is_none_or(|t| t.status == TableStatus::Deleting);
        if expired || deleting {
            return ChildMove::Settled;
        }
        // Children observed only before the first report: wait for their load.
        let gap = self.cfg.max_sample_gap_ms;
        if self.fresh(l.partition_id, gap).is_none() && self.fresh(r.partition_id, gap).is_none() {
            return ChildMove::Deferred;
        }
        let key = |p: &Partition| {
            (
                OrdF64(self.latest(p.partition_id)),
                Reverse(self.size(p.partition_id)),
            )
        };
        let (child, sibling) = if key(r) > key(l) { (r, l) } else { (l, r) };
        if !self.eligible(child) {
            return ChildMove::Deferred;
        }
        let load = self.latest(child.partition_id);
        let from = child.primary_node_id;
        let source = self.node_load.get(&from).copied().unwrap_or(0.0);
        let targets = self.child_targets(child, load, source);
        if targets.is_empty() {
            return ChildMove::Settled;
        }
        let Some(&to) = targets
            .iter()
            .find(|&&to| self.budget.migration_fits(self.cfg, from, to))
        else {
            return ChildMove::Deferred;
        };
        ChildMove::Planned(ScalerAction::Move {
            partition_id: child.partition_id,
            from,
            to,
            expected_epoch: child.epoch,
            reason: MoveReason::HotChild {
                sibling: sibling.partition_id,
                ops_per_sec: load,
            },
        })
    }

    /// Nodes the primary copy of `child` may move to, least loaded first: usable, not a
    /// member, the partition's zones not fewer, and the busier node's load lowered.
    fn child_targets(&self, child: &Partition, load: f64, source_load: f64) -> Vec<NodeId> {
        let state = self.input.state;
        let zone = |n: NodeId| state.node(n).map(|n| n.zone.as_str());
        let zones = |members: &mut dyn Iterator<Item = NodeId>| {
            members.map(zone).collect::<BTreeSet<_>>().len()
        };
        let before = zones(&mut child.all_nodes());
        let mut targets: Vec<(OrdF64, usize, usize, NodeId)> = self
            .node_load
            .iter()
            .filter(|(n, _)| !child.all_nodes().any(|m| m == **n))
            .filter(|(_, l)| **l + load < source_load)
            .filter(|(n, _)| {
                let mut after = child.replica_node_ids.iter().copied().chain([**n]);
                zones(&mut after) >= before
            })
            .map(|(n, l)| {
                let node = state.node(*n);
                let held = node.map_or(0, |n| n.partition_ids.len());
                let primaries = self.primaries.get(n).copied().unwrap_or(0);
                (OrdF64(*l), primaries, held, *n)
            })
            .collect();
        targets.sort();
        targets.into_iter().map(|t| t.3).collect()
    }

    /// Records a planned migration: its slots, its partition, and the load it shifts.
    fn take_move(&mut self, action: ScalerAction) {
        let ScalerAction::Move {
            partition_id,
            from,
            to,
            ..
        } = action
        else {
            return;
        };
        self.budget.take_migration(from, to);
        self.claimed.insert(partition_id);
        let load = self.latest(partition_id);
        if let Some(l) = self.node_load.get_mut(&from) {
            *l -= load;
        }
        if let Some(l) = self.node_load.get_mut(&to) {
            *l += load;
        }
        self.plan.actions.push(action);
    }

    /// The scale-out settings of this round: no tolerance while a usable node holds
    /// nothing (it just joined, or came back after a failure and owns nothing until the
    /// Scaler gives it work), so that it is filled up to the even share even where
    /// the tolerance band reaches down to zero.
    fn rebalance_config(&self) -> RebalanceConfig {
        let state = self.input.state;
        let empty = |n: &NodeId| state.node(*n).is_some_and(|n| n.partition_ids.is_empty());
        let tolerance = if self.node_load.keys().any(empty) {
            0
        } else {
            self.cfg.rebalance.tolerance
        };
        RebalanceConfig {
            tolerance,
            ..self.cfg.rebalance.clone()
        }
    }

    fn plan_scale_out(&mut self) {
        // Nodes whose counts are about to change by migrations the planner cannot see.
        let running = self.input.running.iter().filter_map(|op| match *op {
            RunningOp::Move { from, to, .. } => Some([from, to]),
            _ => None,
        });
        let planned = self
            .plan
            .actions
            .iter()
            .filter_map(|a| a.migration().map(|(f, t)| [f, t]));
        let in_flight: BTreeSet<NodeId> = running.chain(planned).flatten().collect();
        let plan = plan_rebalance(
            self.input.state,
            &self.rebalance_config(),
            self.input.unreachable,
        );
        // The planner leaves unreachable nodes out of the counts but may still move a
        // partition with a copy on one: such partitions wait, like any other action.
        for m in &plan.moves {
            let touches_in_flight = in_flight.contains(&m.from) || in_flight.contains(&m.to);
            if !self.eligible_id(m.partition_id)
                || touches_in_flight
                || !self.budget.migration_fits(self.cfg, m.from, m.to)
            {
                self.plan.deferred += 1;
                continue;
            }
            self.take_move(ScalerAction::Move {
                partition_id: m.partition_id,
                from: m.from,
                to: m.to,
                expected_epoch: m.expected_epoch,
                reason: MoveReason::Rebalance,
            });
        }
        if !plan.moves.is_empty() {
            self.plan.deferred += plan.primary_moves.len();
            return;
        }
        for h in &plan.primary_moves {
            if !self.eligible_id(h.partition_id) {
                self.plan.deferred += 1;
                continue;
            }
            self.claimed.insert(h.partition_id);
            self.plan.actions.push(ScalerAction::HandOverPrimary {
                partition_id: h.partition_id,
                from: h.from,
                to: h.to,
                expected_epoch: h.expected_epoch,
            });
        }
    }

    // ---- Progress ------------------------------------------------------------------

    fn scaling_progress(&self) -> Vec<TableScaling> {
        let est = self.cfg.op_estimates();
        let in_place_of = |table_id: TableId| {
            let running = self.input.running.iter().filter(|op| {
                matches!(op, RunningOp::Split { .. } | RunningOp::Merge { .. })
                    && self.table_of(op.partitions()[0]) == Some(table_id)
            });
            let planned =
                self.plan.actions.iter().filter(|a| {
                    a.is_in_place() && self.table_of(a.partitions()[0]) == Some(table_id)
                });
            running.count() + planned.count()
        };
        self.capacity_tables(&[TableStatus::Scaling])
            .into_iter()
            .map(|table| {
                let partitions = self.committed(table.table_id);
                let target = self.target(table).min(self.cfg.max_partitions_per_table);
                let effective = self.effective_count(table.table_id);
                let in_flight = in_place_of(table.table_id);
                let splits_remaining = target.saturating_sub(effective);
                // Overlapping pairs may each have been wanted: never more than needed.
                let merges_remaining = self
                    .merges_wanted
                    .get(&table.table_id)
                    .copied()
                    .unwrap_or(0)
                    .min(effective.saturating_sub(target));
                let goal = if merges_remaining > 0 {
                    effective - merges_remaining
                } else {
                    effective + splits_remaining
                };
                TableScaling {
                    table_id: table.table_id,
                    partitions,
                    target,
                    in_flight,
                    splits_remaining,
                    merges_remaining,
                    complete: in_flight == 0 && splits_remaining == 0 && merges_remaining == 0,
                    estimated_completion_seconds: capacity_completion_seconds(
                        effective, goal, in_flight, &est,
                    ),
                }
            })
            .collect()
    }
}

/// A cold adjacent pair that may merge, with its rank: (width of the merged range, at an
/// odd position, co-location steps), lowest first.
struct MergePair<'p> {
    rank: (u64, bool, usize),
    load: f64,
    left: &'p Partition,
    right: &'p Partition,
}

/// Steps to bring `r`'s copies onto `l`'s nodes (for ranking pairs): one move per copy
/// of `r` on a node outside `l`, and a primary hand-over if the primaries differ.
fn co_location_steps(l: &Partition, r: &Partition) -> usize {
    co_location_moves(l, r) + usize::from(l.primary_node_id != r.primary_node_id)
}

/// Copies of `r` on nodes that hold no copy of `l`: the moves that bring them together.
pub(super) fn co_location_moves(l: &Partition, r: &Partition) -> usize {
    r.all_nodes()
        .filter(|n| !l.all_nodes().any(|m| m == *n))
        .count()
}

/// An `f64` ordered by `total_cmp`, for sort keys (loads are finite here).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF64(f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
