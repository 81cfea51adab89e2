//! A peer client that records every successful call in [`PeerContacts`].

use std::sync::Arc;

use crate::seam::PeerContacts;

use super::{BoxFuture, RpcClient, TransportError};

/// An [`RpcClient`] that records every successful call in [`PeerContacts`].
pub struct ObservedClient {
    inner: Arc<dyn RpcClient>,
    contacts: Arc<PeerContacts>,
}

impl ObservedClient {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn RpcClient>, contacts: Arc<PeerContacts>) -> Self {
        ObservedClient { inner, contacts }
    }
}

impl RpcClient for ObservedClient {
    fn call(&self, addr: &str, request: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        let addr = addr.to_string();
        Box::pin(async move {
            let result = self.inner.call(&addr, request).await;
            if result.is_ok() {
                self.contacts.record(&addr);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::transport::RpcHandler;
    use crate::transport::memory::MemoryNetwork;

    struct Echo;
    impl RpcHandler for Echo {
        fn handle(&self, request: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
            Box::pin(async move { request })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn peers_answering_recently_are_reachable() {
        let net = MemoryNetwork::new();
        net.register("b", Arc::new(Echo));
        let contacts = Arc::new(PeerContacts::default());
        let client = ObservedClient::new(net.client("a"), contacts.clone());
        let window = Duration::from_secs(1);
        let members = || [(1, "a"), (2, "b"), (3, "c")].into_iter();
        let since = Instant::now();
        let unreachable = || contacts.unreachable(members(), 1, window, since);
        assert!(
            unreachable().is_empty(),
            "everyone gets a window from `since`"
        );
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(unreachable(), BTreeSet::from([2, 3]));
        client.call("b", vec![1]).await.unwrap();
        assert!(client.call("c", vec![1]).await.is_err());
        assert_eq!(unreachable(), BTreeSet::from([3]));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(unreachable(), BTreeSet::from([2, 3]));
    }
}
