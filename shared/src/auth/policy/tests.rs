//! Deny wins, no policy means no access, grants are intersections, and every refusal
//! of `check_request`.

use super::*;

const ALICE: &str = "arn:c1:principal/alice";
const BOB: &str = "arn:c1:principal/bob";
const NOW: u64 = 1_700_000_000;
const SKEW: u64 = 30;

fn set(actions: &[Action]) -> BTreeSet<Action> {
    actions.iter().copied().collect()
}

fn policy(principal: &str, table: &str, actions: &[Action], effect: Effect) -> Policy {
    Policy {
        principal: principal.into(),
        table: table.into(),
        actions: set(actions),
        effect,
        version: 1,
    }
}

fn claims(actions: &[Action]) -> Claims {
    Claims {
        jti: "t-1".into(),
        sub: ALICE.into(),
        tbl: "orders".into(),
        act: actions.to_vec(),
        iat: NOW - 10,
        exp: NOW + 3600,
    }
}

fn never(_: &str) -> bool {
    false
}

#[test]
fn no_policy_means_no_access() {
    assert!(!allowed([], ALICE, "orders", Action::Read));
    let others = [
        policy(BOB, "orders", &Action::ALL, Effect::Allow),
        policy(ALICE, "users", &Action::ALL, Effect::Allow),
    ];
    for action in Action::ALL {
        assert!(!allowed(&others, ALICE, "orders", action));
    }
}

#[test]
fn allow_grants_only_its_actions() {
    let p = [policy(ALICE, "orders", &[Action::Read], Effect::Allow)];
    assert!(allowed(&p, ALICE, "orders", Action::Read));
    assert!(!allowed(&p, ALICE, "orders", Action::Write));
    assert!(!allowed(&p, ALICE, "orders", Action::Admin));
}

#[test]
fn deny_wins_in_any_order() {
    let allow = policy(ALICE, "orders", &Action::ALL, Effect::Allow);
    let deny = policy(ALICE, "orders", &[Action::Write], Effect::Deny);
    for policies in [[allow.clone(), deny.clone()], [deny, allow]] {
        assert!(allowed(&policies, ALICE, "orders", Action::Read));
        assert!(!allowed(&policies, ALICE, "orders", Action::Write));
        assert!(allowed(&policies, ALICE, "orders", Action::Admin));
    }
}

#[test]
fn deny_alone_grants_nothing() {
    let p = [policy(ALICE, "orders", &[Action::Read], Effect::Deny)];
    for action in Action::ALL {
        assert!(!allowed(&p, ALICE, "orders", action));
    }
}

#[test]
fn grantable_is_the_intersection_of_asked_and_allowed() {
    let p = [
        policy(
            ALICE,
            "orders",
            &[Action::Read, Action::Write],
            Effect::Allow,
        ),
        policy(ALICE, "orders", &[Action::Admin], Effect::Allow),
        policy(ALICE, "orders", &[Action::Write], Effect::Deny),
        policy(ALICE, "users", &[Action::Write], Effect::Allow),
    ];
    assert_eq!(
        grantable(&p, ALICE, "orders", &set(&[Action::Read, Action::Write])),
        set(&[Action::Read])
    );
    assert_eq!(
        grantable(&p, ALICE, "orders", &set(&Action::ALL)),
        set(&[Action::Read, Action::Admin])
    );
    assert_eq!(grantable(&p, ALICE, "orders", &set(&[])), set(&[]));
    assert_eq!(grantable(&p, BOB, "orders", &set(&Action::ALL)), set(&[]));
    // grantable agrees with allowed action by action.
    for action in Action::ALL {
        assert_eq!(
            grantable(&p, ALICE, "orders", &set(&[action])).contains(&action),
            allowed(&p, ALICE, "orders", action)
        );
    }
}

#[test]
fn wire_names_are_lowercase() {
    let p = policy(
        ALICE,
        "orders",
        &[Action::Admin, Action::Read],
        Effect::Deny,
    );
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["actions"], serde_json::json!(["read", "admin"]));
    assert_eq!(json["effect"], "deny");
    assert_eq!(serde_json::from_value::<Policy>(json).unwrap(), p);
    assert_eq!(Action::Write.to_string(), "write");
}

#[test]
fn request_within_the_grant_passes() {
    let p = [policy(ALICE, "orders", &[Action::Read], Effect::Allow)];
    let c = claims(&[Action::Read]);
    assert_eq!(
        check_request(&c, "orders", Action::Read, &never, &by(&p), NOW, SKEW),
        Ok(())
    );
}

#[test]
fn every_refusal_of_check_request() {
    let allow_all = [policy(ALICE, "orders", &Action::ALL, Effect::Allow)];
    let c = claims(&[Action::Read]);
    let check = |table: &str, action, revoked: &dyn Fn(&str) -> bool, p: &[Policy], now| {
        check_request(&c, table, action, revoked, &by(p), now, SKEW)
    };
    assert_eq!(
        check("orders", Action::Read, &never, &allow_all, c.exp + SKEW),
        Err(Denied::Expired {
            exp: c.exp,
            now: c.exp + SKEW
        })
    );
    assert_eq!(
        check("users", Action::Read, &never, &allow_all, NOW),
        Err(Denied::WrongTable {
            granted: "orders".into(),
            requested: "users".into()
        })
    );
    assert_eq!(
        check("orders", Action::Write, &never, &allow_all, NOW),
        Err(Denied::ActionNotGranted(Action::Write))
    );
    assert_eq!(
        check("orders", Action::Read, &|jti| jti == "t-1", &allow_all, NOW),
        Err(Denied::Revoked("t-1".into()))
    );
    let not_allowed = Err(Denied::NotAllowed {
        principal: ALICE.into(),
        table: "orders".into(),
        action: Action::Read,
    });
    // A deny added after issue.
    let with_deny = [
        allow_all[0].clone(),
        policy(ALICE, "orders", &[Action::Read], Effect::Deny),
    ];
    assert_eq!(
        check("orders", Action::Read, &never, &with_deny, NOW),
        not_allowed
    );
    // The principal (and so its policies) deleted after issue.
    assert_eq!(check("orders", Action::Read, &never, &[], NOW), not_allowed);
}

/// The current-policy check of `check_request` over plain policies.
fn by(policies: &[Policy]) -> impl Fn(&str, &str, Action) -> bool + '_ {
    move |principal, table, action| allowed(policies, principal, table, action)
}
