//! The leader's controllers under the agent's supervisor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::command::MetaCommand;
use shared::failure::{FailureConfig, GossipState};
use shared::model::NodeId;
use shared::placement::VoterConfig;
use shared::state::MetaState;

use super::failure::FailureDetector;
use super::voters::VoterManager;
use crate::membership::Membership;
use crate::metrics::{AgentMetrics, GossipTraffic, TaskLabels};
use crate::seam::fake::RecordingLog;
use crate::seam::{BoxFuture, ContactAges, MembersView, StateHandle, VoterMembership};
use crate::supervisor::Supervisor;

const T0: u64 = 1_796_601_600_000;

/// Raft contacts whose first read panics: the injected fault.
#[derive(Default)]
struct PanicsOnce(AtomicUsize);

impl ContactAges for PanicsOnce {
    fn ages(&self) -> HashMap<String, Duration> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("injected panic in the failure detector");
        }
        HashMap::new()
    }
}

/// Four agents registered at `T0`; node 2 went silent then, and gossip declared it down.
fn cluster_with_a_dead_node(now: u64) -> (StateHandle, Membership) {
    let mut state = MetaState::new();
    for id in 1..=4u64 {
        state
            .apply(&MetaCommand::RegisterNode {
                node_id: id,
                endpoint: format!("http://127.0.0.1:{}", 7000 + id),
                peer_addr: format!("127.0.0.1:{}", 8000 + id),
                zone: "z1".into(),
                incarnation: T0,
                now_ms: T0,
            })
            .unwrap();
    }
    let membership = Membership::new(1, GossipTraffic::default());
    membership.watch_all(&[2, 3, 4], T0);
    membership.set_gossip_state(2, GossipState::Down, T0 + 1_000);
    for id in [3, 4] {
        membership.set_gossip_state(id, GossipState::Alive, T0);
        membership.proof_of_life(id, now);
    }
    (StateHandle::detached(state), membership)
}

#[tokio::test(start_paused = true)]
async fn a_controller_that_panics_is_counted_restarted_and_decides_again() {
    let now = T0 + 20_000;
    let (state, membership) = cluster_with_a_dead_node(now);
    let log = Arc::new(RecordingLog::default());
    let contacts = Arc::new(PanicsOnce::default());
    let detector = Arc::new(FailureDetector::new(
        log.clone(),
        state,
        membership,
        contacts.clone(),
        FailureConfig {
            confirm_window_ms: 3_000,
            suspicion_hold_ms: 2_000,
        },
        Arc::new(move || now),
    ));
    let metrics = Arc::new(AgentMetrics::new());
    let tasks = Supervisor::new(metrics.clone());
    tasks.keep_running("failure-detector", move || {
        let detector = detector.clone();
        async move {
            loop {
                detector.step().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    let failures = metrics
        .task_failures
        .get_or_create(&TaskLabels {
            task: "failure-detector",
        })
        .get();
    assert_eq!(failures, 1, "the panic is counted once");
    assert!(
        contacts.0.load(Ordering::SeqCst) > 2,
        "the detector runs again"
    );
    let committed = log.committed.lock().unwrap().clone();
    let failed: BTreeMap<NodeId, u64> = committed
        .iter()
        .filter_map(|c| match c {
            MetaCommand::NodeFailed {
                node_id,
                incarnation,
                ..
            } => Some((*node_id, *incarnation)),
            _ => None,
        })
        .collect();
    assert_eq!(failed, BTreeMap::from([(2, T0)]), "{committed:?}");
}

/// A Raft membership that records the changes asked of it.
struct FakeRaftMembers {
    view: MembersView,
    changes: Mutex<Vec<String>>,
}

impl VoterMembership for FakeRaftMembers {
    fn members(&self) -> MembersView {
        self.view.clone()
    }

    fn remove(&self, nodes: BTreeSet<NodeId>) -> BoxFuture<'_, Result<(), String>> {
        self.changes
            .lock()
            .unwrap()
            .push(format!("remove {nodes:?}"));
        Box::pin(std::future::ready(Ok(())))
    }

    fn replace_voters(&self, voters: BTreeSet<NodeId>) -> BoxFuture<'_, Result<(), String>> {
        self.changes
            .lock()
            .unwrap()
            .push(format!("voters {voters:?}"));
        Box::pin(std::future::ready(Ok(())))
    }

    fn add_learner(&self, node: NodeId, addr: String) -> BoxFuture<'_, Result<(), String>> {
        self.changes
            .lock()
            .unwrap()
            .push(format!("learner {node} {addr}"));
        Box::pin(std::future::ready(Ok(())))
    }
}

fn voter_manager(
    view: MembersView,
    failed: &[NodeId],
    alive: &[NodeId],
) -> (VoterManager<FakeRaftMembers>, Arc<FakeRaftMembers>) {
    let (state, membership) = cluster_with_a_dead_node(T0 + 20_000);
    let mut meta_state = state.read(MetaState::clone);
    for &node_id in failed {
        meta_state
            .apply(&MetaCommand::NodeFailed {
                node_id,
                incarnation: T0,
                now_ms: T0 + 5_000,
            })
            .unwrap();
    }
    for &id in alive {
        membership.set_gossip_state(id, GossipState::Alive, T0);
    }
    let raft = Arc::new(FakeRaftMembers {
        view,
        changes: Mutex::default(),
    });
    let manager = VoterManager::new(
        raft.clone(),
        StateHandle::detached(meta_state),
        membership,
        VoterConfig::default(),
        10,
    );
    (manager, raft)
}

#[tokio::test]
async fn the_voter_manager_replaces_a_failed_voter_by_a_caught_up_live_learner() {
    let view = MembersView {
        me: 1,
        voters: BTreeSet::from([1, 2, 3]),
        learners: BTreeSet::from([4]),
        last_log_index: 100,
        matched: BTreeMap::from([(2, 100), (3, 40), (4, 95)]),
    };
    let (manager, raft) = voter_manager(view, &[3], &[4]);
    manager.step().await;
    let changes = raft.changes.lock().unwrap().clone();
    assert_eq!(changes, vec!["voters {1, 2, 4}".to_string()]);
}

#[tokio::test]
async fn the_voter_manager_removes_a_failed_learner_first_and_adds_back_a_missing_node() {
    let view = MembersView {
        me: 1,
        voters: BTreeSet::from([1, 2, 3]),
        learners: BTreeSet::from([4]),
        last_log_index: 100,
        matched: BTreeMap::from([(2, 100), (3, 100), (4, 100)]),
    };
    let (manager, raft) = voter_manager(view, &[4], &[]);
    manager.step().await;
    assert_eq!(raft.changes.lock().unwrap().clone(), vec!["remove {4}"]);

    // Node 4 rejoined (HEALTHY again) but is missing from the membership.
    let view = MembersView {
        me: 1,
        voters: BTreeSet::from([1, 2, 3]),
        learners: BTreeSet::new(),
        last_log_index: 100,
        matched: BTreeMap::new(),
    };
    let (manager, raft) = voter_manager(view, &[], &[]);
    manager.step().await;
    assert_eq!(
        raft.changes.lock().unwrap().clone(),
        vec!["learner 4 127.0.0.1:8004"]
    );
}

/// Keys made from seeds: the current one, and how many rotations were asked for.
struct SeededKeys {
    current: Mutex<(String, u8)>,
    rotations: AtomicUsize,
}

const DAY_MS: u64 = 86_400_000;
const GRACE_MS: u64 = 3_600_000;

fn public_key(seed: u8) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .to_bytes()
}

impl SeededKeys {
    fn new(kid: &str, seed: u8) -> Self {
        SeededKeys {
            current: Mutex::new((kid.to_string(), seed)),
            rotations: AtomicUsize::new(0),
        }
    }
}

impl crate::seam::SigningKeyRing for SeededKeys {
    type Held<'a> = ();

    fn hold(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn current(&self) -> (String, [u8; 32]) {
        let (kid, seed) = self.current.lock().unwrap().clone();
        (kid, public_key(seed))
    }

    fn rotation_period_ms(&self) -> u64 {
        DAY_MS
    }

    fn grace_ms(&self) -> u64 {
        GRACE_MS
    }

    fn rotate<'a>(&'a self, _held: &'a ()) -> BoxFuture<'a, Result<(), String>> {
        self.rotations.fetch_add(1, Ordering::SeqCst);
        let mut current = self.current.lock().unwrap();
        *current = (format!("{}-next", current.0), current.1 + 1);
        Box::pin(std::future::ready(Ok(())))
    }
}

fn publish(state: &mut MetaState, kid: &str, node_id: NodeId, seed: u8, now_ms: u64) {
    let cmd = MetaCommand::PublishSigningKey {
        kid: kid.into(),
        public_key: public_key(seed),
        node_id,
        now_ms,
    };
    state.apply(&cmd).unwrap();
}

type Keeper = super::keys::SigningKeyKeeper<RecordingLog, SeededKeys>;

/// The key keeper of node 1 (current key `node1-key`) over `state`, at `now`.
fn keeper(state: MetaState, now: u64) -> (Keeper, Arc<RecordingLog>, Arc<SeededKeys>) {
    let log = Arc::new(RecordingLog::of(1));
    let keys = Arc::new(SeededKeys::new("node1-key", 1));
    let clock: crate::seam::Clock = Arc::new(move || now);
    let replica = StateHandle::detached(state);
    let keeper = Keeper::new(log.clone(), replica, keys.clone(), clock);
    (keeper, log, keys)
}

#[tokio::test]
async fn the_key_keeper_publishes_a_new_leaders_key_and_retires_the_former_leaders() {
    let (state, _) = cluster_with_a_dead_node(T0);
    let mut s = state.read(|s| s.clone());
    publish(&mut s, "node2-key", 2, 2, T0);
    let (keeper, log, keys) = keeper(s, T0 + 10);
    keeper.step().await;
    assert_eq!(
        log.taken(),
        vec![
            MetaCommand::PublishSigningKey {
                kid: "node1-key".into(),
                public_key: public_key(1),
                node_id: 1,
                now_ms: T0 + 10,
            },
            MetaCommand::RetireSigningKey {
                kid: "node2-key".into(),
                now_ms: T0 + 10,
                trusted_until_ms: T0 + 10 + GRACE_MS,
            },
        ]
    );
    assert_eq!(keys.rotations.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_key_keeper_rotates_a_key_older_than_its_period_and_drops_expired_ones() {
    let (state, _) = cluster_with_a_dead_node(T0);
    let mut s = state.read(|s| s.clone());
    publish(&mut s, "node1-key", 1, 1, T0);
    publish(&mut s, "node3-key", 3, 3, T0);
    s.apply(&MetaCommand::RetireSigningKey {
        kid: "node3-key".into(),
        now_ms: T0,
        trusted_until_ms: T0 + GRACE_MS,
    })
    .unwrap();
    let log = Arc::new(RecordingLog::of(1));
    let keys = Arc::new(SeededKeys::new("node1-key", 1));
    let clock: crate::seam::Clock = Arc::new(|| T0 + DAY_MS);
    let keeper = super::keys::SigningKeyKeeper::new(
        log.clone(),
        StateHandle::detached(s),
        keys.clone(),
        clock,
    );
    keeper.step().await;
    assert_eq!(
        keys.rotations.load(Ordering::SeqCst),
        1,
        "a day old: rotated"
    );
    assert_eq!(
        log.taken(),
        vec![MetaCommand::DropExpiredKeys {
            now_ms: T0 + DAY_MS
        }],
        "the retired key is past its grace period"
    );
}
