//! An in-memory network implementing the transport seam, for tests and the simulator:
//! calls go straight to the registered handler's future; partitions are symmetric.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    BoxFuture, DatagramHandler, DatagramSender, MAX_DATAGRAM_BYTES, MAX_MESSAGE_BYTES, RpcClient,
    RpcHandler, TransportError,
};

/// A set of named agents that can call each other in memory. Clones share the network.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    state: Arc<Mutex<State>>,
}

/// Registered handlers and cut links.
#[derive(Default)]
struct State {
    handlers: HashMap<String, Arc<dyn RpcHandler>>,
    datagram_handlers: HashMap<String, Arc<dyn DatagramHandler>>,
    /// Cut links, each stored with its endpoints in sorted order.
    partitions: HashSet<(String, String)>,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `handler` reachable at `addr`, replacing any previous one.
    pub fn register(&self, addr: &str, handler: Arc<dyn RpcHandler>) {
        self.lock().handlers.insert(addr.to_owned(), handler);
    }

    /// Makes `handler` receive the datagrams sent to `addr`, replacing any previous one.
    pub fn register_datagrams(&self, addr: &str, handler: Arc<dyn DatagramHandler>) {
        self.lock()
            .datagram_handlers
            .insert(addr.to_owned(), handler);
    }

    /// Removes the agent at `addr` (a crash): calls to it fail with `Connect` and its
    /// datagrams are lost.
    pub fn unregister(&self, addr: &str) {
        let mut state = self.lock();
        state.handlers.remove(addr);
        state.datagram_handlers.remove(addr);
    }

    /// Cuts the link between `a` and `b` in both directions.
    pub fn partition(&self, a: &str, b: &str) {
        self.lock().partitions.insert(link(a, b));
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&self, a: &str, b: &str) {
        self.lock().partitions.remove(&link(a, b));
    }

    /// A client whose calls originate from `from` (partitions are checked against it).
    pub fn client(&self, from: &str) -> Arc<dyn RpcClient> {
        Arc::new(MemoryClient {
            network: self.clone(),
            from: from.to_owned(),
        })
    }

    /// A datagram sender whose datagrams originate from `from`.
    pub fn datagram_sender(&self, from: &str) -> Arc<dyn DatagramSender> {
        Arc::new(MemoryClient {
            network: self.clone(),
            from: from.to_owned(),
        })
    }

    /// The handler `from` can reach at `to`, or why not.
    fn route(&self, from: &str, to: &str) -> Result<Arc<dyn RpcHandler>, TransportError> {
        let state = self.lock();
        if state.partitions.contains(&link(from, to)) {
            return Err(unreachable(to, "partitioned"));
        }
        state
            .handlers
            .get(to)
            .cloned()
            .ok_or_else(|| unreachable(to, "no agent at this address"))
    }

    /// The state; a panic elsewhere cannot leave it inconsistent, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The [`RpcClient`] of one agent on a [`MemoryNetwork`].
struct MemoryClient {
    network: MemoryNetwork,
    from: String,
}

impl RpcClient for MemoryClient {
    fn call(&self, addr: &str, request: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        // Routed now, so a partition made after the call started does not affect it.
        let route = self.network.route(&self.from, addr);
        Box::pin(async move {
            if request.len() > MAX_MESSAGE_BYTES {
                return Err(TransportError::TooLarge);
            }
            let response = route?.handle(request).await;
            if response.len() > MAX_MESSAGE_BYTES {
                return Err(TransportError::TooLarge);
            }
            Ok(response)
        })
    }
}

impl DatagramSender for MemoryClient {
    fn send_datagram(
        &self,
        addr: &str,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), TransportError>> {
        let result = if payload.len() > MAX_DATAGRAM_BYTES {
            Err(TransportError::TooLarge)
        } else {
            let state = self.network.lock();
            // Like UDP: a datagram to a cut link or a dead agent is silently lost.
            if !state.partitions.contains(&link(&self.from, addr))
                && let Some(handler) = state.datagram_handlers.get(addr)
            {
                handler.deliver(payload);
            }
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }
}

/// The key of the link between `a` and `b`, the same in both directions.
fn link(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// A [`TransportError::Connect`] to `addr`.
fn unreachable(addr: &str, reason: &str) -> TransportError {
    TransportError::Connect {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Echoes requests and counts them.
    #[derive(Default)]
    struct Echo(AtomicUsize);

    impl RpcHandler for Echo {
        fn handle(&self, request: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { request })
        }
    }

    #[tokio::test]
    async fn routes_partitions_and_heals() {
        let net = MemoryNetwork::new();
        let (a, b) = (Arc::new(Echo::default()), Arc::new(Echo::default()));
        net.register("a:1", a.clone());
        net.register("b:1", b.clone());
        let (ca, cb) = (net.client("a:1"), net.client("b:1"));

        assert_eq!(ca.call("b:1", b"hi".to_vec()).await.unwrap(), b"hi");
        assert_eq!(cb.call("a:1", b"yo".to_vec()).await.unwrap(), b"yo");

        net.partition("b:1", "a:1");
        assert!(matches!(
            ca.call("b:1", vec![1]).await,
            Err(TransportError::Connect { .. })
        ));
        assert!(matches!(
            cb.call("a:1", vec![1]).await,
            Err(TransportError::Connect { .. })
        ));
        assert_eq!(
            a.0.load(Ordering::SeqCst),
            1,
            "a partitioned handler must not run"
        );

        net.heal("a:1", "b:1");
        assert_eq!(ca.call("b:1", vec![2]).await.unwrap(), vec![2]);

        net.unregister("b:1");
        assert!(matches!(
            ca.call("b:1", vec![3]).await,
            Err(TransportError::Connect { .. })
        ));
        assert!(matches!(
            ca.call("c:1", vec![3]).await,
            Err(TransportError::Connect { .. })
        ));
        assert_eq!(b.0.load(Ordering::SeqCst), 2);
    }
}
