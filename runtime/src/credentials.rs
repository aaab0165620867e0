//! Identities and credentials (OAS-C3, OAS-C4). A secret is only ever handed to the tool
//! backend; it has no `Serialize` and a redacted `Debug`, so it cannot reach the
//! engagement, the audit log, the model's context or the exposes by accident.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The identity a tool is called with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Identity {
    /// The engaging user's identity (OAS-C3).
    User(Arc<str>),
    /// A named static credential set (OAS-C4).
    Static(Arc<str>),
    /// No identity: `user_identity: false` (or no user) and no static identity.
    Anonymous,
}

impl Identity {
    /// Chooses the identity per OAS-C3/C4: the user's when `user_identity` holds and
    /// there is a user, else the static identity, else none.
    /// The names are shared with the engagement and the spec, not copied.
    pub fn choose(
        user_identity: bool,
        user: Option<&Arc<str>>,
        static_identity: Option<&Arc<str>>,
    ) -> Self {
        match (user_identity, user, static_identity) {
            (true, Some(user), _) => Identity::User(Arc::clone(user)),
            (_, _, Some(set)) => Identity::Static(Arc::clone(set)),
            _ => Identity::Anonymous,
        }
    }
}

/// A secret value. It is deliberately neither `Serialize` nor `Display`. Shared, so
/// that handing a stored credential to each call copies no secret bytes around.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(std::sync::Arc<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(std::sync::Arc::from(value.into()))
    }

    /// The secret itself, for the tool backend that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret(<redacted>)")
    }
}

/// Why a credential could not be provided; the call is then denied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The static credential set is not configured.
    #[error("no credential for static identity `{0}`")]
    MissingStatic(String),
    /// The provider failed.
    #[error("credential provider failed: {0}")]
    Provider(String),
}

/// Supplies the credential for a tool call.
pub trait CredentialProvider: Send + Sync {
    /// The credential for calling `tool` as `identity`. `Ok(None)` means the call goes
    /// without a secret (the identity is still passed); a static identity with no
    /// credential must be an error, so that a call never silently runs unauthenticated.
    fn credential(
        &self,
        tool: &str,
        identity: &Identity,
    ) -> Result<Option<Secret>, CredentialError>;
}

/// Credentials held in memory (tests, and servers that load them from a vault).
#[derive(Debug, Default, Clone)]
pub struct InMemoryCredentials {
    static_sets: HashMap<String, Secret>,
    /// User, then tool: looked up by the call's borrowed names, with no key built.
    per_user: HashMap<String, HashMap<String, Secret>>,
}

impl InMemoryCredentials {
    /// No credentials.
    pub fn new() -> Self {
        InMemoryCredentials::default()
    }

    /// Adds a static credential set.
    pub fn with_static(mut self, set: &str, secret: Secret) -> Self {
        self.static_sets.insert(set.to_string(), secret);
        self
    }

    /// Adds a user's credential for one tool (the translation OAS-C3 allows).
    pub fn with_user(mut self, user: &str, tool: &str, secret: Secret) -> Self {
        self.per_user
            .entry(user.to_string())
            .or_default()
            .insert(tool.to_string(), secret);
        self
    }
}

/// The file form of [`InMemoryCredentials`]:
/// `{"static": {"set": "secret"}, "users": {"user": {"tool": "secret"}}}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    #[serde(default, rename = "static")]
    static_sets: HashMap<String, String>,
    #[serde(default)]
    users: HashMap<String, HashMap<String, String>>,
}

impl InMemoryCredentials {
    /// Reads a JSON credential file (the file-backed store). The file's contents are
    /// never logged, and a malformed file is an error rather than an empty store, so
    /// a typo cannot silently leave every call unauthenticated.
    pub fn from_json_file(path: &std::path::Path) -> Result<Self, CredentialError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| CredentialError::Provider(format!("{}: {error}", path.display())))?;
        Self::from_json(&text)
    }

    /// Reads the JSON form of a credential file.
    pub fn from_json(text: &str) -> Result<Self, CredentialError> {
        let file: CredentialFile = serde_json::from_str(text).map_err(|error| {
            // The error's position is kept but not its excerpt, which could hold a secret.
            CredentialError::Provider(format!(
                "invalid credential file at line {} column {}",
                error.line(),
                error.column()
            ))
        })?;
        let mut store = InMemoryCredentials::new();
        for (set, secret) in file.static_sets {
            store = store.with_static(&set, Secret::new(secret));
        }
        for (user, tools) in file.users {
            for (tool, secret) in tools {
                store = store.with_user(&user, &tool, Secret::new(secret));
            }
        }
        Ok(store)
    }
}

impl CredentialProvider for InMemoryCredentials {
    fn credential(
        &self,
        tool: &str,
        identity: &Identity,
    ) -> Result<Option<Secret>, CredentialError> {
        match identity {
            Identity::User(user) => Ok(self
                .per_user
                .get(user.as_ref())
                .and_then(|tools| tools.get(tool))
                .cloned()),
            Identity::Static(set) => self
                .static_sets
                .get(set.as_ref())
                .cloned()
                .map(Some)
                .ok_or_else(|| CredentialError::MissingStatic(set.to_string())),
            Identity::Anonymous => Ok(None),
        }
    }
}

/// Credentials from environment variables: static set `hr_kb_readonly` is read from
/// `AGENTC_CREDENTIAL_HR_KB_READONLY`. User identities get no secret from the
/// environment, since one process environment cannot hold per-user secrets safely.
#[derive(Debug, Default, Clone)]
pub struct EnvCredentials {
    prefix: String,
}

impl EnvCredentials {
    /// Reads `AGENTC_CREDENTIAL_<SET>`.
    pub fn new() -> Self {
        Self::with_prefix("AGENTC_CREDENTIAL_")
    }

    /// Reads `<prefix><SET>`.
    pub fn with_prefix(prefix: &str) -> Self {
        EnvCredentials {
            prefix: prefix.to_string(),
        }
    }

    /// The variable a static set is read from.
    pub fn variable_name(&self, set: &str) -> String {
        format!("{}{}", self.prefix, set.to_ascii_uppercase())
    }
}

impl CredentialProvider for EnvCredentials {
    fn credential(
        &self,
        _tool: &str,
        identity: &Identity,
    ) -> Result<Option<Secret>, CredentialError> {
        match identity {
            Identity::Static(set) => std::env::var(self.variable_name(set))
                .map(|value| Some(Secret::new(value)))
                .map_err(|_| CredentialError::MissingStatic(set.to_string())),
            Identity::User(_) | Identity::Anonymous => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_choice_follows_c3_c4() {
        let (u, s): (Arc<str>, Arc<str>) = ("u".into(), "s".into());
        let (u, s) = (&u, &s);
        assert_eq!(
            Identity::choose(true, Some(u), Some(s)),
            Identity::User("u".into())
        );
        assert_eq!(
            Identity::choose(false, Some(u), Some(s)),
            Identity::Static("s".into())
        );
        assert_eq!(
            Identity::choose(true, None, Some(s)),
            Identity::Static("s".into())
        );
        assert_eq!(Identity::choose(false, Some(u), None), Identity::Anonymous);
    }

    #[test]
    fn secrets_are_redacted_and_missing_static_sets_fail() {
        let provider = InMemoryCredentials::new().with_static("s", Secret::new("hunter2"));
        let secret = provider
            .credential("t", &Identity::Static("s".into()))
            .unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(
            provider
                .credential("t", &Identity::Static("x".into()))
                .is_err()
        );
        let file = InMemoryCredentials::from_json(
            r#"{"static": {"s": "k1"}, "users": {"u": {"t": "k2"}}}"#,
        )
        .unwrap();
        let user = file.credential("t", &Identity::User("u".into())).unwrap();
        assert_eq!(user.unwrap().expose(), "k2");
        // A user's credential is for that user and that tool only.
        let users = InMemoryCredentials::new()
            .with_user("u", "t", Secret::new("u-t"))
            .with_user("u", "t2", Secret::new("u-t2"))
            .with_user("v", "t", Secret::new("v-t"));
        let for_user = |user: &str, tool: &str| {
            users
                .credential(tool, &Identity::User(user.into()))
                .unwrap()
                .map(|secret| secret.expose().to_string())
        };
        assert_eq!(for_user("u", "t").as_deref(), Some("u-t"));
        assert_eq!(for_user("u", "t2").as_deref(), Some("u-t2"));
        assert_eq!(for_user("v", "t").as_deref(), Some("v-t"));
        assert_eq!(for_user("v", "t2"), None);
        assert_eq!(for_user("w", "t"), None);
        let error = InMemoryCredentials::from_json(r#"{"static": {"s": 1234567}}"#).unwrap_err();
        assert!(!error.to_string().contains("1234567"));
        let env = EnvCredentials::with_prefix("AGENTC_TEST_UNSET_PREFIX_");
        assert!(
            env.credential("t", &Identity::Static("none".into()))
                .is_err()
        );
    }
}
