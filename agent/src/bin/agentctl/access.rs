//! `agentctl principal|policy|credential|keys|audit`: access control.

use std::collections::BTreeSet;

use agent::api_client::ApiClient;
use clap::{Subcommand, ValueEnum};
use shared::api::auth::{IssueCredentialRequest, PutPolicyRequest, RevokeCredentialRequest};
use shared::auth::{Action, Effect};

use super::{print, text_table};

#[derive(Subcommand)]
pub enum PrincipalCmd {
    /// Create a principal; its secret is printed once and never again.
    Create {
        /// Name (A-Z a-z 0-9 _ . -, at most 64 characters).
        name: String,
        /// Make it a cluster admin.
        #[arg(long)]
        admin: bool,
    },
    /// List the principals.
    List,
    /// Delete a principal (its policies go with it; its credentials stop working).
    Delete {
        /// Principal ARN.
        arn: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum EffectArg {
    /// Grant the actions.
    Allow,
    /// Forbid the actions (wins over any allow).
    Deny,
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Set the policy of a principal on a table (replacing its previous one).
    Put {
        /// Table name.
        table: String,
        /// Principal ARN.
        principal_arn: String,
        /// Actions, comma-separated: read, write, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<ActionArg>,
        /// allow or deny.
        #[arg(long, value_enum, default_value = "allow")]
        effect: EffectArg,
    },
    /// List a table's policies.
    List {
        /// Table name.
        table: String,
    },
    /// Delete the policy of a principal on a table.
    Delete {
        /// Table name.
        table: String,
        /// Principal ARN.
        principal_arn: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ActionArg {
    /// Get and query items.
    Read,
    /// Put and delete items.
    Write,
    /// Manage the table and its policies.
    Admin,
}

impl From<ActionArg> for Action {
    fn from(a: ActionArg) -> Self {
        match a {
            ActionArg::Read => Action::Read,
            ActionArg::Write => Action::Write,
            ActionArg::Admin => Action::Admin,
        }
    }
}

#[derive(Subcommand)]
pub enum CredentialCmd {
    /// Issue a credential (a signed token) for one table; prints the token.
    Issue {
        /// Table name.
        table: String,
        /// Principal ARN (default: the one agentctl authenticates as).
        #[arg(long)]
        principal: Option<String>,
        /// Lifetime in seconds (default: the cluster's, 3600).
        #[arg(long)]
        ttl: Option<u64>,
        /// Actions asked for, comma-separated (default: all the policies allow).
        #[arg(long, value_delimiter = ',')]
        actions: Vec<ActionArg>,
    },
    /// Revoke a credential, by token or by id.
    Revoke {
        /// The token.
        #[arg(long, conflicts_with = "jti", required_unless_present = "jti")]
        token: Option<String>,
        /// The token id (cluster admins only).
        #[arg(long)]
        jti: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// The published signing keys.
    List,
    /// Replace the leader's signing key now (the old one verifies until its tokens expire).
    Rotate,
}

pub fn run_principal(client: &ApiClient, json: bool, cmd: PrincipalCmd) -> anyhow::Result<()> {
    match cmd {
        PrincipalCmd::Create { name, admin } => {
            let created = client.create_principal(&name, admin)?;
            print(json, &created, || {
                format!(
                    "created {}{}\nsecret (shown once; keep it safe): {}",
                    created.principal_arn,
                    if created.admin {
                        " (cluster admin)"
                    } else {
                        ""
                    },
                    created.secret
                )
            })
        }
        PrincipalCmd::List => {
            let list = client.list_principals()?;
            print(json, &list, || {
                let mut t = text_table(&["PRINCIPAL", "ADMIN", "CREATED"]);
                for p in &list.principals {
                    t.add_row(vec![
                        p.principal_arn.clone(),
                        p.admin.to_string(),
                        p.created_at.clone(),
                    ]);
                }
                t.to_string()
            })
        }
        PrincipalCmd::Delete { arn } => {
            let deleted = client.delete_principal(&arn)?;
            print(json, &deleted, || format!("deleted {arn}"))
        }
    }
}

pub fn run_policy(client: &ApiClient, json: bool, cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Put {
            table,
            principal_arn,
            actions,
            effect,
        } => {
            let request = PutPolicyRequest {
                actions: actions.into_iter().map(Action::from).collect(),
                effect: match effect {
                    EffectArg::Allow => Effect::Allow,
                    EffectArg::Deny => Effect::Deny,
                },
            };
            let put = client.put_policy(&table, &principal_arn, &request)?;
            print(json, &put, || {
                format!(
                    "policy of {principal_arn} on {table} is version {}",
                    put.policy_version
                )
            })
        }
        PolicyCmd::List { table } => {
            let list = client.list_policies(&table)?;
            print(json, &list, || {
                let mut t = text_table(&["PRINCIPAL", "EFFECT", "ACTIONS", "VERSION"]);
                for p in &list.policies {
                    let actions: Vec<&str> = p.actions.iter().map(|a| a.as_str()).collect();
                    t.add_row(vec![
                        p.principal_arn.clone(),
                        format!("{:?}", p.effect).to_lowercase(),
                        actions.join(","),
                        p.policy_version.to_string(),
                    ]);
                }
                t.to_string()
            })
        }
        PolicyCmd::Delete {
            table,
            principal_arn,
        } => {
            let deleted = client.delete_policy(&table, &principal_arn)?;
            print(json, &deleted, || {
                format!("deleted the policy of {principal_arn} on {table}")
            })
        }
    }
}

pub fn run_credential(
    client: &ApiClient,
    json: bool,
    cmd: CredentialCmd,
    me: Option<&str>,
) -> anyhow::Result<()> {
    match cmd {
        CredentialCmd::Issue {
            table,
            principal,
            ttl,
            actions,
        } => {
            let principal_arn = principal
                .or_else(|| me.map(str::to_string))
                .ok_or_else(|| anyhow::anyhow!("give --principal (no credentials file)"))?;
            let actions: BTreeSet<Action> = actions.into_iter().map(Action::from).collect();
            let request = IssueCredentialRequest {
                principal_arn,
                ttl_seconds: ttl,
                actions: (!actions.is_empty()).then_some(actions),
            };
            let issued = client.issue_credential(&table, &request)?;
            print(json, &issued, || issued.token.clone())
        }
        CredentialCmd::Revoke { token, jti } => {
            let revoked = client.revoke_credential(&RevokeCredentialRequest { jti, token })?;
            print(json, &revoked, || {
                format!(
                    "revoked {} (remembered until {})",
                    revoked.jti, revoked.remembered_until
                )
            })
        }
    }
}

pub fn run_keys(client: &ApiClient, json: bool, cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::List => {
            let keys = client.list_keys()?;
            print(json, &keys, || {
                let mut t = text_table(&["KID", "NODE", "ACTIVE", "CREATED", "TRUSTED UNTIL"]);
                for k in &keys.keys {
                    t.add_row(vec![
                        k.kid.clone(),
                        k.node_id.to_string(),
                        k.active.to_string(),
                        k.created_at.clone(),
                        k.trusted_until.clone().unwrap_or_else(|| "-".into()),
                    ]);
                }
                t.to_string()
            })
        }
        KeysCmd::Rotate => {
            let rotated = client.rotate_key()?;
            print(json, &rotated, || match &rotated.retired_kid {
                Some(old) => format!("signing with {} now; {old} retired", rotated.kid),
                None => format!("signing with {} now", rotated.kid),
            })
        }
    }
}

pub fn run_audit(client: &ApiClient, json: bool, since: Option<&str>) -> anyhow::Result<()> {
    let audit = client.audit(since)?;
    print(json, &audit, || {
        let mut t = text_table(&["TIME", "PRINCIPAL", "METHOD", "PATH", "STATUS"]);
        for e in &audit.entries {
            t.add_row(vec![
                e.at.clone(),
                e.principal.clone(),
                e.method.clone(),
                e.path.clone(),
                e.status.to_string(),
            ]);
        }
        t.to_string()
    })
}
