//! `netsim <scenario> --nodes N --partitions P --seed S [--json] [--svg FILE]`: runs one
//! scenario and prints a short report; with `--json` the last line is one JSON object.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use netsim::scenario::{self, Params, Scenario};

#[derive(Parser)]
#[command(about = "Deterministic simulation of the control plane in virtual time")]
struct Cli {
    #[command(subcommand)]
    scenario: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Agents start; gossip convergence time and steady gossip traffic.
    Bootstrap(Common),
    /// Tables are created through the log and placed: time until all ACTIVE, replicas and
    /// primaries per node.
    Provision(Provision),
    /// One node, then five, then a zone crash: detection, reroute and propagation times.
    Crash(Common),
    /// Datagram loss on every link for a long period: false positives.
    Lossy(Lossy),
    /// Ten nodes join: replica moves against the optimum, time until balanced.
    ScaleOut(Common),
    /// A minority holding one voter is cut off, then healed: the majority commits, cut-off
    /// primaries stop serving before new ones start.
    Partition(Common),
    /// Random crashes, pauses, partitions and loss for a while, then complete healing.
    Soak(Soak),
    /// One partition gets 10 times its load: time to split it and move a child.
    HotSplit(Common),
}

#[derive(Args)]
struct Common {
    /// Agents.
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Partitions in all (spread over tables of 100).
    #[arg(long, default_value_t = 500)]
    partitions: usize,
    /// Seed of every random choice; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object of the figures as the last line.
    #[arg(long)]
    json: bool,
    /// Write a picture of node states over virtual time (SVG).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write the event trace (one line per event, virtual time first).
    #[arg(long)]
    trace: Option<PathBuf>,
}

#[derive(Args)]
struct Provision {
    #[command(flatten)]
    common: Common,
    /// Tables created (at most one per partition).
    #[arg(long, default_value_t = scenario::DEFAULT_TABLES)]
    tables: usize,
}

#[derive(Args)]
struct Soak {
    #[command(flatten)]
    common: Common,
    /// Virtual seconds of faults.
    #[arg(long, default_value_t = scenario::DEFAULT_SOAK_S)]
    duration: u64,
}

#[derive(Args)]
struct Lossy {
    #[command(flatten)]
    common: Common,
    /// Share of datagrams lost on every link.
    #[arg(long, default_value_t = scenario::DEFAULT_LOSS)]
    loss: f64,
    /// Virtual seconds of loss.
    #[arg(long, default_value_t = scenario::DEFAULT_LOSS_DURATION_S)]
    duration: u64,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let mut tables = None;
    let (which, common, loss, duration) = match cli.scenario {
        Command::Bootstrap(c) => (Scenario::Bootstrap, c, None, None),
        Command::Provision(p) => {
            tables = Some(p.tables);
            (Scenario::Provision, p.common, None, None)
        }
        Command::Crash(c) => (Scenario::Crash, c, None, None),
        Command::Lossy(l) => (Scenario::Lossy, l.common, Some(l.loss), Some(l.duration)),
        Command::ScaleOut(c) => (Scenario::ScaleOut, c, None, None),
        Command::Partition(c) => (Scenario::Partition, c, None, None),
        Command::Soak(s) => (Scenario::Soak, s.common, None, Some(s.duration)),
        Command::HotSplit(c) => (Scenario::HotSplit, c, None, None),
    };
    let mut params = Params::new(common.nodes, common.partitions, common.seed);
    if let Some(loss) = loss {
        params.loss = loss;
    }
    if let Some(duration) = duration {
        params.duration_s = duration;
    }
    if let Some(tables) = tables {
        params.tables = tables;
    }
    params.svg = common.svg.clone();
    params.trace = common.trace.clone();
    let report = scenario::run(which, &params).context("running the scenario")?;
    println!(
        "netsim {} — {} nodes, {} partitions, seed {}",
        which.name(),
        params.nodes,
        params.partitions,
        params.seed
    );
    for line in &report.lines {
        println!("  {line}");
    }
    println!(
        "  {} events, {:.0} virtual s in {:.1} wall s ({:.1} virtual s per wall s), trace {:016x}",
        report.events,
        report.virtual_us as f64 / 1e6,
        report.wall_secs,
        report.virtual_us as f64 / 1e6 / report.wall_secs.max(1e-9),
        report.trace_hash
    );
    if let Some(path) = &params.svg {
        netsim::plot::write_svg(&report, path).context("writing the picture")?;
        println!("  picture: {}", path.display());
    }
    let passed = report.passed();
    if !passed {
        eprint!("{}", report.failure_text());
    }
    if common.json {
        println!("{}", report.json());
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
