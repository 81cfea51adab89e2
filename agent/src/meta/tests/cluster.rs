//! In-process Raft clusters over an in-memory transport: convergence, learner catch-up by
//! snapshot, and restart of a single node from its files.

use std::collections::BTreeMap;

use openraft::BasicNode;
use shared::command::{MetaCommand, MetaError, MetaResult};
use shared::state::MetaState;

use super::support::{MemNet, TestNode, WAIT, addr, fast_config, init_cluster, register};
use crate::meta::Raft;

/// Commits `cmd` through `raft` (the leader) and returns its result and log index.
async fn write(raft: &Raft, cmd: MetaCommand) -> (MetaResult, u64) {
    let resp = raft.client_write(cmd).await.expect("client_write");
    (resp.data, resp.log_id.index)
}

async fn wait_leader(raft: &Raft) -> u64 {
    let metrics = raft
        .wait(Some(WAIT))
        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
        .await
        .expect("leader");
    metrics.current_leader.unwrap()
}

fn members(ids: &[u64]) -> BTreeMap<u64, BasicNode> {
    ids.iter()
        .map(|id| (*id, BasicNode::new(addr(*id))))
        .collect()
}

fn state_of(node: &TestNode) -> MetaState {
    node.handle.read(|s| s.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_converge_and_a_learner_catches_up_by_snapshot() {
    let net = MemNet::default();
    let config = fast_config();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(TestNode::start(&net, id, config.clone()).await);
    }
    nodes[0]
        .raft
        .initialize(members(&[1, 2, 3]))
        .await
        .expect("initialize");
    let leader_id = wait_leader(&nodes[0].raft).await;
    let leader = nodes
        .iter()
        .find(|n| n.id == leader_id)
        .unwrap()
        .raft
        .clone();

    assert!(write(&leader, init_cluster()).await.0.is_ok());
    for id in 1..=3 {
        assert!(write(&leader, register(id, 10)).await.0.is_ok());
    }
    // A rejected command is still committed: it returns its error and changes nothing.
    let (rejected, _) = write(&leader, register(2, 1)).await;
    assert!(
        matches!(rejected, Err(MetaError::StaleIncarnation { .. })),
        "{rejected:?}"
    );
    // Enough further entries for several snapshots (policy: every 5 logs).
    let mut last = 0;
    for incarnation in 11..=20 {
        let (result, index) = write(&leader, register(3, incarnation)).await;
        assert!(result.is_ok(), "{result:?}");
        last = index;
    }

    for node in &nodes {
        node.wait_applied(last).await;
    }
    let expected = state_of(&nodes[0]);
    assert_ne!(expected, MetaState::default());
    for node in &nodes[1..] {
        assert!(state_of(node) == expected, "node {} diverged", node.id);
    }

    // Snapshot everything and purge the whole log, so a newcomer cannot catch up from it.
    leader.trigger().snapshot().await.unwrap();
    let wait = leader.wait(Some(WAIT));
    wait.metrics(|m| m.snapshot.is_some_and(|s| s.index >= last), "snapshot")
        .await
        .unwrap();
    leader.trigger().purge_log(last).await.unwrap();
    wait.metrics(|m| m.purged.is_some_and(|p| p.index >= last), "purged")
        .await
        .unwrap();

    let learner = TestNode::start(&net, 4, config.clone()).await;
    leader
        .add_learner(4, BasicNode::new(addr(4)), true)
        .await
        .expect("add learner");
    learner.wait_applied(last).await;
    // Openraft publishes its metrics shortly after the state machine reports the install.
    learner
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= last),
            "learner installed the snapshot",
        )
        .await
        .expect("learner installed no snapshot");
    assert!(state_of(&learner) == expected, "learner diverged");

    // The learner then follows the log like everyone else.
    let (result, index) = write(&leader, register(4, 1)).await;
    assert!(result.is_ok(), "{result:?}");
    learner.wait_applied(index).await;
    nodes[0].wait_applied(index).await;
    assert!(state_of(&learner) == state_of(&nodes[0]));

    for node in nodes.into_iter().chain([learner]) {
        node.stop(&net).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_recovers_state_from_snapshot_and_log() {
    let net = MemNet::default();
    let config = fast_config();
    let node = TestNode::start(&net, 1, config.clone()).await;
    node.raft
        .initialize(members(&[1]))
        .await
        .expect("initialize");
    wait_leader(&node.raft).await;

    assert!(write(&node.raft, init_cluster()).await.0.is_ok());
    let mut last = 0;
    // 12 entries with a snapshot every 5: the restart needs a snapshot plus a log tail.
    for incarnation in 1..=12 {
        last = write(&node.raft, register(1, incarnation)).await.1;
    }
    node.wait_applied(last).await;
    let before = state_of(&node);
    let dir = node.stop(&net).await;

    let node = TestNode::start_in(&net, 1, config, dir).await;
    // The committed log is re-applied while Raft starts, before any election.
    assert!(
        node.handle.applied_index() >= last,
        "applied {}",
        node.handle.applied_index()
    );
    assert!(state_of(&node) == before);
    node.raft
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some(), "the snapshot is recovered")
        .await
        .expect("no snapshot was recovered");

    wait_leader(&node.raft).await;
    let (result, _) = write(&node.raft, register(1, 13)).await;
    assert!(result.is_ok(), "{result:?}");
    node.stop(&net).await;
}
