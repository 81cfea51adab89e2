//! `agentctl`: the operator's command line for the agent HTTP API.

#[path = "agentctl/access.rs"]
mod access;
#[path = "agentctl/item.rs"]
mod item;
#[path = "agentctl/operations.rs"]
mod operations;
#[path = "agentctl/snapshot.rs"]
mod snapshot;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use agent::api_client::{ApiClient, Authorization, ClientError};
use agent::auth::admin::PrincipalCredentials;
use agent::dev::{DEFAULT_DEV_DIR, admin_credentials_path};
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::Table as TextTable;
use serde::Serialize;
use shared::api::{
    CapacityRequest, CreateTableRequest, NodeDescription, NodesResponse, SchemaRequest,
    TableDescription,
};
use shared::model::{Attribute, AttributeType, CapacityMode, NodeStatus, TableStatus};

#[derive(Parser)]
#[command(name = "agentctl", version, about = "Operate a cluster of agents")]
struct Cli {
    /// HTTP endpoint of any agent.
    #[arg(
        long,
        global = true,
        env = "AGENTCTL_ENDPOINT",
        default_value = "http://127.0.0.1:7070"
    )]
    endpoint: String,
    /// A principal's credentials file (JSON {"principal_arn", "secret"}); default: the
    /// admin credentials of a local `agent dev` cluster, if there is one.
    #[arg(long, global = true, env = "AGENTCTL_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// A credential (token) for item commands, instead of obtaining one with the
    /// principal's credentials.
    #[arg(long, global = true, env = "AGENTCTL_TOKEN")]
    token: Option<String>,
    /// Print JSON instead of human tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Tables: create, get, list, delete, scale, partitions, schema.
    #[command(subcommand)]
    Table(TableCmd),
    /// Nodes of the cluster with their status, heartbeat staleness, partitions and load.
    Nodes,
    /// One node: drain it or remove it from the cluster.
    #[command(subcommand)]
    Node(NodeCmd),
    /// The cluster as a whole.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Items: put, get, delete, query (sent straight to the key's primary).
    #[command(subcommand)]
    Item(item::ItemCmd),
    /// Principals: create (prints the secret once), list, delete.
    #[command(subcommand)]
    Principal(access::PrincipalCmd),
    /// Access policies of a table: put, list, delete.
    #[command(subcommand)]
    Policy(access::PolicyCmd),
    /// Credentials (signed tokens): issue, revoke.
    #[command(subcommand)]
    Credential(access::CredentialCmd),
    /// Signing keys: list, rotate.
    #[command(subcommand)]
    Keys(access::KeysCmd),
    /// Partitions: split in place, move a copy to another node.
    #[command(subcommand)]
    Partition(operations::PartitionCmd),
    /// Running and recent splits and moves with their step, progress and timings.
    Operations {
        /// Only running ones.
        #[arg(long)]
        running: bool,
    },
    /// Metadata backups: save one from the cluster, check a file.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
    /// Control-plane mutations recorded by the agent at --endpoint.
    Audit {
        /// Only entries from this time on (Unix milliseconds or RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Stop placing work on the node and move its partitions to other nodes.
    Drain {
        /// Node id.
        node_id: u64,
        /// Cancel the node's drain or removal instead (it takes new work again;
        /// partitions already moved stay where they are).
        #[arg(long, conflicts_with = "wait")]
        cancel: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Drain the node, then decommission it (it leaves the Raft membership).
    Remove {
        /// Node id.
        node_id: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Leader, voters, learners, term and commit index.
    Status,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Provisioned,
    OnDemand,
}

#[derive(clap::Args)]
struct CapacityArgs {
    /// Capacity mode.
    #[arg(long, value_enum, default_value = "provisioned")]
    mode: Mode,
    /// Read capacity units (PROVISIONED).
    #[arg(long)]
    read_units: Option<u64>,
    /// Write capacity units (PROVISIONED).
    #[arg(long)]
    write_units: Option<u64>,
}

#[derive(clap::Args)]
struct WaitArgs {
    /// Wait, showing progress, until the operation completes.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

#[derive(Subcommand)]
enum TableCmd {
    /// Create a table.
    Create {
        /// Table name (3-255 of A-Z a-z 0-9 _ . -).
        name: String,
        /// Partition key as NAME or NAME:TYPE (S, N or B; default S).
        #[arg(long)]
        partition_key: String,
        /// Sort key as NAME or NAME:TYPE.
        #[arg(long)]
        sort_key: Option<String>,
        /// More attributes as NAME:TYPE (repeatable).
        #[arg(long = "attribute")]
        attributes: Vec<String>,
        #[command(flatten)]
        capacity: CapacityArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Describe a table.
    Get {
        /// Table name.
        name: String,
    },
    /// List tables.
    List,
    /// Delete a table.
    Delete {
        /// Table name.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Change a table's capacity.
    Scale {
        /// Table name.
        name: String,
        #[command(flatten)]
        capacity: CapacityArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Partitions of a table: ranges, primary, replicas, epoch.
    Partitions {
        /// Table name.
        name: String,
    },
    /// Show a schema version (the current one by default).
    Schema {
        /// Table name.
        name: String,
        /// Version number.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Add a schema version; key attributes must keep their types.
    SetSchema {
        /// Table name.
        name: String,
        /// Attributes as NAME:TYPE (repeatable; must include the keys).
        #[arg(long = "attribute", required = true)]
        attributes: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let credentials = match load_credentials(cli.credentials.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut client = ApiClient::new(&cli.endpoint);
    if let Some(c) = &credentials {
        client = client.with_principal(c);
    }
    let auth = Auth {
        credentials,
        token: cli.token,
    };
    match run(&client, cli.json, cli.command, &auth) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How agentctl authenticates.
struct Auth {
    /// A principal's credentials.
    credentials: Option<PrincipalCredentials>,
    /// A credential for item commands.
    token: Option<String>,
}

/// The credentials file given, or else the local dev cluster's admin file if present.
fn load_credentials(path: Option<&Path>) -> anyhow::Result<Option<PrincipalCredentials>> {
    if let Some(path) = path {
        return Ok(Some(PrincipalCredentials::load(path)?));
    }
    let dev = admin_credentials_path(Path::new(DEFAULT_DEV_DIR));
    if dev.exists() {
        return Ok(Some(PrincipalCredentials::load(&dev)?));
    }
    Ok(None)
}

fn run(client: &ApiClient, json: bool, command: Cmd, auth: &Auth) -> anyhow::Result<()> {
    match command {
        Cmd::Principal(cmd) => access::run_principal(client, json, cmd),
        Cmd::Policy(cmd) => access::run_policy(client, json, cmd),
        Cmd::Credential(cmd) => {
            let me = auth.credentials.as_ref().map(|c| c.principal_arn.as_str());
            access::run_credential(client, json, cmd, me)
        }
        Cmd::Keys(cmd) => access::run_keys(client, json, cmd),
        Cmd::Partition(cmd) => operations::run_partition(client, json, cmd),
        Cmd::Operations { running } => operations::run_operations(client, json, running),
        Cmd::Audit { since } => access::run_audit(client, json, since.as_deref()),
        Cmd::Table(cmd) => run_table(client, json, cmd),
        Cmd::Snapshot(cmd) => snapshot::run(client, json, cmd),
        Cmd::Nodes => {
            let nodes = client.nodes(&cluster_id(client)?)?;
            print(json, &nodes, || nodes_text(&nodes))
        }
        Cmd::Node(cmd) => run_node(client, json, cmd),
        Cmd::Item(cmd) => {
            let authorization = match (&auth.token, &auth.credentials) {
                (Some(token), _) => Some(Authorization::Token(token.clone())),
                (None, Some(c)) => Some(Authorization::Principal(c.clone())),
                (None, None) => None,
            };
            item::run(client.endpoint(), json, cmd, authorization)
        }
        Cmd::Cluster(ClusterCmd::Status) => {
            let c = client.cluster()?;
            print(json, &c, || {
                let mut t = text_table(&["FIELD", "VALUE"]);
                t.add_row(vec![
                    "cluster".into(),
                    c.cluster_id.clone().unwrap_or_default(),
                ]);
                let leader = match (&c.leader_id, &c.leader_endpoint) {
                    (Some(id), Some(ep)) => format!("{id} ({ep})"),
                    (Some(id), None) => id.to_string(),
                    _ => "none".into(),
                };
                t.add_row(vec!["leader".into(), leader]);
                t.add_row(vec!["voters".into(), join_ids(&c.voters)]);
                t.add_row(vec!["learners".into(), join_ids(&c.learners)]);
                t.add_row(vec!["term".into(), c.term.to_string()]);
                t.add_row(vec!["commit index".into(), c.commit_index.to_string()]);
                t.add_row(vec![
                    format!("applied index (node {})", c.node_id),
                    c.applied_index.to_string(),
                ]);
                t.to_string()
            })
        }
    }
}

fn cluster_id(client: &ApiClient) -> anyhow::Result<String> {
    client
        .cluster()?
        .cluster_id
        .ok_or_else(|| anyhow::anyhow!("the cluster has no id yet"))
}

fn nodes_text(nodes: &NodesResponse) -> String {
    let mut t = text_table(&[
        "NODE",
        "ENDPOINT",
        "ZONE",
        "STATUS",
        "RAFT",
        "INC",
        "PARTITIONS",
        "PRIMARIES",
        "STALENESS",
        "CPU%",
        "DISK%",
        "OPS/S",
        "LAG MS",
    ]);
    for n in &nodes.nodes {
        let staleness = n
            .heartbeat_staleness_ms
            .map_or("never".to_string(), |ms| format!("{ms} ms"));
        t.add_row(vec![
            n.node_id.to_string(),
            n.endpoint.clone(),
            n.zone.clone(),
            status_text(n),
            n.raft_role.clone(),
            n.incarnation.to_string(),
            n.partitions_owned.to_string(),
            n.primaries_owned.to_string(),
            staleness,
            format!("{:.0}", n.metrics.cpu_pct),
            format!("{:.0}", n.metrics.disk_pct),
            format!("{:.1}", n.metrics.ops_per_sec),
            n.metrics.replication_lag_ms.to_string(),
        ]);
    }
    t.to_string()
}

/// A node's status, with why its drain waits if it does.
fn status_text(n: &NodeDescription) -> String {
    match n.drain_blocked.len() {
        0 => wire_name(n.status),
        blocked => format!("{} (blocked: {blocked} partitions)", wire_name(n.status)),
    }
}

fn run_node(client: &ApiClient, json: bool, cmd: NodeCmd) -> anyhow::Result<()> {
    let cluster_id = cluster_id(client)?;
    let (node_id, remove, wait) = match cmd {
        NodeCmd::Drain {
            node_id,
            cancel: true,
            ..
        } => {
            let response = client.cancel_drain(&cluster_id, node_id)?;
            return print(json, &response, || {
                format!(
                    "node {node_id} is {}: its drain is cancelled ({} partitions on it)",
                    wire_name(response.status),
                    response.partitions_owned
                )
            });
        }
        NodeCmd::Drain { node_id, wait, .. } => (node_id, false, wait),
        NodeCmd::Remove { node_id, wait } => (node_id, true, wait),
    };
    let response = if remove {
        client.remove_node(&cluster_id, node_id)?
    } else {
        client.drain_node(&cluster_id, node_id)?
    };
    if !wait.wait {
        return print(json, &response, || {
            format!(
                "node {node_id} is {} with {} partitions left{}",
                wire_name(response.status),
                response.partitions_owned,
                if remove {
                    "; it is decommissioned once empty"
                } else {
                    ""
                }
            )
        });
    }
    let done = wait_for_node(client, &cluster_id, node_id, remove, &wait)?;
    print(json, &done, || {
        nodes_text(&NodesResponse {
            cluster_id: cluster_id.clone(),
            nodes: vec![done.clone()],
        })
    })
}

/// Polls the node until it holds no partition (and, when removed, is DECOMMISSIONED).
fn wait_for_node(
    client: &ApiClient,
    cluster_id: &str,
    node_id: u64,
    remove: bool,
    wait: &WaitArgs,
) -> anyhow::Result<NodeDescription> {
    let what = format!("node {node_id}");
    poll_with_progress(&what, wait, || match client.nodes(cluster_id) {
        Ok(nodes) => match nodes.nodes.into_iter().find(|n| n.node_id == node_id) {
            Some(n)
                if n.partitions_owned == 0
                    && (!remove || n.status == NodeStatus::Decommissioned) =>
            {
                Poll::Done(Ok(n))
            }
            Some(n) => Poll::Pending(format!(
                "{}, {} partitions left",
                wire_name(n.status),
                n.partitions_owned
            )),
            None => Poll::Done(Err(anyhow::anyhow!("{what} is no longer listed"))),
        },
        Err(e) => Poll::Pending(format!("waiting ({e})")),
    })
}

/// One look at a long operation: finished (with its result), or still going (with what
/// to show meanwhile).
enum Poll<T> {
    Done(anyhow::Result<T>),
    Pending(String),
}

/// Calls `step` every 200 ms, showing its progress on a spinner, until it is done or
/// `wait.timeout` has passed.
fn poll_with_progress<T>(
    what: &str,
    wait: &WaitArgs,
    mut step: impl FnMut() -> Poll<T>,
) -> anyhow::Result<T> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    let deadline = Instant::now() + Duration::from_secs(wait.timeout);
    let result = loop {
        match step() {
            Poll::Done(result) => break result,
            Poll::Pending(message) => bar.set_message(format!("{what}: {message}")),
        }
        if Instant::now() >= deadline {
            break Err(anyhow::anyhow!(
                "timed out after {} s waiting for {what}",
                wait.timeout
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    bar.finish_and_clear();
    result
}

fn run_table(client: &ApiClient, json: bool, cmd: TableCmd) -> anyhow::Result<()> {
    match cmd {
        TableCmd::Create {
            name,
            partition_key,
            sort_key,
            attributes,
            capacity,
            wait,
        } => {
            let request = create_request(
                name.clone(),
                &partition_key,
                sort_key.as_deref(),
                &attributes,
                &capacity,
            )?;
            let created = client.create_table(&request)?;
            if !wait.wait {
                return print(json, &created, || {
                    format!("{} {}", created.table_arn, status_name(created.status))
                });
            }
            let table = wait_for_status(client, &name, Some(TableStatus::Active), &wait)?;
            print_table(json, table.as_ref())
        }
        TableCmd::Get { name } => print_table(json, Some(&client.get_table(&name)?)),
        TableCmd::List => {
            let list = client.list_tables()?;
            print(json, &list, || tables_text(&list.tables))
        }
        TableCmd::Delete { name, wait } => {
            let table = client.delete_table(&name)?;
            if !wait.wait {
                return print(json, &table, || {
                    format!("{} {}", table.table_arn, status_name(table.status))
                });
            }
            wait_for_status(client, &name, None, &wait)?;
            print(
                json,
                &serde_json::json!({"table_name": name, "deleted": true}),
                || format!("table {name} deleted"),
            )
        }
        TableCmd::Scale {
            name,
            capacity,
            wait,
        } => {
            let response = client.update_capacity(&name, &capacity_request(&capacity))?;
            if !wait.wait {
                return print(json, &response, || {
                    format!(
                        "{} (estimated {} s)",
                        status_name(response.status),
                        response.estimated_completion_seconds
                    )
                });
            }
            let table = wait_for_status(client, &name, Some(TableStatus::Active), &wait)?;
            print_table(json, table.as_ref())
        }
        TableCmd::Partitions { name } => {
            let parts = client.partitions(&name)?;
            print(json, &parts, || {
                let mut t = text_table(&[
                    "PARTITION",
                    "RANGE LOW",
                    "RANGE HIGH",
                    "PRIMARY",
                    "REPLICAS",
                    "EPOCH",
                    "STATUS",
                    "READY",
                ]);
                for p in &parts.partitions {
                    t.add_row(vec![
                        p.partition_id.to_string(),
                        format!("{:#018x}", p.key_range_low),
                        format!("{:#018x}", p.key_range_high),
                        p.primary_node_id.to_string(),
                        join_ids(&p.replica_node_ids),
                        p.epoch.to_string(),
                        wire_name(p.status),
                        p.ready.to_string(),
                    ]);
                }
                t.to_string()
            })
        }
        TableCmd::Schema { name, version } => {
            let schema = client.get_schema(&name, version)?;
            print(json, &schema, || schema_text(&schema))
        }
        TableCmd::SetSchema { name, attributes } => {
            let attributes = attributes
                .iter()
                .map(|a| parse_attribute(a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let schema = client.put_schema(&name, &SchemaRequest { attributes })?;
            print(json, &schema, || schema_text(&schema))
        }
    }
}

fn create_request(
    name: String,
    partition_key: &str,
    sort_key: Option<&str>,
    extra: &[String],
    capacity: &CapacityArgs,
) -> anyhow::Result<CreateTableRequest> {
    let pk = parse_attribute(partition_key)?;
    let sk = sort_key.map(parse_attribute).transpose()?;
    let mut attributes = vec![pk.clone()];
    attributes.extend(sk.clone());
    for a in extra {
        attributes.push(parse_attribute(a)?);
    }
    Ok(CreateTableRequest {
        table_name: name,
        partition_key: pk.name,
        sort_key: sk.map(|a| a.name),
        capacity: capacity_request(capacity),
        schema: SchemaRequest { attributes },
    })
}

fn capacity_request(c: &CapacityArgs) -> CapacityRequest {
    CapacityRequest {
        mode: match c.mode {
            Mode::Provisioned => CapacityMode::Provisioned,
            Mode::OnDemand => CapacityMode::OnDemand,
        },
        read_units: c
            .read_units
            .or(matches!(c.mode, Mode::Provisioned).then_some(DEFAULT_UNITS)),
        write_units: c
            .write_units
            .or(matches!(c.mode, Mode::Provisioned).then_some(DEFAULT_UNITS)),
    }
}

/// Units assumed for a PROVISIONED dimension the operator did not give.
const DEFAULT_UNITS: u64 = 5;

/// Parses `NAME` or `NAME:TYPE` (TYPE as in the API: S, N, B, BOOL, ...).
fn parse_attribute(text: &str) -> anyhow::Result<Attribute> {
    let (name, ty) = text.split_once(':').unwrap_or((text, "S"));
    let attr_type: AttributeType = serde_json::from_value(serde_json::Value::String(ty.to_uppercase()))
        .map_err(|_| anyhow::anyhow!("unknown attribute type {ty:?} in {text:?} (use S, N, B, BOOL, NULL, SS, NS, BS, L or M)"))?;
    Ok(Attribute {
        name: name.to_string(),
        attr_type,
    })
}

/// Polls the table until it has `target` status (or is gone, for `None`), showing progress.
fn wait_for_status(
    client: &ApiClient,
    name: &str,
    target: Option<TableStatus>,
    wait: &WaitArgs,
) -> anyhow::Result<Option<TableDescription>> {
    poll_with_progress(name, wait, || match client.get_table(name) {
        Ok(t) if Some(t.status) == target => Poll::Done(Ok(Some(t))),
        Ok(t) => Poll::Pending(format!(
            "{} ({} partitions)",
            status_name(t.status),
            t.partition_count
        )),
        Err(ClientError::Api { status: 404, .. }) if target.is_none() => Poll::Done(Ok(None)),
        Err(e @ ClientError::Api { status: 404, .. }) => Poll::Done(Err(e.into())),
        // 503 while a leader is elected, or a transient connection error: keep waiting.
        Err(e) => Poll::Pending(format!("waiting ({e})")),
    })
}

fn print_table(json: bool, table: Option<&TableDescription>) -> anyhow::Result<()> {
    match table {
        Some(t) => print(json, t, || tables_text(std::slice::from_ref(t))),
        None => Ok(()),
    }
}

fn tables_text(tables: &[TableDescription]) -> String {
    let mut t = text_table(&[
        "TABLE",
        "STATUS",
        "PARTITIONS",
        "MODE",
        "RCU",
        "WCU",
        "KEYS",
        "SCHEMA",
        "CREATED",
    ]);
    for d in tables {
        let keys = match &d.sort_key {
            Some(sk) => format!("{} / {sk}", d.partition_key),
            None => d.partition_key.clone(),
        };
        t.add_row(vec![
            d.table_name.clone(),
            status_name(d.status),
            d.partition_count.to_string(),
            wire_name(d.capacity.mode),
            d.capacity.read_units.to_string(),
            d.capacity.write_units.to_string(),
            keys,
            d.schema_version.to_string(),
            d.created_at.clone(),
        ]);
    }
    t.to_string()
}

fn schema_text(schema: &shared::api::SchemaResponse) -> String {
    let mut t = text_table(&["ATTRIBUTE", "TYPE"]);
    for a in &schema.attributes {
        t.add_row(vec![a.name.clone(), wire_name(a.attr_type)]);
    }
    format!(
        "{} schema version {} ({})\n{t}",
        schema.table_name, schema.version, schema.created_at
    )
}

fn status_name(status: TableStatus) -> String {
    wire_name(status)
}

/// The name an enum has in the API's JSON (e.g. `ON_DEMAND`), for human output.
fn wire_name<T: Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn join_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn text_table(header: &[&str]) -> TextTable {
    let mut t = TextTable::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(header.to_vec());
    t
}

fn print<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", human());
    }
    Ok(())
}
