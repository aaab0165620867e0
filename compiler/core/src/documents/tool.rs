//! The tool document (`kind: openagentspec:v1/tool`), this project's addition beside the
//! agent document. Its fixed keys are those of the shared spec; `auth` and `conformance` (what the
//! seven-test conformance suite expects of the tool) are added beside them.

use crate::lower::{SpannedJson, SpannedMap};
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
        /// What the conformance suite (`agentc conform`) expects of the tool.
        opt conformance: ConformanceSpec,
        /// What a call does to the world (AGX-T2): `read` (nothing: safe to run again),
        /// `write` (changes state the tool keeps) or `egress` (sends data out of it).
        /// A server that takes over an engagement whose call was cut off mid-call runs
        /// a `read` call again, and any other only with an idempotency key; without
        /// one the call's outcome is unknown and the engagement ends so.
        opt effect: ToolEffect,
    }
}

spec_enum! {
    pub enum ToolEffect ("tool effect") {
        Read = "read",
        Write = "write",
        Egress = "egress",
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
        /// The header in which the tool takes an idempotency key (AGX-T2), e.g.
        /// `Idempotency-Key`: every call carries a key derived from its engagement and
        /// its place there, the same on every attempt, so a call run again after a
        /// server died mid-call has its effect once at the tool.
        opt idempotency_header: Spanned<String>,
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
    /// A tool served by an MCP server, reached over streamable HTTP (`server`) or over
    /// stdio (`command`): exactly one of the two (AGX-M1).
    pub struct McpBinding ("an MCP binding") {
        /// The server's streamable-HTTP endpoint, an absolute `http(s)://` URL.
        opt server: Spanned<String>,
        /// The program that runs the server over stdio: a path, or a name looked up on
        /// `PATH`. It is started at the first call and stopped with the runtime.
        opt command: Spanned<String>,
        /// The program's arguments.
        opt args: Vec<Spanned<String>>,
        /// Environment variables set for the program. Only these and `PATH`, `HOME`,
        /// `LANG` and `TMPDIR` reach it; agentc's own environment (and any secret in it)
        /// does not.
        opt env: SpannedMap<Spanned<String>>,
        /// The tool's name on that server.
        req tool: Spanned<String>,
        /// The digest of the tool's definition on the server (`sha256:` and 64 hex
        /// digits, written by `agentc import mcp`): a server whose tool no longer
        /// matches it is refused (AGX-M2).
        opt pin: Spanned<String>,
        /// Per-call timeout in milliseconds (default 30 000).
        #[schemars(range(min = 1))]
        opt timeout_ms: Spanned<u64>,
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

spec_struct! {
    /// What the conformance suite (`agentc conform`, the seven tests of the Agent OSI
    /// layer 6) expects of this tool, beside the fixed keys: where its machine-readable
    /// docs are, where a live run finds its credential, its declared rate limit, valid
    /// example inputs, its CRUD resource and its known pitfalls. Paths are relative to
    /// the origin of the binding's URL.
    pub struct ConformanceSpec ("a conformance section") {
        /// The environment variable a live run reads the credential from (default
        /// `AGENTC_CONFORM_<TOOL NAME IN UPPER CASE>`); the value is never reported.
        opt credential_env: Spanned<String>,
        /// Where the machine-readable docs are served (discovery test).
        opt docs: ConformanceDocs,
        /// The declared rate limit (rate-limit test).
        opt rate_limit: RateLimit,
        /// Valid example inputs of the tool's operation (skill, auth and error tests);
        /// `output`, when given, is what a mock of the tool answers.
        opt examples: Vec<OperationExample>,
        /// The largest request body the tool accepts, in bytes (default 1 MiB); the
        /// error test sends one byte more and expects a 4xx.
        #[schemars(range(min = 1))]
        opt max_request_bytes: Spanned<u64>,
        /// A resource the tool's service lets agents create, read, update and delete.
        opt crud: CrudResource,
        /// Known pitfalls: recorded requests (HTTP) or `tools/call`s (MCP) and the
        /// correct behaviour (pitfall test).
        opt pitfalls: Vec<Pitfall>,
        /// Calling the tool (its operation and its pitfalls' requests) changes nothing,
        /// though its method is not GET (a search sent as POST) or it is an MCP tool: a
        /// live run may call it without `--allow-writes`. Default false: such a call is
        /// taken to write.
        opt read_only: Spanned<bool>,
    }
}

spec_struct! {
    /// Where the service describes itself to agents: an OpenAPI 3.x document and/or an
    /// `llms.txt`, each a path (`/openapi.json`) or an absolute URL.
    pub struct ConformanceDocs ("docs locations") {
        opt openapi: Spanned<String>,
        opt llms_txt: Spanned<String>,
    }
}

spec_struct! {
    /// At most `requests` calls per `per_seconds` seconds; past it the service answers
    /// 429 with `Retry-After`.
    pub struct RateLimit ("a rate limit") {
        #[schemars(range(min = 1))]
        req requests: Spanned<u64>,
        #[schemars(range(min = 1))]
        req per_seconds: Spanned<u64>,
    }
}

spec_struct! {
    /// A valid input of the tool's operation, and optionally the output a mock answers.
    pub struct OperationExample ("an operation example") {
        opt name: Spanned<String>,
        req input: SpannedJson,
        opt output: SpannedJson,
    }
}

spec_struct! {
    /// A resource served at `path` (the collection; one item is at `path/{id}`):
    /// created with a POST of `create`, read with GET, updated with `update_method`
    /// (default PUT) of `update`, deleted with DELETE, after which a read gives 404.
    /// Services that do not fit that shape say so: an upsert (`update_method: POST` to
    /// the collection), reads by query (`read_query`), an id in the `Location` header
    /// (no `id_field`), no delete (`delete: false`).
    pub struct CrudResource ("a CRUD resource") {
        req name: Spanned<String>,
        /// The collection's path, e.g. `/calendar/events`.
        req path: Spanned<String>,
        /// The key of the resource's identifier in the create response. Without it the
        /// item's path is the create response's `Location`, and without that the
        /// resource is read by `read_query` only.
        opt id_field: Spanned<String>,
        /// JSON Schema of the resource as create, read and update answer it.
        req schema: SpannedJson,
        /// A valid create body.
        req create: SpannedJson,
        /// A valid update body.
        req update: SpannedJson,
        /// PUT or PATCH to the item (default PUT), or POST to the collection (an
        /// upsert: the update body names the resource it replaces).
        opt update_method: CrudUpdateMethod,
        /// Read the resource back with `GET path?NAME=VALUE`, VALUE being the `NAME`
        /// field of what was written, instead of at its own path: the answer must hold
        /// exactly one resource with that value, as written.
        opt read_query: Spanned<String>,
        /// Whether the service lets agents delete the resource (default true). With
        /// `false`, the test reports that delete is not offered and what it leaves.
        opt delete: Spanned<bool>,
    }
}

spec_enum! {
    pub enum CrudUpdateMethod ("update method") {
        Put = "PUT",
        Patch = "PATCH",
        Post = "POST",
    }
}

spec_struct! {
    /// A known pitfall: a recorded request and the correct behaviour, replayed on every
    /// run as a regression check. An `http`-bound tool's pitfall records an HTTP
    /// `request` and its expected `status`; an `mcp`-bound tool's records a `tools/call`
    /// (`call`) and whether its result is an error (`is_error`, AGX-M5).
    pub struct Pitfall ("a pitfall") {
        req name: Spanned<String>,
        req description: Spanned<String>,
        opt request: RecordedRequest,
        opt call: RecordedCall,
        req expect: ExpectedResponse,
    }
}

spec_struct! {
    /// An HTTP request as recorded: method, path (with any query), JSON body.
    pub struct RecordedRequest ("a recorded request") {
        req method: HttpMethod,
        req path: Spanned<String>,
        opt body: SpannedJson,
        /// Whether the valid credential is sent (default true).
        opt authenticated: Spanned<bool>,
    }
}

spec_struct! {
    /// An MCP `tools/call` of the tool as recorded: its arguments (AGX-M5).
    pub struct RecordedCall ("a recorded tools/call") {
        req arguments: SpannedJson,
    }
}

spec_struct! {
    /// The correct answer to a pitfall: for an HTTP request its status, for a
    /// `tools/call` whether the result is an error; and optionally JSON the body must
    /// contain, a JSON Schema it must match, and text it must not contain. The body of
    /// a `tools/call` is its output (the structured content, or the text mapped per the
    /// output schema), or the error's text when the result is an error.
    pub struct ExpectedResponse ("an expected response") {
        #[schemars(range(min = 100, max = 599))]
        opt status: Spanned<u64>,
        /// Whether the call's result is a tool error (`isError`, or a JSON-RPC error).
        opt is_error: Spanned<bool>,
        /// Every key and value given here must be in the body (other keys may be too).
        opt body: SpannedJson,
        opt body_schema: SpannedJson,
        opt body_excludes: Vec<Spanned<String>>,
    }
}
