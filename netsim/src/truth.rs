//! Ground truth the agents cannot see: which nodes are really impaired (crashed,
//! paused, cut off from a majority, or behind links lossier than promised), and since
//! when they are fine. The failure invariant judges `NodeFailed` decisions against it.

use std::collections::BTreeMap;

use shared::model::NodeId;

use crate::agent::SimAgent;
use crate::network::Network;
use crate::time::Micros;

/// The loss up to which a link counts as working: the detector promises no false
/// failure at 10% loss; beyond it a failure is a measured figure, not a broken promise.
pub const PROMISED_LOSS_MAX: f64 = 0.10;

/// Per node: impaired now, and when it last stopped being impaired.
#[derive(Debug, Default)]
pub struct Truth {
    impaired: BTreeMap<NodeId, bool>,
    last_impaired_at: BTreeMap<NodeId, Micros>,
}

impl Truth {
    /// Re-evaluates every node at `now` (after any fault starts or ends).
    pub fn update(&mut self, now: Micros, agents: &BTreeMap<NodeId, SimAgent>, net: &Network) {
        let nodes: Vec<NodeId> = agents.keys().copied().collect();
        let majority = nodes.len() / 2 + 1;
        // Without cuts or per-link loss every link is alike: an up node reaches every up
        // node, and the count is the same for all (this runs at every boot: N^2 per call
        // was most of a 1,000-node bootstrap).
        let all_links_work = net
            .uniform_loss()
            .is_some_and(|loss| loss <= PROMISED_LOSS_MAX);
        let up = agents.values().filter(|a| a.is_up()).count();
        for (&id, agent) in agents {
            let working = |m: &NodeId| {
                *m == id
                    || agents[m].is_up()
                        && net.mutual(id, *m)
                        && net.loss(id, *m) <= PROMISED_LOSS_MAX
                        && net.loss(*m, id) <= PROMISED_LOSS_MAX
            };
            // A node that is down is impaired whatever its links (counting them for every
            // node not yet booted was N^3 over a 1,000-node bootstrap).
            let impaired = !agent.is_up()
                || if all_links_work {
                    up
                } else {
                    nodes.iter().filter(|m| working(m)).count()
                } < majority;
            let was = self.impaired.insert(id, impaired).unwrap_or(false);
            if impaired || was {
                self.last_impaired_at.insert(id, now);
            }
        }
    }

    /// Whether `node` has been working (up and reachable from a majority) for the whole
    /// of `[now - window, now]`.
    pub fn fine_throughout(&self, node: NodeId, now: Micros, window: Micros) -> bool {
        if self.impaired.get(&node).copied().unwrap_or(false) {
            return false;
        }
        self.last_impaired_at
            .get(&node)
            .is_none_or(|t| now.saturating_sub(*t) >= window)
    }
}
