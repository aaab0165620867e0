//! A bounded loopback load test of `agentc serve`: a scripted model and a mocked tool,
//! an SQLite store in a temporary directory (or a fresh PostgreSQL database), and
//! clients that each start an engagement (POST, 303), wait for it to end
//! (`GET …?wait=30`, held by the server while the engagement runs) and start the next.
//! For 10, 100 and 1,000 concurrent engagements it reports engagements per second,
//! latency percentiles (POST to the answer that says `completed`) and whether every
//! engagement started completed (none lost).
//!
//! Run with `cargo bench -p agentc-server --bench load`; `AGENTC_LOAD_SCALE=0.1` runs a
//! tenth of the engagements, `AGENTC_LOAD_LEVELS=1000:4000` only the levels given
//! (concurrent:engagements), `AGENTC_LOAD_POSTGRES=postgres://…` (a server whose
//! user may create databases) the PostgreSQL store instead of SQLite, and
//! `AGENTC_LOAD_STORE=memory` the SQLite store in memory (an upper bound: no file).

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The allocator of the `agentc` binary (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentc_compiler::SourceInput;
use agentc_runtime::{InMemoryCredentials, MockTool, Model, ScriptedModel, ToolRegistry};
use agentc_server::{
    AuthConfig, Engine, PostgresStore, ServerConfig, ServerParts, SqliteStore, Store, serve,
};

const SPECS: &str = r#"kind: openagentspec:v1/tool
name: lookup_order
description: Looks up an order.
input:
  type: object
  properties:
    order: {type: string}
  required: [order]
output:
  type: object
  properties:
    ships: {type: string}
  required: [ships]
binding:
  native: {function: bench::lookup_order}
---
kind: openagentspec:v1/agent
name: vendor_support
description: Answers order questions.
intent: You answer order questions.
owner: support@vendor.example
capabilities:
  lookup_order:
    input_restriction:
      assertion: recent.lookup_order.inputs.order.startsWith("o-")
exposes:
  orders_checked: history._total
"#;

const SCRIPT: &str = r#"turns:
  - tool_calls:
      - name: lookup_order
        arguments: {order: "o-42"}
  - text: Order o-42 ships on Monday.
"#;

const AUTH: &str = r#"{"tokens": [{"token": "bench-token-1", "user": "bench"}]}"#;

/// One level's figures.
struct Figures {
    concurrency: usize,
    engagements: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    completed: usize,
    stored_completed: usize,
}

async fn run_level(concurrency: usize, engagements: usize) -> Figures {
    let directory =
        std::env::temp_dir().join(format!("agentc-load-{}-{concurrency}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    let store: Arc<dyn Store> = match std::env::var("AGENTC_LOAD_POSTGRES") {
        Ok(url) => Arc::new(
            PostgresStore::connect(&fresh_database(&url, concurrency).await, None)
                .await
                .unwrap(),
        ),
        // `AGENTC_LOAD_STORE=memory`: the SQLite store in memory, an upper bound on
        // what the file store could reach (no file writes at all).
        Err(_) if std::env::var("AGENTC_LOAD_STORE").as_deref() == Ok("memory") => {
            Arc::new(SqliteStore::in_memory().unwrap())
        }
        Err(_) => Arc::new(SqliteStore::open(&directory.join("load.db")).unwrap()),
    };
    let loaded = agentc_server::load_specs(&[SourceInput {
        name: "specs.yaml".into(),
        bytes: SPECS.as_bytes().to_vec(),
    }])
    .unwrap();
    let mut tools = ToolRegistry::new(&loaded.specs.tools).unwrap();
    let tool = MockTool::new(serde_json::json!({"ships": "Monday"}));
    tools.bind("lookup_order", Arc::new(tool.clone())).unwrap();
    let model: Arc<dyn Model> = Arc::new(ScriptedModel::from_yaml(SCRIPT).unwrap().positional());
    let engine = Engine::new(ServerParts {
        agents: loaded.agents,
        set_agents: loaded.specs.agents.clone(),
        tools,
        credentials: Arc::new(InMemoryCredentials::new()),
        model,
        agent_models: HashMap::new(),
        store: Arc::clone(&store),
        auth: AuthConfig::from_json(AUTH).unwrap(),
        // Every client is on 127.0.0.1 and holds its connection while it waits, so
        // the per-address limit (meant for clients behind their own addresses) is
        // raised, as it would be behind a proxy.
        config: ServerConfig {
            max_connections: 4096,
            max_connections_per_address: Some(4096),
            ..ServerConfig::default()
        },
    })
    .await
    .unwrap();
    // As `agentc serve` listens (its backlog holds a thousand clients connecting at once).
    let listener = agentc_server::listen("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(Arc::clone(&engine), listener, async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let base = base.clone();
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::SeqCst) < engagements {
                let begun = Instant::now();
                let response = client
                    .post(format!("{base}/agents/vendor_support"))
                    .bearer_auth("bench-token-1")
                    .header("content-type", "application/json")
                    .body(r#"{"text": "When does o-42 ship?"}"#)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 303);
                let location = response.headers()["location"].to_str().unwrap().to_string();
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let state: serde_json::Value = client
                        .get(format!("{base}{location}?wait=30"))
                        .bearer_auth("bench-token-1")
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    match state["status"]["state"].as_str() {
                        Some("completed") => break,
                        Some("failed") => panic!("engagement failed: {state}"),
                        _ => assert!(Instant::now() < deadline, "engagement stuck: {state}"),
                    }
                }
                latencies.push(begun.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        latencies[index.min(latencies.len() - 1)]
    };
    let figures = Figures {
        concurrency,
        engagements,
        seconds,
        p50: percentile(0.50),
        p99: percentile(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        completed: latencies.len(),
        stored_completed: store
            .engagements_in_states(&["completed"])
            .await
            .unwrap()
            .len(),
    };
    assert_eq!(
        tool.calls(),
        engagements,
        "every engagement called its tool once"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&directory);
    figures
}

/// A fresh database on the PostgreSQL server at `url`, for one level.
async fn fresh_database(url: &str, concurrency: usize) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = format!("agentc_load_{}_{concurrency}", std::process::id());
    // Two statements: CREATE DATABASE cannot run inside the transaction that one
    // multi-statement query is.
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// The levels to run: `AGENTC_LOAD_LEVELS` (`concurrent:engagements,…`) or the default.
fn levels() -> Vec<(usize, usize)> {
    match std::env::var("AGENTC_LOAD_LEVELS") {
        Ok(text) => text
            .split(',')
            .filter_map(|level| {
                let (concurrency, engagements) = level.split_once(':')?;
                Some((concurrency.parse().ok()?, engagements.parse().ok()?))
            })
            .collect(),
        Err(_) => vec![(10, 1_000), (100, 2_000), (1_000, 4_000)],
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used by this harness.
    let scale: f64 = std::env::var("AGENTC_LOAD_SCALE")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| concurrent | engagements | seconds | engagements/s | p50 ms | p99 ms | max ms | completed (client / stored) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|");
    for (concurrency, engagements) in levels() {
        let engagements = ((engagements as f64 * scale) as usize).max(concurrency);
        let figures = runtime.block_on(run_level(concurrency, engagements));
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.1} | {:.1} | {:.1} | {} / {} |",
            figures.concurrency,
            figures.engagements,
            figures.seconds,
            figures.engagements as f64 / figures.seconds,
            figures.p50.as_secs_f64() * 1000.0,
            figures.p99.as_secs_f64() * 1000.0,
            figures.max.as_secs_f64() * 1000.0,
            figures.completed,
            figures.stored_completed,
        );
        assert_eq!(
            figures.completed, figures.engagements,
            "an engagement was lost"
        );
        assert_eq!(
            figures.stored_completed, figures.engagements,
            "an engagement was lost"
        );
    }
}
