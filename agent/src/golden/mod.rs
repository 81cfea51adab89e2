//! Golden-bytes tests of every persisted and wire format (see `shared::format` for the
//! rule they enforce). Each format has a file in `agent/golden/`: one line per sample
//! value, `label hex`. For every format:
//!
//! - every committed line still decodes, and re-encodes to the same bytes (old data
//!   stays readable and means the same);
//! - every sample below encodes to its committed line (a change of encoding fails here:
//!   variants are append-only; a real change bumps the format version);
//! - for the enums, the samples use every variant, and the variant after the last one
//!   is unknown (so a new variant fails until it gets a sample and a line).
//!
//! A sample without a line fails too; `GOLDEN_APPEND=1` appends the missing lines (never
//! rewrites one), for a new variant or sample.

mod samples;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One sample: its label and value.
type Sample<T> = (&'static str, T);

/// Decodes `bytes` as `T` and encodes the result again.
fn reencode<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let value: T = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
    postcard::to_allocvec(&value).map_err(|e| e.to_string())
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(format!("{name}.golden"))
}

/// The committed lines of a golden file: (label, bytes), in file order.
fn read_golden(name: &str) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(golden_path(name)).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (label, hex) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("{name}: bad line {l:?}"));
            (label.to_string(), decode_hex(hex.trim()))
        })
        .collect()
}

fn decode_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd hex {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks format `name` against its golden file (see the module documentation).
fn check<T: Serialize + DeserializeOwned>(name: &str, samples: &[Sample<T>]) {
    let committed = read_golden(name);
    for (label, bytes) in &committed {
        let again = reencode::<T>(bytes)
            .unwrap_or_else(|e| panic!("{name}: committed {label} no longer decodes: {e}"));
        assert_eq!(
            &again, bytes,
            "{name}: committed {label} decodes to something else"
        );
    }
    let mut missing = Vec::new();
    for (label, value) in samples {
        let bytes = postcard::to_allocvec(value).expect("encodes");
        match committed.iter().find(|(l, _)| l == label) {
            Some((_, golden)) => assert_eq!(
                encode_hex(&bytes),
                encode_hex(golden),
                "{name}: the encoding of {label} changed. Variants and fields are \
                 append-only; an incompatible change bumps the format version \
                 (shared::format)"
            ),
            None => missing.push(format!("{label} {}", encode_hex(&bytes))),
        }
        let back = reencode::<T>(&bytes).unwrap_or_else(|e| panic!("{name}: {label}: {e}"));
        assert_eq!(back, bytes, "{name}: {label} does not round-trip");
    }
    if missing.is_empty() {
        return;
    }
    if std::env::var_os("GOLDEN_APPEND").is_some() {
        append(name, &missing);
        return;
    }
    panic!(
        "{name}: samples without a committed line (run with GOLDEN_APPEND=1 to append \
         them):\n{}",
        missing.join("\n")
    );
}

fn append(name: &str, lines: &[String]) {
    use std::io::Write;
    let path = golden_path(name);
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("golden file");
    if new {
        writeln!(
            file,
            "# Golden bytes of `{name}` (postcard). Append-only: never edit a line."
        )
        .unwrap();
    }
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
}

/// Checks that the samples of enum `T` use each of its variants: their first bytes
/// (the variant index, one byte below 128) are exactly `0..n`, and index `n` is unknown.
/// Every format's enum has one variant at least.
fn check_every_variant<T: Serialize + DeserializeOwned>(name: &str, samples: &[Sample<T>]) {
    let indices: BTreeSet<u8> = samples
        .iter()
        .map(|(_, v)| postcard::to_allocvec(v).expect("encodes")[0])
        .collect();
    let n = indices.len() as u8;
    assert!(n < 128, "{name}: one-byte variant indices only");
    assert_eq!(
        indices,
        (0..n).collect::<BTreeSet<u8>>(),
        "{name}: samples skip a variant"
    );
    // serde refuses an unknown variant index (a custom error); a known one with its
    // payload missing runs out of bytes instead.
    let unknown = |i: u8| {
        matches!(
            postcard::from_bytes::<T>(&[i]),
            Err(postcard::Error::SerdeDeCustom)
        )
    };
    assert!(unknown(n), "{name}: variant {n} exists but has no sample");
    assert!(
        !unknown(n - 1),
        "{name}: the check cannot tell variants apart"
    );
}

#[test]
fn meta_commands_the_raft_log_carries() {
    let samples = samples::meta_commands();
    check_every_variant("meta_command", &samples);
    check("meta_command", &samples);
}

#[test]
fn raft_log_entries() {
    let samples = samples::raft_entries();
    check("raft_entry", &samples);
}

#[test]
fn state_machine_snapshots() {
    let samples = samples::snapshot_images();
    check("snapshot", &samples);
}

#[test]
fn metadata_backups() {
    // The file adds a header and a digest around these bytes (`shared::backup`).
    check("meta_backup", &samples::meta_backups());
}

#[test]
fn a_snapshot_starts_with_its_format_version() {
    let (_, image) = samples::snapshot_images().remove(0);
    let bytes = crate::meta::state_machine::encode_image(&image).unwrap();
    assert_eq!(
        &bytes[..shared::format::SNAPSHOT_HEADER_LEN],
        &shared::format::snapshot_header()
    );
    let (version, payload) = shared::format::split_snapshot(&bytes).unwrap();
    assert_eq!(version, shared::format::SNAPSHOT_FORMAT);
    assert_eq!(payload, postcard::to_allocvec(&image).unwrap());
}

#[test]
fn partition_log_records_and_positions() {
    check("write_record", &samples::write_records());
    check("partition_meta", &samples::partition_metas());
}

#[test]
fn peer_messages() {
    let requests = samples::peer_requests();
    check_every_variant("peer_request", &requests);
    check("peer_request", &requests);
    let outcomes = samples::meta_outcomes();
    check_every_variant("meta_outcome", &outcomes);
    check("meta_outcome", &outcomes);
    let responses = samples::peer_responses();
    check_every_variant("peer_response", &responses);
    check("peer_response", &responses);
}

#[test]
fn data_plane_messages() {
    let requests = samples::data_requests();
    check_every_variant("data_request", &requests);
    check("data_request", &requests);
    let replies = samples::data_replies();
    check_every_variant("data_reply", &replies);
    check("data_reply", &replies);
    let replica = samples::replica_requests();
    check_every_variant("replica_request", &replica);
    check("replica_request", &replica);
    let items = samples::item_requests();
    check_every_variant("item_request", &items);
    check("item_request", &items);
}

#[test]
fn gossip_status_reports_and_identities() {
    check("status_report", &samples::status_reports());
    check("gossip_id", &samples::gossip_ids());
}
