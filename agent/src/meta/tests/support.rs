//! Test helpers: fresh stores, commands, and a tiny in-memory transport.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use openraft::{
    BasicNode, CommittedLeaderId, Config, Entry, EntryPayload, Membership, SnapshotPolicy,
};
use redb::Database;
use shared::command::MetaCommand;
use tempfile::TempDir;

use crate::meta::types::{LogId, TypeConfig};
use crate::meta::{
    LogStore, PeerNetworkFactory, PeerRequest, PeerResponse, Raft, StateMachineStore,
    handle_raft_request,
};
use crate::seam::StateHandle;
use crate::transport::{BoxFuture, RpcClient, RpcHandler, TransportError};

/// Upper bound for anything a test waits on.
pub const WAIT: Duration = Duration::from_secs(10);

/// Opens (or creates) the database file at `path`.
pub fn open_db(path: &Path) -> Arc<Database> {
    Arc::new(Database::create(path).expect("open redb"))
}

/// Opens the database file at `path`, retrying while a previous instance finishes closing
/// (the last `Arc` is released before `Database::drop` has run to completion).
pub async fn reopen_db(path: &Path) -> Arc<Database> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match Database::create(path) {
            Ok(db) => return Arc::new(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("open redb: {e}"),
        }
    }
}

/// Opens both stores on `db`.
pub fn open_stores(db: &Arc<Database>) -> (LogStore, StateMachineStore, StateHandle) {
    let log = LogStore::open(db.clone()).expect("open log store");
    let (sm, handle) = StateMachineStore::open(db.clone()).expect("open state machine");
    (log, sm, handle)
}

/// Waits until every handle to the database is gone, so the file can be opened again.
pub async fn wait_closed(db: Weak<Database>) {
    tokio::time::timeout(WAIT, async {
        while db.strong_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("database still open");
}

pub fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

pub fn normal(term: u64, index: u64, cmd: MetaCommand) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(cmd),
    }
}

pub fn membership(term: u64, index: u64, voters: &[u64]) -> Entry<TypeConfig> {
    let nodes: BTreeMap<u64, BasicNode> = voters
        .iter()
        .map(|id| (*id, BasicNode::new(addr(*id))))
        .collect();
    let config = Membership::new(vec![nodes.keys().copied().collect()], nodes);
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(config),
    }
}

pub fn init_cluster() -> MetaCommand {
    MetaCommand::InitCluster {
        cluster_id: "test-cluster".into(),
    }
}

pub fn register(node_id: u64, incarnation: u64) -> MetaCommand {
    MetaCommand::RegisterNode {
        node_id,
        endpoint: format!("http://{}", addr(node_id)),
        peer_addr: addr(node_id),
        zone: format!("z{}", node_id % 3),
        incarnation,
        now_ms: 1_000 + incarnation,
    }
}

pub fn addr(node_id: u64) -> String {
    format!("node{node_id}:7000")
}

/// Raft config with short timers and snapshots every few entries, logs purged right after.
pub fn fast_config() -> Arc<Config> {
    let config = Config {
        cluster_name: "meta-test".into(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(5),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Default::default()
    };
    Arc::new(config.validate().expect("valid raft config"))
}

/// In-memory transport: addresses map to handlers in this process.
#[derive(Clone, Default)]
pub struct MemNet {
    handlers: Arc<Mutex<HashMap<String, Arc<dyn RpcHandler>>>>,
}

impl MemNet {
    pub fn register(&self, addr: String, handler: Arc<dyn RpcHandler>) {
        self.handlers.lock().unwrap().insert(addr, handler);
    }

    pub fn unregister(&self, addr: &str) {
        self.handlers.lock().unwrap().remove(addr);
    }
}

impl RpcClient for MemNet {
    fn call(&self, addr: &str, request: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        let handler = self.handlers.lock().unwrap().get(addr).cloned();
        let addr = addr.to_string();
        Box::pin(async move {
            match handler {
                Some(handler) => Ok(handler.handle(request).await),
                None => Err(TransportError::Connect {
                    addr,
                    reason: "no such node".into(),
                }),
            }
        })
    }
}

/// Serves the Raft RPCs of one node.
struct RaftHandler {
    raft: Raft,
}

impl RpcHandler for RaftHandler {
    fn handle(&self, request: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let response = match PeerRequest::decode(&request) {
                Ok(req) => handle_raft_request(&self.raft, req)
                    .await
                    .unwrap_or_else(|| PeerResponse::BadRequest("not a raft rpc".into())),
                Err(e) => PeerResponse::BadRequest(e.to_string()),
            };
            response.encode().expect("encode response")
        })
    }
}

/// One in-process agent's metadata store.
pub struct TestNode {
    pub id: u64,
    pub raft: Raft,
    pub handle: StateHandle,
    pub db: Weak<Database>,
    pub dir: TempDir,
}

impl TestNode {
    /// Starts node `id` on a fresh database and registers it on `net`.
    pub async fn start(net: &MemNet, id: u64, config: Arc<Config>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(net, id, config, dir).await
    }

    /// Starts node `id` on the database in `dir` (fresh or left by an earlier run).
    pub async fn start_in(net: &MemNet, id: u64, config: Arc<Config>, dir: TempDir) -> Self {
        let db = reopen_db(&dir.path().join("meta.redb")).await;
        let (log, sm, handle) = open_stores(&db);
        let network = PeerNetworkFactory::new(Arc::new(net.clone()));
        let raft = Raft::new(id, config, network, log, sm)
            .await
            .expect("start raft");
        net.register(addr(id), Arc::new(RaftHandler { raft: raft.clone() }));
        Self {
            id,
            raft,
            handle,
            db: Arc::downgrade(&db),
            dir,
        }
    }

    /// Stops the node and waits until its database is closed; returns its directory.
    pub async fn stop(self, net: &MemNet) -> TempDir {
        net.unregister(&addr(self.id));
        self.raft.shutdown().await.expect("shutdown raft");
        drop(self.raft);
        wait_closed(self.db).await;
        self.dir
    }

    /// Waits until this node has applied at least `index`.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.handle.subscribe();
        tokio::time::timeout(WAIT, rx.wait_for(|applied| *applied >= index))
            .await
            .unwrap_or_else(|_| panic!("node {} did not apply {index}", self.id))
            .expect("state machine dropped");
    }
}
