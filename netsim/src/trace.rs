//! The event trace of a run: every event the loop handles is folded into a hash (same
//! seed, same hash), and optionally written out as text lines with their virtual time
//! so two runs can be diffed.

use std::fmt::{self, Write as _};
use std::io::Write;

use xxhash_rust::xxh3::Xxh3;

use crate::time::Micros;

/// Events kept in memory as text, at most (the newest are kept), for failure reports.
pub const TAIL_LINES_MAX: usize = 64;

/// The run's trace.
pub struct Trace {
    hasher: Xxh3,
    events: u64,
    out: Option<Box<dyn Write + Send>>,
    tail: std::collections::VecDeque<String>,
    line: String,
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new(None)
    }
}

impl Trace {
    /// A trace, also written line by line to `out` when given.
    pub fn new(out: Option<Box<dyn Write + Send>>) -> Self {
        Trace {
            hasher: Xxh3::new(),
            events: 0,
            out,
            tail: std::collections::VecDeque::with_capacity(TAIL_LINES_MAX),
            line: String::new(),
        }
    }

    /// Records one event: its time, a short description and its payload bytes (hashed,
    /// not written).
    pub fn record(&mut self, at: Micros, what: fmt::Arguments<'_>, payload: &[u8]) {
        self.events += 1;
        self.line.clear();
        // Writing to a String cannot fail.
        let _ = write!(self.line, "{:>12.3} {}", at as f64 / 1_000.0, what);
        self.hasher.update(self.line.as_bytes());
        self.hasher.update(payload);
        if let Some(out) = self.out.as_mut() {
            // A broken trace file must not change the run: the hash is the contract.
            let _ = writeln!(out, "{}", self.line);
        }
        if self.tail.len() == TAIL_LINES_MAX {
            self.tail.pop_front();
        }
        self.tail.push_back(self.line.clone());
    }

    /// Hash of every event so far.
    pub fn hash(&self) -> u64 {
        self.hasher.digest()
    }

    /// Events recorded.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The newest events, oldest first.
    pub fn tail(&self) -> impl Iterator<Item = &str> {
        self.tail.iter().map(String::as_str)
    }
}
