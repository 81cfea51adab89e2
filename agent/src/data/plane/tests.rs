//! The data plane of a one-node cluster (a real in-memory Raft, a real partition store)
//! at its primary's checks: what it refuses, and what it asks the metadata for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use shared::command::MetaCommand;
use shared::data::{ItemError, WriteOp, WriteRecord};
use shared::model::PartitionId;

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
    for cmd in table_of_one_partition() {
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
    // Started leading partition 1: it is fenced and moved to a new epoch first.
    let caught_up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    data.clone().arm_fences(caught_up).await;
    wait_for_epoch_after(&meta, 1).await;
    OneNode {
        data,
        meta,
        store,
        _node: node,
        _dir: dir,
    }
}

fn table_of_one_partition() -> Vec<MetaCommand> {
    let [create, assign] = orders_table(1, vec![], T0);
    vec![
        MetaCommand::InitCluster {
            cluster_id: "plane-test".into(),
        },
        MetaCommand::RegisterNode {
            node_id: 1,
            endpoint: "http://127.0.0.1:7001".into(),
            peer_addr: addr(1),
            zone: "z1".into(),
            incarnation: T0,
            now_ms: T0,
        },
        create,
        assign,
        MetaCommand::PartitionsReady {
            node_id: 1,
            partition_ids: vec![1],
        },
        MetaCommand::ActivateTable {
            table_id: 1,
            now_ms: T0,
        },
    ]
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
