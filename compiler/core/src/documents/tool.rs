//! The tool document (`kind: openagentspec:v1/tool`), this project's addition beside the
//! agent document. Its fixed keys are those of the shared spec; `auth` is added beside them.

use crate::lower::SpannedJson;
use crate::span::Spanned;
use crate::{spec_enum, spec_struct};

spec_struct! {
    /// A tool an agent can call: its input and output JSON Schemas and how to call it.
    pub struct ToolDocument ("a tool document") {
        /// Always `openagentspec:v1/tool`.
        req kind: Spanned<String>,
        /// Lowercase letters, digits and `_` (OAS-N1); referenced by its full name (OAS-N2).
        req name: Spanned<String>,
        req description: Spanned<String>,
        /// JSON Schema of the call's input; must describe an object.
        req input: SpannedJson,
        /// JSON Schema of what the tool returns.
        req output: SpannedJson,
        /// How to call it: exactly one kind of binding.
        req binding: Binding,
        /// How the tool authenticates its callers.
        opt auth: ToolAuth,
    }
}

spec_struct! {
    /// How a tool is invoked. Exactly one of the keys must be present.
    pub struct Binding ("a binding") {
        opt http: HttpBinding,
        opt mcp: McpBinding,
        opt native: NativeBinding,
    }
}

spec_struct! {
    /// An HTTP JSON endpoint: the input is sent as the JSON body, the output is the JSON response.
    pub struct HttpBinding ("an HTTP binding") {
        req method: HttpMethod,
        /// Absolute `http://` or `https://` URL.
        req url: Spanned<String>,
        /// Per-call timeout in milliseconds (default 30 000).
        #[schemars(range(min = 1))]
        opt timeout_ms: Spanned<u64>,
    }
}

spec_enum! {
    pub enum HttpMethod ("HTTP method") {
        Get = "GET",
        Post = "POST",
        Put = "PUT",
        Patch = "PATCH",
        Delete = "DELETE",
    }
}

spec_struct! {
    /// A tool served by an MCP server.
    pub struct McpBinding ("an MCP binding") {
        /// The MCP server's URL.
        req server: Spanned<String>,
        /// The tool's name on that server.
        req tool: Spanned<String>,
    }
}

spec_struct! {
    /// A Rust function declared with `#[agentc::tool]` and registered with the runtime.
    pub struct NativeBinding ("a native binding") {
        /// The Rust path of the function, e.g. `my_crate::tools::lookup_policy_doc`.
        req function: Spanned<String>,
    }
}

spec_struct! {
    /// How the tool authenticates callers; the credential itself is never in the spec.
    pub struct ToolAuth ("an auth scheme") {
        req scheme: AuthScheme,
        /// For `api_key`: the header that carries the key (default `X-Api-Key`).
        opt header: Spanned<String>,
    }
}

spec_enum! {
    pub enum AuthScheme ("auth scheme") {
        None = "none",
        Bearer = "bearer",
        ApiKey = "api_key",
        Basic = "basic",
        Oauth2 = "oauth2",
    }
}
