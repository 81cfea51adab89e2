//! The gossip driver over the in-memory network, in paused (virtual) tokio time: five
//! agents converge, a crashed one is suspected then down everywhere, the leader's rule
//! fails it once the window has passed, and the live ones are never suspected.

use std::sync::Arc;
use std::time::Duration;

use shared::command::MetaCommand;
use shared::failure::{FailureConfig, GossipState, nodes_to_fail};
use shared::state::MetaState;
use tokio::task::JoinHandle;

use super::report::LoadSummary;
use super::{DriverParts, GossipDriver, GossipId, LocalMember, Membership};
use crate::config::GossipConfig;
use crate::metrics::GossipTraffic;
use crate::seam::Clock;
use crate::seam::StateHandle;
use crate::transport::memory::MemoryNetwork;

const NODES: u64 = 5;
/// Unix time at which the virtual clock starts.
const START_MS: u64 = 1_000_000;

fn addr(id: u64) -> String {
    format!("node{id}:7100")
}

fn registered_cluster() -> MetaState {
    let mut state = MetaState::new();
    for id in 1..=NODES {
        let cmd = MetaCommand::RegisterNode {
            node_id: id,
            endpoint: format!("http://node{id}:7070"),
            peer_addr: addr(id),
            zone: format!("zone-{}", id % 3),
            incarnation: 1,
            now_ms: START_MS,
        };
        state.apply(&cmd).expect("registered");
    }
    state
}

/// Unix milliseconds following tokio's (paused) clock.
fn virtual_clock() -> Clock {
    let origin = tokio::time::Instant::now();
    Arc::new(move || START_MS + origin.elapsed().as_millis() as u64)
}

struct Agent {
    membership: Membership,
    task: JoinHandle<()>,
}

fn start_agents(net: &MemoryNetwork, state: &StateHandle, clock: &Clock) -> Vec<Agent> {
    (1..=NODES)
        .map(|id| {
            let membership = Membership::new(id, GossipTraffic::default());
            let (driver, inbox) = GossipDriver::new(DriverParts {
                local: LocalMember {
                    id: GossipId::new(id, addr(id), 1),
                    zone: format!("zone-{}", id % 3),
                    endpoint: format!("http://node{id}:7070"),
                },
                config: GossipConfig::default(),
                membership: membership.clone(),
                sender: net.datagram_sender(&addr(id)),
                state: state.clone(),
                status: Arc::new(move || (id * 10, LoadSummary::default())),
                clock: clock.clone(),
                seed: Some(id),
            });
            net.register_datagrams(&addr(id), inbox);
            Agent {
                membership,
                task: tokio::spawn(driver.run()),
            }
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn agents_converge_detect_a_crash_and_never_suspect_the_living() {
    let net = MemoryNetwork::new();
    let state = StateHandle::detached(registered_cluster());
    let clock = virtual_clock();
    let agents = start_agents(&net, &state, &clock);

    tokio::time::sleep(Duration::from_secs(5)).await;
    for (i, agent) in agents.iter().enumerate() {
        let me = i as u64 + 1;
        for other in (1..=NODES).filter(|&o| o != me) {
            let peer = agent.membership.peer(other).expect("watched");
            assert_eq!(peer.gossip, GossipState::Alive, "{me} sees {other}");
            let report = agent
                .membership
                .report(other)
                .expect("status report arrived");
            assert_eq!(report.applied_index, other * 10);
            assert!(peer.last_proof_of_life_ms.is_some());
        }
    }

    // Node 5 crashes: its datagrams stop and nothing reaches it.
    net.unregister(&addr(5));
    agents[4].task.abort();
    let crashed_at = clock();
    let window = FailureConfig {
        confirm_window_ms: 3000,
        suspicion_hold_ms: 2200,
    };
    let observer = &agents[0].membership;
    let last_heard = observer
        .peer(5)
        .and_then(|p| p.last_proof_of_life_ms)
        .expect("heard before the crash");
    let mut decided_after = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let decisions =
            state.read(|s| nodes_to_fail(s, 1, &observer.observations(), clock(), &window));
        if !decisions.is_empty() {
            assert_eq!(decisions.len(), 1, "only the crashed node: {decisions:?}");
            assert!(matches!(
                decisions[0],
                MetaCommand::NodeFailed { node_id: 5, .. }
            ));
            let suspected = observer.peer(5).and_then(|p| p.suspected_since_ms);
            let suspected = suspected.expect("suspected");
            assert!(
                clock() - suspected >= window.suspicion_hold_ms,
                "not before the hold"
            );
            decided_after = Some(clock() - crashed_at);
            break;
        }
    }
    let decided_after = decided_after.expect("the crash is decided within 10 s");
    // The silence counts from the last message, which came (just) before the crash.
    assert!(
        crashed_at + decided_after - last_heard >= window.confirm_window_ms,
        "not before a window of silence"
    );
    assert!(
        decided_after < window.confirm_window_ms + window.suspicion_hold_ms,
        "decided within the window plus the hold"
    );
    for agent in &agents[..4] {
        let peer = agent.membership.peer(5).expect("watched");
        assert_ne!(peer.gossip, GossipState::Alive);
        for other in 1..=4 {
            if other != agent.membership.me() {
                let p = agent.membership.peer(other).expect("watched");
                assert_eq!(
                    p.gossip,
                    GossipState::Alive,
                    "no false suspicion of {other}"
                );
            }
        }
    }
}
