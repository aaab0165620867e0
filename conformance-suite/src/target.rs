//! Where the tests run: a mock started from each tool document, or a live service (at
//! the binding's declared URL, or at a base URL that replaces its origin), and where the
//! valid credential comes from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agentc_runtime::Secret;

/// Mock or live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// A wiremock server per tool, behaving as its tool document says.
    Mock,
    /// The real service: at `base_url` when given (its origin and path prefix replace
    /// the binding URL's origin), otherwise at the binding's declared URL.
    Live { base_url: Option<String> },
}

/// Where a live run's valid credentials come from.
#[derive(Clone)]
pub enum CredentialSource {
    /// From the environment: each tool's `conformance.credential_env`, or
    /// `AGENTC_CONFORM_<TOOL NAME IN UPPER CASE>`.
    Environment,
    /// Given directly, by tool name (tests, and hosts that hold them in a vault).
    Fixed(Arc<BTreeMap<String, Secret>>),
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::Environment => formatter.write_str("Environment"),
            // Secret's Debug is redacted, but the names alone say enough.
            CredentialSource::Fixed(map) => formatter
                .debug_tuple("Fixed")
                .field(&map.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// A target: where to run and with what credentials.
#[derive(Clone, Debug)]
pub struct Target {
    pub kind: TargetKind,
    pub credentials: CredentialSource,
    /// How long one request may take before it counts as a hang.
    pub request_timeout: Duration,
}

impl Target {
    /// A mock per tool (the mock mints its own credential).
    pub fn mock() -> Self {
        Target {
            kind: TargetKind::Mock,
            credentials: CredentialSource::Environment,
            request_timeout: Duration::from_secs(10),
        }
    }

    /// The live service, with credentials from the environment.
    pub fn live(base_url: Option<String>) -> Self {
        Target {
            kind: TargetKind::Live { base_url },
            credentials: CredentialSource::Environment,
            request_timeout: Duration::from_secs(10),
        }
    }

    /// The same target with credentials given by tool name.
    pub fn with_credentials(mut self, credentials: BTreeMap<String, Secret>) -> Self {
        self.credentials = CredentialSource::Fixed(Arc::new(credentials));
        self
    }

    /// `mock` or `live`.
    pub fn label(&self) -> &'static str {
        match self.kind {
            TargetKind::Mock => "mock",
            TargetKind::Live { .. } => "live",
        }
    }
}

/// Whether plain HTTP may be used for `url`: only on loopback, so a credential never
/// crosses a network in clear text.
pub(crate) fn plain_http_allowed(url: &url::Url) -> bool {
    agentc_compiler::urls::is_loopback(url)
}
