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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Years the cluster CA stays valid.
pub const CA_VALIDITY_YEARS: i32 = 20;

/// Years a node certificate stays valid (no rotation yet, hence long).
pub const NODE_CERT_VALIDITY_YEARS: i32 = 10;

/// Years certificates are backdated, so skewed clocks and our approximate year still accept them.
const BACKDATE_YEARS: i32 = 1;

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
    /// The CA certificate's subject name cannot be reproduced for issuing.
    #[error("unsupported CA subject name: {0}")]
    CaName(&'static str),
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

/// Generates a self-signed cluster CA named after `cluster_name`.
pub fn generate_ca(cluster_name: &str) -> Result<CertPair, TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = ca_name(cluster_name);
    // Path length 0: the CA signs node certificates only, never intermediate CAs.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = ca_key_usages();
    set_validity(&mut params, CA_VALIDITY_YEARS);
    let cert = params.self_signed(&key)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues the certificate of node `node_id`, signed by `ca`, valid as server and client.
pub fn issue_node_cert(ca: &CertPair, node_id: u64) -> Result<CertPair, TlsError> {
    let issuer = ca_issuer(ca)?;
    let key = KeyPair::generate()?;
    let params = node_params(node_id)?;
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

/// Certificate parameters of node `node_id`.
fn node_params(node_id: u64) -> Result<CertificateParams, TlsError> {
    let node_name = format!("node-{node_id}");
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
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, NODE_CERT_VALIDITY_YEARS);
    Ok(params)
}

/// Rebuilds the signer of `ca`. Verifiers match a certificate's issuer name against the CA's
/// subject byte for byte, so the subject is decoded from the CA certificate itself (rcgen
/// can only do that with its x509-parser feature, which is not enabled here).
fn ca_issuer(ca: &CertPair) -> Result<Issuer<'static, KeyPair>, TlsError> {
    let key = KeyPair::from_pem(&ca.key_pem)?;
    let subjects = root_store(&ca.cert_pem)?.subjects();
    let subject = subjects.first().ok_or(TlsError::CaName("no subject"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = der::parse_name(subject.as_ref())?;
    params.key_usages = ca_key_usages();
    Ok(Issuer::new(params, key))
}

/// Sets the validity window: from [`BACKDATE_YEARS`] ago to `years` from now.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let year = approximate_year();
    params.not_before = rcgen::date_time_ymd(year - BACKDATE_YEARS, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

/// The current year, possibly off by one around New Year (hence [`BACKDATE_YEARS`]).
fn approximate_year() -> i32 {
    const SECONDS_PER_YEAR: u64 = 31_556_952; // Gregorian mean year
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    1970 + i32::try_from(secs / SECONDS_PER_YEAR).unwrap_or(0)
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

/// Just enough DER decoding to turn an X.509 `Name` back into an rcgen name.
mod der {
    use rcgen::string::{Ia5String, PrintableString};
    use rcgen::{DistinguishedName, DnType, DnValue};

    use super::TlsError;

    /// DER tag of SEQUENCE.
    const TAG_SEQUENCE: u8 = 0x30;
    /// DER tag of SET.
    const TAG_SET: u8 = 0x31;
    /// DER tag of OBJECT IDENTIFIER.
    const TAG_OID: u8 = 0x06;
    /// DER tag of UTF8String.
    const TAG_UTF8_STRING: u8 = 0x0c;
    /// DER tag of PrintableString.
    const TAG_PRINTABLE_STRING: u8 = 0x13;
    /// DER tag of IA5String.
    const TAG_IA5_STRING: u8 = 0x16;
    /// Longest length-of-length accepted (4 bytes: names are far below 4 GiB).
    const MAX_LENGTH_BYTES: usize = 4;

    /// Decodes a DER `Name` (with its outer SEQUENCE) of single-valued string attributes.
    pub(super) fn parse_name(der: &[u8]) -> Result<DistinguishedName, TlsError> {
        let mut rdns = expect(TAG_SEQUENCE, der)?.0;
        let mut name = DistinguishedName::new();
        while !rdns.is_empty() {
            let (set, rest) = expect(TAG_SET, rdns)?;
            let (ty, value) = attribute(set)?;
            // rcgen keeps one value per attribute type; a second one could not round-trip.
            if name.get(&ty).is_some() {
                return Err(TlsError::CaName("repeated attribute type"));
            }
            name.push(ty, value);
            rdns = rest;
        }
        Ok(name)
    }

    /// Decodes the single `AttributeTypeAndValue` of a relative distinguished name.
    fn attribute(set: &[u8]) -> Result<(DnType, DnValue), TlsError> {
        let (atv, rest) = expect(TAG_SEQUENCE, set)?;
        if !rest.is_empty() {
            return Err(TlsError::CaName("multi-valued RDN"));
        }
        let (oid, value) = expect(TAG_OID, atv)?;
        let (tag, value, _) = tlv(value)?;
        Ok((
            DnType::from_oid(&oid_components(oid)?),
            string_value(tag, value)?,
        ))
    }

    /// Decodes an attribute value of the string types rcgen can write back identically.
    fn string_value(tag: u8, value: &[u8]) -> Result<DnValue, TlsError> {
        let text = std::str::from_utf8(value).map_err(|_| TlsError::CaName("invalid string"))?;
        let bad = |_| TlsError::CaName("invalid string");
        match tag {
            TAG_UTF8_STRING => Ok(DnValue::Utf8String(text.to_owned())),
            TAG_PRINTABLE_STRING => Ok(DnValue::PrintableString(
                PrintableString::try_from(text).map_err(bad)?,
            )),
            TAG_IA5_STRING => Ok(DnValue::Ia5String(Ia5String::try_from(text).map_err(bad)?)),
            _ => Err(TlsError::CaName("unsupported string type")),
        }
    }

    /// Decodes the arcs of an OBJECT IDENTIFIER.
    fn oid_components(bytes: &[u8]) -> Result<Vec<u64>, TlsError> {
        let mut arcs = Vec::new();
        let mut current: u64 = 0;
        for &byte in bytes {
            current = current
                .checked_mul(128)
                .map(|c| c | u64::from(byte & 0x7f))
                .ok_or(TlsError::CaName("OID arc too large"))?;
            if byte & 0x80 == 0 {
                arcs.push(current);
                current = 0;
            }
        }
        let Some(&first) = arcs.first() else {
            return Err(TlsError::CaName("empty OID"));
        };
        if bytes.last().is_some_and(|b| b & 0x80 != 0) {
            return Err(TlsError::CaName("truncated OID"));
        }
        // The first encoded arc packs the first two: 40 * a + b, with a at most 2.
        let (a, b) = if first < 80 {
            (first / 40, first % 40)
        } else {
            (2, first - 80)
        };
        arcs.splice(0..1, [a, b]);
        Ok(arcs)
    }

    /// Reads an element that must carry `tag`: (contents, rest).
    fn expect(tag: u8, input: &[u8]) -> Result<(&[u8], &[u8]), TlsError> {
        let (found, contents, rest) = tlv(input)?;
        if found != tag {
            return Err(TlsError::CaName("unexpected DER tag"));
        }
        Ok((contents, rest))
    }

    /// Reads one tag-length-value element: (tag, contents, rest).
    fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), TlsError> {
        const TRUNCATED: TlsError = TlsError::CaName("truncated DER");
        let (&tag, rest) = input.split_first().ok_or(TRUNCATED)?;
        let (&first, rest) = rest.split_first().ok_or(TRUNCATED)?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > MAX_LENGTH_BYTES || rest.len() < count {
                return Err(TlsError::CaName("bad DER length"));
            }
            let len = rest[..count]
                .iter()
                .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
            (len, &rest[count..])
        };
        if rest.len() < len {
            return Err(TRUNCATED);
        }
        Ok((tag, &rest[..len], &rest[len..]))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn decodes_common_name_oid() {
            assert_eq!(
                oid_components(&[0x55, 0x04, 0x03]).unwrap(),
                vec![2, 5, 4, 3]
            );
        }

        #[test]
        fn rejects_truncated_input() {
            assert!(parse_name(&[TAG_SEQUENCE, 0x05, TAG_SET]).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_subject_decodes_to_the_name_it_was_made_with() {
        // The handshake tests in quic.rs prove the issued chain verifies end to end.
        let ca = generate_ca("test-cluster").unwrap();
        let roots = root_store(&ca.cert_pem).unwrap();
        let parsed = der::parse_name(roots.subjects()[0].as_ref()).unwrap();
        assert_eq!(parsed, ca_name("test-cluster"));
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
