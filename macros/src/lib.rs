//! `#[agentc::agent(spec = "path")]`: the same generator as `agentc build`, run at
//! compile time. On a module, it fills the module with the agent code of the spec set at
//! `path` (a file or a directory, relative to the crate's `Cargo.toml`, or else to the
//! directory of the file that holds the attribute):
//!
//! ```ignore
//! #[agentc::agent(spec = "specs/hr")]
//! mod hr {}
//! ```
//!
//! Users reach this crate through the `agentc` façade (`#[agentc::agent]`), and the
//! expansion refers only to `::agentc` (its hidden `__private` module holds what
//! generated code needs), so the calling crate depends on `agentc` and nothing else of
//! ours. A spec with errors expands to a
//! `compile_error!` holding every diagnostic, rendered with file:line:col as
//! `agentc check` prints it. Each spec file is included with `include_bytes!`, so that
//! cargo re-runs the macro when a file changes (a file added to a directory is only seen
//! once something else changes).
//!
//! This crate only reads the spec files; everything else is the pure core's.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use agentc_compiler::{CheckOptions, SourceInput, check_set};
use proc_macro::TokenStream;
use quote::quote;
use syn::parse::Parser;

/// Expands a module into the agent code of a spec set; see the crate documentation.
#[proc_macro_attribute]
pub fn agent(attribute: TokenStream, item: TokenStream) -> TokenStream {
    // The directory of the file that holds the attribute, for a spec path that is not
    // found relative to the crate root (as `include_str!` resolves its path).
    let invoking_directory = proc_macro::Span::call_site()
        .local_file()
        .and_then(|file| file.parent().map(Path::to_path_buf));
    match expand(attribute.into(), item.into(), invoking_directory.as_deref()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn spec_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let entries = std::fs::read_dir(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    for entry in entries {
        let entry = entry.map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_spec = name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json");
        if is_spec && !name.starts_with('.') {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn expand(
    attribute: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
    invoking_directory: Option<&Path>,
) -> syn::Result<proc_macro2::TokenStream> {
    let mut spec: Option<syn::LitStr> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("spec") {
            spec = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error("expected `spec = \"path/to/spec\"`"))
        }
    });
    parser.parse2(attribute.clone())?;
    let Some(spec) = spec else {
        return Err(syn::Error::new_spanned(
            attribute,
            "expected `spec = \"path/to/spec\"`",
        ));
    };
    let module: syn::ItemMod = syn::parse2(item)?;
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_string());
    let mut base = PathBuf::from(manifest_dir);
    if !base.join(spec.value()).exists()
        && let Some(directory) = invoking_directory
        && directory.join(spec.value()).exists()
    {
        base = directory.to_path_buf();
    }
    let base = base.as_path();
    let files = spec_files(&base.join(spec.value()))
        .map_err(|message| syn::Error::new(spec.span(), message))?;
    if files.is_empty() {
        return Err(syn::Error::new(
            spec.span(),
            "no .yaml, .yml or .json files found",
        ));
    }
    let mut inputs = Vec::new();
    let mut tracked = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).map_err(|error| {
            syn::Error::new(
                spec.span(),
                format!("cannot read `{}`: {error}", file.display()),
            )
        })?;
        let name = file
            .strip_prefix(base)
            .unwrap_or(file)
            .display()
            .to_string();
        inputs.push(SourceInput { name, bytes });
        tracked.push(file.display().to_string());
    }
    let set = check_set(&inputs, &CheckOptions::default());
    let items = match agentc_codegen::generate_items(&set) {
        Ok(items) => items,
        Err(error) => {
            let message = error.to_string();
            return Ok(quote::quote_spanned! {spec.span()=> ::core::compile_error!(#message);});
        }
    };
    let attributes = &module.attrs;
    let visibility = &module.vis;
    let name = &module.ident;
    let existing = module.content.map(|(_, items)| items).unwrap_or_default();
    Ok(quote! {
        #(#attributes)*
        #visibility mod #name {
            #(const _: &[u8] = include_bytes!(#tracked);)*
            #(#existing)*
            #items
        }
    })
}

/// Declares a native tool from an async Rust function: `#[agentc::tool]` on
/// `async fn name(input: In) -> Result<Out, ToolError>` (or `-> Out`) keeps the function
/// and adds a unit struct named after it in CamelCase with `Tool` appended (for
/// `lookup_policy_doc`, `LookupPolicyDocTool`) that
///
/// - describes the tool: `LookupPolicyDocTool::document()` is its tool document
///   (`kind: openagentspec:v1/tool`) as JSON, with the input and output JSON Schemas
///   generated from `In` and `Out` by schemars, the function's doc comment as the
///   description, and a `native` binding naming the function — so a spec can bind a
///   capability to it, and `agentc check` can check that spec;
/// - implements the runtime's `ToolBackend`, decoding the untrusted JSON input into `In`
///   (a mismatch is a refused call, never a panic) and encoding `Out`.
///
/// `In` and `Out` derive `serde::Deserialize`/`Serialize` and `schemars::JsonSchema`; the
/// calling crate depends on `agentc` and, for those derives on its own types, on `serde`
/// and `schemars`.
#[proc_macro_attribute]
pub fn tool(attribute: TokenStream, item: TokenStream) -> TokenStream {
    let attribute = proc_macro2::TokenStream::from(attribute);
    if !attribute.is_empty() {
        return syn::Error::new_spanned(attribute, "`#[agentc::tool]` takes no arguments")
            .to_compile_error()
            .into();
    }
    let function = match syn::parse::<syn::ItemFn>(item) {
        Ok(function) => function,
        Err(error) => return error.to_compile_error().into(),
    };
    match expand_tool(&function) {
        Ok(expansion) => quote!(#function #expansion).into(),
        // The function is kept, so one mistake here does not cascade into errors at
        // every call site of the function.
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#function #error).into()
        }
    }
}

fn expand_tool(function: &syn::ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let signature = &function.sig;
    if signature.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            signature.fn_token,
            "a tool function must be `async`",
        ));
    }
    let name = &signature.ident;
    let name_text = name.to_string();
    if agentc_compiler::names::name_problem(&name_text).is_some() {
        return Err(syn::Error::new_spanned(
            name,
            "a tool's name must be lowercase ASCII letters, digits and `_` (OAS-N1)",
        ));
    }
    let mut inputs = signature.inputs.iter();
    let (Some(syn::FnArg::Typed(argument)), None) = (inputs.next(), inputs.next()) else {
        return Err(syn::Error::new_spanned(
            &signature.inputs,
            "a tool function takes exactly one argument: its input struct",
        ));
    };
    let input_type = &argument.ty;
    let (output_type, returns_result) = match &signature.output {
        syn::ReturnType::Default => {
            return Err(syn::Error::new_spanned(
                signature,
                "a tool function must return its output",
            ));
        }
        syn::ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => (ok, true),
            None => ((**ty).clone(), false),
        },
    };
    let description = function
        .attrs
        .iter()
        .filter_map(|attribute| match &attribute.meta {
            syn::Meta::NameValue(pair) if pair.path.is_ident("doc") => match &pair.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(text),
                    ..
                }) => Some(text.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ");
    let description = if description.is_empty() {
        format!("The native tool `{name_text}`.")
    } else {
        description
    };
    let struct_name = quote::format_ident!(
        "{}Tool",
        name_text
            .split('_')
            .map(|part| {
                let mut characters = part.chars();
                characters
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + characters.as_str())
                    .unwrap_or_default()
            })
            .collect::<String>()
    );
    let call = if returns_result {
        quote!(#name(typed).await?)
    } else {
        quote!(#name(typed).await)
    };
    let visibility = &function.vis;
    Ok(quote! {
        #[doc = concat!("The native tool `", #name_text, "`, declared with `#[agentc::tool]`.")]
        #[derive(Clone, Copy, Debug, Default)]
        #visibility struct #struct_name;

        impl #struct_name {
            /// The tool's name, as capabilities reference it.
            pub const NAME: &'static str = #name_text;

            /// The tool document: schemas from the Rust types, a `native` binding.
            pub fn document() -> ::agentc::__private::serde_json::Value {
                ::agentc::__private::serde_json::json!({
                    "kind": "openagentspec:v1/tool",
                    "name": #name_text,
                    "description": #description,
                    "input": ::agentc::__private::schemars::schema_for!(#input_type),
                    "output": ::agentc::__private::schemars::schema_for!(#output_type),
                    "binding": { "native": { "function": concat!(module_path!(), "::", #name_text) } },
                })
            }
        }

        #[::agentc::__private::async_trait::async_trait]
        impl ::agentc::__private::agentc_runtime::ToolBackend for #struct_name {
            async fn invoke(
                &self,
                input: &::agentc::__private::serde_json::Value,
                _context: &::agentc::__private::agentc_runtime::ToolContext,
            ) -> ::std::result::Result<::agentc::__private::serde_json::Value, ::agentc::__private::agentc_runtime::ToolError> {
                let typed: #input_type = ::agentc::__private::serde_json::from_value(input.clone()).map_err(|error| {
                    ::agentc::__private::agentc_runtime::ToolError::InvalidInput { tool: #name_text.to_string(), detail: error.to_string() }
                })?;
                let output: #output_type = #call;
                ::agentc::__private::serde_json::to_value(output).map_err(|error| ::agentc::__private::agentc_runtime::ToolError::InvalidOutput {
                    tool: #name_text.to_string(),
                    detail: error.to_string(),
                })
            }
        }
    })
}

/// `T` when `ty` is written `Result<T, _>` (the error must convert into `ToolError`).
fn result_ok_type(ty: &syn::Type) -> Option<syn::Type> {
    let syn::Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return None;
    };
    match arguments.args.first()? {
        syn::GenericArgument::Type(ok) => Some(ok.clone()),
        _ => None,
    }
}
