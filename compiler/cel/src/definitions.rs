//! An agent's definitions (AGX-D1): named constants and predicates that every
//! assertion, `review_when` and `exposes` of the agent can use, written once.
//!
//! ```yaml
//! definitions:
//!   company: '"@acme.example"'
//!   colleague_named(value): value.fromUntrusted("read_inbox", "body")
//! ```
//!
//! A definition is inlined where it is used: `company` becomes its expression, and
//! `colleague_named(x)` its expression with `value` replaced by `x`. Inlining keeps one
//! meaning for every route that runs CEL — the checker, the interpreter and the
//! compiler to Rust all see an ordinary expression, so they cannot disagree about a
//! definition — and costs nothing per call, since expressions are prepared once.
//!
//! Inlining is hygienic, so a definition means the same wherever it is used:
//! - a definition's comprehension variables are renamed (`__d3_r`, a name CEL source
//!   cannot hold), so an argument's own variables are never captured by them;
//! - an engagement name a definition reads (`recent`, `user`, …) that the place of use
//!   binds as a comprehension variable is an error, rather than silently meaning the
//!   variable;
//! - a name bound by a comprehension at the place of use is that variable, never a
//!   definition.
//!
//! A definition may use the definitions above it (so none can recurse), and the
//! expression a use expands to is held to the parser's limits on nodes and depth, so
//! nesting definitions cannot make an expression grow past what a written one could.

use std::collections::HashMap;

use crate::ast::{Comprehension, Expr, ExprKind, MapEntry, StructField};
use crate::diagnostic::{CelDiagnostic, CelErrorKind, Span};
use crate::parser::ParseLimits;

/// Names a definition may not take: the engagement's variables and CEL's own words and
/// functions, which a definition would otherwise hide.
const RESERVED: &[&str] = &[
    "recent",
    "history",
    "user",
    "request",
    "started_at",
    "true",
    "false",
    "null",
    "in",
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "list",
    "type",
    "dyn",
    "timestamp",
    "duration",
    "matches",
];

/// One named constant or predicate, already expanded by the definitions above it.
#[derive(Debug, Clone, PartialEq)]
struct Definition {
    params: Vec<String>,
    body: Expr,
    /// The engagement names (free identifiers other than parameters) the body reads.
    free: Vec<String>,
    /// The body's node count, charged to a use before it is copied.
    nodes: usize,
}

/// An agent's definitions, in the order they were written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Definitions {
    by_name: HashMap<String, Definition>,
    order: Vec<String>,
}

/// A definition's key, `name` or `name(param, …)`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionKey {
    /// The name an expression uses.
    pub name: String,
    /// The parameters, for a predicate; empty for a constant.
    pub params: Vec<String>,
    /// Whether the key was written with parentheses (a predicate, possibly of none).
    pub is_function: bool,
}

fn is_identifier(text: &str) -> bool {
    let mut characters = text.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
        && !text.starts_with("__")
}

/// Reads a definition's key, or says what is wrong with it.
pub fn parse_definition_key(key: &str) -> Result<DefinitionKey, String> {
    let key = key.trim();
    let (name, params, is_function) = match key.split_once('(') {
        None => (key, Vec::new(), false),
        Some((name, rest)) => {
            let Some(inside) = rest.trim_end().strip_suffix(')') else {
                return Err("a predicate's key ends with `)`: `name(param, …)`".to_string());
            };
            let params: Vec<String> = if inside.trim().is_empty() {
                Vec::new()
            } else {
                inside
                    .split(',')
                    .map(|param| param.trim().to_string())
                    .collect()
            };
            (name.trim(), params, true)
        }
    };
    if !is_identifier(name) {
        return Err(format!(
            "`{name}` is not a name: letters, digits and `_`, not starting with a digit or `__`"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "`{name}` is a name CEL or the engagement already has; a definition would hide it"
        ));
    }
    for (position, param) in params.iter().enumerate() {
        if !is_identifier(param) || RESERVED.contains(&param.as_str()) {
            return Err(format!("`{param}` is not a usable parameter name"));
        }
        if params.iter().take(position).any(|earlier| earlier == param) {
            return Err(format!("the parameter `{param}` is named twice"));
        }
    }
    Ok(DefinitionKey {
        name: name.to_string(),
        params,
        is_function,
    })
}

impl Definitions {
    /// No definitions.
    pub fn new() -> Self {
        Definitions::default()
    }

    /// Definitions from their keys and texts, in order, as a runtime loads them from a
    /// checked document; the first problem is the error, as one line.
    pub fn from_texts<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut definitions = Definitions::new();
        for (key, text) in entries {
            let parsed_key = parse_definition_key(key)
                .map_err(|problem| format!("definition `{key}`: {problem}"))?;
            let body = crate::parse(text)
                .map_err(|errors| format!("definition `{key}`: {}", first_message(&errors)))?;
            definitions
                .add(&parsed_key, &body)
                .map_err(|errors| format!("definition `{key}`: {}", first_message(&errors)))?;
        }
        Ok(definitions)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The names defined, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// Adds a definition from its key and its parsed expression, expanded by the
    /// definitions added before it. A name defined twice is an error.
    pub fn add(&mut self, key: &DefinitionKey, body: &Expr) -> Result<(), Vec<CelDiagnostic>> {
        if self.by_name.contains_key(&key.name) {
            return Err(vec![invalid(
                format!("`{}` is defined twice", key.name),
                body.span,
            )]);
        }
        let mut bound = key.params.clone();
        let body = self.expand_bound(body, &mut bound)?;
        let mut free = Vec::new();
        collect_free(&body, &mut key.params.clone(), &mut free);
        free.sort();
        free.dedup();
        let (nodes, _) = measure(&body);
        self.by_name.insert(
            key.name.clone(),
            Definition {
                params: key.params.clone(),
                body,
                free,
                nodes,
            },
        );
        self.order.push(key.name.clone());
        Ok(())
    }

    /// The expression with every use of a definition inlined. Without definitions it
    /// is the expression itself.
    pub fn expand(&self, expr: &Expr) -> Result<Expr, Vec<CelDiagnostic>> {
        if self.is_empty() {
            return Ok(expr.clone());
        }
        let expanded = self.expand_bound(expr, &mut Vec::new())?;
        let limits = ParseLimits::default();
        let (nodes, depth) = measure(&expanded);
        if nodes > limits.max_nodes || depth > limits.max_depth {
            return Err(vec![CelDiagnostic::new(
                CelErrorKind::ExpressionTooLarge,
                format!(
                    "with its definitions inlined the expression has {nodes} nodes and {depth} levels, more than {} and {}",
                    limits.max_nodes, limits.max_depth
                ),
                expr.span,
            )]);
        }
        Ok(expanded)
    }

    fn expand_bound(
        &self,
        expr: &Expr,
        bound: &mut Vec<String>,
    ) -> Result<Expr, Vec<CelDiagnostic>> {
        let mut errors = Vec::new();
        let mut counter = 0;
        let mut inlined_nodes = 0;
        let expanded = crate::parser::with_enough_stack(|| {
            Expander {
                definitions: self,
                errors: &mut errors,
                counter: &mut counter,
                inlined_nodes: &mut inlined_nodes,
            }
            .expand(expr, bound)
        });
        if errors.is_empty() {
            Ok(expanded)
        } else {
            Err(errors)
        }
    }
}

fn first_message(errors: &[CelDiagnostic]) -> String {
    errors
        .first()
        .map_or_else(|| "invalid".to_string(), |error| error.message.clone())
}

fn invalid(message: String, span: Span) -> CelDiagnostic {
    CelDiagnostic::new(CelErrorKind::InvalidDefinition, message, span)
}

struct Expander<'a> {
    definitions: &'a Definitions,
    errors: &'a mut Vec<CelDiagnostic>,
    counter: &'a mut u32,
    /// Nodes copied so far: past the parser's node limit, nothing more is copied, so
    /// definitions that double at each level cannot take time or memory to find out.
    inlined_nodes: &'a mut usize,
}

impl Expander<'_> {
    fn expand(&mut self, expr: &Expr, bound: &mut Vec<String>) -> Expr {
        let kind = match &expr.kind {
            ExprKind::Ident(name) if !bound.contains(name) => {
                if let Some(definition) = self.definitions.by_name.get(name) {
                    if !definition.params.is_empty() {
                        self.errors.push(invalid(
                            format!(
                                "`{name}` is a predicate of {} parameter(s): call it, `{name}(…)`",
                                definition.params.len()
                            ),
                            expr.span,
                        ));
                        return expr.clone();
                    }
                    return self.inline(name, definition, &[], expr.span, bound);
                }
                expr.kind.clone()
            }
            ExprKind::Call {
                target: None,
                function,
                args,
                ..
            } if self.definitions.by_name.contains_key(function) => {
                let args: Vec<Expr> = args.iter().map(|arg| self.expand(arg, bound)).collect();
                let Some(definition) = self.definitions.by_name.get(function) else {
                    return expr.clone();
                };
                if definition.params.len() != args.len() {
                    self.errors.push(CelDiagnostic::new(
                        CelErrorKind::WrongArgumentCount,
                        format!(
                            "`{function}` takes {} argument(s), but {} were given",
                            definition.params.len(),
                            args.len()
                        ),
                        expr.span,
                    ));
                    return expr.clone();
                }
                return self.inline(function, definition, &args, expr.span, bound);
            }
            _ => map_children(expr, bound, &mut |child, bound| self.expand(child, bound)),
        };
        Expr {
            id: expr.id,
            kind,
            span: expr.span,
        }
    }

    /// The definition's body at the place of use: its parameters replaced by the
    /// arguments, its own comprehension variables renamed, every node of its own at
    /// the use's span (so a diagnostic points at the use, in the text being checked).
    fn inline(
        &mut self,
        name: &str,
        definition: &Definition,
        args: &[Expr],
        span: Span,
        bound: &[String],
    ) -> Expr {
        if let Some(captured) = definition.free.iter().find(|free| bound.contains(free)) {
            self.errors.push(invalid(
                format!(
                    "`{name}` reads the engagement's `{captured}`, which a comprehension variable hides here; rename the variable"
                ),
                span,
            ));
            return Expr {
                id: 0,
                kind: ExprKind::Ident(name.to_string()),
                span,
            };
        }
        let max_nodes = ParseLimits::default().max_nodes;
        *self.inlined_nodes = self.inlined_nodes.saturating_add(definition.nodes);
        if *self.inlined_nodes > max_nodes {
            if !self
                .errors
                .iter()
                .any(|error| error.kind == CelErrorKind::ExpressionTooLarge)
            {
                self.errors.push(CelDiagnostic::new(
                    CelErrorKind::ExpressionTooLarge,
                    format!("with its definitions inlined the expression has more than {max_nodes} nodes"),
                    span,
                ));
            }
            return Expr {
                id: 0,
                kind: ExprKind::Ident(name.to_string()),
                span,
            };
        }
        *self.counter += 1;
        let parameters: HashMap<&str, &Expr> = definition
            .params
            .iter()
            .map(String::as_str)
            .zip(args.iter())
            .collect();
        let mut renamed = Vec::new();
        substitute(
            &definition.body,
            &parameters,
            &mut renamed,
            *self.counter,
            span,
        )
    }
}

/// A copy of a definition's body for one use. `renamed` maps the body's comprehension
/// variables in scope to their fresh names.
fn substitute(
    expr: &Expr,
    parameters: &HashMap<&str, &Expr>,
    renamed: &mut Vec<(String, String)>,
    use_number: u32,
    span: Span,
) -> Expr {
    let kind = match &expr.kind {
        ExprKind::Ident(name) => {
            if let Some((_, fresh)) = renamed.iter().rev().find(|(old, _)| old == name) {
                ExprKind::Ident(fresh.clone())
            } else if let Some(argument) = parameters.get(name.as_str()) {
                return (*argument).clone();
            } else {
                ExprKind::Ident(name.clone())
            }
        }
        ExprKind::Comprehension(comprehension) => {
            let range = substitute(&comprehension.range, parameters, renamed, use_number, span);
            let depth = renamed.len();
            let fresh = |variable: &str| format!("__d{use_number}_{variable}");
            let variable = fresh(&comprehension.variable);
            renamed.push((comprehension.variable.clone(), variable.clone()));
            let second_variable = comprehension.second_variable.as_ref().map(|(second, _)| {
                let second_fresh = fresh(second);
                renamed.push((second.clone(), second_fresh.clone()));
                (second_fresh, span)
            });
            let filter = comprehension
                .filter
                .as_ref()
                .map(|filter| substitute(filter, parameters, renamed, use_number, span));
            let body = substitute(&comprehension.body, parameters, renamed, use_number, span);
            renamed.truncate(depth);
            ExprKind::Comprehension(Box::new(Comprehension {
                kind: comprehension.kind,
                range,
                variable,
                variable_span: span,
                second_variable,
                filter,
                body,
            }))
        }
        _ => map_children(expr, &mut Vec::new(), &mut |child, _| {
            substitute(child, parameters, renamed, use_number, span)
        }),
    };
    Expr {
        id: expr.id,
        kind: respan(kind, span),
        span,
    }
}

/// A node kind with the spans it holds itself (a field's, a function's, an operator's)
/// moved to `span`.
fn respan(kind: ExprKind, span: Span) -> ExprKind {
    match kind {
        ExprKind::Select { operand, field, .. } => ExprKind::Select {
            operand,
            field,
            field_span: span,
        },
        ExprKind::Has { operand, field, .. } => ExprKind::Has {
            operand,
            field,
            field_span: span,
        },
        ExprKind::Call {
            target,
            function,
            args,
            ..
        } => ExprKind::Call {
            target,
            function,
            function_span: span,
            args,
        },
        ExprKind::Binary {
            op, left, right, ..
        } => ExprKind::Binary {
            op,
            op_span: span,
            left,
            right,
        },
        ExprKind::Struct { type_name, fields } => ExprKind::Struct {
            type_name,
            fields: fields
                .into_iter()
                .map(|field| StructField {
                    name_span: span,
                    ..field
                })
                .collect(),
        },
        other => other,
    }
}

/// The node kind with each child replaced by `map(child, bound)`; a comprehension's
/// variables are bound while its filter and body are mapped.
fn map_children(
    expr: &Expr,
    bound: &mut Vec<String>,
    map: &mut dyn FnMut(&Expr, &mut Vec<String>) -> Expr,
) -> ExprKind {
    let mut one = |child: &Expr, bound: &mut Vec<String>| Box::new(map(child, bound));
    match &expr.kind {
        ExprKind::Literal(_) | ExprKind::Ident(_) => expr.kind.clone(),
        ExprKind::Select {
            operand,
            field,
            field_span,
        } => ExprKind::Select {
            operand: one(operand, bound),
            field: field.clone(),
            field_span: *field_span,
        },
        ExprKind::Has {
            operand,
            field,
            field_span,
        } => ExprKind::Has {
            operand: one(operand, bound),
            field: field.clone(),
            field_span: *field_span,
        },
        ExprKind::Call {
            target,
            function,
            function_span,
            args,
        } => ExprKind::Call {
            target: target.as_ref().map(|target| one(target, bound)),
            function: function.clone(),
            function_span: *function_span,
            args: args.iter().map(|arg| *one(arg, bound)).collect(),
        },
        ExprKind::Unary { op, operand } => ExprKind::Unary {
            op: *op,
            operand: one(operand, bound),
        },
        ExprKind::Binary {
            op,
            op_span,
            left,
            right,
        } => ExprKind::Binary {
            op: *op,
            op_span: *op_span,
            left: one(left, bound),
            right: one(right, bound),
        },
        ExprKind::Conditional {
            condition,
            if_true,
            if_false,
        } => ExprKind::Conditional {
            condition: one(condition, bound),
            if_true: one(if_true, bound),
            if_false: one(if_false, bound),
        },
        ExprKind::Index { operand, index } => ExprKind::Index {
            operand: one(operand, bound),
            index: one(index, bound),
        },
        ExprKind::List(items) => {
            ExprKind::List(items.iter().map(|item| *one(item, bound)).collect())
        }
        ExprKind::Map(entries) => ExprKind::Map(
            entries
                .iter()
                .map(|entry| MapEntry {
                    key: *one(&entry.key, bound),
                    value: *one(&entry.value, bound),
                })
                .collect(),
        ),
        ExprKind::Struct { type_name, fields } => ExprKind::Struct {
            type_name: type_name.clone(),
            fields: fields
                .iter()
                .map(|field| StructField {
                    name: field.name.clone(),
                    name_span: field.name_span,
                    value: *one(&field.value, bound),
                })
                .collect(),
        },
        ExprKind::Comprehension(comprehension) => {
            let range = *one(&comprehension.range, bound);
            let depth = bound.len();
            bound.push(comprehension.variable.clone());
            if let Some((second, _)) = &comprehension.second_variable {
                bound.push(second.clone());
            }
            let filter = comprehension
                .filter
                .as_ref()
                .map(|filter| *one(filter, bound));
            let body = *one(&comprehension.body, bound);
            bound.truncate(depth);
            ExprKind::Comprehension(Box::new(Comprehension {
                kind: comprehension.kind,
                range,
                variable: comprehension.variable.clone(),
                variable_span: comprehension.variable_span,
                second_variable: comprehension.second_variable.clone(),
                filter,
                body,
            }))
        }
    }
}

/// The identifiers an expression reads that nothing inside it binds.
fn collect_free(expr: &Expr, bound: &mut Vec<String>, free: &mut Vec<String>) {
    match &expr.kind {
        ExprKind::Ident(name) => {
            if !bound.contains(name) {
                free.push(name.clone());
            }
        }
        ExprKind::Comprehension(comprehension) => {
            collect_free(&comprehension.range, bound, free);
            let depth = bound.len();
            bound.push(comprehension.variable.clone());
            if let Some((second, _)) = &comprehension.second_variable {
                bound.push(second.clone());
            }
            if let Some(filter) = &comprehension.filter {
                collect_free(filter, bound, free);
            }
            collect_free(&comprehension.body, bound, free);
            bound.truncate(depth);
        }
        _ => {
            for child in expr.children() {
                collect_free(child, bound, free);
            }
        }
    }
}

/// An expression's node count and depth, without recursion (an expanded expression is
/// not yet known to be shallow).
fn measure(expr: &Expr) -> (usize, usize) {
    let mut nodes = 0;
    let mut deepest = 0;
    let mut stack = vec![(expr, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        nodes += 1;
        deepest = deepest.max(depth);
        for child in node.children() {
            stack.push((child, depth + 1));
        }
    }
    (nodes, deepest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn definitions(entries: &[(&str, &str)]) -> Definitions {
        let mut definitions = Definitions::new();
        for (key, text) in entries {
            let key = parse_definition_key(key).unwrap();
            definitions.add(&key, &parse(text).unwrap()).unwrap();
        }
        definitions
    }

    #[test]
    fn agx_d1_keys_are_names_with_optional_parameters() {
        let key = parse_definition_key("trusted_recipient(r, domain)").unwrap();
        assert_eq!(key.name, "trusted_recipient");
        assert_eq!(key.params, ["r", "domain"]);
        assert!(parse_definition_key("company").unwrap().params.is_empty());
        for bad in [
            "recent", "size(x)", "f(x, x)", "1f", "f(x", "__f", "f(user)", "a b",
        ] {
            assert!(parse_definition_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn agx_d1_an_argument_is_never_captured_by_a_definitions_variable() {
        let definitions = definitions(&[("in_all(xs, v)", "xs.all(r, r == v)")]);
        // `r` here is the caller's variable; inside, the definition's `r` is renamed.
        let expanded = definitions
            .expand(&parse("[1, 2].exists(r, in_all([r], r))").unwrap())
            .unwrap();
        let value = crate::evaluate(&expanded, &crate::Activation::new()).unwrap();
        assert_eq!(value, crate::Value::Bool(true));
    }

    #[test]
    fn agx_d1_a_comprehension_variable_at_the_use_shadows_a_definition_and_cannot_hide_an_engagement_name()
     {
        let definitions = definitions(&[("limit", "3"), ("named(v)", "v in request")]);
        let expanded = definitions
            .expand(&parse("[5].all(limit, limit > 4)").unwrap())
            .unwrap();
        let value = crate::evaluate(&expanded, &crate::Activation::new()).unwrap();
        assert_eq!(value, crate::Value::Bool(true));
        let errors = definitions
            .expand(&parse("['a'].all(request, named(request))").unwrap())
            .unwrap_err();
        assert_eq!(errors[0].kind, CelErrorKind::InvalidDefinition);
    }

    #[test]
    fn agx_d1_nesting_definitions_cannot_outgrow_the_limits() {
        // Each level doubles the one below: the definition that passes the node limit
        // is refused when it is added, and nothing past it is built.
        let mut definitions = Definitions::new();
        definitions
            .add(
                &parse_definition_key("d0").unwrap(),
                &parse("1 + 1").unwrap(),
            )
            .unwrap();
        let mut refused_at = None;
        for level in 1..40 {
            let key = parse_definition_key(&format!("d{level}")).unwrap();
            let body = parse(&format!("d{0} + d{0}", level - 1)).unwrap();
            if let Err(errors) = definitions.add(&key, &body) {
                assert_eq!(errors[0].kind, CelErrorKind::ExpressionTooLarge);
                refused_at = Some(level);
                break;
            }
        }
        assert_eq!(refused_at, Some(12));
        // Uses that together pass the limit are refused too.
        let uses = ["d11"; 4].join(" + ");
        let errors = definitions
            .expand(&parse(&format!("{uses} > 0")).unwrap())
            .unwrap_err();
        assert_eq!(errors[0].kind, CelErrorKind::ExpressionTooLarge);
    }

    #[test]
    fn agx_d1_a_wrong_count_of_arguments_and_an_uncalled_predicate_are_errors() {
        let definitions = definitions(&[("twice(x)", "x + x")]);
        let errors = definitions
            .expand(&parse("twice(1, 2) > 0").unwrap())
            .unwrap_err();
        assert_eq!(errors[0].kind, CelErrorKind::WrongArgumentCount);
        let errors = definitions
            .expand(&parse("twice > 0").unwrap())
            .unwrap_err();
        assert_eq!(errors[0].kind, CelErrorKind::InvalidDefinition);
        assert_eq!(
            crate::evaluate(
                &definitions
                    .expand(&parse("twice(2) == 4").unwrap())
                    .unwrap(),
                &crate::Activation::new()
            )
            .unwrap(),
            crate::Value::Bool(true)
        );
    }
}
