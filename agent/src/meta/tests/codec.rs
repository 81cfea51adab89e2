//! The peer messages round-trip through postcard, including openraft's error types.

use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{SnapshotSegmentId, StorageIOError};
use shared::command::{MetaError, MetaOutcome};

use super::support::{init_cluster, log_id, membership, normal, register};
use crate::meta::types::{SnapshotMeta, Vote};
use crate::meta::{Committed, ForwardError, JoinRequest, PeerRequest, PeerResponse};

/// Encodes, decodes and re-encodes; both encodings and debug forms must match.
fn round_trip_request(req: PeerRequest) {
    let bytes = req.encode().unwrap();
    let back = PeerRequest::decode(&bytes).unwrap();
    assert_eq!(back.encode().unwrap(), bytes);
    assert_eq!(format!("{back:?}"), format!("{req:?}"));
}

fn round_trip_response(resp: PeerResponse) {
    let bytes = resp.encode().unwrap();
    let back = PeerResponse::decode(&bytes).unwrap();
    assert_eq!(back.encode().unwrap(), bytes);
    assert_eq!(format!("{back:?}"), format!("{resp:?}"));
}

#[test]
fn requests_round_trip() {
    let vote = Vote::new_committed(3, 1);
    round_trip_request(PeerRequest::AppendEntries(AppendEntriesRequest {
        vote,
        prev_log_id: Some(log_id(3, 1)),
        entries: vec![membership(3, 2, &[1, 2, 3]), normal(3, 3, register(2, 9))],
        leader_commit: Some(log_id(3, 1)),
    }));
    round_trip_request(PeerRequest::Vote(VoteRequest::new(
        Vote::new(4, 2),
        Some(log_id(3, 3)),
    )));
    round_trip_request(PeerRequest::InstallSnapshot(InstallSnapshotRequest {
        vote,
        meta: SnapshotMeta {
            last_log_id: Some(log_id(3, 3)),
            snapshot_id: "s-1".into(),
            ..Default::default()
        },
        offset: 0,
        data: vec![1, 2, 3],
        done: true,
    }));
    round_trip_request(PeerRequest::ClientWrite(init_cluster()));
    round_trip_request(PeerRequest::ReadIndex);
    round_trip_request(PeerRequest::NodeRecord(3));
    round_trip_request(PeerRequest::Join(JoinRequest {
        node_id: 4,
        peer_addr: "10.0.0.4:7000".into(),
        endpoint: "http://10.0.0.4:7070".into(),
        zone: "z1".into(),
        incarnation: 17,
    }));
}

#[test]
fn responses_round_trip() {
    let vote = Vote::new_committed(3, 1);
    let storage_error = StorageIOError::write_logs(&std::io::Error::other("disk full")).into();
    round_trip_response(PeerResponse::AppendEntries(Ok(
        AppendEntriesResponse::Success,
    )));
    round_trip_response(PeerResponse::AppendEntries(Ok(
        AppendEntriesResponse::HigherVote(vote),
    )));
    round_trip_response(PeerResponse::AppendEntries(Err(RaftError::Fatal(
        Fatal::StorageError(storage_error),
    ))));
    round_trip_response(PeerResponse::Vote(Ok(VoteResponse::new(
        vote,
        Some(log_id(3, 7)),
        true,
    ))));
    round_trip_response(PeerResponse::Vote(Err(RaftError::Fatal(Fatal::Stopped))));
    round_trip_response(PeerResponse::InstallSnapshot(Ok(InstallSnapshotResponse {
        vote,
    })));
    let mismatch = SnapshotMismatch {
        expect: SnapshotSegmentId {
            id: "a".into(),
            offset: 0,
        },
        got: SnapshotSegmentId {
            id: "b".into(),
            offset: 9,
        },
    };
    round_trip_response(PeerResponse::InstallSnapshot(Err(RaftError::APIError(
        InstallSnapshotError::SnapshotMismatch(mismatch),
    ))));
    round_trip_response(PeerResponse::ClientWrite(Ok(Committed {
        index: 7,
        result: Ok(MetaOutcome::TableCreated { table_id: 4 }),
    })));
    round_trip_response(PeerResponse::ClientWrite(Ok(Committed {
        index: 8,
        result: Err(MetaError::TableExists("t".into())),
    })));
    round_trip_response(PeerResponse::ClientWrite(Err(ForwardError::NotLeader {
        leader_id: Some(2),
        leader_addr: Some("node2:7000".into()),
    })));
    round_trip_response(PeerResponse::ReadIndex(Ok(42)));
    round_trip_response(PeerResponse::NodeRecord(Ok(crate::meta::rpc::NodeRecord {
        status: Some(shared::model::NodeStatus::Failed),
        incarnation: 7,
        in_membership: false,
    })));
    round_trip_response(PeerResponse::ReadIndex(Err(ForwardError::Unavailable(
        "no quorum".into(),
    ))));
    round_trip_response(PeerResponse::Join(Ok(())));
    round_trip_response(PeerResponse::BadRequest("garbage".into()));
}

#[test]
fn garbage_is_a_decode_error() {
    assert!(PeerRequest::decode(&[0xff, 0xff, 0xff]).is_err());
    assert!(PeerResponse::decode(&[]).is_err());
}
