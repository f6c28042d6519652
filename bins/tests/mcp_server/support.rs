//! Shared helpers: a real CRM file (synthetic rows plus known fixture rows), the
//! `crm-mcp` binary spawned over stdio or HTTP, and an rmcp client talking to it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crm_store::phase0::{self, Entity, EntityKind, EntityLink, NewCandidate, NewMerge};
use crm_store::synthetic::{SyntheticConfig, generate};
use crm_store::{Store, StoreConfig, Timestamp};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The `crm-mcp` binary built for these tests.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_crm-mcp");

/// Known fixture ids (far above the synthetic rows).
pub(crate) const ADA: i64 = 900_001;
pub(crate) const CHARLES: i64 = 900_002;
pub(crate) const DELETED_PERSON: i64 = 900_003;
pub(crate) const ADA_DUPLICATE: i64 = 900_004;
pub(crate) const ADA_KING: i64 = 900_005;
pub(crate) const ENGINES: i64 = 900_001;
pub(crate) const DELETED_ORG: i64 = 900_002;
pub(crate) const DEAL: i64 = 900_001;
/// Ada's interactions: ids `ADA_FIRST_INTERACTION ..` + `ADA_INTERACTIONS`, one per day
/// from 2025-01-01, every third one a call.
pub(crate) const ADA_FIRST_INTERACTION: i64 = 900_001;
pub(crate) const ADA_INTERACTIONS: i64 = 45;
/// The pending merge candidate between Ada's and Charles's entities.
pub(crate) const CANDIDATE: i64 = 1;
/// The pending merge candidate between Ada's and Ada King's entities.
pub(crate) const KING_CANDIDATE: i64 = 2;
/// Length of Ada's bio.
pub(crate) const BIG_BIO_CHARS: usize = 1_048_576;

/// A client connected to a `crm-mcp` process.
pub(crate) type Client = RunningService<RoleClient, ClientConfig>;

/// A temporary CRM file with synthetic rows and the fixture rows above.
pub(crate) struct Crm {
    _dir: TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) db: PathBuf,
}

impl Crm {
    /// Builds the CRM: 300 synthetic people (with messy rows and 1 MB notes), then the
    /// fixture rows and Phase-0 records.
    pub(crate) fn build() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        let config = SyntheticConfig {
            seed: 7,
            people: 300,
            organizations: 60,
            interactions: 600,
            deals: 40,
            messy_rate: 0.1,
            ..SyntheticConfig::default()
        };
        generate(&path, &config, &mut |_| {}).unwrap();
        let store = Store::open(StoreConfig::new(&path)).unwrap();
        insert_fixtures(&store);
        drop(store);
        Self {
            dir: dir.path().to_path_buf(),
            db: path,
            _dir: dir,
        }
    }

    /// A plain connection to the file.
    pub(crate) fn conn(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.db).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }
}

fn insert_fixtures(store: &Store) {
    let mut conn = store.writer().unwrap();
    let t = "2025-01-01T00:00:00.000Z";
    let bio = "Ada wrote the first program. ".repeat(BIG_BIO_CHARS / 29 + 1);
    let bio = &bio[..BIG_BIO_CHARS];
    let description = "Builds engines that compute. ".repeat(700);
    conn.execute_batch(&format!(
        "INSERT INTO organizations (id, name, kind, domain, website, description, location, created_at, updated_at)
           VALUES ({ENGINES}, 'Analytical Engines Ltd', 'startup', 'analytical.example', 'https://analytical.example',
                   '{description}', 'London', '{t}', '{t}');
         INSERT INTO organizations (id, name, kind, domain, created_at, updated_at, deleted_at)
           VALUES ({DELETED_ORG}, 'Defunct Looms', 'startup', 'looms.example', '{t}', '{t}', '{t}');
         INSERT INTO people (id, first_name, last_name, full_name, email, phone, title, organization_id, location, created_at, updated_at)
           VALUES ({CHARLES}, 'Charles', 'Babbage', 'Charles Babbage', 'charles@analytical.example', '+44 20 7946 0000',
                   'Inventor', {ENGINES}, 'London', '{t}', '{t}');
         INSERT INTO people (id, full_name, email, organization_id, created_at, updated_at, deleted_at)
           VALUES ({DELETED_PERSON}, 'Deleted Person', 'gone@analytical.example', {ENGINES}, '{t}', '{t}', '{t}');
         INSERT INTO people (id, full_name, email, organization_id, created_at, updated_at)
           VALUES ({ADA_DUPLICATE}, 'A. Lovelace', 'ADA@analytical.example ', {ENGINES}, '{t}', '{t}');
         INSERT INTO people (id, first_name, last_name, full_name, email, created_at, updated_at)
           VALUES ({ADA_KING}, 'Ada', 'King', 'Ada King', 'countess@lovelace.example', '{t}', '{t}');
         INSERT INTO deals (id, organization_id, name, stage, amount_usd, notes, created_at, updated_at)
           VALUES ({DEAL}, {ENGINES}, 'Engines Seed', 'term_sheet', 1500000.0, 'Lead: <b>us</b>', '{t}', '{t}');"
    ))
    .unwrap();
    conn.execute(
        "INSERT INTO people (id, first_name, last_name, full_name, email, phone, title, organization_id,
                             linkedin_url, location, bio, created_at, updated_at)
         VALUES (?1, 'Ada', 'Lovelace', 'Ada Lovelace', 'ada@analytical.example', '+44 20 7946 0001', 'Countess',
                 ?2, 'https://www.linkedin.com/in/ada-lovelace', 'London', ?3, ?4, ?4)",
        rusqlite::params![ADA, ENGINES, bio, t],
    )
    .unwrap();
    for i in 0..ADA_INTERACTIONS {
        let id = ADA_FIRST_INTERACTION + i;
        let day = Timestamp::parse("2025-01-01T10:00:00Z")
            .unwrap()
            .saturating_add(Duration::from_secs(86_400 * i as u64));
        let kind = if i % 3 == 0 { "call" } else { "meeting" };
        let body = format!("Discussed the engine, part {i}. ").repeat(40);
        conn.execute(
            "INSERT INTO interactions (id, kind, occurred_at, subject, body, organization_id, created_by, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'fixture', ?7, ?7)",
            rusqlite::params![id, kind, day.to_canonical(), format!("Engine review {i}"), body, ENGINES, t],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO interaction_people (interaction_id, person_id) VALUES (?1, ?2)",
            rusqlite::params![id, ADA],
        )
        .unwrap();
        if i % 2 == 0 {
            conn.execute(
                "INSERT INTO interaction_people (interaction_id, person_id) VALUES (?1, ?2)",
                rusqlite::params![id, CHARLES],
            )
            .unwrap();
        }
    }

    let now = Timestamp::parse(t).unwrap();
    let tx = conn.transaction().unwrap();
    for (id, name) in [
        (ADA, "Ada Lovelace"),
        (CHARLES, "Charles Babbage"),
        (ADA_KING, "Ada King"),
    ] {
        phase0::insert_entity(
            &tx,
            &Entity {
                entity_id: EntityKind::Person.entity_id(id),
                kind: EntityKind::Person,
                display_name: Some(name.to_owned()),
                created_at: now,
                updated_at: now,
                deleted_at: None,
                merged_into: None,
            },
        )
        .unwrap();
    }
    for (row, entity, rule) in [
        (ADA, ADA, "singleton"),
        (ADA_DUPLICATE, ADA, "email"),
        (CHARLES, CHARLES, "singleton"),
        (ADA_KING, ADA_KING, "singleton"),
    ] {
        phase0::upsert_link(
            &tx,
            &EntityLink {
                source_table: crm_store::SourceTable::People,
                source_id: row,
                entity_id: EntityKind::Person.entity_id(entity),
                rule: rule.to_owned(),
                linked_at: now,
            },
        )
        .unwrap();
    }
    let candidate = phase0::upsert_candidate(
        &tx,
        &NewCandidate {
            kind: EntityKind::Person,
            entity_a: EntityKind::Person.entity_id(ADA),
            entity_b: EntityKind::Person.entity_id(CHARLES),
            reasons: vec!["shared_organization".to_owned()],
            score: 0.42,
        },
        now,
    )
    .unwrap();
    assert_eq!(candidate.id, CANDIDATE);
    let king = phase0::upsert_candidate(
        &tx,
        &NewCandidate {
            kind: EntityKind::Person,
            entity_a: EntityKind::Person.entity_id(ADA),
            entity_b: EntityKind::Person.entity_id(ADA_KING),
            reasons: vec!["given_name".to_owned(), "married_name".to_owned()],
            score: 0.71,
        },
        now,
    )
    .unwrap();
    assert_eq!(king.id, KING_CANDIDATE);
    phase0::insert_merge(
        &tx,
        &NewMerge {
            kind: EntityKind::Person,
            winner: EntityKind::Person.entity_id(ADA),
            loser: EntityKind::Person.entity_id(ADA_DUPLICATE),
            decided_by: "rule".to_owned(),
            confidence: Some(1.0),
            rationale: Some("same email".to_owned()),
        },
        now,
    )
    .unwrap();
    tx.commit().unwrap();
}

fn command(crm: &Crm, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .current_dir(&crm.dir)
        .arg("--db")
        .arg(&crm.db)
        .args(args)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn client_config(name: &str) -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new(name, "1.0"),
    )
}

/// Spawns `crm-mcp` over stdio and connects an rmcp client named `name`.
pub(crate) async fn stdio(crm: &Crm, args: &[&str], name: &str) -> Client {
    stdio_env(crm, args, &[], name).await
}

/// Like [`stdio`], with extra environment variables.
pub(crate) async fn stdio_env(
    crm: &Crm,
    args: &[&str],
    env: &[(&str, String)],
    name: &str,
) -> Client {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (transport, _) = TokioChildProcess::builder(command(crm, args, &env))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    client_config(name).serve(transport).await.unwrap()
}

/// A `crm-mcp --http` process, killed on drop.
pub(crate) struct HttpServer {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`
    pub(crate) base: String,
    /// The bound address, `127.0.0.1:PORT`.
    pub(crate) addr: String,
}

impl HttpServer {
    /// The `/mcp` URL.
    pub(crate) fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub(crate) async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("crm-mcp did not exit within 20 s of SIGTERM")
            .unwrap()
    }
}

/// Spawns `crm-mcp --http 127.0.0.1:0` and waits for the address it logs.
pub(crate) async fn http(crm: &Crm, args: &[&str], env: &[(&str, &str)]) -> HttpServer {
    http_at(crm, "127.0.0.1:0", args, env).await
}

/// Spawns `crm-mcp --http ADDR` and waits for the address it logs.
pub(crate) async fn http_at(
    crm: &Crm,
    addr: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> HttpServer {
    let mut all = vec!["--http", addr, "--log-format", "json"];
    all.extend_from_slice(args);
    let mut child = command(crm, &all, env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(remaining, lines.next_line())
            .await
            .expect("crm-mcp did not report its address in time")
            .unwrap()
            .expect("crm-mcp exited before serving");
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["message"] == "serving mcp over http" {
            break event["addr"].as_str().unwrap().to_owned();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    HttpServer {
        child,
        base: format!("http://{addr}"),
        addr,
    }
}

/// Connects an rmcp Streamable HTTP client named `name` to `server`.
pub(crate) async fn http_client(server: &HttpServer, token: Option<&str>, name: &str) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(server.mcp_url());
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    client_config(name).serve(transport).await.unwrap()
}

/// Calls a tool with JSON arguments.
pub(crate) async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    client.call_tool(params).await.unwrap()
}

/// Calls a tool that must succeed; returns its structured content.
pub(crate) async fn ok(client: &Client, tool: &str, args: Value) -> Value {
    let result = call(client, tool, args.clone()).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool}({args}) failed: {}",
        text_of(&result)
    );
    let structured = result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{tool} returned no structured content"));
    // The text copy says the same as the structured content.
    let text: Value = serde_json::from_str(&text_of(&result)).unwrap();
    assert_eq!(text, structured, "{tool}: text copy differs");
    structured
}

/// Calls a tool that must fail with a tool error; returns its message.
pub(crate) async fn tool_error(client: &Client, tool: &str, args: Value) -> String {
    let result = call(client, tool, args.clone()).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool}({}) should have failed, got {}",
        short(&args),
        short(&result.structured_content.clone().unwrap_or_default())
    );
    text_of(&result)
}

/// The text content of a result.
pub(crate) fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        format!("{}…", &s[..300])
    } else {
        s
    }
}

/// Rows of `mcp_write_log`, oldest first.
pub(crate) fn write_log(crm: &Crm) -> Vec<Value> {
    let conn = crm.conn();
    let mut stmt = conn
        .prepare(
            "SELECT id, tool, client, arguments_json, target_table, target_id, before_json, \
             after_json, outcome FROM mcp_write_log ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let json = |i: usize| -> rusqlite::Result<Value> {
            Ok(r.get::<_, Option<String>>(i)?
                .map(|s| serde_json::from_str(&s).unwrap())
                .unwrap_or(Value::Null))
        };
        Ok(json!({
            "id": r.get::<_, i64>(0)?,
            "tool": r.get::<_, String>(1)?,
            "client": r.get::<_, Option<String>>(2)?,
            "arguments": json(3)?,
            "target_table": r.get::<_, Option<String>>(4)?,
            "target_id": r.get::<_, Option<i64>>(5)?,
            "before": json(6)?,
            "after": json(7)?,
            "outcome": r.get::<_, String>(8)?,
        }))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Every path in a JSON schema whose `format` is `uint` (what `usize` produces).
pub(crate) fn uint_formats(schema: &Value, path: &str, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "format" && v.as_str().is_some_and(|f| f == "uint") {
                    out.push(path.to_owned());
                }
                uint_formats(v, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                uint_formats(v, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}
