//! Local inference (a crate of its own, so that the runtime does not carry mistral.rs's
//! build): a [`Model`](agentc_runtime::Model) that runs a model from a local path with mistral.rs
//! (cargo feature `mistralrs`), for users who may not send engagement data to a hosted
//! model. Nothing is ever downloaded: the path must hold the whole model, and anything
//! that would make the engine reach the network is refused before loading.
//!
//! Tool calls are valid by construction. When the engagement offers tools, generation is
//! constrained (llguidance, through mistral.rs) to exactly one JSON object:
//! `{"answer": TEXT}` for a reply to the user, or `{"tool": NAME, "arguments": ARGS}`
//! where NAME is one of the agent's declared tools and ARGS matches that tool's input
//! schema (tightened with length and count bounds, see [`ConstraintLimits`], so that
//! generation ends within the token limit). An undeclared tool or an argument object of
//! the wrong shape cannot even be sampled; the runtime's checks still run on every call
//! (defence in depth), and if generation stops at the token limit before the object is
//! complete the turn is a [`ModelError`], never a half-parsed call (fail closed).
//!
//! The path checks, the settings and the constraint are plain Rust and always compiled,
//! so `agentc run --model local:PATH` reports a bad path clearly even in a build without
//! the feature; only [`LocalModel`] itself needs mistral.rs.
//!
//! In order: settings and errors; [`inspect_local_model`] and its bounded folder and
//! GGUF readers; the constraint ([`bounded_schema`], [`tool_call_constraint`]) and its
//! protocol ([`tool_instructions`], [`local_conversation`],
//! [`parse_constrained_answer`]); the feature-gated `engine` ([`LocalModel`], sampler).
//! One file because [`LocalModel`] loads and runs through exactly these checks and this
//! protocol, whose constraint, instructions and parser are one JSON format.

#![forbid(unsafe_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};

use agentc_runtime::{Message, ModelError, ModelTurn, ToolCall, ToolDescription};

/// The cargo feature that compiles [`LocalModel`] in.
pub const LOCAL_MODEL_FEATURE: &str = "mistralrs";

/// The command that builds `agentc` with local inference.
pub const LOCAL_MODEL_BUILD_COMMAND: &str =
    "cargo build --release -p agentc-cli --features mistralrs";

/// Whether this build can run local models.
pub const LOCAL_MODEL_AVAILABLE: bool = cfg!(feature = "mistralrs");

/// The largest metadata file (config, tokenizer configuration) read while checking a path.
const MAX_METADATA_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The most GGUF metadata entries, and the longest GGUF string, read while checking a
/// file, so a hostile file cannot make the check allocate without bound.
const MAX_GGUF_METADATA_ENTRIES: u64 = 4096;
const MAX_GGUF_STRING_BYTES: u64 = 64 * 1024 * 1024;
const MAX_GGUF_ARRAY_ITEMS: u64 = 16 * 1024 * 1024;

/// Why a local model cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalModelError {
    /// Nothing is at the path.
    #[error(
        "no model at `{path}`: the path does not exist (local models are never downloaded; give the folder or .gguf file that holds the model)"
    )]
    NotFound { path: String },
    /// Something is at the path, but not a model this loader reads.
    #[error("`{path}` is not a model: {reason}")]
    NotAModel { path: String, reason: String },
    /// The model is one the runtime refuses to run.
    #[error("`{path}` cannot be run locally: {reason}")]
    Refused { path: String, reason: String },
    /// A generation setting is out of range.
    #[error("invalid local model setting: {0}")]
    InvalidSettings(String),
    /// The engine could not load the model.
    #[error("cannot load the model at `{path}`: {detail}")]
    Load { path: String, detail: String },
    /// This build has no local inference.
    #[error(
        "local models need the `{LOCAL_MODEL_FEATURE}` cargo feature, which this build lacks; rebuild with `{LOCAL_MODEL_BUILD_COMMAND}`"
    )]
    FeatureMissing,
}

/// The two layouts a local model comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalModelFormat {
    /// A folder with `config.json`, `tokenizer.json` and `*.safetensors` weights (and a
    /// chat template in `tokenizer_config.json` or `chat_template.jinja`).
    HuggingFaceFolder,
    /// One GGUF file, with the tokenizer and chat template in its metadata.
    Gguf,
}

/// A checked local model path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModelSource {
    /// The absolute path.
    pub path: PathBuf,
    /// Its layout.
    pub format: LocalModelFormat,
}

/// Generation settings for a local model.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalModelSettings {
    /// Sampling temperature; 0 picks the most likely allowed token every time.
    pub temperature: f64,
    /// The most tokens one turn may generate.
    pub max_tokens: usize,
    /// The seed of the sampler, so that runs with a temperature are reproducible.
    pub seed: u64,
    /// A chat template (a Jinja file, or a `.json` file with a `chat_template` field)
    /// that replaces the model's own.
    pub chat_template: Option<PathBuf>,
    /// Bounds added to the tool schemas in the constraint.
    pub limits: ConstraintLimits,
    /// How long one turn may take.
    pub timeout: Duration,
    /// Run on the CPU even when an accelerator was compiled in.
    pub force_cpu: bool,
}

impl Default for LocalModelSettings {
    fn default() -> Self {
        LocalModelSettings {
            temperature: 0.0,
            max_tokens: 1024,
            seed: 0,
            chat_template: None,
            limits: ConstraintLimits::default(),
            timeout: Duration::from_secs(600),
            force_cpu: false,
        }
    }
}

impl LocalModelSettings {
    /// Checks that the settings are usable.
    pub fn validate(&self) -> Result<(), LocalModelError> {
        if !self.temperature.is_finite() || self.temperature < 0.0 || self.temperature > 100.0 {
            return Err(LocalModelError::InvalidSettings(format!(
                "temperature {} is not between 0 and 100",
                self.temperature
            )));
        }
        if self.max_tokens == 0 {
            return Err(LocalModelError::InvalidSettings(
                "max tokens must be at least 1".into(),
            ));
        }
        if self.limits.max_string_length == 0 || self.limits.max_items == 0 {
            return Err(LocalModelError::InvalidSettings(
                "constraint limits must be at least 1".into(),
            ));
        }
        if let Some(template) = &self.chat_template {
            if !template.is_file() {
                return Err(LocalModelError::InvalidSettings(format!(
                    "chat template `{}` is not a file",
                    template.display()
                )));
            }
            // mistral.rs reads a template override by its extension (and aborts on any
            // other), so the choice is checked here.
            let extension = template
                .extension()
                .and_then(|extension| extension.to_str());
            if !matches!(extension, Some("jinja" | "json")) {
                return Err(LocalModelError::InvalidSettings(format!(
                    "chat template `{}` must be a `.jinja` file or a `.json` file with a `chat_template` field",
                    template.display()
                )));
            }
        }
        Ok(())
    }
}

/// Bounds the constraint adds to the tools' input schemas, so that a model (even one
/// with random weights) cannot keep a string, an array or an object open for ever. They
/// only narrow what may be generated: every value they admit still matches the tool's
/// real schema, which the runtime checks on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConstraintLimits {
    /// The longest string (in characters), including the `answer` text.
    pub max_string_length: usize,
    /// The most items of an array, and properties of a free-form object.
    pub max_items: usize,
}

impl Default for ConstraintLimits {
    fn default() -> Self {
        ConstraintLimits {
            max_string_length: 2048,
            max_items: 32,
        }
    }
}

/// Checks that `path` holds a model this loader reads, without loading it: the files a
/// layout needs are there, GGUF files carry the GGUF magic, and the chat template is not
/// one (OpenAI Harmony) that makes mistral.rs download an encoding at run time.
pub fn inspect_local_model(path: &Path) -> Result<LocalModelSource, LocalModelError> {
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(LocalModelError::NotFound { path: shown });
    }
    let absolute = path
        .canonicalize()
        .map_err(|error| LocalModelError::NotAModel {
            path: shown.clone(),
            reason: format!("cannot resolve the path: {error}"),
        })?;
    let not_a_model = |reason: String| LocalModelError::NotAModel {
        path: shown.clone(),
        reason,
    };
    if absolute.is_dir() {
        let names = folder_file_names(&absolute).map_err(not_a_model)?;
        let mut missing = Vec::new();
        for required in ["config.json", "tokenizer.json"] {
            if !names.iter().any(|name| name == required) {
                missing.push(required.to_string());
            }
        }
        if !names.iter().any(|name| name.ends_with(".safetensors")) {
            missing.push("*.safetensors weights".to_string());
        }
        if !missing.is_empty() {
            let gguf_hint = if names.iter().any(|name| name.ends_with(".gguf")) {
                " (for a GGUF model, give the .gguf file itself)"
            } else {
                ""
            };
            return Err(not_a_model(format!(
                "a Hugging Face-style model folder needs {}, which are missing{gguf_hint}",
                missing.join(", ")
            )));
        }
        let config = read_json_file(&absolute.join("config.json")).map_err(&not_a_model)?;
        if !config.is_object() {
            return Err(not_a_model("`config.json` is not a JSON object".into()));
        }
        read_json_file(&absolute.join("tokenizer.json")).map_err(&not_a_model)?;
        for template in folder_chat_templates(&absolute).map_err(&not_a_model)? {
            refuse_networked_template(&shown, &template)?;
        }
        return Ok(LocalModelSource {
            path: absolute,
            format: LocalModelFormat::HuggingFaceFolder,
        });
    }
    let template = read_gguf_chat_template(&absolute).map_err(not_a_model)?;
    if let Some(template) = template {
        refuse_networked_template(&shown, &template)?;
    }
    Ok(LocalModelSource {
        path: absolute,
        format: LocalModelFormat::Gguf,
    })
}

fn folder_file_names(folder: &Path) -> Result<Vec<String>, String> {
    let entries =
        std::fs::read_dir(folder).map_err(|error| format!("cannot list the folder: {error}"))?;
    Ok(entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .collect())
}

fn read_limited_file(path: &Path) -> Result<Vec<u8>, String> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_default();
    let file =
        std::fs::File::open(path).map_err(|error| format!("cannot read `{name}`: {error}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_METADATA_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read `{name}`: {error}"))?;
    if bytes.len() as u64 > MAX_METADATA_FILE_BYTES {
        return Err(format!(
            "`{name}` is larger than {MAX_METADATA_FILE_BYTES} bytes"
        ));
    }
    Ok(bytes)
}

fn read_json_file(path: &Path) -> Result<Value, String> {
    let bytes = read_limited_file(path)?;
    serde_json::from_slice(&bytes).map_err(|error| {
        format!(
            "`{}` is not JSON: {error}",
            path.file_name()
                .map(|name| name.to_string_lossy().to_string())
                .unwrap_or_default()
        )
    })
}

/// The chat templates a folder carries, wherever mistral.rs would look for one.
fn folder_chat_templates(folder: &Path) -> Result<Vec<String>, String> {
    let mut templates = Vec::new();
    let jinja = folder.join("chat_template.jinja");
    if jinja.is_file() {
        templates.push(String::from_utf8_lossy(&read_limited_file(&jinja)?).into_owned());
    }
    for file in ["tokenizer_config.json", "chat_template.json"] {
        let path = folder.join(file);
        if path.is_file() {
            collect_template_strings(&read_json_file(&path)?, &mut templates);
        }
    }
    Ok(templates)
}

fn collect_template_strings(config: &Value, templates: &mut Vec<String>) {
    match config.get("chat_template") {
        Some(Value::String(template)) => templates.push(template.clone()),
        Some(Value::Array(named)) => {
            for entry in named {
                if let Some(Value::String(template)) = entry.get("template") {
                    templates.push(template.clone());
                }
            }
        }
        _ => {}
    }
}

/// mistral.rs fetches the Harmony encoding over the network the first time it serves a
/// Harmony-format (GPT-OSS) template; local inference never downloads, so such a
/// template is refused up front. The markers are the ones mistral.rs itself looks for.
fn refuse_networked_template(path: &str, template: &str) -> Result<(), LocalModelError> {
    let harmony = template.contains("<|channel|>")
        || (template.contains("<|start|>")
            && template.contains("<|message|>")
            && template.contains("<|end|>"));
    if harmony {
        return Err(LocalModelError::Refused {
            path: path.to_string(),
            reason: "its chat template is in the OpenAI Harmony format, which makes mistral.rs download an encoding at run time; give another template with --chat-template".into(),
        });
    }
    Ok(())
}

/// A bounded reader of the GGUF header: checks the magic and version and returns the
/// `tokenizer.chat_template` metadata value, if any.
fn read_gguf_chat_template(path: &Path) -> Result<Option<String>, String> {
    let file =
        std::fs::File::open(path).map_err(|error| format!("cannot read the file: {error}"))?;
    let mut reader = std::io::BufReader::new(file);
    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .map_err(|_| "the file is too short to be a GGUF model".to_string())?;
    if &magic != b"GGUF" {
        return Err(
            "it is neither a model folder nor a GGUF file (no `GGUF` magic at its start)".into(),
        );
    }
    let version = read_u32(&mut reader)?;
    if !(2..=3).contains(&version) {
        return Err(format!(
            "GGUF version {version} is not supported (2 and 3 are)"
        ));
    }
    let _tensor_count = read_u64(&mut reader)?;
    let metadata_count = read_u64(&mut reader)?;
    if metadata_count > MAX_GGUF_METADATA_ENTRIES {
        return Err(format!(
            "the GGUF header declares {metadata_count} metadata entries, more than {MAX_GGUF_METADATA_ENTRIES}"
        ));
    }
    for _ in 0..metadata_count {
        let key = read_gguf_string(&mut reader)?;
        let value_type = read_u32(&mut reader)?;
        if key == "tokenizer.chat_template" && value_type == 8 {
            return Ok(Some(read_gguf_string(&mut reader)?));
        }
        skip_gguf_value(&mut reader, value_type)?;
    }
    Ok(None)
}

fn read_u32(reader: &mut impl Read) -> Result<u32, String> {
    let mut bytes = [0u8; 4];
    reader
        .read_exact(&mut bytes)
        .map_err(|_| "the GGUF header is truncated".to_string())?;
    Ok(u32::from_le_bytes(bytes))
}

fn read_u64(reader: &mut impl Read) -> Result<u64, String> {
    let mut bytes = [0u8; 8];
    reader
        .read_exact(&mut bytes)
        .map_err(|_| "the GGUF header is truncated".to_string())?;
    Ok(u64::from_le_bytes(bytes))
}

fn read_gguf_string(reader: &mut impl Read) -> Result<String, String> {
    let length = read_u64(reader)?;
    if length > MAX_GGUF_STRING_BYTES {
        return Err(format!("a GGUF string of {length} bytes is too long"));
    }
    let mut bytes = Vec::new();
    reader
        .take(length)
        .read_to_end(&mut bytes)
        .map_err(|_| "the GGUF header is truncated".to_string())?;
    if bytes.len() as u64 != length {
        return Err("the GGUF header is truncated".into());
    }
    String::from_utf8(bytes).map_err(|_| "a GGUF string is not UTF-8".to_string())
}

fn skip_bytes(reader: &mut impl Read, count: u64) -> Result<(), String> {
    let copied = std::io::copy(&mut reader.take(count), &mut std::io::sink())
        .map_err(|_| "the GGUF header is truncated".to_string())?;
    if copied == count {
        Ok(())
    } else {
        Err("the GGUF header is truncated".into())
    }
}

fn skip_gguf_value(reader: &mut impl Read, value_type: u32) -> Result<(), String> {
    match value_type {
        0 | 1 | 7 => skip_bytes(reader, 1),
        2 | 3 => skip_bytes(reader, 2),
        4..=6 => skip_bytes(reader, 4),
        10..=12 => skip_bytes(reader, 8),
        8 => {
            let length = read_u64(reader)?;
            skip_bytes(reader, length)
        }
        9 => {
            let item_type = read_u32(reader)?;
            let count = read_u64(reader)?;
            if count > MAX_GGUF_ARRAY_ITEMS || item_type == 9 {
                return Err("a GGUF metadata array is too large or nested".into());
            }
            for _ in 0..count {
                skip_gguf_value(reader, item_type)?;
            }
            Ok(())
        }
        other => Err(format!("unknown GGUF metadata type {other}")),
    }
}

/// JSON Schema keywords llguidance compiles; any other keyword is left out of the
/// constraint (the runtime's validation of the real schema still applies it).
const CONSTRAINT_KEYWORDS: &[&str] = &[
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "const",
    "enum",
    "type",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "properties",
    "additionalProperties",
    "patternProperties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "$defs",
    "definitions",
    "description",
    "title",
];

/// The largest integer JSON carries exactly (2^53 - 1); unbounded integers in the
/// constraint are bounded by it so their digits cannot run on.
const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// A tool's input schema narrowed for generation: strings get a `maxLength`, arrays a
/// `maxItems`, integers a range, objects with declared properties refuse undeclared
/// ones, free-form objects and untyped values become bounded strings. Everything the
/// narrowed schema admits, the original admits too (keywords llguidance does not compile
/// are dropped and left to the runtime's validation).
pub fn bounded_schema(schema: &Value, limits: &ConstraintLimits) -> Value {
    let bounded_string = || json!({"type": "string", "maxLength": limits.max_string_length});
    let Value::Object(original) = schema else {
        // `true` admits anything: narrow it to a bounded string. `false` stays false.
        return match schema {
            Value::Bool(false) => Value::Bool(false),
            _ => bounded_string(),
        };
    };
    let shaping = [
        "type",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "properties",
        "items",
        "prefixItems",
    ];
    if !shaping.iter().any(|key| original.contains_key(*key)) {
        return bounded_string();
    }
    let mut narrowed = Map::new();
    for (key, value) in original {
        if !CONSTRAINT_KEYWORDS.contains(&key.as_str()) {
            continue;
        }
        let value = match key.as_str() {
            "properties" | "patternProperties" | "$defs" | "definitions" => match value {
                Value::Object(members) => Value::Object(
                    members
                        .iter()
                        .map(|(name, member)| (name.clone(), bounded_schema(member, limits)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => match value {
                Value::Array(members) => Value::Array(
                    members
                        .iter()
                        .map(|member| bounded_schema(member, limits))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" => match value {
                Value::Object(_) => bounded_schema(value, limits),
                other => other.clone(),
            },
            _ => value.clone(),
        };
        narrowed.insert(key.clone(), value);
    }
    let types: Vec<&str> = match original.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let has = |name: &str| types.contains(&name);
    let number_field = |key: &str| original.get(key).and_then(Value::as_u64);
    if has("string") {
        let minimum = number_field("minLength").unwrap_or(0);
        let maximum = number_field("maxLength")
            .unwrap_or(u64::MAX)
            .min(limits.max_string_length as u64)
            .max(minimum);
        narrowed.insert("maxLength".into(), json!(maximum));
    }
    if has("array") {
        let minimum = number_field("minItems").unwrap_or(0);
        let maximum = number_field("maxItems")
            .unwrap_or(u64::MAX)
            .min(limits.max_items as u64)
            .max(minimum);
        narrowed.insert("maxItems".into(), json!(maximum));
        if !original.contains_key("items") {
            narrowed.insert("items".into(), bounded_string());
        }
    }
    if has("integer") {
        if !original.contains_key("minimum") && !original.contains_key("exclusiveMinimum") {
            narrowed.insert("minimum".into(), json!(-MAX_SAFE_INTEGER));
        }
        if !original.contains_key("maximum") && !original.contains_key("exclusiveMaximum") {
            narrowed.insert("maximum".into(), json!(MAX_SAFE_INTEGER));
        }
    }
    if has("object") {
        let declared = original
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|properties| !properties.is_empty());
        match original.get("additionalProperties") {
            // Undeclared properties are not needed to call the tool; refusing them keeps
            // the object finite.
            None | Some(Value::Bool(true)) if declared => {
                narrowed.insert("additionalProperties".into(), Value::Bool(false));
            }
            None | Some(Value::Bool(true)) => {
                narrowed.insert("additionalProperties".into(), bounded_string());
            }
            _ => {}
        }
        let allows_more = !matches!(
            narrowed.get("additionalProperties"),
            Some(Value::Bool(false))
        ) || original.contains_key("patternProperties");
        if allows_more {
            let minimum = number_field("minProperties").unwrap_or(0);
            let maximum = number_field("maxProperties")
                .unwrap_or(u64::MAX)
                .min(limits.max_items as u64)
                .max(minimum);
            narrowed.insert("maxProperties".into(), json!(maximum));
        }
    }
    Value::Object(narrowed)
}

/// The JSON Schema generation is constrained to when `tools` are offered: exactly one
/// object, `{"answer": TEXT}` or `{"tool": NAME, "arguments": ARGS}` for a declared
/// tool, compact (no free whitespace, so nothing can be padded out to the token limit,
/// and no `\u` escapes).
pub fn tool_call_constraint(tools: &[ToolDescription], limits: &ConstraintLimits) -> Value {
    let mut alternatives = vec![json!({
        "type": "object",
        "properties": {
            "answer": {"type": "string", "maxLength": limits.max_string_length}
        },
        "required": ["answer"],
        "additionalProperties": false
    })];
    for tool in tools {
        alternatives.push(json!({
            "type": "object",
            "properties": {
                "tool": {"const": tool.name},
                "arguments": bounded_schema(&tool.input_schema, limits)
            },
            "required": ["tool", "arguments"],
            "additionalProperties": false
        }));
    }
    // `\uXXXX` escapes are left out: every character they could spell but the control
    // characters can be written as itself, and they cost six tokens a character on a
    // byte-level vocabulary.
    json!({
        "x-guidance": {"whitespace_flexible": false, "json_allowed_escapes": "nrbtf\\\""},
        "anyOf": alternatives
    })
}

/// What the model is told, after the agent's intent, when tools are offered: the answer
/// format the constraint enforces and each tool with its input schema.
pub fn tool_instructions(tools: &[ToolDescription]) -> String {
    let mut text = String::from(
        "Reply with exactly one JSON object and nothing else. To answer the user, write \
         {\"answer\": \"...\"}. To call a tool, write {\"tool\": \"NAME\", \"arguments\": {...}} \
         with arguments that match the tool's input schema; its result comes back in a \
         `tool` message. The tools:",
    );
    for tool in tools {
        text.push_str(&format!(
            "\n- {}: {} Input schema: {}",
            tool.name,
            tool.description.trim(),
            serde_json::to_string(&tool.input_schema).unwrap_or_default()
        ));
    }
    text
}

/// Reads a constrained answer. The constraint makes any other shape impossible, so one
/// here means the engine did not apply it: the turn is refused rather than guessed at.
pub fn parse_constrained_answer(
    text: &str,
    tools: &[ToolDescription],
    call_id: &str,
) -> Result<ModelTurn, ModelError> {
    let invalid = |detail: &str| {
        ModelError::InvalidResponse(format!(
            "the local model's output is not the constrained JSON ({detail})"
        ))
    };
    let value: Value = serde_json::from_str(text.trim()).map_err(|_| invalid("not JSON"))?;
    let Value::Object(object) = value else {
        return Err(invalid("not an object"));
    };
    match (object.get("answer"), object.get("tool"), object.len()) {
        (Some(Value::String(answer)), None, 1) => Ok(ModelTurn::Text(answer.clone())),
        (None, Some(Value::String(name)), 2) => {
            let arguments = object
                .get("arguments")
                .cloned()
                .ok_or_else(|| invalid("a tool call without arguments"))?;
            if !tools.iter().any(|tool| &tool.name == name) {
                return Err(invalid("a tool that was not offered"));
            }
            Ok(ModelTurn::ToolCalls(vec![ToolCall {
                id: Some(call_id.to_string()),
                name: name.clone(),
                arguments: std::sync::Arc::new(arguments),
            }]))
        }
        _ => Err(invalid("neither an answer nor one tool call")),
    }
}

/// The roles of the messages a local model is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalRole {
    /// Instructions.
    System,
    /// The user.
    User,
    /// The model's earlier turns.
    Assistant,
    /// A tool's result.
    Tool,
}

/// The conversation as the chat template receives it. With tools on offer, the answer
/// format and the tools are appended to the first system message (or open the
/// conversation when there is none), and earlier turns are shown in the constrained
/// format, so the model sees one consistent protocol.
pub fn local_conversation(
    messages: &[Message],
    tools: &[ToolDescription],
) -> Vec<(LocalRole, String)> {
    let mut instructions = (!tools.is_empty()).then(|| tool_instructions(tools));
    let mut conversation = Vec::with_capacity(messages.len() + 1);
    if let Some(text) = &instructions
        && !matches!(messages.first(), Some(Message::System { .. }))
    {
        conversation.push((LocalRole::System, text.clone()));
        instructions = None;
    }
    for message in messages {
        conversation.push(match message {
            Message::System { content } => match instructions.take() {
                Some(text) => (LocalRole::System, format!("{content}\n\n{text}")),
                None => (LocalRole::System, content.clone()),
            },
            Message::User { content } => (LocalRole::User, content.clone()),
            Message::Assistant { content } if tools.is_empty() => {
                (LocalRole::Assistant, content.clone())
            }
            Message::Assistant { content } => {
                (LocalRole::Assistant, json!({"answer": content}).to_string())
            }
            Message::AssistantToolCalls { calls } => (
                LocalRole::Assistant,
                calls
                    .iter()
                    .map(tool_call_as_text)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Message::Tool { name, content, .. } => (
                LocalRole::Tool,
                json!({"tool": name, "result": content}).to_string(),
            ),
        });
    }
    conversation
}

/// The text an assistant's tool call is shown as in later turns: the same JSON the
/// constraint produced, so the model sees its own format.
pub fn tool_call_as_text(call: &ToolCall) -> String {
    json!({"tool": call.name, "arguments": call.arguments}).to_string()
}

#[cfg(feature = "mistralrs")]
pub use engine::LocalModel;

#[cfg(feature = "mistralrs")]
mod engine {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use mistralrs::{
        Constraint, CustomLogitsProcessor, GgufModelBuilder, RequestBuilder, SamplingParams,
        Tensor, TextMessageRole, TextModelBuilder, TokenSource,
    };

    use super::*;
    use agentc_runtime::Model;

    /// A model run in process by mistral.rs from a local path.
    pub struct LocalModel {
        engine: mistralrs::Model,
        source: LocalModelSource,
        settings: LocalModelSettings,
        random: Arc<Mutex<SplitMix64>>,
        next_call: AtomicU64,
    }

    impl std::fmt::Debug for LocalModel {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter
                .debug_struct("LocalModel")
                .field("source", &self.source)
                .field("settings", &self.settings)
                .finish_non_exhaustive()
        }
    }

    impl LocalModel {
        /// Loads the model at `path` (a model folder or a `.gguf` file). The path is
        /// checked first, so a missing model is an error here and never a download.
        pub async fn load(
            path: &Path,
            settings: LocalModelSettings,
        ) -> Result<Self, LocalModelError> {
            settings.validate()?;
            let source = inspect_local_model(path)?;
            let shown = path.display().to_string();
            let load_error = |error| load_failure(&shown, error);
            if let Some(template) = &settings.chat_template {
                let text = read_limited_file(template).map_err(|reason| {
                    LocalModelError::InvalidSettings(format!("chat template: {reason}"))
                })?;
                let text = String::from_utf8_lossy(&text);
                let mut templates = vec![text.to_string()];
                if let Ok(config) = serde_json::from_str::<Value>(&text) {
                    collect_template_strings(&config, &mut templates);
                }
                for template in templates {
                    refuse_networked_template(&shown, &template)?;
                }
            }
            let template = settings
                .chat_template
                .as_ref()
                .map(|template| template.display().to_string());
            let engine = match source.format {
                LocalModelFormat::HuggingFaceFolder => {
                    // The builder is given the absolute path of a folder that exists, so
                    // mistral.rs reads every file locally; no token is ever read.
                    let mut builder = TextModelBuilder::new(source.path.display().to_string())
                        .with_token_source(TokenSource::None)
                        .with_max_num_seqs(1);
                    if let Some(template) = &template {
                        builder = if template.ends_with(".jinja") {
                            builder.with_jinja_explicit(template.clone())
                        } else {
                            builder.with_chat_template(template)
                        };
                    }
                    if settings.force_cpu {
                        builder = builder.with_force_cpu();
                    }
                    // The engine loads in a task of its own, so that a panic inside it
                    // is an error here and not the end of the process.
                    tokio::spawn(async move { builder.build().await })
                        .await
                        .map_err(|error| load_failure(&shown, engine_panicked(error)))?
                        .map_err(load_error)?
                }
                LocalModelFormat::Gguf => {
                    let folder = source
                        .path
                        .parent()
                        .map(|parent| parent.display().to_string())
                        .unwrap_or_default();
                    let file = source
                        .path
                        .file_name()
                        .map(|name| name.to_string_lossy().to_string())
                        .unwrap_or_default();
                    let mut builder = GgufModelBuilder::new(folder, vec![file])
                        .with_token_source(TokenSource::None)
                        .with_max_num_seqs(1);
                    if let Some(template) = &template {
                        builder = if template.ends_with(".jinja") {
                            builder.with_jinja_explicit(template.clone())
                        } else {
                            builder.with_chat_template(template)
                        };
                    }
                    if settings.force_cpu {
                        builder = builder.with_force_cpu();
                    }
                    // The engine loads in a task of its own, so that a panic inside it
                    // is an error here and not the end of the process.
                    tokio::spawn(async move { builder.build().await })
                        .await
                        .map_err(|error| load_failure(&shown, engine_panicked(error)))?
                        .map_err(load_error)?
                }
            };
            Ok(LocalModel {
                engine,
                source,
                random: Arc::new(Mutex::new(SplitMix64(settings.seed))),
                settings,
                next_call: AtomicU64::new(1),
            })
        }

        /// The checked path and layout.
        pub fn source(&self) -> &LocalModelSource {
            &self.source
        }

        /// The generation settings.
        pub fn settings(&self) -> &LocalModelSettings {
            &self.settings
        }

        /// Generates one turn and reports how long the first token and the whole turn
        /// took, for benchmarks.
        pub async fn complete_timed(
            &self,
            messages: &[Message],
            tools: &[ToolDescription],
        ) -> Result<(ModelTurn, GenerationTiming), ModelError> {
            let request = self.request(messages, tools);
            let response = tokio::time::timeout(
                self.settings.timeout,
                self.engine.send_chat_request(request),
            )
            .await
            .map_err(|_| ModelError::Timeout)?
            .map_err(|error| ModelError::Failed(format!("local model: {error}")))?;
            let timing = GenerationTiming {
                prompt_tokens: response.usage.prompt_tokens,
                completion_tokens: response.usage.completion_tokens,
                prompt_seconds: f64::from(response.usage.total_prompt_time_sec),
                completion_seconds: f64::from(response.usage.total_completion_time_sec),
            };
            let choice = response.choices.first().ok_or_else(|| {
                ModelError::InvalidResponse("the local model gave no choice".into())
            })?;
            let text = choice.message.content.clone().unwrap_or_default();
            if choice.finish_reason == "length" {
                // Fail closed: an answer cut off at the token limit is never read as a
                // call, however much of it looks like one.
                return Err(ModelError::Failed(format!(
                    "the local model reached its token limit ({}) before finishing its turn; raise --max-tokens",
                    self.settings.max_tokens
                )));
            }
            if tools.is_empty() {
                return Ok((ModelTurn::Text(text), timing));
            }
            let call_id = format!("call_{}", self.next_call.fetch_add(1, Ordering::Relaxed));
            Ok((parse_constrained_answer(&text, tools, &call_id)?, timing))
        }

        /// Streams one turn and measures it from the caller's side: the time until the
        /// first generated token arrives, and the time and token count of the whole
        /// turn. For benchmarks; the turn's text is not interpreted.
        pub async fn measure_turn(
            &self,
            messages: &[Message],
            tools: &[ToolDescription],
        ) -> Result<StreamTiming, ModelError> {
            let started = std::time::Instant::now();
            let request = self.request(messages, tools);
            let failed =
                |error: &dyn std::fmt::Display| ModelError::Failed(format!("local model: {error}"));
            let mut stream = self
                .engine
                .stream_chat_request(request)
                .await
                .map_err(|error| failed(&error))?;
            let mut first_token = None;
            let mut chunks = 0usize;
            let mut reported_tokens = None;
            loop {
                let next = tokio::time::timeout(self.settings.timeout, stream.next())
                    .await
                    .map_err(|_| ModelError::Timeout)?;
                match next {
                    Some(mistralrs::Response::Chunk(chunk)) => {
                        first_token.get_or_insert_with(|| started.elapsed());
                        chunks += 1;
                        if let Some(usage) = &chunk.usage {
                            reported_tokens = Some(usage.completion_tokens);
                        }
                        if chunk
                            .choices
                            .iter()
                            .any(|choice| choice.finish_reason.is_some())
                        {
                            break;
                        }
                    }
                    Some(mistralrs::Response::InternalError(error))
                    | Some(mistralrs::Response::ValidationError(error)) => {
                        return Err(failed(&error));
                    }
                    Some(mistralrs::Response::ModelError(error, _)) => {
                        return Err(failed(&error));
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            Ok(StreamTiming {
                time_to_first_token: first_token.unwrap_or_else(|| started.elapsed()),
                total: started.elapsed(),
                completion_tokens: reported_tokens.unwrap_or(chunks),
            })
        }

        fn request(&self, messages: &[Message], tools: &[ToolDescription]) -> RequestBuilder {
            let mut request = RequestBuilder::new();
            for (role, content) in local_conversation(messages, tools) {
                let role = match role {
                    LocalRole::System => TextMessageRole::System,
                    LocalRole::User => TextMessageRole::User,
                    LocalRole::Assistant => TextMessageRole::Assistant,
                    LocalRole::Tool => TextMessageRole::Tool,
                };
                request = request.add_message(role, content);
            }
            let mut sampling = SamplingParams::deterministic();
            sampling.max_len = Some(self.settings.max_tokens);
            request = request.set_sampling(sampling);
            if self.settings.temperature > 0.0 {
                request = request.add_logits_processor(Arc::new(GumbelSampler {
                    temperature: self.settings.temperature,
                    random: self.random.clone(),
                }));
            }
            if !tools.is_empty() {
                request = request.set_constraint(Constraint::JsonSchema(tool_call_constraint(
                    tools,
                    &self.settings.limits,
                )));
            }
            request
        }
    }

    fn engine_panicked(error: tokio::task::JoinError) -> String {
        if error.is_panic() {
            "mistral.rs stopped on an internal error while loading it".to_string()
        } else {
            format!("loading was cancelled: {error}")
        }
    }

    fn load_failure(path: &str, error: impl std::fmt::Display) -> LocalModelError {
        LocalModelError::Load {
            path: path.to_string(),
            detail: format!("{error:#}"),
        }
    }

    /// One streamed turn, timed by the caller.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct StreamTiming {
        /// From sending the request to receiving the first generated token.
        pub time_to_first_token: std::time::Duration,
        /// From sending the request to the end of the turn.
        pub total: std::time::Duration,
        /// Tokens generated.
        pub completion_tokens: usize,
    }

    /// Timings of one generated turn.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct GenerationTiming {
        /// Tokens in the prompt.
        pub prompt_tokens: usize,
        /// Tokens generated.
        pub completion_tokens: usize,
        /// Time to process the prompt, which is the time to the first generated token.
        pub prompt_seconds: f64,
        /// Time to generate the completion after the first token.
        pub completion_seconds: f64,
    }

    #[async_trait]
    impl Model for LocalModel {
        async fn complete(
            &self,
            messages: &[Message],
            tools: &[ToolDescription],
        ) -> Result<ModelTurn, ModelError> {
            self.complete_timed(messages, tools)
                .await
                .map(|(turn, _)| turn)
        }
    }

    /// Seeded sampling at a temperature. mistral.rs seeds its own sampler with a fixed
    /// value per engine, so the temperature is applied here instead, by the Gumbel-max
    /// trick: adding independent Gumbel noise to logits divided by the temperature and
    /// taking the largest (the engine then samples greedily) draws a token from the
    /// softmax at that temperature. The engine masks disallowed tokens and samples again
    /// with fresh noise when the first pick breaks the constraint, which is rejection
    /// sampling, so the draw follows the distribution restricted to allowed tokens.
    struct GumbelSampler {
        temperature: f64,
        random: Arc<Mutex<SplitMix64>>,
    }

    impl CustomLogitsProcessor for GumbelSampler {
        fn apply(&self, logits: &Tensor, _context: &[u32]) -> mistralrs::Result<Tensor> {
            let values: Vec<f32> = logits.to_dtype(mistralrs::DType::F32)?.to_vec1()?;
            // A panic elsewhere cannot leave the generator's state invalid, so a
            // poisoned lock is taken over rather than failing the turn.
            let mut random = self
                .random
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let noisy: Vec<f32> = values
                .iter()
                .map(|logit| {
                    let uniform = random.next_open_unit();
                    let gumbel = -(-uniform.ln()).ln();
                    (f64::from(*logit) / self.temperature + gumbel) as f32
                })
                .collect();
            let length = noisy.len();
            Tensor::from_vec(noisy, length, logits.device())?.to_dtype(logits.dtype())
        }
    }
}

#[cfg(feature = "mistralrs")]
pub use engine::{GenerationTiming, StreamTiming};

/// SplitMix64, the sampler's seeded generator.
#[cfg_attr(not(feature = "mistralrs"), allow(dead_code))]
struct SplitMix64(u64);

#[cfg_attr(not(feature = "mistralrs"), allow(dead_code))]
impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// Uniform in the open interval (0, 1), so its logarithm is finite.
    fn next_open_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kb_tool() -> ToolDescription {
        ToolDescription {
            name: "hr_kb_search".into(),
            description: "Searches the knowledge base.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "knowledge_base_id": {"type": "string", "description": "Collection path."},
                    "query": {"type": "string", "format": "regex", "maxLength": 500}
                },
                "required": ["knowledge_base_id", "query"],
                "additionalProperties": false
            }),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let directory =
            std::env::temp_dir().join(format!("agentc-local-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        directory
    }

    #[test]
    fn bounded_schemas_add_bounds_and_never_widen_declared_ones() {
        let limits = ConstraintLimits {
            max_string_length: 40,
            max_items: 3,
        };
        let bounded = bounded_schema(&kb_tool().input_schema, &limits);
        assert_eq!(
            bounded["properties"]["knowledge_base_id"]["maxLength"],
            json!(40)
        );
        // A tighter declared bound is kept; a looser one is narrowed.
        let tight = bounded_schema(&json!({"type": "string", "maxLength": 5}), &limits);
        assert_eq!(tight["maxLength"], json!(5));
        assert_eq!(bounded["properties"]["query"]["maxLength"], json!(40));
        // Keywords llguidance does not compile are left to the runtime's validation.
        assert!(bounded["properties"]["query"].get("format").is_none());
        assert_eq!(bounded["additionalProperties"], json!(false));
        assert_eq!(bounded["required"], json!(["knowledge_base_id", "query"]));

        let array = bounded_schema(
            &json!({"type": "array", "items": {"type": "integer"}, "minItems": 5}),
            &limits,
        );
        // minItems above the cap wins, so the schema stays satisfiable.
        assert_eq!(array["maxItems"], json!(5));
        assert_eq!(array["items"]["maximum"], json!(MAX_SAFE_INTEGER));
        assert_eq!(array["items"]["minimum"], json!(-MAX_SAFE_INTEGER));

        let free = bounded_schema(&json!({"type": "object"}), &limits);
        assert_eq!(free["additionalProperties"]["type"], json!("string"));
        assert_eq!(free["maxProperties"], json!(3));
        assert_eq!(bounded_schema(&json!({}), &limits)["type"], json!("string"));
        assert_eq!(
            bounded_schema(&json!(true), &limits)["maxLength"],
            json!(40)
        );
        assert_eq!(bounded_schema(&json!(false), &limits), json!(false));
        let nested = bounded_schema(
            &json!({"anyOf": [{"type": "string"}, {"type": "null"}]}),
            &limits,
        );
        assert_eq!(nested["anyOf"][0]["maxLength"], json!(40));
        assert_eq!(nested["anyOf"][1], json!({"type": "null"}));
    }

    #[test]
    fn the_constraint_admits_an_answer_or_a_call_of_each_offered_tool_only() {
        let limits = ConstraintLimits::default();
        let constraint = tool_call_constraint(&[kb_tool()], &limits);
        assert_eq!(
            constraint["x-guidance"]["whitespace_flexible"],
            json!(false)
        );
        let alternatives = constraint["anyOf"].as_array().unwrap();
        assert_eq!(alternatives.len(), 2);
        assert_eq!(alternatives[0]["required"], json!(["answer"]));
        assert_eq!(
            alternatives[1]["properties"]["tool"],
            json!({"const": "hr_kb_search"})
        );
        assert!(
            alternatives
                .iter()
                .all(|a| a["additionalProperties"] == json!(false))
        );
        // With no tools the only alternative is an answer.
        assert_eq!(
            tool_call_constraint(&[], &limits)["anyOf"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn constrained_answers_parse_into_turns_and_anything_else_is_refused() {
        let tools = [kb_tool()];
        let turn = parse_constrained_answer(
            r#"{"tool":"hr_kb_search","arguments":{"knowledge_base_id":"acme/hr/a","query":"q"}}"#,
            &tools,
            "call_1",
        )
        .unwrap();
        let ModelTurn::ToolCalls(calls) = turn else {
            panic!("expected a call")
        };
        assert_eq!(calls[0].name, "hr_kb_search");
        assert_eq!(calls[0].id.as_deref(), Some("call_1"));
        assert_eq!(calls[0].arguments["knowledge_base_id"], "acme/hr/a");
        assert_eq!(
            parse_constrained_answer(r#"{"answer":"25 days"}"#, &tools, "c").unwrap(),
            ModelTurn::Text("25 days".into())
        );
        for refused in [
            r#"{"tool":"send_email","arguments":{}}"#,
            r#"{"tool":"hr_kb_search"}"#,
            r#"{"answer":"x","tool":"hr_kb_search","arguments":{}}"#,
            r#"{"answer":"x","extra":1}"#,
            r#"{"tool":"hr_kb_search","arguments":{"knowledge_base_id":"a""#,
            "plain text",
            "[]",
        ] {
            assert!(
                matches!(
                    parse_constrained_answer(refused, &tools, "c"),
                    Err(ModelError::InvalidResponse(_))
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn the_conversation_carries_the_protocol_and_earlier_turns_in_its_format() {
        let tools = [kb_tool()];
        let call = ToolCall {
            id: Some("call_1".into()),
            name: "hr_kb_search".into(),
            arguments: json!({"knowledge_base_id": "acme/hr/a", "query": "leave"}).into(),
        };
        let messages = [
            Message::System {
                content: "You answer HR questions.".into(),
            },
            Message::User {
                content: "Leave?".into(),
            },
            Message::AssistantToolCalls {
                calls: vec![call.clone()],
            },
            Message::Tool {
                call_id: Some("call_1".into()),
                name: "hr_kb_search".into(),
                content: json!({"results": []}),
            },
            Message::Assistant {
                content: "None found.".into(),
            },
        ];
        let conversation = local_conversation(&messages, &tools);
        assert_eq!(conversation.len(), 5);
        assert_eq!(conversation[0].0, LocalRole::System);
        assert!(
            conversation[0]
                .1
                .starts_with("You answer HR questions.\n\n")
        );
        assert!(conversation[0].1.contains("- hr_kb_search: Searches"));
        assert_eq!(conversation[2].1, tool_call_as_text(&call));
        assert_eq!(
            serde_json::from_str::<Value>(&conversation[3].1).unwrap(),
            json!({"tool": "hr_kb_search", "result": {"results": []}})
        );
        assert_eq!(conversation[4].1, r#"{"answer":"None found."}"#);
        // Without tools the conversation is passed through as it is.
        let plain = local_conversation(&messages[..2], &[]);
        assert_eq!(plain[0].1, "You answer HR questions.");
        // Without a system message the instructions open the conversation.
        let opened = local_conversation(&messages[1..2], &tools);
        assert_eq!(opened[0].0, LocalRole::System);
        assert_eq!(opened[1], (LocalRole::User, "Leave?".to_string()));
    }

    #[test]
    fn missing_paths_and_folders_that_are_not_models_are_reported_clearly() {
        let missing = std::env::temp_dir().join("agentc-no-such-model-here");
        let error = inspect_local_model(&missing).unwrap_err();
        assert!(matches!(error, LocalModelError::NotFound { .. }));
        assert!(error.to_string().contains("never downloaded"));

        let folder = scratch("incomplete");
        std::fs::write(folder.join("config.json"), "{}").unwrap();
        let error = inspect_local_model(&folder).unwrap_err().to_string();
        assert!(error.contains("tokenizer.json"), "{error}");
        assert!(error.contains("*.safetensors"), "{error}");

        std::fs::write(folder.join("tokenizer.json"), "{}").unwrap();
        std::fs::write(folder.join("model.safetensors"), "").unwrap();
        std::fs::write(folder.join("config.json"), "not json").unwrap();
        let error = inspect_local_model(&folder).unwrap_err().to_string();
        assert!(error.contains("`config.json` is not JSON"), "{error}");

        std::fs::write(folder.join("config.json"), "{}").unwrap();
        let source = inspect_local_model(&folder).unwrap();
        assert_eq!(source.format, LocalModelFormat::HuggingFaceFolder);
        assert!(source.path.is_absolute());

        let text_file = folder.join("notes.txt");
        std::fs::write(&text_file, "hello").unwrap();
        let error = inspect_local_model(&text_file).unwrap_err().to_string();
        assert!(
            error.contains("neither a model folder nor a GGUF file"),
            "{error}"
        );
        std::fs::remove_dir_all(&folder).unwrap();
    }

    fn gguf_with_template(template: &str) -> Vec<u8> {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&2u64.to_le_bytes());
        let string = |bytes: &mut Vec<u8>, text: &str| {
            bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
        };
        string(&mut bytes, "llama.block_count");
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&2u32.to_le_bytes());
        string(&mut bytes, "tokenizer.chat_template");
        bytes.extend_from_slice(&8u32.to_le_bytes());
        string(&mut bytes, template);
        bytes
    }

    #[test]
    fn gguf_files_are_checked_and_templates_that_would_download_are_refused() {
        let folder = scratch("gguf");
        let plain = folder.join("plain.gguf");
        std::fs::write(&plain, gguf_with_template("{{ messages }}")).unwrap();
        assert_eq!(
            inspect_local_model(&plain).unwrap().format,
            LocalModelFormat::Gguf
        );
        let harmony = folder.join("harmony.gguf");
        std::fs::write(&harmony, gguf_with_template("<|start|>x<|channel|>y")).unwrap();
        assert!(matches!(
            inspect_local_model(&harmony),
            Err(LocalModelError::Refused { .. })
        ));
        let truncated = folder.join("truncated.gguf");
        let mut bytes = gguf_with_template("t");
        bytes.truncate(30);
        std::fs::write(&truncated, bytes).unwrap();
        assert!(
            inspect_local_model(&truncated)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        // A folder whose tokenizer configuration carries a Harmony template is refused too.
        let model = folder.join("model");
        std::fs::create_dir_all(&model).unwrap();
        for file in ["config.json", "tokenizer.json"] {
            std::fs::write(model.join(file), "{}").unwrap();
        }
        std::fs::write(model.join("model.safetensors"), "").unwrap();
        std::fs::write(
            model.join("tokenizer_config.json"),
            json!({"chat_template": "<|start|>{{m}}<|message|>x<|end|>"}).to_string(),
        )
        .unwrap();
        assert!(matches!(
            inspect_local_model(&model),
            Err(LocalModelError::Refused { .. })
        ));
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let valid = LocalModelSettings::default();
        assert!(valid.validate().is_ok());
        for invalid in [
            LocalModelSettings {
                temperature: -1.0,
                ..valid.clone()
            },
            LocalModelSettings {
                temperature: f64::NAN,
                ..valid.clone()
            },
            LocalModelSettings {
                max_tokens: 0,
                ..valid.clone()
            },
            LocalModelSettings {
                chat_template: Some(PathBuf::from("/no/such/template.jinja")),
                ..valid.clone()
            },
        ] {
            assert!(invalid.validate().is_err(), "{invalid:?}");
        }
        // A template override is read by its extension, so another one is refused.
        let folder = scratch("template");
        let text_template = folder.join("template.txt");
        std::fs::write(&text_template, "{{ messages }}").unwrap();
        let error = LocalModelSettings {
            chat_template: Some(text_template),
            ..valid.clone()
        }
        .validate()
        .unwrap_err();
        assert!(error.to_string().contains(".jinja"), "{error}");
        let jinja_template = folder.join("template.jinja");
        std::fs::write(&jinja_template, "{{ messages }}").unwrap();
        assert!(
            LocalModelSettings {
                chat_template: Some(jinja_template),
                ..valid.clone()
            }
            .validate()
            .is_ok()
        );
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[test]
    fn the_sampler_generator_is_seeded_and_stays_inside_the_open_unit_interval() {
        let mut first = SplitMix64(42);
        let mut second = SplitMix64(42);
        let draws: Vec<f64> = (0..1000).map(|_| first.next_open_unit()).collect();
        assert!(draws.iter().all(|u| *u > 0.0 && *u < 1.0));
        assert_eq!(draws[..3], [0, 1, 2].map(|_| second.next_open_unit()));
        assert_ne!(SplitMix64(43).next_u64(), SplitMix64(42).next_u64());
    }
}
