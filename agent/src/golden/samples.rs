//! Fixed sample values of every format, for the golden-bytes tests. Never change a
//! sample's value: add a new sample (with a new label) instead.

use std::collections::{BTreeMap, BTreeSet};

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership};
use shared::api::auth::{IssueCredentialResponse, RotateKeyResponse};
use shared::auth::secret::hash_secret;
use shared::auth::{Action, Effect};
use shared::command::{
    MetaCommand, MetaError, MetaOutcome, PartitionAssignment, PartitionChange, TableSpec,
};
use shared::data::{
    DataPeerReply, DataPeerRequest, ItemError, ItemReply, ItemRequest, LogPosition,
    PartitionAddress, PartitionLoadReport, ReplicaError, ReplicaReply, ReplicaRequest, WriteOp,
    WriteRecord,
};
use shared::model::{
    Attribute, AttributeType, Capacity, CapacityMode, KeyRange, NodeStatus, OperationKind,
    OperationProgress, OperationStatus, OperationStep,
};
use shared::state::MetaState;

use super::Sample;
use crate::data::store::PartitionMeta;
use crate::membership::GossipId;
use crate::membership::report::{LoadSummary, StatusReport};
use crate::meta::rpc::{
    ClusterInfo, Committed, ForwardError, InitError, IssueRequest, JoinRefusal, JoinRequest,
    NodeRecord, PeerRequest, PeerResponse,
};
use crate::meta::state_machine::SnapshotImage;
use crate::meta::types::{Entry, LogId, SnapshotMeta, StoredMembership, Vote};

const T0: u64 = 1_796_601_600_000;

fn capacity() -> Capacity {
    Capacity {
        mode: CapacityMode::Provisioned,
        read_units: 100,
        write_units: 50,
    }
}

fn attribute(name: &str, attr_type: AttributeType) -> Attribute {
    Attribute {
        name: name.to_string(),
        attr_type,
    }
}

fn spec() -> TableSpec {
    TableSpec {
        table_name: "orders".into(),
        partition_key: "customer".into(),
        sort_key: Some("placed".into()),
        capacity: capacity(),
        attributes: vec![
            attribute("customer", AttributeType::S),
            attribute("placed", AttributeType::N),
        ],
    }
}

/// Every `MetaCommand` variant once, in declaration order.
pub fn meta_commands() -> Vec<Sample<MetaCommand>> {
    use MetaCommand::*;
    vec![
        (
            "InitCluster",
            InitCluster {
                cluster_id: "c-golden".into(),
            },
        ),
        (
            "RegisterNode",
            RegisterNode {
                node_id: 1,
                endpoint: "http://198.18.0.1:7070".into(),
                peer_addr: "198.18.0.1:7071".into(),
                zone: "z1".into(),
                incarnation: T0,
                now_ms: T0,
            },
        ),
        (
            "CreateTable",
            CreateTable {
                spec: spec(),
                now_ms: T0 + 1,
            },
        ),
        (
            "AssignPartitions",
            AssignPartitions {
                table_id: 1,
                partitions: vec![PartitionAssignment {
                    range: KeyRange {
                        low: 0,
                        high: u64::MAX,
                    },
                    primary_node_id: 1,
                    replica_node_ids: vec![2, 3],
                }],
            },
        ),
        (
            "PartitionsReady",
            PartitionsReady {
                node_id: 2,
                partition_ids: vec![1],
            },
        ),
        (
            "ActivateTable",
            ActivateTable {
                table_id: 1,
                now_ms: T0 + 2,
            },
        ),
        (
            "UpdateCapacity",
            UpdateCapacity {
                table_name: "orders".into(),
                capacity: Capacity {
                    mode: CapacityMode::OnDemand,
                    read_units: 0,
                    write_units: 0,
                },
                now_ms: T0 + 3,
            },
        ),
        (
            "AddSchemaVersion",
            AddSchemaVersion {
                table_name: "orders".into(),
                attributes: vec![
                    attribute("customer", AttributeType::S),
                    attribute("placed", AttributeType::N),
                    attribute("lines", AttributeType::L),
                    attribute("paid", AttributeType::Bool),
                ],
                now_ms: T0 + 4,
            },
        ),
        (
            "DeleteTable",
            DeleteTable {
                table_name: "orders".into(),
                now_ms: T0 + 5,
            },
        ),
        (
            "PartitionsReleased",
            PartitionsReleased {
                node_id: 3,
                partition_ids: vec![1, 2],
            },
        ),
        ("PurgeTable", PurgeTable { table_id: 1 }),
        (
            "NodeFailed",
            NodeFailed {
                node_id: 3,
                incarnation: T0,
                now_ms: T0 + 6,
            },
        ),
        (
            "RepairPartitions",
            RepairPartitions {
                changes: vec![PartitionChange {
                    partition_id: 1,
                    expected_epoch: 1,
                    primary_node_id: 2,
                    replica_node_ids: vec![1, 4],
                }],
            },
        ),
        (
            "DrainNode",
            DrainNode {
                node_id: 4,
                remove: true,
                now_ms: T0 + 7,
            },
        ),
        (
            "DecommissionNode",
            DecommissionNode {
                node_id: 4,
                now_ms: T0 + 8,
            },
        ),
        (
            "PartitionsReadyAt",
            PartitionsReadyAt {
                node_id: 4,
                partitions: vec![(1, 2), (5, 1)],
            },
        ),
        (
            "CreatePrincipal",
            CreatePrincipal {
                name: "alice".into(),
                secret: hash_secret("s3cret", [7; 16]),
                admin: true,
                now_ms: T0 + 9,
            },
        ),
        (
            "DeletePrincipal",
            DeletePrincipal {
                arn: "arn:c-golden:principal/bob".into(),
            },
        ),
        (
            "PutPolicy",
            PutPolicy {
                table_name: "orders".into(),
                principal_arn: "arn:c-golden:principal/alice".into(),
                actions: BTreeSet::from([Action::Read, Action::Write, Action::Admin]),
                effect: Effect::Allow,
            },
        ),
        (
            "DeletePolicy",
            DeletePolicy {
                table_name: "orders".into(),
                principal_arn: "arn:c-golden:principal/alice".into(),
            },
        ),
        (
            "PublishSigningKey",
            PublishSigningKey {
                kid: "k1-1".into(),
                public_key: [9; 32],
                node_id: 1,
                now_ms: T0 + 10,
            },
        ),
        (
            "RetireSigningKey",
            RetireSigningKey {
                kid: "k1-1".into(),
                now_ms: T0 + 11,
                trusted_until_ms: T0 + 3_600_000,
            },
        ),
        ("DropExpiredKeys", DropExpiredKeys { now_ms: T0 + 12 }),
        (
            "RevokeCredential",
            RevokeCredential {
                jti: "jti-1".into(),
                expires_at_ms: T0 + 900_000,
            },
        ),
        ("GcRevocations", GcRevocations { now_ms: T0 + 13 }),
        (
            "StartOperation",
            StartOperation {
                partition_id: 1,
                kind: OperationKind::Split {
                    split_point: Some(1 << 63),
                },
                requested_by: "scaler".into(),
                now_ms: T0 + 14,
            },
        ),
        (
            "AdvanceOperation",
            AdvanceOperation {
                operation_id: 1,
                step: OperationStep::CatchingUp,
                progress: Some(OperationProgress {
                    done_bytes: 10,
                    total_bytes: Some(100),
                }),
                now_ms: T0 + 15,
            },
        ),
        (
            "RetryOperationStep",
            RetryOperationStep {
                operation_id: 1,
                step: OperationStep::Copying,
                attempt: 2,
                now_ms: T0 + 16,
            },
        ),
        (
            "FinishOperation",
            FinishOperation {
                operation_id: 1,
                status: OperationStatus::Failed {
                    reason: "disk full".into(),
                },
                now_ms: T0 + 17,
                write_pause_ms: Some(12),
            },
        ),
        (
            "SplitPartition",
            SplitPartition {
                operation_id: Some(2),
                parent: 1,
                split_point: 1 << 63,
                expected_epoch: 3,
                now_ms: T0 + 18,
            },
        ),
        (
            "MergePartitions",
            MergePartitions {
                operation_id: 3,
                left: 5,
                right: 6,
                expected_epochs: (4, 2),
                now_ms: T0 + 19,
            },
        ),
        (
            "CommitMove",
            CommitMove {
                operation_id: 4,
                partition_id: 7,
                from: 2,
                to: 5,
                expected_epoch: 3,
                now_ms: T0 + 20,
            },
        ),
        (
            "CancelDrain",
            CancelDrain {
                node_id: 4,
                now_ms: T0 + 30,
            },
        ),
    ]
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn membership() -> Membership<u64, BasicNode> {
    let nodes = BTreeMap::from([
        (1, BasicNode::new("198.18.0.1:7071")),
        (2, BasicNode::new("198.18.0.2:7071")),
        (3, BasicNode::new("198.18.0.3:7071")),
        (4, BasicNode::new("198.18.0.4:7071")),
    ]);
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn entry(index: u64, payload: EntryPayload<crate::meta::types::TypeConfig>) -> Entry {
    Entry {
        log_id: log_id(2, index),
        payload,
    }
}

/// A Raft log entry of each payload kind.
pub fn raft_entries() -> Vec<Sample<Entry>> {
    let command = meta_commands().remove(1).1;
    vec![
        ("Blank", entry(1, EntryPayload::Blank)),
        ("Normal", entry(2, EntryPayload::Normal(command))),
        (
            "Membership",
            entry(3, EntryPayload::Membership(membership())),
        ),
    ]
}

/// The state after applying the first commands of the samples (a cluster, a table, a
/// principal, a policy, a key, a revocation, a running split).
fn sample_state() -> MetaState {
    let mut state = MetaState::new();
    let mut apply = |cmd: MetaCommand| {
        state.apply(&cmd).expect("sample command applies");
    };
    apply(MetaCommand::InitCluster {
        cluster_id: "c-golden".into(),
    });
    for id in 1..=3 {
        apply(MetaCommand::RegisterNode {
            node_id: id,
            endpoint: format!("http://198.18.0.{id}:7070"),
            peer_addr: format!("198.18.0.{id}:7071"),
            zone: format!("z{id}"),
            incarnation: T0,
            now_ms: T0,
        });
    }
    apply(MetaCommand::CreateTable {
        spec: spec(),
        now_ms: T0 + 1,
    });
    apply(MetaCommand::AssignPartitions {
        table_id: 1,
        partitions: vec![PartitionAssignment {
            range: KeyRange {
                low: 0,
                high: u64::MAX,
            },
            primary_node_id: 1,
            replica_node_ids: vec![2, 3],
        }],
    });
    for node_id in 1..=3 {
        apply(MetaCommand::PartitionsReady {
            node_id,
            partition_ids: vec![1],
        });
    }
    apply(MetaCommand::ActivateTable {
        table_id: 1,
        now_ms: T0 + 2,
    });
    for (cmd, _) in meta_commands()
        .into_iter()
        .filter(|(l, _)| {
            [
                "CreatePrincipal",
                "PutPolicy",
                "PublishSigningKey",
                "RevokeCredential",
                "StartOperation",
            ]
            .contains(l)
        })
        .map(|(l, c)| (c, l))
    {
        apply(cmd);
    }
    state
}

/// State-machine snapshot images: empty, and a small cluster.
pub fn snapshot_images() -> Vec<Sample<SnapshotImage>> {
    vec![
        (
            "Cluster",
            SnapshotImage {
                state: sample_state(),
                last_applied: Some(log_id(2, 30)),
                membership: StoredMembership::new(Some(log_id(1, 3)), membership()),
            },
        ),
        ("Empty", SnapshotImage::default()),
    ]
}

/// A metadata backup of a small cluster.
pub fn meta_backups() -> Vec<Sample<shared::backup::MetaBackup>> {
    vec![(
        "Cluster",
        shared::backup::MetaBackup {
            cluster_id: Some("dev".into()),
            applied_index: 30,
            taken_by: 1,
            taken_at_ms: 1_700_000_000_000,
            state: sample_state(),
        },
    )]
}

fn write_record(lsn: u64, op: WriteOp, sort_key: Option<Vec<u8>>) -> WriteRecord {
    WriteRecord {
        lsn,
        epoch: 3,
        partition_key: b"\x01customer-1".to_vec(),
        sort_key,
        op,
    }
}

/// Partition log records: a put with a sort key, a delete without.
pub fn write_records() -> Vec<Sample<WriteRecord>> {
    vec![
        (
            "Put",
            write_record(
                41,
                WriteOp::Put(br#"{"total":{"N":"12.5"}}"#.to_vec()),
                Some(b"\x02\x80".to_vec()),
            ),
        ),
        ("Delete", write_record(42, WriteOp::Delete, None)),
    ]
}

/// A partition's position record.
pub fn partition_metas() -> Vec<Sample<PartitionMeta>> {
    vec![(
        "Position",
        PartitionMeta::sample(LogPosition { lsn: 42, epoch: 3 }, 30, 7, 4096),
    )]
}

fn vote() -> Vote {
    Vote::new_committed(2, 1)
}

fn snapshot_meta() -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(2, 30)),
        last_membership: StoredMembership::new(Some(log_id(1, 3)), membership()),
        snapshot_id: "2-30-1".into(),
    }
}

/// Every `PeerRequest` variant once.
pub fn peer_requests() -> Vec<Sample<PeerRequest>> {
    let command = meta_commands().remove(1).1;
    vec![
        (
            "AppendEntries",
            PeerRequest::AppendEntries(AppendEntriesRequest {
                vote: vote(),
                prev_log_id: Some(log_id(2, 1)),
                entries: vec![entry(2, EntryPayload::Normal(command.clone()))],
                leader_commit: Some(log_id(2, 1)),
            }),
        ),
        (
            "Vote",
            PeerRequest::Vote(VoteRequest {
                vote: Vote::new(3, 2),
                last_log_id: Some(log_id(2, 2)),
            }),
        ),
        (
            "InstallSnapshot",
            PeerRequest::InstallSnapshot(InstallSnapshotRequest {
                vote: vote(),
                meta: snapshot_meta(),
                offset: 0,
                data: vec![0xFF, b'S', b'N', 1, 0, 0],
                done: true,
            }),
        ),
        ("ClientWrite", PeerRequest::ClientWrite(command)),
        ("ReadIndex", PeerRequest::ReadIndex),
        (
            "Join",
            PeerRequest::Join(JoinRequest {
                node_id: 4,
                peer_addr: "198.18.0.4:7071".into(),
                endpoint: "http://198.18.0.4:7070".into(),
                zone: "z1".into(),
                incarnation: T0,
            }),
        ),
        ("NodeRecord", PeerRequest::NodeRecord(4)),
        ("Data", PeerRequest::Data(DataPeerRequest::Loads)),
        (
            "IssueCredential",
            PeerRequest::IssueCredential(IssueRequest {
                table: "orders".into(),
                principal_arn: "arn:c-golden:principal/alice".into(),
                ttl_secs: Some(900),
                actions: Some(BTreeSet::from([Action::Read])),
            }),
        ),
        ("RotateKey", PeerRequest::RotateKey),
        ("ClusterInfo", PeerRequest::ClusterInfo),
        ("Init", PeerRequest::Init),
        (
            "JoinCluster",
            PeerRequest::JoinCluster {
                cluster_id: "golden".into(),
                join: JoinRequest {
                    node_id: 4,
                    peer_addr: "198.18.0.4:7071".into(),
                    endpoint: "http://198.18.0.4:7070".into(),
                    zone: "z1".into(),
                    incarnation: T0,
                },
                empty: true,
            },
        ),
        ("Campaign", PeerRequest::Campaign),
    ]
}

/// Every `PeerResponse` variant once (errors of the forwarded calls in some).
pub fn peer_responses() -> Vec<Sample<PeerResponse>> {
    let not_leader = ForwardError::NotLeader {
        leader_id: Some(2),
        leader_addr: Some("198.18.0.2:7071".into()),
    };
    vec![
        (
            "AppendEntries",
            PeerResponse::AppendEntries(Ok(AppendEntriesResponse::Success)),
        ),
        (
            "Vote",
            PeerResponse::Vote(Ok(VoteResponse {
                vote: Vote::new(3, 2),
                vote_granted: true,
                last_log_id: Some(log_id(2, 2)),
            })),
        ),
        (
            "InstallSnapshot",
            PeerResponse::InstallSnapshot(Ok(InstallSnapshotResponse { vote: vote() })),
        ),
        (
            "ClientWrite",
            PeerResponse::ClientWrite(Ok(Committed {
                index: 31,
                result: Err(MetaError::NodeWrongStatus {
                    node_id: 4,
                    status: NodeStatus::Draining,
                    needed: "HEALTHY".into(),
                }),
            })),
        ),
        ("ReadIndex", PeerResponse::ReadIndex(Err(not_leader))),
        (
            "Join",
            PeerResponse::Join(Err(ForwardError::Unavailable("no quorum".into()))),
        ),
        (
            "NodeRecord",
            PeerResponse::NodeRecord(Ok(NodeRecord {
                status: Some(NodeStatus::Failed),
                incarnation: T0,
                in_membership: true,
            })),
        ),
        (
            "Data",
            PeerResponse::Data(DataPeerReply::Sync(Ok(LogPosition { lsn: 9, epoch: 2 }))),
        ),
        (
            "IssueCredential",
            PeerResponse::IssueCredential(Ok(IssueCredentialResponse {
                token: "eyJ.eyJ.sig".into(),
                expires_at: "2026-12-07T12:15:00Z".into(),
                expires_at_unix: 1_796_645_700,
                jti: "jti-1".into(),
                actions: BTreeSet::from([Action::Read, Action::Write]),
                kid: "k1-1".into(),
            })),
        ),
        (
            "RotateKey",
            PeerResponse::RotateKey(Ok(RotateKeyResponse {
                kid: "k1-2".into(),
                retired_kid: Some("k1-1".into()),
            })),
        ),
        (
            "RotateKeyFirst",
            PeerResponse::RotateKey(Ok(RotateKeyResponse {
                kid: "k1-1".into(),
                retired_kid: None,
            })),
        ),
        ("BadRequest", PeerResponse::BadRequest("truncated".into())),
        (
            "ClusterInfo",
            PeerResponse::ClusterInfo(ClusterInfo {
                initialized: true,
                cluster_id: Some("golden".into()),
            }),
        ),
        ("Init", PeerResponse::Init(Ok("golden".into()))),
        (
            "ClientWriteNoQuorum",
            PeerResponse::ClientWrite(Err(ForwardError::NoQuorum("silent 1.2s".into()))),
        ),
        (
            "InitRefused",
            PeerResponse::Init(Err(InitError::SeedInCluster {
                seed: "198.18.0.2:7071".into(),
                cluster_id: "golden".into(),
            })),
        ),
        (
            "JoinClusterRefused",
            PeerResponse::JoinCluster(Err(JoinRefusal::WrongCluster {
                cluster_id: "other".into(),
            })),
        ),
        ("Campaign", PeerResponse::Campaign(Ok(()))),
    ]
}

fn address() -> PartitionAddress {
    PartitionAddress {
        table_id: 1,
        partition_id: 7,
        epoch: Some(3),
    }
}

/// Every `ItemRequest` variant once.
pub fn item_requests() -> Vec<Sample<ItemRequest>> {
    vec![
        (
            "Write",
            ItemRequest::Write {
                at: address(),
                partition_key: b"\x01customer-1".to_vec(),
                sort_key: Some(b"\x02\x80".to_vec()),
                op: WriteOp::Put(br#"{"n":{"N":"1"}}"#.to_vec()),
            },
        ),
        (
            "Get",
            ItemRequest::Get {
                at: address(),
                partition_key: b"\x01customer-1".to_vec(),
                sort_key: None,
            },
        ),
        (
            "Query",
            ItemRequest::Query {
                at: address(),
                partition_key: b"\x01customer-1".to_vec(),
                sort_from: Some(b"\x02\x00".to_vec()),
                sort_to: None,
                limit: 100,
            },
        ),
    ]
}

/// Every `ReplicaRequest` variant once.
pub fn replica_requests() -> Vec<Sample<ReplicaRequest>> {
    let children = vec![
        (
            8,
            KeyRange {
                low: 0,
                high: (1 << 63) - 1,
            },
        ),
        (
            9,
            KeyRange {
                low: 1 << 63,
                high: u64::MAX,
            },
        ),
    ];
    vec![
        (
            "Append",
            ReplicaRequest::Append {
                partition_id: 7,
                epoch: 3,
                prev: LogPosition { lsn: 40, epoch: 3 },
                records: write_records().into_iter().map(|(_, r)| r).collect(),
            },
        ),
        (
            "InstallSnapshot",
            ReplicaRequest::InstallSnapshot {
                partition_id: 7,
                epoch: 3,
                transfer: 11,
                position: LogPosition { lsn: 42, epoch: 3 },
                items: vec![(b"k".to_vec(), b"v".to_vec())],
                first: true,
                last: false,
            },
        ),
        (
            "Stage",
            ReplicaRequest::Stage {
                sources: vec![7],
                children: children.clone(),
            },
        ),
        (
            "Derive",
            ReplicaRequest::Derive {
                sources: vec![7],
                children,
                positions: vec![LogPosition { lsn: 42, epoch: 3 }],
            },
        ),
        (
            "ReleaseLease",
            ReplicaRequest::ReleaseLease {
                partition_id: 7,
                primary: 1,
            },
        ),
        (
            "Lease",
            ReplicaRequest::Lease {
                primary: 1,
                entries: vec![(7, 3), (8, 1)],
            },
        ),
    ]
}

/// Every `DataPeerRequest` variant once.
pub fn data_requests() -> Vec<Sample<DataPeerRequest>> {
    vec![
        ("Item", DataPeerRequest::Item(item_requests().remove(0).1)),
        (
            "Replica",
            DataPeerRequest::Replica(replica_requests().remove(5).1),
        ),
        (
            "Sync",
            DataPeerRequest::Sync {
                partition_id: 7,
                epoch: 3,
                node_id: 2,
                position: LogPosition { lsn: 40, epoch: 3 },
            },
        ),
        ("Positions", DataPeerRequest::Positions(vec![7, 8])),
        ("Loads", DataPeerRequest::Loads),
        (
            "HandOver",
            DataPeerRequest::HandOver {
                partition_id: 7,
                epoch: 3,
                to: 2,
            },
        ),
        (
            "Release",
            DataPeerRequest::Release {
                partition_id: 7,
                epoch: 3,
                replica: 2,
            },
        ),
    ]
}

/// Every `DataPeerReply` variant once (the item and replica errors in some).
pub fn data_replies() -> Vec<Sample<DataPeerReply>> {
    vec![
        (
            "Item",
            DataPeerReply::Item(Ok(ItemReply::Items {
                items: vec![(b"\x02\x80".to_vec(), b"{}".to_vec())],
                more: true,
            })),
        ),
        (
            "Replica",
            DataPeerReply::Replica(ReplicaReply::Appended(Err(ReplicaError::NeedSync {
                position: LogPosition { lsn: 40, epoch: 2 },
            }))),
        ),
        (
            "Sync",
            DataPeerReply::Sync(Err(ItemError::WrongPartition {
                current_epoch: Some(4),
                primary: Some(2),
            })),
        ),
        (
            "Positions",
            DataPeerReply::Positions(vec![(7, LogPosition { lsn: 42, epoch: 3 })]),
        ),
        (
            "Loads",
            DataPeerReply::Loads(vec![PartitionLoadReport {
                partition_id: 7,
                ops_per_sec: 1200,
                bytes: 1 << 20,
            }]),
        ),
        (
            "HandOver",
            DataPeerReply::HandOver(Err(ItemError::OutcomeUnknown("timed out".into()))),
        ),
        ("Release", DataPeerReply::Release(Ok(()))),
    ]
}

/// A gossiped status report.
pub fn status_reports() -> Vec<Sample<StatusReport>> {
    vec![(
        "Report",
        StatusReport {
            node_id: 2,
            incarnation: T0,
            version: 17,
            zone: "z2".into(),
            endpoint: "http://198.18.0.2:7070".into(),
            applied_index: 31,
            load: LoadSummary {
                cpu_pct: 12.5,
                disk_pct: 40.0,
                ops_per_sec: 1200.0,
                partitions_owned: 12,
                replication_lag_ms: 3,
            },
        },
    )]
}

/// A gossip identity (foca's member id: the node-id envelope of every datagram).
pub fn gossip_ids() -> Vec<Sample<GossipId>> {
    vec![(
        "Renewed",
        GossipId {
            node_id: 2,
            peer_addr: "198.18.0.2:7071".into(),
            incarnation: T0,
            generation: 1,
        },
    )]
}

/// Every `MetaOutcome` variant once (they travel in forwarded writes' answers).
pub fn meta_outcomes() -> Vec<Sample<MetaOutcome>> {
    use MetaOutcome::*;
    vec![
        ("Done", Done),
        ("TableCreated", TableCreated { table_id: 1 }),
        ("SchemaVersionAdded", SchemaVersionAdded { version: 2 }),
        (
            "PartitionsAssigned",
            PartitionsAssigned {
                partition_ids: vec![1, 2],
            },
        ),
        ("Unchanged", Unchanged),
        ("PolicyVersion", PolicyVersion { version: 3 }),
        ("OperationStarted", OperationStarted { operation_id: 4 }),
        ("PartitionSplit", PartitionSplit { left: 8, right: 9 }),
        ("PartitionsMerged", PartitionsMerged { merged: 10 }),
    ]
}
