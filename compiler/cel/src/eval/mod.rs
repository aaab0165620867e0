//! The CEL interpreter.
//!
//! Evaluation follows CEL semantics: checked integer arithmetic, errors as values that
//! `&&`, `||` and `?:` can absorb, heterogeneous numeric equality. Work is bounded, so
//! hostile expressions (and hostile data under a benign expression) end with an
//! `EvalError`, which denies, rather than exhausting time or memory:
//! - every node evaluation and every comprehension iteration is a step, and so is the
//!   work a built-in or an operator does on its operands: one step per element of a
//!   list or map and per [`BYTES_PER_STEP`] bytes of a string or bytes value it is
//!   given or gives back, and [`REGEX_COMPILE_STEPS`] for a pattern compiled at run
//!   time (at most [`MAX_EVALUATION_STEPS`] in all);
//! - the strings, bytes, lists and maps an evaluation builds add up to at most
//!   [`MAX_EVALUATION_BYTES`], and none may be larger than [`MAX_VALUE_BYTES`] or
//!   longer than [`MAX_LIST_LENGTH`];
//! - an evaluation that still runs after [`MAX_EVALUATION_TIME`] stops (checked every
//!   few thousand steps), a backstop for work the step count does not see.
//!
//! An expression is first prepared into a [`Program`]: comprehension variables become
//! positions in a scope chain, literals become values built once, function calls get
//! their dispatch (and a literal `matches` pattern its compiled regex) chosen once. A
//! program is then evaluated any number of times; values are borrowed from the
//! activation and the program wherever possible rather than copied.
//!
//! The interpreter is split by concern:
//! - this file holds the public API: [`evaluate`], [`Program`], [`EvalError`], the budget
//!   limits and the regular-expression limits, and the error helpers the other files share;
//! - `prepare.rs` turns an [`Expr`] into the prepared nodes a [`Program`] holds (scope
//!   positions, constants, call dispatch);
//! - `machine.rs` is the evaluator proper: the budget counting, the stack guard, and the
//!   walk over the prepared nodes, with its fast paths for conditions;
//! - `comprehension.rs` runs the comprehension macros (`all`, `exists`, `map`, `filter`…);
//! - `ops.rs` holds the operators: field selection, indexing, comparison and arithmetic;
//! - `functions.rs` holds the built-in functions and conversions.

mod comprehension;
mod functions;
mod machine;
mod ops;
mod prepare;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cell::Cell;

use crate::ast::Expr;
use crate::value::{Activation, Value};

use machine::{ENTRY_RED_ZONE, ENTRY_STACK_SEGMENT, Machine};
use prepare::{Node, prepare};

/// An error raised while evaluating an expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    /// What went wrong, such as `division by zero` or `no such key: 'name'`.
    pub message: String,
}

impl EvalError {
    fn new(message: impl Into<String>) -> Self {
        EvalError {
            message: message.into(),
        }
    }
}

type EvalResult = Result<Value, EvalError>;

use agentc_cel_support::budget::Usage;
pub use agentc_cel_support::budget::{
    BYTES_PER_ELEMENT, BYTES_PER_STEP, MAX_COMPREHENSION_ITERATIONS, MAX_EVALUATION_BYTES,
    MAX_EVALUATION_STEPS, MAX_EVALUATION_TIME, MAX_LIST_LENGTH, MAX_VALUE_BYTES,
    REGEX_COMPILE_STEPS,
};

/// Evaluates an expression with the given variable values.
///
/// Prepares the expression on every call; to evaluate one expression repeatedly,
/// prepare it once with [`Program::new`] and call [`Program::evaluate`].
pub fn evaluate(expr: &Expr, activation: &Activation) -> Result<Value, EvalError> {
    Program::new(expr).evaluate(activation)
}

/// An expression prepared for repeated evaluation: parse once, prepare once, evaluate
/// per call. Evaluating a program gives exactly what [`evaluate`] gives for its
/// expression.
#[derive(Debug, Clone)]
pub struct Program {
    root: Node,
}

impl Program {
    /// Prepares an expression. Preparing never fails: whatever would go wrong is
    /// reported when the program is evaluated, as [`evaluate`] reports it.
    pub fn new(expr: &Expr) -> Program {
        let mut scopes = Vec::new();
        Program {
            root: prepare(expr, &mut scopes),
        }
    }

    /// Evaluates the program with the given variable values.
    pub fn evaluate(&self, activation: &Activation) -> Result<Value, EvalError> {
        self.evaluate_with_usage(activation).0
    }

    /// Evaluates the program, and says what the evaluation used of its budget (for
    /// tests that hold compiled code's conservative count against this one).
    pub fn evaluate_with_usage(
        &self,
        activation: &Activation,
    ) -> (Result<Value, EvalError>, Usage) {
        let machine = Machine {
            activation,
            qualified_names: activation.may_resolve_qualified(),
            steps: Cell::new(0),
            built_bytes: Cell::new(0),
            iterations: Cell::new(0),
            depth: Cell::new(0),
            started: std::time::Instant::now(),
        };
        let result = stacker::maybe_grow(ENTRY_RED_ZONE, ENTRY_STACK_SEGMENT, || {
            machine.eval(&self.root, None).map(Cow::into_owned)
        });
        let usage = Usage {
            steps: machine.steps.get(),
            built_bytes: machine.built_bytes.get(),
            iterations: machine.iterations.get(),
        };
        (result, usage)
    }
}

/// The most memory a compiled regular expression may take, in bytes. One limit for
/// `agentc check` (a constant pattern too large is a check error), the interpreter and
/// compiled checks (whose generated code spells the same numbers), so a pattern that
/// checks clean is never refused on every call at run time.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The most memory a regular expression's lazy DFA may take, in bytes.
pub const REGEX_DFA_SIZE_LIMIT: usize = 1 << 22;

/// Compiles `pattern` under [`REGEX_SIZE_LIMIT`] and [`REGEX_DFA_SIZE_LIMIT`].
pub fn build_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
}

/// [`build_regex`] for a pattern met at run time, which may come from the data: the
/// error names the failure's kind, never the pattern.
fn compile_regex(pattern: &str) -> Result<regex::Regex, EvalError> {
    build_regex(pattern).map_err(|error| match error {
        regex::Error::CompiledTooBig(_) => EvalError::new("regular expression is too large"),
        _ => EvalError::new("invalid regular expression"),
    })
}

fn no_overload(operation: &str, values: &[&Value]) -> EvalError {
    let types: Vec<&str> = values.iter().map(|value| value.type_name()).collect();
    EvalError::new(format!(
        "no such overload: {operation}({})",
        types.join(", ")
    ))
}
