//! `agentctl item put|get|delete|query`: the item API through the routing client.

use agent::api_client::Authorization;
use agent::data_client::DataClient;
use clap::Subcommand;
use shared::api::QueryResponse;

use super::{print, text_table};

#[derive(Subcommand)]
pub enum ItemCmd {
    /// Store an item (replacing any with the same key).
    Put {
        /// Table name.
        table: String,
        /// Partition key, in the text form of its type (S: text, N: number, B: base64).
        partition_key: String,
        /// Sort key (tables with a sort key).
        #[arg(long)]
        sort_key: Option<String>,
        /// The value: any JSON (quote it for the shell), e.g. '{"name":"Ada"}'.
        value: String,
    },
    /// Read an item; exits non-zero if it does not exist.
    Get {
        /// Table name.
        table: String,
        /// Partition key.
        partition_key: String,
        /// Sort key (tables with a sort key).
        #[arg(long)]
        sort_key: Option<String>,
    },
    /// Delete an item (succeeds when it does not exist).
    Delete {
        /// Table name.
        table: String,
        /// Partition key.
        partition_key: String,
        /// Sort key (tables with a sort key).
        #[arg(long)]
        sort_key: Option<String>,
    },
    /// The items of one partition key in sort-key order (tables with a sort key).
    Query {
        /// Table name.
        table: String,
        /// Partition key.
        partition_key: String,
        /// Lowest sort key (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Highest sort key (inclusive).
        #[arg(long)]
        to: Option<String>,
        /// Most items to return (1 to 1000; the server's default is 100).
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// Names an item in messages.
fn item_name(table: &str, pk: &str, sk: Option<&str>) -> String {
    match sk {
        Some(sk) => format!("table {table}, partition key {pk:?}, sort key {sk:?}"),
        None => format!("table {table}, partition key {pk:?}"),
    }
}

pub fn run(
    endpoint: &str,
    json: bool,
    cmd: ItemCmd,
    authorization: Option<Authorization>,
) -> anyhow::Result<()> {
    let mut client = DataClient::new(vec![endpoint.to_string()]);
    if let Some(authorization) = authorization {
        client = client.with_authorization(authorization);
    }
    match cmd {
        ItemCmd::Put {
            table,
            partition_key,
            sort_key,
            value,
        } => {
            let value = serde_json::value::RawValue::from_string(value)
                .map_err(|e| anyhow::anyhow!("the value is not JSON: {e}"))?;
            let sk = sort_key.as_deref();
            let put = client.put_raw(&table, &partition_key, sk, &value)?;
            print(json, &put, || {
                format!(
                    "stored {} (epoch {}, lsn {})",
                    item_name(&table, &partition_key, sk),
                    put.epoch,
                    put.lsn
                )
            })
        }
        ItemCmd::Get {
            table,
            partition_key,
            sort_key,
        } => {
            let sk = sort_key.as_deref();
            let Some(item) = client.get_item(&table, &partition_key, sk)? else {
                anyhow::bail!("item not found: {}", item_name(&table, &partition_key, sk));
            };
            print(json, &item, || pretty(item.value.get()))
        }
        ItemCmd::Delete {
            table,
            partition_key,
            sort_key,
        } => {
            let sk = sort_key.as_deref();
            let deleted = client.delete(&table, &partition_key, sk)?;
            print(json, &deleted, || {
                format!(
                    "deleted {} (epoch {}, lsn {})",
                    item_name(&table, &partition_key, sk),
                    deleted.epoch,
                    deleted.lsn
                )
            })
        }
        ItemCmd::Query {
            table,
            partition_key,
            from,
            to,
            limit,
        } => {
            let result = client.query(
                &table,
                &partition_key,
                from.as_deref(),
                to.as_deref(),
                limit,
            )?;
            print(json, &result, || query_text(&result))
        }
    }
}

/// JSON text indented for reading (as stored if it cannot be parsed).
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string())
}

fn query_text(result: &QueryResponse) -> String {
    let mut t = text_table(&["SORT KEY", "VALUE"]);
    for item in &result.items {
        t.add_row(vec![item.sort_key.clone(), item.value.get().to_string()]);
    }
    let mut text = format!(
        "{} items for partition key {:?}\n{t}",
        result.items.len(),
        result.partition_key
    );
    if result.more {
        text.push_str("\n(more items: query again with --from the last sort key)");
    }
    text
}
