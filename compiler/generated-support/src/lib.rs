//! The trait-independent part of every crate `agentc build` generates (and of every
//! module `#[agentc_macros::agent]` expands): the request and reply of an agent used as
//! a capability, the identity views a tool method is given, the errors, the outcome of
//! an engagement, and the helpers that bridge the runtime's dynamic values and compiled
//! CEL. Generated code re-exports these items, so they are named through the generated
//! crate; what must stay sealed per set (`Agent`, `Capability`, `AllowedFor`) and what
//! names it (`Hosted`, `Session`) is generated in each crate instead.

#![forbid(unsafe_code)]

mod value_de;

pub use value_de::{ValueDeError, ValueDeserializer};

/// What an agent used as a capability is given (Reading: an agent as a tool).
#[derive(
    Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema,
)]
pub struct AgentRequest {
    /// The request, in natural language.
    pub text: ::std::string::String,
}

/// What an agent used as a capability answers: its text and its exposes (OAS-X1).
#[derive(
    Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema,
)]
pub struct AgentReply<E> {
    /// The agent's text.
    pub text: ::std::string::String,
    /// The agent's exposes.
    #[serde(flatten)]
    pub exposes: E,
}

/// The exposes of a remote agent, whose document was not part of the build.
pub type RemoteExposes = ::std::collections::BTreeMap<::std::string::String, ::serde_json::Value>;

/// A call made with the engaging user's identity (OAS-C3), or with the capability's
/// static identity when the engagement has no user (OAS-C4).
#[derive(Debug, Clone, Copy)]
pub struct UserIdentityCall<'a> {
    context: &'a ::agentc_runtime::ToolContext,
}

impl<'a> UserIdentityCall<'a> {
    /// The view of a call's context that a tool method called with the user's identity
    /// is given (generated code builds it for each call).
    pub fn new(context: &'a ::agentc_runtime::ToolContext) -> Self {
        UserIdentityCall { context }
    }

    /// The engagement the call belongs to.
    pub fn engagement(&self) -> &'a str {
        &self.context.engagement
    }

    /// The engaging user, when the call is made with their identity.
    pub fn user(&self) -> ::std::option::Option<&'a str> {
        match &self.context.identity {
            ::agentc_runtime::Identity::User(user) => Some(user),
            _ => None,
        }
    }

    /// The identity the call is made with.
    pub fn identity(&self) -> &'a ::agentc_runtime::Identity {
        &self.context.identity
    }

    /// The credential for that identity, for the request alone.
    pub fn credential(&self) -> ::std::option::Option<&'a ::agentc_runtime::Secret> {
        self.context.credential.as_ref()
    }
}

/// A call made with a static credential set, never with the user's identity
/// (`user_identity: false`, OAS-C3, OAS-C4).
#[derive(Debug, Clone, Copy)]
pub struct StaticIdentityCall<'a> {
    context: &'a ::agentc_runtime::ToolContext,
}

impl<'a> StaticIdentityCall<'a> {
    /// The view of a call's context that a tool method called with a static identity is
    /// given (generated code builds it for each call).
    pub fn new(context: &'a ::agentc_runtime::ToolContext) -> Self {
        StaticIdentityCall { context }
    }

    /// The engagement the call belongs to.
    pub fn engagement(&self) -> &'a str {
        &self.context.engagement
    }

    /// The static credential set the call is made with.
    pub fn static_identity(&self) -> ::std::option::Option<&'a str> {
        match &self.context.identity {
            ::agentc_runtime::Identity::Static(name) => Some(name),
            _ => None,
        }
    }

    /// The credential of that set, for the request alone.
    pub fn credential(&self) -> ::std::option::Option<&'a ::agentc_runtime::Secret> {
        self.context.credential.as_ref()
    }
}

/// Why an agent could not be set up.
#[derive(Debug)]
pub enum SetupError {
    /// A tool's embedded JSON Schema did not parse.
    Schema {
        /// The tool.
        tool: &'static str,
        /// Why.
        detail: ::std::string::String,
    },
    /// An interpreted CEL expression did not parse.
    Cel(::agentc_runtime::CheckError),
    /// The tool registry refused a schema or a binding.
    Tool(::agentc_runtime::ToolError),
}

impl ::std::fmt::Display for SetupError {
    fn fmt(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
        match self {
            SetupError::Schema { tool, detail } => {
                write!(formatter, "the schema of `{tool}` does not parse: {detail}")
            }
            SetupError::Cel(error) => write!(formatter, "{error}"),
            SetupError::Tool(error) => write!(formatter, "{error}"),
        }
    }
}

impl ::std::error::Error for SetupError {}

/// Why the model's tool call could not be parsed into an agent's closed set of calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseCallError {
    /// The name is not a capability of the agent.
    Undeclared {
        /// The agent.
        agent: &'static str,
        /// The name the model used.
        name: ::std::string::String,
    },
    /// The arguments do not fit the capability's input type.
    BadArguments {
        /// The capability.
        capability: &'static str,
        /// Why.
        detail: ::std::string::String,
    },
}

impl ::std::fmt::Display for ParseCallError {
    fn fmt(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
        match self {
            ParseCallError::Undeclared { agent, name } => {
                write!(
                    formatter,
                    "agent `{agent}` does not declare capability `{name}`"
                )
            }
            ParseCallError::BadArguments { capability, detail } => {
                write!(formatter, "invalid arguments for `{capability}`: {detail}")
            }
        }
    }
}

impl ::std::error::Error for ParseCallError {}

/// Why a typed call through a generated crate's `Session` gave no output.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The runtime refused the call (a restriction, a review, the short circuit...).
    Refused(::agentc_runtime::Refusal),
    /// The input could not be serialized.
    Input(::std::string::String),
    /// The output did not fit the capability's output type.
    Output(::std::string::String),
}

impl ::std::fmt::Display for CallError {
    fn fmt(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
        match self {
            CallError::Refused(refusal) => {
                write!(
                    formatter,
                    "call to `{}` refused: {}",
                    refusal.tool, refusal.reason
                )
            }
            CallError::Input(detail) => write!(formatter, "invalid input: {detail}"),
            CallError::Output(detail) => write!(formatter, "invalid output: {detail}"),
        }
    }
}

impl ::std::error::Error for CallError {}

/// What the caller of an engagement gets: the text and the typed exposes, and nothing
/// else of the engagement (OAS-X1).
#[derive(Debug, Clone)]
pub struct Outcome<E> {
    /// The engagement's identifier.
    pub engagement_id: ::std::string::String,
    /// Completed or failed, with the reason.
    pub status: ::agentc_runtime::EngagementStatus,
    /// The agent's final text, when it completed.
    pub text: ::std::option::Option<::std::string::String>,
    /// The exposes, when it completed.
    pub exposes: ::std::option::Option<E>,
    record: ::serde_json::Value,
}

impl<E: ::serde::de::DeserializeOwned> Outcome<E> {
    /// The caller's view of an engagement the runtime ran: the exposes are typed when
    /// the engagement completed, and the full record is kept for operators only.
    pub fn from_engagement(outcome: ::agentc_runtime::EngagementOutcome) -> Self {
        let completed = matches!(
            outcome.status,
            ::agentc_runtime::EngagementStatus::Completed
        );
        let exposes = if completed {
            ::serde_json::from_value(::serde_json::Value::Object(outcome.exposes)).ok()
        } else {
            None
        };
        Outcome {
            engagement_id: outcome.engagement_id,
            status: outcome.status,
            text: outcome.text,
            exposes,
            record: outcome.engagement,
        }
    }
}

impl<E> Outcome<E> {
    /// Whether the engagement completed.
    pub fn completed(&self) -> bool {
        matches!(self.status, ::agentc_runtime::EngagementStatus::Completed)
    }

    /// The full engagement (calls, refusals, status), for operators and audits; never
    /// for a remote caller, which sees only the text and the exposes.
    pub fn operator_record(&self) -> &::serde_json::Value {
        &self.record
    }
}

/// Bridges between the runtime's dynamic values and the typed structs compiled CEL reads.
/// Which helpers a set uses depends on its spec (a set whose CEL all compiles never
/// interprets).
pub mod support {
    use ::std::sync::Arc;

    use ::agentc_runtime::{Check, CheckError, VariableSource};

    /// Builds the typed root of a compiled check from the variables it reads; the roots
    /// it does not read are taken from `skeleton`, because the compiled function never
    /// looks at them. With `required`, a root that is not bound is an error (a denial),
    /// as it is for the interpreter. The engagement's CEL values are read in place (no
    /// intermediate JSON tree), so a check costs the size of what it reads.
    pub fn typed<T: ::serde::de::DeserializeOwned>(
        variables: &dyn VariableSource,
        roots: &[&str],
        skeleton: impl ::std::borrow::Borrow<::serde_json::Value>,
        required: bool,
    ) -> ::std::result::Result<T, CheckError> {
        use crate::value_de::{RootDeserializer, RootValue};
        let skeleton = skeleton.borrow();
        let mut fields = ::std::vec::Vec::with_capacity(4);
        if let ::serde_json::Value::Object(object) = skeleton {
            for (name, value) in object {
                if !roots.contains(&name.as_str()) {
                    fields.push((name.as_str(), RootValue::Json(value)));
                }
            }
        }
        for root in roots {
            match variables.variable(root) {
                Some(value) => fields.push((*root, RootValue::Cel(value))),
                None if required => {
                    return Err(CheckError::Evaluation(format!(
                        "no such attribute `{root}`"
                    )));
                }
                None => {
                    if let Some(value) = skeleton.get(*root) {
                        fields.push((*root, RootValue::Json(value)));
                    }
                }
            }
        }
        T::deserialize(RootDeserializer { fields })
            .map_err(|error| CheckError::Evaluation(error.to_string()))
    }

    /// A compiled check's error, which denies (OAS-C8).
    pub fn denial(error: ::agentc_cel_support::CelError) -> CheckError {
        CheckError::Evaluation(error.message().to_string())
    }

    /// A compiled selection's result as a CEL value (OAS-X1).
    pub fn cel_value<T: ::serde::Serialize>(
        value: T,
    ) -> ::std::result::Result<::agentc_cel::Value, CheckError> {
        ::serde_json::to_value(value)
            .map(|json| ::agentc_cel::value_from_json(&json))
            .map_err(|error| CheckError::Evaluation(error.to_string()))
    }

    /// An expression the CEL compiler cannot compile, run by the interpreter instead.
    pub fn interpreted(text: &str) -> ::std::result::Result<Arc<dyn Check>, super::SetupError> {
        ::agentc_runtime::CelCheck::parse(text)
            .map(|check| Arc::new(check) as Arc<dyn Check>)
            .map_err(super::SetupError::Cel)
    }

    /// A compiled check.
    pub fn compiled(
        roots: &[&str],
        function: impl Fn(&dyn VariableSource) -> ::std::result::Result<::agentc_cel::Value, CheckError>
        + Send
        + Sync
        + 'static,
    ) -> ::std::result::Result<Arc<dyn Check>, super::SetupError> {
        Ok(Arc::new(::agentc_runtime::FnCheck::new(roots, function)))
    }

    /// An embedded JSON Schema.
    pub fn schema(
        tool: &'static str,
        text: &str,
    ) -> ::std::result::Result<::serde_json::Value, super::SetupError> {
        ::serde_json::from_str(text).map_err(|error| super::SetupError::Schema {
            tool,
            detail: error.to_string(),
        })
    }

    /// A tool's output as JSON for the runtime.
    pub fn output_json<T: ::serde::Serialize>(
        output: T,
    ) -> ::std::result::Result<::serde_json::Value, ::agentc_runtime::ToolError> {
        ::serde_json::to_value(output)
            .map_err(|error| ::agentc_runtime::ToolError::Failed(error.to_string()))
    }
}
