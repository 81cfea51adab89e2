//! The workload: register clients recording every operation, and a control-plane
//! driver running live operations at the same time.

pub mod control;
pub mod registers;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::history::{Event, EventType, Function};

/// The run's one clock and its records, shared by every worker.
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
    /// Write-once keys whose write was acknowledged (read back now and then).
    unique: Mutex<Vec<String>>,
    next_value: AtomicU64,
    stop: AtomicBool,
}

impl Recorder {
    /// A recorder whose time 0 is now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            events: Mutex::default(),
            unique: Mutex::default(),
            next_value: AtomicU64::new(1),
            stop: AtomicBool::new(false),
        }
    }

    /// Nanoseconds since the run began.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// When the run began.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// A value no other write of the run writes.
    pub fn unique_value(&self) -> i64 {
        self.next_value.fetch_add(1, Ordering::Relaxed) as i64
    }

    /// Appends an event stamped now and returns its time.
    pub fn record(&self, mut event: Event) -> u64 {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        // Stamped under the lock, so the file's order is the order of time.
        event.time_ns = self.now_ns();
        let time = event.time_ns;
        events.push(event);
        time
    }

    /// Notes that the write of write-once `key` was acknowledged.
    pub fn note_unique(&self, key: String) {
        self.unique
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(key);
    }

    /// A random acknowledged write-once key, if any.
    pub fn acknowledged_unique(&self, rng: &mut impl rand::Rng) -> Option<String> {
        let keys = self.unique.lock().unwrap_or_else(|e| e.into_inner());
        (!keys.is_empty()).then(|| keys[rand::RngExt::random_range(rng, 0..keys.len())].clone())
    }

    /// Asks every worker to finish its current operation and stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether workers should stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Lets workers run again (for the final reads).
    pub fn resume(&self) {
        self.stop.store(false, Ordering::SeqCst);
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// One operation in flight: recorded at invoke, completed exactly once.
pub struct Op<'a> {
    recorder: &'a Recorder,
    template: Event,
}

impl<'a> Op<'a> {
    /// Records the invoke of `f` on `key` by `process`.
    pub fn invoke(
        recorder: &'a Recorder,
        process: u64,
        f: Function,
        key: &str,
        value: Option<i64>,
        node: Option<u16>,
        via: &str,
    ) -> Op<'a> {
        let template = Event {
            process,
            kind: EventType::Invoke,
            f,
            key: key.to_string(),
            value,
            time_ns: 0,
            node,
            via: Some(via.to_string()),
            error: None,
        };
        recorder.record(template.clone());
        Op { recorder, template }
    }

    /// Records the completion; a read's `ok` carries what it saw. Returns the time.
    pub fn complete(self, kind: EventType, read: Option<i64>, error: Option<String>) -> u64 {
        let mut event = self.template;
        event.kind = kind;
        if event.f == Function::Read {
            event.value = read;
        }
        event.error = error;
        self.recorder.record(event)
    }
}
