//! The leader's Scaler for `hot-split`, over a model of per-partition load. netsim has
//! no data plane, so load is modelled: each starting partition serves a drawn base load
//! spread evenly over its key range, and a hot spot (`make_hot`) adds load on a drawn
//! quarter of one partition's range; a partition's load is what its key range covers
//! (so a split's children share their parent's load as their ranges do).
//!
//! The decisions are **the real `shared::scaler::plan_scaler`** (default
//! `ScalerConfig`), on the leader's replica, every planning interval, with the load
//! samples gathered the way the agent's `control::scaler::Scaler` keeps them (its loop
//! is restated here: the agent's type is bound to openraft's client and the data
//! plane). A split is driven as `data::plane::operations` drives one, through the real
//! commands: `StartOperation` (kind Split) from the leader, then from the partition's
//! primary a drawn staging time, `AdvanceOperation` to Fencing, `SplitPartition` at the
//! range's midpoint (what `choose_split_point` gives evenly spread keys), and
//! `FinishOperation` with the write pause (fence to split committed). A move (the hot
//! split's busier child, or a scale-out move) is handed to the move executor of
//! `rebalance.rs`. Primary hand-overs and merges are not carried out (counted).

use std::collections::{BTreeMap, BTreeSet};

use shared::command::{MetaCommand, MetaOutcome, MetaResult};
use shared::model::{
    KeyRange, NodeId, NodeStatus, OperationId, OperationKind, OperationStatus, OperationStep,
    PartitionId, TableId,
};
use shared::rebalance::ReplicaMove;
use shared::scaler::{
    CheckedScalerConfig, LoadSample, MoveReason, PartitionLoad, ScalerAction, ScalerInput,
    SplitChildren, SplitReason, plan_scaler, running_ops,
};
use shared::split::range_midpoint;
use shared::state::MetaState;

use super::Simulation;
use super::log::Then;
use crate::config::{FILL_MAX_US, FILL_MIN_US};
use crate::event::Event;
use crate::time::{Micros, millis};

/// Load samples kept per partition (the agent's `MAX_SAMPLES_PER_PARTITION`).
const MAX_SAMPLES_PER_PARTITION: usize = 256;
/// Lowest base load of a partition, in percent of its share of its table's capacity.
pub const BASE_LOAD_MIN_PERCENT: u64 = 20;
/// Highest base load of a partition, in percent of its share.
pub const BASE_LOAD_MAX_PERCENT: u64 = 60;
/// A hot spot covers this fraction of its partition's range (1 / this).
const HOT_SPOT_FRACTION: u64 = 4;
/// Who the Scaler's operations are recorded as requested by (the agent's principal).
const REQUESTED_BY: &str = "scaler";

/// Load over a key range, spread evenly over it.
#[derive(Debug, Clone, Copy)]
struct Segment {
    range: KeyRange,
    ops_per_sec: f64,
}

/// The modelled load: segments of every table's key space.
#[derive(Debug, Default)]
pub struct LoadModel {
    segments: BTreeMap<TableId, Vec<Segment>>,
}

fn width(r: &KeyRange) -> f64 {
    (r.high as f64 - r.low as f64) + 1.0
}

fn overlap(a: &KeyRange, b: &KeyRange) -> f64 {
    let (low, high) = (a.low.max(b.low), a.high.min(b.high));
    if low > high {
        0.0
    } else {
        (high as f64 - low as f64) + 1.0
    }
}

impl LoadModel {
    /// The load of `range` of `table`: what its segments put on it.
    pub fn load(&self, table: TableId, range: &KeyRange) -> f64 {
        self.segments.get(&table).map_or(0.0, |segments| {
            segments
                .iter()
                .map(|s| s.ops_per_sec * overlap(&s.range, range) / width(&s.range))
                .sum()
        })
    }

    fn add(&mut self, table: TableId, range: KeyRange, ops_per_sec: f64) {
        self.segments
            .entry(table)
            .or_default()
            .push(Segment { range, ops_per_sec });
    }
}

/// One split being driven.
#[derive(Debug, Clone, Copy)]
struct SplitDrive {
    partition_id: PartitionId,
    hot: bool,
    operation: Option<OperationId>,
    step: SplitStep,
    fenced_at: Micros,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitStep {
    Starting,
    Staging,
    Fencing,
    Committing,
    Finishing,
}

/// A split that committed.
#[derive(Debug, Clone, Copy)]
pub struct SplitDone {
    /// The split partition.
    pub parent: PartitionId,
    /// Its children.
    pub children: (PartitionId, PartitionId),
    /// When `SplitPartition` committed.
    pub at: Micros,
    /// Writes fenced, from the Fencing step's commit to the split's.
    pub write_pause: Micros,
}

/// A move the Scaler planned for the busier child of a hot split.
#[derive(Debug, Clone, Copy)]
pub struct ChildMove {
    /// The child.
    pub partition_id: PartitionId,
    /// Its primary's node.
    pub from: NodeId,
    /// Where it goes.
    pub to: NodeId,
    /// Its load when planned.
    pub ops_per_sec: f64,
    /// When planned.
    pub at: Micros,
}

/// The Scaler's memory and figures.
#[derive(Debug)]
pub struct SimScaler {
    config: CheckedScalerConfig,
    /// The modelled load.
    pub model: LoadModel,
    /// Whether it still plans (`stop_scaler` ends that; driven splits go on).
    planning: bool,
    loads: BTreeMap<PartitionId, PartitionLoad>,
    hot_splits: BTreeMap<OperationId, PartitionId>,
    hot_children: Vec<SplitChildren>,
    drives: BTreeMap<u64, SplitDrive>,
    next_id: u64,
    /// Rounds planned.
    pub rounds: usize,
    /// Splits committed.
    pub splits: Vec<SplitDone>,
    /// Splits given up.
    pub failed_splits: usize,
    /// Hot-child moves planned.
    pub child_moves: Vec<ChildMove>,
    /// Scale-out moves planned.
    pub rebalance_moves: usize,
    /// Primary hand-overs and merges planned but not carried out here.
    pub skipped_actions: usize,
    /// When the first hot split was planned.
    pub hot_planned_at: Option<Micros>,
}

impl SimScaler {
    /// The Scaler with every partition of `state` at a drawn base load.
    fn new(state: &MetaState, rng: &mut crate::rng::SimRng) -> Self {
        let mut model = LoadModel::default();
        for table in state.tables() {
            let parts = state.partitions_of(table.table_id);
            let units = table.capacity.read_units + table.capacity.write_units;
            let share = units as f64 / parts.len().max(1) as f64;
            for p in parts {
                let percent = rng.between(BASE_LOAD_MIN_PERCENT, BASE_LOAD_MAX_PERCENT);
                model.add(table.table_id, p.range, share * percent as f64 / 100.0);
            }
        }
        SimScaler {
            config: CheckedScalerConfig::default(),
            model,
            planning: true,
            loads: BTreeMap::new(),
            hot_splits: BTreeMap::new(),
            hot_children: Vec::new(),
            drives: BTreeMap::new(),
            next_id: 0,
            rounds: 0,
            splits: Vec::new(),
            failed_splits: 0,
            child_moves: Vec::new(),
            rebalance_moves: 0,
            skipped_actions: 0,
            hot_planned_at: None,
        }
    }

    /// Time between two rounds.
    pub fn interval(&self) -> Micros {
        millis(self.config.get().planning_interval_ms)
    }

    /// Whether no split is being driven.
    pub fn idle(&self) -> bool {
        self.drives.is_empty()
    }
}

impl Simulation {
    /// Starts the Scaler (and the move executor it hands moves to), every partition at a
    /// drawn base load.
    pub fn enable_scaler(&mut self) {
        let scaler = SimScaler::new(self.log.state(), &mut self.rng);
        let first = self.now() + scaler.interval();
        self.scaler = Some(scaler);
        self.enable_move_executor();
        self.queue.push(first, Event::Scale);
    }

    /// The Scaler, once enabled.
    pub fn scaler(&self) -> Option<&SimScaler> {
        self.scaler.as_ref()
    }

    /// The Scaler plans no more (splits being driven and queued moves go on).
    pub fn stop_scaler(&mut self) {
        if let Some(s) = self.scaler.as_mut() {
            s.planning = false;
        }
    }

    /// Multiplies the load of partition `pid` by `factor` from now on, the extra load on
    /// a drawn quarter of its key range. Returns its load before and after.
    pub fn make_hot(&mut self, pid: PartitionId, factor: f64) -> Option<(f64, f64)> {
        let p = self.log.state().partition(pid)?.clone();
        let scaler = self.scaler.as_mut()?;
        let before = scaler.model.load(p.table_id, &p.range);
        let span = (p.range.high - p.range.low) / HOT_SPOT_FRACTION;
        let low = p.range.low + self.rng.between(0, p.range.high - p.range.low - span);
        let spot = KeyRange {
            low,
            high: low + span,
        };
        scaler.model.add(p.table_id, spot, before * (factor - 1.0));
        Some((before, scaler.model.load(p.table_id, &p.range)))
    }

    /// The modelled load of partition `pid` now.
    pub fn partition_load(&self, pid: PartitionId) -> f64 {
        let (Some(p), Some(s)) = (self.log.state().partition(pid), self.scaler.as_ref()) else {
            return 0.0;
        };
        s.model.load(p.table_id, &p.range)
    }

    /// One round of the Scaler, as the agent's `Scaler::step`: observe, plan, act.
    pub(super) fn on_scale(&mut self) {
        let Some(scaler) = self.scaler.as_ref() else {
            return;
        };
        let (interval, planning) = (scaler.interval(), scaler.planning);
        self.queue.push(self.now() + interval, Event::Scale);
        let Some(leader) = self.log.leader.filter(|l| self.agents[l].is_alive()) else {
            return;
        };
        if !planning {
            return;
        }
        let now = self.now();
        let now_ms = self.clock.unix_ms();
        let agent = &self.agents[&leader];
        let unreachable: BTreeSet<NodeId> = agent.not_alive_in_view();
        let scaler = self.scaler.as_mut().expect("enabled");
        let plan = agent.replica.read(|s| {
            // The primaries' reports: every partition led by a HEALTHY reachable node.
            let reports: Vec<(PartitionId, f64)> = s
                .partitions()
                .filter(|p| {
                    s.node(p.primary_node_id).is_some_and(|n| {
                        n.status == NodeStatus::Healthy && !unreachable.contains(&n.node_id)
                    })
                })
                .map(|p| (p.partition_id, scaler.model.load(p.table_id, &p.range)))
                .collect();
            record_loads(&mut scaler.loads, &reports, now_ms);
            note_finished_splits(scaler, s, now_ms);
            let running = running_ops(s);
            let input = ScalerInput {
                state: s,
                loads: &scaler.loads,
                running: &running,
                hot_split_children: &scaler.hot_children,
                unreachable: &unreachable,
                now_ms,
            };
            plan_scaler(&input, &scaler.config)
        });
        scaler.rounds += 1;
        let settled: BTreeSet<_> = plan.settled_children.iter().copied().collect();
        scaler.hot_children.retain(|c| !settled.contains(c));
        for action in plan.actions {
            self.act(leader, action, now);
        }
    }

    fn act(&mut self, leader: NodeId, action: ScalerAction, now: Micros) {
        let scaler = self.scaler.as_mut().expect("enabled");
        match action {
            ScalerAction::Split {
                partition_id,
                reason,
                ..
            } => {
                let hot = matches!(reason, SplitReason::Hot { .. });
                if hot {
                    scaler.hot_planned_at.get_or_insert(now);
                }
                scaler.next_id += 1;
                let id = scaler.next_id;
                scaler.drives.insert(
                    id,
                    SplitDrive {
                        partition_id,
                        hot,
                        operation: None,
                        step: SplitStep::Starting,
                        fenced_at: now,
                    },
                );
                let cmd = MetaCommand::StartOperation {
                    partition_id,
                    kind: OperationKind::Split { split_point: None },
                    requested_by: REQUESTED_BY.into(),
                    now_ms: self.clock.unix_ms(),
                };
                self.propose_then(leader, cmd, Some(Then::Split(id)));
            }
            ScalerAction::Move {
                partition_id,
                from,
                to,
                expected_epoch,
                reason,
            } => {
                match reason {
                    MoveReason::HotChild { ops_per_sec, .. } => {
                        scaler.child_moves.push(ChildMove {
                            partition_id,
                            from,
                            to,
                            ops_per_sec,
                            at: now,
                        })
                    }
                    // Co-location comes with capacity decreases, which no scenario makes.
                    MoveReason::Rebalance | MoveReason::CoLocate { .. } => {
                        scaler.rebalance_moves += 1
                    }
                }
                self.queue_moves([ReplicaMove {
                    partition_id,
                    from,
                    to,
                    expected_epoch,
                }]);
            }
            ScalerAction::HandOverPrimary { .. } | ScalerAction::Merge { .. } => {
                scaler.skipped_actions += 1;
            }
        }
    }

    /// Who drives a split of `pid`: its primary (from the log), or the leader.
    fn split_driver(&self, pid: PartitionId) -> Option<NodeId> {
        self.log
            .state()
            .partition(pid)
            .map(|p| p.primary_node_id)
            .filter(|n| self.agents.get(n).is_some_and(|a| a.is_alive()))
            .or(self.log.leader)
    }

    /// A split's command committed (or never will: `result` is `None`).
    pub(super) fn on_split_outcome(&mut self, id: u64, result: Option<&MetaResult>) {
        let Some(d) = self.scaler.as_mut().and_then(|s| s.drives.get_mut(&id)) else {
            return;
        };
        if let Some(Ok(MetaOutcome::OperationStarted { operation_id })) = result {
            d.operation = Some(*operation_id);
        }
        let drive = *d;
        let (Some(operation_id), Some(Ok(outcome))) = (drive.operation, result) else {
            return self.give_up_split(id);
        };
        let now = self.now();
        let now_ms = self.clock.unix_ms();
        let pid = drive.partition_id;
        let scaler = self.scaler.as_mut().expect("enabled");
        match drive.step {
            SplitStep::Starting => {
                if drive.hot {
                    scaler.hot_splits.insert(operation_id, pid);
                }
                scaler.drives.get_mut(&id).expect("driven").step = SplitStep::Staging;
                // The children's copies are staged here and on the replicas.
                let staging = self.rng.between(FILL_MIN_US, FILL_MAX_US);
                self.queue.push(now + staging, Event::SplitStaged(id));
            }
            SplitStep::Staging => {}
            SplitStep::Fencing => {
                let d = scaler.drives.get_mut(&id).expect("driven");
                d.step = SplitStep::Committing;
                d.fenced_at = now;
                let Some(p) = self.log.state().partition(pid) else {
                    return self.give_up_split(id);
                };
                let Some(split_point) = range_midpoint(&p.range) else {
                    return self.give_up_split(id);
                };
                let cmd = MetaCommand::SplitPartition {
                    operation_id: Some(operation_id),
                    parent: pid,
                    split_point,
                    expected_epoch: p.epoch,
                    now_ms,
                };
                if let Some(from) = self.split_driver(pid) {
                    self.propose_then(from, cmd, Some(Then::Split(id)));
                }
            }
            SplitStep::Committing => {
                let MetaOutcome::PartitionSplit { left, right } = *outcome else {
                    return self.give_up_split(id);
                };
                let write_pause = now - drive.fenced_at;
                scaler.splits.push(SplitDone {
                    parent: pid,
                    children: (left, right),
                    at: now,
                    write_pause,
                });
                scaler.drives.get_mut(&id).expect("driven").step = SplitStep::Finishing;
                // The split completed with its commit; the driver reports the pause.
                let cmd = MetaCommand::FinishOperation {
                    operation_id,
                    status: OperationStatus::Completed,
                    now_ms,
                    write_pause_ms: Some(write_pause / 1000),
                };
                if let Some(from) = self.split_driver(left) {
                    self.propose_then(from, cmd, Some(Then::Split(id)));
                }
            }
            SplitStep::Finishing => {
                scaler.drives.remove(&id);
            }
        }
    }

    /// The children of split `id` are staged: its driver fences the parent's writes.
    pub(super) fn on_split_staged(&mut self, id: u64) {
        let Some(d) = self.scaler.as_mut().and_then(|s| s.drives.get_mut(&id)) else {
            return;
        };
        let Some(operation_id) = d.operation else {
            return;
        };
        d.step = SplitStep::Fencing;
        let pid = d.partition_id;
        let cmd = MetaCommand::AdvanceOperation {
            operation_id,
            step: OperationStep::Fencing,
            progress: None,
            now_ms: self.clock.unix_ms(),
        };
        if let Some(from) = self.split_driver(pid) {
            self.propose_then(from, cmd, Some(Then::Split(id)));
        }
    }

    /// A step of split `id` failed: before its commit it is rolled back; a split that
    /// committed is complete already (its finish only reports the pause).
    fn give_up_split(&mut self, id: u64) {
        let scaler = self.scaler.as_mut().expect("enabled");
        let Some(d) = scaler.drives.remove(&id) else {
            return;
        };
        if d.step == SplitStep::Finishing {
            return;
        }
        scaler.failed_splits += 1;
        let Some(operation_id) = d.operation else {
            return;
        };
        let cmd = MetaCommand::FinishOperation {
            operation_id,
            status: OperationStatus::RolledBack,
            now_ms: self.clock.unix_ms(),
            write_pause_ms: None,
        };
        if let Some(from) = self.split_driver(d.partition_id) {
            self.propose(from, cmd);
        }
    }
}

/// Appends this round's reports to each partition's series (bounded), and forgets
/// partitions nobody reported (the agent's `record_loads`).
fn record_loads(
    loads: &mut BTreeMap<PartitionId, PartitionLoad>,
    reports: &[(PartitionId, f64)],
    now_ms: u64,
) {
    let reported: BTreeSet<PartitionId> = reports.iter().map(|r| r.0).collect();
    loads.retain(|pid, _| reported.contains(pid));
    for &(pid, ops_per_sec) in reports {
        let load = loads.entry(pid).or_default();
        load.samples.push(LoadSample {
            at_ms: now_ms,
            ops_per_sec,
        });
        if load.samples.len() > MAX_SAMPLES_PER_PARTITION {
            load.samples.remove(0);
        }
    }
}

/// Turns completed hot splits into child pairs for the planner (the agent's
/// `note_finished_splits`).
fn note_finished_splits(scaler: &mut SimScaler, s: &MetaState, now_ms: u64) {
    let finished: Vec<(OperationId, Option<SplitChildren>)> = scaler
        .hot_splits
        .keys()
        .filter_map(|id| match s.operation(*id) {
            Some(op) if op.is_running() => None,
            Some(op) if op.status == OperationStatus::Completed => {
                let children = op.split.map(|r| SplitChildren {
                    left: r.left,
                    right: r.right,
                    split_at_ms: op.finished_at_ms.unwrap_or(now_ms),
                });
                Some((*id, children))
            }
            _ => Some((*id, None)),
        })
        .collect();
    for (id, children) in finished {
        scaler.hot_splits.remove(&id);
        scaler.hot_children.extend(children);
    }
}
