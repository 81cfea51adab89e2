//! The Scaler (leader only): every planning interval it gathers the load of every
//! partition from its primary, plans with the pure `shared::scaler::plan_scaler` (hot,
//! large and capacity splits, merges of cold adjacent partitions after a capacity
//! decrease and the moves and hand-overs that bring them together, the move of a hot
//! split's busier child, scale-out moves and primary hand-overs within the concurrency
//! limits), and starts one operation per decision. A SCALING table whose decrease can
//! merge no more is activated here. The operations themselves are driven by the partitions' primaries from
//! their metadata records (see `data::plane::operations`), so a leader change loses
//! nothing: the next leader's Scaler sees them running and plans around them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::command::{MetaCommand, MetaOutcome};
use shared::model::{NodeId, NodeStatus, OperationId, OperationKind, OperationStatus};
use shared::scaler::{
    CheckedScalerConfig, LoadSample, PartitionLoad, ScalerAction, ScalerInput, SplitChildren,
    SplitReason, plan_scaler, running_ops,
};

use crate::data::plane::DataPlane;
use crate::membership::Membership;
use crate::meta::client::MetaClient;
use crate::seam::{Clock, MetaLog, PrimaryHandOver, ReplicaLoads, StateHandle};

/// Who the Scaler's operations are recorded as requested by.
pub const SCALER_PRINCIPAL: &str = "scaler";

/// Load samples kept per partition: the hot window's worth at one sample per planning
/// interval, and then some (the planner ignores what is older than its window).
const MAX_SAMPLES_PER_PARTITION: usize = 256;

/// What the Scaler remembers between rounds: each partition's load history and the
/// hot splits it started (lost on a leader change, which only delays a hot decision by
/// one window).
#[derive(Default)]
struct LoadHistory {
    loads: BTreeMap<u64, PartitionLoad>,
    /// Hot splits started by this Scaler, until they finish.
    hot_splits: HashMap<OperationId, u64>,
    /// Completed hot splits whose busier child may move.
    hot_children: Vec<SplitChildren>,
}

/// The Scaler of one (leader) node, over a metadata log `M` and the data planes `D`
/// it gathers loads from and asks for hand-overs (the agent's peers; `netsim`'s model).
pub struct Scaler<M = MetaClient, D = DataPlane> {
    meta: Arc<M>,
    state: StateHandle,
    membership: Membership,
    data: Arc<D>,
    config: CheckedScalerConfig,
    clock: Clock,
    memory: Mutex<LoadHistory>,
}

impl Scaler {
    /// Plans every `interval` while this node leads, until the process stops.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            if self.meta.controls_as_leader() {
                self.step().await;
            } else {
                self.forget();
            }
        }
    }
}

impl<M: MetaLog, D: ReplicaLoads + PrimaryHandOver> Scaler<M, D> {
    /// Creates the Scaler.
    pub fn new(
        meta: Arc<M>,
        state: StateHandle,
        membership: Membership,
        data: Arc<D>,
        config: CheckedScalerConfig,
        clock: Clock,
    ) -> Self {
        Scaler {
            meta,
            state,
            membership,
            data,
            config,
            clock,
            memory: Mutex::default(),
        }
    }

    /// Forgets the load history: a new leader starts from fresh observations.
    pub fn forget(&self) {
        *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = LoadHistory::default();
    }

    /// One round: observe, plan, act.
    pub async fn step(&self) {
        let now = (self.clock)();
        let unreachable = self.membership.not_alive();
        let nodes: Vec<NodeId> = self.state.read(|s| {
            s.nodes()
                .filter(|n| n.status == NodeStatus::Healthy && !unreachable.contains(&n.node_id))
                .map(|n| n.node_id)
                .collect()
        });
        let reports = self.data.collect_loads(nodes).await;
        let plan = {
            let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            record_loads(&mut memory, &reports, now);
            self.note_finished_splits(&mut memory);
            let (running, plan) = self.state.read(|s| {
                let running = running_ops(s);
                let input = ScalerInput {
                    state: s,
                    loads: &memory.loads,
                    running: &running,
                    hot_split_children: &memory.hot_children,
                    unreachable: &unreachable,
                    now_ms: now,
                };
                let plan = plan_scaler(&input, &self.config);
                (running.len(), plan)
            });
            let settled: BTreeSet<_> = plan.settled_children.iter().copied().collect();
            memory.hot_children.retain(|c| !settled.contains(c));
            if !plan.actions.is_empty() {
                tracing::info!(
                    actions = plan.actions.len(),
                    running,
                    deferred = plan.deferred,
                    "scaler plan"
                );
            }
            plan
        };
        for action in plan.actions {
            self.act(action).await;
        }
        for table in plan.scaling {
            // Splits end with the assigner's activation; a decrease that can merge no
            // more keeps the partitions it has.
            if table.complete && table.partitions > table.target {
                tracing::info!(
                    table = table.table_id,
                    partitions = table.partitions,
                    target = table.target,
                    "scaler: no more partitions can merge; the table is ACTIVE"
                );
                let cmd = MetaCommand::ActivateTable {
                    table_id: table.table_id,
                    now_ms: (self.clock)(),
                };
                if let Err(e) = self.meta.propose(cmd).await {
                    tracing::debug!(table = table.table_id, error = %e, "scaler: not activated");
                }
            }
        }
    }

    /// Turns completed hot splits into child pairs for the planner.
    fn note_finished_splits(&self, memory: &mut LoadHistory) {
        let now = (self.clock)();
        let finished: Vec<(OperationId, Option<SplitChildren>)> = self.state.read(|s| {
            memory
                .hot_splits
                .keys()
                .filter_map(|id| {
                    let op = s.operation(*id);
                    match op {
                        Some(op) if op.is_running() => None,
                        Some(op) if op.status == OperationStatus::Completed => {
                            let children = op.split.map(|r| SplitChildren {
                                left: r.left,
                                right: r.right,
                                split_at_ms: op.finished_at_ms.unwrap_or(now),
                            });
                            Some((*id, children))
                        }
                        _ => Some((*id, None)),
                    }
                })
                .collect()
        });
        for (id, children) in finished {
            memory.hot_splits.remove(&id);
            memory.hot_children.extend(children);
        }
    }

    async fn act(&self, action: ScalerAction) {
        let (partition_id, kind, hot) = match action {
            ScalerAction::Split {
                partition_id,
                reason,
                ..
            } => {
                tracing::info!(partition = partition_id, ?reason, "scaler: split");
                let hot = matches!(reason, SplitReason::Hot { .. });
                let kind = OperationKind::Split { split_point: None };
                (partition_id, kind, hot)
            }
            ScalerAction::Move {
                partition_id,
                from,
                to,
                reason,
                ..
            } => {
                tracing::info!(partition = partition_id, from, to, ?reason, "scaler: move");
                (partition_id, OperationKind::Move { from, to }, false)
            }
            ScalerAction::HandOverPrimary {
                partition_id,
                from,
                to,
                expected_epoch,
            } => {
                let result = self
                    .data
                    .hand_over(from, partition_id, expected_epoch, to)
                    .await;
                match result {
                    Ok(()) => tracing::info!(
                        partition = partition_id,
                        from,
                        to,
                        "scaler: primary handed over"
                    ),
                    Err(e) => tracing::info!(partition = partition_id, error = %e,
                        "scaler: hand-over not done"),
                }
                return;
            }
            ScalerAction::Merge {
                left,
                right,
                partitions,
                target,
                ..
            } => {
                tracing::info!(left, right, partitions, target, "scaler: merge");
                (left, OperationKind::Merge { right }, false)
            }
        };
        let cmd = MetaCommand::StartOperation {
            partition_id,
            kind,
            requested_by: SCALER_PRINCIPAL.to_string(),
            now_ms: (self.clock)(),
        };
        match self.meta.propose(cmd).await {
            Ok(Ok(MetaOutcome::OperationStarted { operation_id })) if hot => {
                self.memory
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .hot_splits
                    .insert(operation_id, partition_id);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(partition = partition_id, error = %e,
                "scaler: operation not started"),
            Err(e) => tracing::debug!(partition = partition_id, error = %e,
                "scaler: operation not proposed"),
        }
    }
}

/// Appends this round's reports to each partition's series (bounded), and forgets
/// partitions no primary reported (gone, or their primary unreachable).
fn record_loads(memory: &mut LoadHistory, reports: &[shared::data::PartitionLoadReport], now: u64) {
    let reported: BTreeSet<u64> = reports.iter().map(|r| r.partition_id).collect();
    memory.loads.retain(|pid, _| reported.contains(pid));
    for r in reports {
        let load = memory.loads.entry(r.partition_id).or_default();
        load.samples.push(LoadSample {
            at_ms: now,
            ops_per_sec: r.ops_per_sec as f64,
        });
        if load.samples.len() > MAX_SAMPLES_PER_PARTITION {
            load.samples.remove(0);
        }
        load.size_bytes = r.bytes;
    }
}
