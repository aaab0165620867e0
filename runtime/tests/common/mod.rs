//! Helpers shared by the runtime's integration tests (each test file is its own crate
//! and uses a part of them).

#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use wiremock::MockServer;

/// A wiremock server on the loopback interface only.
pub async fn loopback_server() -> MockServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    MockServer::builder().listener(listener).start().await
}

/// The agent document a remote vendor serves in the remote-agent tests (OAS-S1).
pub const REMOTE_DOCUMENT: &str = "kind: openagentspec:v1/agent\nname: vendor_support\ndescription: Answers order questions.\nintent: You answer order questions.\nowner: support@vendor.example\ncapabilities:\n  lookup_order: {}\nexposes:\n  orders_checked: history._total\n";

/// What an audit log writes, kept in memory and shared with the test that reads it.
#[derive(Clone, Default)]
pub struct MemoryLog(Arc<Mutex<Vec<u8>>>);

impl Write for MemoryLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl MemoryLog {
    /// Everything written, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The audit entries written, after checking that their chain verifies.
    pub fn entries(&self) -> Vec<Value> {
        let text = self.text();
        agentc_runtime::verify(text.as_bytes()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}
