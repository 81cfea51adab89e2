//! Access-control commands and accessors: principals, access policies, signing keys
//! and revoked credentials. Like every handler, each validates first and mutates last.

use std::collections::BTreeSet;

use ed25519_dalek::VerifyingKey;

use super::apply::wrong_status;
use super::{MetaState, retain_entries, update_entries};
use crate::auth::secret::validate_principal_name;
use crate::auth::{self, Action, Effect, Policy, SecretHash};
use crate::command::{MetaCommand, MetaError, MetaOutcome, MetaResult};
use crate::model::{NodeId, Principal, SigningKeyRecord, TableId, TableStatus, UnixMillis};
use crate::validate::{
    KEY_ID_MAX_LEN, MAX_PRINCIPALS, MAX_REVOCATIONS, MAX_SIGNING_KEYS, TOKEN_ID_MAX_LEN,
};

fn invalid(msg: String) -> MetaError {
    MetaError::Invalid(msg)
}

/// Checks a signing key id: 1 to [`KEY_ID_MAX_LEN`] bytes of `[A-Za-z0-9_.-]` (it is
/// written into every token header and the JWKS document).
fn check_key_id(kid: &str) -> Result<(), MetaError> {
    let charset_ok = kid
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if kid.is_empty() || kid.len() > KEY_ID_MAX_LEN || !charset_ok {
        return Err(invalid(format!(
            "signing key id must be 1 to {KEY_ID_MAX_LEN} characters of A-Z a-z 0-9 _ . -"
        )));
    }
    Ok(())
}

/// Checks that `bytes` are an Ed25519 public key that can verify a strict signature:
/// a valid curve point, not of small order.
fn check_public_key(kid: &str, bytes: &[u8; 32]) -> Result<(), MetaError> {
    match VerifyingKey::from_bytes(bytes) {
        Ok(key) if !key.is_weak() => Ok(()),
        Ok(_) => Err(invalid(format!(
            "signing key {kid}: the public key is of small order"
        ))),
        Err(_) => Err(invalid(format!(
            "signing key {kid}: the public key is not an Ed25519 point"
        ))),
    }
}

/// Checks a credential id (`jti`): 1 to [`TOKEN_ID_MAX_LEN`] bytes.
fn check_token_id(jti: &str) -> Result<(), MetaError> {
    if jti.is_empty() || jti.len() > TOKEN_ID_MAX_LEN {
        return Err(invalid(format!(
            "credential id must be 1 to {TOKEN_ID_MAX_LEN} bytes long"
        )));
    }
    Ok(())
}

/// Accessors.
impl MetaState {
    /// A principal by ARN.
    pub fn principal(&self, arn: &str) -> Option<&Principal> {
        self.principals.get(arn)
    }

    /// All principals, ordered by ARN.
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.principals.values()
    }

    /// The usable access policies of a table, ordered by principal ARN: none if the
    /// table is unknown or DELETING.
    pub fn policies_of_table(&self, table_id: TableId) -> impl Iterator<Item = &Policy> {
        self.policies
            .get(&table_id)
            .filter(|_| self.table_usable(table_id))
            .into_iter()
            .flat_map(|by_principal| by_principal.values())
    }

    /// The usable access policy of a principal on a table (`None` if the table is
    /// DELETING).
    pub fn policy(&self, table_id: TableId, principal_arn: &str) -> Option<&Policy> {
        if !self.table_usable(table_id) {
            return None;
        }
        self.policies.get(&table_id)?.get(principal_arn)
    }

    /// A published signing key by id (active, or retired and not yet dropped).
    pub fn signing_key(&self, kid: &str) -> Option<&SigningKeyRecord> {
        self.signing_keys.get(kid)
    }

    /// Every published signing key, ordered by id.
    pub fn signing_keys(&self) -> impl Iterator<Item = &SigningKeyRecord> {
        self.signing_keys.values()
    }

    /// The keys that verify tokens at `now_ms`: not retired, or retired and still
    /// trusted. Ordered by id.
    pub fn trusted_keys(&self, now_ms: UnixMillis) -> impl Iterator<Item = &SigningKeyRecord> {
        self.signing_keys
            .values()
            .filter(move |k| k.is_trusted_at(now_ms))
    }

    /// The key `node_id` signs with: its newest non-retired key (latest `created_at_ms`,
    /// then greatest id). Tokens are signed by the active key of the leader's node.
    pub fn active_signing_key(&self, node_id: NodeId) -> Option<&SigningKeyRecord> {
        self.signing_keys
            .values()
            .filter(|k| k.node_id == node_id && k.is_active())
            .max_by(|a, b| (a.created_at_ms, &a.kid).cmp(&(b.created_at_ms, &b.kid)))
    }

    /// Whether the credential `jti` is revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revocations.contains_key(jti)
    }

    /// Whether some revocation is for a token expired at `now_ms` (`GcRevocations`
    /// would drop it).
    pub fn has_expired_revocations(&self, now_ms: UnixMillis) -> bool {
        self.revocations.values().any(|exp| *exp <= now_ms)
    }

    /// Number of remembered revocations (at most [`MAX_REVOCATIONS`]).
    pub fn revocation_count(&self) -> usize {
        self.revocations.len()
    }

    /// Whether `principal` may perform `action` on the table named `table` under the
    /// current metadata (see [`MetaState::grantable_actions`]).
    pub fn access_allowed(&self, principal: &str, table: &str, action: Action) -> bool {
        !self
            .grantable_actions(principal, table, &BTreeSet::from([action]))
            .is_empty()
    }

    /// Whether `principal` may perform some action on the table named `table`: the
    /// tables a principal may see (list, describe, its partitions and operations).
    pub fn table_visible_to(&self, principal: &str, table: &str) -> bool {
        !self
            .grantable_actions(principal, table, &BTreeSet::from(crate::auth::Action::ALL))
            .is_empty()
    }

    /// The actions of `asked` that `principal` may perform on the table named `table`
    /// now. A cluster admin may do anything no deny policy of its own forbids (it can
    /// grant itself anything anyway, so requiring an allow would only add a step);
    /// anyone else needs an allow and no deny. An unknown (or deleted) principal, an
    /// unknown table or a DELETING one gets nothing.
    pub fn grantable_actions(
        &self,
        principal: &str,
        table: &str,
        asked: &BTreeSet<Action>,
    ) -> BTreeSet<Action> {
        let (Some(who), Some(table_id)) = (
            self.principals.get(principal),
            self.table_ids_by_name.get(table).copied(),
        ) else {
            return BTreeSet::new();
        };
        if !self.table_usable(table_id) {
            return BTreeSet::new();
        }
        let policies = self.policies_of_table(table_id);
        if !who.admin {
            return auth::grantable(policies, principal, table, asked);
        }
        let denied: BTreeSet<Action> = policies
            .filter(|p| p.applies_to(principal, table) && p.effect == Effect::Deny)
            .flat_map(|p| p.actions.iter().copied())
            .collect();
        asked.difference(&denied).copied().collect()
    }

    fn table_usable(&self, table_id: TableId) -> bool {
        self.tables
            .get(&table_id)
            .is_some_and(|t| t.status != TableStatus::Deleting)
    }
}

/// Handlers.
impl MetaState {
    /// Routes an access-control command to its handler.
    pub(super) fn dispatch_auth(&mut self, cmd: &MetaCommand) -> MetaResult {
        match cmd {
            MetaCommand::CreatePrincipal {
                name,
                secret,
                admin,
                now_ms,
            } => self.create_principal(name, secret, *admin, *now_ms),
            MetaCommand::DeletePrincipal { arn } => self.delete_principal(arn),
            MetaCommand::PutPolicy {
                table_name,
                principal_arn,
                actions,
                effect,
            } => self.put_policy(table_name, principal_arn, actions, *effect),
            MetaCommand::DeletePolicy {
                table_name,
                principal_arn,
            } => self.delete_policy(table_name, principal_arn),
            MetaCommand::PublishSigningKey {
                kid,
                public_key,
                node_id,
                now_ms,
            } => self.publish_signing_key(kid, public_key, *node_id, *now_ms),
            MetaCommand::RetireSigningKey {
                kid,
                now_ms,
                trusted_until_ms,
            } => self.retire_signing_key(kid, *now_ms, *trusted_until_ms),
            MetaCommand::DropExpiredKeys { now_ms } => self.drop_expired_keys(*now_ms),
            MetaCommand::RevokeCredential { jti, expires_at_ms } => {
                self.revoke_credential(jti, *expires_at_ms)
            }
            MetaCommand::GcRevocations { now_ms } => self.gc_revocations(*now_ms),
            other => unreachable!("{other:?} is not an access-control command"),
        }
    }

    fn create_principal(
        &mut self,
        name: &str,
        secret: &SecretHash,
        admin: bool,
        now_ms: UnixMillis,
    ) -> MetaResult {
        let Some(cluster_id) = self.cluster_id.as_deref() else {
            return Err(invalid(
                "the cluster has no id yet: InitCluster comes before any principal".into(),
            ));
        };
        validate_principal_name(name).map_err(|e| invalid(e.to_string()))?;
        let arn = auth::principal_arn(cluster_id, name);
        if self.principals.contains_key(&arn) {
            return Err(MetaError::PrincipalExists(arn));
        }
        if self.principals.len() >= MAX_PRINCIPALS {
            return Err(invalid(format!(
                "the cluster reached the limit of {MAX_PRINCIPALS} principals"
            )));
        }
        if !admin && self.principals.is_empty() {
            return Err(invalid(format!(
                "the first principal must be an admin, {arn} is not"
            )));
        }
        let principal = Principal {
            arn: arn.clone(),
            name: name.to_string(),
            secret: secret.clone(),
            admin,
            created_at_ms: now_ms,
        };
        self.principals.insert(arn, principal);
        Ok(MetaOutcome::Done)
    }

    fn delete_principal(&mut self, arn: &str) -> MetaResult {
        let principal = self
            .principals
            .get(arn)
            .ok_or_else(|| MetaError::PrincipalNotFound(arn.to_string()))?;
        let other_admin = self.principals.values().any(|p| p.admin && p.arn != arn);
        if principal.admin && !other_admin {
            return Err(MetaError::LastAdmin(arn.to_string()));
        }
        self.principals.remove(arn);
        update_entries(
            &mut self.policies,
            |by_principal| by_principal.contains_key(arn),
            |by_principal| {
                by_principal.remove(arn);
            },
        );
        retain_entries(&mut self.policies, |_, by_principal| {
            !by_principal.is_empty()
        });
        Ok(MetaOutcome::Done)
    }

    fn put_policy(
        &mut self,
        table_name: &str,
        principal_arn: &str,
        actions: &BTreeSet<Action>,
        effect: Effect,
    ) -> MetaResult {
        if actions.is_empty() {
            return Err(invalid("an access policy needs at least one action".into()));
        }
        let table_id = self.table_id_by_name(table_name)?;
        let table = self.table_by_id(table_id)?;
        if table.status == TableStatus::Deleting {
            return Err(wrong_status(table, "CREATING, ACTIVE or SCALING"));
        }
        if !self.principals.contains_key(principal_arn) {
            return Err(MetaError::PrincipalNotFound(principal_arn.to_string()));
        }
        let by_principal = self.policies.entry(table_id).or_default();
        let version = by_principal.get(principal_arn).map_or(1, |p| p.version + 1);
        let policy = Policy {
            principal: principal_arn.to_string(),
            table: table_name.to_string(),
            actions: actions.clone(),
            effect,
            version,
        };
        by_principal.insert(principal_arn.to_string(), policy);
        Ok(MetaOutcome::PolicyVersion { version })
    }

    fn delete_policy(&mut self, table_name: &str, principal_arn: &str) -> MetaResult {
        let table_id = self.table_id_by_name(table_name)?;
        let Some(by_principal) = self.policies.get_mut(&table_id) else {
            return Ok(MetaOutcome::Unchanged);
        };
        if by_principal.remove(principal_arn).is_none() {
            return Ok(MetaOutcome::Unchanged);
        }
        if by_principal.is_empty() {
            self.policies.remove(&table_id);
        }
        Ok(MetaOutcome::Done)
    }

    fn publish_signing_key(
        &mut self,
        kid: &str,
        public_key: &[u8; 32],
        node_id: NodeId,
        now_ms: UnixMillis,
    ) -> MetaResult {
        check_key_id(kid)?;
        check_public_key(kid, public_key)?;
        if !self.nodes.contains_key(&node_id) {
            return Err(MetaError::UnknownNode(node_id));
        }
        if let Some(known) = self.signing_keys.get(kid) {
            if known.public_key == *public_key && known.node_id == node_id {
                return Ok(MetaOutcome::Unchanged);
            }
            return Err(invalid(format!(
                "signing key id {kid} is already published with another key"
            )));
        }
        if self.signing_keys.len() >= MAX_SIGNING_KEYS {
            return Err(invalid(format!(
                "{MAX_SIGNING_KEYS} signing keys are published; drop expired keys first"
            )));
        }
        let record = SigningKeyRecord {
            kid: kid.to_string(),
            public_key: *public_key,
            node_id,
            created_at_ms: now_ms,
            retired_at_ms: None,
            trusted_until_ms: None,
        };
        self.signing_keys.insert(kid.to_string(), record);
        Ok(MetaOutcome::Done)
    }

    /// Retires a key. Retiring it again can only shorten its trust, never extend it: a
    /// key cut off at once (compromised) is not trusted again by a later routine retire.
    fn retire_signing_key(
        &mut self,
        kid: &str,
        now_ms: UnixMillis,
        trusted_until_ms: UnixMillis,
    ) -> MetaResult {
        let key = self
            .signing_keys
            .get(kid)
            .ok_or_else(|| invalid(format!("signing key {kid:?} is not published")))?;
        let until = key
            .trusted_until_ms
            .map_or(trusted_until_ms, |old| old.min(trusted_until_ms));
        if key.trusted_until_ms == Some(until) {
            return Ok(MetaOutcome::Unchanged);
        }
        let key = self
            .signing_keys
            .get_mut(kid)
            .expect("key validated before mutation");
        key.retired_at_ms.get_or_insert(now_ms);
        key.trusted_until_ms = Some(until);
        Ok(MetaOutcome::Done)
    }

    fn drop_expired_keys(&mut self, now_ms: UnixMillis) -> MetaResult {
        let before = self.signing_keys.len();
        retain_entries(&mut self.signing_keys, |_, k| k.is_trusted_at(now_ms));
        Ok(changed(self.signing_keys.len() != before))
    }

    fn revoke_credential(&mut self, jti: &str, expires_at_ms: UnixMillis) -> MetaResult {
        check_token_id(jti)?;
        match self.revocations.get(jti) {
            Some(known) if *known >= expires_at_ms => return Ok(MetaOutcome::Unchanged),
            Some(_) => {}
            None if self.revocations.len() >= MAX_REVOCATIONS => {
                return Err(invalid(format!(
                    "the revocation list is full ({MAX_REVOCATIONS} credentials); entries \
                     leave it when their token expires (GcRevocations)"
                )));
            }
            None => {}
        }
        // A later expiry for a known id keeps it revoked for longer; never shorter.
        self.revocations.insert(jti.to_string(), expires_at_ms);
        Ok(MetaOutcome::Done)
    }

    fn gc_revocations(&mut self, now_ms: UnixMillis) -> MetaResult {
        let before = self.revocations.len();
        retain_entries(&mut self.revocations, |_, expires_at_ms| {
            *expires_at_ms > now_ms
        });
        Ok(changed(self.revocations.len() != before))
    }
}

fn changed(yes: bool) -> MetaOutcome {
    if yes {
        MetaOutcome::Done
    } else {
        MetaOutcome::Unchanged
    }
}
