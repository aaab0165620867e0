//! `#[agentc_macros::agent(spec = "path")]`: the same generator as `agentc build`, run at
//! compile time. On a module, it fills the module with the agent code of the spec set at
//! `path` (a file or a directory, relative to the crate's `Cargo.toml`):
//!
//! ```ignore
//! #[agentc_macros::agent(spec = "specs/hr")]
//! mod hr {}
//! ```
//!
//! The expansion uses the same crates as a generated crate does (`agentc-runtime`,
//! `agentc-cel`, `agentc-cel-support`, `agentc-generated-support`, `async-trait`, `regex`,
//! `schemars`, `serde`, `serde_json`), so the calling crate depends on them. A spec with errors expands to a
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
    match expand(attribute.into(), item.into()) {
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
    let base = Path::new(&manifest_dir);
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
