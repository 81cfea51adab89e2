//! The steps around the faults: waiting for the cluster to form, creating what the
//! workload needs, and, once the cluster healed, the final reads and routing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agent::api_client::{ApiClient, Authorization, ClientError};
use agent::auth::admin::{ADMIN_CREDENTIALS_FILE, PrincipalCredentials};
use agent::data_client::{DataClient, RetryPolicy};
use anyhow::{Context, bail};
use shared::api::auth::{IssueCredentialRequest, PutPolicyRequest};
use shared::api::{CapacityRequest, CreateTableRequest};
use shared::auth::Action;
use shared::auth::policy::Effect;
use shared::model::CapacityMode;

use super::{TABLE, interrupted};
use crate::check::storage::Owner;
use crate::history::EventType;
use crate::hosts::{Hosts, http_endpoint};
use crate::workload::Recorder;
use crate::workload::control::READER_PRINCIPAL;
use crate::workload::registers::{Cluster, REGISTER_PREFIX, UNIQUE_PREFIX, final_read};

/// How long the cluster may take to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts of each final read.
const FINAL_READ_ATTEMPTS: usize = 5;
/// Threads doing the final reads.
const FINAL_READERS: usize = 8;
/// The final reads, all together, give up after this long (what is left is unverified).
const FINAL_READS_DEADLINE: Duration = Duration::from_secs(120);

/// Waits for host 1's admin credentials and for the voters; answers the credentials.
pub(super) fn wait_for_cluster(
    hosts: &mut Hosts,
    count: u16,
) -> anyhow::Result<PrincipalCredentials> {
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
pub(super) struct Setup {
    pub(super) cluster_id: String,
    pub(super) token: String,
    pub(super) write_units: u64,
}

/// Creates the register table, the reader principal with its policy, and the HTTP
/// workers' credential.
pub(super) fn set_up(admin: &Authorization) -> anyhow::Result<Setup> {
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
pub(super) fn final_reads(recorder: &Recorder, cluster: &Cluster, admin: &Authorization) {
    let members = cluster.members();
    let mut keys: Vec<String> = Vec::new();
    for e in recorder.events() {
        if e.key.starts_with(UNIQUE_PREFIX) || e.key.starts_with(REGISTER_PREFIX) {
            keys.push(e.key);
        }
    }
    keys.sort();
    keys.dedup();
    let deadline = Instant::now() + FINAL_READS_DEADLINE;
    let share = keys.len().div_ceil(FINAL_READERS).max(1);
    std::thread::scope(|scope| {
        for (reader, chunk) in keys.chunks(share).enumerate() {
            let endpoints = members.iter().map(|m| http_endpoint(*m)).collect();
            let data = DataClient::new(endpoints)
                .with_authorization(admin.clone())
                .with_retry(RetryPolicy {
                    max_attempts: 3,
                    ..RetryPolicy::default()
                });
            scope.spawn(move || {
                // One process per read (a failed one never overlaps the next), and a
                // range of them per reader.
                let mut process = u64::MAX / 2 + (reader as u64) * (1 << 32);
                for key in chunk {
                    if Instant::now() >= deadline || interrupted() {
                        // The rest stays unread: the lost-write check counts them as
                        // unverified.
                        return;
                    }
                    for _ in 0..FINAL_READ_ATTEMPTS {
                        process += 1;
                        if final_read(&data, TABLE, process, key, recorder) == EventType::Ok {
                            break;
                        }
                    }
                }
            });
        }
    });
}

/// Every operation the cluster remembers (running and recent), for the report.
pub(super) fn final_operations(members: &[u16], admin: &Authorization) -> Vec<serde_json::Value> {
    for m in members {
        let client = ApiClient::new(&http_endpoint(*m)).with_authorization(admin);
        if let Ok(list) = client.operations(false) {
            return list
                .operations
                .iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect();
        }
    }
    Vec::new()
}

/// Every partition of every table, from the first member that answers.
pub(super) fn final_routing(
    members: &[u16],
    admin: &Authorization,
) -> anyhow::Result<BTreeMap<u64, Owner>> {
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
