//! Helpers shared by the agent benchmarks.

use std::time::{Duration, Instant};

/// Give up on any one wait after this long.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `f` every `poll` until it returns `Some`; panics with `what` after [`WAIT`].
#[allow(dead_code)] // Not every benchmark waits for anything.
pub fn wait_for<T>(what: &str, poll: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(poll);
    }
}

/// The value of `--name N` on the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}
