//! Scale-out rebalancing. The plan is the real `shared::rebalance::plan_rebalance`, made
//! on the leader's replica (nodes its gossip does not see alive excluded); executing it
//! is re-implemented here: each replica move goes through the real operation commands
//! (`StartOperation`, `AdvanceOperation` to CatchingUp and Switching, `CommitMove`,
//! `FinishOperation`) with a drawn copy time, within concurrency limits; primary moves
//! are one `RepairPartitions` once no replica move is left. One plan is carried out
//! completely before the next is made, so moves in flight are never planned twice.
//!
//! Without planning (`enable_move_executor`), it only carries out the moves the agent's
//! Scaler starts (`scaler.rs`), from their copy on.

use std::collections::{BTreeMap, VecDeque};

use shared::command::{MetaCommand, MetaOutcome, MetaResult, PartitionChange};
use shared::model::{
    NodeId, Operation, OperationId, OperationKind, OperationStatus, OperationStep, PartitionId,
};
use shared::rebalance::{RebalanceConfig, ReplicaMove, plan_rebalance};

use super::Simulation;
use super::log::Then;
use crate::config::{CONTROLLER_TICK_US, FILL_MAX_US, FILL_MIN_US};
use crate::event::Event;
use crate::time::Micros;

/// Moves running at once in the cluster.
pub const MIGRATIONS_MAX: usize = 32;
/// Moves running at once per node (as source or target).
pub const MIGRATIONS_PER_NODE_MAX: usize = 4;
/// Who the operations are recorded as requested by.
const REQUESTED_BY: &str = "scaler";

/// Where one move is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Starting,
    Copying,
    CatchingUp,
    Switching,
    Committing,
    Finishing,
}

#[derive(Debug, Clone)]
struct Move {
    planned: ReplicaMove,
    operation: Option<OperationId>,
    step: Step,
}

/// The rebalancer's progress and figures.
#[derive(Debug, Default)]
pub struct Rebalancer {
    /// Whether it plans (scale-out) or only carries out queued moves.
    planning: bool,
    pending: VecDeque<ReplicaMove>,
    running: BTreeMap<u64, Move>,
    next_id: u64,
    /// Plans made.
    pub plans: usize,
    /// The first plan's lower bound on replica moves.
    pub optimal_moves: Option<usize>,
    /// Replica moves committed.
    pub moved: usize,
    /// Moves given up.
    pub failed: usize,
    /// Primary roles handed over.
    pub primary_moves: usize,
    /// When a plan first came out empty.
    pub balanced_at: Option<Micros>,
    /// When each partition's last move committed (`CommitMove`).
    pub committed_at: BTreeMap<PartitionId, Micros>,
}

impl Rebalancer {
    /// Whether no move is waiting or running.
    pub fn idle(&self) -> bool {
        self.pending.is_empty() && self.running.is_empty()
    }
}

impl Simulation {
    /// Starts rebalancing on the controllers' tick.
    pub fn enable_rebalancer(&mut self) {
        self.rebalancer = Some(Rebalancer {
            planning: true,
            ..Rebalancer::default()
        });
        self.queue.push(self.now(), Event::Rebalance);
    }

    /// Starts carrying out queued moves (`queue_moves`) on the controllers' tick, with
    /// no planning of its own.
    pub fn enable_move_executor(&mut self) {
        self.rebalancer = Some(Rebalancer::default());
        self.queue.push(self.now(), Event::Rebalance);
    }

    /// The rebalancer, once enabled.
    pub fn rebalancer(&self) -> Option<&Rebalancer> {
        self.rebalancer.as_ref()
    }

    pub(super) fn on_rebalance(&mut self) {
        self.queue
            .push(self.now() + CONTROLLER_TICK_US, Event::Rebalance);
        self.adopt_scaler_operations();
        let Some(leader) = self.log.leader else {
            return;
        };
        let plans = self
            .rebalancer
            .as_ref()
            .is_some_and(|r| r.planning && r.idle());
        if plans {
            self.plan_moves(leader);
        }
        self.start_moves();
    }

    fn plan_moves(&mut self, leader: NodeId) {
        let agent = &self.agents[&leader];
        let excluded = agent.not_alive_in_view();
        let plan = agent
            .replica
            .read(|s| plan_rebalance(s, &RebalanceConfig::default(), &excluded));
        let now = self.now();
        let r = self.rebalancer.as_mut().expect("enabled");
        if plan.is_empty() {
            r.balanced_at.get_or_insert(now);
            return;
        }
        r.plans += 1;
        r.optimal_moves.get_or_insert(plan.optimal_moves());
        r.pending.extend(plan.moves.iter().copied());
        if !plan.moves.is_empty() || plan.primary_moves.is_empty() {
            return;
        }
        let changes: Vec<PartitionChange> = agent.replica.read(|s| {
            plan.primary_moves
                .iter()
                .filter_map(|m| {
                    let p = s.partition(m.partition_id)?;
                    Some(PartitionChange {
                        partition_id: m.partition_id,
                        expected_epoch: m.expected_epoch,
                        primary_node_id: m.to,
                        replica_node_ids: p.all_nodes().filter(|n| *n != m.to).collect(),
                    })
                })
                .collect()
        });
        r.primary_moves += changes.len();
        self.propose(leader, MetaCommand::RepairPartitions { changes });
    }

    /// Starts pending moves within the limits.
    fn start_moves(&mut self) {
        let Some(r) = self.rebalancer.as_mut() else {
            return;
        };
        let mut busy: BTreeMap<NodeId, usize> = BTreeMap::new();
        for m in r.running.values() {
            *busy.entry(m.planned.from).or_default() += 1;
            *busy.entry(m.planned.to).or_default() += 1;
        }
        let mut starting = Vec::new();
        let mut waiting = VecDeque::new();
        while let Some(mv) = r.pending.pop_front() {
            let free = |n: &NodeId| busy.get(n).copied().unwrap_or(0) < MIGRATIONS_PER_NODE_MAX;
            if r.running.len() + starting.len() < MIGRATIONS_MAX && free(&mv.from) && free(&mv.to) {
                *busy.entry(mv.from).or_default() += 1;
                *busy.entry(mv.to).or_default() += 1;
                starting.push(mv);
            } else {
                waiting.push_back(mv);
            }
        }
        r.pending = waiting;
        for planned in starting {
            let r = self.rebalancer.as_mut().expect("enabled");
            r.next_id += 1;
            let id = r.next_id;
            r.running.insert(
                id,
                Move {
                    planned,
                    operation: None,
                    step: Step::Starting,
                },
            );
            let cmd = MetaCommand::StartOperation {
                partition_id: planned.partition_id,
                kind: OperationKind::Move {
                    from: planned.from,
                    to: planned.to,
                },
                requested_by: REQUESTED_BY.into(),
                now_ms: self.clock.unix_ms(),
            };
            self.propose_step(id, cmd);
        }
    }

    /// Takes up a move the Scaler started (its operation runs): the copy starts now.
    pub(super) fn adopt_move(&mut self, op: &Operation, from: NodeId, to: NodeId) {
        let Some(r) = self.rebalancer.as_mut() else {
            return;
        };
        let expected_epoch = self
            .log
            .state()
            .partition(op.partition_id)
            .map_or(0, |p| p.epoch);
        r.next_id += 1;
        let id = r.next_id;
        r.running.insert(
            id,
            Move {
                planned: ReplicaMove {
                    partition_id: op.partition_id,
                    from,
                    to,
                    expected_epoch,
                },
                operation: Some(op.operation_id),
                step: Step::Copying,
            },
        );
        let copy = self.rng.between(FILL_MIN_US, FILL_MAX_US);
        self.queue.push(self.now() + copy, Event::MoveCopied(id));
    }

    /// Proposes a move's next command from the leader (any running agent without one).
    fn propose_step(&mut self, id: u64, cmd: MetaCommand) {
        let from = self
            .log
            .leader
            .or_else(|| self.alive_agents().into_iter().next());
        if let Some(from) = from {
            self.propose_then(from, cmd, Some(Then::Move(id)));
        }
    }

    /// A move's command committed (or never will: `result` is `None`).
    pub(super) fn on_move_outcome(&mut self, id: u64, result: Option<&MetaResult>) {
        let Some(m) = self.running_move(id) else {
            return;
        };
        if let Some(Ok(MetaOutcome::OperationStarted { operation_id })) = result {
            m.operation = Some(*operation_id);
        }
        let (step, planned) = (m.step, m.planned);
        let (Some(operation_id), Some(Ok(_))) = (m.operation, result) else {
            return self.give_up(id, step);
        };
        let now_ms = self.clock.unix_ms();
        let (next_step, cmd) = match step {
            Step::Starting => {
                let copy = self.rng.between(FILL_MIN_US, FILL_MAX_US);
                self.queue.push(self.now() + copy, Event::MoveCopied(id));
                (Step::Copying, None)
            }
            // Only `on_move_copied` leaves Copying; nothing of it is in flight.
            Step::Copying => (Step::Copying, None),
            Step::CatchingUp => {
                let cmd = MetaCommand::AdvanceOperation {
                    operation_id,
                    step: OperationStep::Switching,
                    progress: None,
                    now_ms,
                };
                (Step::Switching, Some(cmd))
            }
            Step::Switching => {
                let epoch = self
                    .log
                    .state()
                    .partition(planned.partition_id)
                    .map_or(planned.expected_epoch, |p| p.epoch);
                let cmd = MetaCommand::CommitMove {
                    operation_id,
                    partition_id: planned.partition_id,
                    from: planned.from,
                    to: planned.to,
                    expected_epoch: epoch,
                    now_ms,
                };
                (Step::Committing, Some(cmd))
            }
            Step::Committing => {
                let cmd = MetaCommand::FinishOperation {
                    operation_id,
                    status: OperationStatus::Completed,
                    now_ms,
                    // No data plane: no write pause is measured.
                    write_pause_ms: None,
                };
                (Step::Finishing, Some(cmd))
            }
            Step::Finishing => {
                self.rebalancer
                    .as_mut()
                    .expect("enabled")
                    .running
                    .remove(&id);
                return;
            }
        };
        let now = self.now();
        let r = self.rebalancer.as_mut().expect("enabled");
        if step == Step::Committing {
            r.moved += 1;
            r.committed_at.insert(planned.partition_id, now);
        }
        r.running.get_mut(&id).expect("running").step = next_step;
        if let Some(cmd) = cmd {
            self.propose_step(id, cmd);
        }
    }

    /// Move `id` if it still runs.
    fn running_move(&mut self, id: u64) -> Option<&mut Move> {
        self.rebalancer.as_mut()?.running.get_mut(&id)
    }

    /// The copy of move `id` is done: it catches up.
    pub(super) fn on_move_copied(&mut self, id: u64) {
        let Some(m) = self.running_move(id) else {
            return;
        };
        let Some(operation_id) = m.operation else {
            return;
        };
        m.step = Step::CatchingUp;
        let cmd = MetaCommand::AdvanceOperation {
            operation_id,
            step: OperationStep::CatchingUp,
            progress: None,
            now_ms: self.clock.unix_ms(),
        };
        self.propose_step(id, cmd);
    }

    /// A step failed: the operation is finished as failed (rolled back before the
    /// switch) so its partition is free again.
    fn give_up(&mut self, id: u64, step: Step) {
        let r = self.rebalancer.as_mut().expect("enabled");
        let m = r.running.remove(&id).expect("running");
        r.failed += 1;
        let Some(operation_id) = m.operation else {
            return;
        };
        if step == Step::Finishing {
            return;
        }
        let status = if matches!(step, Step::Committing) {
            OperationStatus::Failed {
                reason: "commit of the move failed".into(),
            }
        } else {
            OperationStatus::RolledBack
        };
        let cmd = MetaCommand::FinishOperation {
            operation_id,
            status,
            now_ms: self.clock.unix_ms(),
            write_pause_ms: None,
        };
        self.propose_step(0, cmd);
    }
}
