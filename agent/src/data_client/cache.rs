//! The client's routing cache: per table, the key attribute types and the partitions'
//! routes; per node, its HTTP endpoint. Pure: filled from API answers, read without IO.

use std::collections::HashMap;

use shared::api::PartitionsResponse;
use shared::data::{KeyError, MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES, encode_key};
use shared::keyspace::{RouteEntry, RoutingTable};
use shared::model::{Attribute, AttributeType, KeyRange, NodeId, PartitionId, TableId};

/// The types of a table's key attributes, which decide how key text becomes bytes.
/// They never change in a table's life (schema versions must keep them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTypes {
    /// Type of the partition key.
    pub partition: AttributeType,
    /// Type of the sort key; `None` for a table without one.
    pub sort: Option<AttributeType>,
}

impl KeyTypes {
    /// The key types of a table whose keys are named `partition_key` and `sort_key`, from
    /// its schema; `None` if the schema lacks one of them or gives it a non-key type.
    pub fn from_schema(
        attributes: &[Attribute],
        partition_key: &str,
        sort_key: Option<&str>,
    ) -> Option<KeyTypes> {
        let type_of = |name: &str| {
            attributes
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.attr_type)
                .filter(|t| t.is_key_type())
        };
        let sort = match sort_key {
            Some(name) => Some(type_of(name)?),
            None => None,
        };
        Some(KeyTypes {
            partition: type_of(partition_key)?,
            sort,
        })
    }

    /// Encodes a partition key exactly as the agents do before hashing and storing it.
    pub fn partition_key_bytes(&self, text: &str) -> Result<Vec<u8>, KeyError> {
        encode_key(
            self.partition,
            text,
            "partition key",
            MAX_PARTITION_KEY_BYTES,
        )
    }

    /// Encodes a sort key (or a query bound) exactly as the agents do.
    pub fn sort_key_bytes(&self, text: &str) -> Result<Vec<u8>, KeyError> {
        let ty = self.sort.ok_or(KeyError::BadType)?;
        encode_key(ty, text, "sort key", MAX_SORT_KEY_BYTES)
    }
}

/// Where to send a call for one key: the primary of its partition and the epoch to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTarget<'a> {
    /// Partition holding the key.
    pub partition_id: PartitionId,
    /// Epoch of the route, sent as `?epoch=` so that no other epoch's primary serves it.
    pub epoch: u64,
    /// The primary.
    pub primary_node_id: NodeId,
    /// The primary's HTTP endpoint.
    pub endpoint: &'a str,
}

#[derive(Debug, Clone)]
struct CachedTable {
    /// Synthetic id under which the routes sit in `routes` (the API does not expose ids).
    id: TableId,
    keys: KeyTypes,
    /// Creation time as described: a table dropped and created again under the same name
    /// has a new one, and then its key types are fetched again.
    created_at: String,
}

/// Routes of the tables a client has used, keyed by table name.
#[derive(Debug, Clone, Default)]
pub struct RouteCache {
    tables: HashMap<String, CachedTable>,
    routes: RoutingTable,
    endpoints: HashMap<NodeId, String>,
    next_table_id: TableId,
}

impl RouteCache {
    /// Records (or replaces) the key types and routes of a table.
    pub fn set_table(
        &mut self,
        name: &str,
        keys: KeyTypes,
        created_at: &str,
        entries: Vec<RouteEntry>,
    ) {
        let id = match self.tables.get(name) {
            Some(t) => t.id,
            None => {
                self.next_table_id += 1;
                self.next_table_id
            }
        };
        let table = CachedTable {
            id,
            keys,
            created_at: created_at.to_string(),
        };
        self.tables.insert(name.to_string(), table);
        self.routes.set_table(id, entries);
    }

    /// Forgets a table.
    pub fn remove_table(&mut self, name: &str) {
        if let Some(t) = self.tables.remove(name) {
            self.routes.set_table(t.id, Vec::new());
        }
    }

    /// Records node endpoints (adding to or replacing the known ones).
    pub fn set_endpoints(&mut self, nodes: impl IntoIterator<Item = (NodeId, String)>) {
        for (node_id, endpoint) in nodes {
            self.endpoints.insert(node_id, endpoint);
        }
    }

    /// Key types of a cached table.
    pub fn key_types(&self, table: &str) -> Option<KeyTypes> {
        self.tables.get(table).map(|t| t.keys)
    }

    /// Key types of a cached table if it is still the one created at `created_at`.
    pub fn key_types_if_created_at(&self, table: &str, created_at: &str) -> Option<KeyTypes> {
        self.tables
            .get(table)
            .filter(|t| t.created_at == created_at)
            .map(|t| t.keys)
    }

    /// The primary and epoch for an encoded partition key of `table`; `None` if the table
    /// is not cached, no partition covers the key's hash, or the primary's endpoint is
    /// unknown (all mean: refresh).
    pub fn route(&self, table: &str, partition_key: &[u8]) -> Option<RouteTarget<'_>> {
        let id = self.tables.get(table)?.id;
        let entry = self.routes.lookup_key(id, partition_key)?;
        let endpoint = self.endpoints.get(&entry.primary_node_id)?;
        Some(RouteTarget {
            partition_id: entry.partition_id,
            epoch: entry.epoch,
            primary_node_id: entry.primary_node_id,
            endpoint,
        })
    }

    /// Every node endpoint known, in node-id order.
    pub fn endpoints(&self) -> Vec<&str> {
        let mut nodes: Vec<(&NodeId, &String)> = self.endpoints.iter().collect();
        nodes.sort();
        nodes.into_iter().map(|(_, e)| e.as_str()).collect()
    }
}

/// The routes in a `GET /tables/{name}/partitions` answer.
pub fn route_entries(partitions: &PartitionsResponse) -> Vec<RouteEntry> {
    partitions
        .partitions
        .iter()
        .map(|p| RouteEntry {
            partition_id: p.partition_id,
            range: KeyRange {
                low: p.key_range_low,
                high: p.key_range_high,
            },
            primary_node_id: p.primary_node_id,
            replica_node_ids: p.replica_node_ids.clone(),
            epoch: p.epoch,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use shared::api::PartitionDescription;
    use shared::keyspace::{even_ranges, hash_partition_key};
    use shared::model::PartitionStatus;

    use super::*;

    fn attr(name: &str, attr_type: AttributeType) -> Attribute {
        Attribute {
            name: name.into(),
            attr_type,
        }
    }

    /// Four partitions over the whole space; partition `i` has primary node `i + 1` at
    /// epoch `10 + i`.
    fn four_partitions() -> PartitionsResponse {
        let partitions = even_ranges(4)
            .into_iter()
            .enumerate()
            .map(|(i, r)| PartitionDescription {
                partition_id: 100 + i as u64,
                key_range_low: r.low,
                key_range_high: r.high,
                primary_node_id: i as u64 + 1,
                replica_node_ids: vec![],
                epoch: 10 + i as u64,
                status: PartitionStatus::Healthy,
                ready: true,
                under_replicated: false,
            })
            .collect();
        PartitionsResponse {
            table_name: "orders".into(),
            partitions,
        }
    }

    fn cache() -> RouteCache {
        let keys = KeyTypes {
            partition: AttributeType::N,
            sort: Some(AttributeType::S),
        };
        let mut cache = RouteCache::default();
        cache.set_table("orders", keys, "t0", route_entries(&four_partitions()));
        cache.set_endpoints((1..=4).map(|n| (n, format!("http://10.0.0.{n}:7070"))));
        cache
    }

    #[test]
    fn key_types_from_schema() {
        let attrs = [
            attr("id", AttributeType::N),
            attr("ts", AttributeType::S),
            attr("flag", AttributeType::Bool),
        ];
        let both = KeyTypes::from_schema(&attrs, "id", Some("ts")).unwrap();
        assert_eq!(both.partition, AttributeType::N);
        assert_eq!(both.sort, Some(AttributeType::S));
        assert_eq!(
            KeyTypes::from_schema(&attrs, "id", None).unwrap().sort,
            None
        );
        assert!(KeyTypes::from_schema(&attrs, "missing", None).is_none());
        assert!(KeyTypes::from_schema(&attrs, "id", Some("missing")).is_none());
        assert!(KeyTypes::from_schema(&attrs, "flag", None).is_none());
    }

    #[test]
    fn keys_are_encoded_as_the_agents_encode_them() {
        let keys = cache().key_types("orders").unwrap();
        // N keys: one number, one encoding, whatever its spelling.
        assert_eq!(
            keys.partition_key_bytes("1.50").unwrap(),
            keys.partition_key_bytes("1.5").unwrap()
        );
        assert_eq!(
            keys.partition_key_bytes("7").unwrap(),
            encode_key(
                AttributeType::N,
                "7",
                "partition key",
                MAX_PARTITION_KEY_BYTES
            )
            .unwrap()
        );
        assert!(keys.partition_key_bytes("seven").is_err());
        assert!(keys.partition_key_bytes("").is_err());
        assert_eq!(keys.sort_key_bytes("a/b").unwrap(), b"a/b");
        let long = "x".repeat(MAX_SORT_KEY_BYTES + 1);
        assert!(matches!(
            keys.sort_key_bytes(&long),
            Err(KeyError::TooLong { .. })
        ));
        let no_sort = KeyTypes {
            partition: AttributeType::S,
            sort: None,
        };
        assert!(no_sort.sort_key_bytes("x").is_err());
    }

    #[test]
    fn route_finds_the_partition_of_the_hashed_key() {
        let cache = cache();
        let keys = cache.key_types("orders").unwrap();
        let ranges = even_ranges(4);
        for n in 0..200 {
            let pk = keys.partition_key_bytes(&n.to_string()).unwrap();
            let hash = hash_partition_key(&pk);
            let i = ranges.iter().position(|r| r.contains(hash)).unwrap() as u64;
            let target = cache.route("orders", &pk).unwrap();
            assert_eq!(target.partition_id, 100 + i);
            assert_eq!(target.epoch, 10 + i);
            assert_eq!(target.primary_node_id, i + 1);
            assert_eq!(target.endpoint, format!("http://10.0.0.{}:7070", i + 1));
        }
        assert!(cache.route("other", b"k").is_none());
    }

    #[test]
    fn route_needs_the_primary_endpoint_and_follows_updates() {
        let mut cache = cache();
        let keys = cache.key_types("orders").unwrap();
        let pk = keys.partition_key_bytes("42").unwrap();
        let before = cache.route("orders", &pk).unwrap();
        let (pid, old_primary) = (before.partition_id, before.primary_node_id);

        // Failover: a new primary (node 9) at the next epoch.
        let mut parts = four_partitions();
        let p = parts
            .partitions
            .iter_mut()
            .find(|p| p.partition_id == pid)
            .unwrap();
        p.primary_node_id = 9;
        p.epoch += 1;
        let new_epoch = p.epoch;
        cache.set_table("orders", keys, "t0", route_entries(&parts));
        assert!(
            cache.route("orders", &pk).is_none(),
            "node 9 endpoint unknown"
        );
        cache.set_endpoints([(9, "http://10.0.0.9:7070".to_string())]);
        let after = cache.route("orders", &pk).unwrap();
        assert_eq!((after.primary_node_id, after.epoch), (9, new_epoch));
        assert_ne!(after.primary_node_id, old_primary);

        assert_eq!(cache.key_types_if_created_at("orders", "t0"), Some(keys));
        assert_eq!(cache.key_types_if_created_at("orders", "t1"), None);
        assert_eq!(cache.endpoints().len(), 5);
        cache.remove_table("orders");
        assert!(cache.route("orders", &pk).is_none());
        assert!(cache.key_types("orders").is_none());
    }
}
