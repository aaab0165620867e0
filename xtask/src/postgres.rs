//! A real PostgreSQL server for the tests of the shared store and of several `agentc
//! serve` instances (issue 28): Debian's `postgresql` package (installed when missing),
//! a fresh cluster in a temporary directory, started on a free loopback port and
//! stopped (and removed) when the guard is dropped. The tests read its URL from
//! `AGENTC_TEST_POSTGRES_URL`; `AGENTC_REQUIRE_POSTGRES=1` makes them fail, rather than
//! skip, when it is missing.
//!
//! A `AGENTC_TEST_POSTGRES_URL` already set is used as it is (a server of your own).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The variable the tests read the server's URL from.
pub const URL_VARIABLE: &str = "AGENTC_TEST_POSTGRES_URL";
/// The variable that makes a missing URL a test failure.
pub const REQUIRE_VARIABLE: &str = "AGENTC_REQUIRE_POSTGRES";
/// The variable holding a shell command that restarts the test server (set only for a
/// cluster started here), for the test of a database restart.
pub const RESTART_VARIABLE: &str = "AGENTC_TEST_POSTGRES_RESTART";

/// A running cluster: stopped and removed when dropped.
pub struct Cluster {
    /// `postgres://agentc@127.0.0.1:PORT/postgres` (the user is a superuser, and the
    /// server trusts loopback connections: it is a throwaway test server).
    pub url: String,
    directory: Option<PathBuf>,
    binaries: PathBuf,
    as_postgres_user: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let Some(directory) = &self.directory else {
            return;
        };
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(directory.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(directory);
    }
}

impl Cluster {
    fn command(&self, program: &str) -> Command {
        command_as(&self.binaries, program, self.as_postgres_user)
    }

    /// The variables a test command gets: the URL, that PostgreSQL is required, and for
    /// a cluster started here, how to restart it (`pg_ctl restart`, fast: what a
    /// database restart does to its clients).
    pub fn variables(&self) -> Vec<(&'static str, String)> {
        let mut variables = vec![
            (URL_VARIABLE, self.url.clone()),
            (REQUIRE_VARIABLE, "1".to_string()),
        ];
        if let Some(directory) = &self.directory {
            let pg_ctl = self.binaries.join("pg_ctl");
            let data = directory.join("data");
            let prefix = if self.as_postgres_user {
                "runuser -u postgres -- "
            } else {
                ""
            };
            variables.push((
                RESTART_VARIABLE,
                format!(
                    "{prefix}'{}' -D '{}' -m fast -w -t 60 restart > /dev/null",
                    pg_ctl.display(),
                    data.display()
                ),
            ));
        }
        variables
    }
}

fn command_as(binaries: &Path, program: &str, as_postgres_user: bool) -> Command {
    let path = binaries.join(program);
    if as_postgres_user {
        // PostgreSQL refuses to run as root; Debian's package made this user.
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

/// The newest `/usr/lib/postgresql/N/bin` with `initdb` (or `$AGENTC_PG_BIN`).
fn binaries() -> Option<PathBuf> {
    if let Some(explicit) = std::env::var_os("AGENTC_PG_BIN") {
        return Some(PathBuf::from(explicit));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|error| format!("{what}: cannot run: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|error| format!("no free port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| error.to_string())
}

/// Starts a throwaway cluster (or uses `$AGENTC_TEST_POSTGRES_URL`).
pub fn start() -> Result<Cluster, String> {
    if let Ok(url) = std::env::var(URL_VARIABLE) {
        return Ok(Cluster {
            url,
            directory: None,
            binaries: PathBuf::new(),
            as_postgres_user: false,
        });
    }
    let binaries = match binaries() {
        Some(binaries) => binaries,
        None => {
            crate::mcp_peers::apt_install(
                "postgresql",
                "the shared store's tests; or set AGENTC_TEST_POSTGRES_URL to a server of your own",
            )?;
            binaries().ok_or("PostgreSQL was installed, but no initdb was found")?
        }
    };
    let as_postgres_user = crate::mcp_peers::is_root();
    let directory = std::env::temp_dir().join(format!("agentc-postgres-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory)
        .map_err(|error| format!("cannot create `{}`: {error}", directory.display()))?;
    if as_postgres_user {
        run(
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(&directory),
            "chown of the cluster's directory",
        )?;
    }
    let port = free_port()?;
    let mut cluster = Cluster {
        url: format!("postgres://agentc@127.0.0.1:{port}/postgres"),
        directory: Some(directory.clone()),
        binaries,
        as_postgres_user,
    };
    let data = directory.join("data");
    run(
        cluster.command("initdb").arg("-D").arg(&data).args([
            "-U",
            "agentc",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]),
        "initdb",
    )?;
    // A test server: loopback only, its socket in its own directory, and no fsync
    // (a crashed test cluster is thrown away anyway).
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
        directory.display()
    );
    let started = run(
        cluster
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(directory.join("server.log"))
            .args(["-w", "-t", "60", "start"]),
        "pg_ctl start",
    );
    if let Err(error) = started {
        let log = std::fs::read_to_string(directory.join("server.log")).unwrap_or_default();
        cluster.directory = Some(directory);
        return Err(format!("{error}\n{log}"));
    }
    eprintln!("PostgreSQL for the tests at 127.0.0.1:{port}");
    Ok(cluster)
}
