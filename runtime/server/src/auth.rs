//! Who is calling (OAS-C3: the caller's identity is the engagement's user), and how often
//! each caller may call.
//!
//! Callers present a bearer token (`Authorization: Bearer ...`) or an API key
//! (`X-Api-Key: ...`) listed in the auth configuration, each mapped to a user id and an
//! optional email. Tokens are kept only as SHA-256 digests, so the configuration in
//! memory, logs and errors never hold one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agentc_runtime::UserIdentity;
use agentc_runtime::review::sha256_hex;
use serde::Deserialize;

/// The auth configuration file (JSON):
///
/// ```json
/// {
///   "tokens":   [{"token": "s3cret", "user": "alice", "email": "alice@acme.example"}],
///   "api_keys": [{"key": "k-123", "user": "ci-bot"}],
///   "rate_limit": {"requests": 120, "per_seconds": 60}
/// }
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// API keys, sent in `X-Api-Key`.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyEntry>,
    /// The per-user rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

/// One bearer token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The token.
    pub token: String,
    /// The user it authenticates.
    pub user: String,
    /// The user's email, when known (OAS-E3 `user.email`).
    #[serde(default)]
    pub email: Option<String>,
}

/// One API key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// The key.
    pub key: String,
    /// The user it authenticates.
    pub user: String,
    /// The user's email, when known.
    #[serde(default)]
    pub email: Option<String>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TokenEntry")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ApiKeyEntry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ApiKeyEntry")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A token bucket's size and refill: `requests` per `per_seconds`, in bursts of up to
/// `requests`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// How many requests a user may make in a burst.
    pub requests: u32,
    /// Over how many seconds that many requests are refilled.
    pub per_seconds: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests: 120,
            per_seconds: 60,
        }
    }
}

/// Why the auth configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The file could not be read.
    #[error("cannot read the auth configuration `{path}`: {detail}")]
    Read { path: String, detail: String },
    /// The file is not valid; the position is given but not the text, which may hold
    /// a token.
    #[error("invalid auth configuration at line {line} column {column}: {detail}")]
    Invalid {
        line: usize,
        column: usize,
        detail: String,
    },
}

impl AuthConfig {
    /// Reads the JSON form.
    pub fn from_json(text: &str) -> Result<Self, AuthConfigError> {
        let config: AuthConfig =
            serde_json::from_str(text).map_err(|error| AuthConfigError::Invalid {
                line: error.line(),
                column: error.column(),
                detail: match error.classify() {
                    serde_json::error::Category::Data => {
                        "a key or value has the wrong shape".to_string()
                    }
                    _ => "not JSON".to_string(),
                },
            })?;
        let empty = config
            .tokens
            .iter()
            .map(|entry| (&entry.token, &entry.user))
            .chain(
                config
                    .api_keys
                    .iter()
                    .map(|entry| (&entry.key, &entry.user)),
            )
            .any(|(secret, user)| secret.len() < 8 || user.is_empty());
        if empty {
            return Err(AuthConfigError::Invalid {
                line: 0,
                column: 0,
                detail: "every token and key must be at least 8 characters and name a user"
                    .to_string(),
            });
        }
        if config
            .rate_limit
            .is_some_and(|limit| limit.requests == 0 || limit.per_seconds == 0)
        {
            return Err(AuthConfigError::Invalid {
                line: 0,
                column: 0,
                detail: "rate_limit needs requests and per_seconds above 0".to_string(),
            });
        }
        Ok(config)
    }

    /// Reads the JSON file at `path`.
    pub fn from_file(path: &std::path::Path) -> Result<Self, AuthConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| AuthConfigError::Read {
            path: path.display().to_string(),
            detail: error.to_string(),
        })?;
        Self::from_json(&text)
    }
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credential was sent.
    Missing,
    /// The `Authorization` header is not `Bearer <token>`.
    Malformed,
    /// The credential is not known.
    Unknown,
}

/// Maps credentials to users.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// SHA-256 of `bearer:<token>` or `key:<key>` → user.
    users: HashMap<String, UserIdentity>,
}

impl Authenticator {
    /// From a configuration.
    pub fn new(config: &AuthConfig) -> Self {
        let mut users = HashMap::new();
        for entry in &config.tokens {
            users.insert(
                sha256_hex(format!("bearer:{}", entry.token).as_bytes()),
                UserIdentity {
                    id: entry.user.clone(),
                    email: entry.email.clone(),
                },
            );
        }
        for entry in &config.api_keys {
            users.insert(
                sha256_hex(format!("key:{}", entry.key).as_bytes()),
                UserIdentity {
                    id: entry.user.clone(),
                    email: entry.email.clone(),
                },
            );
        }
        Authenticator { users }
    }

    /// The user a request's headers authenticate.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
    ) -> Result<UserIdentity, AuthFailure> {
        let digest = match (authorization, api_key) {
            (Some(header), _) => {
                let Some(token) = header
                    .strip_prefix("Bearer ")
                    .or_else(|| header.strip_prefix("bearer "))
                    .map(str::trim)
                    .filter(|token| !token.is_empty())
                else {
                    return Err(AuthFailure::Malformed);
                };
                sha256_hex(format!("bearer:{token}").as_bytes())
            }
            (None, Some(key)) if !key.trim().is_empty() => {
                sha256_hex(format!("key:{}", key.trim()).as_bytes())
            }
            (None, Some(_)) => return Err(AuthFailure::Malformed),
            (None, None) => return Err(AuthFailure::Missing),
        };
        self.users.get(&digest).cloned().ok_or(AuthFailure::Unknown)
    }
}

/// How many clients a limiter tracks at once by default. Users come from the
/// configuration, but anonymous clients are counted by address, and addresses are many:
/// the map of buckets must not grow without bound.
pub const DEFAULT_MAX_TRACKED_CLIENTS: usize = 100_000;

/// Per-client token buckets (a user, or an address for anonymous discovery requests).
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    max_clients: usize,
    buckets: Mutex<Buckets>,
    /// Among how many server instances the limit is shared: each counts its share of
    /// the limit, so that together they never let more through than the limit.
    share: std::sync::atomic::AtomicU32,
}

#[derive(Debug)]
struct Buckets {
    by_client: HashMap<String, (f64, Instant)>,
    /// Pruning scans every bucket, so it runs at most once a second; between two
    /// prunes a full map refuses new clients (fail closed) rather than grow.
    next_prune: Instant,
}

impl RateLimiter {
    /// A limiter with the given bucket.
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_max_clients(config, DEFAULT_MAX_TRACKED_CLIENTS)
    }

    /// A limiter that tracks at most `max_clients` clients at once.
    pub fn with_max_clients(config: RateLimitConfig, max_clients: usize) -> Self {
        RateLimiter {
            config,
            max_clients,
            buckets: Mutex::new(Buckets {
                by_client: HashMap::new(),
                next_prune: Instant::now(),
            }),
            share: std::sync::atomic::AtomicU32::new(1),
        }
    }

    /// Shares the limit among `instances` server instances (those alive on one shared
    /// store): each lets through `1/instances` of it, refilled at `1/instances` of the
    /// rate, so a client spread over them gets the limit in all and never more. A
    /// client that one instance serves alone gets that instance's share. The share
    /// never falls below one request per bucket, so with more instances than requests
    /// in the window the total can exceed the limit by the difference.
    pub fn share_among(&self, instances: usize) {
        let instances = u32::try_from(instances.max(1)).unwrap_or(u32::MAX);
        self.share
            .store(instances, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `client` has a token left, without taking it; when none is left, how
    /// long until one is. A client not yet tracked has a full bucket, unless the map
    /// is full (and nothing in it has refilled), when it is refused like in `check`.
    pub fn peek(&self, client: &str) -> Result<(), Duration> {
        self.answer(client, false)
    }

    /// Takes one token for `client`; when none is left, how long until one is.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        self.answer(client, true)
    }

    /// The answer for `client`, taking its token when `take` (and there is one).
    fn answer(&self, client: &str, take: bool) -> Result<(), Duration> {
        let share = f64::from(self.share.load(std::sync::atomic::Ordering::Relaxed).max(1));
        let capacity = (f64::from(self.config.requests) / share).max(1.0);
        let per_second =
            f64::from(self.config.requests) / f64::from(self.config.per_seconds) / share;
        let now = Instant::now();
        let refill = |tokens: f64, last: Instant| {
            (tokens + now.duration_since(last).as_secs_f64() * per_second).min(capacity)
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock cannot count; refusing is the safe answer.
            return Err(Duration::from_secs(1));
        };
        let buckets = &mut *buckets;
        if !buckets.by_client.contains_key(client) && buckets.by_client.len() >= self.max_clients {
            // A bucket that has refilled to capacity holds nothing a fresh one would
            // not, so forgetting it changes no answer.
            if now >= buckets.next_prune {
                buckets
                    .by_client
                    .retain(|_, (tokens, last)| refill(*tokens, *last) < capacity);
                buckets.next_prune = now + Duration::from_secs(1);
            }
            if buckets.by_client.len() >= self.max_clients {
                return Err(Duration::from_secs(1));
            }
        }
        let refilled = match buckets.by_client.get(client) {
            Some(&(tokens, last)) => refill(tokens, last),
            None => capacity,
        };
        let wait = (refilled < 1.0).then(|| Duration::from_secs_f64((1.0 - refilled) / per_second));
        if take {
            let left = if wait.is_none() {
                refilled - 1.0
            } else {
                refilled
            };
            buckets.by_client.insert(client.to_string(), (left, now));
        }
        wait.map_or(Ok(()), Err)
    }
}

/// The default limit on failed authentications per client address: 10 failures, then
/// one more every 6 seconds (10 per minute).
pub const DEFAULT_AUTH_FAILURE_LIMIT: RateLimitConfig = RateLimitConfig {
    requests: 10,
    per_seconds: 60,
};

/// The key a client address is counted under: an IPv4 address (IPv4-mapped IPv6
/// included) as it is, an IPv6 address by its /64 network, which is what one host is
/// usually given, so that one host cannot take a fresh key per guess.
pub fn address_key(address: std::net::IpAddr) -> String {
    match address {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let segments = v6.segments();
                format!(
                    "{:x}:{:x}:{:x}:{:x}::/64",
                    segments[0], segments[1], segments[2], segments[3]
                )
            }
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_limit_shared_among_instances_lets_through_each_ones_share() {
        let limiter = RateLimiter::new(RateLimitConfig {
            requests: 30,
            per_seconds: 60,
        });
        limiter.share_among(3);
        // Allowed: a third of the burst here.
        for _ in 0..10 {
            assert!(limiter.check("alice").is_ok());
        }
        // Denied: the eleventh, told to wait for this instance's slower refill (a
        // third of one a second, so six seconds).
        let wait = limiter.check("alice").unwrap_err();
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        // Alone again, the whole limit is this instance's.
        limiter.share_among(1);
        assert!(limiter.check("bob").is_ok());
        for _ in 0..29 {
            assert!(limiter.check("bob").is_ok());
        }
        assert!(limiter.check("bob").is_err());
        // Never below one request per bucket.
        limiter.share_among(100);
        assert!(limiter.check("carol").is_ok());
        assert!(limiter.check("carol").is_err());
    }

    #[test]
    fn the_limiter_tracks_a_bounded_number_of_clients() {
        let config = RateLimitConfig {
            requests: 2,
            per_seconds: 3600,
        };
        let limiter = RateLimiter::with_max_clients(config, 2);
        assert!(limiter.check("10.0.0.1").is_ok());
        assert!(limiter.check("10.0.0.2").is_ok());
        // Both buckets are in use (not refilled), so a third client is refused rather
        // than the map grown or a bucket forgotten early.
        assert!(limiter.check("10.0.0.3").is_err());
        // Known clients are still counted as before.
        assert!(limiter.check("10.0.0.1").is_ok());
        assert!(limiter.check("10.0.0.1").is_err());

        // Buckets that have refilled are forgotten to make room.
        let fast = RateLimiter::with_max_clients(
            RateLimitConfig {
                requests: 1000,
                per_seconds: 1,
            },
            1,
        );
        assert!(fast.check("10.0.0.1").is_ok());
        std::thread::sleep(Duration::from_millis(20));
        assert!(fast.check("10.0.0.2").is_ok());
    }

    #[test]
    fn peek_takes_nothing_and_addresses_are_keyed_by_host() {
        let limiter = RateLimiter::with_max_clients(
            RateLimitConfig {
                requests: 2,
                per_seconds: 3600,
            },
            1,
        );
        assert!(limiter.peek("10.0.0.1").is_ok());
        assert!(limiter.peek("10.0.0.1").is_ok());
        assert!(limiter.check("10.0.0.1").is_ok());
        assert!(limiter.check("10.0.0.1").is_ok());
        assert!(limiter.peek("10.0.0.1").is_err());
        // The map is full of a bucket in use: an unknown client is refused.
        assert!(limiter.peek("10.0.0.2").is_err());
        let v6 = |text: &str| address_key(text.parse().unwrap());
        assert_eq!(v6("2001:db8:1:2:aaaa::1"), v6("2001:db8:1:2:bbbb::2"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        assert_eq!(v6("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(v6("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn tokens_and_keys_map_to_users_and_nothing_else_does() {
        let config = AuthConfig::from_json(
            r#"{"tokens": [{"token": "alice-token", "user": "alice", "email": "a@x.example"}],
                "api_keys": [{"key": "bob-key-123", "user": "bob"}]}"#,
        )
        .unwrap();
        let auth = Authenticator::new(&config);
        let alice = auth.authenticate(Some("Bearer alice-token"), None).unwrap();
        assert_eq!(alice.id, "alice");
        assert_eq!(alice.email.as_deref(), Some("a@x.example"));
        assert_eq!(
            auth.authenticate(None, Some("bob-key-123")).unwrap().id,
            "bob"
        );
        assert_eq!(
            auth.authenticate(Some("Bearer wrong-token"), None),
            Err(AuthFailure::Unknown)
        );
        assert_eq!(
            auth.authenticate(Some("Basic abc"), None),
            Err(AuthFailure::Malformed)
        );
        assert_eq!(auth.authenticate(None, None), Err(AuthFailure::Missing));
        // A key is not a token: the two namespaces are kept apart.
        assert_eq!(
            auth.authenticate(Some("Bearer bob-key-123"), None),
            Err(AuthFailure::Unknown)
        );
        assert!(!format!("{config:?}").contains("alice-token"));
    }

    #[test]
    fn bad_configurations_are_refused_without_echoing_secrets() {
        let error =
            AuthConfig::from_json(r#"{"tokens": [{"token": "short", "user": "u"}]}"#).unwrap_err();
        assert!(!error.to_string().contains("short"));
        let error = AuthConfig::from_json(r#"{"tokens": [{"token": 12345678901, "user": "u"}]}"#)
            .unwrap_err();
        assert!(!error.to_string().contains("12345678901"));
        assert!(AuthConfig::from_json(r#"{"tokenz": []}"#).is_err());
    }

    #[test]
    fn rate_limit_refuses_past_the_burst_and_says_when_to_retry() {
        let limiter = RateLimiter::new(RateLimitConfig {
            requests: 2,
            per_seconds: 10,
        });
        assert!(limiter.check("u").is_ok());
        assert!(limiter.check("u").is_ok());
        let wait = limiter.check("u").unwrap_err();
        assert!(wait > Duration::from_secs(4) && wait <= Duration::from_secs(5));
        // Users have their own buckets.
        assert!(limiter.check("v").is_ok());
    }
}
