//! netsim's CI set: short seeded runs of every scenario that fail on any broken
//! invariant, the replay contract (same seed, same trace), and fault mixes driven
//! through the library. Each failure prints its seed and replay command.

mod determinism;
mod faults;
mod scenarios;
