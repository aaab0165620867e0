//! Issue 28: PostgreSQL restarted (`pg_ctl restart -m fast`) under two `agentc serve`
//! instances while they run reviewed engagements with side-effecting tools. A test file
//! of its own, since the restart touches every client of the test server (cargo runs
//! test files one after another).
//!
//! What must hold: every engagement ends (completed, or failed with a reason the
//! outage explains), no charge happens twice, no notice is sent twice, and every audit
//! chain verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../runtime/server/tests/common/postgres.rs"]
mod postgres;
#[path = "scale_out/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentc_server::{PostgresStore, Store};
use support::*;

#[test]
fn the_database_restarted_under_two_instances_loses_nothing_and_repeats_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(url) = runtime.block_on(postgres::fresh_postgres("restart")) else {
        return;
    };
    let Ok(restart) = std::env::var("AGENTC_TEST_POSTGRES_RESTART") else {
        assert!(
            std::env::var_os("AGENTC_REQUIRE_POSTGRES").is_none(),
            "AGENTC_TEST_POSTGRES_RESTART is not set: the restart test needs the server `cargo xtask ci` (or `cargo xtask with-postgres`) starts"
        );
        eprintln!("skipped: no command restarts this PostgreSQL server");
        return;
    };
    let engagements = 40;
    let (directory, mut service, tool_port) = prepare("restart");
    let cluster = Arc::new(Cluster {
        directory: directory.clone(),
        url: url.clone(),
        lease_ms: 2_000,
        heartbeat_ms: 250,
        instances: Mutex::new((0..2).map(|_| None).collect()),
        starts: AtomicUsize::new(0),
    });
    cluster.start(0);
    cluster.start(1);
    let done = Arc::new(AtomicBool::new(false));
    let reviewer = {
        let cluster = Arc::clone(&cluster);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut random = Lcg(5);
            while !done.load(Ordering::SeqCst) {
                let Some(base) = cluster.any(&mut random) else {
                    continue;
                };
                for review in get(&base, "/reviews?limit=100")
                    .and_then(|page| page["reviews"].as_array().cloned())
                    .unwrap_or_default()
                {
                    let body = serde_json::json!({"decision": "approve", "call_hash": review["call_hash"]});
                    let id = review["id"].as_str().unwrap_or_default();
                    let _ = post(&base, &format!("/reviews/{id}"), &body.to_string());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // The engagements over about four seconds; the restart a second in.
    let mut random = Lcg(9);
    let mut restarted = None;
    let mut created = 0;
    let started = Instant::now();
    while created < engagements {
        if created == 10 && restarted.is_none() {
            let restart = restart.clone();
            restarted = Some(std::thread::spawn(move || {
                let begun = Instant::now();
                let status = Command::new("sh").args(["-c", &restart]).status().unwrap();
                assert!(status.success(), "the restart failed");
                begun.elapsed()
            }));
        }
        let Some(base) = cluster.any(&mut random) else {
            continue;
        };
        let body = format!(r#"{{"text": "Charge order o-{created}"}}"#);
        match post(&base, "/agents/payments", &body) {
            Some((303, Some(_), _)) => {
                created += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            // Refused while the database is away (a 5xx): asked again.
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "engagements could not be started"
        );
    }
    let downtime = restarted.unwrap().join().unwrap();

    let store = runtime
        .block_on(PostgresStore::connect(&url, None))
        .unwrap();
    let records = wait_until_every_engagement_ends(
        &runtime,
        &store,
        engagements,
        Instant::now() + Duration::from_secs(120),
    );
    done.store(true, Ordering::SeqCst);
    reviewer.join().unwrap();

    // Each engagement ended, and a failure names what the outage did to it.
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut unknown = 0;
    for record in &records {
        let label = match record.state() {
            "failed" => {
                let kind = record.status["reason"]["kind"].as_str().unwrap_or_default();
                assert!(
                    matches!(kind, "outcome_unknown" | "interrupted" | "audit"),
                    "a failure the outage does not explain: {}",
                    record.status
                );
                if kind == "outcome_unknown" {
                    unknown += 1;
                }
                format!("failed: {kind}")
            }
            state => state.to_string(),
        };
        *states.entry(label).or_default() += 1;
    }
    let completed = states.get("completed").copied().unwrap_or_default();
    let stats = get(&format!("http://127.0.0.1:{tool_port}"), "/stats").unwrap();
    let charges = stats["charges"].as_object().unwrap();
    assert!(
        charges.values().all(|count| count == 1),
        "a charge happened twice: {charges:?}"
    );
    let notices = stats["notices"].as_u64().unwrap() as usize;
    assert!(
        notices <= records.len(),
        "{notices} notices for {} engagements",
        records.len()
    );
    assert!(
        completed >= engagements / 2,
        "most engagements complete: {states:?}"
    );
    let key = agentc_runtime::AuditSigningKey::from_hex(AUDIT_KEY)
        .unwrap()
        .public_key();
    let chains = runtime.block_on(store.audit_chains()).unwrap();
    for chain in &chains {
        let lines = runtime.block_on(store.audit_lines(chain)).unwrap();
        agentc_runtime::verify_signed(std::io::Cursor::new(lines.join("\n")), &key)
            .unwrap_or_else(|error| panic!("chain {chain} does not verify: {error}"));
    }
    eprintln!(
        "database restart ({:.1} s) under two instances: {} engagements, {states:?}; {} charges once each, {notices} notices ({unknown} outcomes unknown); {} audit chains verified",
        downtime.as_secs_f64(),
        records.len(),
        charges.len(),
        chains.len()
    );
    for instance in cluster.instances.lock().unwrap().iter_mut().flatten() {
        let _ = instance.child.kill();
        let _ = instance.child.wait();
    }
    let _ = service.kill();
    let _ = service.wait();
    let _ = std::fs::remove_dir_all(&directory);
}
