//! Compiled and interpreted results must agree on every corpus expression, errors
//! included, for fixed and for randomly generated engagements.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentc_cel_differential::generated::{
    CreateEventInputs, CreateEventInputsOrganizer, CreateEventInvocation, CreateEventOutputs,
    Engagement, History, HrKbSearchInputs, HrKbSearchInvocation, HrKbSearchOutputs,
    HrKbSearchOutputsResultsItem, Recent, Refusal, User,
};
use agentc_cel_differential::{activation, compare, corpus, generate, parsed_corpus};
use agentc_cel_support::{Text, Timestamp};
use proptest::prelude::*;

#[test]
fn generated_code_is_fresh() {
    let expected = generate().expect("the corpus compiles");
    let committed = include_str!("../src/generated.rs");
    assert!(
        expected == committed,
        "src/generated.rs is stale: run `cargo run -p agentc-cel-differential --bin regenerate`"
    );
    assert_eq!(generate().unwrap(), expected, "generation is deterministic");
}

#[test]
fn fallback_expressions_are_refused_with_an_error() {
    let layout = agentc_cel_differential::layout();
    for (why, source) in corpus::FALLBACK {
        let expr = agentc_cel::parse(source).unwrap();
        let result = agentc_cel_compile::compile_function("f", &expr, "Engagement", &layout);
        assert!(result.is_err(), "{why}: `{source}` should not compile");
    }
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn sample() -> Engagement {
    let invocation = |kb: &str, scores: &[f64]| HrKbSearchInvocation {
        inputs: HrKbSearchInputs {
            knowledge_base_id: kb.into(),
            query: "leave policy".into(),
        },
        outputs: Some(HrKbSearchOutputs {
            results: scores
                .iter()
                .map(|score| HrKbSearchOutputsResultsItem {
                    title: format!("Policy {score}").into(),
                    score: *score,
                })
                .collect(),
        }),
        started_at: at("2024-03-05T09:31:00Z"),
        ended_at: Some(at("2024-03-05T09:32:00Z")),
    };
    let event = CreateEventInvocation {
        inputs: CreateEventInputs {
            title: "Review".into(),
            attendees: vec!["bob@acme.com".into(), "ann.lee".into()],
            priority: 2,
            duration_minutes: Some(30),
            organizer: Some(CreateEventInputsOrganizer {
                email: "ann.lee".into(),
                name: None,
            }),
        },
        outputs: Some(CreateEventOutputs {
            event_id: "evt_1".into(),
            confirmed: true,
        }),
        started_at: at("2024-03-05T09:30:30Z"),
        ended_at: Some(at("2024-03-05T09:30:40Z")),
    };
    Engagement {
        started_at: at("2024-03-05T09:30:00Z"),
        now: at("2024-03-05T09:33:00Z"),
        refused: vec![Refusal {
            name: "create_event".into(),
            stage: "input_restriction".into(),
        }],
        request: vec!["How much parental leave do I get?".into()],
        user: User {
            id: "ann.lee".into(),
            email: Some("ann.lee@acme.com".into()),
        },
        recent: Recent {
            name: Some("hr_kb_search".into()),
            create_event: Some(event.clone()),
            hr_kb_search: Some(invocation("acme/hr/policies", &[0.75, 1.0])),
        },
        history: History {
            list: vec!["create_event".into(), "hr_kb_search".into()],
            total: 2,
            create_event: vec![event],
            hr_kb_search: vec![invocation("acme/hr/policies", &[0.75, 1.0])],
        },
    }
}

fn assert_agreement(engagement: &Engagement) -> Result<(), TestCaseError> {
    let exprs = parsed_corpus().unwrap();
    let activation = activation(engagement).unwrap();
    for (index, expr) in exprs.iter().enumerate() {
        let comparison = compare(index, expr, engagement, &activation).unwrap();
        prop_assert!(
            comparison.agrees(),
            "`{}` disagrees: compiled {:?}, interpreted {:?}\nengagement: {}",
            corpus::CORPUS[index].1,
            comparison.compiled,
            comparison.interpreted,
            serde_json::to_string(engagement).unwrap()
        );
        prop_assert!(
            comparison.meter_covers_the_interpreter(),
            "`{}`: the compiled meter counted {:?}, less than the interpreter's {:?}",
            corpus::CORPUS[index].1,
            comparison.compiled_usage,
            comparison.interpreted_usage,
        );
    }
    Ok(())
}

/// An engagement whose history holds `count` searches, made by `search(index)`.
fn with_searches(count: usize, search: impl Fn(usize) -> HrKbSearchInvocation) -> Engagement {
    let mut engagement = sample();
    engagement.history.hr_kb_search = (0..count).map(search).collect();
    engagement
}

fn search(knowledge_base_id: &str, query: String) -> HrKbSearchInvocation {
    HrKbSearchInvocation {
        inputs: HrKbSearchInputs {
            knowledge_base_id: knowledge_base_id.into(),
            query: query.into(),
        },
        outputs: None,
        started_at: at("2024-03-05T09:30:00Z"),
        ended_at: None,
    }
}

/// Item 4 of issue 23: policies that do too much work on a long history. The interpreter
/// runs out of budget on each (an error, which denies); the compiled code must never
/// answer on its own there, but hand the evaluation to the interpreter (its meter runs
/// out first), so a generated check denies exactly as an interpreted one. On a short
/// history the same policies answer compiled, with the interpreter's answer.
#[test]
fn compiled_and_interpreted_agree_on_budget_exhaustion() {
    let exprs = parsed_corpus().unwrap();
    let position = |name: &str| {
        corpus::CORPUS
            .iter()
            .position(|(corpus_name, _)| *corpus_name == name)
            .unwrap()
    };
    let distinct = |count| with_searches(count, |index| search("acme/hr", format!("q{index}")));
    let long_queries = |count, bytes| {
        with_searches(count, move |index| {
            search("acme/hr", format!("{index}{}", "a".repeat(bytes)))
        })
    };
    let patterns = |count| with_searches(count, |_| search("^x$", "y".to_string()));
    let mut long_titles = sample();
    let event = long_titles.history.create_event[0].clone();
    long_titles.history.create_event = (0..40)
        .map(|_| {
            let mut event = event.clone();
            event.inputs.title = "T".repeat(1 << 20).into();
            event
        })
        .collect();
    let over_budget: Vec<(&str, Engagement)> = vec![
        // 2,000² / 2 iterations: past the iteration limit.
        ("pairwise_queries", distinct(2_000)),
        // 300² sizes of 16 KiB strings: past the step budget.
        ("pairwise_query_sizes", long_queries(300, 16 * 1024)),
        // Forty 2 MiB strings built: past the step or the byte budget.
        ("doubled_queries", long_queries(40, 1 << 20)),
        // 1,001 patterns compiled at run time: past the step budget.
        ("queries_as_patterns", patterns(1_001)),
        // Forty 1 MiB titles lowered and trimmed: past the step or the byte budget.
        ("lowered_titles", long_titles),
    ];
    for (name, engagement) in &over_budget {
        let index = position(name);
        let activation = activation(engagement).unwrap();
        let comparison = compare(index, &exprs[index], engagement, &activation).unwrap();
        let interpreted = comparison.interpreted.as_ref().unwrap_err();
        assert!(
            interpreted.message.contains("exceeded"),
            "`{name}`: the interpreter should run out of budget, got {interpreted:?}"
        );
        assert!(
            comparison.deferred(),
            "`{name}`: the compiled code answered {:?} on its own where the interpreter ran out",
            comparison.compiled
        );
    }
    // The compiled code may count more than the interpreter, never less: a borrowed
    // string copied once per iteration (to join a computed one in `?:`) is counted, so
    // 100 copies of a 1 MiB query hand over to the interpreter, which copies nothing and
    // answers within its budget.
    let mut copies = long_queries(100, 16);
    copies.recent.hr_kb_search = Some(search("acme/hr", "q".repeat(1 << 20)));
    let index = position("conditional_copies");
    let comparison = compare(index, &exprs[index], &copies, &activation(&copies).unwrap()).unwrap();
    assert!(comparison.deferred(), "{:?}", comparison.compiled_usage);
    assert!(
        comparison.interpreted.is_ok(),
        "{:?}",
        comparison.interpreted
    );
    assert!(
        comparison.compiled_usage.built_bytes <= 66 << 20,
        "stopped at the budget"
    );

    let within_budget: Vec<(&str, Engagement)> = vec![
        ("pairwise_queries", distinct(100)),
        ("pairwise_query_sizes", long_queries(30, 1024)),
        ("doubled_queries", long_queries(4, 1024)),
        ("queries_as_patterns", patterns(10)),
        ("lowered_titles", sample()),
    ];
    for (name, engagement) in &within_budget {
        let index = position(name);
        let activation = activation(engagement).unwrap();
        let comparison = compare(index, &exprs[index], engagement, &activation).unwrap();
        assert!(!comparison.deferred(), "`{name}` should answer compiled");
        assert!(comparison.agrees(), "`{name}`: {comparison:?}");
        assert!(
            comparison.meter_covers_the_interpreter(),
            "`{name}`: {comparison:?}"
        );
        assert!(comparison.interpreted.is_ok(), "`{name}`: {comparison:?}");
    }
}

#[test]
fn corpus_agrees_on_a_sample_engagement() {
    let engagement = sample();
    assert_agreement(&engagement).unwrap();
    // The sample exercises both outcomes: some expressions succeed, some fail.
    let exprs = parsed_corpus().unwrap();
    let activation = activation(&engagement).unwrap();
    let outcomes: Vec<bool> = exprs
        .iter()
        .enumerate()
        .map(|(index, expr)| {
            compare(index, expr, &engagement, &activation)
                .unwrap()
                .compiled
                .is_ok()
        })
        .collect();
    assert!(outcomes.iter().any(|ok| *ok) && outcomes.iter().any(|ok| !*ok));
    assert!(corpus::CORPUS.len() >= 60);
}

fn text() -> impl Strategy<Value = Text> {
    text_string().prop_map(Text::from)
}

fn text_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("acme/hr/policies".to_string()),
        Just("acme/hr/benefits".to_string()),
        Just("acme/public".to_string()),
        Just("Policy: leave".to_string()),
        Just("ann.lee".to_string()),
        Just("bob@acme.com".to_string()),
        Just(String::new()),
        Just("3".to_string()),
        "[a-zA-Z0-9 ./@?_-]{0,14}",
        "[a-zé中😀 .(\\[*+?]{0,8}",
        // Long enough for the interpreter to count their bytes (one step per 16).
        "[a-z ]{16,90}",
    ]
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        -3i64..8,
        Just(i64::MAX),
        Just(i64::MIN),
        (i64::MAX - 20)..=i64::MAX,
        i64::MIN..(i64::MIN + 20),
        any::<i64>(),
    ]
}

fn score() -> impl Strategy<Value = f64> {
    (-8i32..=24).prop_map(|k| f64::from(k) / 16.0)
}

fn hr_invocation() -> impl Strategy<Value = HrKbSearchInvocation> {
    (
        text(),
        text(),
        proptest::option::weighted(
            0.8,
            proptest::collection::vec(
                (text(), score())
                    .prop_map(|(title, score)| HrKbSearchOutputsResultsItem { title, score }),
                0..5,
            ),
        ),
        (timestamp(), proptest::option::of(timestamp())),
    )
        .prop_map(
            |(knowledge_base_id, query, results, (started_at, ended_at))| HrKbSearchInvocation {
                inputs: HrKbSearchInputs {
                    knowledge_base_id,
                    query,
                },
                outputs: results.map(|results| HrKbSearchOutputs { results }),
                started_at,
                ended_at,
            },
        )
}

fn event_invocation() -> impl Strategy<Value = CreateEventInvocation> {
    (
        text(),
        proptest::collection::vec(text(), 0..6),
        int(),
        proptest::option::of(int()),
        proptest::option::of((text(), proptest::option::of(text()))),
        proptest::option::of((text(), any::<bool>())),
        (timestamp(), proptest::option::of(timestamp())),
    )
        .prop_map(
            |(
                title,
                attendees,
                priority,
                duration_minutes,
                organizer,
                outputs,
                (started_at, ended_at),
            )| {
                CreateEventInvocation {
                    inputs: CreateEventInputs {
                        title,
                        attendees,
                        priority,
                        duration_minutes,
                        organizer: organizer
                            .map(|(email, name)| CreateEventInputsOrganizer { email, name }),
                    },
                    outputs: outputs.map(|(event_id, confirmed)| CreateEventOutputs {
                        event_id,
                        confirmed,
                    }),
                    started_at,
                    ended_at,
                }
            },
        )
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        (1_577_836_800i64..2_051_222_400).prop_map(i128::from),
        Just(253_402_300_000i128),
        Just(-62_135_596_800i128),
    ]
    .prop_map(|seconds| Timestamp::from_unix_nanos(seconds * 1_000_000_000).unwrap())
}

/// AGX-E2: refused calls, named like the capabilities or not, at the stages that refuse.
fn refusals() -> impl Strategy<Value = Vec<Refusal>> {
    proptest::collection::vec(
        (
            prop_oneof![Just(Text::from("create_event")), text()],
            prop_oneof![
                Just(Text::from("input_restriction")),
                Just(Text::from("output_review")),
                text(),
            ],
        )
            .prop_map(|(name, stage)| Refusal { name, stage }),
        0..4,
    )
}

fn engagement() -> impl Strategy<Value = Engagement> {
    let names = proptest::collection::vec(
        prop_oneof![
            Just(Text::from("hr_kb_search")),
            Just(Text::from("create_event")),
            Just(Text::from("delete_record")),
            text(),
        ],
        0..20,
    );
    (
        timestamp(),
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(hr_invocation()),
        proptest::option::of(event_invocation()),
        names,
        prop_oneof![Just(None), int().prop_map(Some)],
        proptest::collection::vec(hr_invocation(), 0..20),
        proptest::collection::vec(event_invocation(), 0..20),
        (timestamp(), refusals()),
    )
        .prop_map(
            |(
                started_at,
                id,
                email,
                name,
                hr,
                event,
                list,
                total,
                hr_history,
                event_history,
                (now, refused),
            )| {
                let total = total.unwrap_or(list.len() as i64);
                Engagement {
                    started_at,
                    now,
                    refused,
                    // AGX-E1: none or one input, drawn from the strategies above.
                    request: email.iter().cloned().collect(),
                    user: User { id, email },
                    recent: Recent {
                        name,
                        create_event: event,
                        hr_kb_search: hr,
                    },
                    history: History {
                        list,
                        total,
                        create_event: event_history,
                        hr_kb_search: hr_history,
                    },
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn compiled_and_interpreted_agree(engagement in engagement()) {
        assert_agreement(&engagement)?;
    }
}
