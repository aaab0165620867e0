//! The CEL type checker.
//!
//! The checker walks the tree once, computing each node's type and collecting every
//! problem it finds rather than stopping at the first. A node that already produced a
//! diagnostic gets the `Error` type, which is compatible with everything, so that one
//! mistake is reported once. It also tracks which optional fields are known to be
//! present because of an enclosing `has()` guard.
//!
//! In order: [`check`], [`check_assertion`] and the known function names; the `has()`
//! facts (`access_path`, `facts_when_true`/`_false`); the private `Checker`'s method per
//! node kind; the overload tables (`arithmetic_result`, `function_signature`); the
//! hyphen help. One file because the methods share the `Checker`'s private scopes, facts
//! and diagnostics, and the facts that `&&`, `||`, `?:` and filters make are the ones
//! that selections of optional fields read.

use crate::ast::{BinaryOp, Comprehension, ComprehensionKind, Expr, ExprKind, Literal, UnaryOp};
use crate::diagnostic::{CelDiagnostic, CelErrorKind, Span, did_you_mean};
use crate::parser::{hyphen_help, with_enough_stack};
use crate::types::{Type, TypeEnv};

/// Type-checks an expression and returns its type, or every problem found.
pub fn check(expr: &Expr, env: &TypeEnv) -> Result<Type, Vec<CelDiagnostic>> {
    let mut checker = Checker {
        env,
        scopes: Vec::new(),
        facts: Vec::new(),
        diagnostics: Vec::new(),
    };
    let result_type = checker.check_expr(expr);
    if checker.diagnostics.is_empty() {
        Ok(result_type)
    } else {
        let mut diagnostics = checker.diagnostics;
        attach_hyphen_help(expr, &mut diagnostics);
        Err(diagnostics)
    }
}

/// Type-checks an assertion, which must also produce a `bool` (or `dyn`).
pub fn check_assertion(expr: &Expr, env: &TypeEnv) -> Result<(), Vec<CelDiagnostic>> {
    let result_type = check(expr, env)?;
    if matches!(result_type, Type::Bool | Type::Dyn | Type::Error) {
        Ok(())
    } else {
        Err(vec![
            CelDiagnostic::new(
                CelErrorKind::NotBoolean,
                format!("an assertion must be a `bool`, but this expression is `{result_type}`"),
                expr.span,
            )
            .with_help("compare the value with something to make a condition, such as `x > 0`"),
        ])
    }
}

/// The global and member functions the checker knows, for did-you-mean suggestions.
const KNOWN_FUNCTIONS: &[&str] = &[
    "size",
    "sum",
    "fromUser",
    "fromTool",
    "fromTrusted",
    "fromUntrusted",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "lowerAscii",
    "upperAscii",
    "trim",
    "replace",
    "split",
    "join",
    "indexOf",
    "lastIndexOf",
    "substring",
    "charAt",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "timestamp",
    "duration",
    "dyn",
    "type",
    "getFullYear",
    "getMonth",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
    "has",
    "all",
    "exists",
    "exists_one",
    "existsOne",
    "map",
    "filter",
    "transformList",
    "transformMap",
];

/// Names that denote type values when used as identifiers.
pub(crate) fn type_name_identifier(name: &str) -> bool {
    matches!(
        name,
        "int"
            | "uint"
            | "double"
            | "bool"
            | "string"
            | "bytes"
            | "list"
            | "map"
            | "null_type"
            | "type"
            | "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
    )
}

struct Checker<'a> {
    env: &'a TypeEnv,
    scopes: Vec<(String, Type)>,
    facts: Vec<String>,
    diagnostics: Vec<CelDiagnostic>,
}

/// Renders the access path an expression denotes (`a.b[0].c`), used to match `has()`
/// guards with later selections of the same path.
fn access_path(expr: &Expr) -> Option<String> {
    match &expr.kind {
        ExprKind::Ident(name) => Some(name.trim_start_matches('.').to_string()),
        ExprKind::Select { operand, field, .. } => {
            Some(format!("{}.{field}", access_path(operand)?))
        }
        ExprKind::Index { operand, index } => {
            let key = match &index.kind {
                ExprKind::Literal(Literal::Int(value)) => value.to_string(),
                ExprKind::Literal(Literal::Uint(value)) => value.to_string(),
                ExprKind::Literal(Literal::String(value)) => format!("{value:?}"),
                _ => return None,
            };
            Some(format!("{}[{key}]", access_path(operand)?))
        }
        _ => None,
    }
}

/// The paths known to be present when `expr` evaluates to `true`.
fn facts_when_true(expr: &Expr) -> Vec<String> {
    match &expr.kind {
        ExprKind::Has { operand, field, .. } => access_path(operand)
            .map(|path| vec![format!("{path}.{field}")])
            .unwrap_or_default(),
        ExprKind::Binary {
            op: BinaryOp::And,
            left,
            right,
            ..
        } => {
            let mut facts = facts_when_true(left);
            facts.extend(facts_when_true(right));
            facts
        }
        ExprKind::Unary {
            op: UnaryOp::Not,
            operand,
        } => facts_when_false(operand),
        _ => Vec::new(),
    }
}

/// The paths known to be present when `expr` evaluates to `false`.
fn facts_when_false(expr: &Expr) -> Vec<String> {
    match &expr.kind {
        ExprKind::Binary {
            op: BinaryOp::Or,
            left,
            right,
            ..
        } => {
            let mut facts = facts_when_false(left);
            facts.extend(facts_when_false(right));
            facts
        }
        ExprKind::Unary {
            op: UnaryOp::Not,
            operand,
        } => facts_when_true(operand),
        _ => Vec::new(),
    }
}

impl Checker<'_> {
    fn report(&mut self, diagnostic: CelDiagnostic) -> Type {
        self.diagnostics.push(diagnostic);
        Type::Error
    }

    fn with_facts<T>(&mut self, facts: Vec<String>, body: impl FnOnce(&mut Self) -> T) -> T {
        let saved_length = self.facts.len();
        self.facts.extend(facts);
        let result = body(self);
        self.facts.truncate(saved_length);
        result
    }

    fn lookup_variable(&self, name: &str) -> Option<Type> {
        if let Some((_, ty)) = self.scopes.iter().rev().find(|(scoped, _)| scoped == name) {
            return Some(ty.clone());
        }
        self.env.resolve(name).cloned()
    }

    fn is_scoped(&self, name: &str) -> bool {
        self.scopes.iter().any(|(scoped, _)| scoped == name)
    }

    fn check_expr(&mut self, expr: &Expr) -> Type {
        with_enough_stack(|| self.check_expr_kind(expr))
    }

    fn check_expr_kind(&mut self, expr: &Expr) -> Type {
        match &expr.kind {
            ExprKind::Literal(literal) => match literal {
                Literal::Null => Type::Null,
                Literal::Bool(_) => Type::Bool,
                Literal::Int(_) => Type::Int,
                Literal::Uint(_) => Type::Uint,
                Literal::Double(_) => Type::Double,
                Literal::String(_) => Type::String,
                Literal::Bytes(_) => Type::Bytes,
            },
            ExprKind::Ident(name) => self.check_ident(name, expr.span),
            ExprKind::Select {
                operand,
                field,
                field_span,
            } => self.check_select(expr, operand, field, *field_span, false),
            ExprKind::Has {
                operand,
                field,
                field_span,
            } => {
                self.check_select(expr, operand, field, *field_span, true);
                Type::Bool
            }
            ExprKind::Call {
                target,
                function,
                function_span,
                args,
            } => self.check_call(expr, target.as_deref(), function, *function_span, args),
            ExprKind::Unary { op, operand } => {
                let operand_type = self.check_expr(operand);
                match op {
                    UnaryOp::Not => {
                        self.expect_bool(&operand_type, operand.span, "`!`");
                        Type::Bool
                    }
                    UnaryOp::Negate => match operand_type {
                        Type::Int | Type::Double | Type::Dyn | Type::Error => operand_type,
                        other => self.report(CelDiagnostic::new(
                            CelErrorKind::NoMatchingOverload,
                            format!("cannot negate a value of type `{other}`"),
                            expr.span,
                        )),
                    },
                }
            }
            ExprKind::Binary {
                op,
                op_span,
                left,
                right,
            } => self.check_binary(*op, *op_span, left, right),
            ExprKind::Conditional {
                condition,
                if_true,
                if_false,
            } => {
                let condition_type = self.check_expr(condition);
                self.expect_bool(&condition_type, condition.span, "the condition of `?:`");
                let true_type = self.with_facts(facts_when_true(condition), |checker| {
                    checker.check_expr(if_true)
                });
                let false_type = self.with_facts(facts_when_false(condition), |checker| {
                    checker.check_expr(if_false)
                });
                if !true_type.is_compatible_with(&false_type)
                    && !matches!(true_type, Type::Null)
                    && !matches!(false_type, Type::Null)
                {
                    return self.report(
                        CelDiagnostic::new(
                            CelErrorKind::TypeMismatch,
                            format!(
                                "the branches of `?:` have different types: `{true_type}` and `{false_type}`"
                            ),
                            expr.span,
                        )
                        .with_secondary(if_true.span, format!("this is `{true_type}`"))
                        .with_secondary(if_false.span, format!("this is `{false_type}`")),
                    );
                }
                if matches!(true_type, Type::Null) {
                    return false_type;
                }
                true_type.join(&false_type)
            }
            ExprKind::Index { operand, index } => self.check_index(expr, operand, index),
            ExprKind::List(elements) => {
                let mut element_type: Option<Type> = None;
                for element in elements {
                    let ty = self.check_expr(element);
                    element_type = Some(match element_type {
                        None => ty,
                        Some(previous) => previous.join(&ty),
                    });
                }
                Type::List(Box::new(element_type.unwrap_or(Type::Dyn)))
            }
            ExprKind::Map(entries) => {
                let mut key_type: Option<Type> = None;
                let mut value_type: Option<Type> = None;
                for entry in entries {
                    let ty = self.check_expr(&entry.key);
                    if !matches!(
                        ty,
                        Type::Int
                            | Type::Uint
                            | Type::Bool
                            | Type::String
                            | Type::Dyn
                            | Type::Error
                    ) {
                        self.report(CelDiagnostic::new(
                            CelErrorKind::NoMatchingOverload,
                            format!("a map key must be int, uint, bool or string, not `{ty}`"),
                            entry.key.span,
                        ));
                    }
                    key_type = Some(match key_type {
                        None => ty,
                        Some(previous) => previous.join(&ty),
                    });
                    let ty = self.check_expr(&entry.value);
                    value_type = Some(match value_type {
                        None => ty,
                        Some(previous) => previous.join(&ty),
                    });
                }
                Type::Map(
                    Box::new(key_type.unwrap_or(Type::Dyn)),
                    Box::new(value_type.unwrap_or(Type::Dyn)),
                )
            }
            ExprKind::Struct { type_name, fields } => {
                for field in fields {
                    self.check_expr(&field.value);
                }
                self.report(
                    CelDiagnostic::new(
                        CelErrorKind::MessageConstructionUnsupported,
                        format!("message construction `{type_name}{{...}}` is not supported"),
                        expr.span,
                    )
                    .with_help("use a map literal such as `{'field': value}` instead"),
                )
            }
            ExprKind::Comprehension(comprehension) => self.check_comprehension(comprehension),
        }
    }

    fn check_comprehension(&mut self, comprehension: &Comprehension) -> Type {
        let range_type = self.check_expr(&comprehension.range);
        let two_variables = comprehension.second_variable.is_some();
        let (first_type, second_type) = match &range_type {
            Type::List(element) if two_variables => (Type::Int, (**element).clone()),
            Type::List(element) => ((**element).clone(), Type::Dyn),
            Type::Map(key, value) => ((**key).clone(), (**value).clone()),
            Type::Object(_) => (Type::String, Type::Dyn),
            Type::Dyn | Type::Error => (Type::Dyn, Type::Dyn),
            other => {
                self.report(CelDiagnostic::new(
                    CelErrorKind::NoMatchingOverload,
                    format!(
                        "`{}` needs a list or a map, but this is `{other}`",
                        comprehension.kind.name()
                    ),
                    comprehension.range.span,
                ));
                (Type::Error, Type::Error)
            }
        };
        let scope_length = self.scopes.len();
        self.scopes
            .push((comprehension.variable.clone(), first_type.clone()));
        if let Some((second_name, _)) = &comprehension.second_variable {
            self.scopes.push((second_name.clone(), second_type));
        }
        let mut body_facts = Vec::new();
        if let Some(filter) = &comprehension.filter {
            let filter_type = self.check_expr(filter);
            self.expect_bool(&filter_type, filter.span, "the filter");
            body_facts = facts_when_true(filter);
        }
        let body_type = self.with_facts(body_facts, |checker| {
            checker.check_expr(&comprehension.body)
        });
        self.scopes.truncate(scope_length);
        match comprehension.kind {
            ComprehensionKind::Map | ComprehensionKind::TransformList => {
                Type::List(Box::new(body_type))
            }
            ComprehensionKind::TransformMap => Type::Map(Box::new(first_type), Box::new(body_type)),
            ComprehensionKind::Filter => {
                self.expect_bool(&body_type, comprehension.body.span, "the predicate");
                Type::List(Box::new(first_type))
            }
            ComprehensionKind::All | ComprehensionKind::Exists | ComprehensionKind::ExistsOne => {
                self.expect_bool(&body_type, comprehension.body.span, "the predicate");
                Type::Bool
            }
        }
    }

    fn expect_bool(&mut self, ty: &Type, span: Span, context: &str) {
        if !matches!(ty, Type::Bool | Type::Dyn | Type::Error) {
            self.report(CelDiagnostic::new(
                CelErrorKind::NoMatchingOverload,
                format!("{context} needs a `bool`, but this is `{ty}`"),
                span,
            ));
        }
    }

    fn check_ident(&mut self, name: &str, span: Span) -> Type {
        if let Some(ty) = self.lookup_variable(name) {
            return ty;
        }
        if type_name_identifier(name.trim_start_matches('.')) {
            return Type::TypeType;
        }
        let candidates: Vec<String> = self
            .env
            .names()
            .map(str::to_string)
            .chain(self.scopes.iter().map(|(scoped, _)| scoped.clone()))
            .collect();
        let suggestions = did_you_mean(name, candidates.iter().map(String::as_str));
        let mut diagnostic = CelDiagnostic::new(
            CelErrorKind::UnknownName,
            format!("undeclared reference to `{name}`"),
            span,
        );
        diagnostic = match suggestions.first() {
            Some(best) => diagnostic.with_help(format!("did you mean `{best}`?")),
            None if !candidates.is_empty() => diagnostic.with_help(format!(
                "the names available here are: {}",
                candidates
                    .iter()
                    .map(|candidate| format!("`{candidate}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => diagnostic,
        };
        self.report(diagnostic)
    }

    fn check_select(
        &mut self,
        expr: &Expr,
        operand: &Expr,
        field: &str,
        field_span: Span,
        is_has_test: bool,
    ) -> Type {
        // A dotted name may be a declared qualified variable (`a.b.c`), which CEL
        // resolves before treating the dots as field selections.
        if !is_has_test && let Some(qualified) = expr.qualified_name() {
            let root = qualified.split('.').next().unwrap_or("");
            if !self.is_scoped(root)
                && let Some(ty) = self.env.resolve(&qualified)
            {
                return ty.clone();
            }
            if !self.is_scoped(root)
                && self.env.resolve(root).is_none()
                && type_name_identifier(qualified.trim_start_matches('.'))
            {
                return Type::TypeType;
            }
        }
        let operand_type = self.check_expr(operand);
        match &operand_type {
            Type::Object(object) => match object.fields.get(field) {
                Some(field_type) => {
                    if !field_type.always_present && !is_has_test {
                        let path = access_path(expr);
                        let guarded = path
                            .as_ref()
                            .is_some_and(|path| self.facts.iter().any(|fact| fact == path));
                        if !guarded {
                            let guard =
                                access_path(expr).unwrap_or_else(|| format!("<object>.{field}"));
                            self.report(
                                CelDiagnostic::new(
                                    CelErrorKind::OptionalFieldWithoutHas,
                                    format!(
                                        "field `{field}` of `{}` may be absent, and selecting it without a `has()` guard fails at run time",
                                        object.name
                                    ),
                                    field_span,
                                )
                                .with_help(format!("write `has({guard}) && ...`")),
                            );
                        }
                    }
                    field_type.ty.clone()
                }
                None if object.open => Type::Dyn,
                None => {
                    let suggestions = did_you_mean(field, object.fields.keys().map(String::as_str));
                    let declared = object
                        .fields
                        .keys()
                        .map(|name| format!("`{name}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let mut diagnostic = CelDiagnostic::new(
                        CelErrorKind::UnknownField,
                        format!("`{}` has no field `{field}`", object.name),
                        field_span,
                    );
                    let help = match suggestions.first() {
                        Some(best) => format!("did you mean `{best}`? declared fields: {declared}"),
                        None if declared.is_empty() => "it declares no fields".to_string(),
                        None => format!("declared fields: {declared}"),
                    };
                    diagnostic = diagnostic.with_help(help);
                    self.report(diagnostic)
                }
            },
            Type::Map(key, value) => {
                if key.is_compatible_with(&Type::String) {
                    (**value).clone()
                } else {
                    self.report(CelDiagnostic::new(
                        CelErrorKind::NoMatchingOverload,
                        format!(
                            "cannot select field `{field}` from a map with `{key}` keys; use `m[key]`"
                        ),
                        field_span,
                    ))
                }
            }
            Type::Dyn | Type::Error => Type::Dyn,
            other => self.report(CelDiagnostic::new(
                CelErrorKind::NoMatchingOverload,
                format!("cannot select field `{field}` from a value of type `{other}`"),
                field_span,
            )),
        }
    }

    fn check_index(&mut self, expr: &Expr, operand: &Expr, index: &Expr) -> Type {
        let operand_type = self.check_expr(operand);
        let index_type = self.check_expr(index);
        match &operand_type {
            Type::List(element) => {
                if matches!(index_type, Type::Int | Type::Uint | Type::Dyn | Type::Error) {
                    (**element).clone()
                } else {
                    self.report(CelDiagnostic::new(
                        CelErrorKind::NoMatchingOverload,
                        format!("a list index must be an int, not `{index_type}`"),
                        index.span,
                    ))
                }
            }
            Type::Map(key, value) => {
                let compatible = key.is_compatible_with(&index_type)
                    || (key.is_numeric() && index_type.is_numeric());
                if compatible {
                    (**value).clone()
                } else {
                    self.report(CelDiagnostic::new(
                        CelErrorKind::NoMatchingOverload,
                        format!("this map has `{key}` keys, but the index is `{index_type}`"),
                        index.span,
                    ))
                }
            }
            Type::Object(object) => {
                if let ExprKind::Literal(Literal::String(field)) = &index.kind {
                    let field = field.clone();
                    match object.fields.get(&field) {
                        Some(field_type) => field_type.ty.clone(),
                        None => Type::Dyn,
                    }
                } else {
                    Type::Dyn
                }
            }
            Type::Dyn | Type::Error => Type::Dyn,
            other => self.report(CelDiagnostic::new(
                CelErrorKind::NoMatchingOverload,
                format!("a value of type `{other}` cannot be indexed"),
                expr.span,
            )),
        }
    }

    fn check_binary(&mut self, op: BinaryOp, op_span: Span, left: &Expr, right: &Expr) -> Type {
        match op {
            BinaryOp::And | BinaryOp::Or => {
                let left_type = self.check_expr(left);
                let facts = if op == BinaryOp::And {
                    facts_when_true(left)
                } else {
                    facts_when_false(left)
                };
                let right_type = self.with_facts(facts, |checker| checker.check_expr(right));
                let context = format!("`{}`", op.symbol());
                self.expect_bool(&left_type, left.span, &context);
                self.expect_bool(&right_type, right.span, &context);
                return Type::Bool;
            }
            _ => {}
        }
        let left_type = self.check_expr(left);
        let right_type = self.check_expr(right);
        if left_type.is_dynamic() && right_type.is_dynamic() {
            return if op.is_relation() {
                Type::Bool
            } else {
                Type::Dyn
            };
        }
        let span = left.span.to(right.span);
        let mismatch = |checker: &mut Self, kind: CelErrorKind| {
            checker.report(
                CelDiagnostic::new(
                    kind,
                    format!(
                        "no matching overload for `{}` with `{left_type}` and `{right_type}`",
                        op.symbol()
                    ),
                    span,
                )
                .with_secondary(op_span, "operator here"),
            )
        };
        match op {
            BinaryOp::And | BinaryOp::Or => Type::Bool,
            BinaryOp::Equal | BinaryOp::NotEqual => {
                let comparable = left_type.is_compatible_with(&right_type)
                    || (left_type.is_numeric() && right_type.is_numeric())
                    || matches!(left_type, Type::Null)
                    || matches!(right_type, Type::Null);
                if comparable {
                    Type::Bool
                } else {
                    mismatch(self, CelErrorKind::TypeMismatch)
                }
            }
            BinaryOp::Less | BinaryOp::LessEqual | BinaryOp::Greater | BinaryOp::GreaterEqual => {
                let orderable = |ty: &Type| {
                    matches!(
                        ty,
                        Type::Int
                            | Type::Uint
                            | Type::Double
                            | Type::String
                            | Type::Bytes
                            | Type::Bool
                            | Type::Timestamp
                            | Type::Duration
                            | Type::Dyn
                            | Type::Error
                    )
                };
                let comparable = orderable(&left_type)
                    && orderable(&right_type)
                    && (left_type.is_compatible_with(&right_type)
                        || (left_type.is_numeric() && right_type.is_numeric()));
                if comparable {
                    Type::Bool
                } else {
                    mismatch(self, CelErrorKind::NoMatchingOverload)
                }
            }
            BinaryOp::In => match &right_type {
                Type::List(element) => {
                    if element.is_compatible_with(&left_type)
                        || (element.is_numeric() && left_type.is_numeric())
                    {
                        Type::Bool
                    } else {
                        mismatch(self, CelErrorKind::NoMatchingOverload)
                    }
                }
                Type::Map(key, _) => {
                    if key.is_compatible_with(&left_type)
                        || (key.is_numeric() && left_type.is_numeric())
                    {
                        Type::Bool
                    } else {
                        mismatch(self, CelErrorKind::NoMatchingOverload)
                    }
                }
                Type::Object(_) | Type::Dyn | Type::Error => Type::Bool,
                _ => mismatch(self, CelErrorKind::NoMatchingOverload),
            },
            BinaryOp::Add
            | BinaryOp::Subtract
            | BinaryOp::Multiply
            | BinaryOp::Divide
            | BinaryOp::Remainder => match arithmetic_result(op, &left_type, &right_type) {
                Some(result) => result,
                None => mismatch(self, CelErrorKind::NoMatchingOverload),
            },
        }
    }

    fn check_call(
        &mut self,
        expr: &Expr,
        target: Option<&Expr>,
        function: &str,
        function_span: Span,
        args: &[Expr],
    ) -> Type {
        let target_type = target.map(|target| self.check_expr(target));
        // A function that does not exist is one error naming it: its arguments are not
        // checked, since a misspelt macro (`list.any(x, x > 1)`) would otherwise report
        // its variable as undeclared at every use.
        if matches!(
            function_signature(function, target.is_some(), &[]),
            Signature::UnknownFunction
        ) {
            return self.report_unknown_function(function, function_span);
        }
        let argument_types: Vec<Type> = args.iter().map(|arg| self.check_expr(arg)).collect();
        // Constant patterns are compiled now so that a bad regex is a compile-time error.
        if function == "matches"
            && let Some(pattern) = args.last()
            && let ExprKind::Literal(Literal::String(text)) = &pattern.kind
            && let Err(error) = crate::eval::build_regex(text)
        {
            self.report(CelDiagnostic::new(
                CelErrorKind::InvalidRegex,
                format!(
                    "invalid regular expression: {}",
                    first_line(&error.to_string())
                ),
                pattern.span,
            ));
        }
        let mut all_types: Vec<Type> = Vec::new();
        if let Some(target_type) = &target_type {
            all_types.push(target_type.clone());
        }
        all_types.extend(argument_types.iter().cloned());
        if all_types.iter().any(|ty| matches!(ty, Type::Error)) {
            return Type::Dyn;
        }
        let is_member = target.is_some();
        if is_member && agentc_cel_support::provenance::QUESTIONS.contains(&function) {
            self.check_provenance_question(function, function_span, args);
        }
        match function_signature(function, is_member, &all_types) {
            Signature::Result(result) => result,
            Signature::UnknownFunction => self.report_unknown_function(function, function_span),
            Signature::WrongArgumentCount(expected) => self.report(CelDiagnostic::new(
                CelErrorKind::WrongArgumentCount,
                format!(
                    "`{function}` takes {expected}, but {} {} given",
                    args.len(),
                    if args.len() == 1 { "was" } else { "were" }
                ),
                expr.span,
            )),
            Signature::NoMatchingOverload => {
                let rendered = all_types
                    .iter()
                    .map(|ty| format!("`{ty}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let form = if is_member { "method" } else { "function" };
                self.report(CelDiagnostic::new(
                    CelErrorKind::NoMatchingOverload,
                    format!("no matching overload of {form} `{function}` for ({rendered})"),
                    expr.span,
                ))
            }
        }
    }
}

/// What other languages call CEL's functions and macros, for the suggestion on an
/// unknown one: `any` is not a misspelling of `all`, it means `exists`.
const OTHER_LANGUAGES_NAMES: &[(&str, &str)] = &[
    ("any", "exists"),
    ("some", "exists"),
    ("every", "all"),
    ("forall", "all"),
    ("one", "exists_one"),
    ("select", "filter"),
    ("where", "filter"),
    ("length", "size"),
    ("len", "size"),
    ("count", "size"),
    ("lower", "lowerAscii"),
    ("toLowerCase", "lowerAscii"),
    ("upper", "upperAscii"),
    ("toUpperCase", "upperAscii"),
    ("includes", "contains"),
    ("starts_with", "startsWith"),
    ("ends_with", "endsWith"),
];

impl Checker<'_> {
    /// One error for a function that does not exist, with the closest known name.
    fn report_unknown_function(&mut self, function: &str, span: Span) -> Type {
        let suggestion = OTHER_LANGUAGES_NAMES
            .iter()
            .find(|(other, _)| *other == function)
            .map(|(_, cel)| cel.to_string())
            .or_else(|| {
                did_you_mean(function, KNOWN_FUNCTIONS.iter().copied())
                    .into_iter()
                    .next()
            });
        let mut diagnostic = CelDiagnostic::new(
            CelErrorKind::UnknownFunction,
            format!("unknown function `{function}`"),
            span,
        );
        if let Some(best) = suggestion {
            diagnostic = diagnostic.with_help(format!("did you mean `{best}`?"));
        }
        self.report(diagnostic)
    }
}

impl Checker<'_> {
    /// A provenance question needs an engagement, and the constant capability and field
    /// of `fromTool` or `fromUntrusted` must be ones the engagement can hold.
    fn check_provenance_question(&mut self, function: &str, span: Span, args: &[Expr]) {
        let Some(outputs) = self.env.sources() else {
            self.report(CelDiagnostic::new(
                CelErrorKind::UnknownSource,
                format!("`{function}` asks where a value came from, but there is no engagement here"),
                span,
            )
            .with_help("provenance questions work in restrictions and exposes, not in a guardrail's assertion"));
            return;
        };
        if function != "fromTool" && function != "fromUntrusted" {
            return;
        }
        let literal = |index: usize| match args.get(index).map(|arg| &arg.kind) {
            Some(ExprKind::Literal(Literal::String(text))) => Some(text.clone()),
            _ => None,
        };
        let Some(tool) = literal(0) else { return };
        let Some(output) = outputs.get(&tool) else {
            let mut diagnostic = CelDiagnostic::new(
                CelErrorKind::UnknownSource,
                format!("`{function}` names `{tool}`, which is not a capability of this agent"),
                args.first().map_or(span, |arg| arg.span),
            );
            if let Some(best) = did_you_mean(&tool, outputs.keys().map(String::as_str)).first() {
                diagnostic = diagnostic.with_help(format!("did you mean `{best}`?"));
            }
            self.report(diagnostic);
            return;
        };
        let Some(field) = literal(1) else { return };
        let (paths, complete) = string_leaf_paths(output);
        if complete && !paths.contains(&field) {
            let mut diagnostic = CelDiagnostic::new(
                CelErrorKind::UnknownSource,
                format!("`{tool}`'s output has no string field `{field}`"),
                args.get(1).map_or(span, |arg| arg.span),
            );
            if let Some(best) = did_you_mean(&field, paths.iter().map(String::as_str)).first() {
                diagnostic = diagnostic.with_help(format!("did you mean `{best}`?"));
            } else if !paths.is_empty() {
                diagnostic =
                    diagnostic.with_help(format!("its string fields: {}", paths.join(", ")));
            }
            self.report(diagnostic);
        }
    }
}

/// The paths of an output type's string leaves as provenance names them: keys joined by
/// `.`, list positions left out; and whether those are all (a path under a map or a
/// dynamic part is not known before the output exists).
fn string_leaf_paths(output: &Type) -> (Vec<String>, bool) {
    fn walk(ty: &Type, path: &str, paths: &mut Vec<String>, complete: &mut bool, depth: usize) {
        if depth > 32 {
            *complete = false;
            return;
        }
        match ty {
            Type::String => paths.push(path.to_string()),
            Type::List(element) => walk(element, path, paths, complete, depth + 1),
            Type::Object(object) => {
                for (name, field) in &object.fields {
                    let nested = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    walk(&field.ty, &nested, paths, complete, depth + 1);
                }
                if object.open {
                    *complete = false;
                }
            }
            // A map's keys are leaves at its path and its values at `<map>.*`
            // (AGX-P1), as the runtime records them.
            Type::Map(key, value) if matches!(**key, Type::String) => {
                paths.push(path.to_string());
                let entries = if path.is_empty() {
                    "*".to_string()
                } else {
                    format!("{path}.*")
                };
                walk(value, &entries, paths, complete, depth + 1);
            }
            Type::Map(..) | Type::Dyn => *complete = false,
            _ => {}
        }
    }
    let mut paths = Vec::new();
    let mut complete = true;
    walk(output, "", &mut paths, &mut complete, 0);
    (paths, complete)
}

fn first_line(text: &str) -> String {
    text.lines()
        .rfind(|line| !line.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_string()
}

/// Returns the result type of an arithmetic operator, or `None` when no overload fits.
fn arithmetic_result(op: BinaryOp, left: &Type, right: &Type) -> Option<Type> {
    use Type as T;
    if left.is_dynamic() || right.is_dynamic() {
        let known = if left.is_dynamic() { right } else { left };
        let plausible = match op {
            BinaryOp::Add => matches!(
                known,
                T::Int
                    | T::Uint
                    | T::Double
                    | T::String
                    | T::Bytes
                    | T::List(_)
                    | T::Timestamp
                    | T::Duration
            ),
            BinaryOp::Subtract => matches!(
                known,
                T::Int | T::Uint | T::Double | T::Timestamp | T::Duration
            ),
            BinaryOp::Multiply | BinaryOp::Divide => matches!(known, T::Int | T::Uint | T::Double),
            BinaryOp::Remainder => matches!(known, T::Int | T::Uint),
            _ => false,
        };
        return plausible.then_some(match known {
            T::Int | T::Uint | T::Double | T::String | T::Bytes | T::Duration => known.clone(),
            T::List(_) => T::List(Box::new(T::Dyn)),
            _ => T::Dyn,
        });
    }
    match (op, left, right) {
        (_, T::Int, T::Int) => Some(T::Int),
        (_, T::Uint, T::Uint) => Some(T::Uint),
        (BinaryOp::Remainder, T::Double, T::Double) => None,
        (_, T::Double, T::Double) => Some(T::Double),
        (BinaryOp::Add, T::String, T::String) => Some(T::String),
        (BinaryOp::Add, T::Bytes, T::Bytes) => Some(T::Bytes),
        (BinaryOp::Add, T::List(a), T::List(b)) => Some(T::List(Box::new(a.join(b)))),
        (BinaryOp::Add, T::Timestamp, T::Duration) | (BinaryOp::Add, T::Duration, T::Timestamp) => {
            Some(T::Timestamp)
        }
        (BinaryOp::Add | BinaryOp::Subtract, T::Duration, T::Duration) => Some(T::Duration),
        (BinaryOp::Subtract, T::Timestamp, T::Timestamp) => Some(T::Duration),
        (BinaryOp::Subtract, T::Timestamp, T::Duration) => Some(T::Timestamp),
        _ => None,
    }
}

enum Signature {
    Result(Type),
    UnknownFunction,
    WrongArgumentCount(&'static str),
    NoMatchingOverload,
}

/// Resolves a function call from its name, its form and its argument types (the
/// receiver first for member calls).
fn function_signature(function: &str, is_member: bool, types: &[Type]) -> Signature {
    use Signature::{NoMatchingOverload as NoMatch, Result as R, WrongArgumentCount as Count};
    use Type as T;
    let dynamic = |ty: &Type| ty.is_dynamic();
    let is =
        |ty: Option<&Type>, expected: &Type| ty.is_some_and(|ty| ty.is_dynamic() || ty == expected);
    let first = types.first();
    let second = types.get(1);
    let third = types.get(2);
    match function {
        "size" => {
            if types.len() != 1 {
                return Count(if is_member {
                    "no arguments"
                } else {
                    "one argument"
                });
            }
            match first {
                Some(T::String | T::Bytes | T::List(_) | T::Map(_, _) | T::Object(_)) => R(T::Int),
                Some(ty) if dynamic(ty) => R(T::Int),
                _ => NoMatch,
            }
        }
        "contains" | "startsWith" | "endsWith" | "matches" => {
            if types.len() != 2 {
                return Count("one argument");
            }
            if function != "matches" && !is_member {
                return NoMatch;
            }
            if is(first, &T::String) && is(second, &T::String) {
                R(T::Bool)
            } else {
                NoMatch
            }
        }
        // AGX-T1: the total of a list of numbers, for sums over a time window.
        "sum" if is_member => match types.len() {
            1 => match first {
                Some(T::List(element)) => match element.as_ref() {
                    T::Int => R(T::Int),
                    T::Uint => R(T::Uint),
                    T::Double => R(T::Double),
                    element if dynamic(element) => R(T::Dyn),
                    _ => NoMatch,
                },
                Some(ty) if dynamic(ty) => R(T::Dyn),
                _ => NoMatch,
            },
            _ => Count("no arguments"),
        },
        "fromUntrusted" if is_member => match types.len() {
            1..=3 => {
                if types.iter().all(|ty| is(Some(ty), &T::String)) {
                    R(T::Bool)
                } else {
                    NoMatch
                }
            }
            _ => Count("no arguments, or one or two"),
        },
        "fromUser" | "fromTrusted" if is_member => {
            if types.len() != 1 {
                return Count("no arguments");
            }
            if is(first, &T::String) {
                R(T::Bool)
            } else {
                NoMatch
            }
        }
        "fromTool" if is_member => match types.len() {
            2 | 3 => {
                if types.iter().all(|ty| is(Some(ty), &T::String)) {
                    R(T::Bool)
                } else {
                    NoMatch
                }
            }
            _ => Count("one or two arguments"),
        },
        "lowerAscii" | "upperAscii" | "trim" if is_member => {
            if types.len() != 1 {
                return Count("no arguments");
            }
            if is(first, &T::String) {
                R(T::String)
            } else {
                NoMatch
            }
        }
        "replace" if is_member => match types.len() {
            3 | 4 => {
                let strings =
                    is(first, &T::String) && is(second, &T::String) && is(third, &T::String);
                let count_ok = types.len() == 3 || is(types.get(3), &T::Int);
                if strings && count_ok {
                    R(T::String)
                } else {
                    NoMatch
                }
            }
            _ => Count("two or three arguments"),
        },
        "split" if is_member => match types.len() {
            2 | 3 => {
                let ok = is(first, &T::String)
                    && is(second, &T::String)
                    && (types.len() == 2 || is(third, &T::Int));
                if ok {
                    R(T::List(Box::new(T::String)))
                } else {
                    NoMatch
                }
            }
            _ => Count("one or two arguments"),
        },
        "join" if is_member => match types.len() {
            1 | 2 => {
                let list_ok = match first {
                    Some(T::List(element)) => element.is_compatible_with(&T::String),
                    Some(ty) => dynamic(ty),
                    None => false,
                };
                if list_ok && (types.len() == 1 || is(second, &T::String)) {
                    R(T::String)
                } else {
                    NoMatch
                }
            }
            _ => Count("zero or one argument"),
        },
        "indexOf" | "lastIndexOf" if is_member => match types.len() {
            2 | 3 => {
                let ok = is(first, &T::String)
                    && is(second, &T::String)
                    && (types.len() == 2 || is(third, &T::Int));
                if ok { R(T::Int) } else { NoMatch }
            }
            _ => Count("one or two arguments"),
        },
        "substring" if is_member => match types.len() {
            2 | 3 => {
                let ok = is(first, &T::String)
                    && is(second, &T::Int)
                    && (types.len() == 2 || is(third, &T::Int));
                if ok { R(T::String) } else { NoMatch }
            }
            _ => Count("one or two arguments"),
        },
        "charAt" if is_member => {
            if types.len() != 2 {
                return Count("one argument");
            }
            if is(first, &T::String) && is(second, &T::Int) {
                R(T::String)
            } else {
                NoMatch
            }
        }
        "getFullYear" | "getMonth" | "getDate" | "getDayOfMonth" | "getDayOfWeek"
        | "getDayOfYear" | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds"
            if is_member =>
        {
            let duration_accessor = matches!(
                function,
                "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds"
            );
            match (first, types.len()) {
                (Some(T::Timestamp), 1) => R(T::Int),
                (Some(T::Timestamp), 2) if is(second, &T::String) => R(T::Int),
                (Some(T::Duration), 1) if duration_accessor => R(T::Int),
                (Some(ty), 1 | 2) if dynamic(ty) => R(T::Int),
                (_, 1 | 2) => NoMatch,
                _ => Count("zero or one argument"),
            }
        }
        "int" | "uint" | "double" | "string" | "bytes" | "bool" | "timestamp" | "duration"
        | "dyn" | "type"
            if !is_member =>
        {
            if types.len() != 1 {
                return Count("one argument");
            }
            let Some(argument) = first else {
                return Count("one argument");
            };
            if dynamic(argument) {
                return R(conversion_result(function));
            }
            let accepted = match function {
                "int" => matches!(
                    argument,
                    T::Int | T::Uint | T::Double | T::String | T::Timestamp
                ),
                "uint" => matches!(argument, T::Int | T::Uint | T::Double | T::String),
                "double" => matches!(argument, T::Int | T::Uint | T::Double | T::String),
                "string" => matches!(
                    argument,
                    T::Int
                        | T::Uint
                        | T::Double
                        | T::String
                        | T::Bytes
                        | T::Bool
                        | T::Timestamp
                        | T::Duration
                ),
                "bytes" => matches!(argument, T::String | T::Bytes),
                "bool" => matches!(argument, T::Bool | T::String),
                "timestamp" => matches!(argument, T::String | T::Int | T::Timestamp),
                "duration" => matches!(argument, T::String | T::Duration),
                _ => true,
            };
            if accepted {
                R(conversion_result(function))
            } else {
                NoMatch
            }
        }
        _ => Signature::UnknownFunction,
    }
}

fn conversion_result(function: &str) -> Type {
    match function {
        "int" => Type::Int,
        "uint" => Type::Uint,
        "double" => Type::Double,
        "string" => Type::String,
        "bytes" => Type::Bytes,
        "bool" => Type::Bool,
        "timestamp" => Type::Timestamp,
        "duration" => Type::Duration,
        "type" => Type::TypeType,
        _ => Type::Dyn,
    }
}

/// Adds the `hr-kb` help to diagnostics located inside a subtraction whose operands are
/// identifiers written against the `-` with no spaces, such as `recent.hr-kb.inputs`.
fn attach_hyphen_help(root: &Expr, diagnostics: &mut [CelDiagnostic]) {
    let mut stack = vec![root];
    while let Some(expr) = stack.pop() {
        if let ExprKind::Binary {
            op: BinaryOp::Subtract,
            op_span,
            left,
            right,
        } = &expr.kind
            && let Some(left_name) = rightmost_name(left)
            && let Some((right_name, right_span)) = leftmost_name(right)
            && left.span.end == op_span.start
            && op_span.end == right_span.start
        {
            for diagnostic in diagnostics.iter_mut() {
                let inside = diagnostic.span.start >= expr.span.start
                    && diagnostic.span.end <= expr.span.end;
                if inside {
                    diagnostic.help = Some(hyphen_help(&left_name, &right_name));
                }
            }
        }
        stack.extend(expr.children());
    }
}

fn rightmost_name(expr: &Expr) -> Option<String> {
    match &expr.kind {
        ExprKind::Ident(name) => Some(name.trim_start_matches('.').to_string()),
        ExprKind::Select { field, .. } => Some(field.clone()),
        _ => None,
    }
}

fn leftmost_name(expr: &Expr) -> Option<(String, Span)> {
    let mut current = expr;
    loop {
        match &current.kind {
            ExprKind::Ident(name) => return Some((name.clone(), current.span)),
            ExprKind::Select { operand, .. } | ExprKind::Index { operand, .. } => current = operand,
            ExprKind::Call {
                target: Some(target),
                ..
            } => current = target,
            _ => return None,
        }
    }
}
