//! Access control on this agent: its own token-signing key, the bootstrap admin's
//! credentials, authentication of callers, local verification of credentials, credential
//! issue and key rotation on the leader, and the audit log. (Principals, policies and
//! revocations live in the metadata; the pure rules are in `shared::auth`.)

pub mod admin;
pub mod audit;
pub mod authn;
pub mod issuer;
pub mod keys;
pub mod verifier;
