//! The gateway's added latency per `tools/call` (AGX-M3), measured side by side in one
//! run: an MCP client calls an upstream MCP server's `echo` directly, then the same tool
//! through `agentc gateway`'s server (enforcement with an input restriction, the audit
//! trail hashed and written to a sink), over streamable HTTP on loopback and over the
//! stdio framing (newline-delimited JSON-RPC on an in-process pipe). Calls are paced at
//! 200 per second; the figures are each mode's median and p99, and the gateway's
//! difference from the direct calls.
//!
//! `cargo bench -p agentc-mcp --bench gateway_overhead` (`-- --calls N` to change the
//! count per mode, 1000 by default).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentc_compiler::SourceInput;
use agentc_mcp::gateway::{Gateway, GatewayLimits, GatewayReviewer};
use agentc_mcp::gateway_http::{GatewayAuthenticator, GatewayHttpConfig};
use agentc_mcp::{McpServers, bind_mcp_tools};
use agentc_runtime::{AuditLog, Runtime, SpecSet, StaticReviewer, ToolRegistry, UserIdentity};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, InitializeResult, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt};

/// The upstream server: one tool, `echo`, answering its input as structured content.
#[derive(Clone)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"]
        });
        let serde_json::Value::Object(schema) = schema else {
            unreachable!()
        };
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "echo",
            "Echoes its text.",
            Arc::new(schema),
        )]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let text = request
            .arguments
            .and_then(|arguments| arguments.get("text").cloned())
            .unwrap_or_default();
        Ok(CallToolResult::structured(serde_json::json!({ "text": text })).into())
    }
}

struct Anyone;

impl GatewayAuthenticator for Anyone {
    fn authenticate(
        &self,
        authorization: Option<&str>,
        _api_key: Option<&str>,
    ) -> Option<UserIdentity> {
        (authorization == Some("Bearer bench-token")).then(|| UserIdentity::new("bench"))
    }
}

async fn serve_router(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/mcp")
}

async fn http_client(url: &str) -> RunningService<RoleClient, ()> {
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url)
            .auth_header("bench-token");
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
    ().serve(transport).await.unwrap()
}

/// Latencies of `calls` paced calls, after a warm-up.
async fn measure(client: &RunningService<RoleClient, ()>, calls: usize) -> Vec<Duration> {
    let call = || {
        let mut arguments = serde_json::Map::new();
        arguments.insert("text".into(), "hello, gateway".into());
        client.call_tool(CallToolRequestParams::new("echo").with_arguments(arguments))
    };
    for _ in 0..50 {
        let result = call().await.unwrap();
        assert_ne!(result.is_error, Some(true), "{result:?}");
    }
    let interval = Duration::from_millis(5); // 200 calls per second
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(calls);
    for index in 0..calls {
        let due = start + interval * u32::try_from(index).unwrap();
        tokio::time::sleep_until(due.into()).await;
        let began = Instant::now();
        let result = call().await.unwrap();
        latencies.push(began.elapsed());
        assert_ne!(result.is_error, Some(true), "{result:?}");
    }
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn main() {
    let calls = std::env::args()
        .skip_while(|argument| argument != "--calls")
        .nth(1)
        .and_then(|count| count.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // The upstream MCP server on loopback.
        let upstream = StreamableHttpService::new(
            || Ok(Echo),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let upstream_url = serve_router(axum::Router::new().route_service("/mcp", upstream)).await;

        // The agent whose one capability is the upstream's `echo`.
        let tool = format!(
            "kind: openagentspec:v1/tool\nname: echo\ndescription: Echoes its text.\ninput:\n  type: object\n  properties:\n    text: {{type: string}}\n  required: [text]\noutput:\n  type: object\n  properties:\n    text: {{type: string}}\nbinding:\n  mcp:\n    server: \"{upstream_url}\"\n    tool: echo\n"
        );
        let agent = "kind: openagentspec:v1/agent\nname: echoer\ndescription: Echoes.\nintent: Echo what is asked.\nowner: bench@acme.example\ncapabilities:\n  echo:\n    input_restriction:\n      assertion: size(recent.echo.inputs.text) < 1000\nlifespan:\n  max_calls: 100000\n";
        let specs = SpecSet::from_sources(&[
            SourceInput {
                name: "echo.yaml".into(),
                bytes: tool.into_bytes(),
            },
            SourceInput {
                name: "echoer.yaml".into(),
                bytes: agent.as_bytes().to_vec(),
            },
        ])
        .unwrap();
        let mut tools = ToolRegistry::new(&specs.tools).unwrap();
        let servers = McpServers::default();
        bind_mcp_tools(&mut tools, &specs, &servers).unwrap();
        let audit = AuditLog::new(Box::new(std::io::sink()));
        let reviewer = GatewayReviewer::new(Arc::new(StaticReviewer::refusing()), Duration::from_secs(1));
        let mut gateway_runtime = Runtime::new(tools, Arc::new(audit));
        gateway_runtime.reviewer = reviewer.clone();
        let agent = Arc::new(specs.agent("echoer").unwrap().clone());
        let limits = GatewayLimits::default();
        let gateway = Gateway::new(Arc::new(gateway_runtime), agent, reviewer, limits).unwrap();

        // The gateway over HTTP, and one session over the stdio framing.
        let gateway_url = serve_router(agentc_mcp::gateway_http::router(
            Arc::clone(&gateway),
            Arc::new(Anyone),
            &GatewayHttpConfig::default(),
        ))
        .await;
        let (client_end, gateway_end) = tokio::io::duplex(1 << 20);
        let (gateway_read, gateway_write) = tokio::io::split(gateway_end);
        let session = gateway.session(Some(UserIdentity::new("bench"))).unwrap();
        tokio::spawn(async move {
            let transport =
                rmcp::transport::async_rw::AsyncRwTransport::new_server(gateway_read, gateway_write);
            if let Ok(running) = session.serve(transport).await {
                let _ = running.waiting().await;
            }
        });
        let (client_read, client_write) = tokio::io::split(client_end);
        let stdio_client = ()
            .serve(rmcp::transport::async_rw::AsyncRwTransport::new_client(
                client_read,
                client_write,
            ))
            .await
            .unwrap();

        let direct = http_client(&upstream_url).await;
        let through_http = http_client(&gateway_url).await;
        let direct_latencies = measure(&direct, calls).await;
        let http_latencies = measure(&through_http, calls).await;
        let stdio_latencies = measure(&stdio_client, calls).await;

        println!("gateway overhead, {calls} calls per mode at 200 calls/s (microseconds)");
        println!("{:<44} {:>10} {:>10}", "mode", "median", "p99");
        let row = |name: &str, latencies: &[Duration]| {
            println!(
                "{name:<44} {:>10.0} {:>10.0}",
                micros(percentile(latencies, 0.5)),
                micros(percentile(latencies, 0.99))
            );
        };
        row("direct: client -> upstream (HTTP)", &direct_latencies);
        row("gateway, HTTP: client -> gateway -> upstream", &http_latencies);
        row("gateway, stdio framing: client -> gateway -> upstream", &stdio_latencies);
        for (name, latencies) in [("HTTP", &http_latencies), ("stdio", &stdio_latencies)] {
            println!(
                "added by the gateway ({name}): median {:.0} µs, p99 {:.0} µs",
                micros(percentile(latencies, 0.5)) - micros(percentile(&direct_latencies, 0.5)),
                micros(percentile(latencies, 0.99)) - micros(percentile(&direct_latencies, 0.99)),
            );
        }
        servers.shutdown().await;
    });
}
