//! A tiny Llama-style language model with random weights, written in the formats the
//! local-model loader reads: a Hugging Face-style folder (`config.json`,
//! `tokenizer.json`, `tokenizer_config.json` with a chat template, `model.safetensors`)
//! and a single GGUF file. Tests and benchmarks use it so that local inference is
//! exercised end to end without downloading anything, ever.
//!
//! The tokenizer is a real byte-level BPE tokenizer (the GPT-2 byte alphabet, no merges):
//! every byte string is representable, which grammar-constrained decoding needs to be
//! able to spell any JSON value. The weights come from a seeded generator, so the same
//! shape and seed always give byte-identical files.
//!
//! This file depends only on `std` and `serde_json`: the runtime's tests and benchmarks
//! include it with `#[path]`, and `cargo xtask tiny-model DIR` calls it.

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value, json};

/// The special tokens, after the 256 byte tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The token that closes each message in the chat template.
pub const END_OF_TURN: &str = "<|im_end|>";

/// The end-of-sequence token. It is `<|endoftext|>` because that is the token llguidance
/// recognises by name as the end of sequence and forces once a constrained answer is
/// complete; mistral.rs stops on it and, since the template uses it, on `<|im_end|>`.
pub const END_OF_SEQUENCE: &str = "<|endoftext|>";

/// A ChatML chat template: the system, user, assistant and tool messages each in a
/// `<|im_start|>role ... <|im_end|>` block, then the start of the assistant's turn.
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// The shape of a Llama-style decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    /// The width of the residual stream.
    pub hidden_size: usize,
    /// The width of each feed-forward block.
    pub intermediate_size: usize,
    /// How many decoder layers.
    pub layers: usize,
    /// Attention heads (queries).
    pub attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than the query heads).
    pub key_value_heads: usize,
    /// The longest sequence the model accepts, prompt and completion together.
    pub max_positions: usize,
}

impl ModelShape {
    /// The tiny shape tests and CI use: two layers, 64 wide, about 0.14 M parameters.
    pub const TINY: ModelShape = ModelShape {
        hidden_size: 64,
        intermediate_size: 128,
        layers: 2,
        attention_heads: 4,
        key_value_heads: 2,
        max_positions: 8192,
    };

    /// The vocabulary: 256 byte tokens and the special tokens.
    pub fn vocab_size(&self) -> usize {
        256 + SPECIAL_TOKENS.len()
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.attention_heads
    }

    fn key_value_width(&self) -> usize {
        self.head_dim() * self.key_value_heads
    }

    fn check(&self) -> Result<(), String> {
        let valid = self.hidden_size > 0
            && self.intermediate_size > 0
            && self.layers > 0
            && self.attention_heads > 0
            && self.key_value_heads > 0
            && self.hidden_size.is_multiple_of(self.attention_heads)
            && self.attention_heads.is_multiple_of(self.key_value_heads)
            && self.head_dim().is_multiple_of(2);
        if valid {
            Ok(())
        } else {
            Err(format!(
                "invalid model shape {self:?}: heads must divide the width, key/value heads the heads, and the head width must be even"
            ))
        }
    }
}

/// One weight tensor, with its Hugging Face name, its GGUF name and its shape (rows,
/// then columns, as PyTorch writes it).
struct TensorPlan {
    hugging_face_name: String,
    gguf_name: String,
    shape: Vec<usize>,
    /// Norm weights start at one; everything else is random around zero.
    is_norm: bool,
}

fn tensor_plan(shape: &ModelShape) -> Vec<TensorPlan> {
    let hidden = shape.hidden_size;
    let vocab = shape.vocab_size();
    let kv = shape.key_value_width();
    let ffn = shape.intermediate_size;
    let mut plan = vec![TensorPlan {
        hugging_face_name: "model.embed_tokens.weight".into(),
        gguf_name: "token_embd.weight".into(),
        shape: vec![vocab, hidden],
        is_norm: false,
    }];
    for layer in 0..shape.layers {
        let hf = |part: &str| format!("model.layers.{layer}.{part}.weight");
        let gguf = |part: &str| format!("blk.{layer}.{part}.weight");
        let mut add = |hf_name: String, gguf_name: String, dims: Vec<usize>, is_norm: bool| {
            plan.push(TensorPlan {
                hugging_face_name: hf_name,
                gguf_name,
                shape: dims,
                is_norm,
            })
        };
        add(hf("input_layernorm"), gguf("attn_norm"), vec![hidden], true);
        add(
            hf("self_attn.q_proj"),
            gguf("attn_q"),
            vec![hidden, hidden],
            false,
        );
        add(
            hf("self_attn.k_proj"),
            gguf("attn_k"),
            vec![kv, hidden],
            false,
        );
        add(
            hf("self_attn.v_proj"),
            gguf("attn_v"),
            vec![kv, hidden],
            false,
        );
        add(
            hf("self_attn.o_proj"),
            gguf("attn_output"),
            vec![hidden, hidden],
            false,
        );
        add(
            hf("post_attention_layernorm"),
            gguf("ffn_norm"),
            vec![hidden],
            true,
        );
        add(
            hf("mlp.gate_proj"),
            gguf("ffn_gate"),
            vec![ffn, hidden],
            false,
        );
        add(hf("mlp.up_proj"), gguf("ffn_up"), vec![ffn, hidden], false);
        add(
            hf("mlp.down_proj"),
            gguf("ffn_down"),
            vec![hidden, ffn],
            false,
        );
    }
    plan.push(TensorPlan {
        hugging_face_name: "model.norm.weight".into(),
        gguf_name: "output_norm.weight".into(),
        shape: vec![hidden],
        is_norm: true,
    });
    plan.push(TensorPlan {
        hugging_face_name: "lm_head.weight".into(),
        gguf_name: "output.weight".into(),
        shape: vec![vocab, hidden],
        is_norm: false,
    });
    plan
}

/// SplitMix64: a small, well-mixed, seeded generator, so weights are reproducible
/// without a random-number crate.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn next_symmetric(&mut self) -> f32 {
        // The top 24 bits give an exactly representable f32 in [0, 1).
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        unit * 2.0 - 1.0
    }
}

/// The tensor's values as little-endian f32 bytes. Random weights are scaled by the
/// inverse square root of the input width, so activations stay of order one through the
/// layers and the logits are neither flat nor saturated.
fn tensor_bytes(plan: &TensorPlan, random: &mut SplitMix64) -> Vec<u8> {
    let count: usize = plan.shape.iter().product();
    let mut bytes = Vec::with_capacity(count * 4);
    if plan.is_norm {
        for _ in 0..count {
            bytes.extend_from_slice(&1.0f32.to_le_bytes());
        }
        return bytes;
    }
    let fan_in = plan.shape.last().copied().unwrap_or(1).max(1) as f32;
    let scale = 1.0 / fan_in.sqrt();
    for _ in 0..count {
        bytes.extend_from_slice(&(random.next_symmetric() * scale).to_le_bytes());
    }
    bytes
}

/// GPT-2's byte-to-character table: printable bytes stand for themselves, the others
/// are shifted above U+0100, so every token of a byte-level BPE is a visible string.
fn byte_level_alphabet() -> Vec<char> {
    let printable = |byte: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&byte)
            || (0xA1..=0xAC).contains(&byte)
            || (0xAE..=0xFF).contains(&byte)
    };
    let mut shifted = 0u32;
    (0u32..256)
        .map(|byte| {
            if printable(byte) {
                char::from_u32(byte).unwrap_or('?')
            } else {
                let character = char::from_u32(256 + shifted).unwrap_or('?');
                shifted += 1;
                character
            }
        })
        .collect()
}

/// The token strings, by id: the 256 byte tokens, then the special tokens.
fn token_strings() -> Vec<String> {
    byte_level_alphabet()
        .into_iter()
        .map(String::from)
        .chain(SPECIAL_TOKENS.iter().map(|token| token.to_string()))
        .collect()
}

fn special_token_id(token: &str) -> usize {
    256 + SPECIAL_TOKENS
        .iter()
        .position(|special| *special == token)
        .unwrap_or(0)
}

/// `tokenizer.json` in the Hugging Face `tokenizers` format.
fn tokenizer_json() -> Value {
    let mut vocab = Map::new();
    for (id, token) in token_strings().into_iter().enumerate().take(256) {
        vocab.insert(token, json!(id));
    }
    let added_tokens: Vec<Value> = SPECIAL_TOKENS
        .iter()
        .map(|token| {
            json!({
                "id": special_token_id(token),
                "content": token,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": true
            })
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": null,
        "pre_tokenizer": {
            "type": "ByteLevel",
            "add_prefix_space": false,
            "trim_offsets": true,
            "use_regex": true
        },
        "post_processor": null,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": false,
            "trim_offsets": true,
            "use_regex": true
        },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": []
        }
    })
}

fn config_json(shape: &ModelShape) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.attention_heads,
        "num_key_value_heads": shape.key_value_heads,
        "vocab_size": shape.vocab_size(),
        "max_position_embeddings": shape.max_positions,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
        "bos_token_id": special_token_id(END_OF_SEQUENCE),
        "eos_token_id": special_token_id(END_OF_SEQUENCE),
        "torch_dtype": "float32"
    })
}

fn tokenizer_config_json() -> Value {
    json!({
        "add_bos_token": false,
        "add_eos_token": false,
        "bos_token": "<|endoftext|>",
        "eos_token": END_OF_SEQUENCE,
        "pad_token": "<|endoftext|>",
        "unk_token": null,
        "model_max_length": 8192,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE
    })
}

fn write_json(path: &Path, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| format!("cannot serialise {}: {error}", path.display()))?;
    std::fs::write(path, text + "\n")
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// Writes `model.safetensors`: an 8-byte little-endian header length, a JSON header with
/// each tensor's dtype, shape and byte range (names sorted, so the file is
/// deterministic), padded with spaces to 8 bytes, then the tensors' bytes.
fn write_safetensors(path: &Path, shape: &ModelShape, seed: u64) -> Result<(), String> {
    let mut plan = tensor_plan(shape);
    plan.sort_by(|a, b| a.hugging_face_name.cmp(&b.hugging_face_name));
    let mut random = SplitMix64(seed);
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut data = Vec::new();
    for tensor in &plan {
        let bytes = tensor_bytes(tensor, &mut random);
        let begin = data.len();
        data.extend_from_slice(&bytes);
        header.insert(
            tensor.hugging_face_name.clone(),
            json!({"dtype": "F32", "shape": tensor.shape, "data_offsets": [begin, data.len()]}),
        );
    }
    let mut header_text = serde_json::to_string(&Value::Object(header))
        .map_err(|error| format!("cannot serialise the safetensors header: {error}"))?;
    while !header_text.len().is_multiple_of(8) {
        header_text.push(' ');
    }
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path)
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?,
    );
    let write = |file: &mut std::io::BufWriter<std::fs::File>, bytes: &[u8]| {
        file.write_all(bytes)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    };
    write(&mut file, &(header_text.len() as u64).to_le_bytes())?;
    write(&mut file, header_text.as_bytes())?;
    write(&mut file, &data)?;
    file.flush()
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// Writes the Hugging Face-style folder into `directory` (created if needed).
pub fn write_hugging_face_folder(
    directory: &Path,
    shape: &ModelShape,
    seed: u64,
) -> Result<(), String> {
    shape.check()?;
    std::fs::create_dir_all(directory)
        .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
    write_json(&directory.join("config.json"), &config_json(shape))?;
    write_json(&directory.join("tokenizer.json"), &tokenizer_json())?;
    write_json(
        &directory.join("tokenizer_config.json"),
        &tokenizer_config_json(),
    )?;
    write_json(
        &directory.join("generation_config.json"),
        &json!({
            "bos_token_id": special_token_id(END_OF_SEQUENCE),
            "eos_token_id": [special_token_id(END_OF_SEQUENCE), special_token_id(END_OF_TURN)]
        }),
    )?;
    write_safetensors(&directory.join("model.safetensors"), shape, seed)
}

/// GGUF value types (the subset written here).
const GGUF_TYPE_UINT32: u32 = 4;
const GGUF_TYPE_INT32: u32 = 5;
const GGUF_TYPE_FLOAT32: u32 = 6;
const GGUF_TYPE_STRING: u32 = 8;
const GGUF_TYPE_ARRAY: u32 = 9;
const GGUF_TYPE_UINT64: u32 = 10;
const GGML_TYPE_F32: u32 = 0;
const GGUF_ALIGNMENT: usize = 32;

enum GgufValue {
    Uint32(u32),
    Uint64(u64),
    Float32(f32),
    String(String),
    Strings(Vec<String>),
    Int32s(Vec<i32>),
}

fn gguf_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn gguf_value(out: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::Uint32(number) => {
            out.extend_from_slice(&GGUF_TYPE_UINT32.to_le_bytes());
            out.extend_from_slice(&number.to_le_bytes());
        }
        GgufValue::Uint64(number) => {
            out.extend_from_slice(&GGUF_TYPE_UINT64.to_le_bytes());
            out.extend_from_slice(&number.to_le_bytes());
        }
        GgufValue::Float32(number) => {
            out.extend_from_slice(&GGUF_TYPE_FLOAT32.to_le_bytes());
            out.extend_from_slice(&number.to_le_bytes());
        }
        GgufValue::String(text) => {
            out.extend_from_slice(&GGUF_TYPE_STRING.to_le_bytes());
            gguf_string(out, text);
        }
        GgufValue::Strings(texts) => {
            out.extend_from_slice(&GGUF_TYPE_ARRAY.to_le_bytes());
            out.extend_from_slice(&GGUF_TYPE_STRING.to_le_bytes());
            out.extend_from_slice(&(texts.len() as u64).to_le_bytes());
            for text in texts {
                gguf_string(out, text);
            }
        }
        GgufValue::Int32s(numbers) => {
            out.extend_from_slice(&GGUF_TYPE_ARRAY.to_le_bytes());
            out.extend_from_slice(&GGUF_TYPE_INT32.to_le_bytes());
            out.extend_from_slice(&(numbers.len() as u64).to_le_bytes());
            for number in numbers {
                out.extend_from_slice(&number.to_le_bytes());
            }
        }
    }
}

fn pad_to_alignment(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(GGUF_ALIGNMENT) {
        out.push(0);
    }
}

/// Writes the same model as one GGUF (version 3) file with f32 tensors, the tokenizer
/// (`gpt2` byte-level BPE) and the chat template in its metadata.
pub fn write_gguf(path: &Path, shape: &ModelShape, seed: u64) -> Result<(), String> {
    shape.check()?;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
    }
    let tokens = token_strings();
    // Byte tokens are normal (1); the special tokens are control tokens (3).
    let token_types: Vec<i32> = (0..tokens.len())
        .map(|id| if id < 256 { 1 } else { 3 })
        .collect();
    let metadata: Vec<(&str, GgufValue)> = vec![
        ("general.architecture", GgufValue::String("llama".into())),
        (
            "general.name",
            GgufValue::String("agentc tiny random".into()),
        ),
        (
            "general.alignment",
            GgufValue::Uint32(GGUF_ALIGNMENT as u32),
        ),
        (
            "llama.context_length",
            GgufValue::Uint64(shape.max_positions as u64),
        ),
        (
            "llama.embedding_length",
            GgufValue::Uint32(shape.hidden_size as u32),
        ),
        ("llama.block_count", GgufValue::Uint32(shape.layers as u32)),
        (
            "llama.feed_forward_length",
            GgufValue::Uint32(shape.intermediate_size as u32),
        ),
        (
            "llama.attention.head_count",
            GgufValue::Uint32(shape.attention_heads as u32),
        ),
        (
            "llama.attention.head_count_kv",
            GgufValue::Uint32(shape.key_value_heads as u32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            GgufValue::Float32(1e-5),
        ),
        (
            "llama.rope.dimension_count",
            GgufValue::Uint32(shape.head_dim() as u32),
        ),
        ("llama.rope.freq_base", GgufValue::Float32(10000.0)),
        ("tokenizer.ggml.model", GgufValue::String("gpt2".into())),
        ("tokenizer.ggml.tokens", GgufValue::Strings(tokens)),
        ("tokenizer.ggml.token_type", GgufValue::Int32s(token_types)),
        ("tokenizer.ggml.merges", GgufValue::Strings(Vec::new())),
        (
            "tokenizer.ggml.bos_token_id",
            GgufValue::Uint32(special_token_id("<|endoftext|>") as u32),
        ),
        (
            "tokenizer.ggml.eos_token_id",
            GgufValue::Uint32(special_token_id(END_OF_SEQUENCE) as u32),
        ),
        (
            "tokenizer.chat_template",
            GgufValue::String(CHAT_TEMPLATE.into()),
        ),
    ];
    let plan = tensor_plan(shape);
    let mut random = SplitMix64(seed);
    let mut header = Vec::new();
    header.extend_from_slice(b"GGUF");
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&(plan.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in &metadata {
        gguf_string(&mut header, key);
        gguf_value(&mut header, value);
    }
    let mut data = Vec::new();
    for tensor in &plan {
        gguf_string(&mut header, &tensor.gguf_name);
        header.extend_from_slice(&(tensor.shape.len() as u32).to_le_bytes());
        // GGML lists dimensions innermost first, the reverse of PyTorch.
        for dimension in tensor.shape.iter().rev() {
            header.extend_from_slice(&(*dimension as u64).to_le_bytes());
        }
        header.extend_from_slice(&GGML_TYPE_F32.to_le_bytes());
        header.extend_from_slice(&(data.len() as u64).to_le_bytes());
        data.extend_from_slice(&tensor_bytes(tensor, &mut random));
        pad_to_alignment(&mut data);
    }
    pad_to_alignment(&mut header);
    header.extend_from_slice(&data);
    std::fs::write(path, header)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_a_bijection_onto_visible_characters() {
        let alphabet = byte_level_alphabet();
        let distinct: std::collections::BTreeSet<char> = alphabet.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert!(
            alphabet
                .iter()
                .all(|c| !c.is_whitespace() && !c.is_control())
        );
        assert_eq!(alphabet[usize::from(b'{')], '{');
        // The space byte is the first shifted one after the 33 control bytes: U+0120.
        assert_eq!(alphabet[usize::from(b' ')], '\u{120}');
    }

    #[test]
    fn the_same_seed_writes_identical_files_and_another_seed_does_not() {
        let root = std::env::temp_dir().join(format!("agentc-tiny-model-{}", std::process::id()));
        let write = |name: &str, seed: u64| {
            let directory = root.join(name);
            write_hugging_face_folder(&directory, &ModelShape::TINY, seed).unwrap();
            write_gguf(&directory.join("model.gguf"), &ModelShape::TINY, seed).unwrap();
            directory
        };
        let first = write("a", 7);
        let second = write("b", 7);
        let third = write("c", 8);
        for file in [
            "model.safetensors",
            "model.gguf",
            "tokenizer.json",
            "config.json",
        ] {
            let bytes = |directory: &Path| std::fs::read(directory.join(file)).unwrap();
            assert_eq!(bytes(&first), bytes(&second), "{file}");
        }
        let weights =
            |directory: &Path| std::fs::read(directory.join("model.safetensors")).unwrap();
        assert_ne!(weights(&first), weights(&third));
        let safetensors = weights(&first);
        let header_length = u64::from_le_bytes(safetensors[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&safetensors[8..8 + header_length]).unwrap();
        let parameters: usize = tensor_plan(&ModelShape::TINY)
            .iter()
            .map(|tensor| tensor.shape.iter().product::<usize>())
            .sum();
        assert_eq!(safetensors.len(), 8 + header_length + parameters * 4);
        assert_eq!(header["lm_head.weight"]["shape"], json!([259, 64]));
        let gguf = std::fs::read(first.join("model.gguf")).unwrap();
        assert_eq!(&gguf[..4], b"GGUF");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn shapes_that_cannot_form_attention_heads_are_refused() {
        let shape = ModelShape {
            attention_heads: 5,
            ..ModelShape::TINY
        };
        let directory = std::env::temp_dir().join("agentc-tiny-model-never-written");
        assert!(write_hugging_face_folder(&directory, &shape, 1).is_err());
        assert!(!directory.join("model.safetensors").exists());
    }
}
