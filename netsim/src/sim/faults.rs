//! Faults: crashes, restarts with a new incarnation, pauses, lost zones, partitions and
//! loss. After each, the ground truth is re-evaluated.

use std::collections::BTreeSet;

use shared::model::NodeId;

use super::Simulation;
use crate::agent::Process;
use crate::event::{Event, Generation};
use crate::faults::Fault;
use crate::network::Cut;

/// Suffix of the reverse half of a two-way partition.
const BACK: &str = "/back";

impl Simulation {
    pub(super) fn on_fault(&mut self, fault: Fault) {
        match fault {
            Fault::Crash(node) => self.crash(node),
            Fault::Restart(node) => self.restart(node),
            Fault::Pause { node, for_us } => self.pause(node, for_us),
            Fault::LoseZone(zone) => {
                let nodes: Vec<NodeId> = self
                    .agents
                    .values()
                    .filter(|a| a.zone == zone && a.is_alive())
                    .map(|a| a.id)
                    .collect();
                for node in nodes {
                    self.crash(node);
                }
            }
            Fault::Partition {
                name,
                from,
                to,
                both_ways,
            } => {
                if both_ways {
                    let back = Cut {
                        from: to.clone(),
                        to: from.clone(),
                    };
                    self.net.cut(&format!("{name}{BACK}"), back);
                }
                self.net.cut(&name, Cut { from, to });
            }
            Fault::Heal(name) => {
                self.net.heal(&name);
                self.net.heal(&format!("{name}{BACK}"));
            }
            Fault::SetLoss(loss) => self.net.set_loss(loss),
            Fault::HealAll => self.net.heal_all(),
        }
        self.truth.update(self.now(), &self.agents, &self.net);
    }

    fn crash(&mut self, node: NodeId) {
        let Some(agent) = self.agents.get_mut(&node) else {
            return;
        };
        if !agent.is_alive() {
            return;
        }
        agent.crash();
        let held: BTreeSet<_> = self
            .log
            .state()
            .node(node)
            .map(|n| n.partition_ids.clone())
            .unwrap_or_default();
        let now = self.now();
        self.observer.crashed(node, now, &held);
    }

    /// A crashed agent starts again with the next incarnation and registers.
    fn restart(&mut self, node: NodeId) {
        let Some(agent) = self.agents.get_mut(&node) else {
            return;
        };
        if agent.is_alive() {
            return;
        }
        agent.incarnation += 1;
        let now = self.now();
        // It registers from its first reconcile tick on (`keep_registered`).
        self.boot_agent(node, now);
    }

    fn pause(&mut self, node: NodeId, for_us: u64) {
        let Some(agent) = self.agents.get_mut(&node) else {
            return;
        };
        if !agent.is_up() {
            return;
        }
        agent.process = Process::Paused;
        let generation = agent.generation;
        self.queue
            .push(self.now() + for_us, Event::Resume { node, generation });
    }

    pub(super) fn on_resume(&mut self, node: NodeId, generation: Generation) {
        let agent = self.agents.get_mut(&node).expect("known");
        if agent.generation != generation || agent.process != Process::Paused {
            return;
        }
        agent.process = Process::Up;
        agent.deferred_datagrams = 0;
        let deferred = std::mem::take(&mut agent.deferred);
        let now = self.now();
        // Everything that waited is handled now, in arrival order (late timers and
        // ticks, then the queued datagrams, as they came).
        for event in deferred {
            self.queue.push(now, event);
        }
        self.truth.update(now, &self.agents, &self.net);
    }
}
