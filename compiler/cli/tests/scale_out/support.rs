//! What the several-instance tests share: the specs, the callers, the effects service,
//! and `agentc serve` processes on one PostgreSQL database.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const TOOLS: &str = r#"kind: openagentspec:v1/tool
name: charge
description: Charges the customer's card.
effect: write
input:
  type: object
  properties:
    amount: {type: integer}
  required: [amount]
  additionalProperties: false
output:
  type: object
  properties:
    charge_id: {type: string}
    amount: {type: integer}
  required: [charge_id]
binding:
  http:
    method: POST
    url: http://127.0.0.1:PORT/charge
    idempotency_header: Idempotency-Key
---
kind: openagentspec:v1/tool
name: notify
description: Sends the customer a notice.
effect: egress
input:
  type: object
  properties:
    text: {type: string}
  required: [text]
  additionalProperties: false
output:
  type: object
  properties:
    sent: {type: boolean}
  required: [sent]
binding:
  http:
    method: POST
    url: http://127.0.0.1:PORT/notify
"#;

pub const AGENT: &str = r#"kind: openagentspec:v1/agent
name: payments
description: Charges an order once its customer confirms, then tells them.
intent: You charge orders the customer confirms and notify them.
owner: billing@acme.example
capabilities:
  charge:
    input_restriction:
      require_review: user
      assertion: recent.charge.inputs.amount <= 100
  notify: {}
"#;

pub const SCRIPT: &str = r#"turns:
  - tool_calls:
      - name: charge
        arguments: {amount: 25}
  - tool_calls:
      - name: notify
        arguments: {text: "Your order was charged."}
  - text: Charged and notified.
"#;

pub const AUTH: &str = r#"{"tokens": [{"token": "alice-token-1", "user": "alice"}]}"#;

/// The key that signs every instance's audit checkpoints (tests only).
pub const AUDIT_KEY: &str = "7777777777777777777777777777777777777777777777777777777777777777";

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into()
}

/// A small deterministic generator, so a failing run can be repeated.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `agentc serve` process.
pub struct Instance {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Instance {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The instance id it printed at start.
    pub fn id(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let at = text.find("instance ")?;
        Some(
            text[at + "instance ".len()..]
                .split_whitespace()
                .next()?
                .to_string(),
        )
    }
}

pub struct Cluster {
    pub directory: PathBuf,
    pub url: String,
    pub lease_ms: usize,
    pub heartbeat_ms: usize,
    pub instances: Mutex<Vec<Option<Instance>>>,
    pub starts: AtomicUsize,
}

impl Cluster {
    pub fn start(&self, slot: usize) {
        let port = free_port();
        let start = self.starts.fetch_add(1, Ordering::SeqCst);
        let log = self.directory.join(format!("instance-{slot}-{start}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_agentc"))
            .arg("serve")
            .arg(self.directory.join("specs"))
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--db", &self.url])
            .args(["--lease-ms", &self.lease_ms.to_string()])
            .args(["--heartbeat-ms", &self.heartbeat_ms.to_string()])
            .arg("--model")
            .arg(format!(
                "scripted:{}",
                self.directory.join("script.yaml").display()
            ))
            .arg("--auth-config")
            .arg(self.directory.join("auth.json"))
            .arg("--audit-key")
            .arg(self.directory.join("audit.key"))
            .args(["--tool-timeout", "10", "--auth-failure-limit", "0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let instance = Instance { child, port, log };
        // Ready once it answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent()
            .get(format!("{}/agents", instance.base()))
            .header("authorization", "Bearer alice-token-1")
            .call()
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "instance {slot} did not start: {}",
                std::fs::read_to_string(&instance.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.instances.lock().unwrap()[slot] = Some(instance);
    }

    /// The base URL of a running instance, chosen by `random`.
    pub fn any(&self, random: &mut Lcg) -> Option<String> {
        let instances = self.instances.lock().unwrap();
        let live: Vec<String> = instances.iter().flatten().map(Instance::base).collect();
        (!live.is_empty()).then(|| live[random.below(live.len() as u64) as usize].clone())
    }
}

pub fn post(
    base: &str,
    path: &str,
    body: &str,
) -> Option<(u16, Option<String>, serde_json::Value)> {
    let mut response = agent()
        .post(format!("{base}{path}"))
        .header("authorization", "Bearer alice-token-1")
        .header("content-type", "application/json")
        .send(body)
        .ok()?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Some((
        status,
        location,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    ))
}

pub fn get(base: &str, path: &str) -> Option<serde_json::Value> {
    let mut response = agent()
        .get(format!("{base}{path}"))
        .header("authorization", "Bearer alice-token-1")
        .call()
        .ok()?;
    if response.status().as_u16() != 200 {
        return None;
    }
    serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()
}

pub fn python_service(directory: &Path) -> (Child, u16) {
    let mut child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scale_out/effects_service.py"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(directory.join("effects.log")).unwrap())
        .spawn()
        .expect("python3 runs the effects service");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    (child, port)
}

/// Ends every other connection to the test database; how many.
pub async fn drop_connections(url: &str) -> u64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
}

/// A fresh directory with the specs, script, callers and audit key, and the effects
/// service: the directory, the service and its port.
pub fn prepare(test: &str) -> (PathBuf, Child, u16) {
    let directory =
        std::env::temp_dir().join(format!("agentc-scale-out-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(directory.join("specs")).unwrap();
    let (service, tool_port) = python_service(&directory);
    std::fs::write(
        directory.join("specs/tools.yaml"),
        TOOLS.replace("PORT", &tool_port.to_string()),
    )
    .unwrap();
    std::fs::write(directory.join("specs/payments.yaml"), AGENT).unwrap();
    std::fs::write(directory.join("script.yaml"), SCRIPT).unwrap();
    std::fs::write(directory.join("auth.json"), AUTH).unwrap();
    std::fs::write(directory.join("audit.key"), AUDIT_KEY).unwrap();
    (directory, service, tool_port)
}

pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Every engagement in `store`, once at least `engagements` exist and each has ended
/// (completed or failed); panics with the ones still open when `deadline` passes.
pub fn wait_until_every_engagement_ends(
    runtime: &tokio::runtime::Runtime,
    store: &agentc_server::PostgresStore,
    engagements: usize,
    deadline: Instant,
) -> Vec<agentc_server::EngagementRecord> {
    use agentc_server::Store;
    let ended =
        |record: &agentc_server::EngagementRecord| matches!(record.state(), "completed" | "failed");
    loop {
        let records = runtime
            .block_on(store.engagements_in_states(&[
                "running",
                "created",
                "awaiting_model",
                "awaiting_tool",
                "awaiting_review",
                "awaiting_remote",
                "awaiting_user_input",
                "completed",
                "failed",
            ]))
            .unwrap();
        if records.len() >= engagements && records.iter().all(ended) {
            return records;
        }
        if Instant::now() > deadline {
            let open: Vec<String> = records
                .iter()
                .filter(|record| !ended(record))
                .map(|record| format!("{} {} owner {}", record.id, record.status, record.owner))
                .collect();
            panic!(
                "{} of {} engagements did not end in time: {open:#?}",
                open.len(),
                records.len()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
