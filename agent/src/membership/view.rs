//! One agent's view of the gossip membership: what foca believes about each member,
//! when each was last heard from, and its latest status report. Shared between the
//! gossip driver (writer), the controllers and the HTTP API (readers).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use shared::failure::{GossipState, NodeObservation};
use shared::model::{NodeId, UnixMillis};

use super::report::StatusReport;
use crate::metrics::GossipTraffic;
use crate::seam::Reachability;

/// What this agent knows about one other agent.
#[derive(Debug, Clone)]
pub struct PeerRecord {
    /// Foca's current belief.
    pub gossip: GossipState,
    /// When foca stopped believing it alive (cleared when it is alive again).
    pub suspected_since_ms: Option<UnixMillis>,
    /// Last direct message or fresh gossiped report from it, under any incarnation.
    pub last_proof_of_life_ms: Option<UnixMillis>,
    /// When this agent started watching it (first heard of it, here or in the metadata).
    pub watching_since_ms: UnixMillis,
    /// Its newest status report, and when that arrived here.
    pub report: Option<(StatusReport, UnixMillis)>,
}

impl PeerRecord {
    fn new(now: UnixMillis) -> Self {
        PeerRecord {
            gossip: GossipState::Unknown,
            suspected_since_ms: None,
            last_proof_of_life_ms: None,
            watching_since_ms: now,
            report: None,
        }
    }

    /// Records foca's belief; the suspicion clock starts when it stops being Alive and is
    /// cleared when it is Alive again.
    fn set_gossip(&mut self, state: GossipState, now: UnixMillis) {
        if state == GossipState::Alive {
            self.suspected_since_ms = None;
        } else if self.suspected_since_ms.is_none() {
            self.suspected_since_ms = Some(now);
        }
        self.gossip = state;
    }

    /// Records a proof of life at `now` (never moving the last one backwards).
    fn heard(&mut self, now: UnixMillis) {
        self.last_proof_of_life_ms = Some(self.last_proof_of_life_ms.unwrap_or(0).max(now));
    }

    /// The record as the pure failure rules take it.
    pub fn observation(&self) -> NodeObservation {
        NodeObservation {
            gossip: self.gossip,
            suspected_since_ms: self.suspected_since_ms,
            last_proof_of_life_ms: self.last_proof_of_life_ms,
            watching_since_ms: self.watching_since_ms,
        }
    }
}

#[derive(Debug, Default)]
struct View {
    peers: BTreeMap<NodeId, PeerRecord>,
}

/// Handle on one agent's membership view. Clones share it.
#[derive(Clone)]
pub struct Membership {
    me: NodeId,
    view: Arc<Mutex<View>>,
    traffic: GossipTraffic,
    declared_down: Arc<tokio::sync::Notify>,
}

impl Membership {
    /// An empty view for agent `me`, counting its traffic into `traffic`.
    pub fn new(me: NodeId, traffic: GossipTraffic) -> Self {
        Membership {
            me,
            view: Arc::default(),
            traffic,
            declared_down: Arc::default(),
        }
    }

    /// Notified when gossip declared this agent down while it kept running (foca then
    /// rejoins under a renewed identity); the agent re-registers with a new incarnation
    /// in case the leader committed its failure meanwhile.
    pub fn declared_down(&self) -> Arc<tokio::sync::Notify> {
        self.declared_down.clone()
    }

    /// This agent's node id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Gossip traffic counters.
    pub fn traffic(&self) -> &GossipTraffic {
        &self.traffic
    }

    /// Counts one datagram of `bytes` sent.
    pub fn count_sent(&self, bytes: usize) {
        self.traffic.sent_datagrams.inc();
        self.traffic.sent_bytes.inc_by(bytes as u64);
    }

    /// Counts one datagram of `bytes` received.
    pub fn count_received(&self, bytes: usize) {
        self.traffic.received_datagrams.inc();
        self.traffic.received_bytes.inc_by(bytes as u64);
    }

    /// Runs `f` on the record of `node` (created, watched from `now`, if new); never for
    /// this agent itself, which is not its own peer.
    fn update(&self, node: NodeId, now: UnixMillis, f: impl FnOnce(&mut PeerRecord)) {
        if node != self.me {
            let mut view = self.lock();
            f(view
                .peers
                .entry(node)
                .or_insert_with(|| PeerRecord::new(now)));
        }
    }

    /// Starts watching `node` (known from the metadata) if not watched yet.
    pub fn watch(&self, node: NodeId, now: UnixMillis) {
        self.update(node, now, |_| {});
    }

    /// Starts watching each of `nodes` not watched yet (the view's lock once).
    pub fn watch_all(&self, nodes: &[NodeId], now: UnixMillis) {
        let mut view = self.lock();
        for &node in nodes.iter().filter(|n| **n != self.me) {
            view.peers
                .entry(node)
                .or_insert_with(|| PeerRecord::new(now));
        }
    }

    /// `node` just proved it is alive (a direct message, a fresh report, a rejoin).
    pub fn proof_of_life(&self, node: NodeId, now: UnixMillis) {
        self.update(node, now, |r| r.heard(now));
    }

    /// Records foca's belief about `node`; the suspicion clock starts when it stops being
    /// Alive and is cleared when it is Alive again (refuted).
    pub fn set_gossip_state(&self, node: NodeId, state: GossipState, now: UnixMillis) {
        self.update(node, now, |record| record.set_gossip(state, now));
    }

    /// [`Self::set_gossip_state`] for each of `states` (the view's lock once).
    pub fn set_gossip_states(&self, states: &[(NodeId, GossipState)], now: UnixMillis) {
        let mut view = self.lock();
        for &(node, state) in states.iter().filter(|(n, _)| *n != self.me) {
            view.peers
                .entry(node)
                .or_insert_with(|| PeerRecord::new(now))
                .set_gossip(state, now);
        }
    }

    /// Keeps `report` if it is the newest seen from its origin; a fresh report from
    /// another agent is a proof of life. Returns whether it was fresh.
    pub fn accept_report(&self, report: StatusReport, now: UnixMillis) -> bool {
        let origin = report.node_id;
        let mut view = self.lock();
        let record = view
            .peers
            .entry(origin)
            .or_insert_with(|| PeerRecord::new(now));
        let fresh = record
            .report
            .as_ref()
            .is_none_or(|(known, _)| report.freshness() > known.freshness());
        if fresh {
            record.report = Some((report, now));
            if origin != self.me {
                record.heard(now);
            }
        }
        fresh
    }

    /// One peer's record.
    pub fn peer(&self, node: NodeId) -> Option<PeerRecord> {
        self.lock().peers.get(&node).cloned()
    }

    /// Every peer's record (this agent included only for its own report).
    pub fn peers(&self) -> BTreeMap<NodeId, PeerRecord> {
        self.lock().peers.clone()
    }

    /// Every watched peer's observation, for the failure rules (never this agent).
    pub fn observations(&self) -> BTreeMap<NodeId, NodeObservation> {
        self.lock()
            .peers
            .iter()
            .filter(|(id, _)| **id != self.me)
            .map(|(id, r)| (*id, r.observation()))
            .collect()
    }

    /// Members this agent's gossip does not see alive.
    pub fn not_alive(&self) -> BTreeSet<NodeId> {
        self.observations()
            .into_iter()
            .filter(|(_, o)| o.gossip != GossipState::Alive)
            .map(|(id, _)| id)
            .collect()
    }

    /// The newest report of `node` (this agent's own too).
    pub fn report(&self, node: NodeId) -> Option<StatusReport> {
        self.lock()
            .peers
            .get(&node)
            .and_then(|r| r.report.as_ref().map(|(report, _)| report.clone()))
    }

    /// The view; no caller can leave it inconsistent, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Reachability for Membership {
    fn unreachable(&self) -> BTreeSet<NodeId> {
        self.not_alive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::report::LoadSummary;

    fn report(node_id: NodeId, incarnation: u64, version: u64) -> StatusReport {
        StatusReport {
            node_id,
            incarnation,
            version,
            zone: "a".into(),
            endpoint: "http://x".into(),
            applied_index: 1,
            load: LoadSummary::default(),
        }
    }

    #[test]
    fn only_fresh_reports_prove_life() {
        let m = Membership::new(1, GossipTraffic::default());
        assert!(m.accept_report(report(2, 5, 1), 100));
        assert_eq!(m.peer(2).unwrap().last_proof_of_life_ms, Some(100));
        // A relayed copy of the same report, later: stale, proves nothing new.
        assert!(!m.accept_report(report(2, 5, 1), 900));
        assert_eq!(m.peer(2).unwrap().last_proof_of_life_ms, Some(100));
        // A restart (new incarnation) starts versions again and is still fresh.
        assert!(m.accept_report(report(2, 6, 0), 1000));
        assert_eq!(m.peer(2).unwrap().last_proof_of_life_ms, Some(1000));
    }

    #[test]
    fn suspicion_clock_starts_once_and_clears_on_refutation() {
        let m = Membership::new(1, GossipTraffic::default());
        m.watch(2, 10);
        m.set_gossip_state(2, GossipState::Suspect, 100);
        m.set_gossip_state(2, GossipState::Down, 300);
        assert_eq!(m.peer(2).unwrap().suspected_since_ms, Some(100));
        m.set_gossip_state(2, GossipState::Alive, 400);
        let p = m.peer(2).unwrap();
        assert_eq!((p.gossip, p.suspected_since_ms), (GossipState::Alive, None));
        assert_eq!(p.watching_since_ms, 10);
    }

    #[test]
    fn batched_updates_match_one_at_a_time() {
        let one = Membership::new(1, GossipTraffic::default());
        let batch = Membership::new(1, GossipTraffic::default());
        one.watch(2, 5);
        one.watch(3, 5);
        batch.watch_all(&[1, 2, 3], 5);
        let steps: [&[(NodeId, GossipState)]; 3] = [
            &[(2, GossipState::Suspect), (4, GossipState::Alive)],
            &[(2, GossipState::Down), (3, GossipState::Suspect)],
            &[(2, GossipState::Alive), (1, GossipState::Down)],
        ];
        for (i, step) in steps.iter().enumerate() {
            let now = 100 * (i as u64 + 1);
            for &(node, state) in *step {
                one.set_gossip_state(node, state, now);
            }
            batch.set_gossip_states(step, now);
            let view = |m: &Membership| {
                m.observations()
                    .into_iter()
                    .map(|(n, o)| (n, o.gossip, o.suspected_since_ms, o.watching_since_ms))
                    .collect::<Vec<_>>()
            };
            assert_eq!(view(&one), view(&batch), "after step {i}");
        }
        assert!(batch.peer(1).is_none(), "never its own peer");
    }

    #[test]
    fn own_report_is_kept_but_never_observed() {
        let m = Membership::new(1, GossipTraffic::default());
        assert!(m.accept_report(report(1, 1, 1), 5));
        assert!(m.report(1).is_some());
        assert!(m.observations().is_empty());
    }
}
