//! The production transport: QUIC with mutual TLS. One request per bidirectional stream;
//! one cached connection per peer; one endpoint that is both server and client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{
    ConnectionError, Endpoint, Incoming, ReadError, ReadToEndError, RecvStream, SendStream, VarInt,
    WriteError,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{debug, warn};

use shared::format::PEER_FORMAT;

use super::tls::{AGENT_SERVER_NAME, alpn_protocol};
use super::{
    BoxFuture, DatagramHandler, DatagramSender, MAX_DATAGRAM_BYTES, MAX_MESSAGE_BYTES, RpcClient,
    RpcHandler, TransportError,
};

/// Application error code closing the endpoint on shutdown.
const CLOSE_SHUTDOWN: u32 = 0;

/// Stream error code: the request was abandoned by its sender (timeout or cancellation).
const STREAM_CANCELLED: u32 = 1;

/// Stream error code: a request or response exceeded [`MAX_MESSAGE_BYTES`].
const STREAM_TOO_LARGE: u32 = 2;

/// Why a [`QuicTransport`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// One connection slot per peer. The async lock is held only while (re)connecting to that
/// peer, so concurrent first calls share one handshake and other peers are not blocked.
type PeerSlot = tokio::sync::Mutex<Option<quinn::Connection>>;

/// QUIC peer transport: serves [`RpcHandler`] requests and implements [`RpcClient`].
#[derive(Clone)]
pub struct QuicTransport {
    inner: Arc<Inner>,
}

/// Shared state behind [`QuicTransport`] clones.
struct Inner {
    endpoint: Endpoint,
    /// How this endpoint dials (replaced when the certificates are reloaded).
    client: std::sync::RwLock<quinn::ClientConfig>,
    local_addr: SocketAddr,
    request_timeout: Duration,
    peers: Mutex<HashMap<String, Arc<PeerSlot>>>,
    /// Receiver of datagrams arriving on any connection, set once by `serve_datagrams`.
    datagrams: std::sync::OnceLock<Arc<dyn DatagramHandler>>,
}

impl QuicTransport {
    /// Binds one endpoint on `listen` that accepts with `server` and dials with `client`.
    /// Must be called inside a tokio runtime (the endpoint driver is spawned on it).
    pub fn bind(
        listen: SocketAddr,
        server: quinn::ServerConfig,
        client: quinn::ClientConfig,
        request_timeout: Duration,
    ) -> Result<Self, QuicError> {
        let bind_err = |source| QuicError::Bind {
            addr: listen,
            source,
        };
        let endpoint = Endpoint::server(server, listen).map_err(bind_err)?;
        let local_addr = endpoint.local_addr().map_err(bind_err)?;
        let peers = Mutex::new(HashMap::new());
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                client: std::sync::RwLock::new(client),
                local_addr,
                request_timeout,
                peers,
                datagrams: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Uses new TLS configurations (a renewed certificate) for connections made from now
    /// on; open connections keep the session they have.
    pub fn set_tls(&self, server: quinn::ServerConfig, client: quinn::ClientConfig) {
        self.inner.endpoint.set_server_config(Some(server));
        *self.inner.client.write().unwrap_or_else(|e| e.into_inner()) = client;
    }

    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Hands every datagram that arrives, on incoming or outgoing connections, to
    /// `handler`. Only the first call takes effect; datagrams arriving before it are dropped.
    pub fn serve_datagrams(&self, handler: Arc<dyn DatagramHandler>) {
        let _ = self.inner.datagrams.set(handler);
    }

    /// Serves incoming requests with `handler` until [`close`](Self::close) is called.
    pub fn serve(&self, handler: Arc<dyn RpcHandler>) -> JoinHandle<()> {
        let endpoint = self.inner.endpoint.clone();
        let read_timeout = self.inner.request_timeout;
        let inner = self.inner.clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let datagrams = inner.clone();
                tokio::spawn(serve_connection(
                    incoming,
                    handler.clone(),
                    read_timeout,
                    datagrams,
                ));
            }
            debug!("peer endpoint closed, accept loop stopped");
        })
    }

    /// Closes every connection and stops accepting; in-flight calls fail.
    pub fn close(&self) {
        self.inner
            .endpoint
            .close(VarInt::from_u32(CLOSE_SHUTDOWN), b"shutdown");
    }

    /// Waits until closed connections have told their peers, so they reconnect at once
    /// instead of waiting for their idle timeout. Call after [`close`](Self::close).
    pub async fn wait_idle(&self) {
        self.inner.endpoint.wait_idle().await;
    }

    /// One request/response exchange with `addr`, bounded by the request timeout.
    async fn request(&self, addr: String, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        if request.len() > MAX_MESSAGE_BYTES {
            return Err(TransportError::TooLarge);
        }
        let deadline = Instant::now() + self.inner.request_timeout;
        // A deadline hit before a connection exists still means nothing was sent: Connect.
        let conn = timeout_at(deadline, self.connection(&addr))
            .await
            .map_err(|_| connect_error(&addr, "timed out connecting"))??;
        match timeout_at(deadline, exchange(&conn, &request)).await {
            Ok(result) => result.map_err(|e| e.into_transport(addr)),
            Err(_) => Err(TransportError::Timeout(addr)),
        }
    }

    /// The live cached connection to `addr`, or a new one. A closed connection (peer gone,
    /// idle timeout, connection-level failure of an earlier call) is replaced here.
    async fn connection(&self, addr: &str) -> Result<quinn::Connection, TransportError> {
        let slot = self.slot(addr);
        let mut cached = slot.lock().await;
        if let Some(conn) = cached.as_ref()
            && conn.close_reason().is_none()
        {
            return Ok(conn.clone());
        }
        let conn = self.connect(addr).await?;
        *cached = Some(conn.clone());
        Ok(conn)
    }

    /// The connection slot of `addr`; the map lock is never held across an await.
    fn slot(&self, addr: &str) -> Arc<PeerSlot> {
        let mut peers = self.inner.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.entry(addr.to_owned()).or_default().clone()
    }

    /// Resolves `addr` and completes a handshake with it.
    async fn connect(&self, addr: &str) -> Result<quinn::Connection, TransportError> {
        let target = self.resolve(addr).await?;
        let client = self
            .inner
            .client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let connecting = self
            .inner
            .endpoint
            .connect_with(client, target, AGENT_SERVER_NAME)
            .map_err(|e| connect_error(addr, error_chain(&e)))?;
        let conn = connecting
            .await
            .map_err(|e| connect_error(addr, handshake_failure(&e)))?;
        debug!(peer = addr, "connected");
        // The peer may send datagrams on the connection we opened: read them too.
        tokio::spawn(read_datagrams(conn.clone(), self.inner.clone()));
        Ok(conn)
    }

    /// Sends one datagram on the (cached or new) connection to `addr`.
    async fn datagram(&self, addr: String, payload: Vec<u8>) -> Result<(), TransportError> {
        if payload.len() > MAX_DATAGRAM_BYTES {
            return Err(TransportError::TooLarge);
        }
        let deadline = Instant::now() + self.inner.request_timeout;
        let conn = timeout_at(deadline, self.connection(&addr))
            .await
            .map_err(|_| connect_error(&addr, "timed out connecting"))??;
        conn.send_datagram(payload.into()).map_err(|e| match e {
            quinn::SendDatagramError::TooLarge => TransportError::TooLarge,
            other => TransportError::Io {
                addr,
                reason: error_chain(&other),
            },
        })
    }

    /// Turns "host:port" into a socket address of the endpoint's own family (an IPv4
    /// socket cannot reach an IPv6 address, and "localhost" often resolves to both).
    async fn resolve(&self, addr: &str) -> Result<SocketAddr, TransportError> {
        if let Ok(target) = addr.parse::<SocketAddr>() {
            return Ok(target);
        }
        let candidates: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| connect_error(addr, e))?
            .collect();
        let want_v4 = self.inner.local_addr.is_ipv4();
        candidates
            .iter()
            .find(|c| c.is_ipv4() == want_v4)
            .or(candidates.first())
            .copied()
            .ok_or_else(|| connect_error(addr, "no address found"))
    }
}

impl RpcClient for QuicTransport {
    fn call(&self, addr: &str, request: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        let addr = addr.to_owned();
        Box::pin(self.request(addr, request))
    }
}

impl DatagramSender for QuicTransport {
    fn send_datagram(
        &self,
        addr: &str,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), TransportError>> {
        let addr = addr.to_owned();
        Box::pin(self.datagram(addr, payload))
    }
}

/// Delivers the datagrams of one connection until it closes.
async fn read_datagrams(conn: quinn::Connection, inner: Arc<Inner>) {
    while let Ok(datagram) = conn.read_datagram().await {
        if let Some(handler) = inner.datagrams.get() {
            handler.deliver(datagram.to_vec());
        }
    }
}

/// How one exchange on an established connection failed.
#[derive(Debug)]
enum ExchangeError {
    /// No stream could be opened: the request was not sent.
    Open(ConnectionError),
    /// Sending the request failed.
    Write(WriteError),
    /// Receiving the response failed.
    Read(ReadToEndError),
}

impl ExchangeError {
    /// Maps to the seam's error for peer `addr`.
    fn into_transport(self, addr: String) -> TransportError {
        if self.is_too_large() {
            return TransportError::TooLarge;
        }
        match &self {
            Self::Open(e) => TransportError::Connect {
                addr,
                reason: error_chain(e),
            },
            Self::Write(e) => TransportError::Io {
                addr,
                reason: error_chain(e),
            },
            Self::Read(e) => TransportError::Io {
                addr,
                reason: error_chain(e),
            },
        }
    }

    /// Whether a message exceeded the limit on either side.
    fn is_too_large(&self) -> bool {
        let too_large = VarInt::from_u32(STREAM_TOO_LARGE);
        match self {
            Self::Write(WriteError::Stopped(code)) => *code == too_large,
            Self::Read(ReadToEndError::TooLong) => true,
            Self::Read(ReadToEndError::Read(ReadError::Reset(code))) => *code == too_large,
            _ => false,
        }
    }
}

/// Sends `request` on a new stream of `conn` and reads the whole response.
async fn exchange(conn: &quinn::Connection, request: &[u8]) -> Result<Vec<u8>, ExchangeError> {
    let (send, mut recv) = conn.open_bi().await.map_err(ExchangeError::Open)?;
    let mut send = ResetOnDrop {
        stream: send,
        finished: false,
    };
    send.stream
        .write_all(request)
        .await
        .map_err(ExchangeError::Write)?;
    send.finish();
    recv.read_to_end(MAX_MESSAGE_BYTES)
        .await
        .map_err(ExchangeError::Read)
}

/// A send stream that is reset, not finished, if dropped before [`finish`](Self::finish):
/// quinn finishes dropped streams, which would hand the peer a truncated message as if it
/// were complete (a call cancelled mid-write, a handler that panicked).
struct ResetOnDrop {
    stream: SendStream,
    finished: bool,
}

impl ResetOnDrop {
    /// Marks the message complete.
    fn finish(&mut self) {
        // Err only if the stream is already closed, which the peer then reports.
        let _ = self.stream.finish();
        self.finished = true;
    }

    /// Abandons the message with error `code`.
    fn reset(&mut self, code: u32) {
        // Err only if the stream is already closed: nothing left to abandon.
        let _ = self.stream.reset(VarInt::from_u32(code));
        self.finished = true;
    }
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if !self.finished {
            self.reset(STREAM_CANCELLED);
        }
    }
}

/// Completes the handshake of one incoming connection and serves its streams concurrently.
async fn serve_connection(
    incoming: Incoming,
    handler: Arc<dyn RpcHandler>,
    read_timeout: Duration,
    inner: Arc<Inner>,
) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            // Includes peers rejected by mutual TLS or speaking another protocol version.
            warn!(%remote, error = %handshake_failure(&e), "incoming peer connection failed");
            return;
        }
    };
    tokio::spawn(read_datagrams(conn.clone(), inner));
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(send, recv, handler.clone(), read_timeout));
            }
            Err(e) => {
                debug!(%remote, reason = %e, "peer connection ended");
                return;
            }
        }
    }
}

/// Serves one request: read it whole, run the handler, send the response.
async fn serve_stream(
    send: SendStream,
    mut recv: RecvStream,
    handler: Arc<dyn RpcHandler>,
    read_timeout: Duration,
) {
    // If the handler panics, the peer must see a reset, not an empty "response".
    let mut send = ResetOnDrop {
        stream: send,
        finished: false,
    };
    // Bounded in time too: a peer that never finishes its request must not pin a task.
    let request = match timeout(read_timeout, recv.read_to_end(MAX_MESSAGE_BYTES)).await {
        Ok(Ok(request)) => request,
        Ok(Err(ReadToEndError::TooLong)) => {
            debug!("request exceeds MAX_MESSAGE_BYTES, refused");
            let _ = recv.stop(VarInt::from_u32(STREAM_TOO_LARGE));
            send.reset(STREAM_TOO_LARGE);
            return;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "request not received");
            return;
        }
        Err(_) => {
            debug!("request not received in time");
            return;
        }
    };
    let response = handler.handle(request).await;
    if let Err(e) = send_response(&mut send, &response).await {
        debug!(error = %e, "response not sent");
    }
}

/// Writes a complete response, or refuses one over the limit.
async fn send_response(send: &mut ResetOnDrop, response: &[u8]) -> Result<(), WriteError> {
    if response.len() > MAX_MESSAGE_BYTES {
        warn!(
            len = response.len(),
            "response exceeds MAX_MESSAGE_BYTES, not sent"
        );
        send.reset(STREAM_TOO_LARGE);
        return Ok(());
    }
    send.stream.write_all(response).await?;
    // Dropping a finished stream still delivers the buffered data.
    send.finish();
    Ok(())
}

/// `error` and its sources, e.g. "read error: connection lost: aborted by peer: ...":
/// quinn's top-level messages alone hide causes such as a rejected certificate.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often repeat their source's message; say it once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// TLS alert `no_application_protocol`: the peers share no ALPN protocol.
const NO_APPLICATION_PROTOCOL_ALERT: u8 = 120;

/// Why a handshake failed, naming a peer-protocol version mismatch as such.
fn handshake_failure(e: &ConnectionError) -> String {
    let alert = quinn::TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL_ALERT);
    let code = match e {
        ConnectionError::ConnectionClosed(close) => Some(close.error_code),
        ConnectionError::TransportError(error) => Some(error.code),
        _ => None,
    };
    if code == Some(alert) {
        format!(
            "no common peer protocol version (this agent speaks {}): the peer runs an incompatible agent release",
            String::from_utf8_lossy(&alpn_protocol(PEER_FORMAT))
        )
    } else {
        error_chain(e)
    }
}

/// A [`TransportError::Connect`] for `addr`.
fn connect_error(addr: &str, reason: impl ToString) -> TransportError {
    TransportError::Connect {
        addr: addr.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::transport::tls::{self, CertPair, NodeTls, TlsFiles};

    /// Request timeout of the test transports.
    const TEST_TIMEOUT: Duration = Duration::from_secs(2);

    /// Echoes requests and counts them.
    #[derive(Default)]
    struct Echo(AtomicUsize);

    impl RpcHandler for Echo {
        fn handle(&self, request: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { request })
        }
    }

    /// Answers after [`TEST_TIMEOUT`] has passed, or panics on an empty request.
    struct Stuck;

    impl RpcHandler for Stuck {
        fn handle(&self, request: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
            assert!(!request.is_empty(), "handler panics on purpose");
            Box::pin(async move {
                tokio::time::sleep(TEST_TIMEOUT * 2).await;
                request
            })
        }
    }

    /// A cluster CA and the TLS material of its nodes, loaded back from files.
    struct Cluster {
        ca: CertPair,
        dir: tempfile::TempDir,
    }

    impl Cluster {
        fn new() -> Self {
            Self {
                ca: tls::generate_ca("test").unwrap(),
                dir: tempfile::tempdir().unwrap(),
            }
        }

        /// Writes node `id`'s material to disk and loads it back, as an agent would.
        fn node(&self, id: u64) -> NodeTls {
            let tls = NodeTls {
                ca_cert_pem: self.ca.cert_pem.clone(),
                node: tls::issue_node_cert(&self.ca, id).unwrap(),
            };
            let files = TlsFiles::in_dir(&self.dir.path().join(id.to_string()));
            std::fs::create_dir_all(files.ca_cert.parent().unwrap()).unwrap();
            files.write(&tls).unwrap();
            files.load().unwrap()
        }
    }

    fn bind_on(addr: SocketAddr, tls: &NodeTls) -> Result<QuicTransport, QuicError> {
        let server = tls::server_config(tls).unwrap();
        let client = tls::client_config(tls).unwrap();
        QuicTransport::bind(addr, server, client, TEST_TIMEOUT)
    }

    fn start(tls: &NodeTls) -> (QuicTransport, Arc<Echo>) {
        let transport = bind_on("127.0.0.1:0".parse().unwrap(), tls).unwrap();
        let echo = Arc::new(Echo::default());
        transport.serve(echo.clone());
        (transport, echo)
    }

    #[tokio::test]
    async fn calls_both_ways_concurrently_and_large() {
        let cluster = Cluster::new();
        let (a, echo_a) = start(&cluster.node(1));
        let (b, echo_b) = start(&cluster.node(2));
        let (addr_a, addr_b) = (a.local_addr().to_string(), b.local_addr().to_string());

        assert_eq!(a.call(&addr_b, b"ping".to_vec()).await.unwrap(), b"ping");
        assert_eq!(b.call(&addr_a, b"pong".to_vec()).await.unwrap(), b"pong");
        let by_name = format!("localhost:{}", b.local_addr().port());
        assert_eq!(a.call(&by_name, b"named".to_vec()).await.unwrap(), b"named");

        let calls = (0..100u32).map(|i| {
            let (a, addr_b) = (a.clone(), addr_b.clone());
            tokio::spawn(async move { (i, a.call(&addr_b, i.to_be_bytes().to_vec()).await) })
        });
        for call in calls.collect::<Vec<_>>() {
            let (i, response) = call.await.unwrap();
            assert_eq!(response.unwrap(), i.to_be_bytes());
        }

        let large: Vec<u8> = (0..2 * 1024 * 1024).map(|i: u32| i as u8).collect();
        assert_eq!(b.call(&addr_a, large.clone()).await.unwrap(), large);
        assert_eq!(echo_b.0.load(Ordering::SeqCst), 102);
        assert_eq!(echo_a.0.load(Ordering::SeqCst), 2);

        let too_large = vec![0; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            a.call(&addr_b, too_large).await,
            Err(TransportError::TooLarge)
        );
    }

    #[tokio::test]
    async fn a_peer_of_another_protocol_version_is_refused_by_name() {
        let cluster = Cluster::new();
        let (server, echo) = start(&cluster.node(1));
        let tls = cluster.node(2);
        let newer = QuicTransport::bind(
            "127.0.0.1:0".parse().unwrap(),
            tls::server_config_speaking(&tls, PEER_FORMAT + 1).unwrap(),
            tls::client_config_speaking(&tls, PEER_FORMAT + 1).unwrap(),
            TEST_TIMEOUT,
        )
        .unwrap();
        newer.serve(Arc::new(Echo::default()));

        let result = newer
            .call(&server.local_addr().to_string(), b"hello".to_vec())
            .await;
        let Err(TransportError::Connect { reason, .. }) = result else {
            panic!("{result:?}")
        };
        assert!(reason.contains("peer protocol version"), "{reason}");
        let result = server
            .call(&newer.local_addr().to_string(), b"hello".to_vec())
            .await;
        let Err(TransportError::Connect { reason, .. }) = result else {
            panic!("{result:?}")
        };
        assert!(reason.contains("peer protocol version"), "{reason}");
        assert_eq!(echo.0.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn rejects_client_of_another_ca() {
        let cluster = Cluster::new();
        let (server, echo) = start(&cluster.node(1));
        // Trusts the real CA (so the server passes), but its own certificate is foreign.
        let rogue_ca = tls::generate_ca("rogue").unwrap();
        let rogue = NodeTls {
            ca_cert_pem: cluster.ca.cert_pem.clone(),
            node: tls::issue_node_cert(&rogue_ca, 9).unwrap(),
        };
        let (client, _) = start(&rogue);

        let result = client
            .call(&server.local_addr().to_string(), b"let me in".to_vec())
            .await;
        let Err(TransportError::Io { reason, .. }) = result else {
            panic!("{result:?}")
        };
        assert!(reason.contains("UnknownIssuer"), "{reason}");
        assert_eq!(echo.0.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn slow_or_panicking_handler_fails_the_call() {
        let cluster = Cluster::new();
        let server = bind_on("127.0.0.1:0".parse().unwrap(), &cluster.node(1)).unwrap();
        server.serve(Arc::new(Stuck));
        let (client, _) = start(&cluster.node(2));
        let addr = server.local_addr().to_string();

        let started = std::time::Instant::now();
        assert_eq!(
            client.call(&addr, vec![1]).await,
            Err(TransportError::Timeout(addr.clone()))
        );
        assert!(started.elapsed() < TEST_TIMEOUT + Duration::from_millis(500));
        // A panicking handler resets the stream rather than sending an empty "response".
        let result = client.call(&addr, Vec::new()).await;
        assert!(
            matches!(result, Err(TransportError::Io { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn closed_port_fails_within_timeout() {
        let cluster = Cluster::new();
        let (client, _) = start(&cluster.node(1));
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();

        let started = std::time::Instant::now();
        let result = client.call(&closed.to_string(), b"anyone?".to_vec()).await;
        assert!(
            matches!(result, Err(TransportError::Connect { .. })),
            "{result:?}"
        );
        assert!(started.elapsed() < TEST_TIMEOUT + Duration::from_millis(500));
    }

    #[tokio::test]
    async fn reconnects_after_server_restart() {
        let cluster = Cluster::new();
        let server_tls = cluster.node(1);
        let (server, _) = start(&server_tls);
        let (client, _) = start(&cluster.node(2));
        let addr = server.local_addr();
        assert_eq!(
            client.call(&addr.to_string(), vec![1]).await.unwrap(),
            vec![1]
        );

        server.close();
        server.wait_idle().await;
        drop(server);
        let restarted = rebind(addr, &server_tls).await;
        let echo = Arc::new(Echo::default());
        restarted.serve(echo.clone());

        // The close reached the client, so its cached connection is replaced transparently.
        assert_eq!(
            client.call(&addr.to_string(), vec![2]).await.unwrap(),
            vec![2]
        );
        assert_eq!(echo.0.load(Ordering::SeqCst), 1);
    }

    /// Binds `addr` again, waiting for the old endpoint's driver to release the socket.
    async fn rebind(addr: SocketAddr, tls: &NodeTls) -> QuicTransport {
        const ATTEMPTS: u32 = 50;
        for _ in 0..ATTEMPTS {
            if let Ok(transport) = bind_on(addr, tls) {
                return transport;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("port {addr} was not released");
    }
}
