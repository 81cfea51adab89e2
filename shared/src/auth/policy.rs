//! Per-table access policies and the per-request decision.
//!
//! A policy says that a principal may (`allow`) or may not (`deny`) perform some
//! actions on one table. Deny wins over allow; no policy means no access. Credentials
//! are issued for the intersection of what is asked and what is allowed at issue time
//! ([`grantable`]), and every request is checked again against the *current* policies
//! ([`check_request`]), so a new deny, a deleted policy or a deleted principal (whose
//! policies go with it) takes effect within metadata propagation time, not at expiry.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Action;
use super::token::Claims;

/// Whether a policy grants or forbids its actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Grants the actions (unless a deny also matches).
    Allow,
    /// Forbids the actions, whatever else allows them.
    Deny,
}

/// One access policy: `effect` for `actions` by `principal` on `table`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Principal ARN.
    pub principal: String,
    /// Table name.
    pub table: String,
    /// Actions covered.
    pub actions: BTreeSet<Action>,
    /// Allow or deny.
    pub effect: Effect,
    /// Version assigned when the policy was last written (returned by the API).
    pub version: u64,
}

impl Policy {
    /// Whether the policy is about `principal` on `table`.
    pub fn applies_to(&self, principal: &str, table: &str) -> bool {
        self.principal == principal && self.table == table
    }
}

/// Whether `principal` may perform `action` on `table`: some policy allows it and none
/// denies it. Policies about other principals or tables are ignored.
pub fn allowed<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    principal: &str,
    table: &str,
    action: Action,
) -> bool {
    let mut allow = false;
    let matching = policies
        .into_iter()
        .filter(|p| p.applies_to(principal, table) && p.actions.contains(&action));
    for policy in matching {
        match policy.effect {
            Effect::Deny => return false,
            Effect::Allow => allow = true,
        }
    }
    allow
}

/// The actions of `asked` that `principal` may perform on `table` now: what a new
/// credential grants.
pub fn grantable<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    principal: &str,
    table: &str,
    asked: &BTreeSet<Action>,
) -> BTreeSet<Action> {
    let mut allow = BTreeSet::new();
    let mut deny = BTreeSet::new();
    for policy in policies
        .into_iter()
        .filter(|p| p.applies_to(principal, table))
    {
        match policy.effect {
            Effect::Allow => allow.extend(policy.actions.iter().copied()),
            Effect::Deny => deny.extend(policy.actions.iter().copied()),
        }
    }
    asked
        .iter()
        .filter(|a| allow.contains(*a) && !deny.contains(*a))
        .copied()
        .collect()
}

/// Why a request with a verified credential was refused. Changes no state: the request
/// is not executed (403 at the API edge, except [`Denied::Expired`], 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The credential expired since it was verified (a cached token outlived `exp`).
    #[error("the credential expired at {exp} (now {now})")]
    Expired {
        /// Expires at.
        exp: u64,
        /// The checker's time.
        now: u64,
    },
    /// The credential is for another table.
    #[error("the credential is for table {granted:?}, not {requested:?}")]
    WrongTable {
        /// The table in the credential.
        granted: String,
        /// The table of the request.
        requested: String,
    },
    /// The credential does not carry the action.
    #[error("the credential does not grant {0}")]
    ActionNotGranted(Action),
    /// The credential's `jti` is revoked.
    #[error("the credential {0:?} is revoked")]
    Revoked(String),
    /// The current policies no longer allow the action (a deny was added, the allow
    /// was removed, or the principal was deleted).
    #[error("the current access policies do not allow {action} on {table:?} to {principal}")]
    NotAllowed {
        /// Principal ARN.
        principal: String,
        /// Table name.
        table: String,
        /// The action.
        action: Action,
    },
}

/// Decides whether a request for `action` on `table`, carrying a credential whose
/// signature was verified (now or earlier: `claims` may come from a cache), may run.
///
/// Checks, in order: not expired at `now_secs` (with `skew_secs`, as
/// [`Claims::check_lifetime`]), the table matches, the credential grants the action,
/// its `jti` is not `revoked`, and the current policies still allow it:
/// `allowed_now(principal, table, action)` answers from the current metadata (for plain
/// policies, [`allowed`]; the state machine adds what a cluster admin may do).
pub fn check_request(
    claims: &Claims,
    table: &str,
    action: Action,
    revoked: &dyn Fn(&str) -> bool,
    allowed_now: &dyn Fn(&str, &str, Action) -> bool,
    now_secs: u64,
    skew_secs: u64,
) -> Result<(), Denied> {
    if claims.exp.saturating_add(skew_secs) <= now_secs {
        return Err(Denied::Expired {
            exp: claims.exp,
            now: now_secs,
        });
    }
    if claims.tbl != table {
        return Err(Denied::WrongTable {
            granted: claims.tbl.clone(),
            requested: table.to_string(),
        });
    }
    if !claims.grants(action) {
        return Err(Denied::ActionNotGranted(action));
    }
    if revoked(&claims.jti) {
        return Err(Denied::Revoked(claims.jti.clone()));
    }
    if !allowed_now(&claims.sub, table, action) {
        return Err(Denied::NotAllowed {
            principal: claims.sub.clone(),
            table: table.to_string(),
            action,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
