//! Local inference speed on the tiny random-weight model (feature `mistralrs`): time to
//! first token and decode tokens per second, for free text and for a constrained HR tool
//! call. Run with
//! `cargo bench -p agentc-local-model --features mistralrs --bench local_model`.
//! The figures are recorded in docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../xtask/src/tiny_model.rs"]
#[allow(dead_code, unused_imports)]
mod tiny_model;

use std::time::Duration;

use agentc_local_model::LocalModel;
use agentc_local_model::{ConstraintLimits, LocalModelSettings, StreamTiming};
use agentc_runtime::{Message, ToolDescription};
use serde_json::json;

const ROUNDS: usize = 15;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn report(label: &str, timings: &[StreamTiming]) {
    let first_token_ms: Vec<f64> = timings
        .iter()
        .map(|timing| timing.time_to_first_token.as_secs_f64() * 1000.0)
        .collect();
    let decode_rate: Vec<f64> = timings
        .iter()
        .filter(|timing| timing.completion_tokens > 1)
        .map(|timing| {
            let decode = timing.total.saturating_sub(timing.time_to_first_token);
            (timing.completion_tokens - 1) as f64 / decode.as_secs_f64().max(1e-9)
        })
        .collect();
    let tokens: Vec<f64> = timings
        .iter()
        .map(|timing| timing.completion_tokens as f64)
        .collect();
    println!(
        "{label}: time to first token {:.1} ms (median of {}), decode {:.0} tokens/s (median), {:.0} tokens per turn (median)",
        median(first_token_ms),
        timings.len(),
        median(decode_rate),
        median(tokens),
    );
}

fn main() {
    let tokio_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let directory = std::env::temp_dir().join(format!("agentc-bench-tiny-{}", std::process::id()));
    tiny_model::write_hugging_face_folder(&directory, &tiny_model::ModelShape::TINY, 7).unwrap();
    tokio_runtime.block_on(async {
        let settings = LocalModelSettings {
            temperature: 1.0,
            max_tokens: 128,
            seed: 3,
            limits: ConstraintLimits {
                max_string_length: 48,
                max_items: 4,
            },
            force_cpu: true,
            timeout: Duration::from_secs(120),
            ..LocalModelSettings::default()
        };
        let load_started = std::time::Instant::now();
        let model = LocalModel::load(&directory, settings).await.unwrap();
        println!(
            "tiny model ({} parameters): loaded in {:.0} ms",
            tiny_parameter_count(),
            load_started.elapsed().as_secs_f64() * 1000.0
        );
        let messages = [
            Message::System {
                content:
                    "You answer HR questions for Acme employees. Search only the HR knowledge base."
                        .into(),
            },
            Message::User {
                content: "How much parental leave do I get?".into(),
            },
        ];
        let tools = [ToolDescription {
            name: "hr_kb_search".into(),
            description: "Searches one collection of Acme's knowledge base.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "knowledge_base_id": {"type": "string"},
                    "query": {"type": "string"}
                },
                "required": ["knowledge_base_id", "query"],
                "additionalProperties": false
            }),
        }];
        // One warm-up turn of each kind, not measured.
        model.measure_turn(&messages, &[]).await.unwrap();
        model.measure_turn(&messages, &tools).await.unwrap();
        let mut free_text = Vec::new();
        let mut constrained = Vec::new();
        for _ in 0..ROUNDS {
            free_text.push(model.measure_turn(&messages, &[]).await.unwrap());
            constrained.push(model.measure_turn(&messages, &tools).await.unwrap());
        }
        report("free text (up to 128 tokens)", &free_text);
        report("constrained tool call or answer", &constrained);
    });
    std::fs::remove_dir_all(&directory).unwrap();
}

fn tiny_parameter_count() -> usize {
    let shape = tiny_model::ModelShape::TINY;
    let hidden = shape.hidden_size;
    let key_value = hidden / shape.attention_heads * shape.key_value_heads;
    let per_layer = 2 * hidden
        + 2 * hidden * hidden
        + 2 * key_value * hidden
        + 3 * hidden * shape.intermediate_size;
    2 * shape.vocab_size() * hidden + shape.layers * per_layer + hidden
}
