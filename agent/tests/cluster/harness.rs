//! A cluster of real agent processes for one test.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agent::api_client::{ApiClient, Authorization, ClientError};
use agent::auth::admin::PrincipalCredentials;
use agent::config::Config;
use agent::data_client::DataClient;
use agent::dev::{Children, PortPlan, spawn_agent, spawn_agent_with_env, write_cluster_files};
use shared::api::auth::IssueCredentialRequest;
use shared::api::{CapacityRequest, CreateTableRequest};
use shared::model::CapacityMode;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// Multi-process tests run one at a time: parallel clusters of debug-build agents on a
/// 2-core machine would starve each other's Raft timers and make the tests flaky.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Waits for this test's turn to run agents (see [`ONE_CLUSTER_AT_A_TIME`]).
pub fn exclusive() -> MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Real agents on loopback, killed when dropped. Fields drop in order: the agents die
/// before their directory goes, which is kept (with its logs) when the test failed.
pub struct TestCluster {
    children: Children,
    dir: Option<tempfile::TempDir>,
    configs: Vec<PathBuf>,
    ports: PortPlan,
    _turn: MutexGuard<'static, ()>,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.children.stop_all(Duration::from_millis(0));
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "test failed: agent data and logs kept in {}",
                kept.display()
            );
            for path in &self.configs {
                print_log_tail(&path.with_file_name(agent::dev::LOG_FILE));
            }
        }
    }
}

/// Prints the last lines of an agent's log to the test output.
fn print_log_tail(path: &Path) {
    const TAIL_LINES: usize = 40;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("--- last lines of {} ---", path.display());
    for line in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
        eprintln!("{line}");
    }
}

impl TestCluster {
    /// Writes the files for `nodes` agents (HTTP ports from `http_base`) and starts them.
    pub fn start(nodes: u16, http_base: u16, tune: impl Fn(&mut Config)) -> TestCluster {
        TestCluster::start_some(nodes, nodes, http_base, tune)
    }

    /// Writes the files for `nodes` agents and starts the first `running` of them (the
    /// others join later with [`TestCluster::start_node`]).
    pub fn start_some(
        nodes: u16,
        running: u16,
        http_base: u16,
        tune: impl Fn(&mut Config),
    ) -> TestCluster {
        let turn = ONE_CLUSTER_AT_A_TIME
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = PortPlan { http_base };
        let configs = write_cluster_files(dir.path(), nodes, ports).expect("cluster files");
        for path in &configs {
            rewrite_config(path, &tune);
        }
        let mut cluster = TestCluster {
            children: Children::default(),
            dir: Some(dir),
            configs,
            ports,
            _turn: turn,
        };
        for i in 1..=running {
            cluster.start_node(i);
        }
        cluster
    }

    /// One agent (a one-voter cluster), healthy, and a client of it.
    pub fn single(http_base: u16, tune: impl Fn(&mut Config)) -> (TestCluster, ApiClient) {
        let cluster = TestCluster::start(1, http_base, tune);
        let client = cluster.client(1);
        wait_for("a healthy agent", || client.healthy().then_some(()));
        (cluster, client)
    }

    /// Starts (or restarts) agent `i` from its data dir.
    pub fn start_node(&mut self, i: u16) {
        let binary = Path::new(env!("CARGO_BIN_EXE_agent"));
        let child = spawn_agent(binary, &self.configs[usize::from(i) - 1]).expect("spawn agent");
        self.children.push(i, child);
    }

    /// Starts agent `i` with extra environment variables.
    pub fn start_node_with_env(&mut self, i: u16, env: &[(&str, &str)]) {
        let binary = Path::new(env!("CARGO_BIN_EXE_agent"));
        let config = &self.configs[usize::from(i) - 1];
        let child = spawn_agent_with_env(binary, config, env).expect("spawn agent");
        self.children.push(i, child);
    }

    /// How agent `i` exited, once it has; `None` while it runs.
    pub fn exit_status(&mut self, i: u16) -> Option<std::process::ExitStatus> {
        self.children.exit_status(i)
    }

    /// Stops agent `i` gracefully (SIGTERM) and waits for it to exit (killed after
    /// [`WAIT`]); returns how long it took and how it exited.
    pub fn stop(&mut self, i: u16) -> (Duration, std::process::ExitStatus) {
        let started = Instant::now();
        assert!(
            self.children.signal(i, libc::SIGTERM),
            "agent {i} is not running"
        );
        let deadline = started + WAIT;
        loop {
            if let Some(status) = self.children.exit_status(i) {
                return (started.elapsed(), status);
            }
            if Instant::now() > deadline {
                self.children.kill(i);
                panic!("agent {i} did not exit within {WAIT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9` agent `i`.
    pub fn kill(&mut self, i: u16) {
        self.children.kill(i);
    }

    /// Freezes agent `i` (SIGSTOP), as a long GC pause or a hung host would.
    pub fn pause(&self, i: u16) {
        assert!(
            self.children.signal(i, libc::SIGSTOP),
            "agent {i} not running"
        );
    }

    /// Resumes agent `i` (SIGCONT).
    pub fn resume(&self, i: u16) {
        assert!(
            self.children.signal(i, libc::SIGCONT),
            "agent {i} not running"
        );
    }

    /// Sends agent `i` SIGHUP (reload its certificates).
    pub fn hang_up(&self, i: u16) {
        assert!(
            self.children.signal(i, libc::SIGHUP),
            "agent {i} not running"
        );
    }

    /// The value of the first series of agent `i`'s `/metrics` whose line starts with
    /// `series` (`None` until it is exported).
    pub fn metric(&self, i: u16, series: &str) -> Option<f64> {
        let (_, text) = self
            .anonymous(i)
            .raw(agent::api_client::Method::Get, "/metrics", None)
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }

    /// Sends a request to agent `i` as the bootstrap admin, with the content type given,
    /// and returns what came back whatever its status.
    pub fn send(&self, i: u16, method: &str, path: &str, content_type: &str, body: &str) -> Answer {
        let admin = self.admin();
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", admin.principal_arn, admin.secret),
        );
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.ports.http(i)))
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", content_type)
            .body(body.to_string())
            .unwrap();
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut response = agent.run(request).expect("an answer");
        Answer {
            status: response.status().as_u16(),
            retry_after: response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: response.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    /// Stops every agent with SIGTERM.
    pub fn stop_all(&mut self) {
        self.children.stop_all(Duration::from_secs(5));
    }

    /// A client of agent `i` without credentials.
    pub fn anonymous(&self, i: u16) -> ApiClient {
        ApiClient::new(&format!("http://{}", self.ports.http(i)))
    }

    /// The bootstrap admin's credentials (agent 1 writes them when it creates the
    /// cluster; waits for the file).
    pub fn admin(&self) -> PrincipalCredentials {
        let path = agent::dev::admin_credentials_path(self.dir());
        wait_for("the admin credentials file", || {
            PrincipalCredentials::load(&path).ok()
        })
    }

    /// A client of agent `i` authenticated as the bootstrap admin.
    pub fn client(&self, i: u16) -> ApiClient {
        self.anonymous(i).with_principal(&self.admin())
    }

    /// A credential of the bootstrap admin for `table` (every action).
    pub fn token(&self, table: &str) -> String {
        let admin = self.admin();
        let request = IssueCredentialRequest {
            principal_arn: admin.principal_arn.clone(),
            ttl_seconds: None,
            actions: None,
        };
        // Through any agent that answers (some may have been killed).
        let mut next = 0;
        wait_for("a credential", || {
            next = next % self.size() + 1;
            match self.client(next).issue_credential(table, &request) {
                Ok(issued) => Some(issued.token),
                Err(ClientError::Api {
                    status, message, ..
                }) if status != 503 => {
                    panic!("credential for {table}: {status} {message}")
                }
                Err(_) => None,
            }
        })
    }

    /// A client of agent `i` sending a credential for `table` (item requests).
    pub fn item_client(&self, i: u16, table: &str) -> ApiClient {
        let token = Authorization::Token(self.token(table));
        self.anonymous(i).with_authorization(&token)
    }

    /// A routing data client through `endpoints`, authenticated as the bootstrap admin
    /// (it obtains its credentials itself).
    pub fn data_client(&self, endpoints: Vec<String>) -> DataClient {
        DataClient::new(endpoints).with_authorization(Authorization::Principal(self.admin()))
    }

    /// The HTTP endpoints of every agent.
    pub fn endpoints(&self) -> Vec<String> {
        (1..=self.size())
            .map(|i| format!("http://{}", self.ports.http(i)))
            .collect()
    }

    /// The directory holding every agent's configuration, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("kept until drop").path()
    }

    /// Agent `i`'s configuration file.
    pub fn config_path(&self, i: u16) -> &Path {
        &self.configs[usize::from(i) - 1]
    }

    /// Changes agent `i`'s configuration (taken up at its next start).
    pub fn retune(&self, i: u16, tune: impl Fn(&mut Config)) {
        rewrite_config(self.config_path(i), &tune);
    }

    /// Agent `i`'s configuration.
    pub fn config(&self, i: u16) -> Config {
        toml::from_str(&std::fs::read_to_string(self.config_path(i)).unwrap()).unwrap()
    }

    /// What agent `i` logged so far.
    pub fn log(&self, i: u16) -> String {
        let path = self.config_path(i).with_file_name(agent::dev::LOG_FILE);
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Runs `agentctl` against agent `i` as the bootstrap admin; returns its output
    /// whatever its exit status.
    pub fn agentctl(&self, i: u16, args: &[&str]) -> std::process::Output {
        let credentials = agent::dev::admin_credentials_path(self.dir());
        std::process::Command::new(env!("CARGO_BIN_EXE_agentctl"))
            .arg("--endpoint")
            .arg(format!("http://{}", self.ports.http(i)))
            .arg("--credentials")
            .arg(credentials)
            .args(args)
            .env_remove("AGENTCTL_CREDENTIALS")
            .env_remove("AGENTCTL_ENDPOINT")
            .output()
            .expect("run agentctl")
    }

    /// Number of agents.
    pub fn size(&self) -> u16 {
        self.configs.len() as u16
    }
}

fn rewrite_config(path: &Path, tune: &impl Fn(&mut Config)) {
    let mut config: Config = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    tune(&mut config);
    config.validate().expect("tuned config is valid");
    std::fs::write(path, toml::to_string_pretty(&config).unwrap()).unwrap();
}

/// Turns the Scaler off: for tests that compare placements before and after an event,
/// which its rebalancing would change meanwhile.
pub fn no_scaler(config: &mut Config) {
    config.scaler.enabled = false;
}

/// The content type of JSON bodies.
pub const JSON: &str = "application/json";

/// An HTTP answer, whatever its status.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// Body text.
    pub body: String,
}

/// Runs the `agent` binary with `args` and returns its output; panics on a failure.
pub fn agent_command(args: &[&str]) -> String {
    let out = run_agent_command(args);
    assert!(
        out.status.success(),
        "agent {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the `agent` binary with `args`, expecting it to fail; returns its error output.
pub fn agent_command_fails(args: &[&str]) -> String {
    let out = run_agent_command(args);
    assert!(
        !out.status.success(),
        "agent {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run_agent_command(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(args)
        .output()
        .expect("run agent")
}

/// Polls `f` until it returns `Some`, failing the test with `what` after [`WAIT`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates a table, retrying while the cluster is unavailable (409 means an earlier
/// attempt whose answer was lost did create it).
pub fn create_table(client: &ApiClient, request: &CreateTableRequest) {
    retry("create table", &[409], || client.create_table(request));
}

/// Retries a call while the cluster is electing a leader (503), cannot be reached, or
/// does not know whether an earlier attempt applied (504). Any other error fails the test,
/// except the ones listed in `settled`, which mean an earlier attempt did apply.
pub fn retry<T>(
    what: &str,
    settled: &[u16],
    mut f: impl FnMut() -> Result<T, ClientError>,
) -> Option<T> {
    wait_for(what, || match f() {
        Ok(v) => Some(Some(v)),
        Err(ClientError::Api { status, .. }) if settled.contains(&status) => Some(None),
        Err(ClientError::Api {
            status,
            code,
            message,
        }) if status != 503 && status != 504 => {
            panic!("{what}: {status} {code}: {message}")
        }
        Err(_) => None,
    })
}

/// A read: retried while the cluster is unavailable.
pub fn read<T>(what: &str, f: impl FnMut() -> Result<T, ClientError>) -> T {
    retry(what, &[], f).expect("reads always settle with a value")
}

/// A valid create request with the given write units and a string partition key.
pub fn table_request(name: &str, write_units: u64) -> CreateTableRequest {
    let capacity = CapacityRequest {
        mode: CapacityMode::Provisioned,
        read_units: Some(100),
        write_units: Some(write_units),
    };
    CreateTableRequest::with_string_key(name, "id", capacity)
}
