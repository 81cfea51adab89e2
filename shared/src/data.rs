//! Data-plane types shared by agents and clients: key encoding, write records (the unit
//! of the per-partition log), and the request/response messages of the data path.
//!
//! Keys travel as text (URL path and query) and are stored and hashed as bytes:
//! S keys as their UTF-8 bytes, B keys base64-decoded, N keys as 8 order-preserving
//! bytes of the f64, so sort keys compare in their natural order as bytes.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::model::{AttributeType, KeyRange, NodeId, PartitionId, TableId, TableStatus};

/// Longest encoded partition key, in bytes (as DynamoDB).
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// Longest encoded sort key, in bytes (as DynamoDB).
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// Default largest item value, in bytes (as DynamoDB's 400 KB item limit).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 400 * 1024;
/// Most items one query returns.
pub const MAX_QUERY_LIMIT: usize = 1000;
/// Items a query returns when no limit is given.
pub const DEFAULT_QUERY_LIMIT: usize = 100;
/// A query stops adding items once their values reach this many bytes (then `more` is
/// set), as DynamoDB cuts a query at 1 MB.
pub const MAX_QUERY_BYTES: usize = 1024 * 1024;

/// Why a key in a request is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty key.
    #[error("the {0} must not be empty")]
    Empty(&'static str),
    /// Too long once encoded.
    #[error("the {what} is {len} bytes, at most {max}")]
    TooLong {
        /// Which key.
        what: &'static str,
        /// Encoded length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Not a finite number (N keys).
    #[error("the {0} {1:?} is not a finite number")]
    NotANumber(&'static str, String),
    /// Not base64 (B keys).
    #[error("the {0} is not base64")]
    NotBase64(&'static str),
    /// The schema gives the key a type keys cannot have.
    #[error("key attributes must be S, N or B")]
    BadType,
}

/// Encodes the text form of a key attribute of type `ty` (`what` names it in errors).
pub fn encode_key(
    ty: AttributeType,
    text: &str,
    what: &'static str,
    max: usize,
) -> Result<Vec<u8>, KeyError> {
    if text.is_empty() {
        return Err(KeyError::Empty(what));
    }
    let bytes = match ty {
        AttributeType::S => text.as_bytes().to_vec(),
        AttributeType::B => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| KeyError::NotBase64(what))?,
        AttributeType::N => {
            let n: f64 = text
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| KeyError::NotANumber(what, text.to_string()))?;
            order_preserving_f64(n).to_vec()
        }
        _ => return Err(KeyError::BadType),
    };
    if bytes.is_empty() {
        return Err(KeyError::Empty(what));
    }
    if bytes.len() > max {
        return Err(KeyError::TooLong {
            what,
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

/// The text form of an encoded key (inverse of [`encode_key`]).
pub fn decode_key(ty: AttributeType, bytes: &[u8]) -> String {
    match ty {
        AttributeType::B => base64::engine::general_purpose::STANDARD.encode(bytes),
        AttributeType::N => match <[u8; 8]>::try_from(bytes) {
            Ok(b) => f64_from_order_preserving(b).to_string(),
            Err(_) => String::new(),
        },
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Big-endian bytes of `n` whose unsigned order is the numeric order (-0 equals 0).
fn order_preserving_f64(n: f64) -> [u8; 8] {
    let n = if n == 0.0 { 0.0 } else { n };
    let bits = n.to_bits();
    let key = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    key.to_be_bytes()
}

fn f64_from_order_preserving(b: [u8; 8]) -> f64 {
    let key = u64::from_be_bytes(b);
    let bits = if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    };
    f64::from_bits(bits)
}

/// What a write does to one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Stores the value (JSON text) under the key, replacing any previous one.
    Put(Vec<u8>),
    /// Removes the item (a no-op if absent).
    Delete,
}

/// One entry of a partition's log: assigned a log sequence number by the primary of
/// `epoch`, applied in LSN order on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRecord {
    /// Log sequence number: 1, 2, 3, ... per partition, never reused.
    pub lsn: u64,
    /// Epoch of the primary that assigned the LSN.
    pub epoch: u64,
    /// Encoded partition key.
    pub partition_key: Vec<u8>,
    /// Encoded sort key (tables with a sort key only).
    pub sort_key: Option<Vec<u8>>,
    /// The change.
    pub op: WriteOp,
}

/// The last record a replica holds: (LSN, epoch), or (0, 0) for an empty log.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    /// LSN of the last record.
    pub lsn: u64,
    /// Epoch of the last record.
    pub epoch: u64,
}

/// The log position of a partition derived in place from `sources` (a split child from
/// its parent, a merged partition from both sides), given the sources' final positions:
/// the source's own for one, else the highest LSN and epoch among them. Every copy
/// derives it from the same positions (all brought to the primary's under the fence),
/// so the primary and its replicas agree on where the new log starts.
pub fn derived_position(sources: &[LogPosition]) -> LogPosition {
    LogPosition {
        lsn: sources.iter().map(|p| p.lsn).max().unwrap_or(0),
        epoch: sources.iter().map(|p| p.epoch).max().unwrap_or(0),
    }
}

/// Addresses one partition of one table at the epoch the sender routed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAddress {
    /// Table.
    pub table_id: TableId,
    /// Partition.
    pub partition_id: PartitionId,
    /// Epoch of the sender's route; `None` lets the primary use its own (forwarding
    /// agents always send theirs).
    pub epoch: Option<u64>,
}

/// An item operation sent to a partition's primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemRequest {
    /// Put or delete one item.
    Write {
        /// Target partition.
        at: PartitionAddress,
        /// Encoded partition key.
        partition_key: Vec<u8>,
        /// Encoded sort key.
        sort_key: Option<Vec<u8>>,
        /// The change.
        op: WriteOp,
    },
    /// Read one item.
    Get {
        /// Target partition.
        at: PartitionAddress,
        /// Encoded partition key.
        partition_key: Vec<u8>,
        /// Encoded sort key.
        sort_key: Option<Vec<u8>>,
    },
    /// The items of one partition key, in sort-key order, within inclusive bounds.
    Query {
        /// Target partition.
        at: PartitionAddress,
        /// Encoded partition key.
        partition_key: Vec<u8>,
        /// Lowest encoded sort key (inclusive).
        sort_from: Option<Vec<u8>>,
        /// Highest encoded sort key (inclusive).
        sort_to: Option<Vec<u8>>,
        /// Most items to return.
        limit: usize,
    },
}

impl ItemRequest {
    /// The partition addressed.
    pub fn address(&self) -> PartitionAddress {
        match self {
            ItemRequest::Write { at, .. }
            | ItemRequest::Get { at, .. }
            | ItemRequest::Query { at, .. } => *at,
        }
    }

    /// Whether the request changes data.
    pub fn is_write(&self) -> bool {
        matches!(self, ItemRequest::Write { .. })
    }
}

/// A successful answer to an [`ItemRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemReply {
    /// The write is durable on every replica of the epoch.
    Written {
        /// Its LSN.
        lsn: u64,
        /// The epoch it was written in.
        epoch: u64,
    },
    /// The item's value (JSON text), if it exists.
    Item(Option<Vec<u8>>),
    /// Items of a query: (encoded sort key, value), and whether more remain.
    Items {
        /// The items, in sort-key order.
        items: Vec<(Vec<u8>, Vec<u8>)>,
        /// Whether the limit cut the result short.
        more: bool,
    },
}

/// Why an [`ItemRequest`] was not served. None of these changed stored data, except
/// `Unavailable` on a write, whose outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ItemError {
    /// The receiver is not the primary of that partition at that epoch: refresh the route.
    #[error("wrong partition route (current epoch {current_epoch:?}, primary {primary:?})")]
    WrongPartition {
        /// The receiver's current epoch of the partition, if it knows the partition.
        current_epoch: Option<u64>,
        /// The primary the receiver knows of.
        primary: Option<NodeId>,
    },
    /// The table does not exist.
    #[error("table {0} not found")]
    TableNotFound(String),
    /// The table's status does not allow the operation (writes need ACTIVE or SCALING).
    #[error("table {name} is {status:?}")]
    TableNotWritable {
        /// Table name.
        name: String,
        /// Its status.
        status: TableStatus,
    },
    /// The value is larger than the configured limit.
    #[error("value of {len} bytes exceeds the limit of {max}")]
    ValueTooLarge {
        /// Value size.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Malformed request (key, value, bounds).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The primary cannot serve now (replicas unreachable, no read lease, moving to a new
    /// epoch); nothing was written. Retry.
    #[error("partition unavailable: {0}")]
    Unavailable(String),
    /// A write failed after it may have reached some copies: it may or may not be applied
    /// (a later read tells). The partition moves to a new epoch before the next write.
    #[error("write outcome unknown: {0}")]
    OutcomeUnknown(String),
}

/// What a primary answers.
pub type ItemResult = Result<ItemReply, ItemError>;

/// Replication messages from a partition's primary to its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaRequest {
    /// Records that follow `prev` in the primary's log.
    Append {
        /// Partition.
        partition_id: PartitionId,
        /// The primary's epoch.
        epoch: u64,
        /// The position the records follow; a replica elsewhere answers `NeedSync`.
        prev: LogPosition,
        /// Records in LSN order.
        records: Vec<WriteRecord>,
    },
    /// One chunk of the primary's copy, which replaces the replica's (its log no longer
    /// reaches back to the replica's position, or the replica's log diverged, or it is
    /// a move's target). A copy is sent as chunks in key order, one at a time; the first
    /// empties the replica's copy, the last sets its position (answered with it; the
    /// others answer (0, 0)). A chunk of another transfer than the one the replica is
    /// installing is refused with `NeedSync`: the primary starts again.
    InstallSnapshot {
        /// Partition.
        partition_id: PartitionId,
        /// The primary's epoch.
        epoch: u64,
        /// Names the transfer (unique per primary process and node).
        transfer: u64,
        /// The position the whole copy reflects.
        position: LogPosition,
        /// (item key, value) of this chunk, in key order.
        items: Vec<(Vec<u8>, Vec<u8>)>,
        /// The transfer's first chunk.
        first: bool,
        /// The transfer's last chunk.
        last: bool,
    },
    /// The primary is about to split a partition or merge two: copy the sources' items
    /// (as of now) into the new partitions' tables ahead of the fence, so that the
    /// switch itself only has to apply the few records written since (answers with
    /// the position the copy reflects).
    Stage {
        /// The partition to split, or the two to merge.
        sources: Vec<PartitionId>,
        /// The new partitions (their reserved ids) and their key ranges.
        children: Vec<(PartitionId, KeyRange)>,
    },
    /// The primary split or merged `sources` (the commit is done): derive the new
    /// partitions from the local copies, which must be at `positions` (else the new
    /// partitions are filled by catch-up). Not waiting for the local metadata to show
    /// the switch: the new partitions are accepted from their primary once stored here.
    Derive {
        /// The split partition, or the merged two.
        sources: Vec<PartitionId>,
        /// The new partitions and their key ranges.
        children: Vec<(PartitionId, KeyRange)>,
        /// The sources' final log positions, in the order of `sources`.
        positions: Vec<LogPosition>,
    },
    /// The primary hands the partition over (a move): it serves no more reads, and the
    /// replica forgets its lease grant to it so the next primary gets one at once.
    ReleaseLease {
        /// Partition.
        partition_id: PartitionId,
        /// The primary giving up its lease.
        primary: NodeId,
    },
    /// Lease renewal: may the sender serve reads of these partitions at these epochs?
    Lease {
        /// The primary asking.
        primary: NodeId,
        /// (partition, epoch) pairs.
        entries: Vec<(PartitionId, u64)>,
    },
}

/// Why a replica refused an `Append` or `InstallSnapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReplicaError {
    /// The replica knows a newer epoch: the sender is no longer the primary.
    #[error("stale epoch: the replica is at epoch {current}")]
    StaleEpoch {
        /// The replica's epoch.
        current: u64,
    },
    /// The replica's log does not end at `prev`: the primary must catch it up.
    #[error("replica log is at {position:?}")]
    NeedSync {
        /// Where the replica's log ends.
        position: LogPosition,
    },
    /// The replica's metadata says it holds no copy of this partition at that epoch.
    #[error("not a replica of the partition at this epoch")]
    NotReplica,
    /// Local storage failed.
    #[error("replica storage: {0}")]
    Storage(String),
}

/// What a replica answers to a [`ReplicaRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaReply {
    /// The replica's log now ends here (durably).
    Appended(Result<LogPosition, ReplicaError>),
    /// For each lease entry, whether it is granted.
    Lease(Vec<bool>),
}

/// Data-plane requests between agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataPeerRequest {
    /// An item operation forwarded to the partition's primary.
    Item(ItemRequest),
    /// Replication from a primary.
    Replica(ReplicaRequest),
    /// A replica being filled asks the primary to bring it up to date.
    Sync {
        /// Partition.
        partition_id: PartitionId,
        /// Epoch the replica was added in.
        epoch: u64,
        /// The replica.
        node_id: NodeId,
        /// Where its log ends.
        position: LogPosition,
    },
    /// The leader's recovery coordinator asks where these partitions' logs end here.
    Positions(Vec<PartitionId>),
    /// The leader's Scaler asks the load of the partitions led here.
    Loads,
    /// The leader's Scaler asks this primary to hand the primary role of a partition to
    /// one of its ready replicas (no data moves).
    HandOver {
        /// Partition.
        partition_id: PartitionId,
        /// Its epoch when planned.
        epoch: u64,
        /// The replica taking over.
        to: NodeId,
    },
    /// A stopping replica asks the primary to take it out of the partition's replica
    /// set (epoch + 1), between two writes, so no write in flight ends in doubt.
    Release {
        /// Partition.
        partition_id: PartitionId,
        /// Its epoch when asked.
        epoch: u64,
        /// The replica leaving.
        replica: NodeId,
    },
}

/// The load of one partition as its primary measures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLoadReport {
    /// Partition.
    pub partition_id: PartitionId,
    /// Operations per second served (mean over the primary's window), rounded.
    pub ops_per_sec: u64,
    /// Stored bytes (item keys and values).
    pub bytes: u64,
}

/// Answers to [`DataPeerRequest`]s, in the same order of variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataPeerReply {
    /// Answer to `Item`.
    Item(ItemResult),
    /// Answer to `Replica`.
    Replica(ReplicaReply),
    /// Answer to `Sync`: the requester's log position once caught up.
    Sync(Result<LogPosition, ItemError>),
    /// Answer to `Positions`: the partitions stored here, with their positions.
    Positions(Vec<(PartitionId, LogPosition)>),
    /// Answer to `Loads`.
    Loads(Vec<PartitionLoadReport>),
    /// Answer to `HandOver`: done, or why not.
    HandOver(Result<(), ItemError>),
    /// Answer to `Release`: done, or why not.
    Release(Result<(), ItemError>),
}

/// The byte key under which an item is stored in its partition: the partition key's
/// length (2 bytes, big-endian), the partition key, then the sort key. All items of one
/// partition key are contiguous and ordered by sort key.
pub fn item_key(partition_key: &[u8], sort_key: Option<&[u8]>) -> Vec<u8> {
    let len = u16::try_from(partition_key.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(2 + partition_key.len() + sort_key.map_or(0, <[u8]>::len));
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(partition_key);
    if let Some(sk) = sort_key {
        key.extend_from_slice(sk);
    }
    key
}

/// Splits an [`item_key`] back into (partition key, sort key bytes; empty when none).
pub fn split_item_key(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = key.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_keys_sort_numerically_as_bytes() {
        let nums = ["-1e300", "-2.5", "-1", "0", "-0", "0.5", "1", "10", "1e300"];
        let enc: Vec<Vec<u8>> = nums
            .iter()
            .map(|n| encode_key(AttributeType::N, n, "sort key", 1024).unwrap())
            .collect();
        for w in enc.windows(2) {
            assert!(w[0] <= w[1], "{w:?}");
        }
        assert_eq!(enc[3], enc[4], "-0 and 0 are one key");
        assert_eq!(decode_key(AttributeType::N, &enc[1]), "-2.5");
    }

    #[test]
    fn key_errors() {
        let n = |t: &str| encode_key(AttributeType::N, t, "sort key", 1024);
        assert!(matches!(n("abc"), Err(KeyError::NotANumber(..))));
        assert!(matches!(n("inf"), Err(KeyError::NotANumber(..))));
        assert!(matches!(n(""), Err(KeyError::Empty(_))));
        let long = "x".repeat(MAX_PARTITION_KEY_BYTES + 1);
        let s = encode_key(
            AttributeType::S,
            &long,
            "partition key",
            MAX_PARTITION_KEY_BYTES,
        );
        assert!(matches!(s, Err(KeyError::TooLong { .. })));
        let b = encode_key(AttributeType::B, "!!", "partition key", 10);
        assert_eq!(b, Err(KeyError::NotBase64("partition key")));
        let b = encode_key(AttributeType::B, "aGk=", "partition key", 10).unwrap();
        assert_eq!(b, b"hi");
        assert_eq!(decode_key(AttributeType::B, &b), "aGk=");
        assert!(encode_key(AttributeType::M, "x", "k", 10).is_err());
    }

    #[test]
    fn item_keys_group_by_partition_key_in_sort_order() {
        let a1 = item_key(b"a", Some(b"1"));
        let a2 = item_key(b"a", Some(b"2"));
        let ab = item_key(b"ab", Some(b""));
        assert!(a1 < a2);
        assert_eq!(split_item_key(&a2), Some((&b"a"[..], &b"2"[..])));
        assert_eq!(split_item_key(&ab), Some((&b"ab"[..], &b""[..])));
        assert_eq!(split_item_key(&[0]), None);
        // A longer partition key never falls inside another's range.
        let prefix = item_key(b"a", None);
        assert!(!ab.starts_with(&prefix));
    }
}
