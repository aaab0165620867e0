//! Each agent's `policies` module: its CEL checks, each compiled to Rust over a typed
//! root where the compiler can and interpreted by the runtime otherwise.

use std::str::FromStr;

use agentc_cel::engagement::field;
use agentc_cel::{ObjectType, Type};
use agentc_cel_compile::{
    CompiledFunction, FieldReads, compile_assertion, compile_function, engagement_layout,
    prune_layout,
};
use proc_macro2::{Literal, TokenStream};
use quote::quote;

use crate::ir::AgentIr;

use super::Emitter;
use super::layout::{CelStructsFor, FieldNumbers, layout_structs};
use super::names::{docs, ident, snake_ident};

/// Where a compiled check's typed root comes from.
#[derive(Clone, Copy)]
enum CheckRoot {
    /// The agent's engagement: the roots the check reads converted from their
    /// variables (an unbound root denies), the others left at their defaults, which the
    /// check never reads.
    Engagement,
    /// A guardrail tool's output fields, each read from its variable (OAS-G4).
    GuardrailFields,
}

/// What kind of CEL item a check is, for its compiled function.
#[derive(Clone, Copy)]
enum CheckKind {
    Assertion,
    Selection,
}

/// One CEL expression turned into a `fn <name>_check() -> Result<Arc<dyn Check>,
/// SetupError>`: compiled over the typed root when the compiler can, interpreted
/// otherwise, as its doc comment says. `depth` is how many modules deep the function
/// sits below the generated root.
#[derive(Clone, Copy)]
struct CheckSite<'a> {
    function: &'a str,
    text: &'a str,
    /// Where the spec writes the expression (`file:line:column`), for refusal reasons.
    at: Option<&'a str>,
    /// The agent's definitions (AGX-D1), inlined before compiling; `None` where
    /// there are none (and in a guardrail, which has none).
    definitions: Option<&'a agentc_cel::Definitions>,
    root_name: &'a str,
    layout: &'a ObjectType,
    root: CheckRoot,
    kind: CheckKind,
    depth: usize,
}

/// `Some("…")` or `None`, as a literal of type `Option<&'static str>`.
pub(super) fn optional_str(value: Option<&str>) -> TokenStream {
    match value {
        Some(value) => quote!(Some(#value)),
        None => quote!(None),
    }
}

fn up(depth: usize) -> TokenStream {
    let supers = (0..depth).map(|_| quote!(super::));
    quote!(#(#supers)*)
}

/// A site's expression, parsed and compiled over its layout; the error is why it must be
/// interpreted instead.
fn compile_site(site: &CheckSite<'_>) -> Result<CompiledFunction, String> {
    let expr = agentc_cel::parse(site.text).map_err(|_| "it does not parse".to_string())?;
    let expr = match site.definitions {
        Some(definitions) => definitions
            .expand(&expr)
            .map_err(|_| "its definitions do not inline".to_string())?,
        None => expr,
    };
    match site.kind {
        CheckKind::Assertion => {
            compile_assertion(site.function, &expr, site.root_name, site.layout)
        }
        CheckKind::Selection => compile_function(site.function, &expr, site.root_name, site.layout),
    }
    .map_err(|error| error.message)
}

/// `layout` pruned to the fields that the sites which compile over it read (see
/// [`prune_layout`]): the checks are then emitted over the pruned layout, so that a
/// generated crate has structs, conversions and copies only for what its compiled
/// checks look at. A site that does not compile reads nothing here; it is interpreted
/// over the runtime's whole engagement.
fn pruned_for(sites: &[CheckSite<'_>], layout: &ObjectType) -> ObjectType {
    let mut reads = FieldReads::default();
    for site in sites {
        if let Ok(compiled) = compile_site(&CheckSite { layout, ..*site }) {
            reads.extend(&compiled.reads);
        }
    }
    prune_layout(layout, &reads)
}

/// The `Reads` of a compiled check: the fields its code reads, as the compiler recorded
/// them. They are trusted only once the check compiles again over a layout that holds
/// those fields and nothing else (code that reached any other field would not compile
/// there), and only when each of them has a number (a read the numbering missed would
/// otherwise be left at its default); a check that fails either test is given every
/// field, which is never wrong, only slower.
fn check_reads(
    site: &CheckSite<'_>,
    compiled: &CompiledFunction,
    numbers: &FieldNumbers,
) -> TokenStream {
    let alone = prune_layout(site.layout, &compiled.reads);
    let proven = compile_site(&CheckSite {
        layout: &alone,
        ..*site
    })
    .is_ok();
    let words = if proven && numbers.numbers_all_of(&compiled.reads) {
        numbers.bits(&compiled.reads)
    } else {
        numbers.every_field()
    };
    let words = words.into_iter().map(|word| {
        Literal::from_str(&format!("{word:#x}")).unwrap_or_else(|_| Literal::u64_unsuffixed(word))
    });
    quote!(::agentc::__private::agentc_generated_support::cel_roots::Reads::new(&[#(#words),*]))
}

fn emit_check(site: &CheckSite<'_>, numbers: &FieldNumbers) -> TokenStream {
    let up = up(site.depth);
    let check_name = ident(&format!("{}_check", site.function));
    let text = site.text;
    let at = optional_str(site.at);
    // With definitions, the interpreter inlines them as the compiler did
    // (`DEFINITIONS` is the agent module's).
    let (interpreted_call, interpreter_call) = if site.definitions.is_some() {
        (
            quote!(#up support::interpreted_with(#text, #at, DEFINITIONS)),
            quote!(#up support::interpreter_with(#text, #at, DEFINITIONS)?),
        )
    } else {
        (
            quote!(#up support::interpreted(#text, #at)),
            quote!(#up support::interpreter(#text, #at)?),
        )
    };
    let interpreted = |reason: String| {
        let doc = docs(&format!(
            "`{}`\n\nInterpreted by the runtime: the CEL compiler cannot compile this expression ({reason}).",
            site.text.replace('`', "'")
        ));
        quote! {
            #doc
            pub fn #check_name() -> ::std::result::Result<::std::sync::Arc<dyn ::agentc::__private::agentc_runtime::Check>, #up SetupError> {
                #interpreted_call
            }
        }
    };
    let compiled = match compile_site(site) {
        Ok(compiled) => compiled,
        Err(reason) => return interpreted(reason),
    };
    // The roots the compiled function reads, as the compiler recorded them.
    let roots: Vec<&str> = compiled.reads.fields_of(&site.layout.name).collect();
    let root_ident = ident(site.root_name);
    let function = ident(site.function);
    // `match`es rather than `?`, `map` and `map_err`, which would each be one more
    // generic function instantiated per check (see `from_cel_impl`).
    // The meter counts the compiled code's work; once it has run out, `settle` turns
    // the result into the error that hands the check to the interpreter (see
    // `agentc_cel_support::budget`).
    let to_value = match site.kind {
        CheckKind::Assertion => quote! {
            let meter = ::agentc::__private::agentc_cel_support::Meter::new();
            let result = #function(&root, &meter);
            match meter.settle(result) {
                Ok(verdict) => Ok(::agentc::__private::agentc_cel::Value::Bool(verdict)),
                Err(error) => Err(#up support::denial(error)),
            }
        },
        CheckKind::Selection => quote! {
            let meter = ::agentc::__private::agentc_cel_support::Meter::new();
            let result = #function(&root, &meter);
            match meter.settle(result) {
                Ok(selected) => #up support::cel_value(selected),
                Err(error) => Err(#up support::denial(error)),
            }
        },
    };
    // An engagement check converts only the roots it reads, each from the runtime's
    // value; the other roots of the agent's layout are never looked at, so they are
    // their cheap defaults. So are the fields of the structs below them that the check
    // does not read (see `check_reads`). A guardrail's root is its tool's output
    // fields, all of them read from the variables.
    let reads = check_reads(site, &compiled, numbers);
    let build_root = if let CheckRoot::Engagement = site.root {
        let assignments = roots.iter().map(|root| {
            let root_field = ident(root);
            // `recent` is read field by field (see `from_root_fields_impl`).
            let read = if *root == field::RECENT {
                quote!(::agentc::__private::agentc_generated_support::cel_roots::root_by_fields(variables, #root, reads))
            } else {
                quote!(::agentc::__private::agentc_generated_support::cel_roots::root(variables, #root, reads))
            };
            quote! {
                #root_field: match #read {
                    Ok(value) => value,
                    Err(error) => return Err(error),
                },
            }
        });
        let rest = if roots.len() < site.layout.fields.len() {
            quote!(..::std::default::Default::default())
        } else {
            quote!()
        };
        quote! {
            let reads = #reads;
            let root = #root_ident { #(#assignments)* #rest };
        }
    } else {
        quote! {
            let reads = #reads;
            let root: #root_ident = match ::agentc::__private::agentc_generated_support::cel_roots::fields(variables, &[#(#roots),*], reads) {
                Ok(root) => root,
                Err(error) => return Err(error),
            };
        }
    };
    let tokens = compiled.tokens;
    let evaluate_name = ident(&format!("{}_evaluate", site.function));
    let evaluate_doc = format!(
        " Evaluates [`{}`] over the engagement's variables.",
        site.function
    );
    let doc = docs(&format!(
        "`{}`\n\nCompiled to Rust: [`{}`].",
        site.text.replace('`', "'"),
        site.function
    ));
    quote! {
        #tokens

        #[doc = #evaluate_doc]
        fn #evaluate_name(variables: &dyn ::agentc::__private::agentc_runtime::VariableSource) -> ::std::result::Result<::agentc::__private::agentc_cel::Value, ::agentc::__private::agentc_runtime::CheckError> {
            #build_root
            #to_value
        }

        #doc
        pub fn #check_name() -> ::std::result::Result<::std::sync::Arc<dyn ::agentc::__private::agentc_runtime::Check>, #up SetupError> {
            Ok(::agentc::__private::agentc_generated_support::cel_roots::compiled(
                &[#(#roots),*],
                #evaluate_name,
                #interpreter_call,
            ))
        }
    }
}

impl Emitter<'_> {
    /// The compiled policies of one agent, in `policies::<agent>`.
    pub(super) fn policies(&self, agent: &AgentIr) -> TokenStream {
        let module = snake_ident(&agent.name);
        let full_layout = engagement_layout(&agent.capability_types);
        let mut sites: Vec<(String, &str, Option<&str>, CheckKind)> = Vec::new();
        for capability in &agent.capabilities {
            let method = snake_ident(&capability.name).to_string();
            for (restriction, which) in [
                (&capability.input_restriction, "input"),
                (&capability.output_restriction, "output"),
            ] {
                let Some(restriction) = restriction else {
                    continue;
                };
                if let Some(cel) = &restriction.assertion {
                    sites.push((
                        format!("{which}_{method}"),
                        &cel.text,
                        cel.at.as_deref(),
                        CheckKind::Assertion,
                    ));
                }
                if let Some(cel) = &restriction.review_when {
                    // `review_when_` cannot collide with `input_`/`output_`/`exposes_`.
                    sites.push((
                        format!("review_when_{which}_{method}"),
                        &cel.text,
                        cel.at.as_deref(),
                        CheckKind::Assertion,
                    ));
                }
            }
        }
        for (key, text) in &agent.exposes {
            sites.push((
                format!("exposes_{}", snake_ident(key)),
                text,
                None,
                CheckKind::Selection,
            ));
        }
        // AGX-D1: the checker has accepted the definitions, so they load; should they
        // not, the expressions that use them do not compile, and their interpreted
        // checks fail at setup (fail closed).
        let loaded = agentc_cel::Definitions::from_texts(
            agent
                .definitions
                .iter()
                .map(|(key, text)| (key.as_str(), text.as_str())),
        )
        .unwrap_or_default();
        let definitions = (!agent.definitions.is_empty()).then_some(&loaded);
        fn engagement_site<'s>(
            (function, text, at, kind): &'s (String, &str, Option<&str>, CheckKind),
            layout: &'s ObjectType,
            definitions: Option<&'s agentc_cel::Definitions>,
        ) -> CheckSite<'s> {
            CheckSite {
                function: function.as_str(),
                text,
                at: *at,
                definitions,
                root_name: "Engagement",
                layout,
                root: CheckRoot::Engagement,
                kind: *kind,
                depth: 2,
            }
        }
        let full_sites: Vec<CheckSite<'_>> = sites
            .iter()
            .map(|site| engagement_site(site, &full_layout, definitions))
            .collect();
        let layout = pruned_for(&full_sites, &full_layout);
        let (structs, numbers) = layout_structs("Engagement", &layout, CelStructsFor::Engagement);
        let items: Vec<TokenStream> = sites
            .iter()
            .map(|site| emit_check(&engagement_site(site, &layout, definitions), &numbers))
            .collect();
        let mut guardrail_modules = Vec::new();
        for (guardrail, which) in [
            (&agent.input_guardrail, "input"),
            (&agent.output_guardrail, "output"),
        ] {
            let Some(guardrail) = guardrail else { continue };
            let Some(tool) = self.set.tools.get(guardrail.tool) else {
                continue;
            };
            let Type::Object(fields) = &tool.output else {
                continue;
            };
            let mut fields = fields.clone();
            fields.name = "Fields".to_string();
            let site = CheckSite {
                function: "assertion",
                text: &guardrail.assertion.text,
                at: guardrail.assertion.at.as_deref(),
                definitions: None,
                root_name: "Fields",
                layout: &fields,
                root: CheckRoot::GuardrailFields,
                kind: CheckKind::Assertion,
                depth: 3,
            };
            let fields = pruned_for(std::slice::from_ref(&site), &fields);
            let (guard_structs, numbers) =
                layout_structs("Fields", &fields, CelStructsFor::GuardrailFields);
            let check = emit_check(
                &CheckSite {
                    layout: &fields,
                    ..site
                },
                &numbers,
            );
            let guard_module = ident(&format!("{which}_guardrail"));
            let check_fn = ident(&format!("{which}_guardrail_check"));
            let doc = format!(
                " The {which} guardrail: its assertion over the fields of `{}`'s output (OAS-G4).",
                tool.name
            );
            guardrail_modules.push(quote! {
                #[doc = #doc]
                pub mod #guard_module {
                    #guard_structs
                    #check
                }

                /// The guardrail's check.
                pub fn #check_fn() -> ::std::result::Result<::std::sync::Arc<dyn ::agentc::__private::agentc_runtime::Check>, super::super::SetupError> {
                    #guard_module::assertion_check()
                }
            });
        }
        let doc = format!(
            " The compiled policies of agent `{}`, over its typed engagement (OAS-E3).",
            agent.name
        );
        let definitions_const = if agent.definitions.is_empty() {
            quote!()
        } else {
            let entries = agent
                .definitions
                .iter()
                .map(|(key, text)| quote!((#key, #text)));
            quote! {
                /// The agent's definitions (AGX-D1), as written: key and CEL text.
                pub const DEFINITIONS: &[(&str, &str)] = &[#(#entries),*];
            }
        };
        quote! {
            #[doc = #doc]
            pub mod #module {
                #definitions_const
                #structs

                #(#items)*
                #(#guardrail_modules)*
            }
        }
    }
}
