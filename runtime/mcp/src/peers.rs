//! Where the real MCP peers installed by `cargo xtask mcp-peers` are: the npm servers,
//! the official conformance suite and the Python MCP SDK. For tests and examples; a
//! missing install is an error that says how to make it, never a silent skip.

use std::path::{Path, PathBuf};

/// The installed peers.
#[derive(Debug, Clone)]
pub struct McpPeers {
    root: PathBuf,
}

impl McpPeers {
    /// `$AGENTC_MCP_PEERS`, else `$AGENTC_CI_TOOLS_DIR/mcp-peers`, else
    /// `~/.cache/agentc-ci-tools/mcp-peers`, if `cargo xtask mcp-peers` has installed
    /// them there.
    pub fn locate() -> Result<Self, String> {
        let root = match std::env::var_os("AGENTC_MCP_PEERS") {
            Some(explicit) => PathBuf::from(explicit),
            None => std::env::var_os("AGENTC_CI_TOOLS_DIR")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|home| PathBuf::from(home).join(".cache/agentc-ci-tools"))
                })
                .unwrap_or_else(|| std::env::temp_dir().join("agentc-ci-tools"))
                .join("mcp-peers"),
        };
        if !root.join(".installed").is_file() {
            return Err(format!(
                "the MCP peers are not installed in {}: run `cargo xtask mcp-peers` (CI does, before the tests)",
                root.display()
            ));
        }
        Ok(McpPeers { root })
    }

    /// Like [`McpPeers::locate`], panicking with its message: for tests, which must
    /// fail, not skip, without their peers.
    #[allow(clippy::panic)]
    pub fn required() -> Self {
        match Self::locate() {
            Ok(peers) => peers,
            Err(message) => panic!("{message}"),
        }
    }

    /// The install directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry script of an npm package of `@modelcontextprotocol`, run with `node`.
    pub fn npm_entry(&self, package: &str, script: &str) -> PathBuf {
        self.root
            .join("node_modules/@modelcontextprotocol")
            .join(package)
            .join(script)
    }

    /// `@modelcontextprotocol/server-filesystem`'s entry (arguments: allowed directories).
    pub fn filesystem_server(&self) -> PathBuf {
        self.npm_entry("server-filesystem", "dist/index.js")
    }

    /// `@modelcontextprotocol/server-everything`'s entry (argument: `stdio` or
    /// `streamableHttp`).
    pub fn everything_server(&self) -> PathBuf {
        self.npm_entry("server-everything", "dist/index.js")
    }

    /// The official conformance suite's entry (`server --url URL`).
    pub fn conformance_suite(&self) -> PathBuf {
        self.npm_entry("conformance", "dist/index.js")
    }

    /// The Python interpreter with the `mcp` SDK installed.
    pub fn python(&self) -> PathBuf {
        self.root.join("py/bin/python")
    }
}

/// How many processes of this machine have `marker` in their command line (Linux's
/// `/proc`): how the tests see that no server process outlives its run.
pub fn processes_with(marker: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|byte| byte.is_ascii_digit()))
        })
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
        })
        .count()
}
