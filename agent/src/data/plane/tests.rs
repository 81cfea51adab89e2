//! The data plane of a one-node cluster (a real in-memory Raft, a real partition store)
//! at its primary's checks: what it refuses, and what it asks the metadata for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use shared::command::MetaCommand;
use shared::command::PartitionChange;
use shared::data::{
    DataPeerReply, DataPeerRequest, LogPosition, ReplicaError, ReplicaReply, ReplicaRequest,
};
use shared::data::{ItemError, WriteOp, WriteRecord};
use shared::model::{NodeId, PartitionId};

use super::{DataPlane, DataPlaneParts, ItemCall, ItemCallKind};
use crate::data::DataConfig;
use crate::data::store::PartitionStore;
use crate::meta::client::MetaClient;
use crate::meta::freshness::MetaFreshness;
use crate::meta::tests::support::{MemNet, TestNode, addr, fast_config};
use crate::metrics::AgentMetrics;
use crate::seam::PeerContacts;
use crate::seam::fake::orders_table;

const T0: u64 = 1_796_601_600_000;
const WAIT: Duration = Duration::from_secs(10);

/// One agent leading one ACTIVE table of one partition (id 1), without replicas.
struct OneNode {
    data: Arc<DataPlane>,
    meta: Arc<MetaClient>,
    store: Arc<PartitionStore>,
    _node: TestNode,
    _dir: tempfile::TempDir,
}

async fn one_node() -> OneNode {
    let n = start(table_of_one_partition()).await;
    // Started leading partition 1: it is fenced and moved to a new epoch first.
    let caught_up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    n.data.clone().arm_fences(caught_up).await;
    wait_for_epoch_after(&n.meta, 1).await;
    n
}

/// Agent 1 of a one-voter metadata store holding `commands`, with partition 1 allocated.
async fn start(commands: Vec<MetaCommand>) -> OneNode {
    let net = MemNet::default();
    let node = TestNode::start(&net, 1, fast_config()).await;
    let members = BTreeMap::from([(1, BasicNode::new(addr(1)))]);
    node.raft.initialize(members).await.expect("initialize");
    node.raft
        .wait(Some(WAIT))
        .metrics(|m| m.current_leader == Some(1), "node 1 leads")
        .await
        .expect("leader");
    let metrics = Arc::new(AgentMetrics::new());
    let freshness = Arc::new(MetaFreshness::new(
        node.raft.clone(),
        Arc::new(PeerContacts::default()),
    ));
    let meta = Arc::new(MetaClient::new(
        1,
        node.raft.clone(),
        node.handle.clone(),
        Arc::new(net.clone()),
        WAIT,
        metrics,
        freshness.clone(),
    ));
    for cmd in commands {
        let result = meta.propose(cmd.clone()).await.expect("committed");
        assert!(result.is_ok(), "{cmd:?}: {result:?}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(PartitionStore::open(dir.path()).expect("store"));
    store.allocate(&[1]).expect("allocate");
    let data = DataPlane::new(DataPlaneParts {
        me: 1,
        state: node.handle.clone(),
        store: store.clone(),
        peers: Arc::new(net),
        meta: meta.clone(),
        freshness,
        config: DataConfig::default(),
        clock: Arc::new(|| T0),
    });
    OneNode {
        data,
        meta,
        store,
        _node: node,
        _dir: dir,
    }
}

fn table_of_one_partition() -> Vec<MetaCommand> {
    table_on(&[1])
}

/// Nodes 1 to `members.len()` and table `orders` of one partition on `members` (the
/// primary first), ready and ACTIVE.
fn table_on(members: &[NodeId]) -> Vec<MetaCommand> {
    let [create, assign] = orders_table(members[0], members[1..].to_vec(), T0);
    let mut commands = vec![MetaCommand::InitCluster {
        cluster_id: "plane-test".into(),
    }];
    for &node_id in members {
        commands.push(MetaCommand::RegisterNode {
            node_id,
            endpoint: format!("http://127.0.0.1:700{node_id}"),
            peer_addr: addr(node_id),
            zone: "z1".into(),
            incarnation: T0,
            now_ms: T0,
        });
    }
    commands.extend([create, assign]);
    for &node_id in members {
        commands.push(MetaCommand::PartitionsReady {
            node_id,
            partition_ids: vec![1],
        });
    }
    commands.push(MetaCommand::ActivateTable {
        table_id: 1,
        now_ms: T0,
    });
    commands
}

fn call(kind: ItemCallKind) -> ItemCall {
    ItemCall {
        table: "orders".into(),
        partition_key: "a".into(),
        sort_key: None,
        kind,
        expected_epoch: None,
    }
}

fn put() -> ItemCall {
    call(ItemCallKind::Put(br#"{"v":1}"#.to_vec()))
}

fn epoch_of(meta: &MetaClient, pid: PartitionId) -> u64 {
    meta.state()
        .read(|s| s.partition(pid).map(|p| p.epoch))
        .expect("partition")
}

/// Waits until partition 1 is past `epoch`.
async fn wait_for_epoch_after(meta: &MetaClient, epoch: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while epoch_of(meta, 1) <= epoch {
        assert!(tokio::time::Instant::now() < deadline, "epoch never moved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_primary_whose_copy_holds_a_newer_epoch_refuses_to_write_and_writes_nothing() {
    let n = one_node().await;
    n.data.call(put()).await.expect("a first write");
    let lead = epoch_of(&n.meta, 1);
    // A newer primary's record reached this copy (its metadata is behind its copy).
    let at = n.store.position(1).unwrap();
    let newer = WriteRecord {
        lsn: at.lsn + 1,
        epoch: lead + 3,
        partition_key: b"b".to_vec(),
        sort_key: None,
        op: WriteOp::Delete,
    };
    let held = n.store.append(1, &[newer]).unwrap();
    match n.data.call(put()).await {
        Err(ItemError::Unavailable(why)) => {
            assert!(why.contains("its copy holds epoch"), "{why}")
        }
        other => panic!("written over a newer epoch: {other:?}"),
    }
    assert_eq!(n.store.position(1).unwrap(), held, "nothing was written");
}

#[tokio::test]
async fn a_partition_in_doubt_that_is_only_read_asks_for_a_new_epoch_and_serves_at_it() {
    let n = one_node().await;
    n.data.call(put()).await.expect("a first write");
    let epoch = epoch_of(&n.meta, 1);
    // A write's outcome became unknown: the partition is fenced at its epoch.
    n.data.primary.fences.fence(1, epoch);
    // Addressed at its epoch, the read is answered at once (`call` would retry it).
    let at_epoch = ItemCall {
        expected_epoch: Some(epoch),
        ..call(ItemCallKind::Get)
    };
    match n.data.call(at_epoch).await {
        Err(ItemError::Unavailable(why)) => assert!(why.contains("new epoch"), "{why}"),
        other => panic!("read served in doubt: {other:?}"),
    }
    // The read alone asked for the epoch change: nothing writes any more.
    wait_for_epoch_after(&n.meta, epoch).await;
    let read = n.data.call(call(ItemCallKind::Get)).await;
    assert!(read.is_ok(), "{read:?}");
}

/// What a replica answers to an append of one record at `epoch` after `prev`.
async fn append(n: &OneNode, epoch: u64, prev: LogPosition) -> Result<LogPosition, ReplicaError> {
    let record = WriteRecord {
        lsn: prev.lsn + 1,
        epoch,
        partition_key: b"a".to_vec(),
        sort_key: None,
        op: WriteOp::Put(br#"{"v":1}"#.to_vec()),
    };
    let request = DataPeerRequest::Replica(ReplicaRequest::Append {
        partition_id: 1,
        epoch,
        prev,
        records: vec![record],
    });
    match n.data.handle_peer(request).await {
        DataPeerReply::Replica(ReplicaReply::Appended(result)) => result,
        other => panic!("{other:?}"),
    }
}

/// Commits a new epoch of partition 1 with `primary` and `replicas`.
async fn reconfigure(n: &OneNode, primary: NodeId, replicas: Vec<NodeId>) -> u64 {
    let epoch = epoch_of(&n.meta, 1);
    let change = PartitionChange {
        partition_id: 1,
        expected_epoch: epoch,
        primary_node_id: primary,
        replica_node_ids: replicas,
    };
    let cmd = MetaCommand::RepairPartitions {
        changes: vec![change],
    };
    assert!(n.meta.propose(cmd).await.expect("committed").is_ok());
    epoch + 1
}

#[tokio::test]
async fn a_late_append_of_the_primary_that_kept_its_role_is_taken_and_no_other() {
    // Agent 1 is the replica; agent 2, the primary, is this test.
    let n = start(table_on(&[2, 1])).await;
    let first = epoch_of(&n.meta, 1);
    let at = append(&n, first, n.store.position(1).unwrap())
        .await
        .unwrap();
    // The replica set changed and kept the primary (a replica added or released) while
    // its next write was in flight: that write is taken, not left in doubt.
    let second = reconfigure(&n, 2, vec![1]).await;
    let at = append(&n, first, at).await.expect("a late append is taken");
    let at = append(&n, second, at).await.unwrap();
    // Once the log holds a record of the new epoch, an older one is refused.
    assert!(matches!(
        append(&n, first, at).await,
        Err(ReplicaError::StaleEpoch { current }) if current == second
    ));
    // A replica that became the primary refuses its predecessor's late appends.
    let third = reconfigure(&n, 1, vec![2]).await;
    assert!(matches!(
        append(&n, second, at).await,
        Err(ReplicaError::StaleEpoch { current }) if current == third
    ));
    assert_eq!(
        n.store.position(1).unwrap(),
        at,
        "nothing refused was written"
    );
}
