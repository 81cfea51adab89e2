//! Peer transport: the seam between agents. Production runs it over QUIC with mutual TLS
//! ([`quic`]); tests and `netsim` run the same code over an in-memory network.

pub mod certs;
pub mod memory;
pub mod observed;
pub mod quic;
pub mod reload;
pub mod tls;

pub use crate::seam::BoxFuture;

/// Largest request or response carried by one RPC, in bytes (a snapshot chunk fits).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Why an RPC did not produce a response. Nothing is known about whether the peer acted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No connection could be made to the peer.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// Peer address.
        addr: String,
        /// Cause.
        reason: String,
    },
    /// The peer did not answer in time.
    #[error("request to {0} timed out")]
    Timeout(String),
    /// The connection or stream failed mid-request.
    #[error("i/o with {addr} failed: {reason}")]
    Io {
        /// Peer address.
        addr: String,
        /// Cause.
        reason: String,
    },
    /// A message exceeded [`MAX_MESSAGE_BYTES`].
    #[error("message too large")]
    TooLarge,
}

/// Client side of the seam: one request, one response.
pub trait RpcClient: Send + Sync + 'static {
    /// Sends `request` to the agent at `addr` ("host:port") and waits for its response.
    fn call(&self, addr: &str, request: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, TransportError>>;
}

/// Server side of the seam: turns one request into one response.
pub trait RpcHandler: Send + Sync + 'static {
    /// Handles one request.
    fn handle(&self, request: Vec<u8>) -> BoxFuture<'_, Vec<u8>>;
}

/// Sending side of best-effort datagrams (gossip): no response, no retry, may be lost.
pub trait DatagramSender: Send + Sync + 'static {
    /// Hands one datagram for the agent at `addr` to the network. `Ok` does not mean it
    /// arrived; `Err` means it was certainly not sent.
    fn send_datagram(
        &self,
        addr: &str,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), TransportError>>;
}

/// Receiving side of datagrams: called once per datagram that arrives.
pub trait DatagramHandler: Send + Sync + 'static {
    /// Takes one datagram; must not block (hand it to a task through a channel).
    fn deliver(&self, payload: Vec<u8>);
}

/// Largest datagram payload the transport accepts. QUIC datagrams must fit one UDP packet
/// of the minimum QUIC path MTU (1200 bytes) after packet and frame headers and the AEAD
/// tag, which leaves a little over 1150 bytes.
pub const MAX_DATAGRAM_BYTES: usize = 1150;
