//! The gateway over streamable HTTP (AGX-M3): rmcp's streamable-HTTP service at `/mcp`,
//! behind an authentication layer.
//!
//! Every request must carry a credential the [`GatewayAuthenticator`] knows (`401`
//! otherwise, before rmcp reads anything); the user it names travels to the session in
//! the request's extensions ([`GatewayCaller`]). rmcp checks the `Host` header against
//! loopback names unless other hosts are allowed (DNS rebinding), bounds request
//! bodies, and closes sessions idle past their keep-alive, which ends their engagements.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agentc_runtime::UserIdentity;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::gateway::{Gateway, GatewayCaller};

/// Who a request's credential authenticates; `None` refuses the request.
pub trait GatewayAuthenticator: Send + Sync {
    /// The user of a request with this `Authorization` header and `X-Api-Key` header.
    fn authenticate(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
    ) -> Option<UserIdentity>;
}

/// How the HTTP gateway is served.
#[derive(Debug, Clone)]
pub struct GatewayHttpConfig {
    /// The largest request body.
    pub max_request_bytes: usize,
    /// Hosts accepted in `Host` (loopback names when empty).
    pub allowed_hosts: Vec<String>,
    /// How long a session may stay idle before it is closed.
    pub session_idle: Duration,
    /// The user of a request that carries no credential at all; `None` refuses it. A
    /// request with a credential the authenticator does not know is refused either way.
    pub anonymous_user: Option<UserIdentity>,
}

impl Default for GatewayHttpConfig {
    fn default() -> Self {
        GatewayHttpConfig {
            max_request_bytes: 1024 * 1024,
            allowed_hosts: Vec::new(),
            session_idle: Duration::from_secs(300),
            anonymous_user: None,
        }
    }
}

/// The gateway's router: `/mcp`, authenticated.
pub fn router(
    gateway: Arc<Gateway>,
    authenticator: Arc<dyn GatewayAuthenticator>,
    config: &GatewayHttpConfig,
) -> axum::Router {
    let mut session_manager = LocalSessionManager::default();
    session_manager.session_config.keep_alive = Some(config.session_idle);
    let mut http_config = StreamableHttpServerConfig::default();
    http_config.max_request_body_bytes = config.max_request_bytes;
    if !config.allowed_hosts.is_empty() {
        http_config = http_config.with_allowed_hosts(config.allowed_hosts.clone());
    }
    let factory_gateway = Arc::clone(&gateway);
    let service = StreamableHttpService::new(
        move || factory_gateway.session(None).map_err(std::io::Error::other),
        Arc::new(session_manager),
        http_config,
    );
    axum::Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            Callers {
                authenticator,
                anonymous_user: config.anonymous_user.clone(),
            },
            authenticate,
        ))
}

/// Who may call: the authenticator, and the user of requests without a credential.
#[derive(Clone)]
struct Callers {
    authenticator: Arc<dyn GatewayAuthenticator>,
    anonymous_user: Option<UserIdentity>,
}

async fn authenticate(
    State(callers): State<Callers>,
    mut request: Request,
    next: Next,
) -> Response {
    // Read in a block: a borrow of the request held across the await below would make
    // the future not `Send` (a body is not `Sync`).
    let user = {
        let headers = request.headers();
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let credential = [http::header::AUTHORIZATION.as_str(), "x-api-key"]
            .iter()
            .any(|name| headers.contains_key(*name));
        if credential {
            callers
                .authenticator
                .authenticate(header("authorization"), header("x-api-key"))
        } else {
            callers.anonymous_user.clone()
        }
    };
    match user {
        Some(user) => {
            request.extensions_mut().insert(GatewayCaller(user));
            next.run(request).await
        }
        None => (
            http::StatusCode::UNAUTHORIZED,
            [(http::header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token or an API key of this gateway is required\n",
        )
            .into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
