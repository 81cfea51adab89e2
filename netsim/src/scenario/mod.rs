//! Scenarios: a cluster, a script of faults, the figures measured, and the promises
//! checked. Each is a test and a subcommand; a failing run prints its seed and the
//! command that replays it.

mod bootstrap;
mod crash;
mod hot_split;
mod lossy;
mod partition;
mod provision;
mod scale_out;
mod soak;

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::config::SimConfig;
use crate::error::SimError;
use crate::invariants::Violation;
use crate::observe::StateSample;
use crate::sim::Simulation;
use crate::stats::round;
use crate::time::{Micros, secs};
use crate::trace::Trace;

pub use lossy::{DEFAULT_DURATION_S as DEFAULT_LOSS_DURATION_S, DEFAULT_LOSS};
pub use provision::DEFAULT_TABLES;
pub use soak::DEFAULT_SOAK_S;

/// Virtual time every scenario gives the cluster to form before its faults.
pub const WARM_UP_US: Micros = secs(10);
/// How often scenarios check whether what they wait for happened.
pub const POLL_US: Micros = crate::time::millis(100);

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Agents start and gossip converges.
    Bootstrap,
    /// Tables are created and placed until every one is ACTIVE.
    Provision,
    /// One node, then five, then a zone crash.
    Crash,
    /// Datagram loss on every link, no crash.
    Lossy,
    /// Ten nodes join; the cluster is rebalanced.
    ScaleOut,
    /// A minority with one voter is cut off, then healed.
    Partition,
    /// Random faults for a while, then complete healing.
    Soak,
    /// One partition gets 10 times its load: split, and its busier child moved.
    HotSplit,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 8] = [
        Scenario::Bootstrap,
        Scenario::Provision,
        Scenario::Crash,
        Scenario::Lossy,
        Scenario::ScaleOut,
        Scenario::Partition,
        Scenario::Soak,
        Scenario::HotSplit,
    ];

    /// Its subcommand name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Bootstrap => "bootstrap",
            Scenario::Provision => "provision",
            Scenario::Crash => "crash",
            Scenario::Lossy => "lossy",
            Scenario::ScaleOut => "scale-out",
            Scenario::Partition => "partition",
            Scenario::Soak => "soak",
            Scenario::HotSplit => "hot-split",
        }
    }
}

/// What a scenario is run with.
#[derive(Debug, Clone)]
pub struct Params {
    /// Agents.
    pub nodes: usize,
    /// Partitions in all.
    pub partitions: usize,
    /// The seed.
    pub seed: u64,
    /// Datagram loss (`lossy`).
    pub loss: f64,
    /// Virtual seconds of the scenario's main phase (`lossy`: the lossy period; `soak`:
    /// the faults).
    pub duration_s: u64,
    /// Tables to create (`provision`; at most one per partition).
    pub tables: usize,
    /// Write a picture of the timeline here.
    pub svg: Option<PathBuf>,
    /// Write the event trace here.
    pub trace: Option<PathBuf>,
}

impl Params {
    /// `nodes`, `partitions` and `seed` with every other parameter at its default.
    pub fn new(nodes: usize, partitions: usize, seed: u64) -> Self {
        Params {
            nodes,
            partitions,
            seed,
            loss: lossy::DEFAULT_LOSS,
            duration_s: lossy::DEFAULT_DURATION_S,
            tables: provision::DEFAULT_TABLES,
            svg: None,
            trace: None,
        }
    }
}

/// What a run measured and whether it kept its promises.
#[derive(Debug, Clone)]
pub struct Report {
    /// Scenario run.
    pub scenario: Scenario,
    /// With what.
    pub params: Params,
    /// Short human report.
    pub lines: Vec<String>,
    /// Figures (snake_case keys, units last).
    pub figures: Map<String, Value>,
    /// Broken invariants (the first ones).
    pub violations: Vec<Violation>,
    /// Broken invariants, all counted.
    pub violation_count: usize,
    /// What the scenario expected and did not see (e.g. a crash never detected).
    pub problems: Vec<String>,
    /// Hash of the event trace.
    pub trace_hash: u64,
    /// Events handled.
    pub events: u64,
    /// Virtual time simulated.
    pub virtual_us: Micros,
    /// Wall time taken.
    pub wall_secs: f64,
    /// Node states over time (for the picture).
    pub timeline: Vec<StateSample>,
    /// Instants worth marking on the picture.
    pub marks: Vec<(Micros, String)>,
}

impl Report {
    /// Whether every promise was kept.
    pub fn passed(&self) -> bool {
        self.violation_count == 0 && self.problems.is_empty()
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let p = &self.params;
        let mut cmd = format!(
            "cargo run --release -p netsim -- {} --nodes {} --partitions {} --seed {}",
            self.scenario.name(),
            p.nodes,
            p.partitions,
            p.seed
        );
        match self.scenario {
            Scenario::Lossy => {
                cmd.push_str(&format!(" --loss {} --duration {}", p.loss, p.duration_s))
            }
            Scenario::Soak => cmd.push_str(&format!(" --duration {}", p.duration_s)),
            Scenario::Provision => cmd.push_str(&format!(" --tables {}", p.tables)),
            _ => {}
        }
        cmd
    }

    /// Why the run failed, with its seed and the replay command.
    pub fn failure_text(&self) -> String {
        let mut text = format!(
            "netsim {} failed (seed {}): {} invariant violations, problems {:?}\n",
            self.scenario.name(),
            self.params.seed,
            self.violation_count,
            self.problems
        );
        for v in &self.violations {
            text.push_str(&format!(
                "  at {} ms: {}: {}\n",
                v.at_us / 1000,
                v.property,
                v.detail
            ));
        }
        text.push_str(&format!("replay: {}\n", self.replay_command()));
        text
    }

    /// The JSON object of the report (figures plus the run's identity).
    pub fn json(&self) -> Value {
        let mut object = self.figures.clone();
        let speed = self.virtual_us as f64 / 1e6 / self.wall_secs.max(1e-9);
        let entries: [(&str, Value); 10] = [
            ("scenario", self.scenario.name().into()),
            ("nodes", self.params.nodes.into()),
            ("partitions", self.params.partitions.into()),
            ("seed", self.params.seed.into()),
            ("invariant_violations", self.violation_count.into()),
            ("passed", self.passed().into()),
            ("trace_hash", format!("{:016x}", self.trace_hash).into()),
            ("events", self.events.into()),
            ("virtual_s", round(self.virtual_us as f64 / 1e6).into()),
            ("speed_virtual_s_per_wall_s", round(speed).into()),
        ];
        for (k, v) in entries {
            object.insert(k.to_string(), v);
        }
        object.insert("wall_s".into(), round(self.wall_secs).into());
        Value::Object(object)
    }
}

/// Runs `scenario` with `params`. A panic inside the run (a broken assertion in the
/// state machine, say) prints the seed and replay command before it goes on.
pub fn run(scenario: Scenario, params: &Params) -> Result<Report, SimError> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut run = match scenario {
            Scenario::Provision => Run::with_config(params, provision::config(params))?,
            _ => Run::new(params)?,
        };
        let outcome = match scenario {
            Scenario::Bootstrap => bootstrap::run(&mut run),
            Scenario::Provision => provision::run(&mut run),
            Scenario::Crash => crash::run(&mut run),
            Scenario::Lossy => lossy::run(&mut run),
            Scenario::ScaleOut => scale_out::run(&mut run),
            Scenario::Partition => partition::run(&mut run),
            Scenario::Soak => soak::run(&mut run),
            Scenario::HotSplit => hot_split::run(&mut run),
        };
        Ok(run.finish(scenario, outcome))
    }));
    match result {
        Ok(report) => report,
        Err(panic) => {
            eprintln!(
                "netsim {} panicked (seed {}); replay: cargo run --release -p netsim -- {} \
                 --nodes {} --partitions {} --seed {}",
                scenario.name(),
                params.seed,
                scenario.name(),
                params.nodes,
                params.partitions,
                params.seed
            );
            std::panic::resume_unwind(panic)
        }
    }
}

/// What a scenario hands back to the runner.
#[derive(Default)]
pub(crate) struct Outcome {
    lines: Vec<String>,
    figures: Map<String, Value>,
    problems: Vec<String>,
    marks: Vec<(Micros, String)>,
}

impl Outcome {
    fn line(&mut self, line: String) {
        self.lines.push(line);
    }

    fn figure(&mut self, key: &str, value: impl Into<Value>) {
        self.figures.insert(key.to_string(), value.into());
    }

    fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    fn mark(&mut self, at: Micros, label: &str) {
        self.marks.push((at, label.to_string()));
    }
}

/// A simulation being run for a scenario.
pub(crate) struct Run {
    sim: Simulation,
    params: Params,
    started: Instant,
}

impl Run {
    fn new(params: &Params) -> Result<Self, SimError> {
        Self::with_config(
            params,
            SimConfig::new(params.seed, params.nodes, params.partitions),
        )
    }

    fn with_config(params: &Params, cfg: SimConfig) -> Result<Self, SimError> {
        let out: Option<Box<dyn std::io::Write + Send>> = match &params.trace {
            Some(path) => {
                let file = File::create(path)
                    .map_err(|e| SimError::BadParameters(format!("{}: {e}", path.display())))?;
                Some(Box::new(BufWriter::new(file)))
            }
            None => None,
        };
        let mut sim = Simulation::new(cfg, Trace::new(out))?;
        sim.start();
        Ok(Run {
            sim,
            params: params.clone(),
            // Wall time is only reported (simulator speed); the run never reads it.
            started: Instant::now(),
        })
    }

    fn finish(self, scenario: Scenario, outcome: Outcome) -> Report {
        let sim = &self.sim;
        Report {
            scenario,
            params: self.params,
            lines: outcome.lines,
            figures: outcome.figures,
            violations: sim.invariants().violations().to_vec(),
            violation_count: sim.invariants().count(),
            problems: outcome.problems,
            trace_hash: sim.trace().hash(),
            events: sim.trace().events(),
            virtual_us: sim.now(),
            wall_secs: self.started.elapsed().as_secs_f64(),
            timeline: sim.observer().timeline.clone(),
            marks: outcome.marks,
        }
    }
}
