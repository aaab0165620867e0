//! A fresh database on the test PostgreSQL server, for the tests of the shared store
//! here and of several `agentc serve` processes (`compiler/cli/tests/scale_out.rs`,
//! which includes this file).

/// A fresh, empty PostgreSQL database on the test server named by
/// `AGENTC_TEST_POSTGRES_URL` (`cargo xtask ci` and `cargo xtask with-postgres` start
/// one): its URL. Without the variable the test is skipped, saying so, unless
/// `AGENTC_REQUIRE_POSTGRES` is set (as in CI), where that is a failure.
pub async fn fresh_postgres(test: &str) -> Option<String> {
    let Ok(url) = std::env::var("AGENTC_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("AGENTC_REQUIRE_POSTGRES").is_none(),
            "AGENTC_TEST_POSTGRES_URL is not set, and this run requires PostgreSQL: run the tests through `cargo xtask ci` or `cargo xtask with-postgres cargo test ...`, or point the variable at a server"
        );
        eprintln!(
            "skipped `{test}`: no PostgreSQL (set AGENTC_TEST_POSTGRES_URL, or run under `cargo xtask with-postgres`)"
        );
        return None;
    };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the test PostgreSQL server answers");
    tokio::spawn(connection);
    let name = format!(
        "agentc_{}_{}",
        test.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        agentc_runtime::fresh_id("").unwrap()
    );
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}
