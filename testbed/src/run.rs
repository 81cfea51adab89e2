//! One testbed run, start to end: build the hosts, start the cluster, run the workload
//! under the nemesis, heal, check, and write the history and the report.
//!
//! The calling thread owns the agents (their parent-death signal is bound to it) and
//! directs the faults; workers run on threads of their own in the clients' namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent::auth::admin::{ADMIN_CREDENTIALS_FILE, PrincipalCredentials};
use agent::client::{ApiClient, Authorization, ClientError};
use agent::data_client::{DataClient, RetryPolicy};
use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use shared::api::auth::{IssueCredentialRequest, PutPolicyRequest};
use shared::api::{CapacityRequest, CreateTableRequest};
use shared::auth::Action;
use shared::auth::policy::Effect;
use shared::model::CapacityMode;

use crate::check::storage::{Owner, StorageReport};
use crate::check::{self, LostReport};
use crate::heal::{self, HealReport};
use crate::history::{self, Event};
use crate::hosts::{Hosts, HostsConfig, http_endpoint};
use crate::nemesis::{FaultKind, FaultRecord, Nemesis, schedule};
use crate::net::{self, Network};
use crate::workload::Recorder;
use crate::workload::control::{ControlConfig, ControlDriver, ControlLog, READER_PRINCIPAL};
use crate::workload::registers::{
    Cluster, REGISTER_PREFIX, RegisterConfig, UNIQUE_PREFIX, Via, final_read, run_worker,
};

/// The register table's name.
pub const TABLE: &str = "registers";
/// How long the cluster may take to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between the director's checks.
const TICK: Duration = Duration::from_millis(100);
/// How often each agent's memory and open files are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Attempts of each final read.
const FINAL_READ_ATTEMPTS: usize = 5;
/// How long stopping agents may take before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// An agent that exits on its own is restarted after this long (systemd's
/// `RestartSec`, as `deploy/agent.service` would).
pub const RESTART_DELAY: Duration = Duration::from_secs(1);
/// The final reads, all together, give up after this long (what is left is unverified).
const FINAL_READS_DEADLINE: Duration = Duration::from_secs(120);

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

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Everything a run is told.
#[derive(Debug, Clone, Serialize)]
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

/// One sample of an agent's resources.
#[derive(Debug, Clone, Serialize)]
pub struct UsageSample {
    /// Nanoseconds since the run began.
    pub time_ns: u64,
    /// Host.
    pub host: u16,
    /// The agent's process id (a restart starts a new series).
    pub pid: u32,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub open_files: u64,
}

/// An agent that exited on its own (the testbed restarts it, as systemd would).
#[derive(Debug, Clone, Serialize)]
pub struct AgentExit {
    /// Nanoseconds since the run began, when the exit was seen.
    pub time_ns: u64,
    /// Host.
    pub host: u16,
    /// Exit code or signal.
    pub status: String,
}

/// What a run found.
#[derive(Debug, Serialize)]
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
    let setup = set_up(&admin_auth, config)?;
    let recorder = Recorder::new();
    let cluster = Cluster {
        members: RwLock::new((1..=config.hosts).collect()),
        endpoint: http_endpoint,
        principal: admin_auth.clone(),
        token: RwLock::new(setup.token.clone()),
    };
    let drained = config.drain.then(|| drain_target(config.hosts));
    let mut director = Director {
        config,
        hosts,
        network,
        cluster: &cluster,
        recorder: &recorder,
        usage: Vec::new(),
        last_sample: None,
        exits: Vec::new(),
        restarts: Vec::new(),
    };
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
    let members = cluster
        .members
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let heal = heal::await_healed(
        &heal::Expectation {
            members: &members,
            drained,
            admin: &admin_auth,
        },
        config.heal_timeout,
        &mut || director.supervise().is_ok() && !interrupted(),
    );
    final_reads(&recorder, &cluster, &admin_auth);
    let routing = final_routing(&members, &admin_auth);
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
    let storage = match routing {
        Ok(routing) => check::storage::check(&dir_refs, &routing),
        Err(e) => StorageReport {
            unreadable: vec![(0, format!("final routing: {e:#}"))],
            ..Default::default()
        },
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
        registers,
        register_error,
        lost: check::lost_writes(&events),
        storage,
        usage,
        exits,
        panics,
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

/// Waits for host 1's admin credentials and for the voters; answers the credentials.
fn wait_for_cluster(hosts: &mut Hosts, count: u16) -> anyhow::Result<PrincipalCredentials> {
    let path = hosts.files(1).data_dir.join(ADMIN_CREDENTIALS_FILE);
    let deadline = Instant::now() + FORM_TIMEOUT;
    let voters = shared::placement::voter_target(usize::from(count), &Default::default());
    loop {
        anyhow::ensure!(!interrupted(), "interrupted");
        if let Ok(admin) = PrincipalCredentials::load(&path) {
            let client = ApiClient::new(&http_endpoint(1)).with_principal(&admin);
            if let Ok(c) = client.cluster()
                && c.leader_id.is_some()
                && c.voters.len() >= voters
            {
                return Ok(admin);
            }
        }
        for i in 1..=count {
            if !hosts.is_running(i) {
                bail!(
                    "agent {i} exited while the cluster formed; see {}",
                    hosts.files(i).log.display()
                );
            }
        }
        if Instant::now() >= deadline {
            bail!("the cluster did not form within {FORM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the setup made.
struct Setup {
    cluster_id: String,
    token: String,
    write_units: u64,
}

/// Creates the register table, the reader principal with its policy, and the HTTP
/// workers' credential.
fn set_up(admin: &Authorization, config: &RunConfig) -> anyhow::Result<Setup> {
    let client = ApiClient::new(&http_endpoint(1)).with_authorization(admin);
    let cluster_id = settle(|| client.cluster())?
        .cluster_id
        .context("no cluster id")?;
    // Four partitions at the default 1,000 write units per partition.
    let write_units = 4000;
    let request = CreateTableRequest::with_string_key(
        TABLE,
        "id",
        CapacityRequest {
            mode: CapacityMode::Provisioned,
            read_units: Some(write_units),
            write_units: Some(write_units),
        },
    );
    settle(|| {
        client
            .create_table(&request)
            .map(|_| ())
            .or_else(already(409))
    })?;
    let ready = Instant::now() + FORM_TIMEOUT;
    while !settle(|| client.partitions(TABLE))?
        .partitions
        .iter()
        .all(|p| p.ready)
    {
        anyhow::ensure!(
            Instant::now() < ready,
            "the register table never became ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let reader = settle(|| client.create_principal(READER_PRINCIPAL, false))?;
    let allow = PutPolicyRequest {
        actions: [Action::Read].into(),
        effect: Effect::Allow,
    };
    settle(|| client.put_policy(TABLE, &reader.principal_arn, &allow))?;
    let Authorization::Principal(admin_creds) = admin else {
        bail!("the admin authenticates with its secret");
    };
    let issue = IssueCredentialRequest {
        principal_arn: admin_creds.principal_arn.clone(),
        ttl_seconds: None,
        actions: None,
    };
    let token = settle(|| client.issue_credential(TABLE, &issue))?.token;
    let _ = config;
    Ok(Setup {
        cluster_id,
        token,
        write_units,
    })
}

/// Treats status `status` as success (an earlier attempt whose answer was lost).
fn already(status: u16) -> impl Fn(ClientError) -> Result<(), ClientError> {
    move |e| match e {
        ClientError::Api { status: s, .. } if s == status => Ok(()),
        e => Err(e),
    }
}

/// Retries a setup call while the cluster answers 503 or cannot be reached.
fn settle<T>(mut f: impl FnMut() -> Result<T, ClientError>) -> anyhow::Result<T> {
    let deadline = Instant::now() + FORM_TIMEOUT;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(ClientError::Api { status, .. }) if status == 503 || status == 504 => {}
            Err(ClientError::Transport { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        anyhow::ensure!(Instant::now() < deadline, "setup did not settle");
        anyhow::ensure!(!interrupted(), "interrupted");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Reads every register and every write-once key once more, after healing.
fn final_reads(recorder: &Recorder, cluster: &Cluster, admin: &Authorization) {
    let members = cluster
        .members
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let endpoints = members.iter().map(|m| http_endpoint(*m)).collect();
    let data = DataClient::new(endpoints)
        .with_authorization(admin.clone())
        .with_retry(RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        });
    let mut keys: Vec<String> = Vec::new();
    for e in recorder.events() {
        if e.key.starts_with(UNIQUE_PREFIX) || e.key.starts_with(REGISTER_PREFIX) {
            keys.push(e.key);
        }
    }
    keys.sort();
    keys.dedup();
    // One process per read: a failed one never overlaps the next.
    let mut process = u64::MAX / 2;
    let deadline = Instant::now() + FINAL_READS_DEADLINE;
    for key in keys {
        if Instant::now() >= deadline || interrupted() {
            // The rest stays unread: the lost-write check counts them as unverified.
            break;
        }
        for _ in 0..FINAL_READ_ATTEMPTS {
            process += 1;
            if final_read(&data, TABLE, process, &key, recorder) == crate::history::EventType::Ok {
                break;
            }
        }
    }
}

/// Every partition of every table, from the first member that answers.
fn final_routing(members: &[u16], admin: &Authorization) -> anyhow::Result<BTreeMap<u64, Owner>> {
    let mut last = None;
    for m in members {
        let client = ApiClient::new(&http_endpoint(*m)).with_authorization(admin);
        let attempt = (|| -> Result<BTreeMap<u64, Owner>, ClientError> {
            let mut routing = BTreeMap::new();
            for t in client.list_tables()?.tables {
                for p in client.partitions(&t.table_name)?.partitions {
                    let mut holders = p.replica_node_ids.clone();
                    holders.push(p.primary_node_id);
                    routing.insert(
                        p.partition_id,
                        Owner {
                            table: t.table_name.clone(),
                            low: p.key_range_low,
                            high: p.key_range_high,
                            holders,
                        },
                    );
                }
            }
            Ok(routing)
        })();
        match attempt {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!("no member answered: {last:?}"))
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

/// The thread that owns the agents: injects faults, joins the new host, samples usage.
struct Director<'a> {
    config: &'a RunConfig,
    hosts: &'a mut Hosts,
    network: &'a Network,
    cluster: &'a Cluster,
    recorder: &'a Recorder,
    usage: Vec<UsageSample>,
    last_sample: Option<Instant>,
    exits: Vec<AgentExit>,
    /// Agents that exited on their own, restarted at these times.
    restarts: Vec<(Instant, u16)>,
}

impl Director<'_> {
    /// Hosts whose agent is a cluster member now.
    fn members(&self) -> Vec<u16> {
        self.cluster
            .members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits `d`, doing the periodic work meanwhile.
    fn idle(&mut self, d: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            anyhow::ensure!(!interrupted(), "interrupted");
            self.periodic()?;
            std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
        }
        Ok(())
    }

    /// Restarts, after [`RESTART_DELAY`], agents that exited on their own.
    fn supervise(&mut self) -> anyhow::Result<()> {
        for host in self.members() {
            if let Some(status) = self.hosts.take_exit(host) {
                let status = status.to_string();
                eprintln!("testbed: agent {host} exited on its own ({status}); restarting it");
                self.exits.push(AgentExit {
                    time_ns: self.recorder.now_ns(),
                    host,
                    status,
                });
                self.restarts.push((Instant::now() + RESTART_DELAY, host));
            }
        }
        let now = Instant::now();
        let due: Vec<u16> = self
            .restarts
            .iter()
            .filter(|r| r.0 <= now)
            .map(|r| r.1)
            .collect();
        self.restarts.retain(|r| r.0 > now);
        for host in due {
            self.hosts.start(host)?;
        }
        Ok(())
    }

    /// Samples usage; starts the joining host when its time comes.
    fn periodic(&mut self) -> anyhow::Result<()> {
        self.supervise()?;
        if self.last_sample.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY) {
            self.last_sample = Some(Instant::now());
            let now = self.recorder.now_ns();
            for host in self.members() {
                if let (Some((rss, fds)), Some(pid)) =
                    (self.hosts.usage(host), self.hosts.pid(host))
                {
                    self.usage.push(UsageSample {
                        time_ns: now,
                        host,
                        pid,
                        rss_bytes: rss,
                        open_files: fds,
                    });
                }
            }
        }
        let joiner = self.config.hosts + 1;
        if self.config.join
            && !self.members().contains(&joiner)
            && self.recorder.start().elapsed() >= self.config.duration * 2 / 5
        {
            self.hosts.start(joiner)?;
            self.cluster.add_member(joiner);
        }
        Ok(())
    }

    /// The fault schedule, until the duration is over; every fault is undone.
    fn inflict_faults(
        &mut self,
        kinds: &[FaultKind],
        admin: &Authorization,
    ) -> anyhow::Result<Vec<FaultRecord>> {
        let mut rng = StdRng::seed_from_u64(self.config.seed);
        let mut nemesis = Nemesis::new(self.config.seed, admin.clone(), TABLE);
        let mean = (self.config.fault_min + self.config.fault_max) / 2 + self.config.gap;
        let count = (self.config.duration.as_secs_f64() / mean.as_secs_f64()).ceil() as usize;
        let plan = if kinds.is_empty() {
            Vec::new()
        } else {
            schedule(kinds, count.max(kinds.len()), &mut rng)
        };
        let mut records = Vec::new();
        let end = self.recorder.start() + self.config.duration;
        for kind in plan {
            if Instant::now() >= end {
                break;
            }
            self.idle(self.config.gap)?;
            let members = self.running_members();
            let active = nemesis.start(
                kind,
                &members,
                self.hosts,
                self.network,
                self.recorder.now_ns(),
            );
            let active = active.with_context(|| format!("starting fault {}", kind.name()))?;
            let hold = nemesis.hold(kind, self.config.fault_min, self.config.fault_max);
            let held = self.idle(hold);
            let record = nemesis.end(active, self.hosts, self.network, self.recorder.now_ns())?;
            eprintln!(
                "testbed: {:>7.1}s {} {:?} {} ({:.1}s)",
                record.start_ns as f64 / 1e9,
                kind.name(),
                record.targets,
                record.detail,
                (record.end_ns - record.start_ns) as f64 / 1e9
            );
            records.push(record);
            held?;
        }
        let rest = end.saturating_duration_since(Instant::now());
        self.idle(rest)?;
        Ok(records)
    }

    /// Members whose agent process runs (not paused, not killed).
    fn running_members(&mut self) -> Vec<u16> {
        let members = self.members();
        members
            .into_iter()
            .filter(|m| self.hosts.is_running(*m) && !self.hosts.is_paused(*m))
            .collect()
    }
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
