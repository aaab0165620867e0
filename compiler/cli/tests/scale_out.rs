//! Issue 28: several `agentc serve` processes on one PostgreSQL, killed and restarted
//! at random while they run engagements with reviews and side-effecting tools.
//!
//! Real components: the `agentc` binary (three processes, each on its own port), a real
//! PostgreSQL server (`AGENTC_TEST_POSTGRES_URL`, which `cargo xtask ci` starts), and the
//! tools as an HTTP service in another stack (`scale_out/effects_service.py`), which
//! counts their effects itself: `charge` takes an idempotency key and has its effect
//! once per key; `notify` takes none. Every engagement is reviewed (its `charge` by its
//! user), approvals go to random instances, some to two at once.
//!
//! What must hold: no engagement is lost (each one in the database ends completed or
//! failed with a reason), no charge happens twice, a notice cut off mid-call is never
//! sent again (the engagement ends "outcome unknown"), and every instance's audit chain
//! verifies with its signed checkpoints. The size is bounded for CI
//! (`AGENTC_FAULT_ENGAGEMENTS`, default 60; `AGENTC_FAULT_KILLS`, default 6; the lease
//! `AGENTC_FAULT_LEASE_MS`, default 2000, and heartbeat `AGENTC_FAULT_HEARTBEAT_MS`,
//! default 250); a larger run is recorded in docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../runtime/server/tests/common/postgres.rs"]
mod postgres;

#[path = "scale_out/support.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentc_server::{PostgresStore, Store};
use support::*;

#[test]
fn three_instances_killed_at_random_lose_nothing_and_do_nothing_twice() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(url) = runtime.block_on(postgres::fresh_postgres("fault")) else {
        return;
    };
    let engagements = setting("AGENTC_FAULT_ENGAGEMENTS", 60);
    let kills = setting("AGENTC_FAULT_KILLS", 6);
    let (directory, mut service, tool_port) = prepare("fault");

    let cluster = Arc::new(Cluster {
        directory: directory.clone(),
        url: url.clone(),
        lease_ms: setting("AGENTC_FAULT_LEASE_MS", 2_000),
        heartbeat_ms: setting("AGENTC_FAULT_HEARTBEAT_MS", 250),
        instances: Mutex::new((0..3).map(|_| None).collect()),
        starts: AtomicUsize::new(0),
    });
    for slot in 0..3 {
        cluster.start(slot);
    }
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));

    // Reviews: alice approves each pending charge on a random instance; every third
    // approval is sent to two instances at once, and exactly one may take it.
    let reviewer = {
        let cluster = Arc::clone(&cluster);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut random = Lcg(7);
            let (mut approved, mut duplicates_refused) = (0usize, 0usize);
            while !done.load(Ordering::SeqCst) {
                let Some(base) = cluster.any(&mut random) else {
                    continue;
                };
                let Some(page) = get(&base, "/reviews?limit=100") else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                for review in page["reviews"].as_array().cloned().unwrap_or_default() {
                    let id = review["id"].as_str().unwrap_or_default().to_string();
                    let body = serde_json::json!({"decision": "approve", "call_hash": review["call_hash"]})
                        .to_string();
                    let twice = approved % 3 == 0;
                    let targets: Vec<String> = (0..if twice { 2 } else { 1 })
                        .filter_map(|_| cluster.any(&mut random))
                        .collect();
                    let answers: Vec<Option<u16>> = std::thread::scope(|scope| {
                        let handles: Vec<_> = targets
                            .iter()
                            .map(|target| {
                                let (path, body) = (format!("/reviews/{id}"), body.clone());
                                scope.spawn(move || {
                                    post(target, &path, &body).map(|(status, _, _)| status)
                                })
                            })
                            .collect();
                        handles
                            .into_iter()
                            .map(|handle| handle.join().unwrap())
                            .collect()
                    });
                    let taken = answers
                        .iter()
                        .filter(|status| **status == Some(200))
                        .count();
                    assert!(taken <= 1, "one approval taken twice: {answers:?}");
                    if taken == 1 {
                        approved += 1;
                        if targets.len() == 2 && answers.contains(&Some(409)) {
                            duplicates_refused += 1;
                        }
                    }
                }
                // A reviewer takes a moment: engagements wait across the faults.
                std::thread::sleep(Duration::from_millis(100 + random.below(300)));
            }
            (approved, duplicates_refused)
        })
    };

    // Faults: kill -9 an instance at random and start it again; once, pause one past
    // its lease (SIGSTOP) and let it go on (SIGCONT), fenced out by then.
    let takeovers = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let killer = {
        let cluster = Arc::clone(&cluster);
        let takeovers = Arc::clone(&takeovers);
        let url = url.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let store = runtime
                .block_on(PostgresStore::connect(&url, None))
                .unwrap();
            let mut random = Lcg(11);
            for round in 0..kills + 1 {
                std::thread::sleep(Duration::from_millis(600 + random.below(800)));
                if round == kills / 2 {
                    // Every connection to the database dropped at once, as a
                    // database restart drops them: pools, listeners, audit writers.
                    let dropped = runtime.block_on(drop_connections(&url));
                    eprintln!("dropped {dropped} database connections");
                }
                let slot = random.below(3) as usize;
                let taken = cluster.instances.lock().unwrap()[slot].take();
                let Some(mut instance) = taken else { continue };
                let id = instance.id();
                if round == kills {
                    // The pause: past the lease, then on again.
                    let pid = instance.child.id().to_string();
                    let _ = Command::new("kill").args(["-STOP", &pid]).status();
                    std::thread::sleep(Duration::from_millis(cluster.lease_ms as u64 * 7 / 4));
                    let _ = Command::new("kill").args(["-CONT", &pid]).status();
                    cluster.instances.lock().unwrap()[slot] = Some(instance);
                    continue;
                }
                let killed_at = Instant::now();
                instance.child.kill().unwrap();
                instance.child.wait().unwrap();
                // How long until no unsettled engagement is left with the dead one.
                if let Some(id) = id {
                    let deadline =
                        Instant::now() + Duration::from_millis(cluster.lease_ms as u64 * 3 + 5_000);
                    while Instant::now() < deadline {
                        let owned = runtime.block_on(store.owned_engagements(&id));
                        if owned.is_ok_and(|owned| owned.is_empty()) {
                            takeovers.lock().unwrap().push(killed_at.elapsed());
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                cluster.start(slot);
            }
        })
    };

    // The engagements, each started on a random live instance, spread over the time
    // the faults take, so that every fault finds engagements at every step.
    let spacing = Duration::from_millis(1_000 * (kills as u64 + 1) / engagements.max(1) as u64);
    let mut random = Lcg(3);
    let mut locations = Vec::new();
    while locations.len() < engagements {
        let Some(base) = cluster.any(&mut random) else {
            continue;
        };
        let body = format!(r#"{{"text": "Charge order o-{}"}}"#, locations.len());
        match post(&base, "/agents/payments", &body) {
            Some((303, Some(location), _)) => {
                locations.push(location);
                std::thread::sleep(spacing);
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    killer.join().unwrap();

    // Every engagement in the database ends: completed, or failed with a reason.
    let store = runtime
        .block_on(PostgresStore::connect(&url, None))
        .unwrap();
    let records = wait_until_every_engagement_ends(
        &runtime,
        &store,
        engagements,
        Instant::now() + Duration::from_secs(setting("AGENTC_FAULT_SECONDS", 180) as u64),
    );
    let elapsed = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let (approved, duplicates_refused) = reviewer.join().unwrap();

    // No engagement a client was told of is missing.
    let ids: HashSet<&str> = records.iter().map(|record| record.id.as_str()).collect();
    for location in &locations {
        let id = location.trim_start_matches("/engagements/");
        assert!(ids.contains(id), "engagement {id} was lost");
    }
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut unknown = 0;
    let mut journal_failures = 0;
    for record in &records {
        let state = record.state().to_string();
        if state == "failed" {
            let kind = record.status["reason"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            // A call cut off by a kill: unknown only for the call without a key. A call
            // whose journal could not be written when the connections dropped: not
            // sent (interrupted), or sent and its answer unrecorded (unknown).
            let detail = record.status["reason"]["detail"]
                .as_str()
                .unwrap_or_default();
            match kind.as_str() {
                "outcome_unknown" if detail.contains("could not be journaled") => {
                    journal_failures += 1;
                }
                "outcome_unknown" => assert_eq!(
                    record.status["reason"]["tool"], "notify",
                    "only the call without an idempotency key may be unknown: {}",
                    record.status
                ),
                "interrupted" if detail.contains("could not be journaled") => {
                    journal_failures += 1;
                }
                _ => panic!(
                    "an engagement failed without a reason this test allows: {}",
                    record.status
                ),
            }
            unknown += 1;
        }
        *states.entry(state).or_default() += 1;
    }
    let completed = states.get("completed").copied().unwrap_or_default();

    // Counted at the tool: no charge twice; no notice sent again.
    let stats = get(&format!("http://127.0.0.1:{tool_port}"), "/stats").unwrap();
    let charges = stats["charges"].as_object().unwrap();
    assert!(
        charges.values().all(|count| count == 1),
        "a charge happened twice: {charges:?}"
    );
    assert!(
        charges.len() + journal_failures >= completed,
        "{} charges, {completed} completed",
        charges.len()
    );
    assert!(charges.len() <= records.len());
    let notices = stats["notices"].as_u64().unwrap() as usize;
    assert!(
        (completed.saturating_sub(journal_failures)..=completed + unknown).contains(&notices),
        "{notices} notices for {completed} completed and {unknown} unknown engagements"
    );

    // Every instance's chain verifies, signed checkpoints included.
    let key = agentc_runtime::AuditSigningKey::from_hex(AUDIT_KEY)
        .unwrap()
        .public_key();
    let chains = runtime.block_on(store.audit_chains()).unwrap();
    assert!(chains.len() >= 3, "{chains:?}");
    let mut entries = 0;
    let mut fully_signed = Vec::new();
    for chain in &chains {
        let lines = runtime.block_on(store.audit_lines(chain)).unwrap();
        let verified = agentc_runtime::verify_signed(std::io::Cursor::new(lines.join("\n")), &key)
            .unwrap_or_else(|error| panic!("chain {chain} does not verify: {error}"));
        entries += verified.entries;
        // A chain ends with entries no checkpoint covers only when its instance was
        // killed in the middle of an engagement (a live one signs at each end).
        fully_signed.push(verified.unsigned_entries() == 0 && verified.checkpoints > 0);
    }
    assert!(
        fully_signed.iter().any(|signed| *signed),
        "no chain is signed to its end"
    );

    // The operator's way: `agentc audit export` per chain, then `agentc audit verify`
    // with the public key; without `--chain`, the chains are listed, nothing written.
    let listed = Command::new(env!("CARGO_BIN_EXE_agentc"))
        .args(["audit", "export", "--db", &url])
        .output()
        .unwrap();
    assert_eq!(listed.status.code(), Some(2));
    let listing = String::from_utf8_lossy(&listed.stderr);
    assert!(
        listing.contains("--chain") && listing.contains(&chains[0]),
        "{listing}"
    );
    assert!(
        !listing.contains(&url),
        "the URL is never printed: {listing}"
    );
    // Every chain: one signed to its end verifies (exit 0); one whose instance was
    // killed mid-engagement is intact but says which entries no checkpoint covers
    // (exit 1), as the library found.
    for (chain, fully_signed) in chains.iter().zip(&fully_signed) {
        let exported = directory.join("chain.jsonl");
        let export = Command::new(env!("CARGO_BIN_EXE_agentc"))
            .args(["audit", "export", "--db", &url, "--chain", chain, "-o"])
            .arg(&exported)
            .output()
            .unwrap();
        assert!(
            export.status.success(),
            "{}",
            String::from_utf8_lossy(&export.stderr)
        );
        let verify = Command::new(env!("CARGO_BIN_EXE_agentc"))
            .args(["audit", "verify"])
            .arg(&exported)
            .args(["--key", &key.to_hex()])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&verify.stdout);
        if *fully_signed {
            assert!(
                verify.status.success() && report.starts_with("intact and signed"),
                "chain `{chain}`: {}: {report}{}",
                verify.status,
                String::from_utf8_lossy(&verify.stderr)
            );
        } else {
            assert!(
                verify.status.code() == Some(1)
                    && report.starts_with("intact chain")
                    && report.contains("unsigned: the last"),
                "chain `{chain}`: {}: {report}{}",
                verify.status,
                String::from_utf8_lossy(&verify.stderr)
            );
        }
    }

    let takeovers = takeovers.lock().unwrap().clone();
    eprintln!(
        "scale-out fault run: {} engagements ({} asked) in {:.1} s over 3 instances, {} kills, 1 pause past the lease, all database connections dropped once; {states:?} ({journal_failures} when the connections dropped); {} charges ({} repeated keys answered from the first), {notices} notices; {approved} approvals ({duplicates_refused} sent twice, one refused); {} audit chains, {entries} entries, all verified; takeover after kill -9: {:?}",
        records.len(),
        engagements,
        elapsed.as_secs_f64(),
        kills,
        charges.len(),
        stats["repeated"],
        chains.len(),
        takeovers
    );
    for instance in cluster.instances.lock().unwrap().iter_mut().flatten() {
        let _ = instance.child.kill();
        let _ = instance.child.wait();
    }
    let _ = service.kill();
    let _ = service.wait();
    let _ = std::fs::remove_dir_all(&directory);
}

/// A server paused past its lease while a call without an idempotency key is under
/// way: the other server takes the engagement over and, the call's outcome being
/// unknown, never sends it again; the paused one, once it runs again, is fenced out: its
/// answer and its outcome are stored nowhere, and it calls no tool.
#[test]
fn a_paused_instance_that_lost_its_engagement_sends_nothing_more() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(url) = runtime.block_on(postgres::fresh_postgres("pause")) else {
        return;
    };
    let (directory, mut service, tool_port) = prepare("pause");
    let tools = format!("http://127.0.0.1:{tool_port}");
    let cluster = Cluster {
        directory: directory.clone(),
        url: url.clone(),
        lease_ms: 2_000,
        heartbeat_ms: 250,
        instances: Mutex::new((0..2).map(|_| None).collect()),
        starts: AtomicUsize::new(0),
    };
    cluster.start(0);
    cluster.start(1);
    let (first, first_pid) = {
        let instances = cluster.instances.lock().unwrap();
        let first = instances[0].as_ref().unwrap();
        (first.base(), first.child.id().to_string())
    };
    let second = cluster.instances.lock().unwrap()[1]
        .as_ref()
        .unwrap()
        .base();

    // The notice will be held at the tool, under way, after its effect.
    post(&tools, "/hold", "{}").unwrap();
    let (_, location, _) = post(
        &first,
        "/agents/payments",
        r#"{"text": "Charge order o-1"}"#,
    )
    .unwrap();
    let location = location.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let review = loop {
        if let Some(page) = get(&first, "/reviews")
            && let Some(review) = page["reviews"].get(0)
        {
            break review.clone();
        }
        assert!(Instant::now() < deadline, "no review came");
        std::thread::sleep(Duration::from_millis(50));
    };
    let approve = serde_json::json!({"decision": "approve", "call_hash": review["call_hash"]});
    let id = review["id"].as_str().unwrap();
    let (status, _, _) = post(&first, &format!("/reviews/{id}"), &approve.to_string()).unwrap();
    assert_eq!(status, 200);
    while get(&tools, "/stats").unwrap()["notices"] != 1 {
        assert!(Instant::now() < deadline, "the notice was never sent");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Paused past its lease, mid-call.
    Command::new("kill")
        .args(["-STOP", &first_pid])
        .status()
        .unwrap();
    let ended = loop {
        if let Some(state) = get(&second, &format!("{location}?wait=5"))
            && state["status"]["state"] == "failed"
        {
            break state;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "the engagement was not taken over"
        );
    };
    assert_eq!(
        ended["status"]["reason"]["kind"], "outcome_unknown",
        "{ended}"
    );
    assert_eq!(ended["status"]["reason"]["tool"], "notify", "{ended}");

    // It runs again and gets its answer: fenced out, it changes nothing.
    post(&tools, "/release", "{}").unwrap();
    Command::new("kill")
        .args(["-CONT", &first_pid])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    let after = get(&second, &location).unwrap();
    assert_eq!(after["status"], ended["status"], "{after}");
    let stats = get(&tools, "/stats").unwrap();
    assert_eq!(stats["notices"], 1, "the notice was sent again: {stats}");
    assert_eq!(stats["charges"].as_object().unwrap().len(), 1, "{stats}");
    let store = runtime
        .block_on(PostgresStore::connect(&url, None))
        .unwrap();
    let record = runtime
        .block_on(store.engagement(location.trim_start_matches("/engagements/")))
        .unwrap()
        .unwrap();
    assert_eq!(record.fence, 2, "taken over once");
    assert_eq!(record.state(), "failed");

    for instance in cluster.instances.lock().unwrap().iter_mut().flatten() {
        let _ = instance.child.kill();
        let _ = instance.child.wait();
    }
    let _ = service.kill();
    let _ = service.wait();
    let _ = std::fs::remove_dir_all(&directory);
}
