//! The data path of one agent: resolves an item call against the local metadata replica,
//! routes it to the partition's primary (this agent, or another over QUIC), and on the
//! primary replicates writes to every replica of the epoch before acknowledging
//! (PacificA-style; see `primary`, `replica` and `lease`).

mod activity;
mod copies;
mod departure;
mod fence;
mod lease;
mod operations;
mod primary;
mod replica;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use shared::command::{MetaCommand, PartitionChange};
use shared::data::{
    DEFAULT_QUERY_LIMIT, DataPeerReply, DataPeerRequest, ItemError, ItemReply, ItemRequest,
    ItemResult, LogPosition, MAX_PARTITION_KEY_BYTES, MAX_QUERY_LIMIT, MAX_SORT_KEY_BYTES,
    PartitionAddress, PartitionLoadReport, WriteOp, encode_key,
};
use shared::keyspace::{RouteEntry, RoutingTable};
use shared::model::{AttributeType, NodeId, PartitionId, TableStatus};

pub use activity::{PartitionActivity, PartitionSample};
pub use departure::HandOverReport;
pub use operations::OperationDrivers;

use super::DataConfig;
use crate::data::store::PartitionStore;
use crate::meta::client::MetaClient;
use crate::meta::freshness::MetaFreshness;
use crate::meta::rpc::{PeerRequest, PeerResponse};
use crate::seam::{BoxFuture, PrimaryHandOver, ReplicaLoads, ReplicaPositions, StateHandle};
use crate::transport::{RpcClient, TransportError};

/// What an item call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemCallKind {
    /// Store a value (JSON text, already validated as JSON).
    Put(Vec<u8>),
    /// Read one item.
    Get,
    /// Remove one item.
    Delete,
    /// Items of one partition key in sort-key order, bounds inclusive (text form).
    Query {
        /// Lowest sort key.
        sort_from: Option<String>,
        /// Highest sort key.
        sort_to: Option<String>,
        /// Most items to return (1 to `MAX_QUERY_LIMIT`).
        limit: usize,
    },
}

/// An item call as received by the HTTP API: keys in text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCall {
    /// Table name.
    pub table: String,
    /// Partition key (text form).
    pub partition_key: String,
    /// Sort key (text form); required for single-item calls on tables with a sort key,
    /// refused on tables without one.
    pub sort_key: Option<String>,
    /// The operation.
    pub kind: ItemCallKind,
    /// The epoch of the caller's route when it addressed this agent as the primary
    /// directly (client library): then this agent serves only if it is the primary at
    /// that epoch, and answers `WrongPartition` otherwise, without forwarding.
    pub expected_epoch: Option<u64>,
}

/// Why a data-plane RPC produced no answer.
#[derive(Debug)]
pub(crate) enum RpcFailure {
    /// Certainly not delivered (no connection, unknown node): nothing happened there.
    NotSent(String),
    /// Sent, but no usable answer: the peer may have acted on it.
    NoAnswer(String),
}

impl std::fmt::Display for RpcFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcFailure::NotSent(why) | RpcFailure::NoAnswer(why) => f.write_str(why),
        }
    }
}

/// Pause before retrying a stale route or an unreachable primary; doubles each attempt.
const ROUTE_RETRY_BASE: Duration = Duration::from_millis(50);
/// Longest pause between two routing attempts.
const ROUTE_RETRY_MAX: Duration = Duration::from_millis(1000);
/// A partition's log is trimmed to its retention every this many records.
const TRIM_EVERY: u64 = 1024;
/// How long the leader's Scaler waits for a primary to hand its role over.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the leader's recovery coordinator waits for a survivor's log positions.
const POSITIONS_TIMEOUT: Duration = Duration::from_millis(500);

/// The data plane of one agent.
pub struct DataPlane {
    me: NodeId,
    state: StateHandle,
    store: Arc<PartitionStore>,
    peers: Arc<dyn RpcClient>,
    meta: Arc<MetaClient>,
    freshness: Arc<MetaFreshness>,
    config: DataConfig,
    /// Routes of every table, rebuilt when the metadata changed.
    routes: Mutex<(u64, Arc<RoutingTable>)>,
    /// As the primary of partitions: write order, move targets, fences, activity.
    primary: PrimarySide,
    /// As a replica of partitions: accepted epochs, one change at a time, transfers.
    replica: ReplicaSide,
    /// Stagings of splits and merges (the drivers themselves are `OperationDrivers`).
    staging: StagingSide,
    /// Read leases, held as a primary and granted as a replica: one type for both
    /// roles, because a replica promoted to primary must not take a lease over a grant
    /// it gave (see `lease`).
    leases: lease::Leases,
    /// Clock seam (operation timestamps).
    clock: crate::seam::Clock,
    /// This data plane itself, for tasks that must outlive a cancelled caller.
    this: Weak<DataPlane>,
}

/// A primary's state, per partition it leads.
#[derive(Default)]
struct PrimarySide {
    /// One write at a time per partition (LSN order).
    writers: Mutex<HashMap<PartitionId, Arc<tokio::sync::RwLock<()>>>>,
    /// Targets of moves about to switch, with the epoch: every write is also sent to
    /// them, best effort, so the switch finds them caught up.
    learners: Mutex<HashMap<PartitionId, (u64, NodeId)>>,
    fences: fence::Fences,
    activity: PartitionActivity,
    /// Set when this agent stops: it releases no replica any more (see `release`).
    stopping: std::sync::atomic::AtomicBool,
}

/// A replica's state, per partition it holds a copy of.
#[derive(Default)]
struct ReplicaSide {
    /// The highest epoch accepted from a primary.
    accepted: Mutex<HashMap<PartitionId, u64>>,
    /// One append or snapshot at a time.
    locks: Mutex<HashMap<PartitionId, Arc<tokio::sync::Mutex<()>>>>,
    /// The snapshot transfer being installed.
    installing: Mutex<HashMap<PartitionId, u64>>,
}

/// New partitions staged ahead of their split or merge: made by this agent's drivers
/// and, at their request, by its replicas.
#[derive(Default)]
struct StagingSide {
    /// New partitions staged here ahead of their split or merge, by first source.
    staged: Mutex<HashMap<PartitionId, crate::data::store::StagedDerivation>>,
    /// Held by each derivation from taking its staging to storing the new partitions,
    /// so that a second caller (the reconciler, a replica request) finds them stored
    /// instead of copying everything again over a staging being finished.
    deriving: tokio::sync::Mutex<()>,
}

/// What a data plane is built from.
pub struct DataPlaneParts {
    /// This agent.
    pub me: NodeId,
    /// The local metadata replica.
    pub state: StateHandle,
    /// Local partition storage.
    pub store: Arc<PartitionStore>,
    /// Peer transport.
    pub peers: Arc<dyn RpcClient>,
    /// Proposals and read barriers.
    pub meta: Arc<MetaClient>,
    /// When the metadata was last confirmed current (leases depend on it).
    pub freshness: Arc<MetaFreshness>,
    /// `[data]` settings.
    pub config: DataConfig,
    /// Clock seam (operation timestamps).
    pub clock: crate::seam::Clock,
}

impl DataPlane {
    /// Creates the data plane of an agent.
    pub fn new(parts: DataPlaneParts) -> Arc<Self> {
        let DataPlaneParts {
            me,
            state,
            store,
            peers,
            meta,
            freshness,
            config,
            clock,
        } = parts;
        Arc::new_cyclic(|this| DataPlane {
            this: this.clone(),
            me,
            state,
            store,
            peers,
            meta,
            freshness,
            config,
            routes: Mutex::new((u64::MAX, Arc::new(RoutingTable::default()))),
            primary: PrimarySide::default(),
            replica: ReplicaSide::default(),
            staging: StagingSide::default(),
            leases: lease::Leases::default(),
            clock,
        })
    }

    /// Once the metadata replica has caught up at start-up, fences the partitions this
    /// process leads and moves them to new epochs (see `fence`): a previous run of this
    /// agent may have left records of their current epochs that this log lacks.
    pub async fn arm_fences(self: Arc<Self>, caught_up: Arc<std::sync::atomic::AtomicBool>) {
        while !caught_up.load(std::sync::atomic::Ordering::Acquire) {
            tokio::time::sleep(ROUTE_RETRY_BASE).await;
        }
        let led: Vec<(PartitionId, u64)> = self.state.read(|s| {
            s.partitions()
                .filter(|p| p.primary_node_id == self.me)
                .map(|p| (p.partition_id, p.epoch))
                .collect()
        });
        self.primary.fences.arm(led.iter().copied());
        self.bump_epochs(led);
    }

    /// Proposes, in one command, a new epoch (same replicas) for each partition still at
    /// the given epoch; a partition whose epoch moved meanwhile needs none.
    fn bump_epochs(&self, at: Vec<(PartitionId, u64)>) {
        let changes: Vec<PartitionChange> = self.state.read(|s| {
            at.iter()
                .filter_map(|(pid, epoch)| {
                    let p = s.partition(*pid).filter(|p| p.epoch == *epoch)?;
                    Some(PartitionChange {
                        partition_id: *pid,
                        expected_epoch: *epoch,
                        primary_node_id: p.primary_node_id,
                        replica_node_ids: p.replica_node_ids.clone(),
                    })
                })
                .collect()
        });
        if changes.is_empty() {
            return;
        }
        let meta = self.meta.clone();
        tokio::spawn(async move {
            let count = changes.len();
            match meta
                .propose(MetaCommand::RepairPartitions { changes })
                .await
            {
                Ok(Ok(_)) => {
                    tracing::info!(partitions = count, "fenced partitions moved to new epochs")
                }
                // Raced with another change (which moved the epoch too, or a failed member
                // that recovery is replacing, which will): the next write asks again.
                Ok(Err(e)) => tracing::debug!(error = %e, "epoch change refused"),
                Err(e) => tracing::warn!(error = %e, "epoch change not proposed"),
            }
        });
    }

    /// Per-partition activity counters (ops/sec, replica lag) of this agent.
    pub fn activity(&self) -> &PartitionActivity {
        &self.primary.activity
    }

    /// Local partition storage.
    pub fn store(&self) -> &Arc<PartitionStore> {
        &self.store
    }

    /// Serves one item call: validation, routing (bounded retries on a stale route),
    /// and the primary's work.
    pub async fn call(&self, call: ItemCall) -> Result<ItemReply, ItemError> {
        let mut delay = ROUTE_RETRY_BASE;
        let mut last = ItemError::Unavailable("no attempt made".into());
        for attempt in 0..self.config.route_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(ROUTE_RETRY_MAX);
                // A stale route: make sure the local replica has what the leader committed.
                let _ = self.meta.linearizable_barrier().await;
            }
            let (request, route) = match self.resolve(&call) {
                // A client that addressed this agent directly routed with metadata this
                // replica has not applied yet (a table just created): let it retry.
                Err(ItemError::TableNotFound(_)) if call.expected_epoch.is_some() => {
                    return Err(ItemError::WrongPartition {
                        current_epoch: None,
                        primary: None,
                    });
                }
                other => other?,
            };
            if let Some(expected) = call.expected_epoch {
                // Addressed directly by a client: serve only as the primary at that epoch.
                if route.primary_node_id != self.me || route.epoch != expected {
                    return Err(ItemError::WrongPartition {
                        current_epoch: Some(route.epoch),
                        primary: Some(route.primary_node_id),
                    });
                }
                return self.serve(request).await;
            }
            let result = if route.primary_node_id == self.me {
                self.serve(request).await
            } else {
                self.forward(route.primary_node_id, request).await
            };
            match result {
                Err(e @ (ItemError::WrongPartition { .. } | ItemError::Unavailable(_))) => {
                    tracing::debug!(error = %e, attempt, "item call retried");
                    last = e;
                }
                other => return other,
            }
        }
        Err(match last {
            // Out of attempts on a route that keeps moving: tell the client to come back.
            ItemError::WrongPartition { .. } => {
                ItemError::Unavailable("the partition's route kept changing; retry".into())
            }
            other => other,
        })
    }

    /// Validates the call against the local metadata and finds its partition.
    fn resolve(&self, call: &ItemCall) -> Result<(ItemRequest, RouteEntry), ItemError> {
        let routes = self.routes();
        self.state.read(|s| {
            let table = s
                .table_by_name(&call.table)
                .ok_or_else(|| ItemError::TableNotFound(call.table.clone()))?;
            let schema = s.current_schema(table.table_id);
            let type_of = |name: &str| -> AttributeType {
                schema
                    .and_then(|v| v.attributes.iter().find(|a| a.name == name))
                    .map_or(AttributeType::S, |a| a.attr_type)
            };
            let invalid = |e: shared::data::KeyError| ItemError::Invalid(e.to_string());
            let pk_type = type_of(&table.partition_key);
            let partition_key = encode_key(
                pk_type,
                &call.partition_key,
                "partition key",
                MAX_PARTITION_KEY_BYTES,
            )
            .map_err(invalid)?;
            let sk_type = table.sort_key.as_deref().map(type_of);
            let encode_sk = |text: &str| {
                let ty = sk_type.unwrap_or(AttributeType::S);
                encode_key(ty, text, "sort key", MAX_SORT_KEY_BYTES).map_err(invalid)
            };
            let single_sort_key = || -> Result<Option<Vec<u8>>, ItemError> {
                match (&table.sort_key, &call.sort_key) {
                    (Some(_), Some(sk)) => Ok(Some(encode_sk(sk)?)),
                    (Some(name), None) => Err(ItemError::Invalid(format!(
                        "table {} has sort key {name}: give ?sort_key=",
                        table.table_name
                    ))),
                    (None, Some(_)) => Err(ItemError::Invalid(format!(
                        "table {} has no sort key",
                        table.table_name
                    ))),
                    (None, None) => Ok(None),
                }
            };
            if let ItemCallKind::Put(value) = &call.kind
                && value.len() > self.config.max_value_bytes
            {
                return Err(ItemError::ValueTooLarge {
                    len: value.len(),
                    max: self.config.max_value_bytes,
                });
            }
            if !matches!(table.status, TableStatus::Active | TableStatus::Scaling) {
                return Err(ItemError::TableNotWritable {
                    name: table.table_name.clone(),
                    status: table.status,
                });
            }
            let route = routes
                .lookup_key(table.table_id, &partition_key)
                .cloned()
                .ok_or_else(|| ItemError::Unavailable("the table has no partitions yet".into()))?;
            let at = PartitionAddress {
                table_id: table.table_id,
                partition_id: route.partition_id,
                epoch: Some(route.epoch),
            };
            let request = match &call.kind {
                ItemCallKind::Put(value) => ItemRequest::Write {
                    at,
                    sort_key: single_sort_key()?,
                    partition_key,
                    op: WriteOp::Put(value.clone()),
                },
                ItemCallKind::Delete => ItemRequest::Write {
                    at,
                    sort_key: single_sort_key()?,
                    partition_key,
                    op: WriteOp::Delete,
                },
                // A GET without a sort key on a table that has one lists the items.
                ItemCallKind::Get if table.sort_key.is_some() && call.sort_key.is_none() => {
                    ItemRequest::Query {
                        at,
                        partition_key,
                        sort_from: None,
                        sort_to: None,
                        limit: DEFAULT_QUERY_LIMIT,
                    }
                }
                ItemCallKind::Get => ItemRequest::Get {
                    at,
                    sort_key: single_sort_key()?,
                    partition_key,
                },
                ItemCallKind::Query {
                    sort_from,
                    sort_to,
                    limit,
                } => {
                    if table.sort_key.is_none() {
                        return Err(ItemError::Invalid(format!(
                            "table {} has no sort key to query by",
                            table.table_name
                        )));
                    }
                    if !(1..=MAX_QUERY_LIMIT).contains(limit) {
                        return Err(ItemError::Invalid(format!(
                            "limit must be 1 to {MAX_QUERY_LIMIT}"
                        )));
                    }
                    ItemRequest::Query {
                        at,
                        partition_key,
                        sort_from: sort_from.as_deref().map(encode_sk).transpose()?,
                        sort_to: sort_to.as_deref().map(encode_sk).transpose()?,
                        limit: *limit,
                    }
                }
            };
            Ok((request, route))
        })
    }

    /// The routes of the current local metadata (rebuilt only when it changed).
    fn routes(&self) -> Arc<RoutingTable> {
        let applied = self.state.applied_index();
        let mut cached = lock(&self.routes);
        if cached.0 != applied {
            *cached = (applied, Arc::new(self.state.read(RoutingTable::from_state)));
        }
        cached.1.clone()
    }

    /// Sends `request` to the primary `node` and returns its answer.
    async fn forward(&self, node: NodeId, request: ItemRequest) -> ItemResult {
        // Bounded by the replica timeout on the primary, plus a margin for the hops.
        let timeout = Duration::from_millis(self.config.replica_timeout_ms * 3);
        let is_write = request.is_write();
        match self
            .rpc(node, DataPeerRequest::Item(request), timeout)
            .await
        {
            Ok(DataPeerReply::Item(result)) => result,
            Ok(other) => Err(ItemError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
            Err(RpcFailure::NotSent(e)) => {
                Err(ItemError::Unavailable(format!("primary {node}: {e}")))
            }
            // The primary may have acted on a write it did not answer.
            Err(RpcFailure::NoAnswer(e)) if is_write => {
                Err(ItemError::OutcomeUnknown(format!("primary {node}: {e}")))
            }
            Err(RpcFailure::NoAnswer(e)) => {
                Err(ItemError::Unavailable(format!("primary {node}: {e}")))
            }
        }
    }

    /// Serves a data-plane request from another agent.
    pub async fn handle_peer(&self, request: DataPeerRequest) -> DataPeerReply {
        match request {
            DataPeerRequest::Item(request) => DataPeerReply::Item(self.serve(request).await),
            DataPeerRequest::Replica(request) => {
                DataPeerReply::Replica(self.on_replica_request(request).await)
            }
            DataPeerRequest::Sync {
                partition_id,
                epoch,
                node_id,
                position,
            } => DataPeerReply::Sync(self.on_sync(partition_id, epoch, node_id, position).await),
            DataPeerRequest::Positions(pids) => {
                let positions = pids
                    .into_iter()
                    .filter_map(|pid| Some((pid, self.store.position(pid).ok()?)))
                    .collect();
                DataPeerReply::Positions(positions)
            }
            DataPeerRequest::Loads => DataPeerReply::Loads(self.loads()),
            DataPeerRequest::HandOver {
                partition_id,
                epoch,
                to,
            } => DataPeerReply::HandOver(self.hand_over(partition_id, epoch, to).await),
            DataPeerRequest::Release {
                partition_id,
                epoch,
                replica,
            } => DataPeerReply::Release(self.release(partition_id, epoch, replica).await),
        }
    }

    /// The load of every partition led here (ops/s from the activity window, bytes from
    /// the store).
    pub fn loads(&self) -> Vec<PartitionLoadReport> {
        let ops: HashMap<PartitionId, f64> = self
            .primary
            .activity
            .samples()
            .into_iter()
            .map(|s| (s.partition_id, s.ops_per_sec))
            .collect();
        let led: Vec<PartitionId> = self.state.read(|s| {
            s.partitions()
                .filter(|p| p.primary_node_id == self.me)
                .map(|p| p.partition_id)
                .collect()
        });
        led.into_iter()
            .map(|pid| PartitionLoadReport {
                partition_id: pid,
                ops_per_sec: ops.get(&pid).map_or(0, |o| o.round() as u64),
                bytes: self.store.stats(pid).map_or(0, |s| s.bytes),
            })
            .collect()
    }

    /// The loads reported by every node in `nodes` (this one included); unreachable
    /// nodes are absent.
    pub async fn collect_loads(&self, nodes: Vec<NodeId>) -> Vec<PartitionLoadReport> {
        let asks = nodes.into_iter().map(|n| (n, DataPeerRequest::Loads));
        self.ask_each(asks, |_, reply| match reply {
            DataPeerReply::Loads(list) => list,
            _ => Vec::new(),
        })
        .await
    }

    /// Sends each request to its node (this one answers itself) at once, and gathers
    /// what `pick` takes from each answer; nodes that do not answer in
    /// `POSITIONS_TIMEOUT` give nothing.
    async fn ask_each<T>(
        &self,
        asks: impl Iterator<Item = (NodeId, DataPeerRequest)>,
        pick: impl Fn(NodeId, DataPeerReply) -> Vec<T>,
    ) -> Vec<T> {
        let pick = &pick;
        let asks = asks.map(|(node, request)| async move {
            let reply = if node == self.me {
                Ok(self.handle_peer(request).await)
            } else {
                self.rpc(node, request, POSITIONS_TIMEOUT).await
            };
            reply.map(|r| pick(node, r)).unwrap_or_default()
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Asks the primary of `pid` to hand its role to `to` (see `hand_over`).
    pub async fn request_hand_over(
        &self,
        primary: NodeId,
        pid: PartitionId,
        epoch: u64,
        to: NodeId,
    ) -> Result<(), ItemError> {
        if primary == self.me {
            return self.hand_over(pid, epoch, to).await;
        }
        let request = DataPeerRequest::HandOver {
            partition_id: pid,
            epoch,
            to,
        };
        match self.rpc(primary, request, HAND_OVER_TIMEOUT).await {
            Ok(DataPeerReply::HandOver(result)) => result,
            Ok(other) => Err(ItemError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
            Err(e) => Err(ItemError::Unavailable(e.to_string())),
        }
    }

    /// One data-plane RPC to agent `node`, bounded by `timeout`.
    async fn rpc(
        &self,
        node: NodeId,
        request: DataPeerRequest,
        timeout: Duration,
    ) -> Result<DataPeerReply, RpcFailure> {
        let addr = self
            .state
            .read(|s| s.node(node).map(|n| n.peer_addr.clone()))
            .ok_or_else(|| RpcFailure::NotSent(format!("node {node} is not registered")))?;
        let bytes = postcard::to_stdvec(&PeerRequest::Data(request))
            .map_err(|e| RpcFailure::NotSent(e.to_string()))?;
        let reply = tokio::time::timeout(timeout, self.peers.call(&addr, bytes))
            .await
            .map_err(|_| {
                RpcFailure::NoAnswer(format!("node {node}: no answer within {timeout:?}"))
            })?
            .map_err(|e| match e {
                TransportError::Connect { .. } => RpcFailure::NotSent(e.to_string()),
                other => RpcFailure::NoAnswer(other.to_string()),
            })?;
        match postcard::from_bytes::<PeerResponse>(&reply) {
            Ok(PeerResponse::Data(reply)) => Ok(reply),
            Ok(other) => Err(RpcFailure::NoAnswer(format!(
                "unexpected reply from node {node}: {other:?}"
            ))),
            Err(e) => Err(RpcFailure::NoAnswer(format!(
                "undecodable reply from node {node}: {e}"
            ))),
        }
    }

    /// The durable log positions of `wanted` partitions on each node, as the nodes report
    /// them (for the recovery coordinator's promotion choice); unreachable nodes are
    /// simply absent.
    pub async fn collect_positions(
        &self,
        wanted: BTreeMap<NodeId, Vec<PartitionId>>,
    ) -> HashMap<(PartitionId, NodeId), LogPosition> {
        let asks = wanted
            .into_iter()
            .map(|(node, pids)| (node, DataPeerRequest::Positions(pids)));
        let positions = self.ask_each(asks, |node, reply| match reply {
            DataPeerReply::Positions(list) => list
                .into_iter()
                .map(|(pid, pos)| ((pid, node), pos))
                .collect(),
            _ => Vec::new(),
        });
        positions.await.into_iter().collect()
    }

    /// Every `TRIM_EVERY` records (when the log grew from LSN `before` to `after` past a
    /// multiple of it), drops the oldest records beyond the configured retention, in the
    /// background: trimming is a redb write.
    fn maybe_trim(&self, pid: PartitionId, before: u64, after: u64) {
        if before / TRIM_EVERY == after / TRIM_EVERY {
            return;
        }
        let store = self.store.clone();
        let keep = self.config.log_retain_records;
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.trim_log(pid, keep) {
                tracing::warn!(partition = pid, error = %e, "log trim failed");
            }
        });
    }

    /// The replica-side lock of partition `pid`.
    fn replica_lock(&self, pid: PartitionId) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.replica.locks).entry(pid).or_default().clone()
    }

    /// The write lock of partition `pid`: held exclusively by a write (and by the
    /// operations that pause writes), shared by reads, so a read never sees a write
    /// whose outcome is not known yet.
    fn writer(&self, pid: PartitionId) -> Arc<tokio::sync::RwLock<()>> {
        lock(&self.primary.writers).entry(pid).or_default().clone()
    }
}

/// Locks a std mutex whose holders cannot leave it inconsistent (poison ignored).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReplicaPositions for DataPlane {
    fn collect_positions(
        &self,
        wanted: BTreeMap<NodeId, Vec<PartitionId>>,
    ) -> BoxFuture<'_, HashMap<(PartitionId, NodeId), LogPosition>> {
        Box::pin(DataPlane::collect_positions(self, wanted))
    }
}

impl ReplicaLoads for DataPlane {
    fn collect_loads(&self, nodes: Vec<NodeId>) -> BoxFuture<'_, Vec<PartitionLoadReport>> {
        Box::pin(DataPlane::collect_loads(self, nodes))
    }
}

impl PrimaryHandOver for DataPlane {
    fn hand_over(
        &self,
        primary: NodeId,
        pid: PartitionId,
        epoch: u64,
        to: NodeId,
    ) -> BoxFuture<'_, Result<(), ItemError>> {
        Box::pin(self.request_hand_over(primary, pid, epoch, to))
    }
}
