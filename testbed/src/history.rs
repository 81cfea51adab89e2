//! The history of a run: one event per line (JSON lines), in Jepsen's shape.
//!
//! An operation is an `invoke` event followed by exactly one completion of the same
//! process: `ok` (it happened), `fail` (it certainly did not happen) or `info` (its
//! outcome is unknown: it may or may not have happened, at any time after its invoke).
//! A process has at most one operation open; after an `info` the worker continues as a
//! new process, as in Jepsen, because the old one may still be in flight.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What happened to an operation (or that it began).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The operation was sent.
    Invoke,
    /// It completed: a write happened, a read saw `value`.
    Ok,
    /// It certainly had no effect.
    Fail,
    /// Its outcome is unknown.
    Info,
}

/// The operation of a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    /// Reads the key's value (`null` = not found).
    Read,
    /// Writes a value no other write of the run writes.
    Write,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The logical client (see the module docs).
    pub process: u64,
    /// Invoke or a completion.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Read or write.
    pub f: Function,
    /// The register.
    pub key: String,
    /// A write's value; a read's result in its `ok` (null in its invoke, or not found).
    pub value: Option<i64>,
    /// Nanoseconds since the run began (one monotonic clock for every process).
    pub time_ns: u64,
    /// The agent the request was sent to (1-based host index), when one was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u16>,
    /// How it was sent: `client` (routing client, straight to the primary) or `http`
    /// (any agent, which forwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Why a completion is `fail` or `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Writes `events` to `path`, one JSON object per line.
pub fn write(path: &Path, events: &[Event]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for event in events {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Reads a history written by [`write`] (or by hand, in the same shape).
pub fn read(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut events = Vec::new();
    for (n, line) in file.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
        events.push(event);
    }
    Ok(events)
}
