//! Tool backends and the registry that validates every input against the tool's input
//! schema before the call and every output against its output schema after.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use crate::credentials::{Identity, Secret};
use crate::engagement::{Engagement, share_or_copy};
use crate::schema::CompiledSchema;
use crate::spec::ToolSpec;

/// What a tool backend is given beside the input. The secret is for the backend alone.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// The engagement the call belongs to (shared with the engagement, not copied).
    pub engagement: Arc<str>,
    /// The agent whose capability is called: a backend that several agents share (one
    /// tool document) can serve each of them with that agent's own implementation.
    pub agent: Arc<str>,
    /// The identity the call is made with (OAS-C3/C4).
    pub identity: Identity,
    /// The credential for that identity, if any.
    pub credential: Option<Secret>,
    /// The call's idempotency key (AGX-T2), given to a backend that takes one
    /// ([`Rerun::WithIdempotencyKey`]): derived from the engagement and the call's place
    /// in it, so every attempt of one call, on any server, carries the same key.
    pub idempotency_key: Option<String>,
}

impl ToolContext {
    /// The context of a call that `agent` makes in `engagement`: the names are shared
    /// with the engagement rather than copied (the agent's, when the engagement is
    /// that agent's, as it always is when the runtime makes the call).
    pub fn for_call(
        engagement: &Engagement,
        agent: &str,
        identity: Identity,
        credential: Option<Secret>,
    ) -> Self {
        ToolContext {
            engagement: Arc::clone(engagement.shared_id()),
            agent: share_or_copy(Some(engagement.shared_agent()), agent),
            identity,
            credential,
            idempotency_key: None,
        }
    }
}

/// Whether a call that was cut off mid-call (the server running it died between
/// sending it and recording its answer) may be made again by the server that takes
/// the engagement over (AGX-T2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rerun {
    /// No: its effect may have happened, and a second call could repeat it. The
    /// engagement ends with the call's outcome unknown, for a person to resolve.
    Never,
    /// Yes: the call only reads (`effect: read`).
    Read,
    /// Yes, with the same idempotency key, which the tool uses to have the effect once.
    WithIdempotencyKey,
}

/// Why a tool call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The tool is declared but no backend is registered for it.
    #[error("no backend is registered for tool `{0}`")]
    NoBackend(String),
    /// The input does not match the tool's input schema.
    #[error("input does not match the schema of `{tool}`: {detail}")]
    InvalidInput { tool: String, detail: String },
    /// The output does not match the tool's output schema.
    #[error("output does not match the schema of `{tool}`: {detail}")]
    InvalidOutput { tool: String, detail: String },
    /// A tool's schema is not a valid JSON Schema.
    #[error("the {which} schema of `{tool}` is invalid: {detail}")]
    InvalidSchema {
        tool: String,
        which: &'static str,
        detail: String,
    },
    /// The tool did not answer in time.
    #[error("tool `{0}` timed out")]
    Timeout(String),
    /// The tool itself failed.
    #[error("tool failed: {0}")]
    Failed(String),
    /// A tool's binding cannot be used (a malformed URL, an invalid header name).
    #[error("the binding of `{tool}` is invalid: {detail}")]
    InvalidBinding { tool: String, detail: String },
    /// The tool answered with a status outside 2xx.
    #[error("tool `{tool}` answered with HTTP status {status}")]
    Status { tool: String, status: u16 },
    /// The tool's answer passed the size limit, so it was not read.
    #[error("the answer of tool `{tool}` is larger than {limit} bytes")]
    ResponseTooLarge { tool: String, limit: usize },
    /// The tool's auth scheme needs a credential and the provider gave none, so the
    /// call is not sent unauthenticated.
    #[error("tool `{0}` requires a credential and none was provided")]
    MissingCredential(String),
    /// An agent called as a tool did not complete.
    #[error("agent `{agent}` did not complete: {detail}")]
    Agent { agent: String, detail: String },
    /// An agent called as a tool stopped because a call of its own was cut off and its
    /// outcome is unknown (AGX-T2): its caller stops too, rather than let its model call
    /// the agent again and the call be made twice.
    #[error("agent `{agent}` stopped with a call whose outcome is unknown: {detail}")]
    AgentOutcomeUnknown { agent: String, detail: String },
}

/// Something that performs a tool call.
///
/// Every backend can be seen as [`std::any::Any`] ([`BackendAny`], implemented for all
/// of them), so that enforcement recognises the backends it treats specially (a remote
/// agent client, whose call is made at the engagement's wait point) without this module
/// knowing them.
#[async_trait]
pub trait ToolBackend: BackendAny + Send + Sync {
    /// Performs the call; the input has already passed every check.
    async fn invoke(
        &self,
        input: &serde_json::Value,
        context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError>;

    /// Whether a call cut off mid-call may be made again (AGX-T2); by default not,
    /// since nothing says the call has no effect (fail closed).
    fn rerun(&self) -> Rerun {
        Rerun::Never
    }
}

/// A backend as [`std::any::Any`], for downcasting to a concrete backend type.
pub trait BackendAny {
    /// This backend, as `Any`.
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: std::any::Any> BackendAny for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// `backend` as a `T`, when it is one. Taking `&dyn ToolBackend` matters: called on an
/// `Arc<dyn ToolBackend>`, `as_any` would see the `Arc` itself and never match.
pub(crate) fn backend_as<T: std::any::Any>(backend: &dyn ToolBackend) -> Option<&T> {
    backend.as_any().downcast_ref::<T>()
}

type NativeFn =
    dyn Fn(&serde_json::Value, &ToolContext) -> Result<serde_json::Value, ToolError> + Send + Sync;

/// A tool implemented by a Rust function.
#[derive(Clone)]
pub struct NativeTool {
    function: Arc<NativeFn>,
}

impl NativeTool {
    /// Wraps a function.
    pub fn new(
        function: impl Fn(&serde_json::Value, &ToolContext) -> Result<serde_json::Value, ToolError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        NativeTool {
            function: Arc::new(function),
        }
    }
}

impl fmt::Debug for NativeTool {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("NativeTool")
    }
}

#[async_trait]
impl ToolBackend for NativeTool {
    async fn invoke(
        &self,
        input: &serde_json::Value,
        context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        (self.function)(input, context)
    }
}

/// A tool that answers with fixed responses, in turn (the last one repeats), and counts
/// its calls so that tests can prove a refused call never reached it.
#[derive(Debug, Clone)]
pub struct MockTool {
    responses: Arc<Vec<serde_json::Value>>,
    calls: Arc<AtomicUsize>,
}

impl MockTool {
    /// Always answers `response`.
    pub fn new(response: serde_json::Value) -> Self {
        Self::sequence(vec![response])
    }

    /// Answers the responses in order, then repeats the last.
    pub fn sequence(responses: Vec<serde_json::Value>) -> Self {
        MockTool {
            responses: Arc::new(responses),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many times the tool was invoked.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ToolBackend for MockTool {
    async fn invoke(
        &self,
        _input: &serde_json::Value,
        _context: &ToolContext,
    ) -> Result<serde_json::Value, ToolError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        self.responses
            .get(call)
            .or_else(|| self.responses.last())
            .cloned()
            .ok_or_else(|| ToolError::Failed("mock tool has no responses".to_string()))
    }
}

/// One registered tool: its interface, compiled schemas and backend.
pub struct RegisteredTool {
    /// The interface.
    pub spec: ToolSpec,
    input: CompiledSchema,
    output: CompiledSchema,
    backend: Option<Arc<dyn ToolBackend>>,
}

impl fmt::Debug for RegisteredTool {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RegisteredTool")
            .field("name", &self.spec.name)
            .field("has_backend", &self.backend.is_some())
            .finish()
    }
}

impl RegisteredTool {
    /// Checks an input against the input schema.
    pub fn validate_input(&self, input: &serde_json::Value) -> Result<(), ToolError> {
        match self.input.first_error(input) {
            None => Ok(()),
            Some(detail) => Err(ToolError::InvalidInput {
                tool: self.spec.name.clone(),
                detail,
            }),
        }
    }

    /// Checks an output against the output schema.
    pub fn validate_output(&self, output: &serde_json::Value) -> Result<(), ToolError> {
        match self.output.first_error(output) {
            None => Ok(()),
            Some(detail) => Err(ToolError::InvalidOutput {
                tool: self.spec.name.clone(),
                detail,
            }),
        }
    }

    /// The backend, if one is registered. Crate-private: outside the runtime a tool is
    /// reached only through enforcement, never invoked by name (see [`BoundBackend`]).
    pub(crate) fn backend(&self) -> Result<&Arc<dyn ToolBackend>, ToolError> {
        self.backend
            .as_ref()
            .ok_or_else(|| ToolError::NoBackend(self.spec.name.clone()))
    }

    /// The bound backend as an opaque handle, to bind into another registry (a server
    /// hosting a generated crate's agents), if one is bound.
    pub fn bound_backend(&self) -> Option<BoundBackend> {
        self.backend
            .as_ref()
            .map(|backend| BoundBackend(Arc::clone(backend)))
    }
}

/// A backend bound in a registry, as code outside the runtime may hold it: it can be
/// bound into another registry ([`ToolRegistry::bind_bound`]) and compared, never
/// invoked. So no public path leads from a tool's name to a call that skips
/// enforcement (ARCHITECTURE.md: the runtime exposes no call-a-tool-by-name API).
#[derive(Clone)]
pub struct BoundBackend(Arc<dyn ToolBackend>);

impl BoundBackend {
    /// Whether both handles are the same backend.
    pub fn same_as(&self, other: &BoundBackend) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for BoundBackend {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("BoundBackend")
    }
}

/// The tools an engagement may reach, by name; schemas are compiled once here. Every
/// call looks its tool up here, so the names are kept ordered: a few comparisons of
/// short names cost less than hashing the name with the standard library's SipHash.
#[derive(Debug, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, RegisteredTool>,
}

impl ToolRegistry {
    /// Compiles the schemas of every tool; backends are bound with [`ToolRegistry::bind`].
    pub fn new(specs: &[ToolSpec]) -> Result<Self, ToolError> {
        let mut tools = BTreeMap::new();
        for spec in specs {
            let compile = |schema: &serde_json::Value, which: &'static str| {
                CompiledSchema::new(schema).map_err(|detail| ToolError::InvalidSchema {
                    tool: spec.name.clone(),
                    which,
                    detail,
                })
            };
            let input = compile(&spec.input_schema, "input")?;
            let output = compile(&spec.output_schema, "output")?;
            tools.insert(
                spec.name.clone(),
                RegisteredTool {
                    spec: spec.clone(),
                    input,
                    output,
                    backend: None,
                },
            );
        }
        Ok(ToolRegistry { tools })
    }

    /// Binds a backend to a declared tool; an undeclared name is an error, because a
    /// tool without a schema could not be validated.
    pub fn bind(&mut self, name: &str, backend: Arc<dyn ToolBackend>) -> Result<(), ToolError> {
        let tool = self
            .tools
            .get_mut(name)
            .ok_or_else(|| ToolError::NoBackend(name.to_string()))?;
        tool.backend = Some(backend);
        Ok(())
    }

    /// Binds a backend taken from another registry ([`RegisteredTool::bound_backend`]).
    pub fn bind_bound(&mut self, name: &str, backend: BoundBackend) -> Result<(), ToolError> {
        self.bind(name, backend.0)
    }

    /// A tool by name: its interface and schemas (its backend stays inside the runtime).
    pub fn get(&self, name: &str) -> Option<&RegisteredTool> {
        self.tools.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> ToolSpec {
        ToolSpec {
            name: "t".into(),
            description: "d".into(),
            input_schema: json!({"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}),
            output_schema: json!({"type": "object", "required": ["r"]}),
        }
    }

    /// `first_error` accepts on `is_valid` alone, so the two answers of the validator
    /// must agree; this pins that for the schema features where validators have been
    /// known to disagree (references under `not`, `unevaluatedProperties`, combinators,
    /// formats and patterns), for the version of `jsonschema` in the lock file.
    #[test]
    fn is_valid_and_validate_agree_so_a_fast_accept_is_a_real_accept() {
        let cases = [
            (
                json!({"$defs": {"s": {"type": "string"}}, "not": {"$ref": "#/$defs/s"}}),
                vec![json!("x"), json!(1), json!(null)],
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "integer"}},
                    "allOf": [{"properties": {"b": {"type": "string"}}}],
                    "unevaluatedProperties": false}),
                vec![
                    json!({"a": 1, "b": "x"}),
                    json!({"a": 1, "c": 2}),
                    json!({"a": "1"}),
                    json!({}),
                ],
            ),
            (
                json!({"oneOf": [{"type": "integer"}, {"minimum": 2}]}),
                vec![json!(1), json!(3), json!(2.5), json!("x")],
            ),
            (
                json!({"type": "object", "required": ["kb"], "properties": {
                    "kb": {"type": "string", "pattern": "^acme/", "maxLength": 12},
                    "n": {"type": "integer", "minimum": 0, "maximum": 20}},
                    "additionalProperties": false}),
                vec![
                    json!({"kb": "acme/hr"}),
                    json!({"kb": "evil/hr"}),
                    json!({"kb": "acme/very/long/path"}),
                    json!({"kb": "acme/hr", "n": 21}),
                    json!({"kb": "acme/hr", "x": 1}),
                    json!({"n": 1}),
                ],
            ),
            (
                json!({"type": "array", "items": {"type": "string"}, "maxItems": 2,
                    "uniqueItems": true}),
                vec![
                    json!(["a"]),
                    json!(["a", "a"]),
                    json!(["a", "b", "c"]),
                    json!([1]),
                ],
            ),
        ];
        for (schema, values) in cases {
            let validator = jsonschema::validator_for(&schema).unwrap();
            let compiled = CompiledSchema::new(&schema).unwrap();
            let mut outcomes = std::collections::BTreeSet::new();
            for value in values {
                let accepted = compiled.first_error(&value).is_none();
                assert_eq!(
                    accepted,
                    validator.validate(&value).is_ok(),
                    "{schema} {value}"
                );
                assert_eq!(accepted, validator.is_valid(&value), "{schema} {value}");
                outcomes.insert(accepted);
            }
            // Every schema has values on both sides, so both paths are exercised.
            assert_eq!(outcomes.len(), 2, "{schema}");
        }
    }

    #[tokio::test]
    async fn schemas_are_enforced_and_mocks_count_calls() {
        let mut registry = ToolRegistry::new(&[spec()]).unwrap();
        let mock = MockTool::new(json!({"r": 1}));
        registry.bind("t", Arc::new(mock.clone())).unwrap();
        assert!(registry.bind("nope", Arc::new(mock.clone())).is_err());
        let tool = registry.get("t").unwrap();
        assert!(tool.validate_input(&json!({"q": "x"})).is_ok());
        assert!(tool.validate_input(&json!({"q": 1})).is_err());
        assert!(tool.validate_output(&json!({})).is_err());
        let context = ToolContext {
            engagement: "e".into(),
            agent: "a".into(),
            identity: Identity::Anonymous,
            credential: None,
            idempotency_key: None,
        };
        let output = tool
            .backend()
            .unwrap()
            .invoke(&json!({"q": "x"}), &context)
            .await;
        assert_eq!(output.unwrap(), json!({"r": 1}));
        assert_eq!(mock.calls(), 1);
    }
}
