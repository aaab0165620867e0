//! Throughput of `agentc check` over a generated corpus of realistic specs, with peak
//! memory, against PyYAML + a pydantic model of the agent document (how the Python
//! reference server validates). Run with `cargo xtask bench` or
//! `cargo bench -p agentc-compiler --bench check_corpus`; figures go to docs/BENCHMARKS.md.

// Test and benchmark code: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentc_compiler::{CheckOptions, SourceInput, check_set};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const SPECS: usize = 2_000;

/// One spec file: an agent with restrictions, guardrails and exposes, and its tools.
fn spec(index: usize) -> String {
    format!(
        r#"kind: openagentspec:v1/agent
name: hr_agent_{index}
description: Answers questions about the HR policies of team {index}.
intent: You answer employees' HR questions using only the HR knowledge base.
owner: hr-platform@acme.example
capabilities:
  kb_search_{index}:
    user_identity: true
    input_restriction:
      assertion: recent.kb_search_{index}.inputs.knowledge_base_id.startsWith("acme/hr/") && size(recent.kb_search_{index}.inputs.query) < 500
    output_restriction:
      assertion: size(recent.kb_search_{index}.outputs.results) <= 20
  ticket_create_{index}:
    user_identity: false
    static_identity: hr_ticket_bot
    input_restriction:
      require_review: user
      assertion: history._total < 50 && !(recent.ticket_create_{index}.inputs.priority in ["p0"])
guardrails:
  input:
    tool_name: injection_scan_{index}
    assertion: "!flagged && score < 0.8"
exposes:
  searches: size(history.kb_search_{index})
  tools_used: history._list
lifespan:
  retain_memory: false
  short_circuit: 3
---
kind: openagentspec:v1/tool
name: kb_search_{index}
description: Searches a knowledge base.
input:
  type: object
  properties:
    knowledge_base_id: {{type: string}}
    query: {{type: string, maxLength: 1000}}
  required: [knowledge_base_id, query]
output:
  type: object
  properties:
    results:
      type: array
      items:
        type: object
        properties:
          title: {{type: string}}
          snippet: {{type: string}}
  required: [results]
binding:
  http: {{method: POST, url: "https://kb.acme.example/search/{index}", timeout_ms: 5000}}
---
kind: openagentspec:v1/tool
name: ticket_create_{index}
description: Opens an HR ticket.
input:
  type: object
  properties:
    title: {{type: string}}
    priority: {{type: string, enum: [p0, p1, p2, p3]}}
  required: [title, priority]
output:
  type: object
  properties:
    ticket_id: {{type: string}}
  required: [ticket_id]
binding:
  http: {{method: POST, url: "https://tickets.acme.example/new"}}
auth: {{scheme: bearer}}
---
kind: openagentspec:v1/tool
name: injection_scan_{index}
description: Scores text for prompt injection.
input:
  type: object
  properties:
    text: {{type: string}}
  required: [text]
output:
  type: object
  properties:
    flagged: {{type: boolean}}
    score: {{type: number}}
  required: [flagged, score]
binding:
  native: {{function: "guards::injection_scan"}}
"#
    )
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let corpus_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-corpus");
    let _ = std::fs::create_dir_all(&corpus_dir);
    let inputs: Vec<SourceInput> = (0..SPECS)
        .map(|index| {
            let text = spec(index);
            let _ = std::fs::write(corpus_dir.join(format!("spec_{index:04}.yaml")), &text);
            SourceInput {
                name: format!("spec_{index:04}.yaml"),
                bytes: text.into_bytes(),
            }
        })
        .collect();
    let bytes: usize = inputs.iter().map(|input| input.bytes.len()).sum();
    let rss_before = peak_rss_kib().unwrap_or(0);
    let options = CheckOptions::default();
    // Warm up once, then take the best of three passes over the corpus.
    let mut best = f64::MAX;
    for pass in 0..4 {
        let started = Instant::now();
        let mut errors = 0;
        for input in &inputs {
            let set = check_set(std::slice::from_ref(input), &options);
            errors += set.error_count();
        }
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(errors, 0, "the benchmark corpus must be valid");
        if pass > 0 {
            best = best.min(seconds);
        }
    }
    let specs_per_second = SPECS as f64 / best;
    println!(
        "agentc check: {SPECS} specs ({} KiB) in {:.3}s: {:.0} specs/s, {:.1} µs/spec",
        bytes / 1024,
        best,
        specs_per_second,
        best * 1e6 / SPECS as f64
    );
    println!(
        "peak RSS: {} KiB (before checking: {rss_before} KiB)",
        peak_rss_kib().unwrap_or(0)
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pyyaml_pydantic.py");
    match Command::new("python3")
        .arg(&script)
        .arg(&corpus_dir)
        .output()
    {
        Ok(output) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout);
            print!("{text}");
            for line in text.lines() {
                if let Some(rate) = line
                    .split("specs/s=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|rate| rate.parse::<f64>().ok())
                {
                    let loader = line.split_whitespace().next().unwrap_or("python");
                    println!("ratio agentc / {loader}: {:.1}x", specs_per_second / rate);
                }
            }
        }
        Ok(output) => println!(
            "python comparison failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => println!("python comparison skipped: {error}"),
    }
}
