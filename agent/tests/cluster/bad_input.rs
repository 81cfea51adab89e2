//! Bad input over HTTP: each gets its status and a JSON error, and the state is unchanged.

use agent::api_client::{ApiClient, Method};
use shared::api::{ErrorBody, ListTablesResponse, TableDescription};
use shared::model::TableStatus;

use crate::harness::{JSON, TestCluster, create_table, table_request, wait_for};

const HTTP_BASE: u16 = 21270;
const BROWSER_HTTP_BASE: u16 = 24550;
const STALLED_HTTP_BASE: u16 = 24600;
const SHAPE_HTTP_BASE: u16 = 25100;

/// Sends a raw request and checks the status and that the body is a JSON error.
fn expect_error(
    client: &ApiClient,
    method: Method,
    path: &str,
    body: Option<&str>,
    status: u16,
) -> ErrorBody {
    let (got, text) = client.raw(method, path, body).expect("request");
    assert_eq!(got, status, "{method:?} {path} {body:?} -> {text}");
    let error: ErrorBody =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not a JSON error ({e}): {text}"));
    assert!(!error.error.code.is_empty() && !error.error.message.is_empty());
    error
}

fn snapshot(client: &ApiClient) -> (ListTablesResponse, TableDescription) {
    (
        client.list_tables().unwrap(),
        client.get_table("existing").unwrap(),
    )
}

#[test]
fn bad_requests_get_json_errors_and_change_nothing() {
    let (_cluster, client) = TestCluster::single(HTTP_BASE, |_| {});
    create_table(&client, &table_request("existing", 1000));
    wait_for("active", || {
        client
            .get_table("existing")
            .ok()
            .filter(|t| t.status == TableStatus::Active)
    });
    let before = snapshot(&client);

    let post = |body: &str, status: u16| {
        expect_error(&client, Method::Post, "/tables", Some(body), status)
    };
    post("{not json", 400);
    post("", 400);
    post(
        r#"{"table_name":"t1","partition_key":"id","capacity":{"mode":"ON_DEMAND"},"schema":{"attributes":[{"name":"id","type":"S"}]},"extra":1}"#,
        400,
    );
    post(
        r#"{"table_name":"t1","partition_key":"id","capacity":{"mode":"ON_DEMAND","bogus":2},"schema":{"attributes":[{"name":"id","type":"S"}]}}"#,
        400,
    );
    let valid = |name: &str| {
        format!(
            r#"{{"table_name":"{name}","partition_key":"id","capacity":{{"mode":"ON_DEMAND"}},"schema":{{"attributes":[{{"name":"id","type":"S"}}]}}}}"#
        )
    };
    for bad_name in ["ab", "has space", "slash/name", "ünicode", &"x".repeat(256)] {
        let e = post(&valid(bad_name), 400);
        assert_eq!(e.error.code, "InvalidRequest");
    }
    assert_eq!(
        post(&valid("existing"), 409).error.code,
        "TableAlreadyExists"
    );
    // Partition key missing from the schema, sort key missing, key of a non-key type.
    post(
        r#"{"table_name":"t2","partition_key":"pk","capacity":{"mode":"ON_DEMAND"},"schema":{"attributes":[{"name":"id","type":"S"}]}}"#,
        400,
    );
    post(
        r#"{"table_name":"t2","partition_key":"id","sort_key":"ts","capacity":{"mode":"ON_DEMAND"},"schema":{"attributes":[{"name":"id","type":"S"}]}}"#,
        400,
    );
    post(
        r#"{"table_name":"t2","partition_key":"id","capacity":{"mode":"ON_DEMAND"},"schema":{"attributes":[{"name":"id","type":"BOOL"}]}}"#,
        400,
    );
    post(
        r#"{"table_name":"t2","partition_key":"id","capacity":{"mode":"ON_DEMAND"},"schema":{"attributes":[{"name":"id","type":"Q"}]}}"#,
        400,
    );
    // PROVISIONED without units, ON_DEMAND with units, zero units.
    post(
        r#"{"table_name":"t3","partition_key":"id","capacity":{"mode":"PROVISIONED"},"schema":{"attributes":[{"name":"id","type":"S"}]}}"#,
        400,
    );
    post(
        r#"{"table_name":"t3","partition_key":"id","capacity":{"mode":"ON_DEMAND","read_units":5},"schema":{"attributes":[{"name":"id","type":"S"}]}}"#,
        400,
    );
    post(
        r#"{"table_name":"t3","partition_key":"id","capacity":{"mode":"PROVISIONED","read_units":0,"write_units":0},"schema":{"attributes":[{"name":"id","type":"S"}]}}"#,
        400,
    );

    // Unknown tables and endpoints.
    for (method, path) in [
        (Method::Get, "/tables/missing"),
        (Method::Delete, "/tables/missing"),
        (Method::Get, "/tables/missing/partitions"),
        (Method::Get, "/tables/missing/schema"),
        (Method::Get, "/no/such/endpoint"),
    ] {
        expect_error(&client, method, path, None, 404);
    }
    expect_error(
        &client,
        Method::Put,
        "/tables/missing/capacity",
        Some(r#"{"mode":"ON_DEMAND"}"#),
        404,
    );
    expect_error(
        &client,
        Method::Get,
        "/tables/existing/schema?version=9",
        None,
        404,
    );
    expect_error(&client, Method::Get, "/tables/x/partitions", None, 400);

    // Schema changes that touch the keys, and malformed capacity bodies.
    let put_schema = |body: &str, status: u16| {
        expect_error(
            &client,
            Method::Put,
            "/tables/existing/schema",
            Some(body),
            status,
        )
    };
    put_schema(r#"{"attributes":[{"name":"id","type":"N"}]}"#, 400);
    put_schema(r#"{"attributes":[{"name":"other","type":"S"}]}"#, 400);
    put_schema(
        r#"{"attributes":[{"name":"id","type":"S"},{"name":"id","type":"N"}]}"#,
        400,
    );
    put_schema(r#"{"attributes":"nope"}"#, 400);
    let put_capacity = |body: &str| {
        expect_error(
            &client,
            Method::Put,
            "/tables/existing/capacity",
            Some(body),
            400,
        )
    };
    put_capacity(r#"{"mode":"PROVISIONED"}"#);
    put_capacity(r#"{"mode":"FAST"}"#);
    put_capacity("[]");

    // Node management: unknown cluster, malformed or unknown node.
    let cluster_id = client.cluster().unwrap().cluster_id.expect("cluster id");
    let nodes =
        |method: Method, path: &str, status: u16| expect_error(&client, method, path, None, status);
    nodes(Method::Get, "/clusters/not-this-one/nodes", 404);
    nodes(Method::Post, "/clusters/not-this-one/nodes/1/drain", 404);
    nodes(
        Method::Post,
        &format!("/clusters/{cluster_id}/nodes/abc/drain"),
        400,
    );
    nodes(
        Method::Post,
        &format!("/clusters/{cluster_id}/nodes/99/drain"),
        404,
    );
    nodes(
        Method::Delete,
        &format!("/clusters/{cluster_id}/nodes/99"),
        404,
    );
    nodes(
        Method::Put,
        &format!("/clusters/{cluster_id}/nodes/1/drain"),
        405,
    );
    let listed = client.nodes(&cluster_id).unwrap().nodes;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, shared::model::NodeStatus::Healthy);
    assert_eq!(listed[0].heartbeat_staleness_ms, Some(0));

    assert_eq!(
        snapshot(&client),
        before,
        "rejected requests changed the state"
    );

    // A compatible schema change makes a new version and keeps the old one.
    let (status, _) = client
        .raw(
            Method::Put,
            "/tables/existing/schema",
            Some(r#"{"attributes":[{"name":"id","type":"S"},{"name":"n","type":"N"}]}"#),
        )
        .unwrap();
    assert_eq!(status, 201);
    assert_eq!(
        client
            .get_schema("existing", Some(1))
            .unwrap()
            .attributes
            .len(),
        1
    );
    assert_eq!(client.get_schema("existing", None).unwrap().version, 2);
}

#[test]
fn extractor_rejections_are_json_errors() {
    let (_cluster, client) = TestCluster::single(HTTP_BASE + 10, |c| c.http.max_body_bytes = 4096);
    let huge = format!(r#"{{"table_name":"{}"}}"#, "x".repeat(8192));
    expect_error(&client, Method::Post, "/tables", Some(&huge), 413);
    expect_error(
        &client,
        Method::Get,
        "/tables/abc/schema?version=notanumber",
        None,
        400,
    );
    expect_error(&client, Method::Put, "/tables", Some("{}"), 405);
    assert!(client.list_tables().unwrap().tables.is_empty());
}

#[test]
fn metrics_are_served_in_openmetrics_text() {
    let (_cluster, client) = TestCluster::single(HTTP_BASE + 20, |_| {});
    create_table(&client, &table_request("metered", 1000));
    wait_for("active", || {
        client
            .get_table("metered")
            .ok()
            .filter(|t| t.status == TableStatus::Active)
    });
    let (status, text) = client.raw(Method::Get, "/metrics", None).unwrap();
    assert_eq!(status, 200);
    for expected in [
        "agent_raft_is_leader 1",
        "agent_raft_voters 1",
        r#"agent_tables{status="ACTIVE"} 1"#,
        "agent_local_partitions 1",
        "agent_meta_commit_seconds_bucket",
        r#"agent_meta_proposals_total{outcome="applied"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

#[test]
fn the_leaders_public_key_is_served_and_its_private_key_stays_in_its_file() {
    let (cluster, client) = TestCluster::single(HTTP_BASE + 30, |_| {});
    let key = wait_for("a published signing key", || {
        let (status, text) = client
            .raw(Method::Get, "/.well-known/jwks.json", None)
            .ok()?;
        assert_eq!(status, 200, "{text}");
        let jwks: serde_json::Value = serde_json::from_str(&text).unwrap();
        jwks["keys"].as_array()?.first().cloned()
    });
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert!(key["kid"].as_str().unwrap().starts_with("node1-"));
    assert!(key.get("d").is_none(), "no private part in a JWK set");
    // The private key is in its own file and nowhere else: not in the metadata
    // database (log, snapshot), the partition data, the configs or the logs.
    let key_file = cluster
        .dir()
        .join("node-1/data")
        .join(agent::auth::keys::SIGNING_KEY_FILE);
    let private = std::fs::read_to_string(&key_file).unwrap();
    let private = private.trim();
    assert_eq!(private.len(), 64);
    let raw = (0..32)
        .map(|i| u8::from_str_radix(&private[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    let mut checked = 0;
    let mut stack = vec![cluster.dir().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path != key_file {
                let bytes = std::fs::read(&path).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains(private),
                    "private key (hex) in {}",
                    path.display()
                );
                assert!(
                    !bytes.windows(raw.len()).any(|w| w == raw.as_slice()),
                    "private key (raw) in {}",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} files checked");
}

#[test]
fn a_cross_site_form_post_cannot_change_the_cluster_with_basic_credentials() {
    let (cluster, client) = TestCluster::single(BROWSER_HTTP_BASE, |_| {});
    let body = serde_json::to_string(&table_request("formed", 100)).unwrap();
    // What a browser's form can send cross-site without a preflight; the body is valid
    // JSON, as `enctype="text/plain"` can make it. Before: 201, the table was created.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let answer = cluster.send(1, "POST", "/tables", content_type, &body);
        assert_eq!(answer.status, 415, "{content_type}: {}", answer.body);
        let error: ErrorBody = serde_json::from_str(&answer.body).expect("a JSON error");
        assert!(
            error.error.message.contains("application/json"),
            "{error:?}"
        );
        let answer = cluster.send(1, "DELETE", "/tables/formed", content_type, "");
        assert_eq!(answer.status, 415, "{content_type}: {}", answer.body);
    }
    assert!(client.list_tables().unwrap().tables.is_empty());
    let answer = cluster.send(
        1,
        "POST",
        "/tables",
        "Application/JSON; charset=utf-8",
        &body,
    );
    assert!(matches!(answer.status, 200..=202), "{answer:?}");
    let answer = cluster.send(1, "POST", "/tables", JSON, "{");
    assert_eq!(answer.status, 400, "JSON still parsed after the type check");
}

#[test]
fn a_client_stalling_in_its_request_headers_is_cut_off() {
    use std::io::{Read, Write};
    let (cluster, client) = TestCluster::single(STALLED_HTTP_BASE, |c| {
        c.http.header_read_timeout_ms = 500;
    });
    let addr = client.endpoint().trim_start_matches("http://").to_string();
    // Before: every one of these stayed open as long as its client wished.
    let mut stalled: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
                .unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            stream
        })
        .collect();
    for stream in &mut stalled {
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            // Closed (possibly after a 408 answer) or reset: cut off.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a stalled connection stayed open: {e}"),
        }
    }
    assert!(
        cluster.anonymous(1).healthy(),
        "complete requests are served"
    );
}

/// Sends `head` (request line and headers, without the final blank line) on a fresh
/// connection to agent 1 and returns the status and body of the answer.
fn raw_http(cluster: &TestCluster, head: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = cluster
        .anonymous(1)
        .endpoint()
        .trim_start_matches("http://")
        .to_string();
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(stream, "{head}Connection: close\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[test]
fn oversized_and_undecodable_requests_get_json_errors() {
    let (cluster, client) = TestCluster::single(SHAPE_HTTP_BASE, |_| {});
    create_table(&client, &table_request("existing", 1000));
    let long = format!("/tables/{}", "a".repeat(10_000));
    let error = expect_error(&client, Method::Get, &long, None, 414);
    assert_eq!(error.error.code, "UriTooLong");
    for path in ["/tables/%FF", "/tables/existing/items/%C3%28"] {
        let error = expect_error(&client, Method::Get, path, None, 400);
        assert_eq!(error.error.code, "InvalidPath", "{path}");
    }
    let many: String = (0..100).map(|i| format!("X-Filler-{i}: v\r\n")).collect();
    let large = format!("X-Large: {}\r\n", "v".repeat(40_000));
    for headers in [many, large] {
        let (status, body) = raw_http(
            &cluster,
            &format!("GET /tables HTTP/1.1\r\nHost: x\r\n{headers}"),
        );
        assert_eq!(status, 431, "{body}");
        let error: ErrorBody = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("not a JSON error ({e}): {body}"));
        assert_eq!(error.error.code, "HeadersTooLarge");
    }
    // A request within the limits is served as before.
    assert_eq!(client.list_tables().unwrap().tables.len(), 1);
}
