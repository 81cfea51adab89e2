//! Linearizability of the register workload, one key at a time, plus a simpler count of
//! stale and phantom reads.
//!
//! Semantics are Jepsen's: an `ok` operation happened (a read saw its `value`, `null` =
//! not found, the register's initial state), a `fail` one certainly did not (dropped), an
//! `info` one may or may not have happened. A read of unknown outcome constrains nothing
//! and is dropped; a write of unknown outcome may take effect at any point after its
//! invoke, or never, so its completion is +infinity. An invoke still open at the end of the
//! history is treated like `info`.
//!
//! Keys are independent registers, so each is checked on its own (P-compositionality) by
//! Wing & Gong's search with Lowe's memoization, iterative, under a budget of explored
//! states: a key that exhausts it is [`Verdict::Unknown`], never a silent pass. Two
//! reductions rely on written values being unique (which [`operations`] enforces): unknown
//! writes nobody read are dropped (see `prune`), and a write may not overwrite a value some
//! read has yet to see (see `Search::unread`). With them a key of thousands of operations
//! from 16 concurrent processes takes milliseconds when it passes and about 100 explored
//! states per operation when it fails. Each explored state is cached: budget memory at
//! roughly 100 bytes per state.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::history::{Event, EventType, Function};

#[cfg(test)]
mod tests;

/// An invoke paired with its completion (operations that failed are not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The logical client.
    pub process: u64,
    /// Read or write.
    pub f: Function,
    /// The register.
    pub key: String,
    /// A write's value, or what a read saw (`None` = not found).
    pub value: Option<i64>,
    /// When it was invoked (ns since the run began).
    pub invoke_ns: u64,
    /// When it completed; `None` for a write of unknown outcome (+infinity).
    pub complete_ns: Option<u64>,
}

/// Why a history cannot be paired into operations. `index` is the event's 0-based position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// A completion while its process has no open invoke.
    #[error("event {index}: completion of process {process} without an open invoke")]
    Unmatched {
        /// The completion.
        index: usize,
        /// Its process.
        process: u64,
    },
    /// An invoke while the same process has one open.
    #[error("event {index}: process {process} invokes while its invoke at event {open} is open")]
    DoubleInvoke {
        /// The second invoke.
        index: usize,
        /// Its process.
        process: u64,
        /// The invoke still open.
        open: usize,
    },
    /// A completion whose function or key differs from its invoke's.
    #[error(
        "event {index}: completion of process {process} does not match its invoke at event {invoke}"
    )]
    Mismatch {
        /// The completion.
        index: usize,
        /// Its process.
        process: u64,
        /// The invoke.
        invoke: usize,
    },
    /// A completion timed before its invoke.
    #[error("event {index}: completion of process {process} is timed before its invoke")]
    CompletionBeforeInvoke {
        /// The completion.
        index: usize,
        /// Its process.
        process: u64,
    },
    /// A write invoke with no value.
    #[error("event {index}: write of key {key:?} without a value")]
    WriteWithoutValue {
        /// The invoke.
        index: usize,
        /// Its key.
        key: String,
    },
    /// Two writes of one key with the same value (values must be unique per run).
    #[error("events {first} and {second}: value {value} written twice to key {key:?}")]
    DuplicateWrite {
        /// The key.
        key: String,
        /// The value.
        value: i64,
        /// The first write's invoke.
        first: usize,
        /// The second write's invoke.
        second: usize,
    },
}

/// The outcome of checking one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Verdict {
    /// Some order of the operations, consistent with real time, is a legal register history.
    Linearizable,
    /// None is.
    NotLinearizable {
        /// The deepest point the search reached and the operations it could not place.
        explanation: String,
    },
    /// The budget ran out first: neither pass nor fail.
    Unknown {
        /// States explored.
        explored: u64,
    },
}

/// The verdict of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVerdict {
    /// The register.
    pub key: String,
    /// Its operations (fail and unknown-outcome reads excluded).
    pub operations: usize,
    /// The outcome.
    pub verdict: Verdict,
}

/// An ok read that real time proves stale: it saw `value` although `newer` was written
/// after `value`'s write completed and before the read was invoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleRead {
    /// The register.
    pub key: String,
    /// The reader.
    pub process: u64,
    /// The read's invoke.
    pub invoke_ns: u64,
    /// The read's completion.
    pub complete_ns: u64,
    /// What it saw (`None` = not found, although a write had completed).
    pub value: Option<i64>,
    /// A value whose write real time places between `value`'s write and the read.
    pub newer: i64,
}

/// An ok read of a value no write of its key ever invoked: always a violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhantomRead {
    /// The register.
    pub key: String,
    /// The reader.
    pub process: u64,
    /// The read's invoke.
    pub invoke_ns: u64,
    /// The value it saw.
    pub value: i64,
}

/// The register check of a whole history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReport {
    /// One verdict per key, in key order.
    pub keys: Vec<KeyVerdict>,
    /// Keys checked.
    pub keys_checked: usize,
    /// Operations over all keys.
    pub operations: usize,
    /// Keys found not linearizable.
    pub not_linearizable: usize,
    /// Keys whose search ran out of budget.
    pub unknown: usize,
    /// Reads real time alone proves stale (each also makes its key not linearizable).
    pub stale_reads: Vec<StaleRead>,
    /// Reads of values never written.
    pub phantom_reads: Vec<PhantomRead>,
}

impl RegisterReport {
    /// `Some(false)` if a key is not linearizable, `None` if none is but some key is
    /// unknown, `Some(true)` only if every key is linearizable.
    pub fn linearizable(&self) -> Option<bool> {
        if self.not_linearizable > 0 || !self.phantom_reads.is_empty() {
            Some(false)
        } else if self.unknown > 0 {
            None
        } else {
            Some(true)
        }
    }
}

/// Pairs invokes with completions: the operations to check, in invoke-event order.
pub fn operations(history: &[Event]) -> Result<Vec<Operation>, HistoryError> {
    Ok(pair(history)?.ops)
}

/// Checks every key of `history` (at most `budget` explored states per key) and counts
/// stale and phantom reads.
pub fn check(history: &[Event], budget: u64) -> Result<RegisterReport, HistoryError> {
    let Paired { ops, written } = pair(history)?;
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in &ops {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    let (keys_checked, operations) = (by_key.len(), ops.len());
    let mut report = RegisterReport {
        keys_checked,
        operations,
        ..RegisterReport::default()
    };
    let none = HashSet::new();
    for (key, ops) in by_key {
        let verdict = check_key(&ops, budget);
        match verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { .. } => report.not_linearizable += 1,
            Verdict::Unknown { .. } => report.unknown += 1,
        }
        let written = written.get(key).unwrap_or(&none);
        read_anomalies(&ops, written, &mut report);
        let (key, operations) = (key.to_owned(), ops.len());
        report.keys.push(KeyVerdict {
            key,
            operations,
            verdict,
        });
    }
    Ok(report)
}

/// Checks the operations of one key as one register (the `key` field is not looked at),
/// exploring at most `budget` states. Reads without a completion are ignored; a
/// completion timed before its invoke is taken as happening at the invoke.
pub fn check_key(ops: &[Operation], budget: u64) -> Verdict {
    Search::new(prune(ops)).run(budget)
}

// ---------------------------------------------------------------------------------------
// Pairing.

struct Paired {
    ops: Vec<Operation>,
    /// Values some write of the key invoked, failed ones included: reading one is no
    /// phantom (though reading a failed one is still not linearizable).
    written: HashMap<String, HashSet<i64>>,
}

#[derive(Default)]
struct Pairing {
    /// One slot per invoke, emptied when the operation is dropped.
    slots: Vec<Option<Operation>>,
    /// Per process: its open invoke's event index and slot.
    open: HashMap<u64, (usize, usize)>,
    /// Per key: value -> event index of the write invoking it.
    written: HashMap<String, HashMap<i64, usize>>,
}

fn pair(history: &[Event]) -> Result<Paired, HistoryError> {
    let mut pairing = Pairing::default();
    for (index, event) in history.iter().enumerate() {
        match event.kind {
            EventType::Invoke => pairing.invoke(index, event)?,
            _ => pairing.complete(index, event)?,
        }
    }
    // Still open at the end: like info, so reads go and writes stay of unknown outcome.
    for (_, slot) in pairing.open.into_values() {
        if pairing.slots[slot]
            .as_ref()
            .is_some_and(|op| op.f == Function::Read)
        {
            pairing.slots[slot] = None;
        }
    }
    let written = pairing
        .written
        .into_iter()
        .map(|(key, values)| (key, values.into_keys().collect()))
        .collect();
    Ok(Paired {
        ops: pairing.slots.into_iter().flatten().collect(),
        written,
    })
}

impl Pairing {
    fn invoke(&mut self, index: usize, event: &Event) -> Result<(), HistoryError> {
        let process = event.process;
        if let Some(&(open, _)) = self.open.get(&process) {
            return Err(HistoryError::DoubleInvoke {
                index,
                process,
                open,
            });
        }
        let mut value = None;
        if event.f == Function::Write {
            let key = event.key.clone();
            let Some(v) = event.value else {
                return Err(HistoryError::WriteWithoutValue { index, key });
            };
            let values = self.written.entry(key.clone()).or_default();
            if let Some(&first) = values.get(&v) {
                return Err(HistoryError::DuplicateWrite {
                    key,
                    value: v,
                    first,
                    second: index,
                });
            }
            values.insert(v, index);
            value = Some(v);
        }
        self.open.insert(process, (index, self.slots.len()));
        self.slots.push(Some(Operation {
            process,
            f: event.f,
            key: event.key.clone(),
            value,
            invoke_ns: event.time_ns,
            complete_ns: None,
        }));
        Ok(())
    }

    fn complete(&mut self, index: usize, event: &Event) -> Result<(), HistoryError> {
        let process = event.process;
        let Some((invoke, slot)) = self.open.remove(&process) else {
            return Err(HistoryError::Unmatched { index, process });
        };
        let Some(op) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return Err(HistoryError::Unmatched { index, process });
        };
        if op.f != event.f || op.key != event.key {
            return Err(HistoryError::Mismatch {
                index,
                process,
                invoke,
            });
        }
        if event.time_ns < op.invoke_ns {
            return Err(HistoryError::CompletionBeforeInvoke { index, process });
        }
        match (event.kind, op.f) {
            (EventType::Ok, Function::Read) => {
                op.value = event.value;
                op.complete_ns = Some(event.time_ns);
            }
            (EventType::Ok, Function::Write) => op.complete_ns = Some(event.time_ns),
            // Unknown outcome: it may take effect at any time after its invoke, or never.
            (EventType::Info, Function::Write) => {}
            // Failed, or a read whose result we never saw: constrains nothing.
            _ => self.slots[slot] = None,
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Stale and phantom reads.

fn read_anomalies(ops: &[Operation], written: &HashSet<i64>, report: &mut RegisterReport) {
    let acked = |op: &&Operation| op.f == Function::Write && op.complete_ns.is_some();
    let writes: HashMap<i64, &Operation> = ops
        .iter()
        .filter(acked)
        .filter_map(|op| Some((op.value?, op)))
        .collect();
    // Acknowledged writes by completion; `latest[i]` is, of the first i+1, the one
    // invoked last (invoke, value): the newest write a read invoked after them must see.
    let mut done: Vec<(u64, u64, i64)> = writes
        .values()
        .filter_map(|w| Some((w.complete_ns?, w.invoke_ns, w.value?)))
        .collect();
    done.sort_unstable();
    let latest: Vec<(u64, i64)> = done
        .iter()
        .scan((0, 0), |max, &(_, invoke, value)| {
            if invoke >= max.0 {
                *max = (invoke, value);
            }
            Some(*max)
        })
        .collect();
    for read in ops.iter().filter(|op| op.f == Function::Read) {
        let Some(complete_ns) = read.complete_ns else {
            continue;
        };
        let before = done.partition_point(|w| w.0 < read.invoke_ns);
        let newest = before.checked_sub(1).map(|i| latest[i]);
        let stale = |newer| StaleRead {
            key: read.key.clone(),
            process: read.process,
            invoke_ns: read.invoke_ns,
            complete_ns,
            value: read.value,
            newer,
        };
        match (read.value, newest) {
            (Some(value), _) if !written.contains(&value) => {
                report.phantom_reads.push(PhantomRead {
                    key: read.key.clone(),
                    process: read.process,
                    invoke_ns: read.invoke_ns,
                    value,
                })
            }
            (None, Some((_, newer))) => report.stale_reads.push(stale(newer)),
            (Some(value), Some((invoked, newer))) => {
                // Only an acknowledged write of `value` has a completion to order by.
                let seen_done = writes.get(&value).and_then(|w| w.complete_ns);
                if seen_done.is_some_and(|c| invoked > c) {
                    report.stale_reads.push(stale(newer));
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// The search.

/// The register: the last value written, `None` before any write.
type State = Option<i64>;

/// The register's sequential specification: the state after `op`, if `op` is legal.
fn step(state: State, op: &Operation) -> Option<State> {
    match op.f {
        Function::Write => Some(op.value),
        Function::Read => (op.value == state).then_some(state),
    }
}

/// The operations worth searching, by invoke time.
///
/// A write of unknown outcome whose value no ok read returned is dropped: it changes
/// nothing. If the rest linearizes, so does the whole, with that write last (its
/// completion is +infinity, so real time never forces anything after it) or never. If the
/// whole linearizes, deleting the write leaves a linearization of the rest: no read sees
/// its value, so the op after it is a write (or nothing), and the register states every
/// read sees are unchanged. Without this, every timed-out write would stay pending to the
/// end of the history and blow up the search.
fn prune(ops: &[Operation]) -> Vec<&Operation> {
    let is_read = |op: &Operation| op.f == Function::Read;
    let seen: HashSet<i64> = ops
        .iter()
        .filter(|op| is_read(op) && op.complete_ns.is_some())
        .filter_map(|op| op.value)
        .collect();
    let mut kept: Vec<&Operation> = ops
        .iter()
        .filter(|op| {
            let observed = op.value.is_some_and(|v| seen.contains(&v));
            op.complete_ns.is_some() || (!is_read(op) && observed)
        })
        .collect();
    kept.sort_by_key(|op| op.invoke_ns);
    kept
}

/// The list head's entry index, and "no entry".
const HEAD: usize = 0;
const NIL: usize = usize::MAX;

/// The WGL search: a doubly linked list of call and return entries in time order (entry 0
/// is the head), from which linearized operations are lifted, and the search state.
struct Search<'a> {
    ops: Vec<&'a Operation>,
    /// Per entry: its operation, whether it is the call, and for a call its return entry.
    op_of: Vec<usize>,
    is_call: Vec<bool>,
    return_of: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per value: reads of it not yet linearized. With unique values a write may not
    /// overwrite a value still to be read: it could never come back. This prunes wrong
    /// guesses at once instead of after exploring everything they allow.
    unread: HashMap<State, usize>,
    /// Whether written values are unique (else the pruning above is off).
    unique: bool,
    linearized: Bits,
    cache: HashSet<CacheKey>,
    /// The linearized calls, each with the state before it.
    stack: Vec<(usize, State)>,
    state: State,
    explored: u64,
    best: Best,
}

impl<'a> Search<'a> {
    fn new(ops: Vec<&'a Operation>) -> Self {
        // Sort key (infinite, time, is_return, op). At equal times the call comes first,
        // so operations that share a boundary overlap: ties are treated as concurrent,
        // which can only make the check more permissive, never report a false violation.
        let mut entries = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            entries.push((false, op.invoke_ns, false, i));
            let done = op.complete_ns.map(|c| c.max(op.invoke_ns));
            entries.push((done.is_none(), done.unwrap_or(u64::MAX), true, i));
        }
        entries.sort_unstable();
        let len = entries.len() + 1;
        // The initial None counts as written: a write of None (never in a history) is no
        // unique value.
        let (mut unread, mut values) = (HashMap::new(), HashSet::from([None]));
        let mut unique = true;
        for op in &ops {
            match op.f {
                Function::Read => *unread.entry(op.value).or_default() += 1,
                Function::Write => unique &= values.insert(op.value),
            }
        }
        let mut search = Search {
            op_of: vec![0; len],
            is_call: vec![false; len],
            return_of: vec![NIL; len],
            next: (1..=len).map(|i| if i < len { i } else { NIL }).collect(),
            prev: (0..len).map(|i| i.checked_sub(1).unwrap_or(NIL)).collect(),
            unread,
            unique,
            linearized: Bits::new(ops.len()),
            cache: HashSet::new(),
            stack: Vec::new(),
            state: None,
            explored: 0,
            best: Best::default(),
            ops,
        };
        let mut call_of = vec![HEAD; search.ops.len()];
        for (k, &(_, _, is_return, op)) in entries.iter().enumerate() {
            let entry = k + 1;
            search.op_of[entry] = op;
            search.is_call[entry] = !is_return;
            if is_return {
                search.return_of[call_of[op]] = entry;
            } else {
                call_of[op] = entry;
            }
        }
        search
    }

    /// Wing & Gong's search with Lowe's cache of (linearized set, state), iterative.
    fn run(mut self, budget: u64) -> Verdict {
        // A non-empty list ends with a return, so scans stop at a return before NIL.
        let mut entry = self.next[HEAD];
        while entry != NIL {
            if self.is_call[entry] {
                if self.linearize(entry) {
                    if self.explored > budget {
                        return Verdict::Unknown {
                            explored: self.explored,
                        };
                    }
                    entry = self.next[HEAD];
                } else {
                    entry = self.next[entry];
                }
                continue;
            }
            // The earliest pending return is +infinity: every acknowledged operation is
            // linearized, and the unknown writes left may never have happened.
            if self.ops[self.op_of[entry]].complete_ns.is_none() {
                return Verdict::Linearizable;
            }
            // This op must be linearized by now, and no pending op could be: backtrack.
            if self.stack.len() == self.best.depth && self.best.stuck.is_empty() {
                self.best.stuck = self.pending_before(entry);
                self.best.pinned = self.pinning_read();
            }
            let Some((call, previous)) = self.stack.pop() else {
                return self.best.verdict(&self.ops);
            };
            self.undo(call, previous);
            entry = self.next[call];
        }
        Verdict::Linearizable
    }

    /// Linearizes the call `entry` next if that is legal and leads to a new state.
    fn linearize(&mut self, entry: usize) -> bool {
        let op = self.op_of[entry];
        let pinned = self.unique && self.unread.get(&self.state).is_some_and(|&n| n > 0);
        if self.ops[op].f == Function::Write && pinned {
            return false;
        }
        let Some(next) = step(self.state, self.ops[op]) else {
            return false;
        };
        self.linearized.set(op);
        if !self.cache.insert(self.linearized.key(next)) {
            self.linearized.clear(op);
            return false;
        }
        self.explored += 1;
        self.stack.push((entry, self.state));
        self.state = next;
        self.count_read(op, false);
        self.lift(entry);
        let calls = self.stack.iter().map(|&(call, _)| self.op_of[call]);
        self.best.reached(self.stack.len(), calls, next);
        true
    }

    /// Takes back the last linearized call.
    fn undo(&mut self, call: usize, previous: State) {
        let op = self.op_of[call];
        self.state = previous;
        self.linearized.clear(op);
        self.count_read(op, true);
        self.unlift(call);
    }

    fn count_read(&mut self, op: usize, unread: bool) {
        let op = self.ops[op];
        if op.f == Function::Read
            && let Some(n) = self.unread.get_mut(&op.value)
        {
            *n = if unread { *n + 1 } else { n.saturating_sub(1) };
        }
    }

    /// Unlinks a call and its return.
    fn lift(&mut self, call: usize) {
        for entry in [call, self.return_of[call]] {
            let (prev, next) = (self.prev[entry], self.next[entry]);
            self.next[prev] = next;
            if next != NIL {
                self.prev[next] = prev;
            }
        }
    }

    /// Relinks what [`Search::lift`] unlinked (lifts are undone last-in first-out).
    fn unlift(&mut self, call: usize) {
        for entry in [self.return_of[call], call] {
            let (prev, next) = (self.prev[entry], self.next[entry]);
            self.next[prev] = entry;
            if next != NIL {
                self.prev[next] = entry;
            }
        }
    }

    /// A read not yet linearized that must see the current state, if writes are pinned.
    fn pinning_read(&self) -> Option<usize> {
        let unread = |(i, op): &(usize, &&Operation)| {
            op.f == Function::Read && op.value == self.state && !self.linearized.get(*i)
        };
        self.unique
            .then(|| self.ops.iter().enumerate().find(unread).map(|(i, _)| i))?
    }

    /// The operations whose calls precede `until` in the list: the candidates to go next.
    fn pending_before(&self, until: usize) -> Vec<usize> {
        let mut pending = Vec::new();
        let mut entry = self.next[HEAD];
        while entry != until && entry != NIL {
            if self.is_call[entry] {
                pending.push(self.op_of[entry]);
            }
            entry = self.next[entry];
        }
        pending
    }
}

/// The set of linearized operations (bit i = the i-th by invoke time).
struct Bits(Vec<u64>);

/// A [`Bits`] in compact form (see [`Bits::key`]) with the register state.
type CacheKey = (usize, Box<[u64]>, State);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    /// Equal for equal sets, and small: the search linearizes roughly in invoke order, so
    /// the set is mostly a prefix of ones. Words before `start` are all ones and words
    /// after the slice all zeros.
    fn key(&self, state: State) -> CacheKey {
        let words = &self.0;
        let start = words
            .iter()
            .position(|&w| w != u64::MAX)
            .unwrap_or(words.len());
        let end = words.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1);
        (start, words[start..end.max(start)].into(), state)
    }
}

/// What the explanation of a failure shows: the deepest linearized prefix and the ops
/// none of which could follow it.
#[derive(Default)]
struct Best {
    depth: usize,
    /// The prefix's last few operations.
    tail: Vec<usize>,
    state: State,
    stuck: Vec<usize>,
    /// A read still to see `state`, which keeps writes from going next.
    pinned: Option<usize>,
}

impl Best {
    /// Records the linearized `ops` (`depth` of them) if they are the deepest yet.
    fn reached(&mut self, depth: usize, ops: impl Iterator<Item = usize>, state: State) {
        if depth > self.depth {
            self.depth = depth;
            self.tail = ops.skip(depth.saturating_sub(3)).collect();
            self.state = state;
            self.stuck.clear();
            self.pinned = None;
        }
    }

    fn verdict(&self, ops: &[&Operation]) -> Verdict {
        let list = |ids: &[usize]| {
            let shown: Vec<String> = ids.iter().take(4).map(|&i| describe(ops[i])).collect();
            match ids.len().saturating_sub(4) {
                0 => shown.join("; "),
                more => format!("{} and {more} more", shown.join("; ")),
            }
        };
        let prefix = match self.depth {
            0 => "no operation linearized".to_owned(),
            d => format!(
                "{d} of {} linearized (last: {})",
                ops.len(),
                list(&self.tail)
            ),
        };
        let pinned = self.pinned.map_or_else(String::new, |read| {
            format!(" (which {} must still see)", describe(ops[read]))
        });
        let (state, stuck) = (show(self.state), list(&self.stuck));
        let explanation =
            format!("{prefix}, register {state}{pinned}; none of these can go next: {stuck}");
        Verdict::NotLinearizable { explanation }
    }
}

fn show(value: Option<i64>) -> String {
    value.map_or_else(|| "nil".to_owned(), |v| v.to_string())
}

fn seconds(ns: u64) -> String {
    format!("{}.{:06}s", ns / 1_000_000_000, ns % 1_000_000_000 / 1000)
}

/// `p3 read 5 [1.000000s, 1.000200s]`, with `?` for an unknown completion.
fn describe(op: &Operation) -> String {
    let f = match op.f {
        Function::Read => "read",
        Function::Write => "write",
    };
    let done = op.complete_ns.map_or_else(|| "?".to_owned(), seconds);
    let (p, v, at) = (op.process, show(op.value), seconds(op.invoke_ns));
    format!("p{p} {f} {v} [{at}, {done}]")
}
