//! `cargo xtask mcp-peers`: installs the real MCP peers the tests drive, pinned, outside
//! the clone (issue: "real peers in the tests").
//!
//! - npm (`xtask/mcp-peers/package.json` and its lock file, installed with `npm ci`):
//!   `@modelcontextprotocol/server-everything` and `server-filesystem`, the official
//!   conformance suite and the inspector CLI;
//! - PyPI (`xtask/mcp-peers/requirements.txt`, every package pinned): the Python `mcp`
//!   SDK, for the streamable-HTTP servers and the client the tests write.
//!
//! They go to `$AGENTC_MCP_PEERS`, else `$AGENTC_CI_TOOLS_DIR/mcp-peers`, else
//! `~/.cache/agentc-ci-tools/mcp-peers` (where `agentc_mcp::peers` finds them), and are
//! installed again only when the pinned files change (a stamp holds their digest).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Installs the peers if they are missing or stale; returns where they are.
pub fn install(root: &Path) -> Result<PathBuf, String> {
    let pins = root.join("xtask/mcp-peers");
    let files = ["package.json", "package-lock.json", "requirements.txt"];
    let mut stamp = String::new();
    for file in files {
        let text = std::fs::read_to_string(pins.join(file))
            .map_err(|error| format!("cannot read xtask/mcp-peers/{file}: {error}"))?;
        stamp.push_str(&format!("{file} {:016x}\n", fnv1a(text.as_bytes())));
    }
    let target = peers_directory();
    let stamp_file = target.join(".installed");
    if std::fs::read_to_string(&stamp_file).is_ok_and(|written| written == stamp) {
        return Ok(target);
    }
    eprintln!("$ installing the MCP peers into {}", target.display());
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(&target)
        .map_err(|error| format!("cannot create {}: {error}", target.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(pins.join(file), target.join(file))
            .map_err(|error| format!("cannot copy {file}: {error}"))?;
    }
    run(
        Command::new("npm")
            .args(["ci", "--no-fund", "--no-audit", "--loglevel=error"])
            .current_dir(&target),
        "npm ci (the MCP peers from the npm registry; needs Node.js 20 and npm)",
    )?;
    let python = target.join("py");
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&python),
        "python3 -m venv (on Debian: apt-get install python3-venv)",
    )?;
    run(
        Command::new(python.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(pins.join("requirements.txt")),
        "pip install -r xtask/mcp-peers/requirements.txt (the Python MCP SDK)",
    )?;
    std::fs::write(&stamp_file, stamp)
        .map_err(|error| format!("cannot write {}: {error}", stamp_file.display()))?;
    Ok(target)
}

/// Debian's Chromium, which the review console's browser tests drive (with
/// `playwright-core`, installed with the npm peers): installed from the distribution's
/// packages when it is missing (CI runs as root on a fresh machine; elsewhere, with
/// `sudo -n` if that works without a password).
pub fn ensure_chromium() -> Result<(), String> {
    let chromium = std::env::var("AGENTC_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if Path::new(&chromium).exists() {
        return Ok(());
    }
    apt_install(
        "chromium",
        "the review console's browser tests; or set AGENTC_CHROMIUM to a Chromium",
    )
}

/// Installs a Debian package (as root, or through `sudo -n`), refreshing the package
/// lists first, since a fresh machine may have none; `why` says what needs it.
pub fn apt_install(package: &str, why: &str) -> Result<(), String> {
    eprintln!("$ installing {package} from Debian's packages ({why})");
    let as_root = is_root();
    let apt_get = || {
        let mut command = if as_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command.env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    run(
        apt_get().args(["update", "-qq"]),
        &format!("apt-get update (before installing {package})"),
    )?;
    run(
        apt_get().args(["install", "-y", "--no-install-recommends", package]),
        &format!("apt-get install {package} ({why})"),
    )
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Where the peers go (the same rule as `agentc_mcp::peers`).
fn peers_directory() -> PathBuf {
    if let Some(explicit) = std::env::var_os("AGENTC_MCP_PEERS") {
        return PathBuf::from(explicit);
    }
    std::env::var_os("AGENTC_CI_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/agentc-ci-tools"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("agentc-ci-tools"))
        .join("mcp-peers")
}

/// A stable digest of a pinned file (not for security: it only says "changed").
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|error| format!("cannot run {what}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}
