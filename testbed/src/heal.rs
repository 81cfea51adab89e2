//! Healing: once the faults stop, the cluster must return to full health within a
//! bound. Each poll asks every member directly and lists what is still wrong; the
//! cluster is healed when a poll finds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use agent::client::{ApiClient, Authorization, Method};
use serde::Serialize;
use shared::model::NodeStatus;

use crate::hosts::http_endpoint;

/// Pause between two polls.
const POLL_PAUSE: Duration = Duration::from_millis(500);

/// What an agent says about itself.
#[derive(Debug, Clone, Default, Serialize)]
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
}

/// The outcome of waiting for the cluster to heal.
#[derive(Debug, Clone, Default, Serialize)]
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
    /// How the checks authenticate.
    pub admin: &'a Authorization,
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
            problems.extend(cluster_problems(expect, leader as u16));
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
    let says_leader = client
        .raw(Method::Get, "/metrics", None)
        .map(|(_, text)| text.lines().any(|l| l.trim() == "agent_raft_is_leader 1"))
        .unwrap_or(false);
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
    }
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

/// Node statuses and replication, as the leader's agent tells them.
fn cluster_problems(expect: &Expectation<'_>, leader: u16) -> Vec<String> {
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
                    }
                    Err(e) => out.push(format!("table {}: {e}", t.table_name)),
                }
            }
        }
        Err(e) => out.push(format!("listing tables: {e}")),
    }
    out
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
}
