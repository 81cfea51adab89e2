//! A cluster of real agent processes for one test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::client::ApiClient;
use agent::config::Config;
use agent::dev::{Children, PortPlan, spawn_agent, write_cluster_files};
use shared::api::{CapacityRequest, CreateTableRequest, SchemaRequest};
use shared::model::{Attribute, AttributeType, CapacityMode};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// Real agents on loopback, killed when dropped.
pub struct TestCluster {
    _dir: tempfile::TempDir,
    configs: Vec<PathBuf>,
    ports: PortPlan,
    children: Children,
}

impl TestCluster {
    /// Writes the files for `nodes` agents (HTTP ports from `http_base`) and starts them.
    pub fn start(nodes: u16, http_base: u16, tune: impl Fn(&mut Config)) -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = PortPlan { http_base };
        let configs = write_cluster_files(dir.path(), nodes, ports).expect("cluster files");
        for path in &configs {
            rewrite_config(path, &tune);
        }
        let mut cluster = TestCluster {
            _dir: dir,
            configs,
            ports,
            children: Children::default(),
        };
        for i in 1..=nodes {
            cluster.start_node(i);
        }
        cluster
    }

    /// Starts (or restarts) agent `i` from its data dir.
    pub fn start_node(&mut self, i: u16) {
        let binary = Path::new(env!("CARGO_BIN_EXE_agent"));
        let child = spawn_agent(binary, &self.configs[usize::from(i) - 1]).expect("spawn agent");
        self.children.push(i, child);
    }

    /// `kill -9` agent `i`.
    pub fn kill(&mut self, i: u16) {
        self.children.kill(i);
    }

    /// Stops every agent with SIGTERM.
    pub fn stop_all(&mut self) {
        self.children.stop_all(Duration::from_secs(5));
    }

    /// A client of agent `i`.
    pub fn client(&self, i: u16) -> ApiClient {
        ApiClient::new(&format!("http://{}", self.ports.http(i)))
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

/// A valid create request with the given write units and a string partition key.
pub fn table_request(name: &str, write_units: u64) -> CreateTableRequest {
    CreateTableRequest {
        table_name: name.to_string(),
        partition_key: "id".to_string(),
        sort_key: None,
        capacity: CapacityRequest {
            mode: CapacityMode::Provisioned,
            read_units: Some(100),
            write_units: Some(write_units),
        },
        schema: SchemaRequest {
            attributes: vec![Attribute {
                name: "id".to_string(),
                attr_type: AttributeType::S,
            }],
        },
    }
}
