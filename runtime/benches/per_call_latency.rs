//! Per-call enforcement latency on a real agent (issue 5), call by call, so that the
//! median and the 99th percentile can be reported: the HR example, once with the
//! compiled checks of its generated crate (`spec-examples/generated/hr`) and once with
//! the same spec loaded at run time and its CEL interpreted, after 10, 1,000 and 100,000
//! prior calls. Everything except the tool itself is timed: the capability lookup, the
//! input and output schema checks, the input and output restriction assertions, the
//! state update and two hash-chained audit appends (encoded and hashed in full; the
//! writer discards the bytes). The tool is the same in-memory mock on both paths,
//! answering at once.
//!
//! A call is polled once, in place, inside the Tokio runtime's context (its tool
//! timeout needs the timer), and must be finished by then: that is how the engagement
//! loop runs it, awaited inside the engagement's task. Driving each call with
//! `Runtime::block_on` instead would time the executor's entry and the move of the
//! call's future into it, which a real call does not pay; the rows marked `block_on`
//! show that cost for comparison.
//!
//! Each timed call is taken back afterwards (`Engagement::undo_last_call`), so every
//! call sees exactly the stated history, and nothing but the call runs between two
//! timings (a copy of a long history before each call would evict the caches and time
//! the copy's after-effects instead).
//!
//! The HR agent declares `short_circuit: 3` over a single capability, so a history of
//! repeated searches would (rightly) stop it; the short circuit is switched off for the
//! calls, and its question (OAS-L2: would this call repeat a block of calls three
//! times?) and record are timed on their own, over the longest history it lets through.
//!
//! Run with `cargo bench -p agentc-runtime --bench per_call_latency`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// `GlobalAlloc` is an unsafe trait: counting allocations needs one `unsafe impl` that
// forwards to the system allocator. It is the only unsafe code in the crate.
#![allow(unsafe_code)]

use std::sync::Arc;

use agentc_runtime::enforce::{CallOutcome, enforce_call};
use agentc_runtime::engagement::{Engagement, UserIdentity, now};
use agentc_runtime::repetition::RepetitionDetector;
use agentc_runtime::spec::{AgentSpec, SpecSet};
use agentc_runtime::{
    MockTool, Runtime, ToolBackend, ToolCall, ToolContext, ToolError, ToolRegistry,
};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The system allocator, counting allocations while [`COUNTING`] is set: the timed
/// passes run with it unset (one relaxed load per allocation), and a separate pass
/// counts the allocations of one call.
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { std::alloc::System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(
        &self,
        pointer: *mut u8,
        layout: std::alloc::Layout,
        new_size: usize,
    ) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { std::alloc::System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

struct HrTools;

#[async_trait::async_trait]
impl hr::HrAgentTools for HrTools {
    async fn hr_kb_search(
        &self,
        _input: hr::HrKbSearchInput,
        _call: hr::UserIdentityCall<'_>,
    ) -> Result<hr::HrKbSearchOutput, ToolError> {
        Err(ToolError::Failed("replaced by the mock".into()))
    }

    async fn prompt_injection_scanner(
        &self,
        _input: hr::PromptInjectionScannerInput,
    ) -> Result<hr::PromptInjectionScannerOutput, ToolError> {
        Err(ToolError::Failed("not called by this benchmark".into()))
    }
}

fn output() -> serde_json::Value {
    json!({"results": [{"title": "Annual leave", "snippet": "Employees accrue 25 days.",
        "url": "https://kb.acme.example/hr/leave"}]})
}

fn input() -> serde_json::Value {
    json!({"knowledge_base_id": "acme/hr/handbook", "query": "how much annual leave"})
}

/// The tool the timed calls invoke: either the runtime's in-memory mock, which copies
/// its stored answer on every call (a deep copy of a JSON value: 13 allocations), or one
/// answer made before the timing and handed back after each call (the engagement and
/// the caller share the output, so once the call is undone the bench owns it again), so
/// that the timing holds everything but the tool itself, as issue 5 asks. The answer is
/// the same memory each time, warm in the cache as a tool's fresh answer would be; a
/// new copy per call, made ahead, would be cold and time cache misses instead. Both
/// rows are reported.
#[derive(Clone, Copy, PartialEq)]
enum Answers {
    CopiedByTheMock,
    PreparedAhead,
}

/// Answers made before the timing; a call takes one, and the bench gives it back.
#[derive(Default)]
struct PreparedAnswers {
    answers: std::sync::Mutex<Vec<serde_json::Value>>,
}

impl PreparedAnswers {
    fn prepare(&self) {
        let mut answers = self.answers.lock().unwrap();
        answers.clear();
        answers.push(output());
    }

    /// Takes back the answer of a call that was undone (the mock's copies are dropped).
    fn give_back(&self, outcome: CallOutcome, answers: Answers) {
        let CallOutcome::Returned(output) = outcome else {
            panic!("the call was refused: {outcome:?}")
        };
        if answers == Answers::PreparedAhead {
            let output = Arc::try_unwrap(output).expect("the undone call kept its output");
            self.answers.lock().unwrap().push(output);
        }
    }
}

#[async_trait::async_trait]
impl ToolBackend for PreparedAnswers {
    async fn invoke(
        &self,
        _input: &serde_json::Value,
        _context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        self.answers
            .lock()
            .map_err(|_| ToolError::Failed("poisoned".into()))?
            .pop()
            .ok_or_else(|| ToolError::Failed("no prepared answer left".into()))
    }
}

/// A runtime whose tool is the one the rows of `answers` use (a runtime's backends are
/// bound before it is made); the checks are the agent spec's, compiled or interpreted.
fn runtime_with_tool(
    tools: &[agentc_runtime::ToolSpec],
    answers: Answers,
    prepared: &Arc<PreparedAnswers>,
) -> Runtime {
    let backend: Arc<dyn ToolBackend> = match answers {
        Answers::CopiedByTheMock => Arc::new(MockTool::new(output())),
        Answers::PreparedAhead => prepared.clone(),
    };
    let mut registry = ToolRegistry::new(tools).unwrap();
    registry.bind("hr_kb_search", backend).unwrap();
    Runtime::new(registry, Arc::new(agentc_runtime::AuditLog::discard()))
}

/// The HR agent with the compiled checks of its generated crate.
fn compiled() -> AgentSpec {
    let hosted = hr::Hosted::<hr::agents::hr_agent>::new(
        HrTools,
        std::sync::Arc::new(agentc_runtime::AuditLog::discard()),
    )
    .unwrap();
    let mut spec = hosted.spec().clone();
    spec.short_circuit = None;
    // The timed engagements hold up to 100,000 prior calls, past `max_calls`' default.
    spec.call_limits.total = u64::MAX;
    spec
}

/// The same agent loaded from its YAML at run time, with its CEL interpreted.
fn interpreted() -> (AgentSpec, Vec<agentc_runtime::ToolSpec>) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec-examples/hr/");
    let sources = ["hr_agent.yaml", "tools.yaml"]
        .iter()
        .map(|file| agentc_compiler::SourceInput {
            name: (*file).to_string(),
            bytes: std::fs::read(format!("{root}{file}")).unwrap(),
        })
        .collect::<Vec<_>>();
    let set = SpecSet::from_sources(&sources).unwrap();
    let mut spec = set.agent("hr_agent").unwrap().clone();
    spec.short_circuit = None;
    spec.call_limits.total = u64::MAX;
    (spec, set.tools.clone())
}

const TIMED_CALLS: usize = 20_000;
const WARM_UP_CALLS: usize = 2_000;

struct Latency {
    median: Duration,
    p99: Duration,
    mean: Duration,
    /// Allocations of one call, or 0 where not counted.
    allocations: u64,
}

fn summarise(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let total: Duration = samples.iter().sum();
    let count = samples.len().max(1);
    Latency {
        median: samples.get(count / 2).copied().unwrap_or_default(),
        p99: samples.get(count * 99 / 100).copied().unwrap_or_default(),
        mean: total / u32::try_from(count).unwrap_or(u32::MAX),
        allocations: 0,
    }
}

fn engagement_with_history(agent: &AgentSpec, prior: usize) -> Engagement {
    let mut engagement = Engagement::new(
        "e",
        &agent.name,
        &["hr_kb_search"],
        Some(UserIdentity::new("u")),
        now(),
    );
    let (input, output) = (input(), output());
    engagement.reserve_calls(prior + 1);
    for _ in 0..prior {
        engagement.record(0, Arc::new(input.clone()), Some(Arc::new(output.clone())));
    }
    engagement
}

/// How a timed call is driven.
#[derive(Clone, Copy, PartialEq)]
enum Driver {
    /// Polled once in place, as the engagement's task awaits it.
    PolledInPlace,
    /// `Runtime::block_on`, once per call.
    BlockOn,
}

/// Runs a call that must finish at its first poll (its tool answers at once) in place,
/// with the runtime's context entered by the caller.
fn poll_once_in_place<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("a timed call waited, but its tool answers at once"),
    }
}

fn time_calls(
    rt: &tokio::runtime::Runtime,
    driver: Driver,
    runtime: &Runtime,
    agent: &AgentSpec,
    prior: usize,
    prepared: &PreparedAnswers,
    answers: Answers,
) -> Latency {
    prepared.prepare();
    let call = ToolCall {
        id: None,
        name: "hr_kb_search".into(),
        arguments: input().into(),
    };
    let mut engagement = engagement_with_history(agent, prior);
    let mut samples = Vec::with_capacity(TIMED_CALLS);
    let _context = rt.enter();
    let run = |engagement: &mut Engagement| match driver {
        Driver::PolledInPlace => {
            poll_once_in_place(enforce_call(runtime, agent, engagement, &call))
        }
        Driver::BlockOn => rt.block_on(enforce_call(runtime, agent, engagement, &call)),
    };
    // With `AGENTC_FUTURE_SIZE` set, the size of a call's future is printed: every call
    // writes its future's state, so a larger one costs each call more to set up.
    if std::env::var("AGENTC_FUTURE_SIZE").is_ok() {
        let future = enforce_call(runtime, agent, &mut engagement, &call);
        eprintln!(
            "enforce_call future: {} bytes",
            std::mem::size_of_val(&future)
        );
    }
    for round in 0..WARM_UP_CALLS + TIMED_CALLS {
        let start = Instant::now();
        let outcome = run(&mut engagement);
        let elapsed = start.elapsed();
        assert!(engagement.undo_last_call());
        prepared.give_back(outcome, answers);
        if round >= WARM_UP_CALLS {
            samples.push(elapsed);
        }
    }
    assert_eq!(engagement.call_list().len(), prior);
    let mut latency = summarise(samples);
    // One more call, counted: allocations and reallocations, the tool's own included.
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let outcome = run(&mut engagement);
    COUNTING.store(false, Ordering::Relaxed);
    latency.allocations = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(engagement.undo_last_call());
    prepared.give_back(outcome, answers);
    latency
}

/// The short circuit alone (OAS-L2): the question for one more call and, the answer
/// being no, its record, over a history that alternates two capabilities the way the
/// Thue–Morse sequence does (it never repeats a block three times, so it is the longest
/// history a short circuit of 3 keeps). Each sample starts from the same detector,
/// copied outside the timed section into buffers kept from sample to sample (a fresh
/// allocation would put the page faults of the record's first write into the timing).
fn time_short_circuit(prior: usize) -> Latency {
    let thue_morse = |index: usize| index.count_ones() % 2;
    let calls: Vec<u32> = (0..prior).map(thue_morse).collect();
    let detector = RepetitionDetector::new(3, &calls).unwrap();
    let next = thue_morse(prior);
    let mut copy = detector.clone();
    copy.reserve(1);
    let samples_wanted = TIMED_CALLS / 4;
    let mut samples = Vec::with_capacity(samples_wanted);
    for round in 0..WARM_UP_CALLS / 4 + samples_wanted {
        copy.clone_from(&detector);
        let start = Instant::now();
        let refused = std::hint::black_box(&copy).would_repeat(&calls, next);
        if !refused {
            copy.push(&calls, next);
        }
        let elapsed = start.elapsed();
        assert!(!refused);
        std::hint::black_box(&copy);
        if round >= WARM_UP_CALLS / 4 {
            samples.push(elapsed);
        }
    }
    summarise(samples)
}

/// The work every enforced call must do whatever the checks cost, alone: the input and
/// output schema checks and the two hash-chained audit entries of a completed call (the
/// intended one with its inputs, then the completed one), on the same tool, values and
/// identities as the timed calls. It shows how much of a call's time is left to the
/// checks, the state and the rest.
fn time_required_floor(runtime: &Runtime) -> Latency {
    use agentc_runtime::audit::{AuditAction, AuditDetail, AuditLog, AuditRecord};
    let tool = runtime.tools().get("hr_kb_search").unwrap();
    let log = AuditLog::discard();
    let (input, output) = (input(), output());
    let record = |action, detail| AuditRecord {
        engagement: "e",
        parent: None,
        user: Some("u"),
        agent: "hr_agent",
        action,
        subject: "hr_kb_search",
        detail,
    };
    let mut samples = Vec::with_capacity(TIMED_CALLS);
    for round in 0..WARM_UP_CALLS + TIMED_CALLS {
        let start = Instant::now();
        log.append(record(
            AuditAction::Intended,
            AuditDetail {
                inputs: Some(&input),
                ..AuditDetail::default()
            },
        ))
        .unwrap();
        tool.validate_input(std::hint::black_box(&input)).unwrap();
        tool.validate_output(std::hint::black_box(&output)).unwrap();
        log.append(record(AuditAction::Completed, AuditDetail::default()))
            .unwrap();
        let elapsed = start.elapsed();
        if round >= WARM_UP_CALLS {
            samples.push(elapsed);
        }
    }
    summarise(samples)
}

fn micros(duration: Duration) -> String {
    format!("{:.2} µs", duration.as_secs_f64() * 1e6)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument selects the rows to run by a
    // part of their label, or by the whole label followed by `$` (for profiling one).
    let only = std::env::args()
        .skip(1)
        .find(|argument| !argument.starts_with("--"))
        .unwrap_or_default();
    // For profiling one history length.
    let priors: Vec<usize> = match std::env::var("AGENTC_BENCH_PRIOR") {
        Ok(prior) => vec![prior.parse().unwrap()],
        Err(_) => vec![10, 1_000, 100_000],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let compiled_agent = compiled();
    let (interpreted_agent, tool_specs) = interpreted();
    let prepared = Arc::new(PreparedAnswers::default());
    println!("| what is timed | prior calls | median | p99 | mean | allocations |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rows = [
        (
            "HR call, compiled checks",
            true,
            Answers::PreparedAhead,
            Driver::PolledInPlace,
        ),
        (
            "HR call, compiled checks, tool = mock copying its answer",
            true,
            Answers::CopiedByTheMock,
            Driver::PolledInPlace,
        ),
        (
            "HR call, compiled checks, block_on per call",
            true,
            Answers::PreparedAhead,
            Driver::BlockOn,
        ),
        (
            "HR call, interpreted checks",
            false,
            Answers::PreparedAhead,
            Driver::PolledInPlace,
        ),
    ];
    for (label, compiled_checks, answers, driver) in rows {
        // A selection ending in `$` names one row exactly.
        let selected = match only.strip_suffix('$') {
            Some(exact) => label == exact,
            None => label.contains(only.as_str()),
        };
        if !selected {
            continue;
        }
        let agent = if compiled_checks {
            &compiled_agent
        } else {
            &interpreted_agent
        };
        let runtime = &mut runtime_with_tool(&tool_specs, answers, &prepared);
        for &prior in &priors {
            let latency = time_calls(&rt, driver, runtime, agent, prior, &prepared, answers);
            println!(
                "| {label} | {prior} | {} | {} | {} | {} |",
                micros(latency.median),
                micros(latency.p99),
                micros(latency.mean),
                latency.allocations
            );
        }
    }
    if "required work alone".contains(only.as_str()) {
        let latency = time_required_floor(&runtime_with_tool(
            &tool_specs,
            Answers::PreparedAhead,
            &prepared,
        ));
        println!(
            "| required work alone: two schema checks and two audit appends | any | {} | {} | {} | |",
            micros(latency.median),
            micros(latency.p99),
            micros(latency.mean)
        );
    }
    for &prior in &priors {
        if !"short-circuit".contains(only.as_str()) {
            break;
        }
        let latency = time_short_circuit(prior);
        println!(
            "| short circuit alone: question and record (OAS-L2, n = 3) | {prior} | {} | {} | {} | |",
            micros(latency.median),
            micros(latency.p99),
            micros(latency.mean)
        );
    }
}
