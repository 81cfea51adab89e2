//! Checks of a run: each is a function of recorded facts, tested on known-good and
//! known-bad inputs.

pub mod register;
pub mod storage;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::{Event, EventType, Function};
use crate::workload::registers::{FINAL_VIA, UNIQUE_PREFIX};

/// Acknowledged write-once items against the final reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostReport {
    /// Write-once items whose write was acknowledged.
    pub acknowledged: usize,
    /// Acknowledged, and the final read did not find that value: (key, value).
    pub lost: Vec<(String, i64)>,
    /// Acknowledged, but the final read of the key failed: not verified.
    pub unverified: Vec<String>,
    /// Writes with an unknown outcome that the final read found.
    pub unknown_present: usize,
}

/// Every acknowledged write of a write-once key must be what its final read finds.
pub fn lost_writes(history: &[Event]) -> LostReport {
    let mut written: BTreeMap<&str, (i64, EventType)> = BTreeMap::new();
    let mut open: BTreeMap<u64, &Event> = BTreeMap::new();
    let mut last_final: BTreeMap<&str, Option<Option<i64>>> = BTreeMap::new();
    for e in history {
        if e.kind == EventType::Invoke {
            open.insert(e.process, e);
            continue;
        }
        let Some(invoke) = open.remove(&e.process) else {
            continue;
        };
        let unique = invoke.key.starts_with(UNIQUE_PREFIX);
        match invoke.f {
            Function::Write if unique => {
                if let Some(v) = invoke.value {
                    written.insert(&invoke.key, (v, e.kind));
                }
            }
            Function::Read if unique && e.via.as_deref() == Some(FINAL_VIA) => {
                let seen = (e.kind == EventType::Ok).then_some(e.value);
                last_final.insert(&invoke.key, seen);
            }
            _ => {}
        }
    }
    let mut report = LostReport::default();
    for (key, (value, kind)) in written {
        let found = last_final.get(key).copied().flatten();
        match kind {
            EventType::Ok => {
                report.acknowledged += 1;
                match found {
                    Some(seen) if seen == Some(value) => {}
                    Some(_) => report.lost.push((key.to_string(), value)),
                    None => report.unverified.push(key.to_string()),
                }
            }
            EventType::Info if found == Some(Some(value)) => report.unknown_present += 1,
            _ => {}
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(process: u64, kind: EventType, f: Function, key: &str, value: Option<i64>) -> Event {
        Event {
            process,
            kind,
            f,
            key: key.into(),
            value,
            time_ns: 0,
            node: None,
            via: None,
            error: None,
        }
    }

    fn final_read(process: u64, key: &str, seen: Option<i64>, kind: EventType) -> [Event; 2] {
        let mut invoke = event(process, EventType::Invoke, Function::Read, key, None);
        invoke.via = Some(FINAL_VIA.into());
        let mut done = event(process, kind, Function::Read, key, seen);
        done.via = Some(FINAL_VIA.into());
        [invoke, done]
    }

    fn write(process: u64, key: &str, value: i64, kind: EventType) -> [Event; 2] {
        [
            event(
                process,
                EventType::Invoke,
                Function::Write,
                key,
                Some(value),
            ),
            event(process, kind, Function::Write, key, Some(value)),
        ]
    }

    #[test]
    fn acknowledged_writes_found_at_the_end_are_not_lost() {
        let mut h = Vec::new();
        h.extend(write(1, "u1", 1, EventType::Ok));
        h.extend(write(2, "u2", 2, EventType::Info));
        h.extend(final_read(9, "u1", Some(1), EventType::Ok));
        h.extend(final_read(9, "u2", Some(2), EventType::Ok));
        let r = lost_writes(&h);
        assert_eq!(r.acknowledged, 1);
        assert!(r.lost.is_empty() && r.unverified.is_empty());
        assert_eq!(r.unknown_present, 1);
    }

    #[test]
    fn an_acknowledged_write_missing_at_the_end_is_lost() {
        let mut h = Vec::new();
        h.extend(write(1, "u1", 1, EventType::Ok));
        h.extend(write(1, "u3", 3, EventType::Ok));
        h.extend(final_read(9, "u1", None, EventType::Ok));
        h.extend(final_read(9, "u3", None, EventType::Fail));
        let r = lost_writes(&h);
        assert_eq!(r.lost, vec![("u1".to_string(), 1)]);
        assert_eq!(r.unverified, vec!["u3".to_string()]);
    }

    #[test]
    fn failed_writes_and_register_keys_are_not_counted() {
        let mut h = Vec::new();
        h.extend(write(1, "u1", 1, EventType::Fail));
        h.extend(write(1, "r1", 2, EventType::Ok));
        h.extend(final_read(9, "u1", None, EventType::Ok));
        assert_eq!(lost_writes(&h), LostReport::default());
    }
}
