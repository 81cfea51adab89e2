//! Healing: once the faults stop, the cluster must return to full health within a
//! bound. Each poll asks every member directly and lists what is still wrong; the
//! cluster is healed when a poll finds nothing. Healthy includes: every copy of every
//! partition holds as many items as the others (replicas caught up), and every member
//! accepts a credential issued now (no wall clock still wrong).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use agent::api_client::{ApiClient, Authorization, Method};
use serde::{Deserialize, Serialize};
use shared::api::auth::IssueCredentialRequest;
use shared::auth::Action;
use shared::model::NodeStatus;

use crate::hosts::http_endpoint;

/// Pause between two polls.
const POLL_PAUSE: Duration = Duration::from_millis(500);

/// What an agent says about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentView {
    /// Host.
    pub host: u16,
    /// `/healthz` status (0: no answer).
    pub healthz: u16,
    /// Whether it answered `GET /cluster` (which needs a leader).
    pub serves: bool,
    /// The leader it names.
    pub leader: Option<u64>,
    /// Whether its `agent_raft_is_leader` gauge is 1.
    pub says_leader: bool,
    /// Its metadata replica: applied index, invariant violation, digest.
    pub replica: Option<(u64, Option<String>, String)>,
    /// Items per partition stored here (`agent_partition_items`).
    #[serde(default)]
    pub items: BTreeMap<u64, u64>,
}

/// The outcome of waiting for the cluster to heal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HealReport {
    /// Whether every condition held in one poll within the bound.
    pub healed: bool,
    /// How long after the last fault ended that poll came.
    pub after_ms: Option<u64>,
    /// What was still wrong at the last poll (empty when healed).
    pub problems: Vec<String>,
    /// Agents that answered `/healthz` 200 but could not serve, at the last poll.
    pub healthz_lies: Vec<u16>,
    /// Invariant violations any agent reported in its own replica.
    pub invariant_violations: Vec<String>,
    /// Every agent's view at the last poll.
    pub views: Vec<AgentView>,
}

/// What healthy looks like.
pub struct Expectation<'a> {
    /// Hosts running an agent that belongs to the cluster.
    pub members: &'a [u16],
    /// A host whose drain was asked: DRAINING or DECOMMISSIONED is fine for it.
    pub drained: Option<u16>,
    /// How the checks authenticate (a principal: the checks obtain credentials).
    pub admin: &'a Authorization,
    /// The table whose credentials the checks obtain.
    pub table: &'a str,
    /// Whether a running operation (split, merge, move) is a problem too.
    pub quiet: bool,
}

/// Polls until the cluster is healed or `bound` passes; `between_polls` runs between
/// two polls (the testbed restarts agents that exited there) and ends the wait early by
/// answering false.
pub fn await_healed(
    expect: &Expectation<'_>,
    bound: Duration,
    between_polls: &mut dyn FnMut() -> bool,
) -> HealReport {
    let start = Instant::now();
    loop {
        let views: Vec<AgentView> = expect
            .members
            .iter()
            .map(|m| view(*m, expect.admin))
            .collect();
        let mut problems = agent_problems(&views);
        if let Some(leader) = views.iter().find_map(|v| v.leader) {
            problems.extend(cluster_problems(expect, leader as u16, &views));
            problems.extend(credential_problems(expect));
        }
        let done = problems.is_empty();
        if done || start.elapsed() >= bound || !between_polls() {
            return HealReport {
                healed: done,
                after_ms: done.then(|| start.elapsed().as_millis() as u64),
                healthz_lies: views
                    .iter()
                    .filter(|v| v.healthz == 200 && !v.serves)
                    .map(|v| v.host)
                    .collect(),
                invariant_violations: views
                    .iter()
                    .filter_map(|v| {
                        let violation = v.replica.as_ref()?.1.as_ref()?;
                        Some(format!("agent {}: {violation}", v.host))
                    })
                    .collect(),
                problems,
                views,
            };
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

/// One agent's answers.
fn view(host: u16, admin: &Authorization) -> AgentView {
    let client = ApiClient::new(&http_endpoint(host)).with_authorization(admin);
    let healthz = client
        .raw(Method::Get, "/healthz", None)
        .map(|(s, _)| s)
        .unwrap_or(0);
    let cluster = client.cluster().ok();
    let metrics = client
        .raw(Method::Get, "/metrics", None)
        .map(|(_, text)| text)
        .unwrap_or_default();
    let says_leader = metrics
        .lines()
        .any(|l| l.trim() == "agent_raft_is_leader 1");
    let replica = client
        .metadata_replica()
        .ok()
        .map(|m| (m.applied_index, m.invariant_violation, m.digest));
    AgentView {
        host,
        healthz,
        serves: cluster.is_some(),
        leader: cluster.and_then(|c| c.leader_id),
        says_leader,
        replica,
        items: partition_items(&metrics),
    }
}

/// The `agent_partition_items` series of a metrics page, by partition.
fn partition_items(metrics: &str) -> BTreeMap<u64, u64> {
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("agent_partition_items{partition_id=\"")?;
            let (pid, rest) = rest.split_once("\"}")?;
            Some((pid.parse().ok()?, rest.trim().parse().ok()?))
        })
        .collect()
}

/// What is wrong in the agents' own answers.
fn agent_problems(views: &[AgentView]) -> Vec<String> {
    let mut out = Vec::new();
    for v in views {
        if v.healthz != 200 {
            out.push(format!("agent {}: /healthz {}", v.host, v.healthz));
        }
        if !v.serves {
            out.push(format!("agent {}: GET /cluster fails", v.host));
        }
        if let Some((_, Some(violation), _)) = &v.replica {
            out.push(format!("agent {}: invariant broken: {violation}", v.host));
        }
    }
    let leaders: BTreeSet<Option<u64>> = views.iter().map(|v| v.leader).collect();
    let claimants: Vec<u16> = views
        .iter()
        .filter(|v| v.says_leader)
        .map(|v| v.host)
        .collect();
    if leaders.len() != 1 || leaders.contains(&None) {
        out.push(format!("agents disagree on the leader: {leaders:?}"));
    }
    if claimants.len() != 1 {
        out.push(format!(
            "agents reporting agent_raft_is_leader 1: {claimants:?}"
        ));
    }
    let replicas: BTreeMap<u64, BTreeSet<&str>> = views
        .iter()
        .filter_map(|v| v.replica.as_ref())
        .fold(BTreeMap::new(), |mut m, r| {
            m.entry(r.0).or_default().insert(r.2.as_str());
            m
        });
    if replicas.len() != 1 || replicas.values().any(|d| d.len() != 1) {
        let applied: Vec<(u16, Option<u64>)> = views
            .iter()
            .map(|v| (v.host, v.replica.as_ref().map(|r| r.0)))
            .collect();
        out.push(format!(
            "metadata replicas differ (applied index per agent: {applied:?})"
        ));
    }
    out
}

/// Node statuses and replication, as the leader's agent tells them, and whether the
/// copies of each partition hold the same number of items (`views`).
fn cluster_problems(expect: &Expectation<'_>, leader: u16, views: &[AgentView]) -> Vec<String> {
    let client = ApiClient::new(&http_endpoint(leader)).with_authorization(expect.admin);
    let mut out = Vec::new();
    let cluster_id = match client.cluster().ok().and_then(|c| c.cluster_id) {
        Some(id) => id,
        None => return vec![format!("leader {leader}: no cluster id")],
    };
    match client.nodes(&cluster_id) {
        Ok(nodes) => {
            for n in nodes.nodes {
                let host = n.node_id as u16;
                let fine = match n.status {
                    NodeStatus::Healthy => true,
                    NodeStatus::Draining | NodeStatus::Decommissioned => {
                        expect.drained == Some(host)
                    }
                    _ => false,
                };
                if expect.members.contains(&host) && !fine {
                    out.push(format!("node {host} is {:?}", n.status));
                }
            }
        }
        Err(e) => out.push(format!("listing nodes: {e}")),
    }
    match client.list_tables() {
        Ok(tables) => {
            for t in tables.tables {
                match client.partitions(&t.table_name) {
                    Ok(p) => {
                        let short: Vec<u64> = p
                            .partitions
                            .iter()
                            .filter(|p| p.under_replicated || !p.ready)
                            .map(|p| p.partition_id)
                            .collect();
                        if !short.is_empty() {
                            out.push(format!(
                                "table {}: partitions not fully replicated or not ready: {short:?}",
                                t.table_name
                            ));
                        }
                        for p in &p.partitions {
                            let mut holders = p.replica_node_ids.clone();
                            holders.push(p.primary_node_id);
                            out.extend(copies_differ(p.partition_id, &holders, views));
                        }
                    }
                    Err(e) => out.push(format!("table {}: {e}", t.table_name)),
                }
            }
        }
        Err(e) => out.push(format!("listing tables: {e}")),
    }
    if expect.quiet {
        match client.operations(true) {
            Ok(list) if list.operations.is_empty() => {}
            Ok(list) => out.push(format!(
                "operations running: {:?}",
                list.operations
                    .iter()
                    .map(|o| (o.operation_id, o.kind.as_str(), o.partition_id))
                    .collect::<Vec<_>>()
            )),
            Err(e) => out.push(format!("listing operations: {e}")),
        }
    }
    out
}

/// A problem when the copies of `pid` on `holders` do not hold the same number of
/// items (a replica still catching up, or one that never will).
fn copies_differ(pid: u64, holders: &[u64], views: &[AgentView]) -> Option<String> {
    let counts: Vec<(u64, Option<u64>)> = holders
        .iter()
        .map(|h| {
            let view = views.iter().find(|v| u64::from(v.host) == *h);
            (*h, view.and_then(|v| v.items.get(&pid).copied()))
        })
        .collect();
    let distinct: BTreeSet<Option<u64>> = counts.iter().map(|(_, n)| *n).collect();
    (distinct.len() > 1 || distinct.contains(&None))
        .then(|| format!("partition {pid}: copies hold different item counts {counts:?}"))
}

/// Whether every member accepts a credential the leader issued just now: a wall clock
/// still wrong, on the leader or on a member, shows as a refusal.
fn credential_problems(expect: &Expectation<'_>) -> Vec<String> {
    let Authorization::Principal(principal) = expect.admin else {
        return Vec::new();
    };
    let request = IssueCredentialRequest {
        principal_arn: principal.principal_arn.clone(),
        ttl_seconds: None,
        actions: Some([Action::Read].into()),
    };
    let Some(first) = expect.members.first() else {
        return Vec::new();
    };
    let issued = match ApiClient::new(&http_endpoint(*first))
        .with_authorization(expect.admin)
        .issue_credential(expect.table, &request)
    {
        Ok(issued) => issued,
        Err(e) => return vec![format!("issuing a credential through agent {first}: {e}")],
    };
    let bearer = Authorization::Token(issued.token);
    let path = format!("/tables/{}/partitions", expect.table);
    expect
        .members
        .iter()
        .filter_map(|m| {
            let answer = ApiClient::new(&http_endpoint(*m))
                .with_authorization(&bearer)
                .raw(Method::Get, &path, None);
            match answer {
                Ok((200, _)) => None,
                Ok((status, body)) => Some(format!(
                    "agent {m} answers {status} to a credential issued now: {body}"
                )),
                Err(e) => Some(format!("agent {m}: {e}")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(host: u16) -> AgentView {
        AgentView {
            host,
            healthz: 200,
            serves: true,
            leader: Some(1),
            says_leader: host == 1,
            replica: Some((10, None, "d".into())),
            items: BTreeMap::from([(7, 5)]),
        }
    }

    #[test]
    fn agreeing_agents_have_no_local_problems() {
        let views = [healthy(1), healthy(2), healthy(3)];
        assert_eq!(agent_problems(&views), Vec::<String>::new());
    }

    #[test]
    fn two_leaders_a_lying_healthz_and_diverging_replicas_are_problems() {
        let mut wedged = healthy(2);
        wedged.serves = false;
        wedged.leader = None;
        wedged.says_leader = true;
        wedged.replica = Some((9, None, "e".into()));
        let found = agent_problems(&[healthy(1), wedged, healthy(3)]);
        let text = found.join("\n");
        assert!(text.contains("agent 2: GET /cluster fails"), "{text}");
        assert!(text.contains("disagree on the leader"), "{text}");
        assert!(text.contains("agent_raft_is_leader 1: [1, 2]"), "{text}");
        assert!(text.contains("metadata replicas differ"), "{text}");
    }

    #[test]
    fn a_broken_invariant_is_a_problem() {
        let mut broken = healthy(3);
        broken.replica = Some((10, Some("tiling gap".into()), "d".into()));
        let found = agent_problems(&[healthy(1), healthy(2), broken]);
        assert!(found.iter().any(|p| p.contains("tiling gap")), "{found:?}");
    }

    #[test]
    fn item_counts_are_read_off_the_metrics_page() {
        let page = "# TYPE agent_partition_items gauge\n\
                    agent_partition_items{partition_id=\"9\"} 3\n\
                    agent_partition_items{partition_id=\"12\"} 0\n\
                    agent_partition_ops_per_second{partition_id=\"9\"} 1.5\n";
        assert_eq!(partition_items(page), BTreeMap::from([(9, 3), (12, 0)]));
    }

    #[test]
    fn copies_with_different_counts_or_a_missing_copy_are_a_problem() {
        let views = [healthy(1), healthy(2), healthy(3)];
        assert_eq!(copies_differ(7, &[1, 2, 3], &views), None);
        let mut behind = healthy(2);
        behind.items.insert(7, 4);
        let views = [healthy(1), behind, healthy(3)];
        let found = copies_differ(7, &[1, 2, 3], &views).expect("a problem");
        assert!(found.contains("(2, Some(4))"), "{found}");
        assert!(copies_differ(8, &[1, 2], &[healthy(1), healthy(2)]).is_some());
    }
}
