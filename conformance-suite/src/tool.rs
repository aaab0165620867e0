//! A tool under test: its checked tool document, and where in which file it was written,
//! so that evidence can point at the line of the schema that failed.

use std::sync::Arc;

use agentc_compiler::documents::Document;
use agentc_compiler::documents::tool::{AuthScheme, ConformanceSpec, HttpMethod, ToolDocument};
use agentc_compiler::span::Span;
use agentc_compiler::{CheckOptions, CheckedSet, SourceInput, check_set};

/// Why tool documents could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The specs have check errors; the rendered diagnostics are attached.
    #[error(
        "the specs have {count} error(s); the conformance suite runs only on checked specs\n{rendered}"
    )]
    CheckErrors { count: usize, rendered: String },
}

/// One tool document, as checked, with its source for locating evidence.
#[derive(Clone, Debug)]
pub struct ToolUnderTest {
    /// The tool document.
    pub document: ToolDocument,
    source_name: Arc<str>,
    source_text: Arc<str>,
}

/// The tool documents of a checked set, in document order.
pub fn tools_from_checked_set(set: &CheckedSet) -> Vec<ToolUnderTest> {
    set.documents
        .iter()
        .filter_map(|loaded| match &loaded.document {
            Document::Tool(tool) => {
                let index = usize::try_from(loaded.file.0).unwrap_or(usize::MAX);
                Some(ToolUnderTest {
                    document: tool.clone(),
                    source_name: Arc::from(set.names.get(index).map_or("", String::as_str)),
                    source_text: Arc::from(set.texts.get(index).map_or("", String::as_str)),
                })
            }
            _ => None,
        })
        .collect()
}

/// Checks the sources as one set and returns their tool documents; a set with check
/// errors is refused, so the suite never runs on a document `agentc check` rejects.
pub fn load_tools(inputs: &[SourceInput]) -> Result<Vec<ToolUnderTest>, LoadError> {
    let set = check_set(inputs, &CheckOptions::default());
    if set.error_count() > 0 {
        return Err(LoadError::CheckErrors {
            count: set.error_count(),
            rendered: set.view().render_text(&set.diagnostics),
        });
    }
    Ok(tools_from_checked_set(&set))
}

/// The binding's method and URL split into the origin and the path (with any query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub method: HttpMethod,
    pub origin: String,
    /// As written in the binding: a path template keeps its `{name}`s (AGX-H1).
    pub path: String,
    /// The path parameters, filled from the input of each call.
    pub parameters: Vec<String>,
}

impl Endpoint {
    /// The path for `input` (its parameters filled in) and what is left of the input
    /// for the body or query. A parameter the input lacks (a probe that left it out)
    /// is filled with a placeholder, so the request still goes to the operation's route.
    pub(crate) fn path_for(&self, input: &serde_json::Value) -> (String, serde_json::Value) {
        let Some(fields) = input.as_object().filter(|_| !self.parameters.is_empty()) else {
            return (self.path.clone(), input.clone());
        };
        let mut filled_from = fields.clone();
        for name in &self.parameters {
            let usable = matches!(
                filled_from.get(name),
                Some(
                    serde_json::Value::String(_)
                        | serde_json::Value::Number(_)
                        | serde_json::Value::Bool(_)
                )
            );
            if !usable {
                filled_from.insert(
                    name.clone(),
                    serde_json::Value::String("agentc-conformance-probe".into()),
                );
            }
        }
        let path = agentc_compiler::path_template::fill(&self.path, &filled_from)
            .unwrap_or_else(|_| self.path.clone());
        let rest = agentc_compiler::path_template::without_parameters(&self.path, fields);
        (path, serde_json::Value::Object(rest))
    }

    /// The path without its query.
    pub(crate) fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

impl ToolUnderTest {
    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.document.name.value
    }

    /// The file the tool document was read from.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The conformance section, if the document has one.
    pub fn conformance(&self) -> Option<&ConformanceSpec> {
        self.document.conformance.as_ref()
    }

    /// The auth scheme (`none` when the document declares none).
    pub fn auth_scheme(&self) -> AuthScheme {
        self.document
            .auth
            .as_ref()
            .map_or(AuthScheme::None, |auth| auth.scheme)
    }

    /// The header an `api_key` scheme uses.
    pub(crate) fn api_key_header(&self) -> String {
        self.document
            .auth
            .as_ref()
            .and_then(|auth| auth.header.as_ref())
            .map_or_else(|| "X-Api-Key".to_string(), |header| header.value.clone())
    }

    /// The HTTP endpoint of the binding, or why the HTTP tests cannot apply.
    pub(crate) fn endpoint(&self) -> Result<Endpoint, String> {
        let binding = &self.document.binding;
        let Some(http) = &binding.http else {
            // An `mcp` tool never gets here: the runner gives it the MCP reading of the
            // tests (AGX-M5).
            let kind = if binding.native.is_some() {
                "a `native`"
            } else {
                "no"
            };
            return Err(format!(
                "the tool has {kind} binding; the seven tests speak to a service (an `http` or `mcp` binding)"
            ));
        };
        let parameters = agentc_compiler::path_template::parameters(&http.url.value)
            .map_err(|error| format!("the binding URL `{}`: {error}", http.url.value))?;
        let placeholders: serde_json::Map<String, serde_json::Value> = parameters
            .iter()
            .map(|name| (name.clone(), serde_json::Value::String("x".into())))
            .collect();
        let judged = agentc_compiler::path_template::fill(&http.url.value, &placeholders)
            .unwrap_or_else(|_| http.url.value.clone());
        let url = url::Url::parse(&judged)
            .map_err(|error| format!("the binding URL `{}` is invalid: {error}", http.url.value))?;
        let origin = url.origin().ascii_serialization();
        let path = if parameters.is_empty() {
            let mut path = url.path().to_string();
            if let Some(query) = url.query() {
                path.push('?');
                path.push_str(query);
            }
            path
        } else {
            agentc_compiler::path_template::path_as_written(&http.url.value).to_string()
        };
        Ok(Endpoint {
            method: http.method,
            origin,
            path,
            parameters,
        })
    }

    /// `file:line` of a span of this tool's document.
    pub(crate) fn location(&self, span: Span) -> String {
        let text = &self.source_text;
        let end = span.start.min(text.len());
        let line = text.as_bytes().get(..end).map_or(0, |prefix| {
            prefix.iter().filter(|byte| **byte == b'\n').count()
        }) + 1;
        format!("{}:{line}", self.source_name)
    }

    /// The environment variable a live run reads this tool's credential from.
    pub fn credential_variable(&self) -> String {
        self.conformance()
            .and_then(|conformance| conformance.credential_env.as_ref())
            .map_or_else(
                || format!("AGENTC_CONFORM_{}", self.name().to_ascii_uppercase()),
                |variable| variable.value.clone(),
            )
    }

    /// The valid example inputs declared for the tool's operation.
    pub(crate) fn examples(&self) -> &[agentc_compiler::documents::tool::OperationExample] {
        self.conformance()
            .and_then(|conformance| conformance.examples.as_deref())
            .unwrap_or_default()
    }

    /// Whether calling the tool's operation may change the service: an HTTP method
    /// other than GET, or any MCP call, unless the document says it is `read_only`.
    pub(crate) fn operation_writes(&self) -> bool {
        let read_only = self
            .conformance()
            .and_then(|conformance| conformance.read_only.as_ref())
            .is_some_and(|read_only| read_only.value);
        if read_only {
            return false;
        }
        match &self.document.binding.http {
            Some(http) => http.method != HttpMethod::Get,
            None => true,
        }
    }

    /// Whether a recorded request of a pitfall may change the service.
    pub(crate) fn request_writes(&self, method: HttpMethod) -> bool {
        method != HttpMethod::Get
            && !self
                .conformance()
                .and_then(|conformance| conformance.read_only.as_ref())
                .is_some_and(|read_only| read_only.value)
    }

    /// The largest request body the tool accepts (default 1 MiB).
    pub(crate) fn max_request_bytes(&self) -> u64 {
        self.conformance()
            .and_then(|conformance| conformance.max_request_bytes.as_ref())
            .map_or(1024 * 1024, |bytes| bytes.value)
    }
}

impl ToolUnderTest {
    /// The operations the document declares, as (lowercase method, path) pairs: the
    /// binding's operation, then the CRUD resource's create, read, update and delete
    /// (an item's path is written as an OpenAPI template, `/events/{event_id}`).
    pub(crate) fn operations(&self) -> Vec<(String, String)> {
        let mut operations = Vec::new();
        if let Ok(endpoint) = self.endpoint() {
            operations.push((
                method_text(endpoint.method).to_ascii_lowercase(),
                endpoint
                    .path
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
        if let Some(crud) = self.conformance().and_then(|c| c.crud.as_ref()) {
            use agentc_compiler::documents::tool::CrudUpdateMethod;
            let collection = crud.path.value.trim_end_matches('/').to_string();
            let id = crud
                .id_field
                .as_ref()
                .map_or("id", |field| field.value.as_str());
            let item = format!("{collection}/{{{id}}}");
            operations.push(("post".into(), collection.clone()));
            if crud.read_query.is_some() {
                operations.push(("get".into(), collection.clone()));
            } else {
                operations.push(("get".into(), item.clone()));
            }
            match crud.update_method {
                Some(CrudUpdateMethod::Post) => {}
                Some(CrudUpdateMethod::Patch) => operations.push(("patch".into(), item.clone())),
                _ => operations.push(("put".into(), item.clone())),
            }
            if crud.delete.as_ref().is_none_or(|delete| delete.value) {
                operations.push(("delete".into(), item));
            }
        }
        // The operation may also be one of the resource's (a create that is the tool):
        // each is checked, and reported, once.
        let mut seen = std::collections::BTreeSet::new();
        operations.retain(|operation| seen.insert(operation.clone()));
        operations
    }
}

/// The text of an HTTP method.
pub(crate) fn method_text(method: HttpMethod) -> &'static str {
    method.as_str()
}
