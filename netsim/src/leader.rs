//! The leader's controllers: the agent's own `FailureDetector`, `RecoveryCoordinator`,
//! `PartitionAssigner`, `VoterManager`, `SigningKeyKeeper` and `Scaler`, over the
//! simulator's seams, run as futures polled by the event loop. Like the agent's
//! `run_on_leader`, each controller runs one step at a time; a wake-up during a step
//! runs another step right after it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use agent::control::assigner::PartitionAssigner;
use agent::control::failure::FailureDetector;
use agent::control::keys::SigningKeyKeeper;
use agent::control::recovery::RecoveryCoordinator;
use agent::control::scaler::Scaler;
use agent::control::voters::VoterManager;
use agent::membership::Membership;
use agent::seam::StateHandle;
use shared::failure::FailureConfig;
use shared::lifecycle::AssignerConfig;
use shared::placement::VoterConfig;
use shared::recovery::RecoveryConfig;

use crate::event::Controller;
use crate::seam::{SimContacts, SimKeys, SimMeta, SimPositions, SimVoters};
use crate::sim::SimLoads;
use crate::time::VirtualClock;

type Step = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A learner this far behind the leader's log is not promoted (the agent's default
/// `voters.promote_max_lag_entries`).
const PROMOTE_MAX_LAG_ENTRIES: u64 = 100;

/// Steps started in one go when wake-ups keep arriving (bounded so a controller that
/// finishes at once cannot spin the loop).
const RERUNS_PER_POLL_MAX: usize = 4;

#[derive(Default)]
struct Task {
    step: Option<Step>,
    rerun: bool,
}

/// The controllers of the agent that leads.
pub struct LeaderControllers {
    /// Term this agent leads in.
    pub term: u64,
    /// Peers that answered this leader's heartbeats.
    pub contacts: Arc<SimContacts>,
    detector: Arc<FailureDetector<SimMeta, SimContacts>>,
    recovery: Arc<RecoveryCoordinator<SimMeta, SimPositions>>,
    assigner: Option<Arc<PartitionAssigner<SimMeta, Membership>>>,
    voters: Arc<VoterManager<SimVoters>>,
    keys: Arc<SigningKeyKeeper<SimMeta, SimKeys>>,
    /// The Scaler, once the simulation enables it (a new leader starts a fresh one, with
    /// no load history, as the agent's does).
    scaler: Option<Arc<Scaler<SimMeta, SimLoads>>>,
    meta: Arc<SimMeta>,
    replica: StateHandle,
    membership: Membership,
    clock: agent::seam::Clock,
    tasks: BTreeMap<Controller, Task>,
}

/// What the controllers are built from.
pub struct LeaderParts<'a> {
    /// Term.
    pub term: u64,
    /// The leader's log seam.
    pub meta: Arc<SimMeta>,
    /// The leader's replica.
    pub replica: &'a StateHandle,
    /// The leader's gossip view.
    pub membership: &'a Membership,
    /// Virtual clock.
    pub clock: &'a VirtualClock,
    /// Failure rule.
    pub failure: FailureConfig,
    /// Recovery target.
    pub recovery: RecoveryConfig,
    /// The Partition Assigner's settings, when it runs.
    pub assigner: Option<AssignerConfig>,
    /// The simulated log's membership, as the Voter Manager sees and changes it.
    pub voters: SimVoters,
}

impl LeaderControllers {
    /// The controllers of a new leader.
    pub fn new(parts: LeaderParts<'_>) -> Self {
        let contacts = Arc::new(SimContacts::new(parts.clock.clone()));
        let clock = parts.clock.unix_clock();
        let detector = Arc::new(FailureDetector::new(
            parts.meta.clone(),
            parts.replica.clone(),
            parts.membership.clone(),
            contacts.clone(),
            parts.failure,
            clock.clone(),
        ));
        // Members the leader's gossip does not see alive get no new copies (the agent
        // judges by its Raft contacts, which netsim does not model per RPC).
        let assigner = parts.assigner.map(|config| {
            Arc::new(PartitionAssigner::new(
                parts.meta.clone(),
                parts.replica.clone(),
                config,
                clock.clone(),
                Arc::new(parts.membership.clone()),
            ))
        });
        let recovery = Arc::new(RecoveryCoordinator::new(
            parts.meta.clone(),
            parts.replica.clone(),
            parts.membership.clone(),
            Arc::new(SimPositions),
            parts.recovery,
            clock.clone(),
        ));
        let voters = Arc::new(VoterManager::new(
            Arc::new(parts.voters),
            parts.replica.clone(),
            parts.membership.clone(),
            VoterConfig::default(),
            PROMOTE_MAX_LAG_ENTRIES,
        ));
        let keys = Arc::new(SigningKeyKeeper::new(
            parts.meta.clone(),
            parts.replica.clone(),
            Arc::new(SimKeys::new(parts.meta.clone(), clock.clone())),
            clock.clone(),
        ));
        LeaderControllers {
            term: parts.term,
            contacts,
            detector,
            recovery,
            assigner,
            voters,
            keys,
            scaler: None,
            meta: parts.meta,
            replica: parts.replica.clone(),
            membership: parts.membership.clone(),
            clock,
            tasks: BTreeMap::new(),
        }
    }

    /// Gives this leader the Scaler (once), with `config` over `loads`.
    pub fn ensure_scaler(
        &mut self,
        config: &shared::scaler::CheckedScalerConfig,
        loads: impl FnOnce(&StateHandle, &Arc<SimMeta>) -> Arc<SimLoads>,
    ) {
        if self.scaler.is_none() {
            self.scaler = Some(Arc::new(Scaler::new(
                self.meta.clone(),
                self.replica.clone(),
                self.membership.clone(),
                loads(&self.replica, &self.meta),
                config.clone(),
                self.clock.clone(),
            )));
        }
    }

    /// Wakes `controller`: starts a step, or asks for another after the running one.
    pub fn wake(&mut self, controller: Controller) {
        let running = self
            .tasks
            .get(&controller)
            .is_some_and(|t| t.step.is_some());
        if running {
            self.tasks.entry(controller).or_default().rerun = true;
        } else {
            let step = self.start(controller);
            self.tasks.entry(controller).or_default().step = Some(step);
        }
        self.poll();
    }

    fn start(&self, controller: Controller) -> Step {
        match controller {
            Controller::Failure => {
                let detector = self.detector.clone();
                Box::pin(async move { detector.step().await })
            }
            Controller::Recovery => {
                let recovery = self.recovery.clone();
                Box::pin(async move { recovery.step().await })
            }
            Controller::Assigner => match self.assigner.clone() {
                Some(assigner) => Box::pin(async move { assigner.step().await }),
                None => Box::pin(async {}),
            },
            Controller::Voters => {
                let voters = self.voters.clone();
                Box::pin(async move { voters.step().await })
            }
            Controller::Keys => {
                let keys = self.keys.clone();
                Box::pin(async move { keys.step().await })
            }
            Controller::Scaler => match self.scaler.clone() {
                Some(scaler) => Box::pin(async move { scaler.step().await }),
                None => Box::pin(async {}),
            },
        }
    }

    /// Polls every running step once (after a proposal outcome arrived, or a start).
    pub fn poll(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        let controllers: Vec<Controller> = self.tasks.keys().copied().collect();
        for controller in controllers {
            for _ in 0..RERUNS_PER_POLL_MAX {
                let task = self.tasks.get_mut(&controller).expect("listed");
                let Some(step) = task.step.as_mut() else {
                    break;
                };
                if step.as_mut().poll(&mut cx) == Poll::Pending {
                    break;
                }
                task.step = None;
                if !std::mem::take(&mut task.rerun) {
                    break;
                }
                let next = self.start(controller);
                self.tasks.get_mut(&controller).expect("listed").step = Some(next);
            }
        }
    }
}
