use super::*;
use crate::history;
use EventType::{Fail, Info, Invoke, Ok};
use Function::{Read, Write};
use proptest::prelude::*;

const BUDGET: u64 = 1_000_000;

fn ev(process: u64, kind: EventType, f: Function, value: Option<i64>) -> Event {
    Event {
        process,
        kind,
        f,
        key: "k".to_owned(),
        value,
        time_ns: 0,
        node: None,
        via: None,
        error: None,
    }
}

fn wi(p: u64, v: i64) -> Event {
    ev(p, Invoke, Write, Some(v))
}
fn w(p: u64, kind: EventType, v: i64) -> Event {
    ev(p, kind, Write, Some(v))
}
fn ri(p: u64) -> Event {
    ev(p, Invoke, Read, None)
}
fn ro(p: u64, v: Option<i64>) -> Event {
    ev(p, Ok, Read, v)
}

/// Times the events 10 ns apart, in the order given.
fn timed(mut events: Vec<Event>) -> Vec<Event> {
    for (i, e) in events.iter_mut().enumerate() {
        e.time_ns = 10 * i as u64;
    }
    events
}

fn report(events: Vec<Event>) -> RegisterReport {
    check(&timed(events), BUDGET).expect("well-formed")
}

fn verdict(events: Vec<Event>) -> Verdict {
    report(events).keys.remove(0).verdict
}

fn assert_bad(events: Vec<Event>) -> RegisterReport {
    let report = report(events);
    assert!(
        matches!(report.keys[0].verdict, Verdict::NotLinearizable { .. }),
        "{report:?}"
    );
    assert_eq!(
        (report.not_linearizable, report.linearizable()),
        (1, Some(false))
    );
    report
}

#[test]
fn sequential_writes_and_reads() {
    let r = report(vec![
        ri(1),
        ro(1, None),
        wi(1, 1),
        w(1, Ok, 1),
        ri(2),
        ro(2, Some(1)),
        wi(2, 2),
        w(2, Ok, 2),
        ri(1),
        ro(1, Some(2)),
    ]);
    assert_eq!(r.linearizable(), Some(true));
    assert_eq!((r.keys_checked, r.operations), (1, 5));
    assert!(r.stale_reads.is_empty() && r.phantom_reads.is_empty());
}

#[test]
fn concurrent_read_sees_old_or_new() {
    for seen in [None, Some(1)] {
        let v = verdict(vec![wi(1, 1), ri(2), ro(2, seen), w(1, Ok, 1)]);
        assert_eq!(v, Verdict::Linearizable);
    }
}

#[test]
fn unknown_write_observed_later_or_never() {
    let observed = vec![
        wi(1, 5),
        w(1, Info, 5),
        ri(2),
        ro(2, None),
        ri(2),
        ro(2, Some(5)),
    ];
    assert_eq!(verdict(observed), Verdict::Linearizable);
    let never = vec![
        wi(1, 5),
        w(1, Info, 5),
        ri(2),
        ro(2, None),
        wi(3, 6),
        w(3, Ok, 6),
    ];
    assert_eq!(verdict(never.clone()), Verdict::Linearizable);
    // Pending at the end of the history: the same as info.
    assert_eq!(
        verdict(vec![wi(1, 5), ri(2), ro(2, Some(5))]),
        Verdict::Linearizable
    );
    // Pruned: the unobserved write is no operation to search, yet it still counts.
    assert_eq!(report(never).operations, 3);
}

#[test]
fn write_read_cycles() {
    let mut events = Vec::new();
    for v in 1..=50 {
        let p = v as u64 % 3;
        events.extend([wi(p, v), w(p, Ok, v), ri(p + 1), ro(p + 1, Some(v))]);
    }
    assert_eq!(verdict(events), Verdict::Linearizable);
}

#[test]
fn stale_read_is_caught() {
    let r = assert_bad(vec![
        wi(1, 1),
        w(1, Ok, 1),
        wi(1, 2),
        w(1, Ok, 2),
        ri(2),
        ro(2, Some(1)),
    ]);
    assert_eq!(r.stale_reads.len(), 1);
    assert_eq!(
        (r.stale_reads[0].value, r.stale_reads[0].newer),
        (Some(1), 2)
    );
    let Verdict::NotLinearizable { explanation } = &r.keys[0].verdict else {
        unreachable!()
    };
    assert!(explanation.contains("p2 read 1"), "{explanation}");
}

#[test]
fn phantom_read_is_caught() {
    let r = assert_bad(vec![wi(1, 1), w(1, Ok, 1), ri(2), ro(2, Some(42))]);
    assert_eq!(r.phantom_reads.len(), 1);
    assert_eq!(r.phantom_reads[0].value, 42);
}

#[test]
fn reads_in_reverse_order_of_writes() {
    // w1 < w2 by real time; w2 is still running while r(2) then r(1) complete in order.
    let r = assert_bad(vec![
        wi(1, 1),
        w(1, Ok, 1),
        wi(1, 2),
        ri(2),
        ro(2, Some(2)),
        ri(3),
        ro(3, Some(1)),
        w(1, Ok, 2),
    ]);
    // Real time alone does not prove either read stale: only the search catches this.
    assert!(r.stale_reads.is_empty());
}

#[test]
fn lost_acknowledged_write() {
    let r = assert_bad(vec![wi(1, 1), w(1, Ok, 1), ri(2), ro(2, None)]);
    assert_eq!((r.stale_reads.len(), r.stale_reads[0].newer), (1, 1));
}

#[test]
fn failed_write_observed() {
    let r = assert_bad(vec![wi(1, 7), w(1, Fail, 7), ri(2), ro(2, Some(7))]);
    // It was invoked, so no phantom; the search alone rules it out.
    assert!(r.phantom_reads.is_empty() && r.stale_reads.is_empty());
}

#[test]
fn keys_are_independent() {
    let mut other = vec![wi(3, 1), w(3, Ok, 1), ri(3), ro(3, None)];
    for e in &mut other {
        e.key = "z".to_owned();
    }
    let mut events = vec![wi(1, 1), w(1, Ok, 1), ri(2), ro(2, Some(1))];
    events.extend(other);
    let r = report(events);
    assert_eq!((r.keys_checked, r.not_linearizable), (2, 1));
    assert_eq!(r.keys[0].verdict, Verdict::Linearizable);
    assert_eq!(r.keys[1].key, "z");
}

#[test]
fn malformed_histories_are_errors() {
    let err = |events: Vec<Event>| operations(&timed(events)).unwrap_err();
    assert!(matches!(
        err(vec![ro(1, None)]),
        HistoryError::Unmatched {
            index: 0,
            process: 1
        }
    ));
    assert!(matches!(
        err(vec![ri(1), ri(1)]),
        HistoryError::DoubleInvoke {
            index: 1,
            open: 0,
            ..
        }
    ));
    assert!(matches!(
        err(vec![ri(1), w(1, Ok, 1)]),
        HistoryError::Mismatch { index: 1, .. }
    ));
    let mut other_key = ro(1, None);
    other_key.key = "b".to_owned();
    assert!(matches!(
        err(vec![ri(1), other_key]),
        HistoryError::Mismatch { .. }
    ));
    let no_value = ev(1, Invoke, Write, None);
    assert!(matches!(
        err(vec![no_value]),
        HistoryError::WriteWithoutValue { index: 0, .. }
    ));
    let twice = vec![wi(1, 3), w(1, Fail, 3), wi(1, 3)];
    assert!(matches!(
        err(twice),
        HistoryError::DuplicateWrite {
            value: 3,
            first: 0,
            second: 2,
            ..
        }
    ));
    let mut backwards = timed(vec![ri(1), ro(1, None)]);
    backwards[1].time_ns = 0;
    backwards[0].time_ns = 5;
    let e = operations(&backwards).unwrap_err();
    assert!(matches!(
        e,
        HistoryError::CompletionBeforeInvoke { index: 1, .. }
    ));
    assert!(check(&backwards, BUDGET).is_err());
}

#[test]
fn budget_exhaustion_is_unknown() {
    let events = vec![
        wi(1, 1),
        w(1, Ok, 1),
        wi(1, 2),
        w(1, Ok, 2),
        ri(1),
        ro(1, Some(2)),
    ];
    let r = check(&timed(events), 1).unwrap();
    assert_eq!(r.keys[0].verdict, Verdict::Unknown { explored: 2 });
    assert_eq!(
        (r.unknown, r.not_linearizable, r.linearizable()),
        (1, 0, None)
    );
}

#[test]
fn equal_timestamps_are_concurrent() {
    // The read is invoked at the instant the write completes: it may precede it.
    let mut events = timed(vec![wi(1, 1), w(1, Ok, 1), ri(2), ro(2, None)]);
    events[2].time_ns = events[1].time_ns;
    assert_eq!(check(&events, BUDGET).unwrap().linearizable(), Some(true));
}

#[test]
fn history_file_round_trip() {
    let events = timed(vec![
        wi(1, 1),
        w(1, Info, 1),
        ri(2),
        ro(2, Some(1)),
        ri(2),
        ro(2, None),
    ]);
    let path = std::env::temp_dir().join(format!("register-{}.jsonl", std::process::id()));
    history::write(&path, &events).unwrap();
    let back = history::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(back, events);
    let r = check(&back, BUDGET).unwrap();
    assert_eq!(r.linearizable(), Some(false));
    assert_eq!(
        r.stale_reads.len(),
        0,
        "the write of 1 has no known completion"
    );
}

/// A tiny deterministic generator (xorshift), so the tests need no `rand`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A linearizable history of one register: 16 processes, each op taking effect at a
/// random point of its interval; some writes time out (info), and some of those never
/// take effect. Ends with a quiet write then a read of it, or if `stale` of the first
/// acknowledged write's value.
fn simulated(ops: usize, stale: bool) -> Vec<Event> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut clock = [0u64; 16];
    let mut pid: Vec<u64> = (0..16).collect();
    // (effect time, index into `events` of the read's completion or usize::MAX, value)
    let (mut effects, mut events) = (Vec::new(), Vec::new());
    for n in 0..ops as i64 {
        let slot = rng.below(16) as usize;
        let start = clock[slot] + 1 + rng.below(100);
        let end = start + 1 + {
            let long = rng.below(20) == 0;
            rng.below(if long { 5_000 } else { 300 })
        };
        clock[slot] = end;
        let effect = start + rng.below(end - start + 1);
        let (p, write) = (pid[slot], rng.below(2) == 0);
        let kind = if rng.below(30) == 0 { Info } else { Ok };
        let f = if write { Write } else { Read };
        let value = write.then_some(n + 1);
        let took = kind == Ok || rng.below(2) == 0;
        if took {
            effects.push((
                effect,
                if write { usize::MAX } else { events.len() + 1 },
                value,
            ));
        }
        events.push(Event {
            time_ns: start,
            ..ev(p, Invoke, f, value)
        });
        events.push(Event {
            time_ns: end,
            ..ev(p, kind, f, value)
        });
        if kind == Info {
            pid[slot] = 100 + n as u64;
        }
    }
    effects.sort_by_key(|e| e.0);
    let mut register = None;
    for (_, read, value) in effects {
        match read {
            usize::MAX => register = value,
            read if events[read].kind == Ok => events[read].value = register,
            _ => {}
        }
    }
    events.sort_by_key(|e| (e.time_ns, e.kind != Invoke));
    let t = clock.iter().max().copied().unwrap_or(0) + 10_000;
    let last = ops as i64 + 1;
    let first = events
        .iter()
        .find(|e| e.f == Write && e.kind == Ok)
        .and_then(|e| e.value);
    let seen = if stale { first } else { Some(last) };
    events.extend([wi(999, last), w(999, Ok, last), ri(999), ro(999, seen)]);
    for (i, e) in events.iter_mut().rev().take(4).enumerate() {
        e.time_ns = t + 100 - 10 * i as u64;
    }
    events
}

#[test]
fn long_concurrent_histories() {
    let good = check(&simulated(3000, false), BUDGET).unwrap();
    assert_eq!(good.linearizable(), Some(true), "{good:?}");
    // The same history, then a read that misses the last, quiet write.
    let stale = check(&simulated(3000, true), BUDGET).unwrap();
    assert_eq!(stale.linearizable(), Some(false), "{:?}", stale.keys);
    assert_eq!(stale.stale_reads.len(), 1);
    // A read in the middle that sees a write invoked only after it completed: no
    // counter notices, and the search must exhaust the history up to that read first.
    let mut future = simulated(3000, false);
    let read = (future.len() / 2..future.len())
        .find(|&i| future[i].f == Read && future[i].kind == Ok)
        .unwrap();
    let write = (read..future.len())
        .find(|&i| future[i].f == Write && future[i].kind == Invoke)
        .unwrap();
    future[read].value = future[write].value;
    let future = check(&future, BUDGET).unwrap();
    assert_eq!(future.linearizable(), Some(false), "{:?}", future.keys);
    assert!(future.stale_reads.is_empty() && future.phantom_reads.is_empty());
    let Verdict::NotLinearizable { explanation } = &future.keys[0].verdict else {
        unreachable!()
    };
    println!("{explanation}");
}

/// Brute force: some subset of the unknown writes, in some order consistent with real
/// time, is a legal register history.
fn brute_force(ops: &[Operation]) -> bool {
    let (sure, unsure): (Vec<&Operation>, Vec<&Operation>) =
        ops.iter().partition(|op| op.complete_ns.is_some());
    (0..1u32 << unsure.len()).any(|mask| {
        let mut chosen = sure.clone();
        chosen.extend(
            unsure
                .iter()
                .enumerate()
                .filter(|(i, _)| mask >> i & 1 == 1)
                .map(|(_, op)| *op),
        );
        orders(&chosen, &mut vec![false; chosen.len()], None)
    })
}

fn orders(ops: &[&Operation], placed: &mut Vec<bool>, state: State) -> bool {
    if placed.iter().all(|&p| p) {
        return true;
    }
    let precedes = |a: &Operation, b: &Operation| a.complete_ns.is_some_and(|c| c < b.invoke_ns);
    (0..ops.len()).any(|i| {
        let free = !placed[i] && (0..ops.len()).all(|j| placed[j] || !precedes(ops[j], ops[i]));
        let Some(next) = step(state, ops[i]).filter(|_| free) else {
            return false;
        };
        placed[i] = true;
        let found = orders(ops, placed, next);
        placed[i] = false;
        found
    })
}

/// Random histories of one key: `procs` processes, at most 7 operations, completions ok,
/// info or fail, reads seeing None, a written value or one never written; some events
/// share a timestamp.
fn random_history(procs: usize, actions: &[(usize, bool, usize, u8, bool)]) -> Vec<Event> {
    let mut open: Vec<Option<(Function, Option<i64>)>> = vec![None; procs];
    let mut pid: Vec<u64> = (0..procs as u64).collect();
    let (mut events, mut written, mut invoked, mut time) = (Vec::new(), 0, 0, 0);
    for &(slot, write, pick, outcome, tick) in actions {
        let slot = slot % procs;
        time += if tick { 10 } else { 0 };
        let event = match open[slot] {
            None if invoked < 7 => {
                invoked += 1;
                written += i64::from(write);
                let (f, value) = if write {
                    (Write, Some(written))
                } else {
                    (Read, None)
                };
                open[slot] = Some((f, value));
                ev(pid[slot], Invoke, f, value)
            }
            None => continue,
            Some((f, value)) => {
                let kind = [Ok, Ok, Ok, Ok, Ok, Info, Info, Fail][outcome as usize % 8];
                let pick = (pick % (written as usize + 2)) as i64;
                let seen = (pick > 0).then_some(if pick > written { 99 } else { pick });
                open[slot] = None;
                let (p, value) = (pid[slot], if f == Read { seen } else { value });
                if kind == Info {
                    pid[slot] += 10;
                }
                ev(p, kind, f, value)
            }
        };
        events.push(Event {
            time_ns: time,
            ..event
        });
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn search_agrees_with_brute_force(
        procs in 2usize..=3,
        actions in proptest::collection::vec((0usize..3, any::<bool>(), 0usize..8, any::<u8>(), any::<bool>()), 4..28),
    ) {
        let events = random_history(procs, &actions);
        let ops = operations(&events).unwrap();
        let expected = brute_force(&ops);
        let verdict = check_key(&ops, BUDGET);
        prop_assert!(!matches!(verdict, Verdict::Unknown { .. }), "unknown");
        prop_assert_eq!(verdict == Verdict::Linearizable, expected, "{:?}\n{:?}", ops, verdict);
        // Stale and phantom reads are violations the search must see too.
        let report = check(&events, BUDGET).unwrap();
        if !report.stale_reads.is_empty() || !report.phantom_reads.is_empty() {
            prop_assert_eq!(report.not_linearizable, 1);
        }
    }
}
