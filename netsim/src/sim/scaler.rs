//! The leader's Scaler for `hot-split`: **the agent's own `control::scaler::Scaler`**
//! (its load history, `plan_scaler` with the default `ScalerConfig`, its operation
//! starts), run on the leader every planning interval, over a model of per-partition
//! load. netsim has no data plane, so load is modelled: each starting partition serves a
//! drawn base load spread evenly over its key range, and a hot spot (`make_hot`) adds
//! load on a drawn quarter of one partition's range; a partition's load is what its key
//! range covers (so a split's children share their parent's load as their ranges do).
//! [`SimLoads`] answers the Scaler's `ReplicaLoads` seam from that model.
//!
//! The operations the Scaler starts are carried out by their primaries' drivers
//! (`drive.rs`, on the agent's driver decisions); this records what became of them
//! (splits, their children's moves). A primary hand-over (the `PrimaryHandOver` seam)
//! is the switch through the leader's log; no scenario decreases a capacity, so no
//! merge is planned.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use agent::seam::{BoxFuture, MetaLog, PrimaryHandOver, ReplicaLoads, StateHandle};
use shared::command::{MetaCommand, PartitionChange};
use shared::data::{ItemError, PartitionLoadReport};
use shared::model::{KeyRange, NodeId, OperationId, OperationKind, PartitionId, TableId};
use shared::scaler::CheckedScalerConfig;
use shared::state::MetaState;

use super::Simulation;
use crate::event::Event;
use crate::seam::SimMeta;
use crate::time::{Micros, millis};

/// Lowest base load of a partition, in percent of its share of its table's capacity.
pub const BASE_LOAD_MIN_PERCENT: u64 = 20;
/// Highest base load of a partition, in percent of its share.
pub const BASE_LOAD_MAX_PERCENT: u64 = 60;
/// A hot spot covers this fraction of its partition's range (1 / this).
const HOT_SPOT_FRACTION: u64 = 4;

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

/// The modelled load, shared by the simulation (which makes spots hot) and the
/// leader's [`SimLoads`].
pub type SharedLoadModel = Arc<Mutex<LoadModel>>;

fn lock(model: &SharedLoadModel) -> MutexGuard<'_, LoadModel> {
    // Nothing panics while holding it.
    model.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Scaler's data-plane seams in netsim: each asked node reports the partitions it
/// leads in the leader's replica, at their modelled load (sizes are not modelled); a
/// primary hand-over is the switch the primary commits (`RepairPartitions`: the role to
/// the target, the same members), proposed through the leader's log.
pub struct SimLoads {
    model: SharedLoadModel,
    replica: StateHandle,
    meta: Arc<SimMeta>,
    hand_overs: Arc<AtomicUsize>,
}

impl SimLoads {
    /// Loads from `model`, partitions as `replica` shows them, hand-overs through `meta`
    /// (counted in `hand_overs`).
    pub fn new(
        model: SharedLoadModel,
        replica: StateHandle,
        meta: Arc<SimMeta>,
        hand_overs: Arc<AtomicUsize>,
    ) -> Self {
        SimLoads {
            model,
            replica,
            meta,
            hand_overs,
        }
    }
}

impl ReplicaLoads for SimLoads {
    fn collect_loads(&self, nodes: Vec<NodeId>) -> BoxFuture<'_, Vec<PartitionLoadReport>> {
        let asked: BTreeSet<NodeId> = nodes.into_iter().collect();
        let model = lock(&self.model);
        let reports = self.replica.read(|s| {
            s.partitions()
                .filter(|p| asked.contains(&p.primary_node_id))
                .map(|p| PartitionLoadReport {
                    partition_id: p.partition_id,
                    ops_per_sec: model.load(p.table_id, &p.range).round() as u64,
                    bytes: 0,
                })
                .collect()
        });
        Box::pin(std::future::ready(reports))
    }
}

impl PrimaryHandOver for SimLoads {
    fn hand_over(
        &self,
        primary: NodeId,
        pid: PartitionId,
        epoch: u64,
        to: NodeId,
    ) -> BoxFuture<'_, Result<(), ItemError>> {
        let members = self.replica.read(|s| {
            s.partition(pid)
                .filter(|p| p.primary_node_id == primary)
                .map(|p| p.all_nodes().filter(|n| *n != to).collect::<Vec<_>>())
        });
        Box::pin(async move {
            let Some(replica_node_ids) = members else {
                return Err(ItemError::WrongPartition {
                    current_epoch: None,
                    primary: None,
                });
            };
            let change = PartitionChange {
                partition_id: pid,
                expected_epoch: epoch,
                primary_node_id: to,
                replica_node_ids,
            };
            let cmd = MetaCommand::RepairPartitions {
                changes: vec![change],
            };
            match self.meta.propose(cmd).await {
                Ok(Ok(_)) => {
                    self.hand_overs.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Ok(Err(e)) => Err(ItemError::Unavailable(e.to_string())),
                Err(e) => Err(ItemError::Unavailable(e.to_string())),
            }
        })
    }
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

/// A move of a child of a split, as the Scaler started it.
#[derive(Debug, Clone, Copy)]
pub struct ChildMove {
    /// The child.
    pub partition_id: PartitionId,
    /// Its primary's node.
    pub from: NodeId,
    /// Where it goes.
    pub to: NodeId,
    /// Its load when the move started.
    pub ops_per_sec: f64,
    /// When the move started (seen running in the log).
    pub at: Micros,
}

/// The Scaler's configuration, load model, and what became of its operations.
#[derive(Debug)]
pub struct SimScaler {
    config: CheckedScalerConfig,
    /// The modelled load.
    pub model: SharedLoadModel,
    /// Whether it still plans (`stop_scaler` ends that; driven splits go on).
    planning: bool,
    handed_over: Arc<AtomicUsize>,
    /// Operations of the Scaler taken up by their drivers (`drive.rs`).
    adopted: BTreeSet<OperationId>,
    /// Rounds planned.
    pub rounds: usize,
    /// Splits committed.
    pub splits: Vec<SplitDone>,
    /// Splits given up.
    pub failed_splits: usize,
    /// Moves of split children started.
    pub child_moves: Vec<ChildMove>,
    /// Other moves started (scale-out).
    pub rebalance_moves: usize,
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
            model: Arc::new(Mutex::new(model)),
            planning: true,
            handed_over: Arc::default(),
            adopted: BTreeSet::new(),
            rounds: 0,
            splits: Vec::new(),
            failed_splits: 0,
            child_moves: Vec::new(),
            rebalance_moves: 0,
        }
    }

    /// Time between two rounds.
    pub fn interval(&self) -> Micros {
        millis(self.config.get().planning_interval_ms)
    }

    /// Primary roles handed over.
    pub fn hand_overs(&self) -> usize {
        self.handed_over.load(Ordering::Relaxed)
    }

    /// The Scaler's settings.
    pub fn config(&self) -> &CheckedScalerConfig {
        &self.config
    }

    /// The seams the leader's Scaler plans over, on its `replica` and `meta`.
    pub fn seams(&self, replica: &StateHandle, meta: &Arc<SimMeta>) -> Arc<SimLoads> {
        Arc::new(SimLoads::new(
            self.model.clone(),
            replica.clone(),
            meta.clone(),
            self.handed_over.clone(),
        ))
    }
}

impl Simulation {
    /// Starts the Scaler (and the move executor its moves go to), every partition at a
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

    /// The Scaler plans no more (splits being driven and moves go on).
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
        let mut model = lock(&scaler.model);
        let before = model.load(p.table_id, &p.range);
        let span = (p.range.high - p.range.low) / HOT_SPOT_FRACTION;
        let low = p.range.low + self.rng.between(0, p.range.high - p.range.low - span);
        let spot = KeyRange {
            low,
            high: low + span,
        };
        model.add(p.table_id, spot, before * (factor - 1.0));
        Some((before, model.load(p.table_id, &p.range)))
    }

    /// The modelled load of partition `pid` now.
    pub fn partition_load(&self, pid: PartitionId) -> f64 {
        let (Some(p), Some(s)) = (self.log.state().partition(pid), self.scaler.as_ref()) else {
            return 0.0;
        };
        lock(&s.model).load(p.table_id, &p.range)
    }

    /// What the scale-out planner (`plan_rebalance`, with the Scaler's settings) still
    /// asks for on the leader's replica, nodes its gossip does not see alive excluded
    /// (`None` without a running leader or Scaler): the scenarios' measure of balance.
    pub fn rebalance_plan(&self) -> Option<shared::rebalance::RebalancePlan> {
        let scaler = self.scaler.as_ref()?;
        let leader = self.log.leader.filter(|l| self.agents[l].is_alive())?;
        let agent = &self.agents[&leader];
        let excluded = agent.membership.not_alive();
        let cfg = &scaler.config.get().rebalance;
        Some(
            agent
                .replica
                .read(|s| shared::rebalance::plan_rebalance(s, cfg, &excluded)),
        )
    }

    /// One round of the Scaler: the leader's `Scaler::step` (observe, plan, start).
    pub(super) fn on_scale(&mut self) {
        let Some(scaler) = self.scaler.as_mut() else {
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
        self.scaler.as_mut().expect("enabled").rounds += 1;
        self.run_scaler(leader);
    }

    /// Takes up the operations the Scaler started (seen running in the log): their
    /// primaries' drivers (`drive.rs`) carry them out.
    pub(super) fn adopt_scaler_operations(&mut self) {
        let Some(scaler) = self.scaler.as_ref() else {
            return;
        };
        let new: Vec<shared::model::Operation> = self
            .log
            .state()
            .running_operations()
            .filter(|op| op.requested_by == agent::control::scaler::SCALER_PRINCIPAL)
            .filter(|op| !scaler.adopted.contains(&op.operation_id))
            .cloned()
            .collect();
        for op in new {
            self.scaler
                .as_mut()
                .expect("enabled")
                .adopted
                .insert(op.operation_id);
            if let OperationKind::Move { from, to } = op.kind {
                self.note_move(op.partition_id, from, to);
            }
            self.adopt(&op);
        }
    }

    /// Counts a move the Scaler started: a split child's, or a scale-out move.
    fn note_move(&mut self, pid: PartitionId, from: NodeId, to: NodeId) {
        let now = self.now();
        let load = self.partition_load(pid);
        let scaler = self.scaler.as_mut().expect("enabled");
        let child = scaler
            .splits
            .iter()
            .any(|d| d.children.0 == pid || d.children.1 == pid);
        if child {
            scaler.child_moves.push(ChildMove {
                partition_id: pid,
                from,
                to,
                ops_per_sec: load,
                at: now,
            });
        } else {
            scaler.rebalance_moves += 1;
        }
    }
}
