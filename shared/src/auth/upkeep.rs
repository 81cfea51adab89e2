//! The signing key keeper's decisions (the leader's voter signs credentials): publish
//! its own key when the metadata does not have it, replace it when it was retired while
//! another voter led or is older than the rotation period, retire every other active
//! key (former leaders', trusted for their grace period), drop keys past their grace
//! period, and forget revocations of expired tokens.

use crate::model::{NodeId, UnixMillis};
use crate::state::MetaState;

/// What the leader does with its own signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnKey {
    /// Nothing: published, active and within its rotation period.
    Keep,
    /// Publish it: the metadata does not know it.
    Publish,
    /// Replace it with a new one: retired, or older than the rotation period.
    Rotate,
}

/// One round of upkeep; nothing to do while the leader is not registered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUpkeep {
    /// This leader's key.
    pub own: OwnKey,
    /// Other active keys to retire (done once the own key is in place).
    pub retire: Vec<String>,
    /// Some key is past its grace period: drop such keys.
    pub drop_untrusted: bool,
    /// Some revocation is of an expired token: forget such revocations.
    pub gc_revocations: bool,
}

/// The upkeep the leader `me`, signing with `current_kid`, owes at `now_ms`; `None`
/// while `me` is not a registered node.
pub fn plan_key_upkeep(
    state: &MetaState,
    me: NodeId,
    current_kid: &str,
    now_ms: UnixMillis,
    rotation_period_ms: u64,
) -> Option<KeyUpkeep> {
    state.node(me)?;
    let own = match state.signing_key(current_kid) {
        None => OwnKey::Publish,
        Some(r) if !r.is_active() || now_ms >= r.created_at_ms + rotation_period_ms => {
            OwnKey::Rotate
        }
        Some(_) => OwnKey::Keep,
    };
    Some(KeyUpkeep {
        own,
        retire: state
            .signing_keys()
            .filter(|k| k.is_active() && k.kid != current_kid)
            .map(|k| k.kid.clone())
            .collect(),
        drop_untrusted: state.signing_keys().any(|k| !k.is_trusted_at(now_ms)),
        gc_revocations: state.has_expired_revocations(now_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::MetaCommand;
    use crate::testkit::cluster;

    const DAY_MS: u64 = 86_400_000;

    fn publish(s: &mut MetaState, kid: &str, node_id: NodeId, now_ms: u64) {
        let seed = kid.len() as u8 + node_id as u8;
        let public_key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes();
        s.apply(&MetaCommand::PublishSigningKey {
            kid: kid.into(),
            public_key,
            node_id,
            now_ms,
        })
        .unwrap();
    }

    #[test]
    fn an_unregistered_leader_waits_and_an_unknown_key_is_published() {
        let s = cluster(&["a", "b"]);
        assert_eq!(plan_key_upkeep(&s, 9, "k1", 0, DAY_MS), None);
        let plan = plan_key_upkeep(&s, 1, "k1", 0, DAY_MS).unwrap();
        assert_eq!(plan.own, OwnKey::Publish);
        assert!(plan.retire.is_empty() && !plan.drop_untrusted && !plan.gc_revocations);
    }

    #[test]
    fn a_new_leader_retires_the_former_key_and_rotates_its_own_when_old_or_retired() {
        let mut s = cluster(&["a", "b"]);
        publish(&mut s, "k2", 2, 0);
        publish(&mut s, "k1", 1, 10);
        let plan = plan_key_upkeep(&s, 1, "k1", 20, DAY_MS).unwrap();
        assert_eq!(plan.own, OwnKey::Keep);
        assert_eq!(plan.retire, vec!["k2".to_string()]);
        let old = plan_key_upkeep(&s, 1, "k1", 10 + DAY_MS, DAY_MS).unwrap();
        assert_eq!(old.own, OwnKey::Rotate);
        s.apply(&MetaCommand::RetireSigningKey {
            kid: "k1".into(),
            now_ms: 30,
            trusted_until_ms: 1_000,
        })
        .unwrap();
        let retired = plan_key_upkeep(&s, 1, "k1", 40, DAY_MS).unwrap();
        assert_eq!(retired.own, OwnKey::Rotate);
        let past_grace = plan_key_upkeep(&s, 1, "k1", 2_000, DAY_MS).unwrap();
        assert!(past_grace.drop_untrusted);
    }
}
