//! Group commit for the Raft log: appends are committed to redb without waiting for the
//! disk (so the leader can replicate them at once, in parallel with its own fsync), and
//! one background thread makes them durable with a single fsync per batch before
//! acknowledging each append to openraft.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use openraft::storage::LogFlushed;
use redb::Database;

use super::types::{TypeConfig, begin_durable_write};

/// Appends waiting for their flush, at most this many acknowledged per fsync (bounds the
/// time one batch holds its callbacks).
pub const FLUSH_BATCH_MAX: usize = 1024;

/// The background flusher of one log store.
pub struct Flusher {
    tx: Option<Sender<LogFlushed<TypeConfig>>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the flusher thread for `db`.
    pub fn start(db: Arc<Database>) -> std::io::Result<Self> {
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop(&db, &rx))?;
        Ok(Flusher {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Acknowledges `callback` once everything committed before this call is durable.
    pub fn flush_then(&self, callback: LogFlushed<TypeConfig>) {
        let sent = self.tx.as_ref().map(|tx| tx.send(callback));
        if let Some(Err(std::sync::mpsc::SendError(callback))) = sent {
            callback.log_io_completed(Err(std::io::Error::other("log flusher stopped")));
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Closing the channel ends the loop after it acknowledged what was queued.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn flush_loop(db: &Database, rx: &Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < FLUSH_BATCH_MAX {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let result = durable_barrier(db);
        for callback in batch {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.clone())),
            };
            callback.log_io_completed(outcome);
        }
    }
}

/// An empty durable commit: redb then persists every earlier non-durable commit.
fn durable_barrier(db: &Database) -> Result<(), String> {
    let txn = begin_durable_write(db).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())
}
