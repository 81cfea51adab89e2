//! The control-plane driver: live operations while the registers are read and written
//! and the nemesis works. Every action is logged with its start, end and outcome; a
//! refusal (a 4xx: nothing to merge, a partition busy) is an outcome, not a testbed
//! failure.
//!
//! Credential revocations are also checked here: once an agent has applied a revocation,
//! a request with the revoked credential must be refused by that agent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use agent::api_client::encode_component;
use agent::api_client::{ApiClient, Authorization, ClientError, Method};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use shared::api::auth::{IssueCredentialRequest, PutPolicyRequest, RevokeCredentialRequest};
use shared::api::operations::{MergePartitionRequest, MovePartitionRequest};
use shared::api::{CapacityRequest, CreateTableRequest, PartitionDescription};
use shared::auth::Action;
use shared::auth::policy::Effect;
use shared::model::CapacityMode;

use super::Recorder;
use super::registers::Cluster;

/// The principal whose credentials are revoked and whose policy changes.
pub const READER_PRINCIPAL: &str = "testbed-reader";
/// Scratch tables are named `<this><n>`.
const SCRATCH_PREFIX: &str = "scratch-";
/// Attempts of one control call while the cluster answers 503 or cannot be reached.
const CALL_ATTEMPTS: u32 = 5;
/// Pause between those attempts.
const CALL_RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How long the revocation check waits for an agent to apply the revocation.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// One control-plane action as run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Nanoseconds since the run began, at the start.
    pub start_ns: u64,
    /// ... and at the end.
    pub end_ns: u64,
    /// What was done (`split`, `move`, ...).
    pub action: String,
    /// On what.
    pub detail: String,
    /// `ok`, `refused: ...` (a 4xx) or `error: ...` (unavailable, unknown).
    pub outcome: String,
}

/// One request made with a revoked credential to an agent that had applied the
/// revocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevocationProbe {
    /// Nanoseconds since the run began.
    pub time_ns: u64,
    /// The agent asked.
    pub node: u16,
    /// The revoked credential's id.
    pub jti: String,
    /// The status it answered (0: no answer).
    pub status: u16,
    /// Whether it served the request: a violation.
    pub served: bool,
}

/// What the driver did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ControlLog {
    /// Every action.
    pub actions: Vec<ActionRecord>,
    /// Every revocation probe.
    pub revocations: Vec<RevocationProbe>,
}

/// The kinds of action, taken in turn (in a seeded order) so each runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CreateTable,
    DeleteTable,
    Split,
    Merge,
    Move,
    CapacityUp,
    CapacityDown,
    Policy,
    Revoke,
}

const KINDS: [Kind; 9] = [
    Kind::CreateTable,
    Kind::Split,
    Kind::Move,
    Kind::CapacityUp,
    Kind::Policy,
    Kind::Revoke,
    Kind::Merge,
    Kind::CapacityDown,
    Kind::DeleteTable,
];

/// The driver's settings.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// The register table.
    pub table: String,
    /// Pause between actions.
    pub period: Duration,
    /// Register table capacity (write units) at the start; capacity changes double it
    /// and halve it back.
    pub write_units: u64,
    /// Drain this host at this time since the run began, once.
    pub drain: Option<(u16, Duration)>,
}

/// The driver's state.
pub struct ControlDriver<'a> {
    config: ControlConfig,
    cluster: &'a Cluster,
    admin: Authorization,
    cluster_id: String,
    recorder: &'a Recorder,
    rng: StdRng,
    scratch: Vec<String>,
    next_scratch: u64,
    log: ControlLog,
}

impl<'a> ControlDriver<'a> {
    /// A driver acting as the cluster admin `admin`.
    pub fn new(
        config: ControlConfig,
        cluster: &'a Cluster,
        admin: Authorization,
        cluster_id: String,
        recorder: &'a Recorder,
        seed: u64,
    ) -> Self {
        ControlDriver {
            config,
            cluster,
            admin,
            cluster_id,
            recorder,
            rng: StdRng::seed_from_u64(seed ^ 0xc0_47_01),
            scratch: Vec::new(),
            next_scratch: 1,
            log: ControlLog::default(),
        }
    }

    /// Runs actions until the recorder says stop; returns what was done.
    pub fn run(mut self) -> ControlLog {
        let mut order = KINDS.to_vec();
        let mut turn = 0usize;
        let mut drained = false;
        while !self.recorder.stopping() {
            if let Some((host, at)) = self.config.drain
                && !drained
                && self.recorder.start().elapsed() >= at
            {
                drained = true;
                self.drain(host);
            }
            if turn.is_multiple_of(order.len()) {
                shuffle(&mut order, &mut self.rng);
            }
            let kind = order[turn % order.len()];
            turn += 1;
            self.act(kind);
            self.pause(self.config.period);
        }
        self.log
    }

    /// Sleeps `d`, waking early when the run stops.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.recorder.stopping() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An admin client of a random member.
    fn client(&mut self) -> (u16, ApiClient) {
        let members = self.cluster.members();
        let node = *members.choose(&mut self.rng).expect("members");
        let client = ApiClient::new(&(self.cluster.endpoint)(node)).with_authorization(&self.admin);
        (node, client)
    }

    /// Runs `f` through random members while the answer is 503 or unreachable.
    fn call<T>(
        &mut self,
        mut f: impl FnMut(&ApiClient) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut last = None;
        for _ in 0..CALL_ATTEMPTS {
            let (_, client) = self.client();
            match f(&client) {
                Ok(v) => return Ok(v),
                Err(e) if is_retryable(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
            std::thread::sleep(CALL_RETRY_PAUSE);
        }
        Err(last.expect("at least one attempt"))
    }

    /// Records one action: `f` answers the detail and outcome.
    fn record(&mut self, action: &str, f: impl FnOnce(&mut Self) -> (String, String)) {
        let start_ns = self.recorder.now_ns();
        let (detail, outcome) = f(self);
        self.log.actions.push(ActionRecord {
            start_ns,
            end_ns: self.recorder.now_ns(),
            action: action.to_string(),
            detail,
            outcome,
        });
    }

    fn act(&mut self, kind: Kind) {
        match kind {
            Kind::CreateTable => self.record("create-table", Self::create_table),
            Kind::DeleteTable => self.record("delete-table", Self::delete_table),
            Kind::Split => self.record("split", Self::split),
            Kind::Merge => self.record("merge", Self::merge),
            Kind::Move => self.record("move", Self::relocate),
            Kind::CapacityUp => self.record("capacity-up", |d| d.capacity(2)),
            Kind::CapacityDown => self.record("capacity-down", |d| d.capacity(1)),
            Kind::Policy => self.record("policy", Self::policy),
            Kind::Revoke => self.record("revoke", Self::revoke),
        }
    }

    fn create_table(&mut self) -> (String, String) {
        let name = format!("{SCRATCH_PREFIX}{}", self.next_scratch);
        self.next_scratch += 1;
        let request = CreateTableRequest::with_string_key(
            &name,
            "id",
            CapacityRequest {
                mode: CapacityMode::Provisioned,
                read_units: Some(100),
                write_units: Some(100),
            },
        );
        let result = self.call(|c| c.create_table(&request));
        // A lost answer may hide a creation: the table is deleted later either way.
        self.scratch.push(name.clone());
        (name, outcome(result))
    }

    fn delete_table(&mut self) -> (String, String) {
        let Some(name) = self.scratch.first().cloned() else {
            return ("-".into(), "refused: no scratch table".into());
        };
        let result = self.call(|c| c.delete_table(&name));
        if matches!(&result, Ok(_) | Err(ClientError::Api { status: 404, .. })) {
            self.scratch.remove(0);
        }
        (name, outcome(result))
    }

    fn partitions(&mut self) -> Result<Vec<PartitionDescription>, ClientError> {
        let table = self.config.table.clone();
        self.call(|c| c.partitions(&table)).map(|p| p.partitions)
    }

    fn split(&mut self) -> (String, String) {
        let parts = match self.partitions() {
            Ok(p) => p,
            Err(e) => return ("-".into(), outcome::<()>(Err(e))),
        };
        let Some(p) = parts.choose(&mut self.rng).cloned() else {
            return ("-".into(), "refused: no partition".into());
        };
        let result = self.call(|c| c.split_partition(p.partition_id, None));
        (format!("partition {}", p.partition_id), outcome(result))
    }

    fn merge(&mut self) -> (String, String) {
        let parts = match self.partitions() {
            Ok(p) => p,
            Err(e) => return ("-".into(), outcome::<()>(Err(e))),
        };
        // Adjacent pairs on the same nodes can merge at once; prefer those.
        let pairs: Vec<(u64, u64, bool)> = parts
            .windows(2)
            .map(|w| {
                let same = w[0].primary_node_id == w[1].primary_node_id
                    && sorted(&w[0].replica_node_ids) == sorted(&w[1].replica_node_ids);
                (w[0].partition_id, w[1].partition_id, same)
            })
            .collect();
        let candidates: Vec<_> = pairs.iter().filter(|p| p.2).collect();
        let pick = if candidates.is_empty() {
            pairs.choose(&mut self.rng)
        } else {
            candidates.choose(&mut self.rng).copied()
        };
        let Some(&(left, right, _)) = pick else {
            return ("-".into(), "refused: one partition".into());
        };
        let request = MergePartitionRequest {
            right_partition: right,
        };
        let result = self.call(|c| c.merge_partition(left, &request));
        (format!("partitions {left}+{right}"), outcome(result))
    }

    fn relocate(&mut self) -> (String, String) {
        let parts = match self.partitions() {
            Ok(p) => p,
            Err(e) => return ("-".into(), outcome::<()>(Err(e))),
        };
        let members = self.cluster.members();
        let Some(p) = parts.choose(&mut self.rng).cloned() else {
            return ("-".into(), "refused: no partition".into());
        };
        let holders: BTreeSet<u64> = p
            .replica_node_ids
            .iter()
            .copied()
            .chain([p.primary_node_id])
            .collect();
        let targets: Vec<u16> = members
            .into_iter()
            .filter(|m| !holders.contains(&u64::from(*m)))
            .collect();
        let Some(&target) = targets.choose(&mut self.rng) else {
            return (
                format!("partition {}", p.partition_id),
                "refused: no free node".into(),
            );
        };
        let request = MovePartitionRequest {
            target_node: u64::from(target),
            source_node: None,
        };
        let result = self.call(|c| c.move_partition(p.partition_id, &request));
        (
            format!("partition {} to node {target}", p.partition_id),
            outcome(result),
        )
    }

    fn capacity(&mut self, factor: u64) -> (String, String) {
        let units = self.config.write_units * factor;
        let table = self.config.table.clone();
        let request = CapacityRequest {
            mode: CapacityMode::Provisioned,
            read_units: Some(units),
            write_units: Some(units),
        };
        let result = self.call(|c| c.update_capacity(&table, &request));
        (format!("{table} to {units} units"), outcome(result))
    }

    fn reader_arn(&self) -> String {
        format!("arn:{}:principal/{READER_PRINCIPAL}", self.cluster_id)
    }

    /// Denies the reader, then allows it again.
    fn policy(&mut self) -> (String, String) {
        let (table, arn) = (self.config.table.clone(), self.reader_arn());
        let deny = PutPolicyRequest {
            actions: [Action::Read].into(),
            effect: Effect::Deny,
        };
        let allow = PutPolicyRequest {
            actions: [Action::Read].into(),
            effect: Effect::Allow,
        };
        let denied = self.call(|c| c.put_policy(&table, &arn, &deny));
        let allowed = self.call(|c| c.put_policy(&table, &arn, &allow));
        (
            format!("deny then allow {READER_PRINCIPAL} on {table}"),
            format!("{}; {}", outcome(denied), outcome(allowed)),
        )
    }

    /// Issues the reader a credential, revokes it, and probes every member once it has
    /// applied the revocation.
    fn revoke(&mut self) -> (String, String) {
        let (table, arn) = (self.config.table.clone(), self.reader_arn());
        let request = IssueCredentialRequest {
            principal_arn: arn,
            ttl_seconds: None,
            actions: Some([Action::Read].into()),
        };
        let issued = match self.call(|c| c.issue_credential(&table, &request)) {
            Ok(issued) => issued,
            Err(e) => return ("-".into(), outcome::<()>(Err(e))),
        };
        let revoke = RevokeCredentialRequest {
            jti: Some(issued.jti.clone()),
            token: None,
        };
        if let Err(e) = self.call(|c| c.revoke_credential(&revoke)) {
            return (issued.jti, outcome::<()>(Err(e)));
        }
        // The leader committed the revocation before answering: any commit index read
        // after that covers it.
        let committed = match self.call(|c| c.cluster()) {
            Ok(c) => c.commit_index,
            Err(e) => return (issued.jti, format!("revoked; {}", outcome::<()>(Err(e)))),
        };
        let members = self.cluster.members();
        let mut probed = 0;
        for node in members {
            if let Some(probe) = self.probe_revoked(node, committed, &issued.jti, &issued.token) {
                probed += 1;
                self.log.revocations.push(probe);
            }
        }
        (issued.jti, format!("ok: revoked, {probed} agents probed"))
    }

    /// Waits for `node` to apply index `committed`, then reads with the revoked token.
    fn probe_revoked(
        &self,
        node: u16,
        committed: u64,
        jti: &str,
        token: &str,
    ) -> Option<RevocationProbe> {
        let endpoint = (self.cluster.endpoint)(node);
        let admin = ApiClient::new(&endpoint).with_authorization(&self.admin);
        let deadline = Instant::now() + APPLY_WAIT;
        loop {
            // An agent that cannot tell its applied index is not probed.
            match admin.metadata_replica() {
                Ok(m) if m.applied_index >= committed => break,
                _ if Instant::now() >= deadline || self.recorder.stopping() => return None,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let client =
            ApiClient::new(&endpoint).with_authorization(&Authorization::Token(token.into()));
        let path = format!("/tables/{}/items/r0", encode_component(&self.config.table));
        let status = client
            .raw(Method::Get, &path, None)
            .map(|(s, _)| s)
            .unwrap_or(0);
        Some(RevocationProbe {
            time_ns: self.recorder.now_ns(),
            node,
            jti: jti.to_string(),
            status,
            served: (200..300).contains(&status) || status == 404,
        })
    }

    fn drain(&mut self, host: u16) {
        let cluster_id = self.cluster_id.clone();
        self.record("drain", |d| {
            let result = d.call(|c| c.drain_node(&cluster_id, u64::from(host)));
            (format!("node {host}"), outcome(result))
        });
    }
}

fn sorted(v: &[u64]) -> Vec<u64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

fn shuffle(v: &mut [Kind], rng: &mut StdRng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
}

fn is_retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Api { status, .. } => *status == 503,
        ClientError::Transport { .. } => true,
        ClientError::Decode(_) => false,
    }
}

/// How an action's answer is logged.
fn outcome<T>(result: Result<T, ClientError>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(ClientError::Api {
            status, message, ..
        }) if (400..500).contains(&status) => format!("refused: {status} {message}"),
        Err(e) => format!("error: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_errors_are_told_apart() {
        let refused = ClientError::Api {
            status: 409,
            code: "Busy".into(),
            message: "an operation runs".into(),
        };
        assert_eq!(
            outcome::<()>(Err(refused)),
            "refused: 409 an operation runs"
        );
        let down = ClientError::Transport {
            endpoint: "x".into(),
            reason: "refused".into(),
        };
        assert!(outcome::<()>(Err(down)).starts_with("error: "));
        assert_eq!(outcome(Ok(())), "ok");
    }

    #[test]
    fn every_kind_is_taken_in_one_round() {
        let mut order = KINDS.to_vec();
        shuffle(&mut order, &mut StdRng::seed_from_u64(3));
        let distinct: std::collections::HashSet<_> =
            order.iter().map(|k| format!("{k:?}")).collect();
        assert_eq!(distinct.len(), KINDS.len());
    }
}
