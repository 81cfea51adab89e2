//! Versions of every persisted and wire format, and the rule that keeps old bytes readable.
//!
//! Everything an agent writes to disk or sends to a peer is postcard, which encodes an
//! enum variant by its *position* and a struct by its field *order*, with no names. So:
//!
//! - **Enum variants are append-only.** A new variant goes last; no variant is removed,
//!   reordered or renamed into another's place; an existing variant's fields keep their
//!   order and types. The same holds for struct fields (a new field goes last, and only
//!   in a format whose reader tolerates its absence: in postcard that means a new format
//!   version, because postcard has no "missing trailing field").
//! - **A change that breaks this bumps the format's version** below, and the reader of
//!   the new version must still read the old one (or refuse it with a clear error).
//! - **Golden-bytes tests pin each format** (`agent/src/golden/`, with the bytes in
//!   `agent/golden/*.golden`): one committed line per sample value, every variant of the
//!   top-level enums sampled. A line is never edited; a new variant adds a sample and a
//!   line (`GOLDEN_APPEND=1 cargo test -p agent --lib golden` appends the missing ones).
//! - **No `skip_serializing_if` on a type that travels in postcard**: postcard cannot
//!   skip a field, so the reader runs out of bytes (this broke forwarded key rotations).
//!
//! Where each version travels:
//!
//! | Format | Version | Carried by |
//! |---|---|---|
//! | Raft log entries (`MetaCommand`) | [`META_LOG_FORMAT`] | the `format` table of `meta.redb` |
//! | State-machine snapshots | [`SNAPSHOT_FORMAT`] | a header on the snapshot bytes ([`snapshot_header`]) |
//! | Partition logs and positions (`WriteRecord`) | [`PARTITION_STORE_FORMAT`] | the `format` table of `partitions.redb` |
//! | Peer messages and gossip reports | [`PEER_FORMAT`] | the TLS ALPN protocol of every peer connection |
//! | Metadata backup files | [`crate::backup::BACKUP_FORMAT`] | the header of the file |
//!
//! A store written before versions were recorded is version 1: that is the encoding
//! version 1 names.

/// Version of the Raft log entries in `meta.redb`.
pub const META_LOG_FORMAT: u16 = 1;
/// Version of the state-machine snapshot bytes (stored and sent to followers).
pub const SNAPSHOT_FORMAT: u16 = 1;
/// Version of the partition logs and positions in `partitions.redb`.
pub const PARTITION_STORE_FORMAT: u16 = 1;
/// Version of the peer protocol: requests, replies, Raft RPCs, data-plane messages and
/// gossip datagrams (negotiated as ALPN `agent-peer/<version>`).
pub const PEER_FORMAT: u16 = 1;

/// First bytes of a versioned snapshot. The first byte of an unversioned (older)
/// snapshot is a postcard `Option` tag (0 or 1), never 0xFF, so the two cannot be
/// confused.
const SNAPSHOT_MAGIC: [u8; 3] = [0xFF, b'S', b'N'];

/// Length of [`snapshot_header`].
pub const SNAPSHOT_HEADER_LEN: usize = SNAPSHOT_MAGIC.len() + 2;

/// Why bytes of a format were not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Written by a newer agent: reading on would misread it.
    #[error(
        "{what} has format version {found}, newer than this agent reads ({known}): run an agent at least as new as the one that wrote it"
    )]
    Newer {
        /// Which format.
        what: &'static str,
        /// Version found.
        found: u16,
        /// Newest version this agent reads.
        known: u16,
    },
    /// A version this agent no longer (or never) reads.
    #[error(
        "{what} has format version {found}, which this agent does not read (it reads 1 to {known})"
    )]
    Unsupported {
        /// Which format.
        what: &'static str,
        /// Version found.
        found: u16,
        /// Newest version this agent reads.
        known: u16,
    },
}

/// Checks a version found on disk or on the wire against the newest one this agent reads.
pub fn check_version(what: &'static str, found: u16, known: u16) -> Result<(), FormatError> {
    match found {
        0 => Err(FormatError::Unsupported { what, found, known }),
        v if v > known => Err(FormatError::Newer { what, found, known }),
        _ => Ok(()),
    }
}

/// The header that starts every snapshot's bytes: magic, then [`SNAPSHOT_FORMAT`]
/// (little-endian).
pub fn snapshot_header() -> [u8; SNAPSHOT_HEADER_LEN] {
    let v = SNAPSHOT_FORMAT.to_le_bytes();
    let m = SNAPSHOT_MAGIC;
    [m[0], m[1], m[2], v[0], v[1]]
}

/// Splits snapshot bytes into their format version and postcard payload. Bytes without
/// the header are an unversioned snapshot: version 1.
pub fn split_snapshot(bytes: &[u8]) -> Result<(u16, &[u8]), FormatError> {
    let Some(rest) = bytes.strip_prefix(&SNAPSHOT_MAGIC) else {
        return Ok((1, bytes));
    };
    let (version, payload) = match rest {
        [a, b, payload @ ..] => (u16::from_le_bytes([*a, *b]), payload),
        // A header cut short: no version this agent knows.
        _ => (0, rest),
    };
    check_version("the metadata snapshot", version, SNAPSHOT_FORMAT)?;
    Ok((version, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_header_round_trips_and_unversioned_bytes_are_version_1() {
        let mut bytes = snapshot_header().to_vec();
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            split_snapshot(&bytes),
            Ok((SNAPSHOT_FORMAT, &[1u8, 2, 3][..]))
        );
        // An older snapshot starts with the postcard Option tag of the cluster id.
        assert_eq!(split_snapshot(&[1, 4, 5]), Ok((1, &[1u8, 4, 5][..])));
        assert_eq!(split_snapshot(&[0]), Ok((1, &[0u8][..])));
    }

    #[test]
    fn a_newer_or_broken_snapshot_header_is_refused_by_name() {
        let mut newer = SNAPSHOT_MAGIC.to_vec();
        newer.extend_from_slice(&(SNAPSHOT_FORMAT + 1).to_le_bytes());
        newer.push(0);
        let err = split_snapshot(&newer).unwrap_err();
        assert!(matches!(err, FormatError::Newer { .. }), "{err}");
        assert!(err.to_string().contains("metadata snapshot"), "{err}");
        let cut = [0xFF, b'S', b'N', 1];
        assert!(matches!(
            split_snapshot(&cut),
            Err(FormatError::Unsupported { found: 0, .. })
        ));
    }

    #[test]
    fn versions_from_1_to_the_known_one_are_read() {
        assert!(check_version("x", 1, 1).is_ok());
        assert!(check_version("x", 0, 1).is_err());
        assert!(check_version("x", 2, 1).is_err());
        assert!(check_version("x", 2, 3).is_ok());
    }
}
