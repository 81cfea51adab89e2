//! Access control on this agent: its own token-signing key. (Principals, policies and
//! revocations live in the metadata; the pure rules are in `shared::auth`.)

pub mod keys;
