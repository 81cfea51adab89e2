//! `agentctl partition split|merge|move` and `agentctl operations`.

use agent::api_client::ApiClient;
use clap::Subcommand;
use shared::api::operations::{MergePartitionRequest, MovePartitionRequest, OperationDescription};

use super::{Poll, WaitArgs, poll_with_progress, print, text_table};

#[derive(Subcommand)]
pub enum PartitionCmd {
    /// Split a partition in place into two (at the median of its hashed keys unless
    /// --split-point is given); writes pause only for the commit.
    Split {
        /// Partition id.
        partition_id: u64,
        /// First hash of the right child.
        #[arg(long)]
        split_point: Option<u64>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Merge a partition with the adjacent one above it (both held by the same primary
    /// and replicas) into one, in place; writes pause only for the commit.
    Merge {
        /// Partition id (the lower one).
        partition_id: u64,
        /// The partition right above it.
        #[arg(long)]
        with: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Move a copy of a partition to another node (the primary's by default, which
    /// moves the primary role): copied in the background, writes pause for the swap.
    Move {
        /// Partition id.
        partition_id: u64,
        /// Node receiving the copy.
        #[arg(long)]
        to: u64,
        /// Node giving its copy up (default: the primary).
        #[arg(long)]
        from: Option<u64>,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

pub fn run_partition(client: &ApiClient, json: bool, cmd: PartitionCmd) -> anyhow::Result<()> {
    let (started, wait) = match cmd {
        PartitionCmd::Split {
            partition_id,
            split_point,
            wait,
        } => (client.split_partition(partition_id, split_point)?, wait),
        PartitionCmd::Merge {
            partition_id,
            with,
            wait,
        } => {
            let request = MergePartitionRequest {
                right_partition: with,
            };
            (client.merge_partition(partition_id, &request)?, wait)
        }
        PartitionCmd::Move {
            partition_id,
            to,
            from,
            wait,
        } => {
            let request = MovePartitionRequest {
                target_node: to,
                source_node: from,
            };
            (client.move_partition(partition_id, &request)?, wait)
        }
    };
    let op = if wait.wait {
        wait_for_operation(client, started.operation_id, &wait)?
    } else {
        started
    };
    print(json, &op, || operations_text(std::slice::from_ref(&op)))?;
    match op.status.as_str() {
        "RUNNING" | "COMPLETED" => Ok(()),
        other => anyhow::bail!(
            "operation {} ended {other}{}",
            op.operation_id,
            op.failure_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
    }
}

pub fn run_operations(client: &ApiClient, json: bool, running: bool) -> anyhow::Result<()> {
    let list = client.operations(running)?;
    print(json, &list, || operations_text(&list.operations))
}

fn wait_for_operation(
    client: &ApiClient,
    id: u64,
    wait: &WaitArgs,
) -> anyhow::Result<OperationDescription> {
    let what = format!("operation {id}");
    poll_with_progress(&what, wait, || match client.operation(id) {
        Ok(op) if op.finished() => Poll::Done(Ok(op)),
        Ok(op) => Poll::Pending(format!("{:?}{}", op.step, progress(&op))),
        Err(e) => Poll::Pending(format!("waiting ({e})")),
    })
}

fn progress(op: &OperationDescription) -> String {
    match &op.progress {
        Some(p) => match p.total_bytes {
            Some(total) if total > 0 => {
                format!(
                    " {:.0}% of {total} bytes",
                    100.0 * p.done_bytes as f64 / total as f64
                )
            }
            _ => format!(" {} bytes", p.done_bytes),
        },
        None => String::new(),
    }
}

fn operations_text(ops: &[OperationDescription]) -> String {
    let mut t = text_table(&[
        "ID",
        "KIND",
        "TABLE",
        "PARTITION",
        "DETAIL",
        "STEP",
        "STATUS",
        "ELAPSED",
        "BY",
    ]);
    for op in ops {
        let detail = match (op.kind.as_str(), &op.split, op.from_node, op.to_node) {
            ("split", Some(r), _, _) => format!("-> {} + {}", r.left, r.right),
            ("split", None, _, _) => op
                .split_point
                .map_or("at the median".into(), |p| format!("at {p}")),
            (_, _, Some(from), Some(to)) => format!("{from} -> {to}"),
            ("merge", _, _, _) => match (op.right_partition, op.merged_partition) {
                (Some(r), Some(m)) => format!("+ {r} -> {m}"),
                (Some(r), None) => format!("+ {r}"),
                _ => String::new(),
            },
            _ => String::new(),
        };
        t.add_row(vec![
            op.operation_id.to_string(),
            op.kind.clone(),
            op.table_name.clone().unwrap_or_else(|| "-".into()),
            op.partition_id.to_string(),
            detail,
            format!("{:?}{}", op.step, progress(op)),
            op.status.clone(),
            format!("{} ms", op.elapsed_ms),
            op.requested_by.clone(),
        ]);
    }
    t.to_string()
}
