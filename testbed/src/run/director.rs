//! The thread that owns the agents during a run: it injects the faults, restarts agents
//! that exit on their own (as systemd would), starts the joining host, and samples every
//! agent's memory and open files.

use std::time::{Duration, Instant};

use agent::api_client::Authorization;
use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::{RunConfig, TABLE, interrupted};
use crate::hosts::Hosts;
use crate::nemesis::{FaultKind, FaultRecord, Nemesis, schedule};
use crate::net::Network;
use crate::workload::Recorder;
use crate::workload::registers::Cluster;

/// Pause between the director's checks.
const TICK: Duration = Duration::from_millis(100);
/// How often each agent's memory and open files are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// An agent that exits on its own is restarted after this long (systemd's
/// `RestartSec`).
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// One sample of an agent's resources.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentExit {
    /// Nanoseconds since the run began, when the exit was seen.
    pub time_ns: u64,
    /// Host.
    pub host: u16,
    /// Exit code or signal.
    pub status: String,
}

/// The thread that owns the agents: injects faults, joins the new host, samples usage.
pub(super) struct Director<'a> {
    config: &'a RunConfig,
    pub(super) hosts: &'a mut Hosts,
    network: &'a Network,
    cluster: &'a Cluster,
    recorder: &'a Recorder,
    pub(super) usage: Vec<UsageSample>,
    last_sample: Option<Instant>,
    pub(super) exits: Vec<AgentExit>,
    /// Agents that exited on their own, restarted at these times.
    restarts: Vec<(Instant, u16)>,
}

impl<'a> Director<'a> {
    /// A director of `hosts` on `network`, for the run `config`.
    pub(super) fn new(
        config: &'a RunConfig,
        hosts: &'a mut Hosts,
        network: &'a Network,
        cluster: &'a Cluster,
        recorder: &'a Recorder,
    ) -> Self {
        Director {
            config,
            hosts,
            network,
            cluster,
            recorder,
            usage: Vec::new(),
            last_sample: None,
            exits: Vec::new(),
            restarts: Vec::new(),
        }
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
    pub(super) fn supervise(&mut self) -> anyhow::Result<()> {
        for host in self.cluster.members() {
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
            for host in self.cluster.members() {
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
            && !self.cluster.members().contains(&joiner)
            && self.recorder.start().elapsed() >= self.config.duration * 2 / 5
        {
            self.hosts.start(joiner)?;
            self.cluster.add_member(joiner);
        }
        Ok(())
    }

    /// The fault schedule, until the duration is over; every fault is undone.
    pub(super) fn inflict_faults(
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
            self.idle(self.config.gap)?;
            if Instant::now() >= end {
                break;
            }
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
        let members = self.cluster.members();
        members
            .into_iter()
            .filter(|m| self.hosts.is_running(*m) && !self.hosts.is_paused(*m))
            .collect()
    }
}
