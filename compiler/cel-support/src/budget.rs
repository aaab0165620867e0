//! The work one CEL evaluation may do, shared by the interpreter and compiled code.
//!
//! The interpreter (`agentc-cel`'s `eval`) counts exactly: one step per node it
//! evaluates and per comprehension iteration, one per [`BYTES_PER_STEP`] bytes of a string
//! and per element of a list or map a built-in or operator reads or builds,
//! [`REGEX_COMPILE_STEPS`] per pattern compiled at run time; the bytes of what it builds;
//! the comprehension iterations. Past any limit the evaluation is an error, which denies.
//!
//! Compiled code cannot count the same way without becoming the interpreter, so it keeps
//! a [`Meter`] that counts *at least* what the interpreter would count for the same
//! evaluation: each node of the expression at [`STEPS_PER_NODE`] steps whether or not it
//! runs, each iteration's body likewise, and the operands and results of operations as the
//! interpreter does. While the meter has not run out, the interpreter would not have
//! either, so the compiled result is the interpreter's (the differential tests check both
//! halves: equal results, and the meter's count never below the interpreter's). Once it
//! runs out, the compiled result is thrown away ([`Meter::settle`] gives
//! [`CelError::OVER_COMPILED_BUDGET`]) and the caller evaluates the expression with the
//! interpreter, whose answer (a budget error or a value) is then the answer: compiled and
//! interpreted checks decide alike on every input, budget exhaustion included.
//!
//! Only the wall-clock backstop ([`MAX_EVALUATION_TIME`], for work no count sees) is the
//! interpreter's alone: it depends on the machine, not on the input.

use std::cell::Cell;

use crate::{CelError, CelResult};

/// The most comprehension iterations one evaluation may perform.
pub const MAX_COMPREHENSION_ITERATIONS: u64 = 1_000_000;
/// The most steps one evaluation may take.
pub const MAX_EVALUATION_STEPS: u64 = 10_000_000;
/// The largest string or bytes value an evaluation may build, in bytes.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// The longest list an evaluation may build.
pub const MAX_LIST_LENGTH: usize = 1_000_000;
/// The most bytes the values an evaluation builds may add up to: strings and bytes by
/// their length, lists and maps by [`BYTES_PER_ELEMENT`] per element.
pub const MAX_EVALUATION_BYTES: u64 = 64 * 1024 * 1024;
/// How many bytes of a string or bytes value one step of a built-in's work covers.
pub const BYTES_PER_STEP: u64 = 16;
/// What one element of a built list or map counts against [`MAX_EVALUATION_BYTES`].
pub const BYTES_PER_ELEMENT: u64 = 32;
/// The steps a regular expression compiled at run time costs (a constant pattern is
/// compiled once, when the program is prepared).
pub const REGEX_COMPILE_STEPS: u64 = 10_000;
/// The longest an evaluation may run (the interpreter's backstop).
pub const MAX_EVALUATION_TIME: std::time::Duration = std::time::Duration::from_secs(1);
/// What compiled code counts for each node of an expression. The interpreter counts one
/// step for most nodes, one per field of a selection chain (itself one node per field),
/// and on one fast path one for a comparison besides its leaves; two per node covers
/// every case with room to spare.
pub const STEPS_PER_NODE: u64 = 2;

/// What an evaluation used, for tests that compare the interpreter's count with a
/// [`Meter`]'s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Steps taken.
    pub steps: u64,
    /// Bytes of values built (see [`MAX_EVALUATION_BYTES`]).
    pub built_bytes: u64,
    /// Comprehension iterations.
    pub iterations: u64,
}

/// The budget of one evaluation of compiled code: counts at least what the interpreter
/// would count (see the module documentation). Counting never fails by itself; code
/// compiled from a comprehension stops iterating once the meter has run out, so that the
/// work done past the budget is bounded by the input's size, and the caller then throws
/// the result away ([`Meter::settle`]).
#[derive(Debug, Default)]
pub struct Meter {
    steps: Cell<u64>,
    built_bytes: Cell<u64>,
    iterations: Cell<u64>,
    exhausted: Cell<bool>,
}

impl Meter {
    /// A meter with nothing counted.
    pub fn new() -> Meter {
        Meter::default()
    }

    /// Counts `count` steps.
    #[inline]
    pub fn steps(&self, count: u64) {
        let steps = self.steps.get().saturating_add(count);
        self.steps.set(steps);
        if steps > MAX_EVALUATION_STEPS {
            self.exhausted.set(true);
        }
    }

    /// Counts reading a string, and gives it back.
    #[inline]
    pub fn str<'t>(&self, text: &'t str) -> &'t str {
        self.steps(text.len() as u64 / BYTES_PER_STEP);
        text
    }

    /// Counts reading a list, and gives it back.
    #[inline]
    pub fn list<'l, T>(&self, list: &'l [T]) -> &'l [T] {
        self.steps(list.len() as u64);
        list
    }

    /// Counts building a string of `length` bytes.
    fn built_text(&self, length: usize) {
        if length > MAX_VALUE_BYTES {
            self.exhausted.set(true);
        }
        self.built(length as u64);
        self.steps(length as u64 / BYTES_PER_STEP);
    }

    /// Counts `bytes` against [`MAX_EVALUATION_BYTES`].
    fn built(&self, bytes: u64) {
        let built = self.built_bytes.get().saturating_add(bytes);
        self.built_bytes.set(built);
        if built > MAX_EVALUATION_BYTES {
            self.exhausted.set(true);
        }
    }

    /// Counts building a string, and gives it back.
    #[inline]
    pub fn built_string(&self, text: String) -> String {
        self.built_text(text.len());
        text
    }

    /// Counts building a string that compiled code borrows (the interpreter builds it:
    /// `trim()`), and gives it back.
    #[inline]
    pub fn built_str<'t>(&self, text: &'t str) -> &'t str {
        self.built_text(text.len());
        text
    }

    /// Counts building a list, and gives it back.
    #[inline]
    pub fn built_list<T>(&self, list: Vec<T>) -> Vec<T> {
        if list.len() > MAX_LIST_LENGTH {
            self.exhausted.set(true);
        }
        self.built((list.len() as u64).saturating_mul(BYTES_PER_ELEMENT));
        self.steps(list.len() as u64);
        list
    }

    /// Counts one comprehension iteration whose body and filter are `body_steps` steps;
    /// `false` once the meter has run out, when the loop should stop.
    #[inline]
    pub fn iteration(&self, body_steps: u64) -> bool {
        let iterations = self.iterations.get().saturating_add(1);
        self.iterations.set(iterations);
        if iterations > MAX_COMPREHENSION_ITERATIONS {
            self.exhausted.set(true);
        }
        self.steps(body_steps);
        !self.exhausted.get()
    }

    /// Whether the meter has run out.
    pub fn exhausted(&self) -> bool {
        self.exhausted.get()
    }

    /// What has been counted so far.
    pub fn usage(&self) -> Usage {
        Usage {
            steps: self.steps.get(),
            built_bytes: self.built_bytes.get(),
            iterations: self.iterations.get(),
        }
    }

    /// The result of the evaluation this meter counted: `result` itself, or
    /// [`CelError::OVER_COMPILED_BUDGET`] when the meter ran out, whatever `result` is
    /// (a value computed past the budget, or an error a logical operator might have
    /// absorbed, is not the interpreter's answer).
    #[inline]
    pub fn settle<T>(&self, result: CelResult<T>) -> CelResult<T> {
        if self.exhausted.get() {
            Err(CelError::OVER_COMPILED_BUDGET)
        } else {
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_runs_out_on_each_limit() {
        let steps = Meter::new();
        steps.steps(MAX_EVALUATION_STEPS);
        assert!(!steps.exhausted());
        steps.steps(1);
        assert!(steps.exhausted());
        assert_eq!(steps.settle(Ok(true)), Err(CelError::OVER_COMPILED_BUDGET));

        let iterations = Meter::new();
        for _ in 0..MAX_COMPREHENSION_ITERATIONS {
            assert!(iterations.iteration(0));
        }
        assert!(!iterations.iteration(0));

        let one_string = Meter::new();
        one_string.built_string("a".repeat(MAX_VALUE_BYTES + 1));
        assert!(one_string.exhausted());

        let all_strings = Meter::new();
        for _ in 0..4 {
            all_strings.built_string("a".repeat(MAX_VALUE_BYTES));
        }
        assert!(!all_strings.exhausted(), "64 MiB is within the budget");
        all_strings.built_str("a");
        assert!(all_strings.exhausted());

        let list = Meter::new();
        list.built_list(vec![0_u8; MAX_LIST_LENGTH + 1]);
        assert!(list.exhausted());
    }

    #[test]
    fn a_meter_counts_what_the_interpreter_counts_for_reads() {
        let meter = Meter::new();
        assert_eq!(meter.str(&"a".repeat(33)).len(), 33);
        assert_eq!(meter.list(&[1, 2, 3]).len(), 3);
        assert_eq!(meter.usage().steps, 2 + 3);
        assert_eq!(meter.settle(Ok(7)), Ok(7));
        assert_eq!(
            meter.settle::<bool>(Err(CelError::new("no such key"))),
            Err(CelError::new("no such key"))
        );
    }
}
