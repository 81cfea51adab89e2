//! Unit tests of the failure decisions: each condition alone blocks the decision.

use super::*;
use crate::testkit::cluster;

const WINDOW: u64 = 10_000;
const HOLD: u64 = 3_000;
const START: u64 = 1_000_000;

fn cfg() -> FailureConfig {
    FailureConfig {
        confirm_window_ms: WINDOW,
        suspicion_hold_ms: HOLD,
    }
}

/// Gossip `gossip` since `suspected_since`, last heard at `heard`, watched since START.
fn obs(gossip: GossipState, suspected_since: Option<u64>, heard: Option<u64>) -> NodeObservation {
    NodeObservation {
        gossip,
        suspected_since_ms: suspected_since,
        last_proof_of_life_ms: heard,
        watching_since_ms: START,
    }
}

/// Nodes 1..=4; node 1 is the leader.
fn state() -> MetaState {
    cluster(&["a", "b", "c", "a"])
}

fn failed_ids(cmds: &[MetaCommand]) -> Vec<NodeId> {
    cmds.iter()
        .map(|c| match c {
            MetaCommand::NodeFailed { node_id, .. } => *node_id,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn decide(s: &MetaState, observations: &[(NodeId, NodeObservation)], now: u64) -> Vec<NodeId> {
    let observations: BTreeMap<_, _> = observations.iter().cloned().collect();
    failed_ids(&nodes_to_fail(s, 1, &observations, now, &cfg()))
}

#[test]
fn a_silent_suspect_is_failed_after_the_window() {
    let s = state();
    let o = obs(GossipState::Suspect, Some(START + 5), Some(START + 5));
    assert!(decide(&s, &[(2, o.clone())], START + 5 + WINDOW - 1).is_empty());
    let at = START + 5 + WINDOW;
    let cmds = nodes_to_fail(&s, 1, &BTreeMap::from([(2, o)]), at, &cfg());
    assert_eq!(
        cmds,
        vec![MetaCommand::NodeFailed {
            node_id: 2,
            incarnation: 1,
            now_ms: at
        }]
    );
}

#[test]
fn refutation_blocks_the_decision() {
    let s = state();
    let alive = obs(GossipState::Alive, Some(START), Some(START));
    assert!(decide(&s, &[(2, alive)], START + 10 * WINDOW).is_empty());
}

#[test]
fn a_proof_of_life_inside_the_window_blocks_the_decision() {
    let s = state();
    let now = START + 5 * WINDOW;
    // Suspected long ago, but a message (of any incarnation) arrived recently.
    let o = obs(GossipState::Down, Some(START), Some(now - WINDOW + 1));
    assert!(decide(&s, &[(3, o)], now).is_empty());
    let o = obs(GossipState::Down, Some(START), Some(now - WINDOW));
    assert_eq!(decide(&s, &[(3, o)], now), vec![3]);
}

#[test]
fn a_recent_suspicion_blocks_the_decision() {
    let s = state();
    let now = START + 5 * WINDOW;
    let o = obs(GossipState::Suspect, Some(now - 1), Some(START));
    assert!(decide(&s, &[(3, o)], now).is_empty());
    let o = obs(GossipState::Suspect, Some(now - HOLD + 1), Some(START));
    assert!(decide(&s, &[(3, o)], now).is_empty());
    let o = obs(GossipState::Suspect, Some(now - HOLD), Some(START));
    assert_eq!(decide(&s, &[(3, o)], now), vec![3]);
}

#[test]
fn silence_counts_from_the_last_proof_of_life_not_from_the_suspicion() {
    let s = state();
    let crash = START + 5;
    // Gossip suspects the dead node late, 8 s after its last message: failed once the
    // suspicion has held for HOLD, not a whole window after it.
    let late = crash + 8_000;
    let o = obs(GossipState::Suspect, Some(late), Some(crash));
    assert!(decide(&s, &[(2, o.clone())], late + HOLD - 1).is_empty());
    assert_eq!(decide(&s, &[(2, o.clone())], late + HOLD), vec![2]);
    // Suspected early: the silence still needs the whole window.
    let early = crash + 500;
    let o = obs(GossipState::Suspect, Some(early), Some(crash));
    assert!(decide(&s, &[(2, o.clone())], crash + WINDOW - 1).is_empty());
    assert_eq!(decide(&s, &[(2, o)], crash + WINDOW), vec![2]);
}

#[test]
fn a_hold_longer_than_the_window_is_capped_at_the_window() {
    let s = state();
    let long = FailureConfig {
        confirm_window_ms: WINDOW,
        suspicion_hold_ms: 3 * WINDOW,
    };
    let o = obs(GossipState::Down, Some(START), Some(START));
    let observations = BTreeMap::from([(2, o)]);
    assert!(nodes_to_fail(&s, 1, &observations, START + WINDOW - 1, &long).is_empty());
    assert_eq!(
        failed_ids(&nodes_to_fail(&s, 1, &observations, START + WINDOW, &long)),
        vec![2]
    );
}

#[test]
fn a_node_never_heard_from_is_failed_once_watched_for_a_window() {
    let s = state();
    let o = obs(GossipState::Unknown, None, None);
    assert!(decide(&s, &[(4, o.clone())], START + WINDOW - 1).is_empty());
    assert_eq!(decide(&s, &[(4, o)], START + WINDOW), vec![4]);
}

#[test]
fn unwatched_me_and_out_of_service_nodes_are_never_failed() {
    // Eight nodes, so that the mass-failure guard stays out of the way.
    let mut s = cluster(&["a", "b", "c", "a", "b", "c", "a", "b"]);
    let now = START + 10 * WINDOW;
    let dead = obs(GossipState::Down, Some(START), None);
    assert!(
        decide(&s, &[], now).is_empty(),
        "no observation, no decision"
    );
    assert!(decide(&s, &[(1, dead.clone())], now).is_empty(), "never me");
    let fail = MetaCommand::NodeFailed {
        node_id: 2,
        incarnation: 1,
        now_ms: now,
    };
    s.apply(&fail).unwrap();
    let drain = MetaCommand::DrainNode {
        node_id: 3,
        remove: false,
        now_ms: now,
    };
    s.apply(&drain).unwrap();
    let mut all: Vec<_> = (1..=4).map(|n| (n, dead.clone())).collect();
    all.extend((5..=8).map(|n| (n, obs(GossipState::Alive, None, Some(now)))));
    assert_eq!(decide(&s, &all, now), vec![3, 4], "2 is already FAILED");
}

#[test]
fn the_shown_status_follows_gossip_only_for_healthy_nodes() {
    let mut s = state();
    let node = |s: &MetaState, id| s.node(id).unwrap().clone();
    let suspect = obs(GossipState::Suspect, Some(START), None);
    let alive = obs(GossipState::Alive, None, Some(START));
    let healthy = node(&s, 2);
    assert_eq!(view_status(&healthy, None), NodeStatus::Healthy);
    assert_eq!(view_status(&healthy, Some(&alive)), NodeStatus::Healthy);
    for gossip in [
        GossipState::Suspect,
        GossipState::Down,
        GossipState::Unknown,
    ] {
        let o = obs(gossip, None, None);
        assert_eq!(view_status(&healthy, Some(&o)), NodeStatus::Suspected);
    }
    let drain = MetaCommand::DrainNode {
        node_id: 2,
        remove: false,
        now_ms: START,
    };
    s.apply(&drain).unwrap();
    assert_eq!(
        view_status(&node(&s, 2), Some(&suspect)),
        NodeStatus::Draining
    );
    let fail = MetaCommand::NodeFailed {
        node_id: 2,
        incarnation: 1,
        now_ms: START,
    };
    s.apply(&fail).unwrap();
    assert_eq!(view_status(&node(&s, 2), Some(&alive)), NodeStatus::Failed);
    let decommission = MetaCommand::DecommissionNode {
        node_id: 2,
        now_ms: START,
    };
    s.apply(&decommission).unwrap();
    assert_eq!(
        view_status(&node(&s, 2), Some(&alive)),
        NodeStatus::Decommissioned
    );
}

#[test]
fn staleness_counts_from_the_last_proof_of_life() {
    let heard = obs(GossipState::Alive, None, Some(START));
    assert_eq!(heartbeat_staleness_ms(&heard, START + 42), Some(42));
    assert_eq!(
        heartbeat_staleness_ms(&heard, START - 1),
        Some(0),
        "clock skew"
    );
    let never = obs(GossipState::Unknown, None, None);
    assert_eq!(heartbeat_staleness_ms(&never, START), None);
}

#[test]
fn gossip_state_serializes_in_screaming_snake_case() {
    let json = serde_json::to_string(&GossipState::Suspect).unwrap();
    assert_eq!(json, "\"SUSPECT\"");
}

/// Node `id` registers again (a restart: a new incarnation) at `at`.
fn reregister(s: &mut MetaState, id: NodeId, at: u64) {
    let cmd = MetaCommand::RegisterNode {
        node_id: id,
        endpoint: format!("http://n{id}"),
        peer_addr: format!("n{id}:7100"),
        zone: "b".into(),
        incarnation: s.node(id).unwrap().incarnation + 1,
        now_ms: at,
    };
    s.apply(&cmd).unwrap();
}

#[test]
fn a_committed_registration_is_a_proof_of_life_and_resets_the_suspicion() {
    let mut s = state();
    let now = START + 5 * WINDOW;
    // Suspected and silent for a whole window, as gossip saw the old incarnation...
    let o = obs(GossipState::Suspect, Some(now - WINDOW), Some(now - WINDOW));
    assert_eq!(decide(&s, &[(2, o.clone())], now), vec![2]);
    // ...but the node re-registered 1 s ago: not failed.
    reregister(&mut s, 2, now - 1_000);
    assert!(decide(&s, &[(2, o.clone())], now).is_empty());
    // The new incarnation is judged on its own: silent for a window since it registered.
    assert!(decide(&s, &[(2, o.clone())], now - 1_000 + WINDOW - 1).is_empty());
    let later = now - 1_000 + WINDOW;
    let cmds = nodes_to_fail(&s, 1, &BTreeMap::from([(2, o)]), later, &cfg());
    assert_eq!(
        cmds,
        vec![MetaCommand::NodeFailed {
            node_id: 2,
            incarnation: 2,
            now_ms: later
        }]
    );
}

#[test]
fn a_leader_that_hears_from_fewer_than_half_of_the_nodes_fails_none() {
    // Nodes 1..=5; node 1 leads and hears nothing from 2, 3 and 4 for the window.
    let s = cluster(&["a", "b", "c", "a", "b"]);
    let silent = obs(GossipState::Suspect, Some(START), Some(START));
    let heard = |at| obs(GossipState::Alive, None, Some(at));
    let at = START + WINDOW;
    let mut view: Vec<_> = [2, 3, 4].into_iter().map(|n| (n, silent.clone())).collect();
    view.push((5, heard(at)));
    assert!(
        decide(&s, &view, at).is_empty(),
        "3 of 4 silent: the leader is more likely cut off than they are dead"
    );
    // Not for ever: a cluster that really lost most of its nodes fails them, later.
    let much_later = START + WINDOW * ISOLATION_GUARD_MAX_WINDOWS;
    let mut later_view = view[..3].to_vec();
    later_view.push((5, heard(much_later)));
    assert!(decide(&s, &later_view, much_later - 1).is_empty());
    assert_eq!(decide(&s, &later_view, much_later), vec![2, 3, 4]);
    // Two silent of four, the others heard from: both failed.
    let view = vec![
        (2, silent.clone()),
        (3, silent.clone()),
        (4, heard(at)),
        (5, heard(at)),
    ];
    assert_eq!(decide(&s, &view, at), vec![2, 3]);
}

mod props {
    //! The rule against a brute-force restatement, on random observations: a node is
    //! never failed while heard from within the window or seen ALIVE, nor before its
    //! suspicion held for the hold; and it is failed once both held (guard aside).

    use proptest::prelude::*;

    use super::*;

    fn observation() -> impl Strategy<Value = NodeObservation> {
        (
            prop_oneof![
                Just(GossipState::Alive),
                Just(GossipState::Suspect),
                Just(GossipState::Down),
                Just(GossipState::Unknown),
            ],
            prop::option::of(0u64..3 * WINDOW),
            prop::option::of(0u64..3 * WINDOW),
            0u64..WINDOW,
        )
            .prop_map(|(gossip, suspected, heard, watching)| NodeObservation {
                gossip,
                suspected_since_ms: suspected.map(|t| START + t),
                last_proof_of_life_ms: heard.map(|t| START + t),
                watching_since_ms: START + watching,
            })
    }

    proptest! {
        #[test]
        fn one_node_is_failed_exactly_when_silent_for_the_window_and_suspected_for_the_hold(
            o in observation(),
            now in 0u64..4 * WINDOW,
            hold in 0u64..=WINDOW,
        ) {
            // Eight nodes, the others heard from: the isolation guard stays out.
            let s = cluster(&["a", "b", "c", "a", "b", "c", "a", "b"]);
            let now = START + now;
            let cfg = FailureConfig { confirm_window_ms: WINDOW, suspicion_hold_ms: hold };
            let mut observations: BTreeMap<_, _> = (3..=8)
                .map(|n| (n, obs(GossipState::Alive, None, Some(now))))
                .collect();
            observations.insert(2, o.clone());
            let failed = failed_ids(&nodes_to_fail(&s, 1, &observations, now, &cfg)) == vec![2];
            let last_heard = o.last_proof_of_life_ms.unwrap_or(0).max(o.watching_since_ms);
            let suspected = o.suspected_since_ms.unwrap_or(o.watching_since_ms);
            let silent = now >= last_heard + WINDOW;
            let held = o.gossip != GossipState::Alive && now >= suspected + hold;
            prop_assert_eq!(failed, silent && held, "{:?} at {}", o, now);
            if failed {
                prop_assert!(now >= last_heard + WINDOW, "never within the window of a proof of life");
            }
        }
    }
}
