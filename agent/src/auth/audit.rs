//! The audit log: every control-plane mutation this agent served, with who asked, what,
//! when and the result. Each entry is a structured log line (tracing target `audit`)
//! and is kept in a bounded in-memory ring for `GET /audit?since=`.

use std::collections::VecDeque;
use std::sync::Mutex;

use shared::api::auth::AuditEntry;
use shared::api::format_millis;
use shared::model::NodeId;

/// Principal recorded for a request that did not authenticate.
pub const ANONYMOUS: &str = "anonymous";

/// This agent's audit log.
pub struct AuditLog {
    node_id: NodeId,
    capacity: usize,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    next_seq: u64,
    entries: VecDeque<AuditEntry>,
}

impl AuditLog {
    /// A log keeping the last `capacity` entries.
    pub fn new(node_id: NodeId, capacity: usize) -> Self {
        AuditLog {
            node_id,
            capacity,
            ring: Mutex::new(Ring::default()),
        }
    }

    /// Records one mutation and logs it.
    pub fn record(&self, at_ms: u64, principal: &str, method: &str, path: &str, status: u16) {
        tracing::info!(
            target: "audit",
            principal,
            method,
            path,
            status,
            "control-plane mutation"
        );
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.entries.len() == self.capacity {
            ring.entries.pop_front();
        }
        ring.entries.push_back(AuditEntry {
            seq,
            at_ms,
            at: format_millis(at_ms),
            principal: principal.to_string(),
            method: method.to_string(),
            path: path.to_string(),
            status,
            node_id: self.node_id,
        });
    }

    /// Entries recorded at or after `since_ms`, oldest first, at most `limit`.
    pub fn since(&self, since_ms: u64, limit: usize) -> Vec<AuditEntry> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.entries
            .iter()
            .filter(|e| e.at_ms >= since_ms)
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_entries_in_order() {
        let log = AuditLog::new(4, 2);
        log.record(10, "a", "POST", "/tables", 201);
        log.record(20, "b", "DELETE", "/tables/t", 403);
        log.record(30, ANONYMOUS, "PUT", "/x", 401);
        let all = log.since(0, 10);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].seq, all[1].seq), (1, 2));
        assert_eq!(all[1].principal, ANONYMOUS);
        assert_eq!(log.since(25, 10).len(), 1);
        assert_eq!(log.since(0, 1).len(), 1);
        assert_eq!(all[0].node_id, 4);
    }
}
