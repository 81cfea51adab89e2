//! An agent's start-up and wiring: metadata store, peer transport, controllers,
//! reconciler and HTTP API.

mod departure;

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use openraft::SnapshotPolicy;
use shared::lifecycle::AssignerConfig;

use crate::auth::audit::AuditLog;
use crate::auth::issuer::CredentialIssuer;
use crate::auth::keys::{NodeSigningKey, SigningKeySlot};
use crate::auth::verifier::TokenVerifier;
use crate::bootstrap::Bootstrap;
use crate::config::Config;
use crate::control::assigner::PartitionAssigner;
use crate::control::failure::FailureDetector;
use crate::control::keys::SigningKeyKeeper;
use crate::control::recovery::RecoveryCoordinator;
use crate::control::run_on_leader;
use crate::control::scaler::Scaler;
use crate::control::voters::VoterManager;
use crate::data::plane::OperationDrivers;
use crate::data::plane::{DataPlane, DataPlaneParts};
use crate::data::reconciler::Reconciler;
use crate::data::store::PartitionStore;
use crate::host::HostSampler;
use crate::http::health::HealthView;
use crate::http::{AppState, router};
use crate::join;
use crate::membership::report::LoadSummary;
use crate::membership::{
    DriverParts, GossipDriver, GossipId, GossipLeave, LocalMember, Membership, StatusSource,
};
use crate::meta::client::MetaClient;
use crate::meta::freshness::MetaFreshness;
use crate::meta::log_store::LogStore;
use crate::meta::network::PeerNetworkFactory;
use crate::meta::reachability::RaftReachability;
use crate::meta::state_machine::StateMachineStore;
use crate::meta::step_down::{StepDownTiming, step_down};
use crate::meta::types::Raft;
use crate::meta::voters::RaftVoters;
use crate::metrics::AgentMetrics;
use crate::peer_server::PeerHandler;
use crate::seam::PeerContacts;
use crate::seam::{Clock, StateHandle, system_clock};
use crate::service_manager;
use crate::supervisor::Supervisor;
use crate::transport::RpcClient;
use crate::transport::observed::ObservedClient;
use crate::transport::quic::QuicTransport;
use crate::transport::reload::{TlsReloader, publish_expiry};
use crate::transport::tls;

use crate::meta::META_FILE;

/// Unix permissions of the data dir.
const DATA_DIR_MODE: u32 = 0o700;

/// Pause between attempts to reach the leader's commit index at start-up.
const CATCH_UP_RETRY: Duration = Duration::from_millis(100);

/// How long shutdown waits for peers to acknowledge the closed connections.
const SHUTDOWN_IDLE_WAIT: Duration = Duration::from_secs(1);

/// How often the leader's failure detector re-checks the gossip view: a decision is due
/// at an instant no commit wakes it for.
const FAILURE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// A started agent: metadata store, peer transport, controllers and reconciler running;
/// the HTTP API is served by [`RunningNode::serve_http`].
pub struct RunningNode {
    /// Proposals and read barriers through this node.
    pub meta: Arc<MetaClient>,
    /// The local metadata replica.
    pub state: StateHandle,
    app: AppState,
    http: tokio::net::TcpListener,
    max_body_bytes: usize,
    header_read_timeout: Duration,
    transport: QuicTransport,
    tasks: Supervisor,
    departure: departure::Departure,
    peers: Arc<dyn RpcClient>,
    freshness: Arc<MetaFreshness>,
    step_down: StepDownTiming,
}

/// Runs the agent until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    start(config).await?.serve_http(shutdown_signal()).await
}

/// Creates `dir` if needed, owner only (0700): it holds the metadata, every partition
/// copy, keys and secrets. `agent run` and `agent restore` both start from it.
pub fn prepare_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, Permissions::from_mode(DATA_DIR_MODE))
        .with_context(|| format!("restricting data dir {}", dir.display()))
}

/// Starts everything but the HTTP API.
pub async fn start(config: Config) -> anyhow::Result<RunningNode> {
    prepare_data_dir(&config.data_dir)?;
    let clock = system_clock();
    let db = redb::Database::create(config.data_dir.join(META_FILE))
        .context("opening the metadata database")?;
    let db = Arc::new(db);
    let log_store = LogStore::open(db.clone()).context("opening the Raft log")?;
    let (state_machine, state) =
        StateMachineStore::open(db).context("opening the state machine")?;

    if let Some(theirs) = state.read(|s| s.cluster_id().map(str::to_string))
        && theirs != config.cluster_name
    {
        anyhow::bail!(
            "the data dir {} belongs to cluster {theirs}, but the configuration says cluster_name = {:?}",
            config.data_dir.display(),
            config.cluster_name
        );
    }
    let (transport, tls_material) = bind_transport(&config)?;
    let contacts = Arc::new(PeerContacts::default());
    let peers: Arc<dyn RpcClient> = Arc::new(ObservedClient::new(
        Arc::new(transport.clone()),
        contacts.clone(),
    ));
    let raft_config = raft_config(&config)?;
    let network = PeerNetworkFactory::new(peers.clone());
    let raft = Raft::new(
        config.node_id,
        raft_config,
        network,
        log_store,
        state_machine,
    )
    .await
    .context("starting Raft")?;
    let leader_wait = Duration::from_millis(config.http.leader_wait_ms);
    let metrics = Arc::new(AgentMetrics::new());
    let freshness = Arc::new(MetaFreshness::new(raft.clone(), contacts.clone()));
    let meta = Arc::new(MetaClient::new(
        config.node_id,
        raft.clone(),
        state.clone(),
        peers.clone(),
        leader_wait,
        metrics.clone(),
        freshness.clone(),
    ));
    let store = Arc::new(PartitionStore::open(&config.data_dir)?);
    let data = DataPlane::new(DataPlaneParts {
        me: config.node_id,
        state: state.clone(),
        store: store.clone(),
        peers: peers.clone(),
        meta: meta.clone(),
        freshness: freshness.clone(),
        config: config.data.clone(),
        clock: clock.clone(),
    });
    let signing_key = NodeSigningKey::load_or_create(&config.data_dir, config.node_id)
        .context("loading the signing key")?;
    let issuer = Arc::new(CredentialIssuer::new(
        meta.clone(),
        Arc::new(SigningKeySlot::new(signing_key)),
        config.auth.clone(),
        clock.clone(),
        config.data_dir.clone(),
    ));
    let bootstrap = Arc::new(Bootstrap::new(
        raft.clone(),
        state.clone(),
        peers.clone(),
        &config,
    ));
    let handler = PeerHandler {
        raft: raft.clone(),
        state: state.clone(),
        data: data.clone(),
        freshness: freshness.clone(),
        issuer: issuer.clone(),
        bootstrap: bootstrap.clone(),
        now_ms: clock.clone(),
        write_timeout: leader_wait,
    };
    let tasks = Supervisor::new(metrics.clone());
    publish_expiry(&metrics, &tls_material);
    tasks.keep_running("tls-reload", {
        let reloader = Arc::new(TlsReloader::new(
            config.tls.files(),
            transport.clone(),
            metrics.clone(),
        ));
        move || reloader.clone().run_on_hangup()
    });
    tasks.watch_essential("peer-server", transport.serve(Arc::new(handler)));
    let tick = config.tick_interval();
    tasks.keep_running("read-leases", {
        let data = data.clone();
        move || data.clone().run_leases()
    });
    tasks.keep_running("operation-drivers", {
        let drivers = OperationDrivers::new(data.clone());
        move || drivers.clone().run(tick)
    });
    tasks.keep_running("leader-changes", {
        let (raft, metrics) = (raft.clone(), metrics.clone());
        move || count_leader_changes(raft.clone(), metrics.clone())
    });
    let empty = !raft.is_initialized().await?;
    let join_retry = Duration::from_millis(config.controllers.join_retry_interval_ms);
    if config.bootstrap {
        bootstrap
            .init_on_first_start(join_retry)
            .await
            .context("creating the cluster (bootstrap = true)")?;
    }
    tasks.run_until_done("cluster-setup", {
        let (bootstrap, meta, clock) = (bootstrap.clone(), meta.clone(), clock.clone());
        move || {
            let (bootstrap, meta, clock) = (bootstrap.clone(), meta.clone(), clock.clone());
            async move { bootstrap.set_up(&meta, &clock, join_retry).await }
        }
    });
    // Boot time, but always above what the metadata last recorded for us (clock steps).
    let recorded = state.read(|s| s.node(config.node_id).map_or(0, |n| n.incarnation));
    let incarnation = clock().max(recorded + 1);
    let membership = Membership::new(config.node_id, metrics.gossip.clone());
    let (gossip, gossip_leave) = gossip_driver(
        &config,
        &transport,
        incarnation,
        &membership,
        &data,
        &state,
        &clock,
    );
    let health = HealthView::new(
        meta.clone(),
        state.clone(),
        membership.clone(),
        clock.clone(),
    );
    tasks.essential("gossip", gossip);
    let registration = join::Registration {
        meta: meta.clone(),
        peers: peers.clone(),
        config: config.clone(),
        clock: clock.clone(),
        membership: membership.clone(),
        freshness: freshness.clone(),
        empty,
    };
    tasks.run_until_done("join", {
        let tasks = tasks.clone();
        move || {
            let (registration, tasks) = (registration.clone(), tasks.clone());
            async move {
                if let Err(wrong) = join::register(registration, incarnation).await {
                    tasks.stop_agent(wrong.to_string());
                }
            }
        }
    });
    let caught_up = Arc::new(AtomicBool::new(false));
    let leaving = Arc::new(AtomicBool::new(false));
    tasks.run_until_done("catch-up", {
        let (meta, caught_up) = (meta.clone(), caught_up.clone());
        move || catch_up(meta.clone(), caught_up.clone())
    });
    tasks.keep_running("watchdog", service_manager::feed_watchdog);
    tasks.run_until_done("fences", {
        let (data, caught_up) = (data.clone(), caught_up.clone());
        move || data.clone().arm_fences(caught_up.clone())
    });
    spawn_controllers(
        &tasks,
        &config,
        LeaderSeams {
            meta: &meta,
            state: &state,
            clock: &clock,
            contacts,
            membership: &membership,
            data: &data,
        },
    );
    if config.scaler.enabled {
        let checked = config
            .scaler_config()
            .check()
            .context("checking the [scaler] configuration")?;
        let scaler = Arc::new(Scaler::new(
            meta.clone(),
            state.clone(),
            membership.clone(),
            data.clone(),
            checked,
            clock.clone(),
        ));
        let interval = Duration::from_millis(config.scaler.planning_interval_ms);
        tasks.keep_running("scaler", move || scaler.clone().run(interval));
    }
    let keeper = Arc::new(SigningKeyKeeper::new(
        meta.clone(),
        state.clone(),
        issuer.clone(),
        clock.clone(),
    ));
    on_leader(&tasks, "key-keeper", &meta, &state, tick, move || {
        let keeper = keeper.clone();
        async move { keeper.step().await }
    });
    let reconciler = Reconciler::new(data.clone(), state.clone(), meta.clone(), caught_up.clone());
    tasks.keep_running("reconciler", move || reconciler.clone().run(tick));

    let departure = departure::Departure {
        meta: meta.clone(),
        data: data.clone(),
        membership: membership.clone(),
        gossip: gossip_leave,
        leaving: leaving.clone(),
        config: config.shutdown.clone(),
    };
    let app = AppState {
        meta: meta.clone(),
        state: state.clone(),
        caught_up,
        leaving,
        clock,
        store,
        health,
        replication_factor: config.placement.replication_factor,
        data,
        max_value_bytes: config.data.max_value_bytes,
        verifier: Arc::new(TokenVerifier::new(
            state.clone(),
            config.auth.verified_cache_entries,
            config.auth.clock_skew_secs,
        )),
        issuer,
        scaler: Arc::new(config.scaler_config()),
        scaler_enabled: config.scaler.enabled,
        audit: Arc::new(AuditLog::new(config.node_id, config.auth.audit_log_entries)),
    };
    let http = tokio::net::TcpListener::bind(config.listen.http)
        .await
        .with_context(|| format!("binding HTTP on {}", config.listen.http))?;
    tracing::info!(node_id = config.node_id, http = %config.listen.http, peer = %config.listen.peer, "agent started");
    Ok(RunningNode {
        meta,
        state,
        app,
        http,
        max_body_bytes: config.http.max_body_bytes,
        header_read_timeout: Duration::from_millis(config.http.header_read_timeout_ms),
        transport,
        tasks,
        departure,
        peers,
        freshness,
        step_down: StepDownTiming {
            heartbeat: Duration::from_millis(config.raft.heartbeat_interval_ms),
            lease: Duration::from_millis(config.raft.election_timeout_max_ms),
        },
    })
}

impl RunningNode {
    /// Serves the HTTP API until `shutdown` completes; then leaves gracefully (see
    /// `departure`), drains the HTTP API, and stops Raft and the transport.
    pub async fn serve_http(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let departure = self.departure.clone();
        let shutdown = async move {
            shutdown.await;
            departure.run().await;
        };
        let serve = crate::http::serve::serve(
            self.http,
            router(self.app, self.max_body_bytes),
            self.header_read_timeout,
            Duration::from_millis(self.departure.config.client_close_grace_ms),
            shutdown,
        );
        tokio::select! {
            () = serve => {}
            why = raft_stopped(self.meta.raft().clone()) => {
                // No agent without its metadata replica: exit non-zero so the service
                // manager restarts it. It once kept serving, forwarding every call, on a
                // replica frozen by a panicked Raft core (issue 14).
                tracing::error!(%why, "the metadata store stopped; exiting");
                self.tasks.stop_all();
                self.transport.close();
                anyhow::bail!("the metadata store stopped: {why}");
            }
            why = self.tasks.essential_failed() => {
                self.tasks.stop_all();
                self.transport.close();
                anyhow::bail!("{why}");
            }
        }
        tracing::info!("shutting down");
        self.tasks.stop_all();
        step_down(
            self.meta.raft(),
            &self.freshness,
            self.peers.as_ref(),
            self.step_down,
        )
        .await;
        self.transport.close();
        // Lets peers learn of the close at once; bounded so shutdown never hangs on a dead peer.
        let _ = tokio::time::timeout(SHUTDOWN_IDLE_WAIT, self.transport.wait_idle()).await;
        Ok(())
    }
}

/// Completes when the Raft core stops on its own (a fatal storage error or a panic): it
/// drops the metrics it publishes when its task ends.
async fn raft_stopped(raft: Raft) -> String {
    let mut metrics = raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow_and_update().running_state {
            return fatal.to_string();
        }
        if metrics.changed().await.is_err() {
            return "the Raft core exited".to_string();
        }
    }
}

/// The peer transport, and the TLS material it was made with.
fn bind_transport(config: &Config) -> anyhow::Result<(QuicTransport, tls::NodeTls)> {
    let material = config.tls.files().load().context("loading TLS files")?;
    let server = tls::server_config(&material).context("building the TLS server configuration")?;
    let client = tls::client_config(&material).context("building the TLS client configuration")?;
    let timeout = Duration::from_millis(config.raft.rpc_timeout_ms);
    let transport = QuicTransport::bind(config.listen.peer, server, client, timeout)
        .with_context(|| format!("binding QUIC on {}", config.listen.peer))?;
    Ok((transport, material))
}

fn raft_config(config: &Config) -> anyhow::Result<Arc<openraft::Config>> {
    let r = &config.raft;
    let raft = openraft::Config {
        cluster_name: config.cluster_name.clone(),
        heartbeat_interval: r.heartbeat_interval_ms,
        election_timeout_min: r.election_timeout_min_ms,
        election_timeout_max: r.election_timeout_max_ms,
        install_snapshot_timeout: r.rpc_timeout_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: r.max_in_snapshot_log_to_keep,
        ..Default::default()
    };
    Ok(Arc::new(
        raft.validate().context("invalid Raft configuration")?,
    ))
}

/// Sets `caught_up` (and tells the service manager the agent is ready) once the local
/// replica has applied the leader's commit index.
async fn catch_up(meta: Arc<MetaClient>, caught_up: Arc<AtomicBool>) {
    loop {
        if meta.linearizable_barrier().await.is_ok() {
            caught_up.store(true, Ordering::Release);
            tracing::info!("metadata replica caught up with the leader");
            service_manager::announce_ready();
            return;
        }
        tokio::time::sleep(CATCH_UP_RETRY).await;
    }
}

/// The gossip driver, fed by the peer transport's datagrams (its inbox is wired once, so
/// it is not restarted: its end stops the agent), and the handle that makes it leave.
fn gossip_driver(
    config: &Config,
    transport: &QuicTransport,
    incarnation: u64,
    membership: &Membership,
    data: &Arc<DataPlane>,
    state: &StateHandle,
    clock: &Clock,
) -> (
    impl std::future::Future<Output = ()> + Send + 'static,
    GossipLeave,
) {
    let host = HostSampler::new(&config.data_dir);
    let status = status_source(config.node_id, host, data.clone(), state.clone());
    let (driver, inbox) = GossipDriver::new(DriverParts {
        local: LocalMember {
            id: GossipId::new(config.node_id, config.advertised_peer(), incarnation),
            zone: config.zone.clone(),
            endpoint: config.advertised_http(),
        },
        config: config.gossip.clone(),
        membership: membership.clone(),
        sender: Arc::new(transport.clone()),
        state: state.clone(),
        status,
        clock: clock.clone(),
        seed: None,
    });
    transport.serve_datagrams(inbox);
    let leave = driver.leave_handle();
    (driver.run(), leave)
}

/// The dynamic part of this agent's gossiped status report: host figures, and the data
/// plane's operations and worst replica lag over the partitions this agent leads.
fn status_source(
    me: shared::model::NodeId,
    host: HostSampler,
    data: Arc<DataPlane>,
    state: StateHandle,
) -> StatusSource {
    Arc::new(move || {
        let partitions_owned = state.read(|s| s.node(me).map_or(0, |n| n.partition_ids.len()));
        let activity = data.activity();
        let load = LoadSummary {
            cpu_pct: host.cpu_pct(),
            disk_pct: host.disk_pct(),
            ops_per_sec: activity.total_ops_per_sec() as f32,
            partitions_owned: u32::try_from(partitions_owned).unwrap_or(u32::MAX),
            replication_lag_ms: activity.max_replica_lag_ms(),
        };
        (state.applied_index(), load)
    })
}

/// Counts every change of the Raft leader this agent observes.
async fn count_leader_changes(raft: Raft, metrics: Arc<AgentMetrics>) {
    let mut server = raft.server_metrics();
    let mut last = server.borrow().current_leader;
    while server.changed().await.is_ok() {
        let leader = server.borrow().current_leader;
        if leader != last && leader.is_some() {
            metrics.leader_changes.inc();
        }
        last = leader;
    }
}

/// What the leader-only controllers run over.
struct LeaderSeams<'a> {
    meta: &'a Arc<MetaClient>,
    state: &'a StateHandle,
    clock: &'a Clock,
    contacts: Arc<PeerContacts>,
    membership: &'a Membership,
    data: &'a Arc<DataPlane>,
}

fn spawn_controllers(tasks: &Supervisor, config: &Config, seams: LeaderSeams<'_>) {
    let LeaderSeams {
        meta,
        state,
        clock,
        contacts,
        membership,
        data,
    } = seams;
    let assigner_config = AssignerConfig {
        placement: config.placement_config(),
        delete_release_timeout_ms: config.controllers.delete_release_timeout_ms,
        merges: config.scaler.enabled && config.scaler.merge_cold_partitions,
    };
    let reachability = Arc::new(RaftReachability::new(
        meta.raft().clone(),
        contacts.clone(),
        Duration::from_millis(config.controllers.peer_unreachable_after_ms),
    ));
    let assigner = Arc::new(PartitionAssigner::new(
        meta.clone(),
        state.clone(),
        assigner_config,
        clock.clone(),
        reachability,
    ));
    let detector = Arc::new(FailureDetector::new(
        meta.clone(),
        state.clone(),
        membership.clone(),
        contacts.clone(),
        shared::failure::FailureConfig {
            confirm_window_ms: config.controllers.failure_confirm_window_ms,
            suspicion_hold_ms: config.controllers.failure_suspicion_hold_ms,
        },
        clock.clone(),
    ));
    let recovery = Arc::new(RecoveryCoordinator::new(
        meta.clone(),
        state.clone(),
        membership.clone(),
        data.clone(),
        shared::recovery::RecoveryConfig {
            replication_factor: config.placement.replication_factor,
        },
        clock.clone(),
    ));
    let voters = Arc::new(VoterManager::new(
        Arc::new(RaftVoters(meta.raft().clone())),
        state.clone(),
        membership.clone(),
        config.voter_config(),
        config.voters.promote_max_lag_entries,
    ));
    let tick = config.tick_interval();
    on_leader(tasks, "assigner", meta, state, tick, move || {
        let assigner = assigner.clone();
        async move { assigner.step().await }
    });
    on_leader(tasks, "voter-manager", meta, state, tick, move || {
        let voters = voters.clone();
        async move { voters.step().await }
    });
    on_leader(
        tasks,
        "failure-detector",
        meta,
        state,
        FAILURE_CHECK_INTERVAL,
        move || {
            let detector = detector.clone();
            async move { detector.step().await }
        },
    );
    on_leader(tasks, "recovery", meta, state, tick, move || {
        let recovery = recovery.clone();
        async move { recovery.step().await }
    });
}

/// Runs a leader-only controller's `step` under `tasks` (see `run_on_leader`).
fn on_leader<F, Fut>(
    tasks: &Supervisor,
    name: &'static str,
    meta: &Arc<MetaClient>,
    state: &StateHandle,
    tick: Duration,
    step: F,
) where
    F: FnMut() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (meta, state) = (meta.clone(), state.clone());
    tasks.keep_running(name, move || {
        run_on_leader(meta.clone(), state.clone(), tick, step.clone())
    });
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
