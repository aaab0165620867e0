//! MCP-bound tools against real servers: `@modelcontextprotocol/server-filesystem` from
//! npm over stdio, and a misbehaving server for the failures no real one shows on
//! demand (`tests/peers/hostile_server.py`). Needs `cargo xtask mcp-peers`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentc_mcp::peers::{McpPeers, processes_with};
use agentc_mcp::pin::ToolDefinition;
use agentc_mcp::{McpLimits, McpServers};
use agentc_runtime::{AuthScheme, McpBindingSpec, McpTransport, ToolError};

/// A fresh directory under the system's temporary one, named for the test, so that
/// its processes can be told apart from other tests' by their command lines.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agentc-mcp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn filesystem(peers: &McpPeers, root: &Path) -> McpTransport {
    McpTransport::Stdio {
        command: "node".into(),
        args: vec![
            peers.filesystem_server().display().to_string(),
            root.display().to_string(),
        ],
        env: vec![],
    }
}

fn hostile(mode: &str, extra: &[&str]) -> McpTransport {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/hostile_server.py");
    let mut args = vec![script.display().to_string(), mode.to_string()];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    McpTransport::Stdio {
        command: "python3".into(),
        args,
        env: vec![],
    }
}

fn binding(transport: &McpTransport, tool: &str, pin: Option<String>) -> McpBindingSpec {
    McpBindingSpec {
        transport: transport.clone(),
        tool: tool.into(),
        pin,
        timeout_ms: None,
    }
}

async fn pin_of(servers: &McpServers, transport: &McpTransport, tool: &str) -> String {
    let tools = servers
        .list(transport, &AuthScheme::None, None)
        .await
        .unwrap();
    let listed = tools.iter().find(|listed| listed.name == tool).unwrap();
    ToolDefinition::from_listed(listed).pin()
}

fn text_output() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}})
}

#[tokio::test]
async fn agx_m1_a_real_filesystem_server_answers_and_its_process_ends_with_the_servers() {
    let peers = McpPeers::required();
    let root = scratch("fs-answers");
    std::fs::write(root.join("notes.txt"), "agentc was here\n").unwrap();
    let marker = root.display().to_string();
    let transport = filesystem(&peers, &root);
    let servers = McpServers::default();
    let pin = pin_of(&servers, &transport, "read_text_file").await;
    // Listing for a pin started and stopped its own process.
    assert_eq!(processes_with(&marker), 0);

    let read = binding(&transport, "read_text_file", Some(pin));
    let path = root.join("notes.txt").display().to_string();
    let output = servers
        .call(
            "read_text_file",
            &read,
            &AuthScheme::None,
            None,
            &serde_json::json!({"path": path}),
            &serde_json::json!({"type": "object"}),
        )
        .await
        .unwrap();
    // The server's structuredContent is the output.
    assert_eq!(output, serde_json::json!({"content": "agentc was here\n"}));
    assert_eq!(processes_with(&marker), 1, "one process serves every call");
    let again = servers
        .call(
            "read_text_file",
            &read,
            &AuthScheme::None,
            None,
            &serde_json::json!({"path": path}),
            &serde_json::json!({"type": "object"}),
        )
        .await;
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(processes_with(&marker), 1);

    // A path outside the allowed directory: the server's `isError` is a tool error,
    // and its text (which names the refused path) is not passed on.
    let error = servers
        .call(
            "read_text_file",
            &read,
            &AuthScheme::None,
            None,
            &serde_json::json!({"path": "/etc/passwd"}),
            &serde_json::json!({"type": "object"}),
        )
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("reported an error"), "{message}");
    assert!(!message.contains("passwd"), "{message}");

    servers.shutdown().await;
    assert_eq!(
        processes_with(&marker),
        0,
        "no server process outlives shutdown"
    );
}

#[tokio::test]
async fn agx_m2_a_wrong_pin_refuses_the_call_before_it_is_sent() {
    let peers = McpPeers::required();
    let root = scratch("fs-pin");
    let transport = filesystem(&peers, &root);
    let servers = McpServers::default();
    let write = binding(
        &transport,
        "write_file",
        Some(format!("sha256:{}", "0".repeat(64))),
    );
    let target = root.join("written.txt");
    let error = servers
        .call(
            "write_file",
            &write,
            &AuthScheme::None,
            None,
            &serde_json::json!({"path": target.display().to_string(), "content": "x"}),
            &serde_json::json!({"type": "object"}),
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no longer matches the pin"),
        "{error}"
    );
    assert!(!target.exists(), "a refused call never reaches the server");

    // With the right pin, the same call goes through.
    let pin = pin_of(&servers, &transport, "write_file").await;
    let write = binding(&transport, "write_file", Some(pin));
    servers
        .call(
            "write_file",
            &write,
            &AuthScheme::None,
            None,
            &serde_json::json!({"path": target.display().to_string(), "content": "x"}),
            &serde_json::json!({"type": "object"}),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");
    servers.shutdown().await;
}

#[tokio::test]
async fn agx_m2_a_tool_that_changes_on_the_server_is_refused_from_then_on() {
    let transport = hostile("drift", &[]);
    let servers = McpServers::default();
    let pin = pin_of(&servers, &transport, "echo").await;
    let echo = binding(&transport, "echo", Some(pin));
    let input = serde_json::json!({"text": "hello"});
    let output_schema = text_output();
    let call = || {
        servers.call(
            "echo",
            &echo,
            &AuthScheme::None,
            None,
            &input,
            &output_schema,
        )
    };
    assert_eq!(call().await.unwrap(), serde_json::json!({"text": "hello"}));
    // The server changed the tool's description and said so; the notification may
    // arrive just after the answer, so give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match call().await {
            Err(error) => {
                assert!(
                    error.to_string().contains("no longer matches the pin"),
                    "{error}"
                );
                break;
            }
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(output) => panic!("the drifted tool was still called: {output}"),
        }
    }
    servers.shutdown().await;
}

#[tokio::test]
async fn bad_servers_give_clear_bounded_errors() {
    let servers = McpServers::with_limits(McpLimits {
        max_message_bytes: 64 * 1024,
        connect_timeout: Duration::from_secs(10),
        ..McpLimits::default()
    });
    let call = |mode: &'static str, extra: &'static [&'static str], timeout_ms: u64| {
        let servers = servers.clone();
        async move {
            let mut echo = binding(&hostile(mode, extra), "echo", None);
            echo.timeout_ms = Some(timeout_ms);
            let started = Instant::now();
            let result = tokio::time::timeout(
                Duration::from_millis(timeout_ms),
                servers.call(
                    "echo",
                    &echo,
                    &AuthScheme::None,
                    None,
                    &serde_json::json!({"text": "hi"}),
                    &text_output(),
                ),
            )
            .await
            .unwrap_or(Err(ToolError::Timeout("echo".into())));
            (result, started.elapsed())
        }
    };

    // A program that does not exist.
    let missing = McpBindingSpec {
        transport: McpTransport::Stdio {
            command: "agentc-no-such-mcp-server".into(),
            args: vec![],
            env: vec![],
        },
        tool: "echo".into(),
        pin: None,
        timeout_ms: None,
    };
    let error = servers
        .call(
            "echo",
            &missing,
            &AuthScheme::None,
            None,
            &serde_json::json!({}),
            &text_output(),
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("cannot start the server"),
        "{error}"
    );

    let (result, _) = call("dies", &[], 10_000).await;
    assert!(
        result
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("did not initialize"),
        "{result:?}"
    );

    let (result, _) = call("oversized", &["100000000"], 20_000).await;
    assert!(
        matches!(result, Err(ToolError::ResponseTooLarge { .. })),
        "{result:?}"
    );

    let (result, elapsed) = call("endless", &[], 20_000).await;
    assert!(
        matches!(result, Err(ToolError::ResponseTooLarge { .. })),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");

    let (result, _) = call("crash", &[], 10_000).await;
    assert!(
        result.as_ref().unwrap_err().to_string().contains("closed"),
        "{result:?}"
    );

    let (result, elapsed) = call("hang", &[], 1_500).await;
    assert!(matches!(result, Err(ToolError::Timeout(_))), "{result:?}");
    assert!(elapsed < Duration::from_secs(5));

    let (result, _) = call("malformed", &[], 1_500).await;
    assert!(result.is_err(), "{result:?}");

    servers.shutdown().await;
    // Each mode's own process is gone (`crash` is left out: another test runs it).
    // A command line's arguments are separated by NUL bytes.
    for mode in ["dies", "oversized", "endless", "malformed", "hang"] {
        assert_eq!(
            processes_with(&format!("hostile_server.py\0{mode}")),
            0,
            "{mode}"
        );
    }
}

#[tokio::test]
async fn a_crashed_server_is_started_again_at_the_next_call_within_limits() {
    let servers = McpServers::with_limits(McpLimits {
        max_starts: 2,
        ..McpLimits::default()
    });
    let crash = binding(&hostile("crash", &[]), "echo", None);
    for _ in 0..2 {
        let error = servers
            .call(
                "echo",
                &crash,
                &AuthScheme::None,
                None,
                &serde_json::json!({"text": "x"}),
                &text_output(),
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("closed"), "{error}");
    }
    let error = servers
        .call(
            "echo",
            &crash,
            &AuthScheme::None,
            None,
            &serde_json::json!({"text": "x"}),
            &text_output(),
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("not started again yet"),
        "{error}"
    );
    servers.shutdown().await;
}

/// The Python SDK's streamable-HTTP server (`tests/peers/http_server.py`) on a free
/// loopback port, killed when dropped.
struct HttpPeer {
    child: std::process::Child,
    url: String,
}

impl HttpPeer {
    fn start(peers: &McpPeers, token: &str) -> HttpPeer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/http_server.py");
        let child = std::process::Command::new(peers.python())
            .arg(script)
            .arg(port.to_string())
            .arg(token)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the Python MCP server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        HttpPeer {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for HttpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn agx_m1_a_streamable_http_server_is_called_with_the_callers_bearer_token() {
    use agentc_runtime::credentials::Secret;
    let peers = McpPeers::required();
    let peer = HttpPeer::start(&peers, "s3cret-token");
    let transport = McpTransport::Http {
        url: peer.url.clone(),
    };
    let servers = McpServers::default();
    let token = Secret::new("s3cret-token");
    let tools = servers
        .list(&transport, &AuthScheme::Bearer, Some(&token))
        .await
        .unwrap();
    let add = tools.iter().find(|tool| tool.name == "add").unwrap();
    let pin = ToolDefinition::from_listed(add).pin();
    let add_binding = binding(&transport, "add", Some(pin));
    let output = servers
        .call(
            "add",
            &add_binding,
            &AuthScheme::Bearer,
            Some(&token),
            &serde_json::json!({"a": 2, "b": 3}),
            &serde_json::json!({"type": "object"}),
        )
        .await
        .unwrap();
    assert_eq!(output, serde_json::json!({"result": 5}));
    let shout = binding(&transport, "shout", None);
    let output = servers
        .call(
            "shout",
            &shout,
            &AuthScheme::Bearer,
            Some(&token),
            &serde_json::json!({"text": "hi"}),
            &text_output(),
        )
        .await
        .unwrap();
    // The Python SDK wraps a function's result as structured content.
    assert_eq!(output, serde_json::json!({"result": "HI"}));

    // No credential: the call is not sent unauthenticated.
    let error = servers
        .call(
            "add",
            &add_binding,
            &AuthScheme::Bearer,
            None,
            &serde_json::json!({"a": 1, "b": 1}),
            &text_output(),
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("requires a credential"),
        "{error}"
    );
    // Another credential is another session, and the server refuses this one; the
    // token is in no error.
    let wrong = Secret::new("wrong-token");
    let error = servers
        .call(
            "add",
            &add_binding,
            &AuthScheme::Bearer,
            Some(&wrong),
            &serde_json::json!({"a": 1, "b": 1}),
            &text_output(),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("did not initialize"), "{error}");
    assert!(!error.to_string().contains("token"), "{error}");
    servers.shutdown().await;
}
