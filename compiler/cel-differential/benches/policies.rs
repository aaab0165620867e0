//! Benchmarks: compiled CEL against the interpreter and the `cel` crate (crates.io).
//!
//! Run with `cargo bench -p agentc-cel-differential --bench policies`.
//! (a) `kb_prefix`: `recent.hr_kb_search.inputs.knowledge_base_id.startsWith("acme/hr/")`;
//! (b) `history_rule`: size, `in history._list` and `all` over a 100-entry history with a
//! nested `all` over each entry's list output. Inputs are prepared once: typed structs for
//! the compiled code, an activation for the interpreter, a context for the `cel` crate.
//! `interpreted` evaluates an `agentc_cel::Program` prepared once, as the runtime does for
//! a spec loaded at run time; `interpreted_unprepared` calls `agentc_cel::evaluate`, which
//! prepares the expression on every call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use agentc_cel_differential::{activation, corpus, generated, sample_engagement};
use agentc_cel_support::Meter;
use criterion::{Criterion, criterion_group, criterion_main};

fn source(name: &str) -> &'static str {
    corpus::CORPUS
        .iter()
        .find(|(candidate, _)| *candidate == name)
        .map(|(_, source)| *source)
        .unwrap()
}

fn cel_crate_context(engagement: &generated::Engagement) -> cel::Context<'static, 'static> {
    let json = serde_json::to_value(engagement).unwrap();
    let mut context = cel::Context::default();
    for name in ["started_at", "user", "recent", "history"] {
        context
            .add_variable(name, json.get(name).cloned().unwrap())
            .unwrap();
    }
    context
}

fn bench(criterion: &mut Criterion) {
    let engagement = sample_engagement(100).unwrap();
    let variables = activation(&engagement).unwrap();
    let context = cel_crate_context(&engagement);
    let mut group_for = |name: &str, compiled: &dyn Fn(&generated::Engagement) -> bool| {
        let text = source(name);
        let expr = agentc_cel::parse(text).unwrap();
        // The run-time path: parse once, prepare once, evaluate per tool call.
        let prepared = agentc_cel::Program::new(&expr);
        let program = cel::Program::compile(text).unwrap();
        assert!(compiled(&engagement));
        assert!(matches!(
            agentc_cel::evaluate(&expr, &variables),
            Ok(agentc_cel::Value::Bool(true))
        ));
        assert!(matches!(
            prepared.evaluate(&variables),
            Ok(agentc_cel::Value::Bool(true))
        ));
        assert_eq!(program.execute(&context).unwrap(), cel::Value::Bool(true));
        let mut group = criterion.benchmark_group(name);
        group.bench_function("interpreted", |bencher| {
            bencher.iter(|| black_box(&prepared).evaluate(black_box(&variables)))
        });
        // Preparing on every evaluation, as `agentc_cel::evaluate` does.
        group.bench_function("interpreted_unprepared", |bencher| {
            bencher.iter(|| agentc_cel::evaluate(black_box(&expr), black_box(&variables)))
        });
        group.bench_function("cel_crate", |bencher| {
            bencher.iter(|| black_box(&program).execute(black_box(&context)))
        });
        group.finish();
    };
    group_for("kb_prefix", &|engagement| {
        generated::kb_prefix(engagement, &Meter::new()) == Ok(true)
    });
    group_for("history_rule", &|engagement| {
        generated::history_rule(engagement, &Meter::new()) == Ok(true)
    });
    // The compiled functions are called directly, as generated code calls them.
    criterion.bench_function("kb_prefix/compiled", |bencher| {
        bencher.iter(|| {
            let meter = Meter::new();
            meter.settle(generated::kb_prefix(black_box(&engagement), &meter))
        })
    });
    criterion.bench_function("history_rule/compiled", |bencher| {
        bencher.iter(|| {
            let meter = Meter::new();
            meter.settle(generated::history_rule(black_box(&engagement), &meter))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
