//! Unit tests of the access-control commands: principals, access policies, signing
//! keys and revocations. Every rejection is checked to leave the state unchanged.

use super::*;
use crate::auth::{Action, Effect, SecretHash, hash_secret};
use crate::command::ErrorClass;
use crate::validate::{
    KEY_ID_MAX_LEN, MAX_PRINCIPALS, MAX_REVOCATIONS, MAX_SIGNING_KEYS, TOKEN_ID_MAX_LEN,
};
use ed25519_dalek::{SigningKey, VerifyingKey};

const ADMIN: &str = "arn:c1:principal/root";
const ALICE: &str = "arn:c1:principal/alice";

fn secret(n: u8) -> SecretHash {
    hash_secret("not-a-real-secret", [n; 16])
}

fn create_principal(name: &str, admin: bool) -> MetaCommand {
    MetaCommand::CreatePrincipal {
        name: name.into(),
        secret: secret(7),
        admin,
        now_ms: NOW,
    }
}

fn delete_principal(arn: &str) -> MetaCommand {
    MetaCommand::DeletePrincipal { arn: arn.into() }
}

fn put(table: &str, arn: &str, actions: &[Action], effect: Effect) -> MetaCommand {
    MetaCommand::PutPolicy {
        table_name: table.into(),
        principal_arn: arn.into(),
        actions: actions.iter().copied().collect(),
        effect,
    }
}

fn delete_policy(table: &str, arn: &str) -> MetaCommand {
    MetaCommand::DeletePolicy {
        table_name: table.into(),
        principal_arn: arn.into(),
    }
}

fn version(s: &mut MetaState, cmd: MetaCommand) -> u64 {
    match ok(s, cmd) {
        MetaOutcome::PolicyVersion { version } => version,
        other => panic!("unexpected {other:?}"),
    }
}

/// The public key of the signing key made from `seed`.
fn public_key(seed: u8) -> [u8; 32] {
    SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .to_bytes()
}

fn publish(kid: &str, seed: u8, node_id: NodeId, now_ms: u64) -> MetaCommand {
    MetaCommand::PublishSigningKey {
        kid: kid.into(),
        public_key: public_key(seed),
        node_id,
        now_ms,
    }
}

fn retire(kid: &str, trusted_until_ms: u64) -> MetaCommand {
    MetaCommand::RetireSigningKey {
        kid: kid.into(),
        now_ms: NOW + 10,
        trusted_until_ms,
    }
}

fn revoke(jti: &str, expires_at_ms: u64) -> MetaCommand {
    MetaCommand::RevokeCredential {
        jti: jti.into(),
        expires_at_ms,
    }
}

/// A cluster with table "orders" ACTIVE, admin `root` and plain principal `alice`.
fn with_principals() -> (MetaState, TableId) {
    let (mut s, t) = active();
    ok(&mut s, create_principal("root", true));
    ok(&mut s, create_principal("alice", false));
    (s, t)
}

fn assert_error(e: &MetaError, class: ErrorClass, code: &str) {
    assert_eq!((e.class(), e.code()), (class, code), "{e}");
}

#[test]
fn create_principal_accepted_then_exists() {
    let (s, _) = with_principals();
    let alice = s.principal(ALICE).unwrap();
    assert_eq!(
        (alice.name.as_str(), alice.admin, alice.created_at_ms),
        ("alice", false, NOW)
    );
    assert_eq!(alice.secret, secret(7));
    assert!(s.principal(ADMIN).unwrap().admin);
    let arns: Vec<&str> = s.principals().map(|p| p.arn.as_str()).collect();
    assert_eq!(arns, [ALICE, ADMIN], "ordered by ARN");
    let mut s = s;
    let e = reject(&mut s, create_principal("alice", true));
    assert_eq!(e, MetaError::PrincipalExists(ALICE.into()));
    assert_error(&e, ErrorClass::Conflict, "PrincipalExists");
}

#[test]
fn create_principal_rejections() {
    let mut bare = MetaState::new();
    let e = reject(&mut bare, create_principal("root", true));
    assert!(matches!(e, MetaError::Invalid(m) if m.contains("InitCluster")));
    let mut s = cluster();
    for name in ["", "has space", "a/b", &"x".repeat(65)] {
        let e = reject(&mut s, create_principal(name, true));
        assert_error(&e, ErrorClass::BadRequest, "InvalidRequest");
    }
    let e = reject(&mut s, create_principal("alice", false));
    assert!(matches!(e, MetaError::Invalid(m) if m.contains("first principal must be an admin")));
    ok(&mut s, create_principal("root", true));
    ok(&mut s, create_principal("alice", false));
}

#[test]
fn create_principal_limit() {
    let (mut s, _) = with_principals();
    let template = s.principal(ALICE).unwrap().clone();
    for i in s.principals.len()..MAX_PRINCIPALS {
        let name = format!("p{i}");
        let arn = crate::auth::principal_arn("c1", &name);
        let p = Principal {
            arn: arn.clone(),
            name,
            ..template.clone()
        };
        s.principals.insert(arn, p);
    }
    let e = reject(&mut s, create_principal("onemore", true));
    assert!(matches!(e, MetaError::Invalid(m) if m.contains("limit")));
}

#[test]
fn delete_principal_removes_it_and_its_policies() {
    let (mut s, t) = with_principals();
    let other = create(&mut s, "other");
    for table in ["orders", "other"] {
        version(&mut s, put(table, ALICE, &[Action::Read], Effect::Allow));
        version(&mut s, put(table, ADMIN, &[Action::Admin], Effect::Allow));
    }
    ok(&mut s, delete_principal(ALICE));
    assert!(s.principal(ALICE).is_none());
    for table_id in [t, other] {
        let left: Vec<&str> = s
            .policies_of_table(table_id)
            .map(|p| p.principal.as_str())
            .collect();
        assert_eq!(left, [ADMIN]);
    }
    let e = reject(&mut s, delete_principal(ALICE));
    assert_eq!(e, MetaError::PrincipalNotFound(ALICE.into()));
    assert_error(&e, ErrorClass::NotFound, "PrincipalNotFound");
    // The map of a table whose only policy went is removed too.
    ok(&mut s, create_principal("bob", false));
    let bob = "arn:c1:principal/bob";
    version(&mut s, put("other", bob, &[Action::Read], Effect::Deny));
    ok(&mut s, delete_policy("other", ADMIN));
    ok(&mut s, delete_principal(bob));
    assert!(!s.policies.contains_key(&other));
}

#[test]
fn the_last_admin_cannot_be_deleted() {
    let (mut s, _) = with_principals();
    let e = reject(&mut s, delete_principal(ADMIN));
    assert_eq!(e, MetaError::LastAdmin(ADMIN.into()));
    assert_error(&e, ErrorClass::Conflict, "LastAdmin");
    // Not even once it is the only principal left.
    ok(&mut s, delete_principal(ALICE));
    reject(&mut s, delete_principal(ADMIN));
    // With a second admin, either may go, but not both.
    ok(&mut s, create_principal("root2", true));
    ok(&mut s, delete_principal(ADMIN));
    let e = reject(&mut s, delete_principal("arn:c1:principal/root2"));
    assert_eq!(e.code(), "LastAdmin");
}

#[test]
fn put_policy_versions_grow_per_table_and_principal() {
    let (mut s, t) = with_principals();
    assert_eq!(
        version(&mut s, put("orders", ALICE, &[Action::Read], Effect::Allow)),
        1
    );
    let both = [Action::Read, Action::Write];
    assert_eq!(
        version(&mut s, put("orders", ALICE, &both, Effect::Deny)),
        2
    );
    // The same content again is still a new version.
    assert_eq!(
        version(&mut s, put("orders", ALICE, &both, Effect::Deny)),
        3
    );
    assert_eq!(
        version(
            &mut s,
            put("orders", ADMIN, &[Action::Admin], Effect::Allow)
        ),
        1,
        "versions are per principal"
    );
    let p = s.policy(t, ALICE).unwrap();
    assert_eq!(
        (p.table.as_str(), p.effect, p.version),
        ("orders", Effect::Deny, 3)
    );
    assert_eq!(p.actions, both.into_iter().collect::<BTreeSet<_>>());
    let policies: Vec<&crate::auth::Policy> = s.policies_of_table(t).collect();
    assert!(!crate::auth::allowed(
        policies.iter().copied(),
        ALICE,
        "orders",
        Action::Read
    ));
    assert!(crate::auth::allowed(
        policies,
        ADMIN,
        "orders",
        Action::Admin
    ));
    // After a delete the next put starts over.
    ok(&mut s, delete_policy("orders", ALICE));
    assert_eq!(
        version(&mut s, put("orders", ALICE, &[Action::Read], Effect::Allow)),
        1
    );
}

#[test]
fn put_policy_rejections() {
    let (mut s, _) = with_principals();
    let e = reject(&mut s, put("orders", ALICE, &[], Effect::Allow));
    assert_error(&e, ErrorClass::BadRequest, "InvalidRequest");
    let e = reject(&mut s, put("nope", ALICE, &[Action::Read], Effect::Allow));
    assert_eq!(e, MetaError::TableNotFound("nope".into()));
    let bob = "arn:c1:principal/bob";
    let e = reject(&mut s, put("orders", bob, &[Action::Read], Effect::Allow));
    assert_eq!(e, MetaError::PrincipalNotFound(bob.into()));
    ok(&mut s, delete("orders"));
    let e = reject(&mut s, put("orders", ALICE, &[Action::Read], Effect::Allow));
    assert!(is_wrong_status(&e));
    assert_eq!(e.class(), ErrorClass::Conflict);
}

#[test]
fn delete_policy_then_repeat() {
    let (mut s, t) = with_principals();
    version(&mut s, put("orders", ALICE, &[Action::Read], Effect::Allow));
    ok(&mut s, delete_policy("orders", ALICE));
    assert!(s.policy(t, ALICE).is_none());
    assert!(!s.policies.contains_key(&t), "no empty map left behind");
    let once = s.clone();
    assert_eq!(
        ok(&mut s, delete_policy("orders", ALICE)),
        MetaOutcome::Unchanged
    );
    assert_eq!(
        ok(&mut s, delete_policy("orders", "arn:c1:principal/bob")),
        MetaOutcome::Unchanged
    );
    assert_eq!(s, once);
    let e = reject(&mut s, delete_policy("nope", ALICE));
    assert_eq!(e, MetaError::TableNotFound("nope".into()));
}

#[test]
fn policies_are_unusable_while_deleting_and_go_with_the_purge() {
    let (mut s, t) = with_principals();
    version(&mut s, put("orders", ALICE, &[Action::Read], Effect::Allow));
    ok(&mut s, delete("orders"));
    assert_eq!(s.policies_of_table(t).count(), 0);
    assert!(s.policy(t, ALICE).is_none());
    // Removing one from a DELETING table is allowed (it only takes access away).
    let mut removable = s.clone();
    ok(&mut removable, delete_policy("orders", ALICE));
    for node_id in 1..=4 {
        let ids: Vec<PartitionId> = s
            .node(node_id)
            .unwrap()
            .partition_ids
            .iter()
            .copied()
            .collect();
        let cmd = MetaCommand::PartitionsReleased {
            node_id,
            partition_ids: ids,
        };
        ok(&mut s, cmd);
    }
    ok(&mut s, MetaCommand::PurgeTable { table_id: t });
    assert!(s.policies.is_empty());
    let again = create(&mut s, "orders");
    assert_eq!(
        s.policies_of_table(again).count(),
        0,
        "a new table starts bare"
    );
    assert!(s.principal(ALICE).is_some(), "principals outlive tables");
}

#[test]
fn publish_signing_key_accepted_and_repeated() {
    let mut s = cluster();
    ok(&mut s, publish("k1", 1, 1, NOW));
    let k = s.signing_key("k1").unwrap();
    assert_eq!(
        (
            k.public_key,
            k.node_id,
            k.created_at_ms,
            k.retired_at_ms,
            k.trusted_until_ms
        ),
        (public_key(1), 1, NOW, None, None)
    );
    let once = s.clone();
    assert_eq!(
        ok(&mut s, publish("k1", 1, 1, NOW + 5)),
        MetaOutcome::Unchanged
    );
    assert_eq!(s, once);
    let e = reject(&mut s, publish("k1", 2, 1, NOW));
    assert!(matches!(e, MetaError::Invalid(m) if m.contains("already published")));
    reject(&mut s, publish("k1", 1, 2, NOW));
}

#[test]
fn publish_signing_key_rejections() {
    let mut s = cluster();
    for kid in ["", "a b", "k\"", &"k".repeat(KEY_ID_MAX_LEN + 1)] {
        let e = reject(&mut s, publish(kid, 1, 1, NOW));
        assert_error(&e, ErrorClass::BadRequest, "InvalidRequest");
    }
    let not_a_point = (0u8..=255)
        .map(|b| [b; 32])
        .find(|k| VerifyingKey::from_bytes(k).is_err())
        .expect("some byte pattern is off the curve");
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for public_key in [not_a_point, identity] {
        let cmd = MetaCommand::PublishSigningKey {
            kid: "k1".into(),
            public_key,
            node_id: 1,
            now_ms: NOW,
        };
        let e = reject(&mut s, cmd);
        assert!(matches!(e, MetaError::Invalid(m) if m.contains("public key")));
    }
    assert_eq!(
        reject(&mut s, publish("k1", 1, 99, NOW)),
        MetaError::UnknownNode(99)
    );
}

#[test]
fn publish_signing_key_limit() {
    let mut s = cluster();
    ok(&mut s, publish("k0", 1, 1, NOW));
    let template = s.signing_key("k0").unwrap().clone();
    for i in 1..MAX_SIGNING_KEYS {
        let kid = format!("k{i}");
        let record = SigningKeyRecord {
            kid: kid.clone(),
            ..template.clone()
        };
        s.signing_keys.insert(kid, record);
    }
    let e = reject(&mut s, publish("last", 2, 1, NOW));
    assert!(matches!(e, MetaError::Invalid(m) if m.contains("drop expired keys")));
}

#[test]
fn the_active_key_is_the_newest_unretired_key_of_the_node() {
    let mut s = cluster();
    assert!(s.active_signing_key(1).is_none());
    ok(&mut s, publish("k-old", 1, 1, NOW));
    ok(&mut s, publish("k-new", 2, 1, NOW + 1));
    ok(&mut s, publish("k-other", 3, 2, NOW + 2));
    assert_eq!(s.active_signing_key(1).unwrap().kid, "k-new");
    assert_eq!(s.active_signing_key(2).unwrap().kid, "k-other");
    ok(&mut s, retire("k-new", NOW + 1_000));
    assert_eq!(s.active_signing_key(1).unwrap().kid, "k-old");
    ok(&mut s, retire("k-old", NOW + 1_000));
    assert!(s.active_signing_key(1).is_none());
    assert!(s.active_signing_key(3).is_none());
}

#[test]
fn retire_signing_key_keeps_it_trusted_until_its_deadline() {
    let mut s = cluster();
    ok(&mut s, publish("k1", 1, 1, NOW));
    ok(&mut s, publish("k2", 2, 1, NOW + 1));
    ok(&mut s, retire("k1", NOW + 1_000));
    let k = s.signing_key("k1").unwrap();
    assert_eq!(
        (k.retired_at_ms, k.trusted_until_ms),
        (Some(NOW + 10), Some(NOW + 1_000))
    );
    let trusted =
        |s: &MetaState, at| -> Vec<String> { s.trusted_keys(at).map(|k| k.kid.clone()).collect() };
    assert_eq!(trusted(&s, NOW + 999), ["k1", "k2"]);
    assert_eq!(trusted(&s, NOW + 1_000), ["k2"]);
    // Repeats and later deadlines change nothing: trust is never extended.
    let once = s.clone();
    assert_eq!(
        ok(&mut s, retire("k1", NOW + 1_000)),
        MetaOutcome::Unchanged
    );
    assert_eq!(
        ok(&mut s, retire("k1", NOW + 9_000)),
        MetaOutcome::Unchanged
    );
    assert_eq!(s, once);
    // An earlier one cuts it off (a compromised key); retired_at stays.
    ok(&mut s, retire("k1", NOW));
    let k = s.signing_key("k1").unwrap();
    assert_eq!(
        (k.retired_at_ms, k.trusted_until_ms),
        (Some(NOW + 10), Some(NOW))
    );
    assert_eq!(trusted(&s, NOW + 1), ["k2"]);
    let e = reject(&mut s, retire("nope", NOW));
    assert_error(&e, ErrorClass::BadRequest, "InvalidRequest");
}

#[test]
fn drop_expired_keys_drops_only_untrusted_retired_keys() {
    let mut s = cluster();
    ok(&mut s, publish("k1", 1, 1, NOW));
    ok(&mut s, publish("k2", 2, 1, NOW));
    ok(&mut s, publish("k3", 3, 2, NOW));
    ok(&mut s, retire("k1", NOW + 100));
    ok(&mut s, retire("k2", NOW + 500));
    let drop = |now_ms| MetaCommand::DropExpiredKeys { now_ms };
    assert_eq!(ok(&mut s, drop(NOW + 99)), MetaOutcome::Unchanged);
    assert_eq!(ok(&mut s, drop(NOW + 100)), MetaOutcome::Done);
    let left: Vec<&str> = s.signing_keys().map(|k| k.kid.as_str()).collect();
    assert_eq!(left, ["k2", "k3"]);
    assert_eq!(ok(&mut s, drop(NOW + 100)), MetaOutcome::Unchanged);
    ok(&mut s, drop(u64::MAX));
    let left: Vec<&str> = s.signing_keys().map(|k| k.kid.as_str()).collect();
    assert_eq!(left, ["k3"], "an active key is never dropped");
    // A dropped id cannot be retired any more.
    reject(&mut s, retire("k1", NOW));
}

#[test]
fn revoke_credential_is_idempotent_and_only_extends() {
    let mut s = cluster();
    assert!(!s.is_revoked("j1"));
    assert_eq!(ok(&mut s, revoke("j1", NOW)), MetaOutcome::Done);
    assert!(s.is_revoked("j1") && !s.is_revoked("j2"));
    let once = s.clone();
    assert_eq!(ok(&mut s, revoke("j1", NOW)), MetaOutcome::Unchanged);
    assert_eq!(ok(&mut s, revoke("j1", NOW - 1)), MetaOutcome::Unchanged);
    assert_eq!(s, once);
    assert_eq!(ok(&mut s, revoke("j1", NOW + 1)), MetaOutcome::Done);
    assert_eq!(s.revocations["j1"], NOW + 1);
    for jti in [String::new(), "j".repeat(TOKEN_ID_MAX_LEN + 1)] {
        let e = reject(&mut s, revoke(&jti, NOW));
        assert_error(&e, ErrorClass::BadRequest, "InvalidRequest");
    }
}

#[test]
fn revoke_credential_when_the_list_is_full() {
    let mut s = cluster();
    s.revocations = (0..MAX_REVOCATIONS)
        .map(|i| (format!("j{i}"), NOW))
        .collect();
    assert_eq!(s.revocation_count(), MAX_REVOCATIONS);
    let e = reject(&mut s, revoke("new", NOW));
    assert!(matches!(e, MetaError::Invalid(m) if m.contains("revocation list is full")));
    // A known id may still be extended; a GC makes room.
    ok(&mut s, revoke("j0", NOW + 1));
    ok(&mut s, MetaCommand::GcRevocations { now_ms: NOW });
    assert_eq!(s.revocation_count(), 1);
    ok(&mut s, revoke("new", NOW));
}

#[test]
fn gc_revocations_drops_expired_entries() {
    let mut s = cluster();
    ok(&mut s, revoke("j1", NOW));
    ok(&mut s, revoke("j2", NOW + 100));
    let gc = |now_ms| MetaCommand::GcRevocations { now_ms };
    assert_eq!(ok(&mut s, gc(NOW - 1)), MetaOutcome::Unchanged);
    assert_eq!(ok(&mut s, gc(NOW)), MetaOutcome::Done);
    assert!(!s.is_revoked("j1") && s.is_revoked("j2"));
    assert_eq!(ok(&mut s, gc(NOW)), MetaOutcome::Unchanged);
    assert_eq!(s.revocation_count(), 1);
}

#[test]
fn invariant_checker_catches_auth_corruption() {
    let (mut s, t) = with_principals();
    version(&mut s, put("orders", ALICE, &[Action::Read], Effect::Allow));
    ok(&mut s, publish("k1", 1, 1, NOW));
    s.check_invariants().unwrap();
    let corruptions: Vec<Corruption> = vec![
        Box::new(|s| {
            s.principals.get_mut(ADMIN).unwrap().admin = false;
        }),
        Box::new(|s| s.principals.get_mut(ALICE).unwrap().name = "bob".into()),
        Box::new(|s| s.principals.get_mut(ALICE).unwrap().arn = ADMIN.into()),
        Box::new(|s| {
            s.principals.remove(ALICE);
        }),
        Box::new(move |s| {
            let policies = s.policies.remove(&t).unwrap();
            s.policies.insert(99, policies);
        }),
        Box::new(move |s| s.policies.get_mut(&t).unwrap().clear()),
        Box::new(move |s| {
            let p = s.policies.get_mut(&t).unwrap().get_mut(ALICE).unwrap();
            p.actions.clear();
        }),
        Box::new(move |s| {
            let p = s.policies.get_mut(&t).unwrap().get_mut(ALICE).unwrap();
            p.table = "other".into();
        }),
        Box::new(move |s| {
            let p = s.policies.get_mut(&t).unwrap().get_mut(ALICE).unwrap();
            p.version = 0;
        }),
        Box::new(|s| s.signing_keys.get_mut("k1").unwrap().kid = "k2".into()),
        Box::new(|s| s.signing_keys.get_mut("k1").unwrap().node_id = 99),
        Box::new(|s| s.signing_keys.get_mut("k1").unwrap().retired_at_ms = Some(NOW)),
        Box::new(|s| s.cluster_id = None),
    ];
    for (i, corrupt) in corruptions.iter().enumerate() {
        let mut bad = s.clone();
        corrupt(&mut bad);
        assert!(bad.check_invariants().is_err(), "corruption {i} not caught");
    }
}

#[test]
fn effective_access_admin_implicit_deny_wins_and_goes_with_the_principal() {
    let (mut s, _) = with_principals();
    let all: BTreeSet<Action> = Action::ALL.into_iter().collect();
    // No policy: a plain principal gets nothing, a cluster admin everything.
    assert!(s.grantable_actions(ALICE, "orders", &all).is_empty());
    assert_eq!(s.grantable_actions(ADMIN, "orders", &all), all);
    assert!(s.access_allowed(ADMIN, "orders", Action::Write));
    // An allow grants exactly its actions; a deny on the admin takes one away.
    version(&mut s, put("orders", ALICE, &[Action::Read], Effect::Allow));
    version(&mut s, put("orders", ADMIN, &[Action::Write], Effect::Deny));
    assert_eq!(
        s.grantable_actions(ALICE, "orders", &all),
        BTreeSet::from([Action::Read])
    );
    assert!(!s.access_allowed(ALICE, "orders", Action::Write));
    assert!(!s.access_allowed(ADMIN, "orders", Action::Write));
    assert!(s.access_allowed(ADMIN, "orders", Action::Admin));
    // Unknown tables and principals get nothing; a deleted principal loses access.
    assert!(!s.access_allowed(ADMIN, "users", Action::Read));
    assert!(!s.access_allowed("arn:c1:principal/ghost", "orders", Action::Read));
    ok(&mut s, delete_principal(ALICE));
    assert!(!s.access_allowed(ALICE, "orders", Action::Read));
    // A DELETING table grants nothing, not even to the admin.
    ok(&mut s, delete("orders"));
    assert!(!s.access_allowed(ADMIN, "orders", Action::Admin));
}
