//! The comprehension macros (`all`, `exists`, `exists_one`, `map`, `filter` and the
//! two-variable transforms): their iterations and what they gather.

use std::borrow::Cow;
use std::sync::Arc;

use crate::ast::ComprehensionKind;
use crate::value::{MapKey, Value, ValueMap};

use super::machine::{Env, Machine, Scope};
use super::prepare::PreparedComprehension;
use super::{EvalError, EvalResult, MAX_COMPREHENSION_ITERATIONS, no_overload};

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

impl<'a> Machine<'a> {
    pub(super) fn eval_comprehension<'v>(
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
    pub(super) fn eval_quantifier<'v>(
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
}
