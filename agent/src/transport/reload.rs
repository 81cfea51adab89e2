//! The certificates in use, replaced without a restart: an agent reloads its CA, node
//! certificate and key on SIGHUP (after `agent cert create-node` renewed them), and
//! publishes when each expires.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use super::certs;
use super::quic::QuicTransport;
use super::tls::{self, NodeTls, TlsError, TlsFiles};
use crate::metrics::{AgentMetrics, CertLabels, ReloadLabels};

/// Loads this agent's certificates into its peer transport.
pub struct TlsReloader {
    files: TlsFiles,
    transport: QuicTransport,
    metrics: Arc<AgentMetrics>,
}

impl TlsReloader {
    /// A reloader of `files` into `transport`.
    pub fn new(files: TlsFiles, transport: QuicTransport, metrics: Arc<AgentMetrics>) -> Self {
        Self {
            files,
            transport,
            metrics,
        }
    }

    /// Reads the files again and, if they make valid configurations, uses them for new
    /// connections. On an error the certificates in use stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let material = self.files.load()?;
        let server = tls::server_config(&material)?;
        let client = tls::client_config(&material)?;
        self.transport.set_tls(server, client);
        publish_expiry(&self.metrics, &material);
        Ok(())
    }

    /// Reloads on every SIGHUP, until the process ends.
    pub async fn run_on_hangup(self: Arc<Self>) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(why) => {
                tracing::error!(%why, "cannot listen for SIGHUP: certificates reload only on restart");
                return std::future::pending().await;
            }
        };
        while hangups.recv().await.is_some() {
            let outcome = match self.reload() {
                Ok(()) => {
                    tracing::info!(cert = %self.files.cert.display(), "reloaded the TLS certificates");
                    "ok"
                }
                Err(why) => {
                    tracing::error!(%why, "reloading the TLS certificates failed; the previous ones stay in use");
                    "error"
                }
            };
            self.metrics
                .tls_reloads
                .get_or_create(&ReloadLabels { outcome })
                .inc();
        }
    }
}

/// Sets `agent_tls_cert_expiry_seconds` for the node certificate and the CA.
pub fn publish_expiry(metrics: &AgentMetrics, material: &NodeTls) {
    for (cert, pem) in [
        ("node", &material.node.cert_pem),
        ("ca", &material.ca_cert_pem),
    ] {
        match certs::summarize(pem) {
            Ok(summary) => {
                metrics
                    .tls_cert_expiry_seconds
                    .get_or_create(&CertLabels { cert })
                    .set(summary.not_after);
            }
            Err(why) => tracing::warn!(cert, %why, "cannot read the certificate's expiry"),
        }
    }
}
