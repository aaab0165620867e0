//! Assertions and selections: the one interface through which both interpreted CEL (for
//! specs loaded at run time) and compiled checks (in generated crates) are evaluated.

use std::fmt;
use std::sync::Arc;

use agentc_cel::ast::ExprKind;
use agentc_cel::{Activation, Expr, Value};

use crate::invocation::Invocation;

/// Why a check could not give an answer; every such error denies (OAS-C8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The expression text is not valid CEL.
    #[error("invalid CEL `{text}`: {message}")]
    Parse { text: String, message: String },
    /// Evaluation failed, for example on a missing field.
    #[error("evaluation failed: {0}")]
    Evaluation(String),
    /// An assertion produced something other than a boolean.
    #[error("assertion produced a {0}, not a bool")]
    NotBool(&'static str),
    /// Compiled code ran past its conservative budget (`agentc_cel_support::budget`):
    /// an [`FnCheck`] with an interpreter behind it evaluates the expression there
    /// instead; anywhere else this denies like any evaluation error.
    #[error("evaluation exceeded the compiled code's budget (too much work)")]
    OverCompiledBudget,
}

/// Supplies the values of the variables a check reads. The engagement supplies
/// `started_at`, `user`, `recent` and `history`; a guardrail supplies its tool's output
/// fields (OAS-G4).
pub trait VariableSource {
    /// The value of one top-level variable, or `None` when it is not bound.
    fn variable(&self, name: &str) -> Option<Value>;

    /// One field of a top-level variable, for a source that can give it without
    /// building the whole variable: the engagement gives the fields of `recent` this
    /// way, the pending call among them, rather than copying the `recent` map with the
    /// pending call put in. The answer must be what [`VariableSource::variable`] would
    /// hold under that key. The default, [`FieldLookup::WholeVariableOnly`], sends the
    /// caller to [`VariableSource::variable`].
    fn field(&self, _variable: &str, _field: &str) -> FieldLookup<'_> {
        FieldLookup::WholeVariableOnly
    }

    /// What provenance questions (`fromUser()`, `fromTool(…)`, AGX-P1) are answered
    /// from; `None` (the default) where there is no engagement, where they fail and deny.
    fn sources(&self) -> Option<Arc<agentc_cel::provenance::Sources>> {
        None
    }
}

/// What [`VariableSource::field`] answers.
#[derive(Debug, Clone)]
pub enum FieldLookup<'a> {
    /// The variable is bound, and this is its field's value.
    Found(Value),
    /// The variable is bound, and its field is this call (`recent.<name>`): its JSON,
    /// which a compiled check reads directly, and its CEL value on demand
    /// ([`Invocation::cel_value`]), which is the field's value.
    Invocation(&'a Invocation),
    /// The variable is bound and has no such field.
    Absent,
    /// The source gives this variable whole, or not at all; ask
    /// [`VariableSource::variable`].
    WholeVariableOnly,
}

impl FieldLookup<'_> {
    /// The field's CEL value, when the lookup found one: what
    /// [`VariableSource::variable`] holds under the field's key.
    pub fn cel_value(&self) -> Option<Value> {
        match self {
            FieldLookup::Found(value) => Some(value.clone()),
            FieldLookup::Invocation(invocation) => Some(invocation.cel_value().clone()),
            FieldLookup::Absent | FieldLookup::WholeVariableOnly => None,
        }
    }
}

/// A compiled or interpreted expression over a [`VariableSource`].
pub trait Check: Send + Sync + fmt::Debug {
    /// The top-level variable names the check reads, so that the engagement only builds
    /// what is needed (the history list is only materialised for checks that read it).
    fn roots(&self) -> &[String];

    /// Evaluates the expression.
    fn evaluate(&self, variables: &dyn VariableSource) -> Result<Value, CheckError>;

    /// Whether the expression asks a provenance question (`fromUser()`, `fromTool(…)`,
    /// AGX-P1), so that outputs are indexed as sources only for agents that ask.
    fn asks_provenance(&self) -> bool {
        false
    }

    /// Evaluates an assertion: only a boolean `true` passes; `false` is `Ok(false)`, and
    /// anything else is an error, which callers treat as a denial.
    fn holds(&self, variables: &dyn VariableSource) -> Result<bool, CheckError> {
        match self.evaluate(variables)? {
            Value::Bool(result) => Ok(result),
            other => Err(CheckError::NotBool(other.type_name())),
        }
    }

    /// For an assertion that did not hold, which part of it failed, in the policy's own
    /// words: the first conjunct of a top-level `a && b && …` that is false (or, if none
    /// is, that could not be evaluated), as `conjunct 2 of 3, \`…\``. Never a value of
    /// the engagement: only the rule's text. `None` when the assertion is not a
    /// conjunction or the check cannot say.
    fn failing_part(&self, _variables: &dyn VariableSource) -> Option<String> {
        None
    }

    /// Where the expression is written (`agent.yaml:12:18`), when known.
    fn location(&self) -> Option<&str> {
        None
    }
}

/// The longest conjunct text a refusal reason quotes; longer ones are cut with `…`.
const MAX_QUOTED_CONJUNCT: usize = 160;

/// One conjunct of a top-level conjunction, kept to say which part of a refused
/// assertion failed ([`Check::failing_part`]).
#[derive(Debug)]
struct Conjunct {
    /// The conjunct as the policy writes it, whitespace collapsed.
    text: String,
    /// The conjunct with the agent's definitions inlined.
    program: agentc_cel::Program,
    roots: Vec<String>,
    asks_provenance: bool,
}

/// The conjuncts of `expr` (as written, before definitions are inlined) when it is a
/// conjunction of two or more; empty otherwise.
fn conjuncts(text: &str, expr: &Expr, definitions: &agentc_cel::Definitions) -> Vec<Conjunct> {
    let mut parts = Vec::new();
    let mut pending = vec![expr];
    // Left to right: `a && b && c` parses as `(a && b) && c`.
    while let Some(node) = pending.pop() {
        match &node.kind {
            ExprKind::Binary {
                op: agentc_cel::ast::BinaryOp::And,
                left,
                right,
                ..
            } => {
                pending.push(right);
                pending.push(left);
            }
            _ => parts.push(node),
        }
    }
    if parts.len() < 2 {
        return Vec::new();
    }
    parts
        .into_iter()
        .filter_map(|part| {
            let expanded = definitions.expand(part).ok()?;
            let mut roots = Vec::new();
            let asks_provenance = collect_roots(&expanded, &mut roots);
            roots.sort();
            roots.dedup();
            let written = text.get(part.span.start..part.span.end).unwrap_or("");
            let mut quoted = written.split_whitespace().collect::<Vec<_>>().join(" ");
            if quoted.chars().count() > MAX_QUOTED_CONJUNCT {
                quoted = quoted.chars().take(MAX_QUOTED_CONJUNCT).collect::<String>() + "…";
            }
            Some(Conjunct {
                text: quoted,
                program: agentc_cel::Program::new(&expanded),
                roots,
                asks_provenance,
            })
        })
        .collect()
}

/// The activation of an interpreted expression: the variables it reads and, when it
/// asks provenance questions, the engagement's sources.
fn activation_for(
    variables: &dyn VariableSource,
    roots: &[String],
    asks_provenance: bool,
) -> Activation {
    let mut activation = Activation::new();
    for root in roots {
        if let Some(value) = variables.variable(root) {
            activation.insert(root.clone(), value);
        }
    }
    if asks_provenance && let Some(sources) = variables.sources() {
        activation.set_sources(sources);
    }
    activation
}

/// A CEL expression run by the `agentc-cel` interpreter.
#[derive(Debug, Clone)]
pub struct CelCheck {
    text: String,
    program: Arc<agentc_cel::Program>,
    roots: Vec<String>,
    /// Whether the expression asks a provenance question, so that only such checks
    /// take the engagement's sources.
    asks_provenance: bool,
    /// The top-level conjuncts, evaluated one by one only to explain a refusal.
    conjuncts: Arc<[Conjunct]>,
    /// Where the expression is written in the spec (`file:line:column`).
    location: Option<Arc<str>>,
}

impl CelCheck {
    /// Parses the expression once, so that no parsing happens per call.
    pub fn parse(text: &str) -> Result<Self, CheckError> {
        CelCheck::parse_with(text, &agentc_cel::Definitions::new())
    }

    /// Parses the expression once with the agent's definitions (AGX-D1) inlined.
    pub fn parse_with(
        text: &str,
        definitions: &agentc_cel::Definitions,
    ) -> Result<Self, CheckError> {
        let parse_error = |diagnostics: Vec<agentc_cel::CelDiagnostic>| CheckError::Parse {
            text: text.to_string(),
            message: diagnostics
                .iter()
                .map(|diagnostic| diagnostic.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        };
        let written = agentc_cel::parse(text).map_err(parse_error)?;
        let expr = definitions.expand(&written).map_err(parse_error)?;
        let mut roots = Vec::new();
        let asks_provenance = collect_roots(&expr, &mut roots);
        roots.sort();
        roots.dedup();
        // Prepared once here, so each tool call only evaluates (no per-call preparation).
        let program = Arc::new(agentc_cel::Program::new(&expr));
        Ok(CelCheck {
            text: text.to_string(),
            program,
            roots,
            asks_provenance,
            conjuncts: Arc::from(conjuncts(text, &written, definitions)),
            location: None,
        })
    }

    /// The same check, written at `location` in the spec (`file:line:column`), which a
    /// refusal reason names.
    pub fn at(mut self, location: &str) -> Self {
        self.location = Some(Arc::from(location));
        self
    }

    /// The source text of the expression.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Collects every identifier an expression names, without recursion limits mattering
/// (the parser already bounds expression depth), and says whether it calls a provenance
/// question (`fromUser`, `fromTool`, `fromTrusted`, `fromUntrusted`).
fn collect_roots(expr: &Expr, roots: &mut Vec<String>) -> bool {
    let mut asks_provenance = false;
    let mut stack = vec![expr];
    while let Some(node) = stack.pop() {
        match &node.kind {
            ExprKind::Ident(name) => roots.push(name.trim_start_matches('.').to_string()),
            ExprKind::Call { function, .. } => {
                asks_provenance |= agentc_cel::provenance::QUESTIONS.contains(&function.as_str());
            }
            _ => {}
        }
        stack.extend(node.children());
    }
    asks_provenance
}

impl Check for CelCheck {
    fn roots(&self) -> &[String] {
        &self.roots
    }

    fn asks_provenance(&self) -> bool {
        self.asks_provenance
    }

    fn evaluate(&self, variables: &dyn VariableSource) -> Result<Value, CheckError> {
        let activation = activation_for(variables, &self.roots, self.asks_provenance);
        self.program
            .evaluate(&activation)
            .map_err(|error| CheckError::Evaluation(error.message))
    }

    fn failing_part(&self, variables: &dyn VariableSource) -> Option<String> {
        let count = self.conjuncts.len();
        let mut first_error = None;
        for (index, conjunct) in self.conjuncts.iter().enumerate() {
            let activation = activation_for(variables, &conjunct.roots, conjunct.asks_provenance);
            match conjunct.program.evaluate(&activation) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => {
                    return Some(format!(
                        "conjunct {} of {count} is false, `{}`",
                        index + 1,
                        conjunct.text
                    ));
                }
                _ => {
                    first_error.get_or_insert((index, &conjunct.text));
                }
            }
        }
        first_error.map(|(index, text)| {
            format!(
                "conjunct {} of {count} could not be evaluated, `{text}`",
                index + 1
            )
        })
    }

    fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }
}

type CheckFn = dyn Fn(&dyn VariableSource) -> Result<Value, CheckError> + Send + Sync;

/// A check written in Rust, as generated crates compile assertions to.
#[derive(Clone)]
pub struct FnCheck {
    roots: Vec<String>,
    function: Arc<CheckFn>,
    /// The same expression for the interpreter, which answers when the function ran
    /// past its budget ([`CheckError::OverCompiledBudget`]).
    interpreter: Option<CelCheck>,
}

impl FnCheck {
    /// Wraps a function that reads the given top-level variables.
    pub fn new(
        roots: &[&str],
        function: impl Fn(&dyn VariableSource) -> Result<Value, CheckError> + Send + Sync + 'static,
    ) -> Self {
        FnCheck {
            roots: roots.iter().map(|root| root.to_string()).collect(),
            function: Arc::new(function),
            interpreter: None,
        }
    }

    /// Puts the interpreter behind the function: when the function answers
    /// [`CheckError::OverCompiledBudget`], `interpreter` (the same expression) is
    /// evaluated and its answer, a value or a budget error of its own, is the check's.
    /// So a compiled check decides exactly as the interpreted one on every input,
    /// budget exhaustion included.
    pub fn with_interpreter(mut self, interpreter: CelCheck) -> Self {
        for root in interpreter.roots() {
            if !self.roots.contains(root) {
                self.roots.push(root.clone());
            }
        }
        self.interpreter = Some(interpreter);
        self
    }
}

impl fmt::Debug for FnCheck {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("FnCheck")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl Check for FnCheck {
    fn roots(&self) -> &[String] {
        &self.roots
    }

    /// Compiled code never asks (the compiler leaves provenance questions to the
    /// interpreter), so only the interpreter behind it can.
    fn asks_provenance(&self) -> bool {
        self.interpreter
            .as_ref()
            .is_some_and(CelCheck::asks_provenance)
    }

    fn evaluate(&self, variables: &dyn VariableSource) -> Result<Value, CheckError> {
        match ((self.function)(variables), &self.interpreter) {
            (Err(CheckError::OverCompiledBudget), Some(interpreter)) => {
                interpreter.evaluate(variables)
            }
            (answer, _) => answer,
        }
    }

    /// The interpreter behind the function explains: it is the same expression, and a
    /// refusal is rare enough to be explained slowly.
    fn failing_part(&self, variables: &dyn VariableSource) -> Option<String> {
        self.interpreter.as_ref()?.failing_part(variables)
    }

    fn location(&self) -> Option<&str> {
        self.interpreter.as_ref()?.location()
    }
}

/// The fields of a guardrail tool's output, as the variables of its assertion (OAS-G4).
#[derive(Debug, Clone)]
pub struct JsonFields {
    fields: Option<Arc<agentc_cel::ValueMap>>,
}

impl JsonFields {
    /// Binds each top-level field of a JSON object; a non-object binds nothing, so any
    /// assertion over it fails to evaluate and denies.
    pub fn new(json: &serde_json::Value) -> Self {
        match agentc_cel::value_from_json(json) {
            Value::Map(map) => JsonFields { fields: Some(map) },
            _ => JsonFields { fields: None },
        }
    }
}

impl VariableSource for JsonFields {
    fn variable(&self, name: &str) -> Option<Value> {
        self.fields.as_ref()?.get_str(name).cloned()
    }
}

/// Converts a CEL value back to JSON for the caller (OAS-X1); timestamps and durations
/// become their RFC 3339 and `1.5s` text forms, bytes a list of numbers.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Value::Null => Json::Null,
        Value::Bool(flag) => Json::Bool(*flag),
        Value::Int(number) => Json::from(*number),
        Value::Uint(number) => Json::from(*number),
        Value::Double(number) => serde_json::Number::from_f64(*number)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::String(text) => Json::String(text.to_string()),
        Value::Bytes(bytes) => Json::Array(bytes.iter().map(|byte| Json::from(*byte)).collect()),
        Value::List(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Map(map) => {
            let mut object = serde_json::Map::new();
            for (key, item) in map.iter() {
                let key = match key {
                    agentc_cel::MapKey::String(text) => text.to_string(),
                    other => value_to_json(&other.to_value()).to_string(),
                };
                object.insert(key, value_to_json(item));
            }
            Json::Object(object)
        }
        Value::Timestamp(timestamp) => Json::String(timestamp.to_string()),
        Value::Duration(duration) => Json::String(duration.to_string()),
        Value::Type(name) => Json::String(name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vars;
    impl VariableSource for Vars {
        fn variable(&self, name: &str) -> Option<Value> {
            (name == "x").then_some(Value::Int(3))
        }
    }

    #[test]
    fn cel_check_collects_roots_and_evaluates() {
        let check = CelCheck::parse("x > 2 && [1].all(r, r > 0)").unwrap();
        assert!(check.roots().contains(&"x".to_string()));
        assert!(check.holds(&Vars).unwrap());
    }

    /// Outputs are indexed for provenance only for agents whose checks ask (AGX-P1).
    #[test]
    fn checks_say_whether_they_ask_provenance_questions() {
        let asks = CelCheck::parse("[x].all(v, string(v).fromUser())").unwrap();
        assert!(asks.asks_provenance());
        assert!(!CelCheck::parse("x > 2").unwrap().asks_provenance());
        let compiled = |_: &dyn VariableSource| Ok(Value::Bool(true));
        assert!(!FnCheck::new(&[], compiled).asks_provenance());
        assert!(
            FnCheck::new(&[], compiled)
                .with_interpreter(asks)
                .asks_provenance()
        );
    }

    #[test]
    fn non_bool_and_missing_variables_are_errors() {
        assert!(CelCheck::parse("x + 1").unwrap().holds(&Vars).is_err());
        assert!(CelCheck::parse("y > 1").unwrap().holds(&Vars).is_err());
        assert!(CelCheck::parse("x >").is_err());
    }

    /// A compiled check whose budget ran out is answered by the interpreter behind it,
    /// whatever that answer is; with none behind it, it denies.
    #[test]
    fn compiled_checks_over_their_budget_are_answered_by_the_interpreter() {
        let over_budget = |_: &dyn VariableSource| Err(CheckError::OverCompiledBudget);
        let allowed =
            FnCheck::new(&[], over_budget).with_interpreter(CelCheck::parse("x > 2").unwrap());
        assert_eq!(allowed.roots(), ["x".to_string()]);
        assert!(allowed.holds(&Vars).unwrap());
        let refused =
            FnCheck::new(&[], over_budget).with_interpreter(CelCheck::parse("x > 5").unwrap());
        assert!(!refused.holds(&Vars).unwrap());
        let exhausted = FnCheck::new(&[], over_budget).with_interpreter(
            CelCheck::parse("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10].all(a, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].all(b, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].all(c, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].all(d, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].all(e, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].all(f, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].all(g, x > 0)))))))")
                .unwrap(),
        );
        assert!(matches!(
            exhausted.holds(&Vars),
            Err(CheckError::Evaluation(message)) if message.contains("exceeded")
        ));
        let alone = FnCheck::new(&[], over_budget);
        assert!(matches!(
            alone.holds(&Vars),
            Err(CheckError::OverCompiledBudget)
        ));
        // Any other answer of the function is the check's own.
        let compiled = FnCheck::new(&[], |_: &dyn VariableSource| Ok(Value::Bool(false)))
            .with_interpreter(CelCheck::parse("true").unwrap());
        assert!(!compiled.holds(&Vars).unwrap());
    }
}
