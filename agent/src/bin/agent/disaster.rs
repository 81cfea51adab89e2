//! `agent restore` and `agent recover`: disaster recovery of the metadata on a stopped
//! agent (`agent::meta::offline` does the work).

use std::path::Path;

use agent::config::Config;
use agent::meta::offline;
use anyhow::Context;
use shared::backup::MetaBackup;

/// `agent restore --config FILE --snapshot FILE`.
pub fn restore(config_path: &Path, snapshot: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let bytes =
        std::fs::read(snapshot).with_context(|| format!("reading {}", snapshot.display()))?;
    let backup =
        MetaBackup::decode(&bytes).with_context(|| format!("reading {}", snapshot.display()))?;
    if let Some(theirs) = backup.cluster_id.as_deref()
        && theirs != config.cluster_name
    {
        anyhow::bail!(
            "the backup is of cluster {theirs}, but the configuration says cluster_name = {:?}: \
             restore with a configuration of that cluster",
            config.cluster_name
        );
    }
    let summary = backup.summary(&bytes);
    agent::node::prepare_data_dir(&config.data_dir)?;
    let restored = offline::restore(
        &config.data_dir,
        config.node_id,
        &config.advertised_peer(),
        backup,
    )?;
    println!(
        "restored the metadata of cluster {} at index {} into {} ({} tables, {} partitions, \
         {} principals, {} policies); node {} is its only voter.\n\
         Start the agent; other agents join with an empty metadata store (move their \
         meta.redb aside), and the voter manager makes voters of them.",
        summary.cluster_id.as_deref().unwrap_or("(unnamed)"),
        restored.index,
        config.data_dir.display(),
        summary.tables,
        summary.partitions,
        summary.principals,
        summary.policies,
        config.node_id
    );
    Ok(())
}

/// `agent recover --config FILE [--yes]`.
pub fn recover(config_path: &Path, yes: bool) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    if !yes {
        println!(
            "agent recover makes node {} the only voter of the metadata in {}, keeping every \
             entry of its log (entries it holds beyond the committed index are committed \
             too). Run it on one surviving agent only, the most up to date (compare \
             `applied index` in `agentctl cluster status` while they ran), with every agent \
             stopped. The lost voters must not come back with their old metadata: move \
             their meta.redb aside before starting them; they join as new members.\n\
             Nothing changed: pass --yes to apply.",
            config.node_id,
            config.data_dir.display()
        );
        return Ok(());
    }
    let recovered = offline::recover(&config.data_dir, config.node_id, &config.advertised_peer())?;
    println!(
        "node {} is now the only voter (term {}, configuration at index {}); before: voters \
         {:?}, learners {:?}, committed index {}, last log index {}.\n\
         Start the agent: it elects itself and commits its log; the voter manager adds \
         voters as agents join.",
        config.node_id,
        recovered.term,
        recovered.membership_index,
        recovered.old_voters,
        recovered.old_learners,
        recovered
            .committed
            .map_or_else(|| "unknown".to_string(), |c| c.to_string()),
        recovered.last_index
    );
    Ok(())
}
