//! The operation drivers of the partitions' primaries, for the operations the agent's
//! Scaler starts (splits of hot partitions, moves of their children, scale-out moves).
//! **The decisions are the agent's** (`shared::drive`, which `data::plane::operations`
//! acts on too): the primary of the partition drives it, judged on its own replica;
//! a void operation rolls back, a switched one completes; a switch refused because the
//! partition moved on rolls back; a failed step is retried (`RetryOperationStep`) after
//! a pause until its attempts are spent, then rolled back. What is simulated is the work
//! between the steps, as netsim has no data plane: a split's staging and a move's copy
//! take a drawn time, the catch-up is instant, a split is cut at its range's midpoint
//! (what `choose_split_point` gives evenly spread keys) and its write pause is the time
//! from its fence to its commit.

use std::collections::BTreeMap;

use shared::command::{MetaCommand, MetaOutcome, MetaResult};
use shared::drive::{
    self, Next, SwitchVerdict, retry_or_roll_back, split_children, switch_verdict,
};
use shared::model::{
    NodeId, Operation, OperationId, OperationKind, OperationStatus, OperationStep, PartitionId,
};
use shared::split::range_midpoint;

use super::Simulation;
use super::log::Then;
use super::scaler::SplitDone;
use crate::config::{CONTROLLER_TICK_US, FILL_MAX_US, FILL_MIN_US};
use crate::event::Event;
use crate::time::{Micros, millis};

/// Pause before a failed step is tried again (the agent's).
const STEP_RETRY_PAUSE_US: Micros = millis(drive::STEP_RETRY_PAUSE_MS);

/// What a driven operation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// Nothing: driven again at the next tick (its primary was down, or its finish was
    /// lost).
    Nothing,
    /// The work of its current step (a staging, a copy).
    Work,
    /// The pause before a failed step is tried again.
    Retry,
    /// The commit of a step's command (advance or retry).
    Step,
    /// The commit of its switch (`SplitPartition`, `CommitMove`).
    Switch,
    /// The commit of its finish.
    Finish,
}

#[derive(Debug, Clone, Copy)]
struct Driven {
    awaiting: Awaiting,
    /// When the split's writes were fenced.
    fenced_at: Micros,
}

/// The operations being driven, and what became of them.
#[derive(Debug, Default)]
pub struct Rebalancer {
    running: BTreeMap<OperationId, Driven>,
    /// Replica moves committed.
    pub moved: usize,
    /// Moves rolled back.
    pub failed: usize,
    /// When each partition's last move committed (`CommitMove`).
    pub committed_at: BTreeMap<PartitionId, Micros>,
}

impl Rebalancer {
    /// Whether no operation is being driven.
    pub fn idle(&self) -> bool {
        self.running.is_empty()
    }
}

impl Simulation {
    /// Starts the drivers (with the Scaler, whose operations they carry out).
    pub fn enable_move_executor(&mut self) {
        self.rebalancer = Some(Rebalancer::default());
        self.queue.push(self.now(), Event::Rebalance);
    }

    /// The drivers' record, once enabled.
    pub fn rebalancer(&self) -> Option<&Rebalancer> {
        self.rebalancer.as_ref()
    }

    /// The drivers' tick: takes up operations the leader's apply did not reveal (a
    /// leader change in between), and drives again those that wait for nothing.
    pub(super) fn on_rebalance(&mut self) {
        self.queue
            .push(self.now() + CONTROLLER_TICK_US, Event::Rebalance);
        self.adopt_scaler_operations();
        let idle: Vec<OperationId> = self.rebalancer.as_ref().map_or(Vec::new(), |r| {
            r.running
                .iter()
                .filter(|(_, d)| d.awaiting == Awaiting::Nothing)
                .map(|(id, _)| *id)
                .collect()
        });
        for id in idle {
            self.drive(id);
        }
    }

    /// Takes up operation `op` (started by the Scaler, seen running in the log).
    pub(super) fn adopt(&mut self, op: &Operation) {
        let Some(r) = self.rebalancer.as_mut() else {
            return;
        };
        let driven = Driven {
            awaiting: Awaiting::Nothing,
            fenced_at: 0,
        };
        if r.running.insert(op.operation_id, driven).is_none() {
            self.drive(op.operation_id);
        }
    }

    fn driven(&mut self, id: OperationId) -> Option<&mut Driven> {
        self.rebalancer.as_mut()?.running.get_mut(&id)
    }

    fn wait_for(&mut self, id: OperationId, awaiting: Awaiting) {
        if let Some(d) = self.driven(id) {
            d.awaiting = awaiting;
        }
    }

    /// The operation's record and its driver, if it still runs.
    fn running_operation(&self, id: OperationId) -> Option<(Operation, NodeId)> {
        self.operation(id).filter(|(op, _)| op.is_running())
    }

    /// The operation's record and its driver: the primary of its partition (of a
    /// split's first child once the parent is gone: the same node).
    fn operation(&self, id: OperationId) -> Option<(Operation, NodeId)> {
        let state = self.log.state();
        let op = state.operation(id)?;
        let pid = match op.split {
            Some(children) if state.partition(op.partition_id).is_none() => children.left,
            _ => op.partition_id,
        };
        let primary = state.partition(pid)?.primary_node_id;
        Some((op.clone(), primary))
    }

    /// The next step of operation `id`, as its primary's driver decides it.
    fn drive(&mut self, id: OperationId) {
        let Some((op, primary)) = self.running_operation(id) else {
            if let Some(r) = self.rebalancer.as_mut() {
                r.running.remove(&id);
            }
            return;
        };
        if !self.agents.get(&primary).is_some_and(|a| a.is_up()) {
            // A new primary takes it up once recovery made one (the next tick).
            return self.wait_for(id, Awaiting::Nothing);
        }
        let replica = self.agents[&primary].replica.clone();
        let now_ms = self.clock.unix_ms();
        match op.kind {
            OperationKind::Move { .. } => match replica.read(|s| drive::next_move(s, &op, primary))
            {
                Next::NotMine => self.wait_for(id, Awaiting::Nothing),
                Next::Switched => self.finish(id, primary, true, None),
                Next::Void(_) => self.finish(id, primary, false, None),
                Next::Go(w) => match w.step {
                    OperationStep::Copying => self.work(id),
                    OperationStep::CatchingUp => {
                        // Catching up is instant here: no writes are modelled.
                        let cmd = drive::advance(id, OperationStep::Switching, None, now_ms);
                        self.step(id, primary, cmd);
                    }
                    _ => {
                        let cmd = MetaCommand::CommitMove {
                            operation_id: id,
                            partition_id: op.partition_id,
                            from: w.from,
                            to: w.to,
                            expected_epoch: w.partition.epoch,
                            now_ms,
                        };
                        self.switch(id, primary, cmd);
                    }
                },
            },
            OperationKind::Split { .. } => {
                match replica.read(|s| drive::next_split(s, &op, primary)) {
                    Next::NotMine => self.wait_for(id, Awaiting::Nothing),
                    Next::Switched => self.finish(id, primary, true, None),
                    Next::Void(_) => self.finish(id, primary, false, None),
                    Next::Go(w) if w.stage_first => self.work(id),
                    Next::Go(w) => {
                        let range = w.parent.range;
                        let point = w.requested.or_else(|| range_midpoint(&range));
                        let Some(point) = point.filter(|p| split_children(&range, *p).is_ok())
                        else {
                            return self.finish(id, primary, false, None);
                        };
                        let now = self.now();
                        if let Some(d) = self.driven(id) {
                            d.fenced_at = now;
                        }
                        let cmd = MetaCommand::SplitPartition {
                            operation_id: Some(id),
                            parent: op.partition_id,
                            split_point: point,
                            expected_epoch: w.parent.epoch,
                            now_ms,
                        };
                        self.switch(id, primary, cmd);
                    }
                }
            }
            // Planned only after a capacity decrease, which no scenario makes.
            OperationKind::Merge { .. } => self.finish(id, primary, false, None),
        }
    }

    /// The current step's work (a staging, a copy) takes a drawn time.
    fn work(&mut self, id: OperationId) {
        self.wait_for(id, Awaiting::Work);
        let at = self.now() + self.rng.between(FILL_MIN_US, FILL_MAX_US);
        self.queue.push(at, Event::DriveTimer(id));
    }

    /// Operation `id`'s timer: its step's work is done (its driver records the next
    /// step), or its retry pause is over (it is driven again).
    pub(super) fn on_drive_timer(&mut self, id: OperationId) {
        match self.driven(id).map(|d| d.awaiting) {
            Some(Awaiting::Work) => {}
            Some(Awaiting::Retry) => return self.drive(id),
            _ => return,
        }
        let Some((op, primary)) = self.running_operation(id) else {
            return self.drive(id);
        };
        let next = match (op.kind, op.step) {
            (OperationKind::Move { to, .. }, OperationStep::Copying) => {
                // The snapshot is on the target: its reconciler keeps the copy while the
                // move runs, and drops it if the move is rolled back.
                self.copies.lock().insert(to, op.partition_id);
                OperationStep::CatchingUp
            }
            _ => OperationStep::Fencing,
        };
        let cmd = drive::advance(id, next, None, self.clock.unix_ms());
        self.step(id, primary, cmd);
    }

    fn step(&mut self, id: OperationId, from: NodeId, cmd: MetaCommand) {
        self.propose_for(id, from, cmd, Awaiting::Step);
    }

    fn switch(&mut self, id: OperationId, from: NodeId, cmd: MetaCommand) {
        self.propose_for(id, from, cmd, Awaiting::Switch);
    }

    fn finish(&mut self, id: OperationId, from: NodeId, completed: bool, pause: Option<u64>) {
        let cmd = drive::finish(id, completed, pause, self.clock.unix_ms());
        self.propose_for(id, from, cmd, Awaiting::Finish);
    }

    /// Proposes `cmd` of operation `id` from its driver `from`, which then waits for
    /// the outcome; a driver that is down proposes nothing (the operation is driven
    /// again at the next tick, by whichever node leads its partition then).
    fn propose_for(&mut self, id: OperationId, from: NodeId, cmd: MetaCommand, awaiting: Awaiting) {
        if !self.agents.get(&from).is_some_and(|a| a.is_up()) {
            return self.wait_for(id, Awaiting::Nothing);
        }
        self.wait_for(id, awaiting);
        self.propose_then(from, cmd, Some(Then::Drive(id)));
    }

    /// A command of operation `id` committed (or never will: `result` is `None`).
    pub(super) fn on_drive_outcome(&mut self, id: OperationId, result: Option<&MetaResult>) {
        let Some(awaiting) = self.driven(id).map(|d| d.awaiting) else {
            return;
        };
        match (awaiting, result) {
            (Awaiting::Step, Some(Ok(_))) => self.drive(id),
            (Awaiting::Switch, Some(result)) => match switch_verdict(result) {
                SwitchVerdict::Switched => self.switched(id, result),
                SwitchVerdict::RolledBack(_) => self.roll_back(id),
                SwitchVerdict::Failed(_) => self.failed_step(id),
            },
            (Awaiting::Finish, _) => self.finished(id),
            _ => self.failed_step(id),
        }
    }

    /// The finish of operation `id` committed, or was lost (then the next tick finishes
    /// it again); a rolled-back operation is counted as failed.
    fn finished(&mut self, id: OperationId) {
        let Some(op) = self.log.state().operation(id).cloned() else {
            return;
        };
        if op.is_running() {
            return self.wait_for(id, Awaiting::Nothing);
        }
        if let Some(r) = self.rebalancer.as_mut() {
            r.running.remove(&id);
        }
        if op.status == OperationStatus::RolledBack {
            match (op.kind, self.scaler.as_mut(), self.rebalancer.as_mut()) {
                (OperationKind::Split { .. }, Some(s), _) => s.failed_splits += 1,
                (OperationKind::Move { .. }, _, Some(r)) => r.failed += 1,
                _ => {}
            }
        }
    }

    fn roll_back(&mut self, id: OperationId) {
        if let Some((_, primary)) = self.running_operation(id) {
            self.finish(id, primary, false, None);
        }
    }

    /// The switch of operation `id` committed: it completed (a split's commit ends it;
    /// its driver then reports the pause from its fence to the commit).
    fn switched(&mut self, id: OperationId, result: &MetaResult) {
        let now = self.now();
        let Some((op, primary)) = self.operation(id) else {
            return;
        };
        let fenced_at = self.driven(id).map_or(now, |d| d.fenced_at);
        let pause = match (op.kind, result) {
            (OperationKind::Split { .. }, Ok(MetaOutcome::PartitionSplit { left, right })) => {
                let write_pause = now - fenced_at;
                if let Some(s) = self.scaler.as_mut() {
                    s.splits.push(SplitDone {
                        parent: op.partition_id,
                        children: (*left, *right),
                        at: now,
                        write_pause,
                    });
                }
                Some(write_pause / 1000)
            }
            (OperationKind::Move { .. }, _) => {
                let r = self.rebalancer.as_mut().expect("enabled");
                r.moved += 1;
                r.committed_at.insert(op.partition_id, now);
                // No data plane: no write pause is measured.
                None
            }
            _ => None,
        };
        // A split's parent is gone: its first child's primary (the same node) finishes.
        self.finish(id, primary, true, pause);
    }

    /// A step of operation `id` failed: retried after a pause, or rolled back once its
    /// attempts are spent.
    fn failed_step(&mut self, id: OperationId) {
        let Some((op, primary)) = self.running_operation(id) else {
            return self.drive(id);
        };
        match retry_or_roll_back(&op, self.clock.unix_ms()) {
            Some(retry) => {
                self.wait_for(id, Awaiting::Retry);
                self.propose(primary, retry);
                let at = self.now() + STEP_RETRY_PAUSE_US;
                self.queue.push(at, Event::DriveTimer(id));
            }
            None => self.finish(id, primary, false, None),
        }
    }
}
