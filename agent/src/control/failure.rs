//! Failure Detector (leader only): turns a gossip suspicion that outlived the confirmation
//! window into one committed `NodeFailed{node, incarnation}`. The rule is the pure
//! `shared::failure::nodes_to_fail`; exactly-once comes from the state machine, which
//! ignores a repeated or stale decision (a new leader re-deciding, a racing proposal).

use std::collections::BTreeMap;
use std::sync::Arc;

use shared::command::{MetaCommand, MetaOutcome};
use shared::failure::{FailureConfig, NodeObservation, nodes_to_fail};
use shared::model::NodeId;

use crate::membership::Membership;
use crate::meta::client::MetaClient;
use crate::seam::Clock;
use crate::seam::ContactAges;
use crate::seam::MetaLog;
use crate::seam::PeerContacts;
use crate::seam::StateHandle;

/// The failure detector of one (leader) node, over a metadata log `M` (openraft in the
/// agent, simulated in `netsim`) and a record `C` of the peers that answered it.
pub struct FailureDetector<M = MetaClient, C = PeerContacts> {
    meta: Arc<M>,
    state: StateHandle,
    membership: Membership,
    contacts: Arc<C>,
    config: FailureConfig,
    clock: Clock,
}

impl<M: MetaLog, C: ContactAges> FailureDetector<M, C> {
    /// Creates the detector.
    pub fn new(
        meta: Arc<M>,
        state: StateHandle,
        membership: Membership,
        contacts: Arc<C>,
        config: FailureConfig,
        clock: Clock,
    ) -> Self {
        FailureDetector {
            meta,
            state,
            membership,
            contacts,
            config,
            clock,
        }
    }

    /// The gossip view, with every Raft reply the leader got also counted as a proof of
    /// life: a member that answers heartbeats is alive whatever gossip believes.
    fn observations(&self, now: u64) -> BTreeMap<NodeId, NodeObservation> {
        let mut observations = self.membership.observations();
        let ages = self.contacts.ages();
        self.state.read(|s| {
            for (id, obs) in observations.iter_mut() {
                let Some(age) = s.node(*id).and_then(|n| ages.get(&n.peer_addr)) else {
                    continue;
                };
                let heard = now.saturating_sub(age.as_millis() as u64);
                obs.last_proof_of_life_ms = Some(obs.last_proof_of_life_ms.unwrap_or(0).max(heard));
            }
        });
        observations
    }

    /// Commits every failure the current view calls for.
    pub async fn step(&self) {
        let now = (self.clock)();
        let observations = self.observations(now);
        let me = self.meta.node_id();
        let decisions = self
            .state
            .read(|s| nodes_to_fail(s, me, &observations, now, &self.config));
        for cmd in decisions {
            let MetaCommand::NodeFailed {
                node_id,
                incarnation,
                ..
            } = &cmd
            else {
                continue;
            };
            let (node_id, incarnation) = (*node_id, *incarnation);
            match self.meta.propose(cmd).await {
                Ok(Ok(MetaOutcome::Unchanged)) => {}
                Ok(Ok(_)) => {
                    self.meta.metrics().node_failed_decisions.inc();
                    tracing::warn!(node_id, incarnation, "node failed: committed NodeFailed");
                }
                Ok(Err(e)) => tracing::debug!(node_id, error = %e, "NodeFailed rejected"),
                Err(e) => {
                    tracing::warn!(error = %e, "failure detector cannot reach the leader");
                    return;
                }
            }
        }
    }
}
