//! Per-call enforcement cost (issue 5): everything except the tool itself — short
//! circuit, schema checks, input and output assertions (interpreted CEL), state update
//! and two audit appends — after 10, 1,000 and 100,000 prior calls. The calls follow the
//! Thue–Morse sequence over two tools, which never repeats a block three times back to
//! back, so `short_circuit: 3` never stops the run and every call takes the full path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agentc_runtime::enforce::{CallOutcome, enforce_call};
use agentc_runtime::engagement::{Engagement, UserIdentity, now};
use agentc_runtime::spec::{AgentSpec, CapabilitySpec, RestrictionSpec, ToolSpec};
use agentc_runtime::{CelCheck, MockTool, Runtime, ToolCall, ToolRegistry};
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;

const NAMES: [&str; 2] = ["kb_a", "kb_b"];

fn thue_morse(index: usize) -> usize {
    (index.count_ones() % 2) as usize
}

fn restriction(text: &str) -> Option<RestrictionSpec> {
    Some(RestrictionSpec {
        require_review: None,
        assertion: Some(Arc::new(CelCheck::parse(text).unwrap())),
        review_when: None,
        shadow: None,
    })
}

fn setup(short_circuit: Option<u64>) -> (AgentSpec, Runtime, Vec<ToolCall>) {
    let mut agent = AgentSpec {
        name: "bench_agent".into(),
        short_circuit,
        // The timed engagements hold up to 100,000 prior calls, past `max_calls`' default.
        call_limits: agentc_runtime::CallLimits::new(None, Some(u64::MAX)),
        ..AgentSpec::default()
    };
    let mut specs = Vec::new();
    for name in NAMES {
        let mut capability = CapabilitySpec::new(name);
        capability.input_restriction = restriction(&format!(
            "recent.{name}.inputs.knowledge_base_id.startsWith(\"acme/hr/\")"
        ));
        capability.output_restriction =
            restriction(&format!("size(recent.{name}.outputs.results) <= 20"));
        agent.capabilities.push(capability);
        specs.push(ToolSpec {
            name: name.into(),
            description: "search".into(),
            input_schema: json!({"type": "object", "properties": {
                "knowledge_base_id": {"type": "string"}, "query": {"type": "string"}},
                "required": ["knowledge_base_id", "query"]}),
            output_schema: json!({"type": "object", "required": ["results"]}),
        });
    }
    let mut tools = ToolRegistry::new(&specs).unwrap();
    for name in NAMES {
        tools
            .bind(
                name,
                Arc::new(MockTool::new(json!({"results": [{"t": 1}]}))),
            )
            .unwrap();
    }
    let calls = NAMES
        .iter()
        .map(|name| ToolCall {
            id: None,
            name: (*name).into(),
            arguments: json!({"knowledge_base_id": "acme/hr/handbook", "query": "leave"}).into(),
        })
        .collect();
    (
        agent,
        Runtime::new(
            tools,
            std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
        ),
        calls,
    )
}

fn bench(criterion: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for (group_name, short_circuit) in [
        ("enforce_call", Some(3)),
        ("enforce_call_without_short_circuit", None),
    ] {
        let (agent, runtime, calls) = setup(short_circuit);
        let mut group = criterion.benchmark_group(group_name);
        group.sample_size(30);
        for prior in [10usize, 1_000, 100_000] {
            let mut engagement = Engagement::new(
                "e",
                &agent.name,
                &NAMES,
                Some(UserIdentity::new("u")),
                now(),
            );
            if short_circuit.is_some() {
                // As the first enforced call would, before any history exists.
                engagement.track_repetitions(3);
            }
            let input = json!({"knowledge_base_id": "acme/hr/handbook", "query": "leave"});
            let output = json!({"results": [{"t": 1}]});
            for index in 0..prior {
                engagement.record(
                    thue_morse(index),
                    Arc::new(input.clone()),
                    Some(Arc::new(output.clone())),
                );
            }
            let call = &calls[thue_morse(prior)];
            // Each measured call starts from the same engagement, so the history length
            // is exactly `prior`; the copy is made outside the timed section.
            group.bench_with_input(BenchmarkId::from_parameter(prior), &prior, |bencher, _| {
                bencher.iter_batched_ref(
                    || {
                        let mut copy = engagement.clone();
                        copy.reserve_calls(1);
                        copy
                    },
                    |engagement| {
                        let outcome = rt.block_on(enforce_call(&runtime, &agent, engagement, call));
                        assert!(matches!(outcome, CallOutcome::Returned(_)), "{outcome:?}");
                    },
                    BatchSize::PerIteration,
                );
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
