//! A stdio MCP server's process: started with a cleared environment, its stdout read
//! through a line-length limit, killed when dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The variables of agentc's own environment a stdio server gets, besides those its
/// binding sets: enough to find and run a program, nothing that could hold a secret.
pub const INHERITED_VARIABLES: &[&str] = &["PATH", "HOME", "LANG", "TMPDIR"];

/// A started server: its child process and the two ends MCP is spoken over.
pub struct StdioServer {
    pub child: tokio::process::Child,
    pub stdout: LineLimited<tokio::process::ChildStdout>,
    pub stdin: tokio::process::ChildStdin,
    /// Set when the server sent a line longer than the limit.
    pub oversized: Arc<AtomicBool>,
}

/// Starts `command` with `args`, the variables in [`INHERITED_VARIABLES`] and `env`,
/// stdin and stdout piped and stderr discarded (a server's diagnostics may echo what
/// it was given; they are not logged).
pub fn start(
    command: &str,
    args: &[String],
    env: &[(String, String)],
    max_line_bytes: usize,
) -> std::io::Result<StdioServer> {
    let mut process = tokio::process::Command::new(command);
    process
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for name in INHERITED_VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            process.env(name, value);
        }
    }
    for (name, value) in env {
        process.env(name, value);
    }
    let mut child = process.spawn()?;
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(std::io::Error::other("the server's stdio was not piped"));
    };
    let oversized = Arc::new(AtomicBool::new(false));
    Ok(StdioServer {
        child,
        stdout: LineLimited {
            inner: stdout,
            since_newline: 0,
            limit: max_line_bytes,
            oversized: Arc::clone(&oversized),
        },
        stdin,
        oversized,
    })
}

/// A reader that fails once a line (one JSON-RPC message) passes `limit` bytes, so that
/// a server that never ends its line cannot make the client buffer without bound. The
/// failure closes the connection, and `oversized` says why.
pub struct LineLimited<R> {
    inner: R,
    since_newline: usize,
    limit: usize,
    oversized: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin> AsyncRead for LineLimited<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buffer.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(context, buffer) {
            Poll::Ready(Ok(())) => {
                let read = buffer.filled().get(before..).unwrap_or_default();
                for byte in read {
                    if *byte == b'\n' {
                        this.since_newline = 0;
                    } else {
                        this.since_newline = this.since_newline.saturating_add(1);
                    }
                }
                if this.since_newline > this.limit {
                    this.oversized.store(true, Ordering::SeqCst);
                    // A read that fails hands back no bytes.
                    buffer.set_filled(before);
                    return Poll::Ready(Err(std::io::Error::other(
                        "the MCP server sent a message larger than the limit",
                    )));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_line_past_the_limit_fails_the_read_and_says_so() {
        let oversized = Arc::new(AtomicBool::new(false));
        let data: &[u8] = b"{\"ok\":1}\n0123456789abcdef";
        let mut reader = LineLimited {
            inner: data,
            since_newline: 0,
            limit: 10,
            oversized: Arc::clone(&oversized),
        };
        let mut out = Vec::new();
        let error = reader.read_to_end(&mut out).await.unwrap_err();
        assert!(error.to_string().contains("larger than the limit"));
        assert!(oversized.load(Ordering::SeqCst));

        let fine: &[u8] = b"0123456789\n0123456789\n";
        let mut reader = LineLimited {
            inner: fine,
            since_newline: 0,
            limit: 10,
            oversized: Arc::new(AtomicBool::new(false)),
        };
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len(), 22);
    }
}
