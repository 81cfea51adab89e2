//! `agentctl snapshot save|status`: backups of the metadata (`shared::backup`).

use std::path::PathBuf;

use agent::api_client::ApiClient;
use agent::durable::write_private;
use anyhow::Context;
use clap::Subcommand;
use shared::api::format_millis;
use shared::backup::{BackupSummary, MetaBackup};

use super::{print, text_table};

#[derive(Subcommand)]
pub enum SnapshotCmd {
    /// Save a consistent, checksummed backup of the metadata at a committed index
    /// (tables, partitions, nodes, principals, policies, keys). Restore it with
    /// `agent restore --snapshot FILE`.
    Save {
        /// File to write (0600; written aside and renamed into place once complete).
        file: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check a backup file (header, SHA-256, invariants) and show what it holds.
    Status {
        /// Backup file.
        file: PathBuf,
    },
}

pub fn run(client: &ApiClient, json: bool, cmd: SnapshotCmd) -> anyhow::Result<()> {
    let (summary, saved) = match cmd {
        SnapshotCmd::Save { file, force } => {
            if file.exists() && !force {
                anyhow::bail!(
                    "{} exists: choose another file or pass --force to replace it",
                    file.display()
                );
            }
            let bytes = client.snapshot()?;
            // What the agent sent is checked before it replaces anything.
            let backup = MetaBackup::decode(&bytes).context("the agent's backup")?;
            write_private(&file, &bytes).with_context(|| format!("writing {}", file.display()))?;
            (backup.summary(&bytes), Some(file))
        }
        SnapshotCmd::Status { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let backup = MetaBackup::decode(&bytes)
                .with_context(|| format!("reading {}", file.display()))?;
            (backup.summary(&bytes), None)
        }
    };
    print(json, &summary, || {
        let table = summary_text(&summary);
        match saved {
            Some(file) => format!(
                "saved the metadata at index {} to {}\n{table}",
                summary.applied_index,
                file.display()
            ),
            None => table,
        }
    })
}

fn summary_text(s: &BackupSummary) -> String {
    let mut t = text_table(&["FIELD", "VALUE"]);
    let rows = [
        ("cluster", s.cluster_id.clone().unwrap_or_default()),
        ("index", s.applied_index.to_string()),
        ("taken by node", s.taken_by.to_string()),
        ("taken at", format_millis(s.taken_at_ms)),
        ("tables", s.tables.to_string()),
        ("partitions", s.partitions.to_string()),
        ("nodes", s.nodes.to_string()),
        ("principals", s.principals.to_string()),
        ("policies", s.policies.to_string()),
        ("sha256", s.sha256.clone()),
    ];
    for (field, value) in rows {
        t.add_row(vec![field.to_string(), value]);
    }
    t.to_string()
}
