//! `testbed`: real agents in network namespaces under a seeded nemesis, with a recorded
//! workload and a checker. See `testbed/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use testbed::history;
use testbed::nemesis::FaultKind;
use testbed::run::{RunConfig, catch_interrupts, run, write_outputs};

#[derive(Parser)]
#[command(
    name = "testbed",
    about = "Runs real agents, one per network namespace on a private bridge \
             (198.18.0.0/24), under a seeded nemesis while clients read and write \
             registers and a driver runs live operations; then checks the history \
             (linearizability, lost writes), the stored items (misrouting), the metadata \
             replicas, revocations and healing. Needs root, iproute2 and nftables; \
             libfaketime for clock faults."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a cluster under faults and checks it; exits non-zero when a check fails.
    Run(Box<RunArgs>),
    /// Checks a recorded history.jsonl again (linearizability, stale reads, lost writes).
    Check {
        /// The history file.
        history: PathBuf,
        /// Explored states per key before the linearizability search gives up.
        #[arg(long, default_value_t = DEFAULT_BUDGET)]
        search_budget: u64,
    },
    /// Lists every partition copy in agents' data directories (e.g. the `data-kept`
    /// copies a failed run leaves): host, log position and key count, per partition.
    Storage {
        /// Data directories, one per host, in host order (`h1/data-kept h2/data-kept ...`).
        dirs: Vec<PathBuf>,
    },
    /// Writes a run's report.md and report.svg again from its result.json and
    /// history.jsonl (after the report itself changed); the verdict is the recorded one.
    Report {
        /// The run's output folder.
        dir: PathBuf,
    },
    /// Removes namespaces and mounts an earlier run left behind (after a kill -9).
    Clean {
        /// Namespace prefix of that run.
        #[arg(long, default_value = "tb")]
        prefix: String,
        /// Unmount only the data disks under this output folder (default: every data
        /// disk any testbed run mounted).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Explored states per key before the linearizability search answers "unknown".
const DEFAULT_BUDGET: u64 = 5_000_000;

#[derive(clap::Args)]
struct RunArgs {
    /// Agents that form the cluster (3 to 200; one more joins mid-run with --join).
    #[arg(long, default_value_t = 5)]
    hosts: u16,
    /// Seed of every choice: faults, targets, timing, workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long faults are injected (e.g. 60s, 30m); healing and checks come after.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Fault kinds, comma-separated, or `all`, or `none` (a fault-free baseline).
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Shortest fault.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    fault_min: Duration,
    /// Longest fault.
    #[arg(long, default_value = "12s", value_parser = humantime::parse_duration)]
    fault_max: Duration,
    /// Quiet time between two faults.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    gap: Duration,
    /// How long the cluster may take to heal after the last fault.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    heal_timeout: Duration,
    /// Register clients (half through the routing client, half through HTTP).
    #[arg(long, default_value_t = 6)]
    clients: u64,
    /// Register keys.
    #[arg(long, default_value_t = 12)]
    keys: usize,
    /// Pause between one client's operations.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    think: Duration,
    /// Pause between control-plane actions (splits, moves, tables, policies...).
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    control_period: Duration,
    /// No host joins mid-run.
    #[arg(long)]
    no_join: bool,
    /// No host is drained mid-run.
    #[arg(long)]
    no_drain: bool,
    /// Size of each host's data disk (a tmpfs), MiB.
    #[arg(long, default_value_t = 256)]
    disk_mib: u64,
    /// Output folder (default target/testbed/<seed>-<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Prefix of the run's network namespaces (runs at once need different ones).
    #[arg(long, default_value = "tb")]
    prefix: String,
    /// The agent binary (default: `agent` next to this binary).
    #[arg(long)]
    agent_binary: Option<PathBuf>,
    /// Explored states per key before the linearizability search gives up.
    #[arg(long, default_value_t = DEFAULT_BUDGET)]
    search_budget: u64,
    /// The agents' log filter (`RUST_LOG`, e.g. `info,agent=debug`; default: the
    /// agent's own).
    #[arg(long)]
    agent_log: Option<String>,
}

fn parse_kinds(text: &str) -> anyhow::Result<Vec<FaultKind>> {
    use clap::ValueEnum;
    match text {
        "all" => Ok(FaultKind::ALL.to_vec()),
        "none" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|k| {
                FaultKind::from_str(k.trim(), true)
                    .map_err(|_| anyhow::anyhow!("unknown fault kind {k:?}; see --help"))
            })
            .collect(),
    }
}

fn run_command(args: RunArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "the testbed makes network namespaces and mounts: run it as root"
    );
    anyhow::ensure!(
        args.fault_min <= args.fault_max,
        "--fault-min above --fault-max"
    );
    let kinds = parse_kinds(&args.nemesis)?;
    let out = args.out.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from(format!("target/testbed/{}-{now}", args.seed))
    });
    let out = std::path::absolute(out)?;
    let agent_binary = match args.agent_binary {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("agent"),
    };
    anyhow::ensure!(
        agent_binary.exists(),
        "no agent binary at {} (build it, or pass --agent-binary)",
        agent_binary.display()
    );
    let config = RunConfig {
        hosts: args.hosts,
        seed: args.seed,
        duration: args.duration,
        kinds,
        fault_min: args.fault_min,
        fault_max: args.fault_max,
        gap: args.gap,
        heal_timeout: args.heal_timeout,
        clients: args.clients.max(1),
        keys: args.keys.max(1),
        think: args.think,
        control_period: args.control_period,
        join: !args.no_join,
        drain: !args.no_drain,
        disk_mib: args.disk_mib,
        out: out.clone(),
        prefix: args.prefix,
        agent_binary,
        agent_log: args.agent_log,
        search_budget: args.search_budget,
    };
    catch_interrupts();
    let (result, events) = run(config)?;
    write_outputs(&out, &result, &events)?;
    println!("report: {}", out.join("report.md").display());
    for failure in &result.failures {
        println!("FAILED: {failure}");
    }
    Ok(result.failures.is_empty())
}

fn check_command(path: &std::path::Path, budget: u64) -> anyhow::Result<bool> {
    let events = history::read(path)?;
    let report = testbed::check::register::check(&events, budget)?;
    let lost = testbed::check::lost_writes(&events);
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("{}", serde_json::to_string_pretty(&lost)?);
    Ok(report.not_linearizable == 0
        && report.unknown == 0
        && report.stale_reads.is_empty()
        && report.phantom_reads.is_empty()
        && lost.lost.is_empty())
}

fn report_command(dir: &std::path::Path) -> anyhow::Result<bool> {
    let path = dir.join("result.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let result: testbed::run::RunResult = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a run's result: {e}", path.display()))?;
    let events = history::read(&dir.join("history.jsonl"))?;
    testbed::report::write(dir, &result, &events)?;
    println!("report: {}", dir.join("report.md").display());
    Ok(result.failures.is_empty())
}

fn storage_command(dirs: &[PathBuf]) -> anyhow::Result<bool> {
    let hosts: Vec<(u16, &std::path::Path)> =
        (1u16..).zip(dirs.iter().map(PathBuf::as_path)).collect();
    let (copies, unreadable) = testbed::check::storage::inventory(&hosts);
    for (pid, copies) in copies {
        let listed: Vec<String> = copies
            .iter()
            .map(|c| {
                let (lsn, epoch) = c.position;
                let range = match (c.hashes.first(), c.hashes.last()) {
                    (Some(low), Some(high)) => format!(" in {low:#018x}..={high:#018x}"),
                    _ => String::new(),
                };
                format!(
                    "h{}: {} keys{range} at {lsn}@{epoch}",
                    c.host,
                    c.hashes.len()
                )
            })
            .collect();
        println!("partition {pid}: {}", listed.join(", "));
    }
    for (host, why) in &unreadable {
        println!("h{host}: unreadable: {why}");
    }
    Ok(unreadable.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => run_command(*args),
        Command::Check {
            history,
            search_budget,
        } => check_command(&history, search_budget),
        Command::Storage { dirs } => storage_command(&dirs),
        Command::Report { dir } => report_command(&dir),
        Command::Clean { prefix, out } => {
            testbed::net::remove_leftovers(&prefix).and_then(|removed| {
                let root = match out {
                    Some(out) => std::path::absolute(out)?,
                    None => PathBuf::from("/"),
                };
                testbed::hosts::unmount_leftovers(&root)?;
                println!("removed {removed:?}");
                Ok(true)
            })
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("testbed: {e:#}");
            ExitCode::from(2)
        }
    }
}
