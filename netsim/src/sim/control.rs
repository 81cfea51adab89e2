//! Scheduling of the leader's controllers, as the agent's `run_on_leader` does it: each
//! runs on its own tick and whenever the leader's replica applies something, only while
//! its agent leads.

use shared::failure::FailureConfig;
use shared::lifecycle::AssignerConfig;
use shared::model::NodeId;
use shared::placement::PlacementConfig;
use shared::recovery::RecoveryConfig;

use super::Simulation;
use crate::config::{ASSIGNER_DELETE_RELEASE_TIMEOUT_MS, CONTROLLER_TICK_US, FAILURE_CHECK_US};
use crate::event::{Controller, Event};
use crate::leader::{LeaderControllers, LeaderParts};
use crate::time::Micros;

/// Every controller the leader runs (the assigner only when enabled).
const CONTROLLERS: [Controller; 5] = [
    Controller::Failure,
    Controller::Recovery,
    Controller::Assigner,
    Controller::Voters,
    Controller::Keys,
];

impl Simulation {
    /// The controllers this run's leader runs.
    fn controllers(&self) -> Vec<Controller> {
        CONTROLLERS
            .into_iter()
            .filter(|c| self.cfg.assigner || *c != Controller::Assigner)
            .collect()
    }

    /// Gives the new leader `node` of `term` its controllers, first run at `at`.
    pub(super) fn start_controllers(&mut self, node: NodeId, term: u64, at: Micros) {
        // The Voter Manager's first step sees the membership as it is, not an empty one.
        self.refresh_voters(node, &[]);
        let agent = self.agents.get_mut(&node).expect("known");
        agent.leader = Some(LeaderControllers::new(LeaderParts {
            term,
            meta: agent.meta.clone(),
            replica: &agent.replica,
            membership: &agent.membership,
            clock: &self.clock,
            failure: FailureConfig {
                confirm_window_ms: self.cfg.failure_confirm_window_ms,
                suspicion_hold_ms: self.cfg.failure_suspicion_hold_ms,
            },
            recovery: RecoveryConfig {
                replication_factor: self.cfg.replication_factor,
            },
            assigner: self.cfg.assigner.then(|| AssignerConfig {
                placement: PlacementConfig {
                    replication_factor: self.cfg.replication_factor,
                    ..PlacementConfig::default()
                },
                delete_release_timeout_ms: ASSIGNER_DELETE_RELEASE_TIMEOUT_MS,
                // No capacity change is simulated: no table is left SCALING for merges.
                merges: false,
            }),
            voters: self.voters.clone(),
        }));
        let generation = agent.generation;
        let controllers = self.controllers();
        for controller in controllers {
            self.queue.push(
                at,
                Event::Control {
                    node,
                    generation,
                    controller,
                },
            );
        }
    }

    /// Whether `node` leads and its controllers belong to the current term.
    fn leads(&self, node: NodeId) -> bool {
        self.log.leader == Some(node)
            && self.agents[&node]
                .leader
                .as_ref()
                .is_some_and(|c| c.term == self.log.term)
    }

    fn period(controller: Controller) -> Micros {
        match controller {
            Controller::Failure => FAILURE_CHECK_US,
            Controller::Recovery | Controller::Assigner | Controller::Voters | Controller::Keys => {
                CONTROLLER_TICK_US
            }
            Controller::Scaler => unreachable!("on_scale wakes the Scaler, on its interval"),
        }
    }

    pub(super) fn on_control(&mut self, node: NodeId, controller: Controller) {
        if !self.leads(node) {
            // Deposed: the controllers stop (their proposals fail as not leader).
            self.agents.get_mut(&node).expect("known").leader = None;
            return;
        }
        let agent = self.agents.get_mut(&node).expect("known");
        let generation = agent.generation;
        agent.leader.as_mut().expect("leads").wake(controller);
        let at = self.now() + Self::period(controller);
        self.queue.push(
            at,
            Event::Control {
                node,
                generation,
                controller,
            },
        );
    }

    /// The leader's replica applied entries: every controller wakes, and the drivers
    /// take up the operations the Scaler started (the agent's primaries start theirs
    /// on apply too).
    pub(super) fn wake_controllers(&mut self, node: NodeId) {
        if !self.leads(node) {
            return;
        }
        self.adopt_scaler_operations();
        let which = self.controllers();
        let controllers = self.agents.get_mut(&node).expect("known").leader.as_mut();
        let controllers = controllers.expect("leads");
        for controller in which {
            controllers.wake(controller);
        }
    }

    /// A proposal of `node`'s controllers has its outcome: let them go on.
    pub(super) fn poll_controllers(&mut self, node: NodeId) {
        if let Some(controllers) = self.agents.get_mut(&node).and_then(|a| a.leader.as_mut()) {
            controllers.poll();
        }
    }
}

impl Simulation {
    /// Runs one round of the leader's Scaler (given to it on its first round).
    pub(super) fn run_scaler(&mut self, leader: NodeId) {
        if !self.leads(leader) {
            return;
        }
        let Some(scaler) = self.scaler.as_ref() else {
            return;
        };
        let controllers = self.agents.get_mut(&leader).expect("known").leader.as_mut();
        let controllers = controllers.expect("leads");
        controllers.ensure_scaler(scaler.config(), |replica, meta| scaler.seams(replica, meta));
        controllers.wake(Controller::Scaler);
    }
}
