//! One testbed run, start to end: build the hosts, start the cluster, run the workload
//! under the nemesis, heal, check, and write the history and the report.
//!
//! The calling thread owns the agents (their parent-death signal is bound to it) and
//! directs the faults; workers run on threads of their own in the clients' namespace.

mod director;
mod setup;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent::api_client::Authorization;
use anyhow::bail;
use serde::{Deserialize, Serialize};

use self::director::Director;
pub use self::director::{AgentExit, RESTART_DELAY, UsageSample};
use self::setup::{final_operations, final_reads, final_routing, set_up, wait_for_cluster};
use crate::check::storage::{Owner, StorageReport};
use crate::check::{self, LostReport};
use crate::heal::{self, HealReport};
use crate::history::{self, Event};
use crate::hosts::{Hosts, HostsConfig, http_endpoint};
use crate::nemesis::{FaultKind, FaultRecord};
use crate::net::{self, Network};
use crate::workload::Recorder;
use crate::workload::control::{ControlConfig, ControlDriver, ControlLog};
use crate::workload::registers::{Cluster, RegisterConfig, Via, run_worker};

/// The register table's name.
pub const TABLE: &str = "registers";
/// How long stopping agents may take before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long the cluster may take to settle after the final reads (see
/// [`RunResult::settle`]); past it, the storage is compared as it is.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Set by SIGINT/SIGTERM: the run stops early, tears everything down, and fails.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes Ctrl-C (and SIGTERM) end the run cleanly instead of killing the testbed.
pub fn catch_interrupts() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Everything a run is told.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// Hosts that form the cluster.
    pub hosts: u16,
    /// The seed every choice comes from.
    pub seed: u64,
    /// How long faults are injected.
    pub duration: Duration,
    /// Kinds of fault to inject.
    pub kinds: Vec<FaultKind>,
    /// Shortest fault.
    pub fault_min: Duration,
    /// Longest fault.
    pub fault_max: Duration,
    /// Quiet time between faults.
    pub gap: Duration,
    /// Bound on healing after the last fault.
    pub heal_timeout: Duration,
    /// Register workers.
    pub clients: u64,
    /// Register keys.
    pub keys: usize,
    /// Pause between one worker's operations.
    pub think: Duration,
    /// Pause between control-plane actions.
    pub control_period: Duration,
    /// Whether one more host joins mid-run.
    pub join: bool,
    /// Whether one host is drained mid-run.
    pub drain: bool,
    /// Size of each host's data tmpfs, in MiB.
    pub disk_mib: u64,
    /// Where the run's files go.
    pub out: PathBuf,
    /// Prefix of the run's namespaces.
    pub prefix: String,
    /// The `agent` binary.
    pub agent_binary: PathBuf,
    /// The agents' `RUST_LOG` (`None`: the agent's default).
    pub agent_log: Option<String>,
    /// The linearizability search budget per key.
    pub search_budget: u64,
}

/// What a run found.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunResult {
    /// The configuration.
    pub config: RunConfig,
    /// Faults as injected.
    pub faults: Vec<FaultRecord>,
    /// Kinds skipped, with why.
    pub skipped: Vec<(FaultKind, String)>,
    /// Control-plane actions and revocation probes.
    pub control: ControlLog,
    /// Healing after the faults.
    pub heal: HealReport,
    /// Settling after the final reads (healed, and no operation running), before the
    /// agents stop and their storage is compared (`None` in results of older runs).
    #[serde(default)]
    pub settle: Option<HealReport>,
    /// Register linearizability and stale reads.
    pub registers: Option<check::register::RegisterReport>,
    /// Why the register check could not run.
    pub register_error: Option<String>,
    /// Acknowledged write-once items missing at the end.
    pub lost: LostReport,
    /// Items against the final routing.
    pub storage: StorageReport,
    /// Resource samples.
    pub usage: Vec<UsageSample>,
    /// Agents that exited on their own, each restarted after [`RESTART_DELAY`].
    pub exits: Vec<AgentExit>,
    /// Panics found in the agents' logs: (host, the panic's line).
    pub panics: Vec<(u16, String)>,
    /// The final routing: partition id to its table, key range and holders.
    pub routing: BTreeMap<u64, Owner>,
    /// Every operation the cluster remembered at the end (as `GET /operations`).
    pub operations: Vec<serde_json::Value>,
    /// Nanoseconds since the start when the last fault ended.
    pub faults_end_ns: u64,
    /// Every check that failed (empty: the run passed).
    pub failures: Vec<String>,
}

/// Runs the testbed; the result is also written to `config.out`.
pub fn run(config: RunConfig) -> anyhow::Result<(RunResult, Vec<Event>)> {
    anyhow::ensure!(
        (3..=net::MAX_HOSTS - 1).contains(&config.hosts),
        "--hosts must be at least 3"
    );
    std::fs::create_dir_all(&config.out)?;
    let removed = net::remove_leftovers(&config.prefix)?;
    if !removed.is_empty() {
        eprintln!("testbed: removed leftovers of an earlier run: {removed:?}");
    }
    crate::hosts::unmount_leftovers(&config.out)?;
    let total = config.hosts + u16::from(config.join);
    let network = Network::create(&config.prefix, total)?;
    let mut hosts = Hosts::prepare(
        &network,
        HostsConfig {
            binary: config.agent_binary.clone(),
            log_filter: config.agent_log.clone(),
            root: config.out.join("hosts"),
            disk_mib: config.disk_mib,
            initial: config.hosts,
        },
    )?;
    let result = drive(&config, &network, &mut hosts);
    hosts.stop_all(Duration::ZERO);
    if !matches!(&result, Ok((r, _)) if r.failures.is_empty()) {
        // The data tmpfs go with the hosts: keep a copy to look into.
        for i in 1..=hosts.len() {
            let data = &hosts.files(i).data_dir;
            let kept = hosts.files(i).dir.join("data-kept");
            if let Err(e) = net::run(
                "cp",
                &["-a", &data.to_string_lossy(), &kept.to_string_lossy()],
            ) {
                eprintln!("testbed: keeping host {i}'s data: {e:#}");
            }
        }
    }
    result
}

/// The part of a run that needs the network and hosts (they are torn down after).
fn drive(
    config: &RunConfig,
    network: &Network,
    hosts: &mut Hosts,
) -> anyhow::Result<(RunResult, Vec<Event>)> {
    let mut skipped = Vec::new();
    let netem = network.netem_available();
    let mut kinds = config.kinds.clone();
    kinds.retain(|k| {
        let why = if k.needs_netem() && !netem {
            Some("this kernel has no tc netem")
        } else if k.needs_faketime() && !hosts.clocks_movable() {
            Some("libfaketime is not installed")
        } else {
            None
        };
        if let Some(why) = why {
            skipped.push((*k, why.to_string()));
        }
        why.is_none()
    });
    for i in 1..=config.hosts {
        hosts.start(i)?;
    }
    // Every socket the testbed opens from here on lives in the clients' namespace.
    net::enter_namespace(&network.client_ns())?;
    let admin = wait_for_cluster(hosts, config.hosts)?;
    let admin_auth = Authorization::Principal(admin.clone());
    let setup = set_up(&admin_auth)?;
    let recorder = Recorder::new();
    let cluster = Cluster::new(
        (1..=config.hosts).collect(),
        http_endpoint,
        admin_auth.clone(),
        setup.token.clone(),
    );
    let drained = config.drain.then(|| drain_target(config.hosts));
    let mut director = Director::new(config, hosts, network, &cluster, &recorder);
    let register_config = RegisterConfig {
        table: TABLE.to_string(),
        keys: config.keys,
        read_percent: 50,
        unique_percent: 20,
        think: config.think,
    };
    let (faults, control) = std::thread::scope(|scope| -> anyhow::Result<_> {
        for id in 0..config.clients {
            let via = if id % 2 == 0 { Via::Client } else { Via::Http };
            let (rc, cl, rec) = (&register_config, &cluster, &recorder);
            std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn_scoped(scope, move || {
                    run_worker(id, config.clients, via, config.seed, rc, cl, rec)
                })?;
        }
        let control_config = ControlConfig {
            table: TABLE.to_string(),
            period: config.control_period,
            write_units: setup.write_units,
            drain: drained.map(|h| (h, config.duration * 3 / 5)),
        };
        let driver = ControlDriver::new(
            control_config,
            &cluster,
            admin_auth.clone(),
            setup.cluster_id.clone(),
            &recorder,
            config.seed,
        );
        let control = std::thread::Builder::new()
            .name("control".into())
            .spawn_scoped(scope, move || driver.run())?;
        let faults = director.inflict_faults(&kinds, &admin_auth);
        recorder.stop();
        let control = control
            .join()
            .map_err(|_| anyhow::anyhow!("control driver panicked"))?;
        Ok((faults?, control))
    })?;
    let faults_end_ns = recorder.now_ns();
    let members = cluster.members();
    let mut expect = heal::Expectation {
        members: &members,
        drained,
        admin: &admin_auth,
        table: TABLE,
        quiet: false,
    };
    let mut keep_waiting = || director.supervise().is_ok() && !interrupted();
    let heal = heal::await_healed(&expect, config.heal_timeout, &mut keep_waiting);
    final_reads(&recorder, &cluster, &admin_auth);
    // The Scaler may answer the final reads' load with a split or a move: the copies
    // are compared once none runs and every replica has caught up.
    expect.quiet = true;
    let settle = heal::await_healed(&expect, SETTLE_TIMEOUT, &mut keep_waiting);
    let routing = final_routing(&members, &admin_auth);
    let operations = final_operations(&members, &admin_auth);
    let usage = std::mem::take(&mut director.usage);
    let exits = std::mem::take(&mut director.exits);
    director.hosts.stop_all(STOP_GRACE);
    let panics = (1..=director.hosts.len())
        .flat_map(|i| panics_in(i, &director.hosts.files(i).log))
        .collect();
    if interrupted() {
        bail!("interrupted");
    }
    let dirs: Vec<(u16, PathBuf)> = (1..=director.hosts.len())
        .map(|i| (i, director.hosts.files(i).data_dir.clone()))
        .collect();
    let dir_refs: Vec<(u16, &Path)> = dirs.iter().map(|(i, d)| (*i, d.as_path())).collect();
    let (storage, routing) = match routing {
        Ok(routing) => (check::storage::check(&dir_refs, &routing), routing),
        Err(e) => (
            StorageReport {
                unreadable: vec![(0, format!("final routing: {e:#}"))],
                ..Default::default()
            },
            BTreeMap::new(),
        ),
    };
    let events = recorder.events();
    let (registers, register_error) = match check::register::check(&events, config.search_budget) {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut result = RunResult {
        config: config.clone(),
        faults,
        skipped,
        control,
        heal,
        settle: Some(settle),
        registers,
        register_error,
        lost: check::lost_writes(&events),
        storage,
        usage,
        exits,
        panics,
        routing,
        operations,
        faults_end_ns,
        failures: Vec::new(),
    };
    result.failures = failures(&result);
    Ok((result, events))
}

/// The panics an agent's log records (each a bug, whatever the agent did next).
fn panics_in(host: u16, log: &Path) -> Vec<(u16, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("panicked at"))
        .map(|l| (host, l.chars().take(300).collect()))
        .collect()
}

/// The host drained mid-run: the last of the initial ones (not a seed).
fn drain_target(hosts: u16) -> u16 {
    hosts
}

/// Every failed check, in words.
fn failures(r: &RunResult) -> Vec<String> {
    let mut out = Vec::new();
    if !r.heal.healed {
        out.push(format!(
            "the cluster did not heal within {:?}: {}",
            r.config.heal_timeout,
            r.heal.problems.join("; ")
        ));
    }
    if !r.heal.healthz_lies.is_empty() {
        out.push(format!(
            "/healthz answered 200 on agents that could not serve: {:?}",
            r.heal.healthz_lies
        ));
    }
    out.extend(r.heal.invariant_violations.iter().cloned());
    match (&r.registers, &r.register_error) {
        (Some(reg), _) => {
            if reg.not_linearizable > 0 {
                out.push(format!("{} keys not linearizable", reg.not_linearizable));
            }
            if reg.unknown > 0 {
                out.push(format!("{} keys could not be decided", reg.unknown));
            }
            if !reg.stale_reads.is_empty() {
                out.push(format!("{} stale reads", reg.stale_reads.len()));
            }
            if !reg.phantom_reads.is_empty() {
                out.push(format!(
                    "{} reads of values never written",
                    reg.phantom_reads.len()
                ));
            }
        }
        (None, Some(e)) => out.push(format!("the history is malformed: {e}")),
        (None, None) => out.push("the register check did not run".into()),
    }
    if !r.lost.lost.is_empty() {
        out.push(format!("{} acknowledged writes lost", r.lost.lost.len()));
    }
    if !r.lost.unverified.is_empty() {
        out.push(format!(
            "{} acknowledged writes could not be read back",
            r.lost.unverified.len()
        ));
    }
    if !r.storage.misrouted.is_empty() {
        out.push(format!("{} misrouted items", r.storage.misrouted.len()));
    }
    if !r.storage.divergent.is_empty() {
        let missing: usize = r.storage.divergent.iter().map(|d| d.2).sum();
        out.push(format!(
            "{} partition copies lack {missing} keys their other copies hold",
            r.storage.divergent.len()
        ));
    }
    if !r.storage.unreadable.is_empty() {
        out.push(format!("unreadable storage: {:?}", r.storage.unreadable));
    }
    if !r.panics.is_empty() {
        out.push(format!("{} panics in the agents' logs", r.panics.len()));
    }
    let served: Vec<_> = r.control.revocations.iter().filter(|p| p.served).collect();
    if !served.is_empty() {
        out.push(format!(
            "{} requests served with a revoked credential",
            served.len()
        ));
    }
    out
}

/// Writes `history.jsonl`, `result.json`, `report.md` and the picture into `out`.
pub fn write_outputs(out: &Path, result: &RunResult, events: &[Event]) -> anyhow::Result<()> {
    history::write(&out.join("history.jsonl"), events)?;
    std::fs::write(
        out.join("result.json"),
        serde_json::to_string_pretty(result)?,
    )?;
    crate::report::write(out, result, events)?;
    Ok(())
}
