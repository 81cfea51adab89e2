//! Gossip: each agent's real `GossipCore`, fed datagrams, foca timers and the driver's
//! periodic duties; what it asks to send goes through the network model.

use agent::membership::{DISCOVERY_INTERVAL, GossipId, STATE_REFRESH};
use foca::Timer;
use shared::model::NodeId;

use super::Simulation;
use crate::config::CONTROLLER_TICK_US;
use crate::event::{Event, Tick};
use crate::network::Fate;
use crate::time::{Micros, millis};

impl Simulation {
    /// Starts a process of agent `id` at `at`: its gossip core and periodic duties.
    pub(crate) fn boot_agent(&mut self, id: NodeId, at: Micros) {
        let seed = self.rng.next_seed();
        let agent = self.agents.get_mut(&id).expect("known agent");
        agent.boot(&self.cfg, &self.clock, seed, &self.copies);
        agent.note_caught_up(self.log.commit_index());
        let generation = agent.generation;
        self.truth.update(at, &self.agents, &self.net);
        // The driver's intervals all tick once at start, then every period.
        for tick in [
            Tick::Status,
            Tick::Discovery,
            Tick::Refresh,
            Tick::Reconcile,
        ] {
            self.queue.push(
                at,
                Event::Tick {
                    node: id,
                    generation,
                    tick,
                },
            );
        }
    }

    fn tick_period(&self, tick: Tick) -> Micros {
        match tick {
            Tick::Status => millis(self.cfg.gossip.status_interval_ms),
            Tick::Discovery => DISCOVERY_INTERVAL.as_micros() as Micros,
            Tick::Refresh => STATE_REFRESH.as_micros() as Micros,
            Tick::Reconcile => CONTROLLER_TICK_US,
        }
    }

    pub(super) fn on_tick(&mut self, node: NodeId, tick: Tick) {
        let agent = self.agents.get_mut(&node).expect("checked");
        let generation = agent.generation;
        if let Some(core) = agent.core.as_mut() {
            match tick {
                Tick::Status => core.publish_status(),
                Tick::Discovery => core.discover(),
                Tick::Refresh => core.refresh_states(),
                Tick::Reconcile => {}
            }
        }
        if tick == Tick::Reconcile {
            self.keep_registered(node);
            self.reconcile(node);
        } else {
            self.carry_out(node);
        }
        let at = self.now() + self.tick_period(tick);
        self.queue.push(
            at,
            Event::Tick {
                node,
                generation,
                tick,
            },
        );
    }

    pub(super) fn on_datagram(&mut self, to: NodeId, bytes: &[u8]) {
        let agent = self.agents.get_mut(&to).expect("checked");
        if let Some(core) = agent.core.as_mut() {
            core.handle_datagram(bytes);
            self.carry_out(to);
        }
    }

    pub(super) fn on_gossip_timer(&mut self, node: NodeId, timer: Timer<GossipId>) {
        let agent = self.agents.get_mut(&node).expect("checked");
        if let Some(core) = agent.core.as_mut() {
            core.handle_timer(timer);
            self.carry_out(node);
        }
    }

    /// Sends what agent `node`'s core asked for through the network, and schedules its
    /// timers.
    fn carry_out(&mut self, node: NodeId) {
        let agent = self.agents.get_mut(&node).expect("checked");
        let generation = agent.generation;
        let Some(core) = agent.core.as_mut() else {
            return;
        };
        let effects = core.drain();
        let now = self.now();
        for (dst, bytes) in effects.datagrams {
            let to = dst.node_id;
            if let Fate::Delivered(delays) = self.net.datagram(&mut self.rng, node, to) {
                for delay in delays {
                    let event = Event::Datagram {
                        to,
                        from: node,
                        bytes: bytes.clone(),
                    };
                    self.queue.push(now + delay, event);
                }
            }
        }
        for (after, timer) in effects.timers {
            let event = Event::GossipTimer {
                node,
                generation,
                timer,
            };
            self.queue.push(now + after.as_micros() as Micros, event);
        }
    }
}
