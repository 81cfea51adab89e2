//! Errors of the simulator library.

/// Why a run could not be made or did not keep its promises.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The starting cluster could not be built (a planner or the state machine refused).
    #[error("cluster setup failed: {0}")]
    Setup(String),
    /// The scenario's parameters make no sense.
    #[error("bad scenario parameters: {0}")]
    BadParameters(String),
    /// A picture could not be drawn or written.
    #[error("plot failed: {0}")]
    Plot(String),
}
