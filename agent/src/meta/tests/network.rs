//! How `PeerNetwork` maps transport outcomes to openraft's `RPCError`s.

use std::sync::{Arc, Mutex};

use openraft::BasicNode;
use openraft::error::{Fatal, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, VoteRequest};

use super::support::{init_cluster, log_id, normal};
use crate::meta::types::Vote;
use crate::meta::{PeerNetwork, PeerNetworkFactory, PeerResponse};
use crate::transport::{BoxFuture, RpcClient, TransportError};

/// Answers every call with the same canned result and records the address called.
struct Canned {
    reply: Result<Vec<u8>, TransportError>,
    called: Mutex<Vec<String>>,
}

impl RpcClient for Canned {
    fn call(
        &self,
        addr: &str,
        _request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        self.called.lock().unwrap().push(addr.to_string());
        let reply = self.reply.clone();
        Box::pin(async move { reply })
    }
}

async fn network(reply: Result<Vec<u8>, TransportError>) -> (PeerNetwork, Arc<Canned>) {
    let client = Arc::new(Canned {
        reply,
        called: Mutex::default(),
    });
    let mut factory = PeerNetworkFactory::new(client.clone());
    (
        factory.new_client(2, &BasicNode::new("node2:7000")).await,
        client,
    )
}

fn append(entries: usize) -> AppendEntriesRequest<crate::meta::TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries: (1..=entries as u64)
            .map(|i| normal(1, i, init_cluster()))
            .collect(),
        leader_commit: None,
    }
}

fn option() -> RPCOption {
    RPCOption::new(std::time::Duration::from_secs(1))
}

fn vote_request() -> VoteRequest<u64> {
    VoteRequest::new(Vote::new(2, 1), Some(log_id(1, 1)))
}

#[tokio::test]
async fn transport_failure_is_unreachable() {
    let down = TransportError::Connect {
        addr: "node2:7000".into(),
        reason: "refused".into(),
    };
    let (mut net, client) = network(Err(down)).await;
    let err = net.vote(vote_request(), option()).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    assert_eq!(
        *client.called.lock().unwrap(),
        vec!["node2:7000".to_string()]
    );
}

#[tokio::test]
async fn oversized_batch_asks_openraft_to_split() {
    let (mut net, _) = network(Err(TransportError::TooLarge)).await;
    match net.append_entries(append(8), option()).await.unwrap_err() {
        RPCError::PayloadTooLarge(e) => assert_eq!(e.entries_hint(), 4),
        other => panic!("{other:?}"),
    }
    let err = net.append_entries(append(1), option()).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn undecodable_or_mismatched_reply_is_a_network_error() {
    let (mut net, _) = network(Ok(vec![0xff; 3])).await;
    let err = net.vote(vote_request(), option()).await.unwrap_err();
    assert!(matches!(err, RPCError::Network(_)), "{err:?}");

    let wrong = PeerResponse::ReadIndex(Ok(3)).encode().unwrap();
    let (mut net, _) = network(Ok(wrong)).await;
    let err = net.vote(vote_request(), option()).await.unwrap_err();
    assert!(matches!(err, RPCError::Network(_)), "{err:?}");
}

#[tokio::test]
async fn raft_error_from_the_peer_is_a_remote_error() {
    let stopped = PeerResponse::Vote(Err(RaftError::Fatal(Fatal::Stopped)))
        .encode()
        .unwrap();
    let (mut net, _) = network(Ok(stopped)).await;
    match net.vote(vote_request(), option()).await.unwrap_err() {
        RPCError::RemoteError(e) => {
            assert_eq!(e.target, 2);
            assert!(matches!(e.source, RaftError::Fatal(Fatal::Stopped)));
        }
        other => panic!("{other:?}"),
    }
}
