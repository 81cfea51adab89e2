//! Credential throughput on one core: signing, cold verification (full Ed25519 check)
//! and the cached hot path of a data node (SHA-256 of the token, a lookup in a
//! `HashMap` of verified claims, then `check_request` with a revocation lookup and the
//! current policies of the table). The goal: at least 1 M cached checks per
//! second per core.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{SigningKey, VerifyingKey};
use shared::auth::{
    Action, Claims, Effect, Policy, allowed, check_request, sign, token_id_hash, verify,
};

const NOW: u64 = 1_700_000_000;
const SKEW: u64 = 30;
/// Distinct tokens in the cache, so lookups are not all one hot entry.
const CACHED_TOKENS: usize = 10_000;
/// Revoked ids in the revocation set (none of the benchmarked tokens).
const REVOKED: usize = 1_000;

fn claims(i: usize) -> Claims {
    Claims {
        jti: format!("01J9Z{i:021}"),
        sub: format!("arn:cluster-1:principal/service-{}", i % 100),
        tbl: format!("table-{}", i % 10),
        act: vec![Action::Read, Action::Write],
        iat: NOW - 60,
        exp: NOW + 3600,
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// Trusted keys as an agent holds them: a map by `kid`, a few entries.
fn trusted() -> HashMap<String, VerifyingKey> {
    (0..3u8)
        .map(|i| {
            let k = SigningKey::from_bytes(&[7 + i; 32]);
            (format!("key-{i}"), k.verifying_key())
        })
        .collect()
}

/// Policies indexed as a data node would: table → principal → policies. Each of the
/// 100 principals may read and write each of the 10 tables; principal 0 is also denied
/// `admin` everywhere, so some lookups see an allow and a deny.
type PolicyIndex = HashMap<String, HashMap<String, Vec<Policy>>>;

fn policies() -> PolicyIndex {
    let mut index = PolicyIndex::new();
    for t in 0..10 {
        let table = format!("table-{t}");
        for i in 0..100 {
            let principal = format!("arn:cluster-1:principal/service-{i}");
            let allow = Policy {
                principal: principal.clone(),
                table: table.clone(),
                actions: BTreeSet::from([Action::Read, Action::Write]),
                effect: Effect::Allow,
                version: 1,
            };
            let mut list = vec![allow.clone()];
            if i == 0 {
                list.push(Policy {
                    actions: BTreeSet::from([Action::Admin]),
                    effect: Effect::Deny,
                    ..allow
                });
            }
            index
                .entry(table.clone())
                .or_default()
                .insert(principal, list);
        }
    }
    index
}

fn signing(c: &mut Criterion) {
    let key = key();
    let claims = claims(1);
    let mut g = c.benchmark_group("auth");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign", |b| {
        b.iter(|| sign(black_box(&claims), "key-0", &key))
    });
    let keys = trusted();
    let lookup = |kid: &str| keys.get(kid).copied();
    let token = sign(&claims, "key-0", &key);
    g.bench_function("verify_cold", |b| {
        b.iter(|| verify(black_box(&token), &lookup, NOW, SKEW).unwrap())
    });
    g.finish();
}

fn cached(c: &mut Criterion) {
    let key = key();
    let keys = trusted();
    let lookup = |kid: &str| keys.get(kid).copied();
    let tokens: Vec<String> = (0..CACHED_TOKENS)
        .map(|i| sign(&claims(i), "key-0", &key))
        .collect();
    let cache: HashMap<[u8; 32], Claims> = tokens
        .iter()
        .map(|t| (token_id_hash(t), verify(t, &lookup, NOW, SKEW).unwrap()))
        .collect();
    let revoked: HashSet<String> = (0..REVOKED).map(|i| format!("revoked-{i}")).collect();
    let is_revoked = |jti: &str| revoked.contains(jti);
    let by_table = policies();
    // Requests: (token, table, action), all allowed, so every check runs to the end.
    // Request i uses token i on its own table.
    let requests: Vec<(&str, String)> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), format!("table-{}", i % 10)))
        .collect();
    let mut g = c.benchmark_group("auth");
    g.throughput(Throughput::Elements(requests.len() as u64));
    g.bench_function("token_id_hash", |b| {
        b.iter(|| {
            let mut acc = 0u8;
            for (token, _) in &requests {
                acc ^= token_id_hash(black_box(token))[0];
            }
            acc
        })
    });
    g.bench_function("verify_cached", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for (token, table) in &requests {
                let Some(claims) = cache.get(&token_id_hash(black_box(token))) else {
                    continue;
                };
                let current = |principal: &str, table: &str, action| {
                    let policies = by_table
                        .get(table)
                        .and_then(|by_principal| by_principal.get(principal))
                        .into_iter()
                        .flatten();
                    allowed(policies, principal, table, action)
                };
                let decision = check_request(
                    claims,
                    table,
                    Action::Read,
                    &is_revoked,
                    &current,
                    NOW,
                    SKEW,
                );
                ok += usize::from(decision.is_ok());
            }
            assert_eq!(ok, requests.len());
            ok
        })
    });
    g.finish();
}

criterion_group!(benches, signing, cached);
criterion_main!(benches);
