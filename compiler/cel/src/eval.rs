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

use std::borrow::Cow;
use std::cell::Cell;
use std::cmp::Ordering;
use std::sync::Arc;

use crate::ast::{BinaryOp, ComprehensionKind, Expr, ExprKind, Literal, UnaryOp};
use crate::checker::type_name_identifier;
use crate::parser::with_enough_stack;
use crate::time::{self, Duration, NANOS_PER_SECOND, Timestamp};
use crate::value::{Activation, MapKey, Value, ValueMap};

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

/// The clock is read when the step count crosses a multiple of 2^this.
const TIME_CHECK_SHIFT: u32 = 14;

/// How many levels of evaluation recursion may pass between two checks for enough stack.
/// The stack check's red zone covers these levels many times over, even in unoptimised
/// builds.
const STACK_CHECK_INTERVAL: u32 = 4;
/// How many levels of evaluation recursion run without any stack check: evaluation
/// starts only once [`ENTRY_RED_ZONE`] bytes of stack are known to be free, which covers
/// these levels many times over (even in unoptimised builds), so shallow expressions
/// (nearly all policies) never pay for a check inside their comprehensions' loops.
const UNCHECKED_DEPTH: u32 = 16;
/// The stack an evaluation makes sure of before it starts.
const ENTRY_RED_ZONE: usize = 512 * 1024;
/// The size of the stack segment an evaluation moves to when less than that is free.
const ENTRY_STACK_SEGMENT: usize = 4 * 1024 * 1024;

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

/// One field of a [`Node::Path`], with an inline cache of where the field was found
/// last time. Objects of one shape (the entries of a history list, say) keep their keys
/// at the same positions, so after the first lookup each step is one comparison.
#[derive(Debug)]
struct PathField {
    name: Box<str>,
    hint: std::sync::atomic::AtomicU32,
}

impl Clone for PathField {
    fn clone(&self) -> Self {
        PathField {
            name: self.name.clone(),
            hint: std::sync::atomic::AtomicU32::new(
                self.hint.load(std::sync::atomic::Ordering::Relaxed),
            ),
        }
    }
}

/// One node of a prepared expression.
#[derive(Debug, Clone)]
enum Node {
    /// A value known in advance: a literal, or a list literal of constants; `steps` is
    /// the number of expression nodes it stands for.
    Const { value: Value, steps: u64 },
    /// A comprehension variable: how many bindings out from the innermost one.
    Local(usize),
    /// A chain of field selections from a comprehension variable (`x.a.b`), walked
    /// without copying; it stands for `fields.len() + 1` expression nodes.
    Path {
        position: usize,
        fields: Box<[PathField]>,
    },
    /// A name that is not a comprehension variable, resolved in the activation.
    Global(Box<GlobalName>),
    /// Field selection; `qualified` is set when the selection chain is rooted at a name
    /// that is not a comprehension variable, so that it may spell a qualified variable.
    Select {
        operand: Box<Node>,
        field: Box<str>,
        qualified: Option<Box<QualifiedName>>,
    },
    /// `has(operand.field)`.
    Has { operand: Box<Node>, field: Box<str> },
    /// A function call.
    Call(Box<Call>),
    /// A unary operator.
    Unary { op: UnaryOp, operand: Box<Node> },
    /// `&&` or `||`.
    Logical {
        op: BinaryOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    /// Any other binary operator.
    Binary {
        op: BinaryOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    /// `condition ? if_true : if_false`.
    Conditional(Box<[Node; 3]>),
    /// `operand[index]`.
    Index {
        operand: Box<Node>,
        index: Box<Node>,
    },
    /// A list literal with some non-constant element.
    List(Box<[Node]>),
    /// A map literal.
    Map(Box<[(Node, Node)]>),
    /// A message construction, which is not supported.
    Struct(Box<str>),
    /// A comprehension macro.
    Comprehension(Box<PreparedComprehension>),
}

#[derive(Debug, Clone)]
struct GlobalName {
    /// The name as written (a leading dot kept).
    name: Box<str>,
    /// The name without its leading dot.
    bare: Box<str>,
    /// The type value the name stands for when it names no variable, if it is a type.
    type_value: Option<Value>,
}

#[derive(Debug, Clone)]
struct QualifiedName {
    /// The identifier at the root of the chain.
    root: Box<str>,
    /// The whole chain as a dotted name.
    qualified: Box<str>,
    /// The dotted name's first segment.
    first_segment: Box<str>,
    /// Whether that first segment is a comprehension variable in scope.
    first_segment_scoped: bool,
    /// The type value the dotted name stands for, if it names a type.
    type_value: Option<Value>,
}

/// A function dispatch chosen when the program is prepared; anything else goes through
/// the general lookup by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dispatch {
    General,
    Size,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
}

#[derive(Debug, Clone)]
struct Call {
    function: Box<str>,
    dispatch: Dispatch,
    has_target: bool,
    /// The target (for a member call) followed by the arguments.
    args: Box<[Node]>,
    /// For `matches` with a literal pattern: the pattern compiled once.
    regex: Option<Result<regex::Regex, EvalError>>,
}

#[derive(Debug, Clone)]
struct PreparedComprehension {
    kind: ComprehensionKind,
    range: Node,
    two_variables: bool,
    filter: Option<Node>,
    body: Node,
}

fn boxed(expr: &Expr, scopes: &mut Vec<String>) -> Box<Node> {
    Box::new(prepare(expr, scopes))
}

/// Whether `name` is a comprehension variable in scope, and how far out.
fn scope_position(scopes: &[String], name: &str) -> Option<usize> {
    scopes.iter().rev().position(|scoped| scoped == name)
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

/// Prepares one expression node; `scopes` holds the comprehension variables in scope,
/// innermost last.
fn prepare(expr: &Expr, scopes: &mut Vec<String>) -> Node {
    with_enough_stack(|| prepare_kind(expr, scopes))
}

fn prepare_kind(expr: &Expr, scopes: &mut Vec<String>) -> Node {
    match &expr.kind {
        ExprKind::Literal(literal) => Node::Const {
            value: match literal {
                Literal::Null => Value::Null,
                Literal::Bool(flag) => Value::Bool(*flag),
                Literal::Int(number) => Value::Int(*number),
                Literal::Uint(number) => Value::Uint(*number),
                Literal::Double(number) => Value::Double(*number),
                Literal::String(text) => Value::String(Arc::from(text.as_str())),
                Literal::Bytes(bytes) => Value::Bytes(Arc::from(bytes.as_slice())),
            },
            steps: 1,
        },
        ExprKind::Ident(name) => match scope_position(scopes, name) {
            Some(position) => Node::Local(position),
            None => {
                let bare = name.trim_start_matches('.');
                Node::Global(Box::new(GlobalName {
                    name: name.as_str().into(),
                    bare: bare.into(),
                    type_value: type_name_identifier(bare).then(|| Value::Type(Arc::from(bare))),
                }))
            }
        },
        ExprKind::Select { operand, field, .. } => {
            if let Some(path) = local_path(expr, scopes) {
                return path;
            }
            let qualified = qualified_name(expr, scopes).map(Box::new);
            Node::Select {
                operand: boxed(operand, scopes),
                field: field.as_str().into(),
                qualified,
            }
        }
        ExprKind::Has { operand, field, .. } => Node::Has {
            operand: boxed(operand, scopes),
            field: field.as_str().into(),
        },
        ExprKind::Call {
            target,
            function,
            args,
            ..
        } => {
            let mut nodes = Vec::with_capacity(args.len() + 1);
            if let Some(target) = target {
                nodes.push(prepare(target, scopes));
            }
            for argument in args {
                nodes.push(prepare(argument, scopes));
            }
            let dispatch = match (function.as_str(), nodes.len()) {
                ("size", 1) => Dispatch::Size,
                ("contains", 2) => Dispatch::Contains,
                ("startsWith", 2) => Dispatch::StartsWith,
                ("endsWith", 2) => Dispatch::EndsWith,
                ("matches", 2) => Dispatch::Matches,
                _ => Dispatch::General,
            };
            let regex = match (dispatch, nodes.last()) {
                (
                    Dispatch::Matches,
                    Some(Node::Const {
                        value: Value::String(pattern),
                        ..
                    }),
                ) => Some(compile_regex(pattern)),
                _ => None,
            };
            Node::Call(Box::new(Call {
                function: function.as_str().into(),
                dispatch,
                has_target: target.is_some(),
                args: nodes.into_boxed_slice(),
                regex,
            }))
        }
        ExprKind::Unary { op, operand } => Node::Unary {
            op: *op,
            operand: boxed(operand, scopes),
        },
        ExprKind::Binary {
            op, left, right, ..
        } => {
            let left = boxed(left, scopes);
            let right = boxed(right, scopes);
            if matches!(op, BinaryOp::And | BinaryOp::Or) {
                Node::Logical {
                    op: *op,
                    left,
                    right,
                }
            } else {
                Node::Binary {
                    op: *op,
                    left,
                    right,
                }
            }
        }
        ExprKind::Conditional {
            condition,
            if_true,
            if_false,
        } => Node::Conditional(Box::new([
            prepare(condition, scopes),
            prepare(if_true, scopes),
            prepare(if_false, scopes),
        ])),
        ExprKind::Index { operand, index } => Node::Index {
            operand: boxed(operand, scopes),
            index: boxed(index, scopes),
        },
        ExprKind::List(elements) => {
            let nodes: Vec<Node> = elements
                .iter()
                .map(|element| prepare(element, scopes))
                .collect();
            // A list of constants is built once; it still counts the steps of its nodes.
            let mut steps: u64 = 1;
            let mut values = Vec::with_capacity(nodes.len());
            for node in &nodes {
                match node {
                    Node::Const {
                        value,
                        steps: element_steps,
                    } => {
                        steps = steps.saturating_add(*element_steps);
                        values.push(value.clone());
                    }
                    _ => return Node::List(nodes.into_boxed_slice()),
                }
            }
            Node::Const {
                value: Value::List(Arc::from(values)),
                steps,
            }
        }
        ExprKind::Map(entries) => Node::Map(
            entries
                .iter()
                .map(|entry| (prepare(&entry.key, scopes), prepare(&entry.value, scopes)))
                .collect(),
        ),
        ExprKind::Struct { type_name, .. } => Node::Struct(type_name.as_str().into()),
        ExprKind::Comprehension(comprehension) => {
            let range = prepare(&comprehension.range, scopes);
            let scope_length = scopes.len();
            scopes.push(comprehension.variable.clone());
            if let Some((second, _)) = &comprehension.second_variable {
                scopes.push(second.clone());
            }
            let filter = comprehension
                .filter
                .as_ref()
                .map(|filter| prepare(filter, scopes));
            let body = prepare(&comprehension.body, scopes);
            scopes.truncate(scope_length);
            Node::Comprehension(Box::new(PreparedComprehension {
                kind: comprehension.kind,
                range,
                two_variables: comprehension.second_variable.is_some(),
                filter,
                body,
            }))
        }
    }
}

/// A selection chain `x.a.b` rooted at a comprehension variable, as one node.
fn local_path(expr: &Expr, scopes: &[String]) -> Option<Node> {
    let mut fields = Vec::new();
    let mut current = expr;
    let root = loop {
        match &current.kind {
            ExprKind::Select { operand, field, .. } => {
                fields.push(Box::<str>::from(field.as_str()));
                current = operand;
            }
            ExprKind::Ident(name) => break name.as_str(),
            _ => return None,
        }
    };
    let position = scope_position(scopes, root)?;
    fields.reverse();
    Some(Node::Path {
        position,
        fields: fields
            .into_iter()
            .map(|name| PathField {
                name,
                hint: std::sync::atomic::AtomicU32::new(0),
            })
            .collect(),
    })
}

/// For a selection chain `a.b.c` rooted at a name that is not a comprehension variable:
/// the names it is tried as before it is evaluated as field selections.
fn qualified_name(expr: &Expr, scopes: &[String]) -> Option<QualifiedName> {
    let mut current = expr;
    let root = loop {
        match &current.kind {
            ExprKind::Select { operand, .. } => current = operand,
            ExprKind::Ident(name) => break name.as_str(),
            _ => return None,
        }
    };
    if scope_position(scopes, root).is_some() {
        return None;
    }
    let qualified = expr.qualified_name()?;
    let first_segment = qualified.split('.').next().unwrap_or("");
    let bare = qualified.trim_start_matches('.');
    Some(QualifiedName {
        root: root.into(),
        first_segment: first_segment.into(),
        first_segment_scoped: scope_position(scopes, first_segment).is_some(),
        type_value: type_name_identifier(bare).then(|| Value::Type(Arc::from(bare))),
        qualified: qualified.as_str().into(),
    })
}

/// The comprehension variables bound while evaluating: a chain of frames on the Rust
/// stack, innermost first.
#[derive(Clone, Copy)]
struct Env<'v> {
    value: &'v Value,
    parent: Option<&'v Env<'v>>,
}

type Scope<'v> = Option<&'v Env<'v>>;

type Evaluated<'v> = Result<Cow<'v, Value>, EvalError>;

struct Machine<'a> {
    activation: &'a Activation,
    /// Whether a dotted chain might name a variable of its own (see
    /// [`Activation::may_resolve_qualified`]).
    qualified_names: bool,
    steps: Cell<u64>,
    /// What the values built so far add up to (see [`MAX_EVALUATION_BYTES`]).
    built_bytes: Cell<u64>,
    iterations: Cell<u64>,
    depth: Cell<u32>,
    started: std::time::Instant,
}

/// The work, in steps, of reading `values` once (see [`BYTES_PER_STEP`]).
fn work_of(values: &[&Value]) -> u64 {
    values
        .iter()
        .map(|value| match value {
            Value::String(text) => text.len() as u64 / BYTES_PER_STEP,
            Value::Bytes(bytes) => bytes.len() as u64 / BYTES_PER_STEP,
            Value::List(elements) => elements.len() as u64,
            Value::Map(map) => map.len() as u64,
            _ => 0,
        })
        .sum()
}

/// What building `value` counts against [`MAX_EVALUATION_BYTES`].
fn built_size(value: &Value) -> u64 {
    match value {
        Value::String(text) => text.len() as u64,
        Value::Bytes(bytes) => bytes.len() as u64,
        Value::List(elements) => elements.len() as u64 * BYTES_PER_ELEMENT,
        Value::Map(map) => map.len() as u64 * BYTES_PER_ELEMENT,
        _ => 0,
    }
}

fn no_overload(operation: &str, values: &[&Value]) -> EvalError {
    let types: Vec<&str> = values.iter().map(|value| value.type_name()).collect();
    EvalError::new(format!(
        "no such overload: {operation}({})",
        types.join(", ")
    ))
}

fn check_string_size(text: String) -> EvalResult {
    if text.len() > MAX_VALUE_BYTES {
        return Err(EvalError::new("string result is too large"));
    }
    Ok(Value::String(Arc::from(text)))
}

/// Selects from a value that may be borrowed, borrowing the result when it can.
fn select_from<'v>(
    object: Cow<'v, Value>,
    select: impl FnOnce(&Value) -> Result<&Value, EvalError>,
) -> Evaluated<'v> {
    match object {
        Cow::Borrowed(object) => select(object).map(Cow::Borrowed),
        Cow::Owned(object) => select(&object).map(|value| Cow::Owned(value.clone())),
    }
}

/// The value of the comprehension variable `position` bindings out from the innermost.
fn local<'v>(scope: Scope<'v>, position: usize) -> Option<&'v Value> {
    let mut frame = scope?;
    for _ in 0..position {
        frame = frame.parent?;
    }
    Some(frame.value)
}

/// A condition's value: a boolean, or whatever else the expression gave (another value
/// or an error), boxed so that the common case stays small.
type Truth<'v> = Result<bool, Box<Evaluated<'v>>>;

/// What one comprehension iteration gave.
enum Outcome<'v> {
    /// The filter excluded the item.
    Skipped,
    /// A boolean.
    Bool(bool),
    /// Another value.
    Value(Cow<'v, Value>),
    /// An error.
    Failed(EvalError),
}

/// Whether a node's value is always a boolean (or an error), so that
/// [`Machine::eval_bool_node`] evaluates it.
fn is_boolean(node: &Node) -> bool {
    match node {
        Node::Logical { .. } | Node::Has { .. } => true,
        Node::Unary { op, .. } => *op == UnaryOp::Not,
        Node::Binary { op, .. } => op.is_relation(),
        Node::Call(call) => is_boolean_dispatch(call.dispatch),
        Node::Comprehension(comprehension) => matches!(
            comprehension.kind,
            ComprehensionKind::All | ComprehensionKind::Exists | ComprehensionKind::ExistsOne
        ),
        _ => false,
    }
}

/// Whether a call dispatch always gives a boolean (or an error).
#[inline]
fn is_boolean_dispatch(dispatch: Dispatch) -> bool {
    matches!(
        dispatch,
        Dispatch::Contains | Dispatch::StartsWith | Dispatch::EndsWith | Dispatch::Matches
    )
}

/// Whether a node is a leaf that [`Machine::leaf`] evaluates without recursion.
#[inline]
fn is_leaf(node: &Node) -> bool {
    matches!(
        node,
        Node::Const { .. } | Node::Local(_) | Node::Path { .. }
    )
}

#[cold]
fn not_boolean() -> EvalError {
    EvalError::new("internal error: not a boolean expression")
}

#[cold]
fn step_budget_exceeded() -> EvalError {
    EvalError::new("evaluation exceeded its step budget (too much work)")
}

fn time_budget_exceeded() -> EvalError {
    EvalError::new("evaluation exceeded its time budget (too much work)")
}

fn byte_budget_exceeded() -> EvalError {
    EvalError::new("evaluation exceeded its memory budget (values too large)")
}

#[cold]
fn unbound_variable() -> EvalError {
    EvalError::new("undeclared reference to a comprehension variable")
}

/// Follows a path from a comprehension variable; `None` when a step fails.
#[inline]
fn walk_path<'v>(scope: Scope<'v>, position: usize, fields: &'v [PathField]) -> Option<&'v Value> {
    let mut value = local(scope, position)?;
    for field in fields {
        value = match value {
            Value::Map(map) => map.get_str_hinted(&field.name, &field.hint)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The error of a path that [`walk_path`] could not follow.
#[cold]
#[inline(never)]
fn path_error(scope: Scope<'_>, position: usize, fields: &[PathField]) -> EvalError {
    let Some(mut value) = local(scope, position) else {
        return unbound_variable();
    };
    for field in fields {
        match select_field(value, &field.name) {
            Ok(next) => value = next,
            Err(error) => return error,
        }
    }
    EvalError::new("internal error: a path failed without a reason")
}

/// What a comprehension has gathered so far.
struct Accumulator {
    results: Vec<Value>,
    result_map: ValueMap,
    matches: u64,
    /// The first error of an `all` or `exists` predicate, reported unless another
    /// item decides the result.
    first_error: Option<EvalError>,
    /// The error that ended the comprehension ([`Flow::Failed`]).
    failure: Option<EvalError>,
}

impl Accumulator {
    fn new() -> Self {
        Accumulator {
            results: Vec::new(),
            result_map: ValueMap::new(),
            matches: 0,
            first_error: None,
            failure: None,
        }
    }

    #[cold]
    fn fail(&mut self, error: EvalError) -> Flow {
        self.failure = Some(error);
        Flow::Failed
    }

    fn take_failure(&mut self) -> EvalError {
        self.failure
            .take()
            .unwrap_or_else(|| EvalError::new("internal error: a comprehension failed silently"))
    }
}

/// How a comprehension goes on after an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// On to the next item.
    Continue,
    /// The result is decided (`all` or `exists`).
    Done(bool),
    /// The comprehension failed; the error is in the accumulator.
    Failed,
}

/// Why [`Machine::leaf`] gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeafMiss {
    /// The node is not a leaf; nothing was counted.
    NotLeaf,
    /// The step budget ran out.
    OverBudget,
    /// A path could not be followed.
    Broken,
}

/// The error of a leaf that gave no value.
#[cold]
#[inline(never)]
fn leaf_error(miss: LeafMiss, node: &Node, scope: Scope<'_>) -> EvalError {
    match (miss, node) {
        (LeafMiss::OverBudget, _) => step_budget_exceeded(),
        (_, Node::Path { position, fields }) => path_error(scope, *position, fields),
        _ => unbound_variable(),
    }
}

/// Evaluates an operand to a `&Value`, borrowing a leaf's value and keeping any other
/// node's value in `$slot`; on failure, returns `$fail(error)` from the function.
macro_rules! operand {
    ($machine:expr, $node:expr, $scope:expr, $slot:ident, $fail:expr) => {
        match $machine.leaf($node, $scope) {
            Ok(value) => value,
            Err(LeafMiss::NotLeaf) => {
                $slot = match $machine.guarded(|| $machine.eval_node($node, $scope)) {
                    Ok(value) => value,
                    Err(error) => return $fail(error),
                };
                &*$slot
            }
            Err(miss) => return $fail(leaf_error(miss, $node, $scope)),
        }
    };
}

impl<'a> Machine<'a> {
    /// Runs one level of recursion, moving to a fresh stack segment first when little
    /// stack remains (checked every few levels).
    fn guarded<T>(&self, step: impl FnOnce() -> T) -> T {
        let depth = self.depth.get();
        self.depth.set(depth.wrapping_add(1));
        let result = if depth >= UNCHECKED_DEPTH && depth.is_multiple_of(STACK_CHECK_INTERVAL) {
            with_enough_stack(step)
        } else {
            step()
        };
        self.depth.set(depth);
        result
    }

    #[inline]
    fn count_steps(&self, count: u64) -> Result<(), EvalError> {
        let before = self.steps.get();
        let steps = before.saturating_add(count);
        self.steps.set(steps);
        if steps > MAX_EVALUATION_STEPS {
            return Err(step_budget_exceeded());
        }
        if (before ^ steps) >> TIME_CHECK_SHIFT != 0 && self.started.elapsed() > MAX_EVALUATION_TIME
        {
            return Err(time_budget_exceeded());
        }
        Ok(())
    }

    /// Counts the work of an operation on `operands` (see [`work_of`]).
    #[inline]
    fn charge_work(&self, operands: &[&Value]) -> Result<(), EvalError> {
        match work_of(operands) {
            0 => Ok(()),
            work => self.count_steps(work),
        }
    }

    /// Counts a value an operation built: the work of writing it, and its size against
    /// [`MAX_EVALUATION_BYTES`].
    fn charge_built(&self, result: EvalResult) -> EvalResult {
        let value = result?;
        let size = built_size(&value);
        if size > 0 {
            let built = self.built_bytes.get().saturating_add(size);
            self.built_bytes.set(built);
            if built > MAX_EVALUATION_BYTES {
                return Err(byte_budget_exceeded());
            }
            self.charge_work(&[&value])?;
        }
        Ok(value)
    }

    /// Counts the work of a call before it runs: its operands, and the compilation of
    /// a pattern that is not a constant.
    fn charge_call(&self, call: &Call, operands: &[&Value]) -> Result<(), EvalError> {
        if &*call.function == "matches" && call.regex.is_none() {
            self.count_steps(REGEX_COMPILE_STEPS)?;
        }
        self.charge_work(operands)
    }

    /// Runs a call: its work counted before, what it built after.
    fn run_call(&self, call: &Call, operands: &[&Value]) -> EvalResult {
        self.charge_call(call, operands)?;
        self.charge_built(apply(call, operands))
    }

    /// Evaluates a leaf (a constant, a comprehension variable or a path from one) to a
    /// borrowed value; small enough to come back in registers.
    #[inline(always)]
    fn leaf<'v>(&self, node: &'v Node, scope: Scope<'v>) -> Result<&'v Value, LeafMiss> {
        let (steps, value) = match node {
            Node::Const { value, steps } => (*steps, Some(value)),
            Node::Local(position) => (1, local(scope, *position)),
            Node::Path { position, fields } => {
                (fields.len() as u64 + 1, walk_path(scope, *position, fields))
            }
            _ => return Err(LeafMiss::NotLeaf),
        };
        if self.count_steps(steps).is_err() {
            return Err(LeafMiss::OverBudget);
        }
        value.ok_or(LeafMiss::Broken)
    }

    /// Evaluates a node: leaves directly, anything else through
    /// [`Machine::eval_node`].
    #[inline]
    fn eval<'v>(&self, node: &'v Node, scope: Scope<'v>) -> Evaluated<'v>
    where
        'a: 'v,
    {
        match self.leaf(node, scope) {
            Ok(value) => Ok(Cow::Borrowed(value)),
            Err(LeafMiss::NotLeaf) => self.guarded(|| self.eval_node(node, scope)),
            Err(miss) => Err(leaf_error(miss, node, scope)),
        }
    }

    #[inline(never)]
    fn eval_node<'v>(&self, node: &'v Node, scope: Scope<'v>) -> Evaluated<'v>
    where
        'a: 'v,
    {
        if matches!(
            node,
            Node::Const { .. } | Node::Local(_) | Node::Path { .. }
        ) {
            return self.eval(node, scope);
        }
        if is_boolean(node) {
            return match self.eval_bool_node(node, scope) {
                Ok(flag) => Ok(Cow::Owned(Value::Bool(flag))),
                Err(other) => *other,
            };
        }
        self.count_steps(1)?;
        match node {
            Node::Const { .. } | Node::Local(_) | Node::Path { .. } => self.eval(node, scope),
            Node::Global(global) => {
                if let Some(value) = self.activation.resolve(&global.name) {
                    return Ok(Cow::Borrowed(value));
                }
                if let Some(type_value) = &global.type_value {
                    return Ok(Cow::Borrowed(type_value));
                }
                Err(EvalError::new(format!(
                    "undeclared reference to '{}'",
                    global.bare
                )))
            }
            Node::Select {
                operand,
                field,
                qualified,
            } => {
                let object = match qualified {
                    Some(qualified) => {
                        if self.qualified_names
                            || self.activation.resolve(&qualified.root).is_none()
                        {
                            if !qualified.first_segment_scoped {
                                if let Some(value) = self.activation.resolve(&qualified.qualified) {
                                    return Ok(Cow::Borrowed(value));
                                }
                                if let Some(type_value) = &qualified.type_value
                                    && self.activation.resolve(&qualified.first_segment).is_none()
                                {
                                    return Ok(Cow::Borrowed(type_value));
                                }
                            }
                            self.eval(operand, scope)?
                        } else {
                            // The chain's root is a variable and no dotted name can
                            // be one: the inner selections need no check either.
                            self.eval_unqualified(operand, scope)?
                        }
                    }
                    None => self.eval(operand, scope)?,
                };
                select_from(object, |object| select_field(object, field))
            }
            Node::Has { operand, field } => {
                let object = self.eval(operand, scope)?;
                match &*object {
                    Value::Map(map) => Ok(Cow::Owned(Value::Bool(map.get_str(field).is_some()))),
                    other => Err(no_overload("has", &[other])),
                }
            }
            Node::Call(call) => self.eval_call(call, scope).map(Cow::Owned),
            Node::Unary { op, operand } => {
                let value = self.eval(operand, scope)?;
                match (op, &*value) {
                    (UnaryOp::Not, Value::Bool(flag)) => Ok(Value::Bool(!flag)),
                    (UnaryOp::Negate, Value::Int(number)) => number
                        .checked_neg()
                        .map(Value::Int)
                        .ok_or_else(|| EvalError::new("integer overflow in negation")),
                    (UnaryOp::Negate, Value::Double(number)) => Ok(Value::Double(-number)),
                    (UnaryOp::Not, other) => Err(no_overload("!_", &[other])),
                    (UnaryOp::Negate, other) => Err(no_overload("-_", &[other])),
                }
                .map(Cow::Owned)
            }
            Node::Logical { .. } => match self.eval_bool_node(node, scope) {
                Ok(flag) => Ok(Cow::Owned(Value::Bool(flag))),
                Err(other) => *other,
            },
            Node::Binary { op, left, right } => {
                let left_slot;
                let left = operand!(self, left, scope, left_slot, Err);
                let right_slot;
                let right = operand!(self, right, scope, right_slot, Err);
                self.charge_work(&[left, right])?;
                self.charge_built(binary_operation(*op, left, right))
                    .map(Cow::Owned)
            }
            Node::Conditional(parts) => {
                let [condition, if_true, if_false] = &**parts;
                match &*self.eval(condition, scope)? {
                    Value::Bool(true) => self.eval(if_true, scope),
                    Value::Bool(false) => self.eval(if_false, scope),
                    other => Err(no_overload("_?_:_", &[other])),
                }
            }
            Node::Index { operand, index } => {
                let container = self.eval(operand, scope)?;
                let key = self.eval(index, scope)?;
                select_from(container, |container| index_value(container, &key))
            }
            Node::List(elements) => {
                let mut values = Vec::with_capacity(elements.len());
                for element in elements {
                    values.push(self.eval(element, scope)?.into_owned());
                }
                Ok(Cow::Owned(Value::List(Arc::from(values))))
            }
            Node::Map(entries) => {
                let mut map = ValueMap::new();
                for (key_node, value_node) in entries {
                    let key = self.eval(key_node, scope)?;
                    let value = self.eval(value_node, scope)?;
                    let Some(map_key) = MapKey::from_value(&key) else {
                        return Err(EvalError::new(format!(
                            "unsupported key type: {}",
                            key.type_name()
                        )));
                    };
                    if !map.insert(map_key, value.into_owned()) {
                        return Err(EvalError::new("Failed with repeated key"));
                    }
                }
                Ok(Cow::Owned(Value::Map(Arc::new(map))))
            }
            Node::Struct(type_name) => Err(EvalError::new(format!(
                "message construction is not supported: {type_name}"
            ))),
            Node::Comprehension(comprehension) => self
                .eval_comprehension(comprehension, scope)
                .map(Cow::Owned),
        }
    }

    /// Evaluates a selection chain whose root needs no qualified-name resolution.
    fn eval_unqualified<'v>(&self, node: &'v Node, scope: Scope<'v>) -> Evaluated<'v>
    where
        'a: 'v,
    {
        match node {
            Node::Select { operand, field, .. } => self.guarded(|| {
                self.count_steps(1)?;
                let object = self.eval_unqualified(operand, scope)?;
                select_from(object, |object| select_field(object, field))
            }),
            other => self.eval(other, scope),
        }
    }

    /// Evaluates a call whose dispatch gives a boolean (see [`is_boolean`]); the result
    /// is an error, a boolean, or (never, in fact) another value.
    fn eval_call_bool<'v>(&self, call: &'v Call, scope: Scope<'v>) -> Truth<'v>
    where
        'a: 'v,
    {
        let general = |result: EvalResult| -> Truth<'v> {
            match result {
                Ok(Value::Bool(flag)) => Ok(flag),
                Ok(other) => Err(Box::new(Ok(Cow::Owned(other)))),
                Err(error) => Err(Box::new(Err(error))),
            }
        };
        let [first, second] = &*call.args else {
            return general(self.eval_call(call, scope));
        };
        let fail = |error: EvalError| -> Truth<'v> { Err(Box::new(Err(error))) };
        let first_slot;
        let first = operand!(self, first, scope, first_slot, fail);
        let second_slot;
        let second = operand!(self, second, scope, second_slot, fail);
        if let Err(error) = self.charge_call(call, &[first, second]) {
            return fail(error);
        }
        let fast = match (call.dispatch, first, second) {
            (Dispatch::Contains, Value::String(text), Value::String(part)) => {
                Some(text.contains(&**part))
            }
            (Dispatch::StartsWith, Value::String(text), Value::String(part)) => {
                Some(text.starts_with(&**part))
            }
            (Dispatch::EndsWith, Value::String(text), Value::String(part)) => {
                Some(text.ends_with(&**part))
            }
            (Dispatch::Matches, Value::String(text), Value::String(_)) => match &call.regex {
                Some(Ok(regex)) => Some(regex.is_match(text)),
                _ => None,
            },
            _ => None,
        };
        match fast {
            Some(flag) => Ok(flag),
            None => general(self.charge_built(apply(call, &[first, second]))),
        }
    }

    fn eval_call<'v>(&self, call: &'v Call, scope: Scope<'v>) -> EvalResult
    where
        'a: 'v,
    {
        match &*call.args {
            [] => self.run_call(call, &[]),
            [first] => {
                let first = self.eval(first, scope)?;
                self.run_call(call, &[&*first])
            }
            [first, second] => {
                let first = self.eval(first, scope)?;
                let second = self.eval(second, scope)?;
                self.run_call(call, &[&*first, &*second])
            }
            [first, second, third] => {
                let first = self.eval(first, scope)?;
                let second = self.eval(second, scope)?;
                let third = self.eval(third, scope)?;
                self.run_call(call, &[&*first, &*second, &*third])
            }
            args => {
                let mut values = Vec::with_capacity(args.len());
                for argument in args {
                    values.push(self.eval(argument, scope)?);
                }
                let all: Vec<&Value> = values.iter().map(|value| &**value).collect();
                self.run_call(call, &all)
            }
        }
    }

    fn eval_comprehension<'v>(
        &self,
        comprehension: &'v PreparedComprehension,
        scope: Scope<'v>,
    ) -> EvalResult
    where
        'a: 'v,
    {
        let mut accumulator = Accumulator::new();
        match self.run_comprehension(comprehension, scope, &mut accumulator) {
            Flow::Done(flag) => return Ok(Value::Bool(flag)),
            Flow::Failed => return Err(accumulator.take_failure()),
            Flow::Continue => {}
        }
        if let Some(error) = accumulator.first_error {
            return Err(error);
        }
        self.charge_built(Ok(match comprehension.kind {
            ComprehensionKind::All => Value::Bool(true),
            ComprehensionKind::Exists => Value::Bool(false),
            ComprehensionKind::ExistsOne => Value::Bool(accumulator.matches == 1),
            ComprehensionKind::Map
            | ComprehensionKind::Filter
            | ComprehensionKind::TransformList => Value::List(Arc::from(accumulator.results)),
            ComprehensionKind::TransformMap => Value::Map(Arc::new(accumulator.result_map)),
        }))
    }

    /// `all`, `exists` or `exists_one`, whose result is a boolean.
    fn eval_quantifier<'v>(
        &self,
        comprehension: &'v PreparedComprehension,
        scope: Scope<'v>,
    ) -> Result<bool, EvalError>
    where
        'a: 'v,
    {
        let kind = comprehension.kind;
        if matches!(kind, ComprehensionKind::All | ComprehensionKind::Exists)
            && !comprehension.two_variables
            && comprehension.filter.is_none()
        {
            let range = self.eval(&comprehension.range, scope)?;
            if let Value::List(elements) = &*range {
                return self.quantify_list(comprehension, scope, elements);
            }
        }
        let mut accumulator = Accumulator::new();
        match self.run_comprehension(comprehension, scope, &mut accumulator) {
            Flow::Done(flag) => return Ok(flag),
            Flow::Failed => return Err(accumulator.take_failure()),
            Flow::Continue => {}
        }
        if let Some(error) = accumulator.first_error {
            return Err(error);
        }
        Ok(match comprehension.kind {
            ComprehensionKind::All => true,
            ComprehensionKind::ExistsOne => accumulator.matches == 1,
            _ => false,
        })
    }

    /// `all` or `exists` with one variable over a list: the common policy quantifier,
    /// in a loop of its own. It gives exactly what [`Machine::iterate`] would: the
    /// decisive value as soon as an item gives it, otherwise the first error, otherwise
    /// the non-decisive value.
    fn quantify_list<'v>(
        &self,
        comprehension: &'v PreparedComprehension,
        scope: Scope<'v>,
        elements: &[Value],
    ) -> Result<bool, EvalError>
    where
        'a: 'v,
    {
        let decisive = comprehension.kind == ComprehensionKind::Exists;
        let mut first_error: Option<EvalError> = None;
        for element in elements {
            let iterations = self.iterations.get().saturating_add(1);
            self.iterations.set(iterations);
            if iterations > MAX_COMPREHENSION_ITERATIONS {
                return Err(EvalError::new(
                    "comprehension exceeded the iteration limit (too much work)",
                ));
            }
            let frame = Env {
                value: element,
                parent: scope,
            };
            match self.eval_bool(&comprehension.body, Some(&frame)) {
                Ok(flag) if flag == decisive => return Ok(decisive),
                Ok(_) => {}
                Err(other) => {
                    if first_error.is_none() {
                        first_error = Some(match *other {
                            Ok(value) => no_overload(comprehension.kind.name(), &[&value]),
                            Err(error) => error,
                        });
                    }
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(!decisive),
        }
    }

    /// Evaluates the range and runs the iterations; `Continue` when every item was
    /// visited, the outcome is then in the accumulator.
    fn run_comprehension<'v>(
        &self,
        comprehension: &'v PreparedComprehension,
        scope: Scope<'v>,
        accumulator: &mut Accumulator,
    ) -> Flow
    where
        'a: 'v,
    {
        let range = match self.eval(&comprehension.range, scope) {
            Ok(range) => range,
            Err(error) => return accumulator.fail(error),
        };
        // Each item binds the first variable and, in the two-variable forms, the second:
        // one-variable macros bind the element of a list, or the key of a map.
        match &*range {
            Value::List(elements) => {
                for (index, element) in elements.iter().enumerate() {
                    let flow = if comprehension.two_variables {
                        let position = Value::Int(index as i64);
                        self.iterate(comprehension, scope, &position, Some(element), accumulator)
                    } else {
                        self.iterate(comprehension, scope, element, None, accumulator)
                    };
                    if flow != Flow::Continue {
                        return flow;
                    }
                }
            }
            Value::Map(map) => {
                for (key, value) in map.iter() {
                    let key = key.to_value();
                    let second = comprehension.two_variables.then_some(value);
                    let flow = self.iterate(comprehension, scope, &key, second, accumulator);
                    if flow != Flow::Continue {
                        return flow;
                    }
                }
            }
            other => return accumulator.fail(no_overload(comprehension.kind.name(), &[other])),
        }
        Flow::Continue
    }

    /// Runs one iteration.
    fn iterate(
        &self,
        comprehension: &PreparedComprehension,
        scope: Scope<'_>,
        first: &Value,
        second: Option<&Value>,
        accumulator: &mut Accumulator,
    ) -> Flow {
        let iterations = self.iterations.get().saturating_add(1);
        self.iterations.set(iterations);
        if iterations > MAX_COMPREHENSION_ITERATIONS {
            return accumulator.fail(EvalError::new(
                "comprehension exceeded the iteration limit (too much work)",
            ));
        }
        let outer = Env {
            value: first,
            parent: scope,
        };
        let inner;
        let frame = match second {
            Some(second) => {
                inner = Env {
                    value: second,
                    parent: Some(&outer),
                };
                &inner
            }
            None => &outer,
        };
        let outcome = self.eval_iteration(comprehension, Some(frame));
        let kind = comprehension.kind;
        match kind {
            ComprehensionKind::All | ComprehensionKind::Exists => {
                let short_circuit_value = kind == ComprehensionKind::Exists;
                match outcome {
                    Outcome::Bool(flag) if flag == short_circuit_value => {
                        return Flow::Done(short_circuit_value);
                    }
                    Outcome::Bool(_) | Outcome::Skipped => {}
                    Outcome::Value(other) => {
                        accumulator
                            .first_error
                            .get_or_insert_with(|| no_overload(kind.name(), &[&other]));
                    }
                    Outcome::Failed(error) => {
                        accumulator.first_error.get_or_insert(error);
                    }
                }
            }
            ComprehensionKind::ExistsOne => match outcome {
                Outcome::Bool(true) => accumulator.matches += 1,
                Outcome::Bool(false) | Outcome::Skipped => {}
                Outcome::Value(other) => {
                    return accumulator.fail(no_overload(kind.name(), &[&other]));
                }
                Outcome::Failed(error) => return accumulator.fail(error),
            },
            ComprehensionKind::Filter => match outcome {
                Outcome::Bool(true) => accumulator.results.push(first.clone()),
                Outcome::Bool(false) | Outcome::Skipped => {}
                Outcome::Value(other) => {
                    return accumulator.fail(no_overload(kind.name(), &[&other]));
                }
                Outcome::Failed(error) => return accumulator.fail(error),
            },
            ComprehensionKind::Map | ComprehensionKind::TransformList => match outcome {
                Outcome::Value(value) => accumulator.results.push(value.into_owned()),
                Outcome::Bool(flag) => accumulator.results.push(Value::Bool(flag)),
                Outcome::Skipped => {}
                Outcome::Failed(error) => return accumulator.fail(error),
            },
            ComprehensionKind::TransformMap => {
                let value = match outcome {
                    Outcome::Value(value) => value.into_owned(),
                    Outcome::Bool(flag) => Value::Bool(flag),
                    Outcome::Skipped => return Flow::Continue,
                    Outcome::Failed(error) => return accumulator.fail(error),
                };
                let Some(key) = MapKey::from_value(first) else {
                    return accumulator.fail(no_overload(kind.name(), &[first]));
                };
                accumulator.result_map.insert(key, value);
            }
        }
        Flow::Continue
    }

    /// Evaluates one iteration's filter and body.
    fn eval_iteration<'v>(
        &self,
        comprehension: &'v PreparedComprehension,
        scope: Scope<'v>,
    ) -> Outcome<'v>
    where
        'a: 'v,
    {
        if let Some(filter) = &comprehension.filter {
            match self.eval_bool(filter, scope) {
                Ok(true) => {}
                Ok(false) => return Outcome::Skipped,
                Err(other) => {
                    return Outcome::Failed(match *other {
                        Ok(value) => no_overload("filter", &[&value]),
                        Err(error) => error,
                    });
                }
            }
        }
        let predicate = matches!(
            comprehension.kind,
            ComprehensionKind::All
                | ComprehensionKind::Exists
                | ComprehensionKind::ExistsOne
                | ComprehensionKind::Filter
        );
        if predicate {
            match self.eval_bool(&comprehension.body, scope) {
                Ok(flag) => Outcome::Bool(flag),
                Err(other) => match *other {
                    Ok(value) => Outcome::Value(value),
                    Err(error) => Outcome::Failed(error),
                },
            }
        } else {
            match self.eval(&comprehension.body, scope) {
                Ok(value) => Outcome::Value(value),
                Err(error) => Outcome::Failed(error),
            }
        }
    }

    /// Evaluates a node whose value is wanted as a condition: a boolean comes back
    /// without being wrapped in a value; anything else (another value, or an error)
    /// comes back as it is.
    #[inline]
    fn eval_bool<'v>(&self, node: &'v Node, scope: Scope<'v>) -> Truth<'v>
    where
        'a: 'v,
    {
        // Two shapes that make up most of a policy's comprehension bodies are evaluated
        // here, without entering the general evaluator: a comparison of two leaves and a
        // string test (`startsWith`…). Steps and errors are exactly those of
        // `eval_bool_node`; no stack check is needed, as leaves do not recurse.
        match node {
            Node::Binary { op, left, right }
                if op.is_relation() && is_leaf(left) && is_leaf(right) =>
            {
                let fail = |error: EvalError| -> Truth<'v> { Err(Box::new(Err(error))) };
                if let Err(error) = self.count_steps(1) {
                    return fail(error);
                }
                let left = match self.leaf(left, scope) {
                    Ok(value) => value,
                    Err(miss) => return fail(leaf_error(miss, left, scope)),
                };
                let right_value = match self.leaf(right, scope) {
                    Ok(value) => value,
                    Err(miss) => return fail(leaf_error(miss, right, scope)),
                };
                if let Err(error) = self.charge_work(&[left, right_value]) {
                    return fail(error);
                }
                return relation(*op, left, right_value).or_else(fail);
            }
            Node::Call(call) if is_boolean_dispatch(call.dispatch) => {
                if let Err(error) = self.count_steps(1) {
                    return Err(Box::new(Err(error)));
                }
                return self.eval_call_bool(call, scope);
            }
            _ => {}
        }
        if is_boolean(node) {
            return self.guarded(|| self.eval_bool_node(node, scope));
        }
        match self.eval(node, scope) {
            Ok(value) => match *value {
                Value::Bool(flag) => Ok(flag),
                _ => Err(Box::new(Ok(value))),
            },
            Err(error) => Err(Box::new(Err(error))),
        }
    }

    /// Evaluates a node for which [`is_boolean`] holds.
    #[inline(never)]
    fn eval_bool_node<'v>(&self, node: &'v Node, scope: Scope<'v>) -> Truth<'v>
    where
        'a: 'v,
    {
        let fail = |error: EvalError| -> Truth<'v> { Err(Box::new(Err(error))) };
        if let Err(error) = self.count_steps(1) {
            return fail(error);
        }
        match node {
            Node::Logical { op, left, right } => {
                // Logical operators are commutative over errors: a decisive operand on
                // either side wins even when the other side failed.
                let decisive = *op == BinaryOp::Or;
                let left_value = self.eval_bool(left, scope);
                if matches!(left_value, Ok(flag) if flag == decisive) {
                    return Ok(decisive);
                }
                let right_value = self.eval_bool(right, scope);
                if matches!(right_value, Ok(flag) if flag == decisive) {
                    return Ok(decisive);
                }
                match (left_value, right_value) {
                    (Ok(_), Ok(_)) => Ok(!decisive),
                    (Err(left), right) => match *left {
                        Err(error) => fail(error),
                        Ok(left) => match right {
                            Ok(flag) => {
                                fail(no_overload(op.symbol(), &[&left, &Value::Bool(flag)]))
                            }
                            Err(right) => match *right {
                                Err(error) => fail(error),
                                Ok(right) => fail(no_overload(op.symbol(), &[&left, &right])),
                            },
                        },
                    },
                    (Ok(flag), Err(right)) => match *right {
                        Err(error) => fail(error),
                        Ok(right) => fail(no_overload(op.symbol(), &[&Value::Bool(flag), &right])),
                    },
                }
            }
            Node::Binary { op, left, right } => {
                let left_slot;
                let left = operand!(self, left, scope, left_slot, fail);
                let right_slot;
                let right = operand!(self, right, scope, right_slot, fail);
                if let Err(error) = self.charge_work(&[left, right]) {
                    return fail(error);
                }
                relation(*op, left, right).or_else(fail)
            }
            Node::Unary { .. } | Node::Has { .. } => {
                let (Node::Unary { operand, .. } | Node::Has { operand, .. }) = node else {
                    return fail(not_boolean());
                };
                let Node::Has { field, .. } = node else {
                    // `!`: the only unary operator with a boolean result.
                    return match self.eval_bool(operand, scope) {
                        Ok(flag) => Ok(!flag),
                        Err(other) => match *other {
                            Ok(value) => fail(no_overload("!_", &[&value])),
                            Err(error) => fail(error),
                        },
                    };
                };
                let object = match self.eval(operand, scope) {
                    Ok(value) => value,
                    Err(error) => return fail(error),
                };
                match &*object {
                    Value::Map(map) => Ok(map.get_str(field).is_some()),
                    other => fail(no_overload("has", &[other])),
                }
            }
            Node::Call(call) => self.eval_call_bool(call, scope),
            Node::Comprehension(comprehension) => {
                self.eval_quantifier(comprehension, scope).or_else(fail)
            }
            _ => fail(not_boolean()),
        }
    }
}

/// Calls a function with its target (for a member call) and arguments, through the
/// dispatch chosen when the program was prepared.
fn apply(call: &Call, all: &[&Value]) -> EvalResult {
    match (call.dispatch, all) {
        (Dispatch::Size, [Value::List(elements)]) => Ok(Value::Int(elements.len() as i64)),
        (Dispatch::Size, [Value::Map(map)]) => Ok(Value::Int(map.len() as i64)),
        (Dispatch::Contains, [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.contains(&**part)))
        }
        (Dispatch::StartsWith, [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.starts_with(&**part)))
        }
        (Dispatch::EndsWith, [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.ends_with(&**part)))
        }
        (Dispatch::Matches, [Value::String(text), Value::String(_)]) => match &call.regex {
            Some(Ok(regex)) => Ok(Value::Bool(regex.is_match(text))),
            Some(Err(error)) => Err(error.clone()),
            None => call_function(&call.function, call.has_target, all),
        },
        _ => call_function(&call.function, call.has_target, all),
    }
}

fn select_field<'v>(object: &'v Value, field: &str) -> Result<&'v Value, EvalError> {
    match object {
        Value::Map(map) => map
            .get_str(field)
            .ok_or_else(|| EvalError::new(format!("no such key: '{field}'"))),
        other => Err(EvalError::new(format!(
            "cannot select field '{field}' from a value of type {}",
            other.type_name()
        ))),
    }
}

fn index_value<'v>(container: &'v Value, key: &Value) -> Result<&'v Value, EvalError> {
    match container {
        Value::List(elements) => {
            let index: Option<i128> = match key {
                Value::Int(number) => Some(i128::from(*number)),
                Value::Uint(number) => Some(i128::from(*number)),
                Value::Double(number) if number.fract() == 0.0 && number.is_finite() => {
                    Some(*number as i128)
                }
                _ => None,
            };
            let Some(index) = index else {
                return Err(no_overload("_[_]", &[container, key]));
            };
            usize::try_from(index)
                .ok()
                .and_then(|position| elements.get(position))
                .ok_or_else(|| EvalError::new("index out of bounds"))
        }
        Value::Map(map) => {
            if MapKey::from_value(key).is_none() && !matches!(key, Value::Double(_)) {
                return Err(no_overload("_[_]", &[container, key]));
            }
            map.get(key).ok_or_else(|| EvalError::new("no such key"))
        }
        other => Err(no_overload("_[_]", &[other, key])),
    }
}

/// A relational operator (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`), whose result is a
/// boolean.
#[inline]
fn relation(op: BinaryOp, left: &Value, right: &Value) -> Result<bool, EvalError> {
    // The common policy comparisons (two numbers of one type) first, without the
    // general checks below; the results are the same as the general path's.
    let ordering = match (left, right) {
        (Value::Int(left), Value::Int(right)) => Some(left.cmp(right)),
        (Value::Double(left), Value::Double(right)) => {
            let Some(ordering) = left.partial_cmp(right) else {
                // A NaN operand: unequal to everything, and every ordering is false.
                return Ok(op == BinaryOp::NotEqual);
            };
            Some(ordering)
        }
        _ => None,
    };
    if let Some(ordering) = ordering {
        match op {
            BinaryOp::Equal => return Ok(ordering == Ordering::Equal),
            BinaryOp::NotEqual => return Ok(ordering != Ordering::Equal),
            BinaryOp::Less => return Ok(ordering == Ordering::Less),
            BinaryOp::LessEqual => return Ok(ordering != Ordering::Greater),
            BinaryOp::Greater => return Ok(ordering == Ordering::Greater),
            BinaryOp::GreaterEqual => return Ok(ordering != Ordering::Less),
            _ => {}
        }
    }
    general_relation(op, left, right)
}

/// [`relation`] for every other pair of operands.
#[inline(never)]
fn general_relation(op: BinaryOp, left: &Value, right: &Value) -> Result<bool, EvalError> {
    match op {
        BinaryOp::Equal => Ok(left.cel_equals(right)),
        BinaryOp::NotEqual => Ok(!left.cel_equals(right)),

        BinaryOp::Less | BinaryOp::LessEqual | BinaryOp::Greater | BinaryOp::GreaterEqual => {
            let ordering = left.cel_compare(right);
            let orderable = |value: &Value| {
                matches!(
                    value,
                    Value::Bool(_)
                        | Value::Int(_)
                        | Value::Uint(_)
                        | Value::Double(_)
                        | Value::String(_)
                        | Value::Bytes(_)
                        | Value::Timestamp(_)
                        | Value::Duration(_)
                )
            };
            let numeric =
                |value: &Value| matches!(value, Value::Int(_) | Value::Uint(_) | Value::Double(_));
            let same_kind = std::mem::discriminant(left) == std::mem::discriminant(right)
                || (numeric(left) && numeric(right));
            if !(orderable(left) && orderable(right) && same_kind) {
                return Err(no_overload(op.symbol(), &[left, right]));
            }
            // A NaN operand makes every ordering comparison false.
            let Some(ordering) = ordering else {
                return Ok(false);
            };
            Ok(match op {
                BinaryOp::Less => ordering == Ordering::Less,
                BinaryOp::LessEqual => ordering != Ordering::Greater,
                BinaryOp::Greater => ordering == Ordering::Greater,
                _ => ordering != Ordering::Less,
            })
        }
        BinaryOp::In => match right {
            Value::List(elements) => Ok(elements.iter().any(|element| element.cel_equals(left))),
            Value::Map(map) => Ok(map.get(left).is_some()),
            other => Err(no_overload("@in", &[left, other])),
        },
        _ => Err(no_overload(op.symbol(), &[left, right])),
    }
}

fn binary_operation(op: BinaryOp, left: &Value, right: &Value) -> EvalResult {
    match op {
        BinaryOp::Equal
        | BinaryOp::NotEqual
        | BinaryOp::Less
        | BinaryOp::LessEqual
        | BinaryOp::Greater
        | BinaryOp::GreaterEqual
        | BinaryOp::In => relation(op, left, right).map(Value::Bool),
        BinaryOp::Add => add(left, right),
        BinaryOp::Subtract => subtract(left, right),
        BinaryOp::Multiply => match (left, right) {
            (Value::Int(a), Value::Int(b)) => a
                .checked_mul(*b)
                .map(Value::Int)
                .ok_or_else(|| EvalError::new("integer overflow in multiplication")),
            (Value::Uint(a), Value::Uint(b)) => a
                .checked_mul(*b)
                .map(Value::Uint)
                .ok_or_else(|| EvalError::new("unsigned integer overflow in multiplication")),
            (Value::Double(a), Value::Double(b)) => Ok(Value::Double(a * b)),
            _ => Err(no_overload("*", &[left, right])),
        },
        BinaryOp::Divide => match (left, right) {
            (Value::Int(_), Value::Int(0)) | (Value::Uint(_), Value::Uint(0)) => {
                Err(EvalError::new("division by zero"))
            }
            (Value::Int(a), Value::Int(b)) => a
                .checked_div(*b)
                .map(Value::Int)
                .ok_or_else(|| EvalError::new("integer overflow in division")),
            (Value::Uint(a), Value::Uint(b)) => Ok(Value::Uint(a / b)),
            (Value::Double(a), Value::Double(b)) => Ok(Value::Double(a / b)),
            _ => Err(no_overload("/", &[left, right])),
        },
        BinaryOp::Remainder => match (left, right) {
            (Value::Int(_), Value::Int(0)) | (Value::Uint(_), Value::Uint(0)) => {
                Err(EvalError::new("modulus by zero"))
            }
            (Value::Int(a), Value::Int(b)) => a
                .checked_rem(*b)
                .map(Value::Int)
                .ok_or_else(|| EvalError::new("integer overflow in modulus")),
            (Value::Uint(a), Value::Uint(b)) => Ok(Value::Uint(a % b)),
            _ => Err(no_overload("%", &[left, right])),
        },
        BinaryOp::And | BinaryOp::Or => Err(no_overload(op.symbol(), &[left, right])),
    }
}

fn timestamp_overflow() -> EvalError {
    EvalError::new("timestamp out of range")
}

fn duration_overflow() -> EvalError {
    EvalError::new("duration out of range")
}

fn add(left: &Value, right: &Value) -> EvalResult {
    match (left, right) {
        (Value::Int(a), Value::Int(b)) => a
            .checked_add(*b)
            .map(Value::Int)
            .ok_or_else(|| EvalError::new("integer overflow in addition")),
        (Value::Uint(a), Value::Uint(b)) => a
            .checked_add(*b)
            .map(Value::Uint)
            .ok_or_else(|| EvalError::new("unsigned integer overflow in addition")),
        (Value::Double(a), Value::Double(b)) => Ok(Value::Double(a + b)),
        (Value::String(a), Value::String(b)) => {
            if a.len() + b.len() > MAX_VALUE_BYTES {
                return Err(EvalError::new("string result is too large"));
            }
            let mut text = String::with_capacity(a.len() + b.len());
            text.push_str(a);
            text.push_str(b);
            Ok(Value::String(Arc::from(text)))
        }
        (Value::Bytes(a), Value::Bytes(b)) => {
            if a.len() + b.len() > MAX_VALUE_BYTES {
                return Err(EvalError::new("bytes result is too large"));
            }
            Ok(Value::Bytes(a.iter().chain(b.iter()).copied().collect()))
        }
        (Value::List(a), Value::List(b)) => {
            if a.len() + b.len() > MAX_LIST_LENGTH {
                return Err(EvalError::new("list result is too large"));
            }
            Ok(Value::List(a.iter().chain(b.iter()).cloned().collect()))
        }
        (Value::Timestamp(t), Value::Duration(d)) | (Value::Duration(d), Value::Timestamp(t)) => {
            Timestamp::from_unix_nanos(t.unix_nanos() + d.nanos())
                .map(Value::Timestamp)
                .ok_or_else(timestamp_overflow)
        }
        (Value::Duration(a), Value::Duration(b)) => Duration::from_nanos(a.nanos() + b.nanos())
            .map(Value::Duration)
            .ok_or_else(duration_overflow),
        _ => Err(no_overload("+", &[left, right])),
    }
}

fn subtract(left: &Value, right: &Value) -> EvalResult {
    match (left, right) {
        (Value::Int(a), Value::Int(b)) => a
            .checked_sub(*b)
            .map(Value::Int)
            .ok_or_else(|| EvalError::new("integer overflow in subtraction")),
        (Value::Uint(a), Value::Uint(b)) => a
            .checked_sub(*b)
            .map(Value::Uint)
            .ok_or_else(|| EvalError::new("unsigned integer overflow in subtraction")),
        (Value::Double(a), Value::Double(b)) => Ok(Value::Double(a - b)),
        (Value::Timestamp(a), Value::Timestamp(b)) => {
            // The reference implementation computes the difference as a signed 64-bit
            // nanosecond count, so differences beyond about 292 years are range errors.
            let difference = a.unix_nanos() - b.unix_nanos();
            if i64::try_from(difference).is_err() {
                return Err(duration_overflow());
            }
            Duration::from_nanos(difference)
                .map(Value::Duration)
                .ok_or_else(duration_overflow)
        }
        (Value::Timestamp(t), Value::Duration(d)) => {
            Timestamp::from_unix_nanos(t.unix_nanos() - d.nanos())
                .map(Value::Timestamp)
                .ok_or_else(timestamp_overflow)
        }
        (Value::Duration(a), Value::Duration(b)) => Duration::from_nanos(a.nanos() - b.nanos())
            .map(Value::Duration)
            .ok_or_else(duration_overflow),
        _ => Err(no_overload("-", &[left, right])),
    }
}

/// Formats a double the way CEL's reference implementation does (Go's `%g` with the
/// shortest representation): plain notation for exponents in [-4, 21), else scientific.
pub(crate) fn format_double(number: f64) -> String {
    if number.is_nan() {
        return "NaN".to_string();
    }
    if number.is_infinite() {
        return if number > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if number == 0.0 {
        return if number.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let scientific = format!("{:e}", number.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if number < 0.0 { "-" } else { "" };
    if !(-4..21).contains(&exponent) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{fraction}e{exponent_sign}{:02}",
            exponent.abs()
        );
    }
    let digit_count = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let point = exponent + 1;
    let text = if point <= 0 {
        format!(
            "0.{}{digits}",
            "0".repeat(usize::try_from(-point).unwrap_or(0))
        )
    } else if point >= digit_count {
        format!(
            "{digits}{}",
            "0".repeat(usize::try_from(point - digit_count).unwrap_or(0))
        )
    } else {
        let (whole, fraction) = digits.split_at(usize::try_from(point).unwrap_or(0));
        format!("{whole}.{fraction}")
    };
    format!("{sign}{text}")
}

/// Calls a function by name; `all` is the target (for a member call) followed by the
/// arguments.
fn call_function(function: &str, has_target: bool, all: &[&Value]) -> EvalResult {
    let unsupported = || no_overload(function, all);
    match (function, all) {
        ("size", [value]) => match value {
            Value::String(text) => Ok(Value::Int(text.chars().count() as i64)),
            Value::Bytes(bytes) => Ok(Value::Int(bytes.len() as i64)),
            Value::List(elements) => Ok(Value::Int(elements.len() as i64)),
            Value::Map(map) => Ok(Value::Int(map.len() as i64)),
            _ => Err(unsupported()),
        },
        ("contains", [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.contains(&**part)))
        }
        ("startsWith", [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.starts_with(&**part)))
        }
        ("endsWith", [Value::String(text), Value::String(part)]) => {
            Ok(Value::Bool(text.ends_with(&**part)))
        }
        ("matches", [Value::String(text), Value::String(pattern)]) => {
            Ok(Value::Bool(compile_regex(pattern)?.is_match(text)))
        }
        ("lowerAscii", [Value::String(text)]) => {
            Ok(Value::String(Arc::from(text.to_ascii_lowercase())))
        }
        ("upperAscii", [Value::String(text)]) => {
            Ok(Value::String(Arc::from(text.to_ascii_uppercase())))
        }
        ("trim", [Value::String(text)]) => Ok(Value::string(text.trim())),
        ("replace", [Value::String(text), Value::String(old), Value::String(new)]) => {
            replace(text, old, new, -1)
        }
        (
            "replace",
            [
                Value::String(text),
                Value::String(old),
                Value::String(new),
                Value::Int(limit),
            ],
        ) => replace(text, old, new, *limit),
        ("split", [Value::String(text), Value::String(separator)]) => split(text, separator, -1),
        (
            "split",
            [
                Value::String(text),
                Value::String(separator),
                Value::Int(limit),
            ],
        ) => split(text, separator, *limit),
        ("join", [Value::List(elements)]) => join(elements, ""),
        ("join", [Value::List(elements), Value::String(separator)]) => join(elements, separator),
        ("indexOf", [Value::String(text), Value::String(part)]) => index_of(text, part, 0, false),
        ("indexOf", [Value::String(text), Value::String(part), Value::Int(start)]) => {
            index_of(text, part, *start, false)
        }
        ("lastIndexOf", [Value::String(text), Value::String(part)]) => {
            let length = text.chars().count() as i64;
            index_of(text, part, length, true)
        }
        ("lastIndexOf", [Value::String(text), Value::String(part), Value::Int(start)]) => {
            index_of(text, part, *start, true)
        }
        ("substring", [Value::String(text), Value::Int(start)]) => {
            let length = text.chars().count() as i64;
            substring(text, *start, length)
        }
        ("substring", [Value::String(text), Value::Int(start), Value::Int(end)]) => {
            substring(text, *start, *end)
        }
        ("charAt", [Value::String(text), Value::Int(index)]) => {
            let length = text.chars().count() as i64;
            if *index < 0 || *index > length {
                return Err(EvalError::new("index out of range"));
            }
            Ok(text
                .chars()
                .nth(usize::try_from(*index).unwrap_or(usize::MAX))
                .map(|character| Value::String(Arc::from(character.to_string())))
                .unwrap_or_else(|| Value::string("")))
        }
        (
            "getFullYear" | "getMonth" | "getDate" | "getDayOfMonth" | "getDayOfWeek"
            | "getDayOfYear" | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds",
            [Value::Timestamp(timestamp), rest @ ..],
        ) if has_target => {
            let offset = match rest {
                [] => 0,
                [Value::String(zone)] => time::parse_time_zone_offset(zone).ok_or_else(|| {
                    EvalError::new(
                        "unsupported time zone (use UTC or a fixed offset such as +01:00)",
                    )
                })?,
                _ => return Err(unsupported()),
            };
            let civil = timestamp.civil(offset);
            let result = match function {
                "getFullYear" => civil.year,
                "getMonth" => civil.month - 1,
                "getDate" => civil.day,
                "getDayOfMonth" => civil.day - 1,
                "getDayOfWeek" => civil.day_of_week,
                "getDayOfYear" => civil.day_of_year,
                "getHours" => civil.hour,
                "getMinutes" => civil.minute,
                "getSeconds" => civil.second,
                _ => civil.nanos / 1_000_000,
            };
            Ok(Value::Int(i64::try_from(result).unwrap_or(0)))
        }
        (
            "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds",
            [Value::Duration(duration)],
        ) if has_target => {
            let nanos = duration.nanos();
            let result = match function {
                "getHours" => nanos / (3600 * NANOS_PER_SECOND),
                "getMinutes" => nanos / (60 * NANOS_PER_SECOND),
                "getSeconds" => nanos / NANOS_PER_SECOND,
                _ => (nanos % NANOS_PER_SECOND) / 1_000_000,
            };
            Ok(Value::Int(i64::try_from(result).unwrap_or(0)))
        }
        (_, [value]) if !has_target => convert(function, value),
        _ => {
            let known = matches!(
                function,
                "size"
                    | "contains"
                    | "startsWith"
                    | "endsWith"
                    | "matches"
                    | "lowerAscii"
                    | "upperAscii"
                    | "trim"
                    | "replace"
                    | "split"
                    | "join"
                    | "indexOf"
                    | "lastIndexOf"
                    | "substring"
                    | "charAt"
                    | "getFullYear"
                    | "getMonth"
                    | "getDate"
                    | "getDayOfMonth"
                    | "getDayOfWeek"
                    | "getDayOfYear"
                    | "getHours"
                    | "getMinutes"
                    | "getSeconds"
                    | "getMilliseconds"
            );
            if known {
                Err(unsupported())
            } else {
                Err(EvalError::new(format!("unknown function: {function}")))
            }
        }
    }
}

fn convert(function: &str, value: &Value) -> EvalResult {
    let unsupported = || no_overload(function, &[value]);
    match function {
        "int" => match value {
            Value::Int(number) => Ok(Value::Int(*number)),
            Value::Uint(number) => i64::try_from(*number)
                .map(Value::Int)
                .map_err(|_| EvalError::new("integer overflow in int(uint)")),
            Value::Double(number) => {
                if number.is_finite()
                    && *number > -9_223_372_036_854_775_809.0
                    && *number < 9_223_372_036_854_775_807.0
                {
                    Ok(Value::Int(number.trunc() as i64))
                } else {
                    Err(EvalError::new("integer overflow in int(double)"))
                }
            }
            Value::String(text) => text
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| EvalError::new("cannot convert string to int")),
            Value::Timestamp(timestamp) => i64::try_from(timestamp.unix_seconds())
                .map(Value::Int)
                .map_err(|_| EvalError::new("integer overflow in int(timestamp)")),
            _ => Err(unsupported()),
        },
        "uint" => match value {
            Value::Uint(number) => Ok(Value::Uint(*number)),
            Value::Int(number) => u64::try_from(*number)
                .map(Value::Uint)
                .map_err(|_| EvalError::new("unsigned integer overflow in uint(int)")),
            Value::Double(number) => {
                if number.is_finite() && *number > -1.0 && *number < 18_446_744_073_709_551_615.0 {
                    Ok(Value::Uint(number.trunc() as u64))
                } else {
                    Err(EvalError::new("unsigned integer overflow in uint(double)"))
                }
            }
            Value::String(text) => text
                .parse::<u64>()
                .map(Value::Uint)
                .map_err(|_| EvalError::new("cannot convert string to uint")),
            _ => Err(unsupported()),
        },
        "double" => match value {
            Value::Double(number) => Ok(Value::Double(*number)),
            Value::Int(number) => Ok(Value::Double(*number as f64)),
            Value::Uint(number) => Ok(Value::Double(*number as f64)),
            Value::String(text) => text
                .parse::<f64>()
                .map(Value::Double)
                .map_err(|_| EvalError::new("cannot convert string to double")),
            _ => Err(unsupported()),
        },
        "string" => match value {
            Value::String(text) => Ok(Value::String(text.clone())),
            Value::Int(number) => Ok(Value::String(Arc::from(number.to_string()))),
            Value::Uint(number) => Ok(Value::String(Arc::from(number.to_string()))),
            Value::Double(number) => Ok(Value::String(Arc::from(format_double(*number)))),
            Value::Bool(flag) => Ok(Value::String(Arc::from(flag.to_string()))),
            Value::Bytes(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Ok(Value::string(text)),
                Err(_) => Err(EvalError::new(
                    "invalid UTF-8 in bytes, cannot convert to string",
                )),
            },
            Value::Timestamp(timestamp) => Ok(Value::String(Arc::from(timestamp.to_string()))),
            Value::Duration(duration) => Ok(Value::String(Arc::from(duration.to_string()))),
            _ => Err(unsupported()),
        },
        "bytes" => match value {
            Value::Bytes(bytes) => Ok(Value::Bytes(bytes.clone())),
            Value::String(text) => Ok(Value::Bytes(Arc::from(text.as_bytes()))),
            _ => Err(unsupported()),
        },
        "bool" => match value {
            Value::Bool(flag) => Ok(Value::Bool(*flag)),
            Value::String(text) => match &**text {
                "1" | "t" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
                "0" | "f" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
                _ => Err(EvalError::new("cannot convert string to bool")),
            },
            _ => Err(unsupported()),
        },
        "timestamp" => match value {
            Value::Timestamp(timestamp) => Ok(Value::Timestamp(*timestamp)),
            Value::String(text) => Timestamp::parse(text)
                .map(Value::Timestamp)
                .ok_or_else(|| EvalError::new("cannot parse the string as a timestamp")),
            Value::Int(seconds) => {
                Timestamp::from_unix_nanos(i128::from(*seconds) * NANOS_PER_SECOND)
                    .map(Value::Timestamp)
                    .ok_or_else(timestamp_overflow)
            }
            _ => Err(unsupported()),
        },
        "duration" => match value {
            Value::Duration(duration) => Ok(Value::Duration(*duration)),
            Value::String(text) => Duration::parse(text)
                .map(Value::Duration)
                .ok_or_else(|| EvalError::new("cannot parse the string as a duration")),
            _ => Err(unsupported()),
        },
        "dyn" => Ok(value.clone()),
        "type" => Ok(Value::Type(Arc::from(value.type_name()))),
        _ => Err(EvalError::new(format!("unknown function: {function}"))),
    }
}

fn replace(text: &str, old: &str, new: &str, limit: i64) -> EvalResult {
    let mut output = String::new();
    let mut rest = text;
    let mut replaced: i64 = 0;
    if old.is_empty() {
        // Replacing the empty string inserts `new` between characters, as Go does.
        let mut characters = text.chars();
        loop {
            if limit < 0 || replaced < limit {
                output.push_str(new);
                replaced += 1;
            }
            if output.len() > MAX_VALUE_BYTES {
                return Err(EvalError::new("string result is too large"));
            }
            match characters.next() {
                Some(character) => output.push(character),
                None => break,
            }
        }
        return check_string_size(output);
    }
    while limit < 0 || replaced < limit {
        let Some(position) = rest.find(old) else {
            break;
        };
        output.push_str(&rest[..position]);
        output.push_str(new);
        rest = &rest[position + old.len()..];
        replaced += 1;
        if output.len() > MAX_VALUE_BYTES {
            return Err(EvalError::new("string result is too large"));
        }
    }
    output.push_str(rest);
    check_string_size(output)
}

fn split(text: &str, separator: &str, limit: i64) -> EvalResult {
    if limit == 0 {
        return Ok(Value::List(Arc::from(Vec::new())));
    }
    // A split of a long text could make more parts than any list may hold; refuse that
    // before building them (each part is a value of its own, far larger than its text).
    let too_long = || EvalError::new("list result is too large");
    let parts: Vec<Value> = if separator.is_empty() {
        if text.chars().count() > MAX_LIST_LENGTH {
            return Err(too_long());
        }
        let characters: Vec<char> = text.chars().collect();
        let count = if limit < 0 {
            characters.len()
        } else {
            usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .min(characters.len())
        };
        let mut parts: Vec<Value> = characters
            .iter()
            .take(count.saturating_sub(1))
            .map(|character| Value::String(Arc::from(character.to_string())))
            .collect();
        let rest: String = characters.iter().skip(count.saturating_sub(1)).collect();
        if !rest.is_empty() {
            parts.push(Value::String(Arc::from(rest)));
        }
        parts
    } else if limit < 0 {
        text.split(separator)
            .take(MAX_LIST_LENGTH + 1)
            .map(Value::string)
            .collect()
    } else {
        text.splitn(usize::try_from(limit).unwrap_or(usize::MAX), separator)
            .take(MAX_LIST_LENGTH + 1)
            .map(Value::string)
            .collect()
    };
    if parts.len() > MAX_LIST_LENGTH {
        return Err(too_long());
    }
    Ok(Value::List(Arc::from(parts)))
}

fn join(elements: &[Value], separator: &str) -> EvalResult {
    let mut output = String::new();
    for (index, element) in elements.iter().enumerate() {
        let Value::String(text) = element else {
            return Err(no_overload("join", &[element]));
        };
        if index > 0 {
            output.push_str(separator);
        }
        output.push_str(text);
        if output.len() > MAX_VALUE_BYTES {
            return Err(EvalError::new("string result is too large"));
        }
    }
    check_string_size(output)
}

fn index_of(text: &str, part: &str, start: i64, reverse: bool) -> EvalResult {
    let characters: Vec<char> = text.chars().collect();
    let needle: Vec<char> = part.chars().collect();
    let length = characters.len() as i64;
    if start < 0 || start > length {
        return Err(EvalError::new("index out of range"));
    }
    let start = usize::try_from(start).unwrap_or(0);
    let matches_at = |position: usize| {
        characters
            .get(position..position + needle.len())
            .is_some_and(|window| window == needle.as_slice())
    };
    let found = if reverse {
        (0..=start).rev().find(|position| matches_at(*position))
    } else {
        (start..=characters.len()).find(|position| matches_at(*position))
    };
    Ok(Value::Int(found.map_or(-1, |position| position as i64)))
}

fn substring(text: &str, start: i64, end: i64) -> EvalResult {
    let length = text.chars().count() as i64;
    if start < 0 || start > length || end < start || end > length {
        return Err(EvalError::new("substring range is out of range"));
    }
    let result: String = text
        .chars()
        .skip(usize::try_from(start).unwrap_or(0))
        .take(usize::try_from(end - start).unwrap_or(0))
        .collect();
    Ok(Value::String(Arc::from(result)))
}

#[cfg(test)]
mod tests {
    use super::format_double;

    #[test]
    fn formats_doubles_like_the_reference_implementation() {
        assert_eq!(format_double(123.456), "123.456");
        assert_eq!(format_double(-4.5e-3), "-0.0045");
        assert_eq!(format_double(1e100), "1e+100");
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(1e6), "1000000");
        assert_eq!(format_double(1e-5), "1e-05");
    }
}
