//! Shared helpers: servers on 127.0.0.1 port 0 with scripted models and mock tools.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentc_compiler::SourceInput;
use agentc_runtime::{
    CredentialProvider, InMemoryCredentials, MockTool, Model, RemoteLimits, ScriptedModel,
    ToolBackend, ToolRegistry,
};
use agentc_server::{
    AuthConfig, Engine, ServerConfig, ServerParts, SqliteStore, Store, load_specs, serve,
};
use tokio::sync::oneshot;

mod postgres;
#[allow(unused_imports)]
pub use postgres::fresh_postgres;

/// A running server.
pub struct TestServer {
    pub base: String,
    pub engine: Arc<Engine>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Shuts the server down gracefully and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the server stops")
                .unwrap()
                .unwrap();
        }
    }
}

/// What a test server is built from.
pub struct Setup {
    pub specs: Vec<(String, String)>,
    pub scripts: Vec<(String, ScriptedModel)>,
    pub tools: Vec<(String, Arc<dyn ToolBackend>)>,
    pub credentials: Arc<dyn CredentialProvider>,
    pub auth: &'static str,
    pub store: Arc<dyn Store>,
    pub config: ServerConfig,
}

impl Setup {
    pub fn new(specs: Vec<(&str, String)>, store: Arc<dyn Store>) -> Self {
        Setup {
            specs: specs
                .into_iter()
                .map(|(name, text)| (name.to_string(), text))
                .collect(),
            scripts: Vec::new(),
            tools: Vec::new(),
            credentials: Arc::new(InMemoryCredentials::new()),
            auth: AUTH,
            store,
            config: ServerConfig::default(),
        }
    }

    pub fn script(mut self, agent: &str, yaml: &str) -> Self {
        self.scripts.push((
            agent.to_string(),
            ScriptedModel::from_yaml(yaml).unwrap().positional(),
        ));
        self
    }

    pub fn tool(mut self, name: &str, backend: Arc<dyn ToolBackend>) -> Self {
        self.tools.push((name.to_string(), backend));
        self
    }

    pub fn mock(self, name: &str, response: serde_json::Value) -> (Self, MockTool) {
        let mock = MockTool::new(response);
        (self.tool(name, Arc::new(mock.clone())), mock)
    }

    pub async fn start(self) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.start_on(listener).await
    }

    /// Starts the server on `listener` (for a restart on the same address).
    pub async fn start_on(self, listener: tokio::net::TcpListener) -> TestServer {
        let inputs: Vec<SourceInput> = self
            .specs
            .iter()
            .map(|(name, text)| SourceInput {
                name: name.clone(),
                bytes: text.as_bytes().to_vec(),
            })
            .collect();
        let loaded = load_specs(&inputs).unwrap();
        let mut tools = ToolRegistry::new(&loaded.specs.tools).unwrap();
        tools
            .bind_remote_agents(
                &loaded.specs,
                RemoteLimits {
                    allow_loopback_http: true,
                    timeout: Duration::from_secs(20),
                    ..RemoteLimits::default()
                },
            )
            .unwrap();
        for (name, backend) in self.tools {
            tools.bind(&name, backend).unwrap();
        }
        let mut agent_models: HashMap<String, Arc<dyn Model>> = HashMap::new();
        for (agent, model) in self.scripts {
            agent_models.insert(agent, Arc::new(model));
        }
        let engine = Engine::new(ServerParts {
            agents: loaded.agents,
            set_agents: loaded.specs.agents.clone(),
            tools,
            credentials: self.credentials,
            model: Arc::new(ScriptedModel::new(vec![]).positional()),
            agent_models,
            store: self.store,
            auth: AuthConfig::from_json(self.auth).unwrap(),
            config: self.config,
        })
        .await
        .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(Arc::clone(&engine), listener, async move {
            let _ = signal.await;
        }));
        TestServer {
            base,
            engine,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }
}

pub const AUTH: &str = r#"{
  "tokens": [
    {"token": "alice-token-1", "user": "alice", "email": "alice@acme.example"},
    {"token": "bob-token-22", "user": "bob", "email": "bob@acme.example"},
    {"token": "owner-token-3", "user": "olivia", "email": "people-ops@acme.example"}
  ],
  "api_keys": [{"key": "company-a-key", "user": "company_a"}]
}"#;

/// A database path in a fresh directory under the system's temporary directory.
pub fn database_path(test: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!(
        "agentc-server-{test}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&directory).unwrap();
    directory.join("agentc.db")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// POSTs JSON with a bearer token; returns status, headers' Location and the body.
pub async fn post(
    base: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Option<String>, serde_json::Value) {
    let mut request = client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|value| value.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    (
        status,
        location,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

pub async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = client().get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

pub async fn get_text(base: &str, path: &str) -> (u16, String, String) {
    let response = client().get(format!("{base}{path}")).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// Polls an engagement until its state is one of `states`.
pub async fn wait_for_state(
    base: &str,
    location: &str,
    token: &str,
    states: &[&str],
) -> serde_json::Value {
    for _ in 0..400 {
        let (status, body) = get(base, location, Some(token)).await;
        assert_eq!(status, 200, "{body}");
        if states.contains(&body["status"]["state"].as_str().unwrap_or_default()) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("engagement {location} never reached {states:?}");
}

pub fn sqlite(path: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(path).unwrap())
}

/// The address (`127.0.0.1:PORT`) of a base URL.
pub fn address(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// Sends `request` as raw bytes on a fresh connection and reads the answer until the
/// server closes it (bounded by 5 s); returns the status and the body.
pub async fn raw_request(base: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address(base)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}
