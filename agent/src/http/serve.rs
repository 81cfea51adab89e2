//! Serving the HTTP API: axum's router on hyper connections, with limits axum::serve
//! does not set. A client that opens a connection and never finishes its request
//! headers is cut off after the header read timeout (1,000 such connections once stayed
//! open for good).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Pause after a failed accept (out of file descriptors): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How long open connections may take to finish their requests at shutdown.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// How often the stop checks whether clients closed their connections.
const CLIENT_CLOSE_POLL: Duration = Duration::from_millis(20);

/// Serves `router` on `listener` until `shutdown` completes; a request's headers must
/// arrive within `header_read_timeout` of its first byte (HTTP/1). Then it accepts no
/// more connections, waits up to `client_close_grace` for clients to close the ones
/// they have (the router answers `Connection: close` by then), and closes the rest once
/// their requests in flight are answered.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    client_close_grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        // Above the router's own limit, which answers with a JSON error first.
        .max_headers(super::request_shape::HYPER_MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(why) => {
                    tracing::warn!(%why, "accepting an HTTP connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        // One task per connection, ended by its client, its timeouts or the shutdown.
        tokio::spawn(async move {
            if let Err(why) = connection.await {
                tracing::debug!(%why, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    // Closing an idle keep-alive connection races with a request its client sends on it
    // at that moment, which then gets no answer: let clients close them first.
    let grace_ends = tokio::time::Instant::now() + client_close_grace;
    while graceful.count() > 0 && tokio::time::Instant::now() < grace_ends {
        tokio::time::sleep(CLIENT_CLOSE_POLL).await;
    }
    if tokio::time::timeout(SHUTDOWN_DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open at shutdown were cut");
    }
}
