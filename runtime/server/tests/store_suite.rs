//! One contract, two stores (issue 28, item 1): every test here runs on SQLite and on a
//! real PostgreSQL server (`AGENTC_TEST_POSTGRES_URL`; `cargo xtask ci` starts one).
//! Then what only a shared store does: two instances on one database, fencing between
//! them, decisions announced to the other instance, and one audit chain per instance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use agentc_runtime::{EngagementSnapshot, UserIdentity};
use agentc_server::store::SETTLED_STATES;
use agentc_server::{
    EngagementRecord, PostgresStore, ReviewRecord, SqliteStore, Store, StoreError, StoredDecision,
};
use common::{database_path, fresh_postgres};
use serde_json::json;

fn engagement(id: &str, owner: &str, state: &str, created_at_ms: i64) -> EngagementRecord {
    EngagementRecord {
        id: id.into(),
        agent: "refunds".into(),
        user: UserIdentity::new("alice"),
        status: json!({"state": state}),
        text: None,
        exposes: serde_json::Map::new(),
        snapshot: None,
        created_at_ms,
        updated_at_ms: created_at_ms,
        owner: owner.into(),
        fence: 1,
        pending_input: Some("Please refund o-42".into()),
    }
}

fn review(id: &str, engagement: &str, reviewer: &str, created_at_ms: i64) -> ReviewRecord {
    ReviewRecord {
        id: id.into(),
        engagement: engagement.into(),
        agent: "refunds".into(),
        reviewer: reviewer.into(),
        reviewer_is_agent: false,
        tool: "issue_refund".into(),
        stage: "input".into(),
        inputs: json!({"order": "o-42"}),
        outputs: None,
        call_hash: format!("hash-{id}"),
        engagement_state: json!({}),
        decision: None,
        consumed: false,
        created_at_ms,
    }
}

fn approve(review: &str) -> StoredDecision {
    StoredDecision::Approve {
        call_hash: format!("hash-{review}"),
    }
}

/// Both stores, each fresh: SQLite always, PostgreSQL when a server is given.
async fn stores(test: &str) -> Vec<(&'static str, Arc<dyn Store>)> {
    let mut stores: Vec<(&'static str, Arc<dyn Store>)> = vec![(
        "sqlite",
        Arc::new(SqliteStore::open(&database_path(test)).unwrap()),
    )];
    if let Some(url) = fresh_postgres(test).await {
        stores.push((
            "postgres",
            Arc::new(PostgresStore::connect(&url, None).await.unwrap()),
        ));
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engagement_writes_carry_the_writers_fence() {
    for (kind, store) in stores("fence").await {
        store.heartbeat("i_a", 1_000).await.unwrap();
        store
            .insert_engagement(&engagement("e_1", "i_a", "running", 10))
            .await
            .unwrap();
        let read = store.engagement("e_1").await.unwrap().unwrap();
        assert_eq!((read.owner.as_str(), read.fence), ("i_a", 1), "{kind}");
        assert_eq!(read.pending_input.as_deref(), Some("Please refund o-42"));

        // Allowed: the holder's writes.
        store
            .set_status("e_1", &json!({"state": "awaiting_review"}), 1)
            .await
            .unwrap();
        store
            .save_snapshot("e_1", &EngagementSnapshot::default(), 1)
            .await
            .unwrap();
        let read = store.engagement("e_1").await.unwrap().unwrap();
        assert_eq!(read.state(), "awaiting_review", "{kind}");
        assert!(
            read.snapshot.is_some() && read.pending_input.is_none(),
            "{kind}"
        );

        // Denied: a write with another fence changes nothing.
        for refused in [
            store
                .set_status("e_1", &json!({"state": "completed"}), 2)
                .await,
            store
                .save_snapshot("e_1", &EngagementSnapshot::default(), 0)
                .await,
            store
                .set_pending_input("e_1", &json!({"state": "running"}), "more", 7)
                .await,
            store
                .update_engagement(&engagement("e_1", "i_a", "completed", 10), 3)
                .await,
        ] {
            assert!(
                matches!(refused, Err(StoreError::Fenced(ref id)) if id == "e_1"),
                "{kind}: {refused:?}"
            );
        }
        assert_eq!(
            store.engagement("e_1").await.unwrap().unwrap().state(),
            "awaiting_review",
            "{kind}"
        );
        // A turn added to it sets the input to run from.
        store
            .set_pending_input("e_1", &json!({"state": "running"}), "and o-43", 1)
            .await
            .unwrap();
        let read = store.engagement("e_1").await.unwrap().unwrap();
        assert_eq!(read.pending_input.as_deref(), Some("and o-43"), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_text_is_kept_as_it_was_given() {
    for (kind, store) in stores("text").await {
        // A NUL character (PostgreSQL's TEXT takes none), a lone quote, a line break.
        let awkward = "before\u{0}after \" '\n end";
        let mut record = engagement("e_text", "i_a", "running", 10);
        record.pending_input = Some(awkward.to_string());
        store.insert_engagement(&record).await.unwrap();
        let read = store.engagement("e_text").await.unwrap().unwrap();
        assert_eq!(read.pending_input.as_deref(), Some(awkward), "{kind}");
        store
            .set_pending_input("e_text", &json!({"state": "running"}), awkward, 1)
            .await
            .unwrap();
        record.text = Some(awkward.to_string());
        record.status = json!({"state": "completed"});
        store.update_engagement(&record, 1).await.unwrap();
        let read = store.engagement_summary("e_text").await.unwrap().unwrap();
        assert_eq!(read.text.as_deref(), Some(awkward), "{kind}");
        assert!(
            read.pending_input.is_none() && read.snapshot.is_none(),
            "{kind}"
        );
    }
}

/// A database made before the call journal: what it has as running was not journaled,
/// so it fails as interrupted (as that version would have at its next start) rather
/// than be resumed from an old snapshot.
#[tokio::test]
async fn an_sqlite_database_of_the_version_before_is_upgraded() {
    let path = database_path("upgrade");
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(
                r#"CREATE TABLE engagements (id TEXT PRIMARY KEY, agent TEXT NOT NULL, user_json TEXT NOT NULL, state TEXT NOT NULL, status_json TEXT NOT NULL, text TEXT, exposes_json TEXT NOT NULL, snapshot_json TEXT, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL);
                 INSERT INTO engagements VALUES ('e_old', 'refunds', '{"id":"alice"}', 'running', '{"state":"running"}', NULL, '{}', NULL, 1, 1);
                 INSERT INTO engagements VALUES ('e_waits', 'refunds', '{"id":"alice"}', 'awaiting_review', '{"state":"awaiting_review"}', NULL, '{}', NULL, 2, 2);"#,
            )
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let old = store.engagement("e_old").await.unwrap().unwrap();
    assert_eq!(old.state(), "failed");
    assert_eq!(old.status["reason"]["kind"], "interrupted");
    let waits = store.engagement("e_waits").await.unwrap().unwrap();
    assert_eq!(
        (waits.state(), waits.fence, waits.owner.as_str()),
        ("awaiting_review", 0, "")
    );
    // Opening it again changes nothing more.
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.engagement("e_waits").await.unwrap().unwrap().state(),
        "awaiting_review"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_engagements_are_taken_over_once() {
    for (kind, store) in stores("takeover").await {
        store.heartbeat("i_dead", 1_000).await.unwrap();
        store.heartbeat("i_alive", 9_000).await.unwrap();
        store
            .insert_engagement(&engagement("e_old", "i_dead", "running", 10))
            .await
            .unwrap();
        store
            .insert_engagement(&engagement("e_waits", "i_dead", "awaiting_review", 11))
            .await
            .unwrap();
        store
            .insert_engagement(&engagement("e_done", "i_dead", "completed", 12))
            .await
            .unwrap();
        store
            .insert_engagement(&engagement("e_live", "i_alive", "running", 13))
            .await
            .unwrap();
        // Only the dead instance's unsettled engagements, oldest first.
        let orphans = store
            .orphaned_engagements("i_new", 5_000, 100)
            .await
            .unwrap();
        assert_eq!(
            orphans,
            vec![("e_old".to_string(), 1), ("e_waits".to_string(), 1)],
            "{kind}"
        );
        assert!(SETTLED_STATES.contains(&"completed"));
        // Not its own.
        assert!(
            store
                .orphaned_engagements("i_dead", 5_000, 100)
                .await
                .unwrap()
                .is_empty(),
            "{kind}"
        );

        // One claim wins; the fence moves on, and the old holder is fenced out.
        let taken = store
            .claim_engagement("e_old", "i_new", 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((taken.owner.as_str(), taken.fence), ("i_new", 2), "{kind}");
        assert!(
            store
                .claim_engagement("e_old", "i_other", 1)
                .await
                .unwrap()
                .is_none(),
            "{kind}"
        );
        assert!(matches!(
            store
                .set_status("e_old", &json!({"state": "failed"}), 1)
                .await,
            Err(StoreError::Fenced(_))
        ));
        store
            .set_status("e_old", &json!({"state": "running"}), 2)
            .await
            .unwrap();
        let mut owned = store.owned_engagements("i_new").await.unwrap();
        owned.sort();
        assert_eq!(owned, vec![("e_old".to_string(), 2)], "{kind}");

        // The instances alive since a moment: what rate limits are shared among.
        assert_eq!(store.live_instances(5_000).await.unwrap(), 1, "{kind}");
        assert_eq!(store.live_instances(0).await.unwrap(), 2, "{kind}");
        // A retired instance's engagements are free at once, whatever its heartbeat.
        store.heartbeat("i_alive", i64::MAX - 1).await.unwrap();
        assert!(
            !store
                .orphaned_engagements("i_new", 5_000, 100)
                .await
                .unwrap()
                .iter()
                .any(|(id, _)| id == "e_live"),
            "{kind}"
        );
        store.retire_instance("i_alive").await.unwrap();
        assert!(
            store
                .orphaned_engagements("i_new", 5_000, 100)
                .await
                .unwrap()
                .iter()
                .any(|(id, _)| id == "e_live"),
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_is_decided_once_and_taken_with_the_engagements_fence() {
    for (kind, store) in stores("reviews").await {
        store.heartbeat("i_a", 1_000).await.unwrap();
        store
            .insert_engagement(&engagement("e_1", "i_a", "awaiting_review", 10))
            .await
            .unwrap();
        store
            .insert_review(&review("r_1", "e_1", "alice", 100))
            .await
            .unwrap();
        store
            .insert_review(&review("r_2", "e_1", "bob", 101))
            .await
            .unwrap();
        let mut by_agent = review("r_agent", "e_1", "alice", 102);
        by_agent.reviewer_is_agent = true;
        store.insert_review(&by_agent).await.unwrap();

        let open = store
            .open_review("e_1", "hash-r_1", "input")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(open.id, "r_1", "{kind}");
        let page = store
            .pending_reviews_page(&["alice", "bob"], None, 10)
            .await
            .unwrap();
        let ids: Vec<&str> = page.iter().map(|review| review.id.as_str()).collect();
        assert_eq!(
            ids,
            ["r_1", "r_2"],
            "{kind}: agents' reviews are not listed"
        );
        let after = store
            .pending_reviews_page(&["alice", "bob"], Some((100, "r_1")), 10)
            .await
            .unwrap();
        assert_eq!(after.len(), 1, "{kind}");
        assert_eq!(
            store.pending_reviews_for(&["alice"]).await.unwrap().len(),
            2,
            "{kind}"
        );

        // Two decisions at once: one is taken.
        let (approval, refusal) = (
            approve("r_1"),
            StoredDecision::Refuse {
                reason: "no".into(),
            },
        );
        let (first, second) = tokio::join!(
            store.decide_review("r_1", &approval),
            store.decide_review("r_1", &refusal)
        );
        assert_eq!(
            [first.unwrap(), second.unwrap()]
                .iter()
                .filter(|taken| **taken)
                .count(),
            1,
            "{kind}"
        );
        assert!(!store.decide_review("r_1", &approve("r_1")).await.unwrap());
        let decided = store.decided_reviews_owned_by("i_a").await.unwrap();
        assert_eq!(decided.len(), 1, "{kind}");
        assert!(
            store
                .decided_reviews_owned_by("i_b")
                .await
                .unwrap()
                .is_empty()
        );

        // Taken only with the engagement's fence; then both or neither.
        assert!(matches!(
            store
                .take_decision("r_1", "e_1", &json!({"state": "running"}), 9)
                .await,
            Err(StoreError::Fenced(_))
        ));
        assert!(
            !store.review("r_1").await.unwrap().unwrap().consumed,
            "{kind}"
        );
        store
            .take_decision("r_1", "e_1", &json!({"state": "running"}), 1)
            .await
            .unwrap();
        assert!(
            store.review("r_1").await.unwrap().unwrap().consumed,
            "{kind}"
        );
        assert_eq!(
            store.engagement("e_1").await.unwrap().unwrap().state(),
            "running"
        );
        // A decision is taken once: one approval lets one call through.
        assert!(
            store
                .take_decision("r_1", "e_1", &json!({"state": "running"}), 1)
                .await
                .is_err(),
            "{kind}"
        );
        assert!(
            store
                .decided_reviews_owned_by("i_a")
                .await
                .unwrap()
                .is_empty()
        );
        // An undecided review cannot be taken.
        assert!(
            store
                .take_decision("r_2", "e_1", &json!({"state": "running"}), 1)
                .await
                .is_err()
        );
        assert_eq!(store.reviews_of("e_1").await.unwrap().len(), 3, "{kind}");
        // A decision that came after its engagement ended (its review timed out, say)
        // wakes nothing: only engagements that wait for a review are listed.
        store
            .insert_engagement(&engagement("e_ended", "i_a", "failed", 20))
            .await
            .unwrap();
        store
            .insert_review(&review("r_late", "e_ended", "alice", 200))
            .await
            .unwrap();
        assert!(
            store
                .decide_review("r_late", &approve("r_late"))
                .await
                .unwrap()
        );
        assert!(
            store
                .decided_reviews_owned_by("i_a")
                .await
                .unwrap()
                .is_empty(),
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_are_kept_in_order_and_continued_from_their_head() {
    for (kind, store) in stores("audit").await {
        let chain = if store.is_shared() { "i_a" } else { "main" };
        assert!(store.audit_head(chain).await.unwrap().is_none(), "{kind}");
        for seq in 0..3u64 {
            let line =
                json!({"seq": seq, "hash": format!("h{seq}"), "engagement": "e_1"}).to_string();
            store.append_audit(chain, seq, "e_1", &line).unwrap();
        }
        assert_eq!(
            store.audit_head(chain).await.unwrap(),
            Some((2, "h2".to_string())),
            "{kind}"
        );
        let lines = store.audit_lines(chain).await.unwrap();
        assert_eq!(lines.len(), 3, "{kind}");
        assert!(lines[0].contains("\"h0\""), "{kind}");
        assert_eq!(store.audit_chains().await.unwrap(), vec![chain.to_string()]);
        // A place in the chain is written once.
        assert!(store.append_audit(chain, 1, "e_1", "{}").is_err(), "{kind}");
    }
}

/// Two instances, one PostgreSQL database: each a store of its own (its own pool,
/// listener and audit connection), as two processes have.
async fn two_instances(test: &str) -> Option<(PostgresStore, PostgresStore)> {
    let url = fresh_postgres(test).await?;
    let first = PostgresStore::connect(&url, None).await.unwrap();
    // Migrating again (a second instance starting) finds the schema in place.
    let second = PostgresStore::connect(&url, None).await.unwrap();
    Some((first, second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_decision_on_one_instance_is_announced_to_the_other() {
    let Some((first, second)) = two_instances("notify").await else {
        return;
    };
    assert!(first.is_shared());
    let mut announced = second.notifications().await.unwrap().unwrap();
    first.heartbeat("i_a", 1_000).await.unwrap();
    first
        .insert_engagement(&engagement("e_1", "i_b", "awaiting_review", 10))
        .await
        .unwrap();
    first
        .insert_review(&review("r_1", "e_1", "alice", 100))
        .await
        .unwrap();
    // The listener may still be connecting: decide once it listens, which the
    // decision's own notification shows.
    let mut heard = None;
    for attempt in 0..50 {
        if attempt == 0 || heard.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if attempt == 5 {
            assert!(first.decide_review("r_1", &approve("r_1")).await.unwrap());
        }
        if attempt >= 5
            && let Ok(Some(engagement)) =
                tokio::time::timeout(Duration::from_millis(100), announced.recv()).await
        {
            heard = Some(engagement);
            break;
        }
    }
    assert_eq!(
        heard,
        Some(agentc_server::store::StoreNotification::Decided(
            "e_1".into()
        ))
    );
    // A decision already taken announces nothing.
    assert!(!first.decide_review("r_1", &approve("r_1")).await.unwrap());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), announced.recv())
            .await
            .is_err()
    );
    // An engagement that stops running is announced with its update; one that goes
    // on running is not.
    first
        .set_status("e_1", &json!({"state": "running"}), 1)
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), announced.recv())
            .await
            .is_err()
    );
    first
        .update_engagement(&engagement("e_1", "i_b", "completed", 10), 1)
        .await
        .unwrap();
    let changed = tokio::time::timeout(Duration::from_secs(5), announced.recv())
        .await
        .unwrap();
    assert_eq!(
        changed,
        Some(agentc_server::store::StoreNotification::Changed(
            "e_1".into()
        ))
    );
    // A fenced-out update changes nothing and announces nothing.
    assert!(
        first
            .update_engagement(&engagement("e_1", "i_b", "failed", 10), 5)
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), announced.recv())
            .await
            .is_err()
    );
}

async fn claim_all(store: &PostgresStore, instance: &str, orphans: Vec<(String, i64)>) -> usize {
    let mut won = 0;
    for (id, fence) in orphans {
        if store
            .claim_engagement(&id, instance, fence)
            .await
            .unwrap()
            .is_some()
        {
            won += 1;
        }
    }
    won
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_racing_for_one_engagement_one_wins() {
    let Some((first, second)) = two_instances("race").await else {
        return;
    };
    first.heartbeat("i_dead", 0).await.unwrap();
    for index in 0..40 {
        first
            .insert_engagement(&engagement(
                &format!("e_{index:02}"),
                "i_dead",
                "running",
                index,
            ))
            .await
            .unwrap();
    }
    let (first_orphans, second_orphans) = tokio::join!(
        first.orphaned_engagements("i_a", 1_000, 100),
        second.orphaned_engagements("i_b", 1_000, 100)
    );
    let (first_orphans, second_orphans) = (first_orphans.unwrap(), second_orphans.unwrap());
    assert_eq!((first_orphans.len(), second_orphans.len()), (40, 40));
    let (won_a, won_b) = tokio::join!(
        claim_all(&first, "i_a", first_orphans),
        claim_all(&second, "i_b", second_orphans)
    );
    assert_eq!(
        won_a + won_b,
        40,
        "each engagement has exactly one new owner"
    );
    let (mut owned_a, mut owned_b) = (
        first.owned_engagements("i_a").await.unwrap(),
        first.owned_engagements("i_b").await.unwrap(),
    );
    owned_a.append(&mut owned_b);
    assert_eq!(owned_a.len(), 40);
    assert!(owned_a.iter().all(|(_, fence)| *fence == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_each_instance_writes_its_own_audit_chain() {
    let Some((first, second)) = two_instances("chains").await else {
        return;
    };
    for (store, chain) in [(&first, "i_a"), (&second, "i_b")] {
        assert!(store.audit_head(chain).await.unwrap().is_none());
        for seq in 0..2u64 {
            let line = json!({"seq": seq, "hash": format!("{chain}-{seq}")}).to_string();
            store.append_audit(chain, seq, "e_1", &line).unwrap();
        }
    }
    assert_eq!(
        first.audit_chains().await.unwrap(),
        vec!["i_a".to_string(), "i_b".to_string()]
    );
    assert_eq!(
        second.audit_head("i_a").await.unwrap(),
        Some((1, "i_a-1".to_string()))
    );
    assert_eq!(first.audit_lines("i_b").await.unwrap().len(), 2);
    // An audit line written from a thread that is not the runtime's.
    let store = Arc::new(first);
    let writer = Arc::clone(&store);
    std::thread::spawn(move || {
        writer
            .append_audit(
                "i_a",
                2,
                "e_2",
                &json!({"seq": 2, "hash": "i_a-2"}).to_string(),
            )
            .unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(store.audit_lines("i_a").await.unwrap().len(), 3);
}
