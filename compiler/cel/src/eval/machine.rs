//! The evaluation machine: the budget it counts against, the stack guard, and the walk
//! over a prepared expression, with its fast paths for conditions.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;

use crate::ast::{BinaryOp, ComprehensionKind, UnaryOp};
use crate::parser::with_enough_stack;
use crate::value::{Activation, MapKey, Value, ValueMap};

use super::functions::apply;
use super::ops::{binary_operation, index_value, relation, select_field};
use super::prepare::{Call, Dispatch, Node, PathField};
use super::{
    BYTES_PER_ELEMENT, BYTES_PER_STEP, EvalError, EvalResult, MAX_EVALUATION_BYTES,
    MAX_EVALUATION_STEPS, MAX_EVALUATION_TIME, REGEX_COMPILE_STEPS, no_overload,
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
pub(super) const ENTRY_RED_ZONE: usize = 512 * 1024;
/// The size of the stack segment an evaluation moves to when less than that is free.
pub(super) const ENTRY_STACK_SEGMENT: usize = 4 * 1024 * 1024;

/// The comprehension variables bound while evaluating: a chain of frames on the Rust
/// stack, innermost first.
#[derive(Clone, Copy)]
pub(super) struct Env<'v> {
    pub(super) value: &'v Value,
    pub(super) parent: Option<&'v Env<'v>>,
}

pub(super) type Scope<'v> = Option<&'v Env<'v>>;

type Evaluated<'v> = Result<Cow<'v, Value>, EvalError>;

pub(super) struct Machine<'a> {
    pub(super) activation: &'a Activation,
    /// Whether a dotted chain might name a variable of its own (see
    /// [`Activation::may_resolve_qualified`]).
    pub(super) qualified_names: bool,
    pub(super) steps: Cell<u64>,
    /// What the values built so far add up to (see [`MAX_EVALUATION_BYTES`]).
    pub(super) built_bytes: Cell<u64>,
    pub(super) iterations: Cell<u64>,
    pub(super) depth: Cell<u32>,
    pub(super) started: std::time::Instant,
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
    pub(super) fn charge_built(&self, result: EvalResult) -> EvalResult {
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
        self.charge_built(self.apply_call(call, operands))
    }

    /// Applies a function: a provenance question (AGX-P1) reads the activation's
    /// sources, after charging the bytes it reads; anything else is pure.
    fn apply_call(&self, call: &Call, operands: &[&Value]) -> EvalResult {
        use agentc_cel_support::provenance::Origin;
        let origin = match (&*call.function, call.has_target, operands) {
            ("fromUser", true, [Value::String(_)]) => Origin::User,
            ("fromTrusted", true, [Value::String(_)]) => Origin::Trusted,
            ("fromUntrusted", true, [Value::String(_)]) => Origin::Untrusted,
            ("fromUntrusted", true, [Value::String(_), Value::String(name)]) => {
                Origin::UntrustedFrom { name, field: None }
            }
            (
                "fromUntrusted",
                true,
                [Value::String(_), Value::String(name), Value::String(field)],
            ) => Origin::UntrustedFrom {
                name,
                field: Some(field),
            },
            ("fromTool", true, [Value::String(_), Value::String(name)]) => {
                Origin::Tool { name, field: None }
            }
            ("fromTool", true, [Value::String(_), Value::String(name), Value::String(field)]) => {
                Origin::Tool {
                    name,
                    field: Some(field),
                }
            }
            _ => return apply(call, operands),
        };
        let (Some(Value::String(value)), Some(sources)) =
            (operands.first(), self.activation.sources())
        else {
            return Err(EvalError::new(format!(
                "`{}` has no engagement to answer from here",
                call.function
            )));
        };
        self.count_steps(sources.work(value, origin) / BYTES_PER_STEP)?;
        Ok(Value::Bool(sources.holds(value, origin)))
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
    pub(super) fn eval<'v>(&self, node: &'v Node, scope: Scope<'v>) -> Evaluated<'v>
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
            None => general(self.charge_built(self.apply_call(call, &[first, second]))),
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

    /// Evaluates a node whose value is wanted as a condition: a boolean comes back
    /// without being wrapped in a value; anything else (another value, or an error)
    /// comes back as it is.
    #[inline]
    pub(super) fn eval_bool<'v>(&self, node: &'v Node, scope: Scope<'v>) -> Truth<'v>
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
