//! The access-control steps of the random command sequences: principals, access
//! policies, signing keys and revocations, each produced both valid and invalid.

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use shared::auth::{Action, Effect, hash_secret, principal_arn};
use shared::command::{MetaCommand, MetaOutcome};
use shared::model::NodeId;
use shared::state::MetaState;

use super::{NAMES, resolve_name};

/// Principal names: three valid ones that collide, and one invalid.
const PRINCIPALS: [&str; 4] = ["root", "alice", "bob", "no/name"];
/// Key ids: three valid ones that collide, and one invalid.
const KIDS: [&str; 4] = ["k1", "k2", "k3", "bad kid"];

/// One access-control step; resolved against the current state into a command.
#[derive(Debug, Clone)]
pub enum AuthOp {
    /// With `init`, an `InitCluster` goes first (principals need a cluster id).
    CreatePrincipal {
        name: usize,
        admin: bool,
        init: bool,
    },
    /// Resolved to an existing principal, except the last index.
    DeletePrincipal {
        name: usize,
    },
    /// `actions` is a bit set of `Action::ALL` (0: none, refused). Table and principal
    /// are resolved to existing ones, except the last index of each.
    PutPolicy {
        table: usize,
        principal: usize,
        actions: u8,
        deny: bool,
    },
    DeletePolicy {
        table: usize,
        principal: usize,
    },
    /// Flaw 0 gives the identity point, a small-order key that is refused; flaw 1 a
    /// key other than the one the id is usually published with. The node is resolved to
    /// a registered one, except when it is a multiple of 4; from flaw 4 on, to the node
    /// that already published the id (a repeat).
    Publish {
        kid: usize,
        flaw: u8,
        node: NodeId,
        now: u64,
    },
    /// Resolved to a published key, except the last index.
    Retire {
        kid: usize,
        now: u64,
        grace: u64,
    },
    /// With `late`, at the latest trust deadline of the retired keys (drops them all).
    DropKeys {
        now: u64,
        late: bool,
    },
    /// Id 0 is the empty id, refused.
    Revoke {
        jti: u8,
        expires: u64,
    },
    Gc {
        now: u64,
    },
}

pub fn auth_op() -> impl Strategy<Value = AuthOp> {
    let principal = 0..PRINCIPALS.len();
    let table = 0..NAMES.len();
    let kid = 0..KIDS.len();
    let time = 0u64..400;
    prop_oneof![
        5 => (principal.clone(), prop::bool::weighted(0.7), prop::bool::weighted(0.5))
            .prop_map(|(name, admin, init)| AuthOp::CreatePrincipal { name, admin, init }),
        2 => principal.clone().prop_map(|name| AuthOp::DeletePrincipal { name }),
        5 => (table.clone(), principal.clone(), 0u8..8, any::<bool>())
            .prop_map(|(table, principal, actions, deny)| AuthOp::PutPolicy {
                table, principal, actions, deny,
            }),
        2 => (table, principal).prop_map(|(table, principal)| AuthOp::DeletePolicy { table, principal }),
        4 => (kid.clone(), 0u8..8, 1u64..=8, time.clone())
            .prop_map(|(kid, flaw, node, now)| AuthOp::Publish { kid, flaw, node, now }),
        3 => (kid, time.clone(), 0u64..200)
            .prop_map(|(kid, now, grace)| AuthOp::Retire { kid, now, grace }),
        2 => (time.clone(), any::<bool>()).prop_map(|(now, late)| AuthOp::DropKeys { now, late }),
        3 => (0u8..6, time.clone()).prop_map(|(jti, expires)| AuthOp::Revoke { jti, expires }),
        1 => time.prop_map(|now| AuthOp::Gc { now }),
    ]
}

/// The ARN of a principal name in the current cluster (or in an unnamed one).
fn arn(s: &MetaState, principal: usize) -> String {
    principal_arn(s.cluster_id().unwrap_or("none"), PRINCIPALS[principal])
}

/// Mostly an existing principal; the invalid name (never registered) stays itself.
fn existing_arn(s: &MetaState, principal: usize) -> String {
    let arns: Vec<&str> = s.principals().map(|p| p.arn.as_str()).collect();
    if principal + 1 == PRINCIPALS.len() || arns.is_empty() {
        arn(s, principal)
    } else {
        arns[principal % arns.len()].to_string()
    }
}

/// Mostly a published key id; the invalid id (never published) stays itself.
fn existing_kid(s: &MetaState, kid: usize) -> String {
    let kids: Vec<&str> = s.signing_keys().map(|k| k.kid.as_str()).collect();
    if kid + 1 == KIDS.len() || kids.is_empty() {
        KIDS[kid].to_string()
    } else {
        kids[kid % kids.len()].to_string()
    }
}

/// Mostly a registered node.
fn existing_node(s: &MetaState, node: NodeId) -> NodeId {
    let ids: Vec<NodeId> = s.nodes().map(|n| n.node_id).collect();
    if node.is_multiple_of(4) || ids.is_empty() {
        node
    } else {
        ids[node as usize % ids.len()]
    }
}

fn public_key(kid: usize, flaw: u8) -> [u8; 32] {
    let seed = match flaw {
        0 => {
            let mut identity = [0u8; 32];
            identity[0] = 1;
            return identity;
        }
        1 => 100 + kid as u8,
        _ => 1 + kid as u8,
    };
    SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .to_bytes()
}

/// The commands an access-control step stands for in the current state.
pub fn auth_commands(s: &MetaState, op: &AuthOp) -> Vec<MetaCommand> {
    match *op {
        AuthOp::CreatePrincipal { name, admin, init } => {
            let create = MetaCommand::CreatePrincipal {
                name: PRINCIPALS[name].into(),
                secret: hash_secret(PRINCIPALS[name], [name as u8; 16]),
                admin,
                now_ms: 100,
            };
            let name_cluster = MetaCommand::InitCluster {
                cluster_id: "c1".into(),
            };
            if init {
                vec![name_cluster, create]
            } else {
                vec![create]
            }
        }
        ref other => vec![auth_command(s, other)],
    }
}

fn auth_command(s: &MetaState, op: &AuthOp) -> MetaCommand {
    match *op {
        AuthOp::CreatePrincipal { .. } => unreachable!("handled by auth_commands"),
        AuthOp::DeletePrincipal { name } => MetaCommand::DeletePrincipal {
            arn: existing_arn(s, name),
        },
        AuthOp::PutPolicy {
            table,
            principal,
            actions,
            deny,
        } => MetaCommand::PutPolicy {
            table_name: resolve_name(s, table),
            principal_arn: existing_arn(s, principal),
            actions: (0..3)
                .filter(|bit| actions & (1 << bit) != 0)
                .map(|bit| Action::ALL[bit])
                .collect(),
            effect: if deny { Effect::Deny } else { Effect::Allow },
        },
        AuthOp::DeletePolicy { table, principal } => MetaCommand::DeletePolicy {
            table_name: resolve_name(s, table),
            principal_arn: existing_arn(s, principal),
        },
        AuthOp::Publish {
            kid,
            flaw,
            node,
            now,
        } => MetaCommand::PublishSigningKey {
            kid: KIDS[kid].into(),
            public_key: public_key(kid, flaw),
            node_id: s
                .signing_key(KIDS[kid])
                .filter(|_| flaw >= 4)
                .map_or_else(|| existing_node(s, node), |k| k.node_id),
            now_ms: now,
        },
        AuthOp::Retire { kid, now, grace } => MetaCommand::RetireSigningKey {
            kid: existing_kid(s, kid),
            now_ms: now,
            trusted_until_ms: now + grace,
        },
        AuthOp::DropKeys { now, late } => {
            let deadline = s.signing_keys().filter_map(|k| k.trusted_until_ms).max();
            MetaCommand::DropExpiredKeys {
                now_ms: deadline.filter(|_| late).unwrap_or(now),
            }
        }
        AuthOp::Revoke { jti, expires } => MetaCommand::RevokeCredential {
            jti: if jti == 0 {
                String::new()
            } else {
                format!("j{jti}")
            },
            expires_at_ms: expires,
        },
        AuthOp::Gc { now } => MetaCommand::GcRevocations { now_ms: now },
    }
}

/// Checks what an accepted access-control command left behind; `None` if `cmd` is
/// not one.
pub fn check_auth_outcome(
    s: &MetaState,
    cmd: &MetaCommand,
    outcome: &MetaOutcome,
) -> Option<Result<(), TestCaseError>> {
    let result = match (cmd, outcome) {
        (
            MetaCommand::PutPolicy {
                table_name,
                principal_arn,
                actions,
                effect,
            },
            MetaOutcome::PolicyVersion { version },
        ) => {
            let table_id = s.table_by_name(table_name).map(|t| t.table_id);
            let policy = table_id.and_then(|t| s.policy(t, principal_arn));
            let matches = policy.is_some_and(|p| {
                p.version == *version && p.actions == *actions && p.effect == *effect
            });
            check(matches, cmd, outcome)
        }
        (MetaCommand::CreatePrincipal { name, admin, .. }, MetaOutcome::Done) => {
            let arn = principal_arn(s.cluster_id().unwrap_or_default(), name);
            check(
                s.principal(&arn).is_some_and(|p| p.admin == *admin),
                cmd,
                outcome,
            )
        }
        (MetaCommand::DeletePrincipal { arn }, MetaOutcome::Done) => {
            let gone = s.principal(arn).is_none()
                && s.tables()
                    .all(|t| s.policies_of_table(t.table_id).all(|p| p.principal != *arn));
            check(gone, cmd, outcome)
        }
        (MetaCommand::RevokeCredential { jti, .. }, MetaOutcome::Done | MetaOutcome::Unchanged) => {
            check(s.is_revoked(jti), cmd, outcome)
        }
        (MetaCommand::RetireSigningKey { kid, .. }, MetaOutcome::Done | MetaOutcome::Unchanged) => {
            check(
                s.signing_key(kid).is_some_and(|k| !k.is_active()),
                cmd,
                outcome,
            )
        }
        (MetaCommand::DropExpiredKeys { now_ms }, MetaOutcome::Done | MetaOutcome::Unchanged) => {
            let kept = s.signing_keys().count() == s.trusted_keys(*now_ms).count();
            check(kept, cmd, outcome)
        }
        (
            MetaCommand::DeletePolicy { .. }
            | MetaCommand::PublishSigningKey { .. }
            | MetaCommand::GcRevocations { .. },
            MetaOutcome::Done | MetaOutcome::Unchanged,
        ) => Ok(()),
        (
            MetaCommand::CreatePrincipal { .. }
            | MetaCommand::DeletePrincipal { .. }
            | MetaCommand::PutPolicy { .. }
            | MetaCommand::DeletePolicy { .. }
            | MetaCommand::PublishSigningKey { .. }
            | MetaCommand::RetireSigningKey { .. }
            | MetaCommand::DropExpiredKeys { .. }
            | MetaCommand::RevokeCredential { .. }
            | MetaCommand::GcRevocations { .. },
            _,
        ) => check(false, cmd, outcome),
        _ => return None,
    };
    Some(result)
}

fn check(ok: bool, cmd: &MetaCommand, outcome: &MetaOutcome) -> Result<(), TestCaseError> {
    prop_assert!(ok, "{:?} gave {:?}", cmd, outcome);
    Ok(())
}
