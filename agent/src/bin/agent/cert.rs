//! `agent cert`: the cluster's certificates, made and inspected without other tools.
//!
//! As `cockroach cert`: a certs directory holds the CA certificate (`ca.pem`) and one
//! node's certificate and key (`node.pem`, `node.key`); the CA key lives elsewhere
//! (`--ca-key`), on the operator's machine, never on the nodes.

use std::path::{Path, PathBuf};

use agent::transport::certs::{self, CertSummary};
use agent::transport::tls::{
    self, CA_VALIDITY_DAYS, NODE_CERT_VALIDITY_DAYS, NodeCertRequest, TlsFiles,
};
use anyhow::Context;
use clap::Subcommand;

/// Mode of a new certs directory (certificates are public).
const PUBLIC_DIR_MODE: u32 = 0o755;
/// Mode of a new directory for the CA key.
const PRIVATE_DIR_MODE: u32 = 0o700;
/// Seconds in a day, for days left.
const SECONDS_PER_DAY: i64 = 86_400;

#[derive(Subcommand)]
pub enum CertCmd {
    /// Make the cluster CA: CERTS_DIR/ca.pem and the CA key at --ca-key.
    CreateCa {
        /// Directory the CA certificate goes into (created if missing).
        #[arg(long)]
        certs_dir: PathBuf,
        /// Where the CA key is written (mode 0600). Keep it off the nodes.
        #[arg(long)]
        ca_key: PathBuf,
        /// The cluster's name, in the CA's subject.
        #[arg(long, default_value = "agent")]
        cluster_name: String,
        /// Days until the CA expires.
        #[arg(long, default_value_t = CA_VALIDITY_DAYS)]
        valid_days: u32,
        /// Replace an existing CA (every node certificate must then be made again).
        #[arg(long)]
        overwrite: bool,
    },
    /// Make a node's certificate and key (CERTS_DIR/node.pem, node.key), signed by the CA
    /// in CERTS_DIR/ca.pem with the key at --ca-key. Run again to renew, then send the
    /// agent SIGHUP.
    CreateNode {
        /// Directory holding ca.pem, where node.pem and node.key are written.
        #[arg(long)]
        certs_dir: PathBuf,
        /// The CA key.
        #[arg(long)]
        ca_key: PathBuf,
        /// The node's id (as in its configuration).
        #[arg(long)]
        node_id: u64,
        /// Host names and IP addresses the node is reached at (repeat).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Days until the certificate expires.
        #[arg(long, default_value_t = NODE_CERT_VALIDITY_DAYS)]
        valid_days: u32,
        /// Replace an existing node certificate and key (renewal).
        #[arg(long)]
        overwrite: bool,
    },
    /// List the certificates in a certs directory: subject, hosts, expiry.
    List {
        /// The directory.
        #[arg(long)]
        certs_dir: PathBuf,
    },
}

/// Runs one `agent cert` command.
pub fn run(cmd: CertCmd) -> anyhow::Result<()> {
    match cmd {
        CertCmd::CreateCa {
            certs_dir,
            ca_key,
            cluster_name,
            valid_days,
            overwrite,
        } => {
            ensure_valid_days(valid_days)?;
            let cert_path = TlsFiles::in_dir(&certs_dir).ca_cert;
            refuse_overwrite(&[&cert_path, &ca_key], overwrite)?;
            make_dir(&certs_dir, PUBLIC_DIR_MODE)?;
            if let Some(parent) = ca_key.parent().filter(|p| !p.as_os_str().is_empty()) {
                make_dir(parent, PRIVATE_DIR_MODE)?;
            }
            let ca = tls::generate_ca_valid_for(&cluster_name, valid_days)?;
            tls::write_pair(&ca, &cert_path, &ca_key)?;
            println!(
                "wrote {} and {} (keep the CA key off the nodes)",
                cert_path.display(),
                ca_key.display()
            );
            Ok(())
        }
        CertCmd::CreateNode {
            certs_dir,
            ca_key,
            node_id,
            hosts,
            valid_days,
            overwrite,
        } => {
            ensure_valid_days(valid_days)?;
            anyhow::ensure!(node_id > 0, "--node-id must be positive");
            let files = TlsFiles::in_dir(&certs_dir);
            let ca = tls::read_pair(&files.ca_cert, &ca_key)
                .with_context(|| format!("reading the CA from {}", certs_dir.display()))?;
            refuse_overwrite(&[&files.cert, &files.key], overwrite)?;
            let request = NodeCertRequest {
                node_id,
                hosts,
                valid_days,
            };
            let node = tls::issue_node_cert_for(&ca, &request)?;
            tls::write_pair(&node, &files.cert, &files.key)?;
            println!(
                "wrote {} and {} for node {node_id}",
                files.cert.display(),
                files.key.display()
            );
            Ok(())
        }
        CertCmd::List { certs_dir } => list(&certs_dir),
    }
}

fn ensure_valid_days(days: u32) -> anyhow::Result<()> {
    anyhow::ensure!(days > 0, "--valid-days must be at least 1");
    Ok(())
}

/// Refuses to replace existing files unless told to: a CA made again by mistake would
/// lock every node out of the cluster.
fn refuse_overwrite(paths: &[&Path], overwrite: bool) -> anyhow::Result<()> {
    if overwrite {
        return Ok(());
    }
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        anyhow::bail!(
            "{} exists; pass --overwrite to replace it",
            existing.display()
        );
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with `mode`; an existing directory is left as it is.
fn make_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Prints every certificate found in `dir`'s `.pem` and `.crt` files.
fn list(dir: &Path) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pem" || e == "crt"))
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no certificate (.pem, .crt) in {}",
        dir.display()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["FILE", "KIND", "SUBJECT", "HOSTS", "EXPIRES", "DAYS LEFT"]);
    for file in &files {
        let pem =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let found =
            certs::summarize_all(&pem).with_context(|| format!("decoding {}", file.display()))?;
        let name = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for summary in found {
            table.add_row(row(&name, &summary, now));
        }
    }
    println!("{table}");
    Ok(())
}

fn row(file: &str, cert: &CertSummary, now: i64) -> Vec<String> {
    let expires = time::OffsetDateTime::from_unix_timestamp(cert.not_after)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| cert.not_after.to_string());
    let days_left = (cert.not_after - now).div_euclid(SECONDS_PER_DAY);
    vec![
        file.to_string(),
        if cert.is_ca { "CA" } else { "node" }.to_string(),
        cert.subject.clone(),
        cert.hosts.join(","),
        expires,
        if days_left < 0 {
            "EXPIRED".to_string()
        } else {
            days_left.to_string()
        },
    ]
}
