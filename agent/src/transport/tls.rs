//! Cluster PKI and the rustls/quinn configurations for mutual TLS between agents.
//!
//! A cluster has one self-signed CA; every node holds a certificate signed by it. Servers
//! require a client certificate from the same CA, clients trust only that CA (never web
//! roots), so only cluster members can talk to each other.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{RootCertStore, version::TLS13};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use shared::format::PEER_FORMAT;

/// Server name every node certificate carries and every client connects with.
pub const AGENT_SERVER_NAME: &str = "agent";

/// ALPN protocol of the peer transport: `agent-peer/<version>`, one per version of
/// `shared::format::PEER_FORMAT`. Peers that share none fail the handshake.
pub fn alpn_protocol(version: u16) -> Vec<u8> {
    format!("agent-peer/{version}").into_bytes()
}

/// Interval of QUIC keep-alive pings: keeps idle connections (and NAT state) alive and
/// lets a dead peer be noticed within [`MAX_IDLE_TIMEOUT`].
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// A connection with no packet from the peer for this long is closed (dead-peer detection).
/// Must stay well above [`KEEP_ALIVE_INTERVAL`] so a few lost pings do not kill a connection.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Concurrent requests (bidirectional streams) a peer may have open on one connection;
/// further requests wait for a free stream instead of failing.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Days a cluster CA stays valid unless told otherwise (`agent cert create-ca --valid-days`).
pub const CA_VALIDITY_DAYS: u32 = 10 * 365;

/// Days a node certificate stays valid unless told otherwise: short enough to be rotated
/// (an agent reloads its certificate on SIGHUP).
pub const NODE_CERT_VALIDITY_DAYS: u32 = 2 * 365;

/// Certificates start this long before they are made, so a peer whose clock lags accepts them.
const BACKDATE: time::Duration = time::Duration::days(1);

/// Longest host name accepted in a certificate (DNS limit).
const MAX_HOST_NAME_BYTES: usize = 253;

/// Unix permissions of private key files: owner read/write only.
const KEY_FILE_MODE: u32 = 0o600;

/// Unix permissions of certificate files: public material.
const CERT_FILE_MODE: u32 = 0o644;

/// Certificate file name used by [`TlsFiles::in_dir`] for the cluster CA.
const CA_CERT_FILE: &str = "ca.pem";

/// Certificate file name used by [`TlsFiles::in_dir`] for the node.
const NODE_CERT_FILE: &str = "node.pem";

/// Key file name used by [`TlsFiles::in_dir`] for the node.
const NODE_KEY_FILE: &str = "node.key";

/// Why a certificate or TLS configuration could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate or key generation failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A PEM document could not be parsed.
    #[error("invalid PEM ({what}): {source}")]
    Pem {
        /// Which document.
        what: &'static str,
        /// Cause.
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate could not be decoded.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// The CA key given is not the key of the CA certificate.
    #[error("the CA key does not belong to the CA certificate")]
    CaKeyMismatch,
    /// A host name that cannot go into a certificate.
    #[error("invalid host {0:?}: give a DNS name or an IP address")]
    BadHost(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// rustls rejected the certificates, key or protocol settings.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(#[from] VerifierBuilderError),
    /// The rustls configuration lacks the cipher suite QUIC needs for its initial packets.
    #[error("QUIC: {0}")]
    Quic(#[from] NoInitialCipherSuite),
}

/// A certificate and its private key, both PEM-encoded.
#[derive(Clone)]
pub struct CertPair {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The PKCS#8 private key (PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    // Never print the private key into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Everything a node needs for mutual TLS: the cluster CA certificate and its own pair.
#[derive(Debug, Clone)]
pub struct NodeTls {
    /// The cluster CA certificate (PEM); the only trust anchor.
    pub ca_cert_pem: String,
    /// This node's certificate and key.
    pub node: CertPair,
}

/// Where a node's TLS material lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// This node's certificate (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM, mode 0600).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The conventional file names (`ca.pem`, `node.pem`, `node.key`) inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join(CA_CERT_FILE),
            cert: dir.join(NODE_CERT_FILE),
            key: dir.join(NODE_KEY_FILE),
        }
    }

    /// Writes the CA certificate and the node pair (the key with mode 0600).
    pub fn write(&self, tls: &NodeTls) -> Result<(), TlsError> {
        write_file(&self.ca_cert, tls.ca_cert_pem.as_bytes(), CERT_FILE_MODE)?;
        write_pair(&tls.node, &self.cert, &self.key)
    }

    /// Reads the CA certificate and the node pair back.
    pub fn load(&self) -> Result<NodeTls, TlsError> {
        Ok(NodeTls {
            ca_cert_pem: read_file(&self.ca_cert)?,
            node: read_pair(&self.cert, &self.key)?,
        })
    }
}

/// Writes a certificate (mode 0644) and its key (mode 0600) to the given paths.
pub fn write_pair(pair: &CertPair, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    write_file(cert_path, pair.cert_pem.as_bytes(), CERT_FILE_MODE)?;
    write_file(key_path, pair.key_pem.as_bytes(), KEY_FILE_MODE)
}

/// Reads a certificate and its key from the given paths.
pub fn read_pair(cert_path: &Path, key_path: &Path) -> Result<CertPair, TlsError> {
    Ok(CertPair {
        cert_pem: read_file(cert_path)?,
        key_pem: read_file(key_path)?,
    })
}

/// Generates a self-signed cluster CA named after `cluster_name`, valid for
/// [`CA_VALIDITY_DAYS`].
pub fn generate_ca(cluster_name: &str) -> Result<CertPair, TlsError> {
    generate_ca_valid_for(cluster_name, CA_VALIDITY_DAYS)
}

/// Generates a self-signed cluster CA valid for `valid_days`.
pub fn generate_ca_valid_for(cluster_name: &str, valid_days: u32) -> Result<CertPair, TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = ca_name(cluster_name);
    // Path length 0: the CA signs node certificates only, never intermediate CAs.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = ca_key_usages();
    set_validity(&mut params, valid_days);
    let cert = params.self_signed(&key)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What a node certificate is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertRequest {
    /// The node's id (its certificate's common name is `node-<id>`).
    pub node_id: u64,
    /// Host names and IP addresses of the node, added to the names every node
    /// certificate carries ([`AGENT_SERVER_NAME`], `node-<id>`, localhost).
    pub hosts: Vec<String>,
    /// Days from now until it expires.
    pub valid_days: u32,
}

/// Issues the certificate of node `node_id`, signed by `ca`, valid as server and client
/// for [`NODE_CERT_VALIDITY_DAYS`].
pub fn issue_node_cert(ca: &CertPair, node_id: u64) -> Result<CertPair, TlsError> {
    let request = NodeCertRequest {
        node_id,
        hosts: Vec::new(),
        valid_days: NODE_CERT_VALIDITY_DAYS,
    };
    issue_node_cert_for(ca, &request)
}

/// Issues a node certificate as `request` says, signed by `ca`.
pub fn issue_node_cert_for(ca: &CertPair, request: &NodeCertRequest) -> Result<CertPair, TlsError> {
    let issuer = ca_issuer(ca)?;
    let key = KeyPair::generate()?;
    let params = node_params(request)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The QUIC server configuration: TLS 1.3, client certificates from the cluster CA required.
pub fn server_config(tls: &NodeTls) -> Result<quinn::ServerConfig, TlsError> {
    server_config_speaking(tls, PEER_FORMAT)
}

/// [`server_config`] speaking peer-protocol version `version` (tests).
pub fn server_config_speaking(
    tls: &NodeTls,
    version: u16,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let roots = Arc::new(root_store(&tls.ca_cert_pem)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).build()?;
    let (chain, key) = parse_pair(&tls.node)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![alpn_protocol(version)];
    let crypto = QuicServerConfig::try_from(config)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport_config());
    Ok(server)
}

/// The QUIC client configuration: trusts only the cluster CA and presents the node certificate.
pub fn client_config(tls: &NodeTls) -> Result<quinn::ClientConfig, TlsError> {
    client_config_speaking(tls, PEER_FORMAT)
}

/// [`client_config`] speaking peer-protocol version `version` (tests).
pub fn client_config_speaking(
    tls: &NodeTls,
    version: u16,
) -> Result<quinn::ClientConfig, TlsError> {
    let (chain, key) = parse_pair(&tls.node)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&TLS13])?
        .with_root_certificates(root_store(&tls.ca_cert_pem)?)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![alpn_protocol(version)];
    let crypto = QuicClientConfig::try_from(config)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport_config());
    Ok(client)
}

/// The ring provider, explicitly: the default-provider lookup panics when several are linked.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// QUIC transport parameters shared by both directions.
fn transport_config() -> Arc<TransportConfig> {
    let idle_ms = u32::try_from(MAX_IDLE_TIMEOUT.as_millis()).unwrap_or(u32::MAX);
    let mut transport = TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(idle_ms))))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_STREAMS))
        // Requests use bidirectional streams only; refuse the other kind.
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    Arc::new(transport)
}

/// A trust store holding only the cluster CA.
fn root_store(ca_cert_pem: &str) -> Result<RootCertStore, TlsError> {
    let ca =
        CertificateDer::from_pem_slice(ca_cert_pem.as_bytes()).map_err(|source| TlsError::Pem {
            what: "CA certificate",
            source,
        })?;
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    Ok(roots)
}

/// Parses a PEM pair into the DER forms rustls takes.
fn parse_pair(
    pair: &CertPair,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert = CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).map_err(|source| {
        TlsError::Pem {
            what: "certificate",
            source,
        }
    })?;
    let key =
        PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).map_err(|source| TlsError::Pem {
            what: "private key",
            source,
        })?;
    Ok((vec![cert], key))
}

/// Subject name of the cluster CA.
fn ca_name(cluster_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, cluster_name);
    name.push(DnType::CommonName, format!("{cluster_name} cluster CA"));
    name
}

/// Key usages of the cluster CA.
fn ca_key_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ]
}

/// Certificate parameters of a node.
fn node_params(request: &NodeCertRequest) -> Result<CertificateParams, TlsError> {
    let node_name = format!("node-{}", request.node_id);
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, node_name.clone());
    params.subject_alt_names = vec![
        SanType::DnsName(AGENT_SERVER_NAME.try_into()?),
        SanType::DnsName(node_name.try_into()?),
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    ];
    for host in &request.hosts {
        let name = host_name(host)?;
        if !params.subject_alt_names.contains(&name) {
            params.subject_alt_names.push(name);
        }
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, request.valid_days);
    Ok(params)
}

/// A host given to `agent cert create-node`: an IP address, or a DNS name.
fn host_name(host: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !host.is_empty()
        && host.len() <= MAX_HOST_NAME_BYTES
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        });
    if !valid {
        return Err(TlsError::BadHost(host.to_string()));
    }
    Ok(SanType::DnsName(host.try_into()?))
}

/// The signer of `ca`: its key, and its subject read back from its certificate
/// (verifiers match a certificate's issuer name against the CA's subject byte for byte).
/// A key that is not the certificate's is refused: it would sign certificates no peer
/// accepts.
fn ca_issuer(ca: &CertPair) -> Result<Issuer<'static, KeyPair>, TlsError> {
    let key = KeyPair::from_pem(&ca.key_pem)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes())
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(TlsError::CaKeyMismatch);
    }
    Ok(Issuer::from_ca_cert_pem(&ca.cert_pem, key)?)
}

/// Sets the validity window: from [`BACKDATE`] ago (a peer whose clock lags a little
/// still accepts it) to `valid_days` from now.
fn set_validity(params: &mut CertificateParams, valid_days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + time::Duration::days(i64::from(valid_days));
}

/// Reads a whole text file.
fn read_file(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path` with permissions `mode`, durably.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let io_err = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_err)?;
    // `mode` only applies when the file is created; tighten a pre-existing file too.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_names_its_hosts_and_its_ca() {
        // The handshake tests in quic.rs prove the issued chain verifies end to end.
        let ca = generate_ca("test-cluster").unwrap();
        let request = NodeCertRequest {
            node_id: 4,
            hosts: vec!["db-4.example".into(), "198.18.0.4".into()],
            valid_days: 30,
        };
        let node = issue_node_cert_for(&ca, &request).unwrap();
        let summary = super::super::certs::summarize(&node.cert_pem).unwrap();
        assert!(summary.hosts.contains(&"db-4.example".to_string()));
        assert!(summary.hosts.contains(&"198.18.0.4".to_string()));
        assert!(summary.hosts.contains(&AGENT_SERVER_NAME.to_string()));
        assert!(summary.subject.contains("node-4"), "{}", summary.subject);
        assert!(summary.issuer.contains("test-cluster cluster CA"));
        assert!(!summary.is_ca);
        let days = (summary.not_after - summary.not_before) / 86_400;
        assert_eq!(days, 30 + 1, "valid for 30 days after a one-day backdate");
    }

    #[test]
    fn a_ca_key_that_is_not_the_certificates_is_refused() {
        let ca = generate_ca("a").unwrap();
        let other = generate_ca("b").unwrap();
        let mixed = CertPair {
            cert_pem: ca.cert_pem,
            key_pem: other.key_pem,
        };
        assert!(matches!(
            issue_node_cert(&mixed, 1),
            Err(TlsError::CaKeyMismatch)
        ));
    }

    #[test]
    fn a_bad_host_is_a_typed_error() {
        let ca = generate_ca("a").unwrap();
        let request = NodeCertRequest {
            node_id: 1,
            hosts: vec!["".into()],
            valid_days: 1,
        };
        assert!(matches!(
            issue_node_cert_for(&ca, &request),
            Err(TlsError::BadHost(_))
        ));
    }

    #[test]
    fn configs_build_and_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate_ca("c").unwrap();
        let tls = NodeTls {
            ca_cert_pem: ca.cert_pem.clone(),
            node: issue_node_cert(&ca, 7).unwrap(),
        };
        let files = TlsFiles::in_dir(dir.path());
        files.write(&tls).unwrap();
        let mode = fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, KEY_FILE_MODE);
        let loaded = files.load().unwrap();
        assert_eq!(loaded.node.cert_pem, tls.node.cert_pem);
        server_config(&loaded).unwrap();
        client_config(&loaded).unwrap();
    }

    #[test]
    fn garbage_pem_is_a_typed_error() {
        let bad = NodeTls {
            ca_cert_pem: "nope".into(),
            node: CertPair {
                cert_pem: "x".into(),
                key_pem: "y".into(),
            },
        };
        assert!(matches!(client_config(&bad), Err(TlsError::Pem { .. })));
    }
}
