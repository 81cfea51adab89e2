//! The testbed: real `agent run` processes, one per network namespace on a bridge of the
//! testbed's own, driven by a recorded workload while a seeded nemesis injects faults,
//! and checked afterwards. See `testbed/README.md`.

#![warn(missing_docs)]

pub mod check;
pub mod heal;
pub mod history;
pub mod hosts;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod run;
pub mod workload;
