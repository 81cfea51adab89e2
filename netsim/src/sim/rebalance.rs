//! The move executor: carries out the moves the agent's Scaler starts (its scale-out
//! moves and the moves of hot splits' children), as the partitions' primaries do in
//! `data::plane::operations` (re-implemented: netsim has no data plane). A move is taken
//! up when the leader applies its `StartOperation`, then goes through the real commands
//! with a drawn copy time: `AdvanceOperation` to CatchingUp and Switching, `CommitMove`,
//! `FinishOperation`.

use std::collections::BTreeMap;

use shared::command::{MetaCommand, MetaResult};
use shared::model::{NodeId, Operation, OperationId, OperationStatus, OperationStep, PartitionId};
use shared::rebalance::ReplicaMove;

use super::Simulation;
use super::log::Then;
use crate::config::{CONTROLLER_TICK_US, FILL_MAX_US, FILL_MIN_US};
use crate::event::Event;
use crate::time::Micros;

/// Where one move is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
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

/// The executor's moves and figures.
#[derive(Debug, Default)]
pub struct Rebalancer {
    running: BTreeMap<u64, Move>,
    next_id: u64,
    /// Replica moves committed.
    pub moved: usize,
    /// Moves given up.
    pub failed: usize,
    /// When each partition's last move committed (`CommitMove`).
    pub committed_at: BTreeMap<PartitionId, Micros>,
}

impl Rebalancer {
    /// Whether no move is running.
    pub fn idle(&self) -> bool {
        self.running.is_empty()
    }
}

impl Simulation {
    /// Starts the move executor (with the Scaler, whose moves it carries out).
    pub fn enable_move_executor(&mut self) {
        self.rebalancer = Some(Rebalancer::default());
        self.queue.push(self.now(), Event::Rebalance);
    }

    /// The move executor, once enabled.
    pub fn rebalancer(&self) -> Option<&Rebalancer> {
        self.rebalancer.as_ref()
    }

    /// The executor's tick: takes up operations the leader's apply did not reveal (a
    /// leader change in between).
    pub(super) fn on_rebalance(&mut self) {
        self.queue
            .push(self.now() + CONTROLLER_TICK_US, Event::Rebalance);
        self.adopt_scaler_operations();
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
        let (step, planned) = (m.step, m.planned);
        let (Some(operation_id), Some(Ok(_))) = (m.operation, result) else {
            return self.give_up(id, step);
        };
        let now_ms = self.clock.unix_ms();
        let (next_step, cmd) = match step {
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
        // The snapshot is on the target: its reconciler keeps the copy while the move
        // runs, and drops it if the move is rolled back.
        let (to, pid) = (m.planned.to, m.planned.partition_id);
        self.copies.lock().insert(to, pid);
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
