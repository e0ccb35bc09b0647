//! Who is asking: credentials (salted, iterated SHA-256; the secret is shown
//! once and never stored), bearer tokens, page sessions and roles.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use super::users::{Role, UserRecord};
use super::AppState;

/// Hash rounds for new credentials.
pub const ITERATIONS: i64 = 50_000;
/// Name of the page session cookie.
pub const SESSION_COOKIE: &str = "outscore_session";
/// A verified bearer token is remembered this long, so the hash rounds are
/// not paid on every API call.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(300);

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub user: String,
    pub role: Role,
}

impl Principal {
    pub fn can_act(&self) -> bool {
        self.role == Role::Abuse
    }
}

/// A user name: 1–64 of letters, digits, `.-_@`.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@".contains(&b))
}

fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

/// Salted, iterated SHA-256 of a secret, hex.
pub fn hash_secret(secret: &str, salt: &str, iterations: i64) -> String {
    let mut digest: [u8; 32] = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(secret.as_bytes())
        .finalize()
        .into();
    for _ in 1..iterations.max(1) {
        digest = Sha256::new()
            .chain_update(digest)
            .chain_update(salt.as_bytes())
            .finalize()
            .into();
    }
    hex::encode(digest)
}

/// A new credential for `name`: the record to store and the secret to show
/// once. The secret is the password on the login page; `name:secret` is
/// the bearer token.
pub fn new_credential(name: &str, role: Role) -> (UserRecord, String) {
    let secret = random_hex(20);
    let salt = random_hex(16);
    let hash = hash_secret(&secret, &salt, ITERATIONS);
    (
        UserRecord {
            name: name.to_string(),
            role,
            salt,
            iterations: ITERATIONS,
            hash,
        },
        secret,
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `secret` matches the record.
pub fn verify(record: &UserRecord, secret: &str) -> bool {
    let hash = hash_secret(secret, &record.salt, record.iterations);
    constant_time_eq(hash.as_bytes(), record.hash.as_bytes())
}

/// Page sessions and recently verified tokens, in memory (a restart logs
/// everyone out).
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, (Principal, Instant)>>,
    tokens: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl Sessions {
    pub fn create(&self, who: Principal, ttl: Duration) -> String {
        let id = random_hex(32);
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, exp)| *exp > now);
        map.insert(id.clone(), (who, now + ttl));
        id
    }

    pub fn get(&self, id: &str) -> Option<Principal> {
        let map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(p, _)| p.clone())
    }

    pub fn remove(&self, id: &str) {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }

    fn cached_token(&self, token: &str) -> Option<Principal> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&key)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(p, _)| p.clone())
    }

    fn cache_token(&self, token: &str, who: Principal) {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, exp)| *exp > now);
        map.insert(key, (who, now + TOKEN_CACHE_TTL));
    }
}

/// Check a user name and secret against the store.
pub async fn check_password(state: &AppState, name: &str, secret: &str) -> Option<Principal> {
    if !valid_user_name(name) {
        return None;
    }
    let record = match super::db::user(&state.store, name).await {
        Ok(Some(record)) => record,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read credentials");
            return None;
        }
    };
    // The hash rounds are CPU work: keep them off the async workers.
    let secret = secret.to_string();
    let ok = tokio::task::spawn_blocking(move || {
        let ok = verify(&record, &secret);
        (ok, record)
    })
    .await
    .ok()?;
    match ok {
        (true, record) => Some(Principal {
            user: record.name,
            role: record.role,
        }),
        _ => None,
    }
}

async fn check_bearer(state: &AppState, token: &str) -> Option<Principal> {
    if let Some(p) = state.sessions.cached_token(token) {
        return Some(p);
    }
    let (name, secret) = token.split_once(':')?;
    let who = check_password(state, name, secret).await?;
    state.sessions.cache_token(token, who.clone());
    Some(who)
}

/// The session id in a request's cookies.
pub fn session_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(token) = bearer {
            let ip = state.throttle.client_ip(&parts.headers, &parts.extensions);
            let user = token.split_once(':').map_or(token, |(name, _)| name);
            if let Some(wait) = state.throttle.blocked(ip, user) {
                crate::telemetry::HTTP_AUTH_FAILURES.incr();
                tracing::warn!(client = %super::throttle::show(ip), user = %printable(user), "review API token refused: too many failed logins");
                return Err(too_many_attempts(wait, is_api(parts)));
            }
            if let Some(who) = check_bearer(state, token).await {
                return Ok(who);
            }
            state.throttle.failure(ip, user);
            crate::telemetry::HTTP_AUTH_FAILURES.incr();
            tracing::warn!(client = %super::throttle::show(ip), user = %printable(user), "review API token refused");
        } else if let Some(who) = session_cookie(parts).and_then(|id| state.sessions.get(&id)) {
            return Ok(who);
        }
        if is_api(parts) {
            Err(super::ApiError::Unauthenticated.into_response())
        } else {
            Err(Redirect::to("/login").into_response())
        }
    }
}

/// Whether the request is for the JSON API (its path as the client sent it:
/// inside the nested API router the path has lost its `/api/v1`).
fn is_api(parts: &Parts) -> bool {
    parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or(&parts.uri, |o| &o.0)
        .path()
        .starts_with("/api/")
}

/// Refusal for a role that may not do this.
pub fn require_abuse(who: &Principal) -> Result<(), super::ApiError> {
    if who.can_act() {
        Ok(())
    } else {
        Err(super::ApiError::Forbidden(
            "the viewer role cannot see message content or act on accounts",
        ))
    }
}

/// A user name as typed, safe for a log line.
pub fn printable(user: &str) -> String {
    user.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `429` with `Retry-After` after too many failed logins: JSON for the API,
/// a plain sentence elsewhere.
pub fn too_many_attempts(wait: Duration, api: bool) -> Response {
    let secs = super::throttle::retry_after_secs(wait);
    let text = format!(
        "Too many failed logins from this address or for this user. Try again in {}.",
        super::throttle::plain_wait(wait)
    );
    let retry = [(header::RETRY_AFTER, secs.to_string())];
    if api {
        (
            StatusCode::TOO_MANY_REQUESTS,
            retry,
            axum::Json(serde_json::json!({"error": text, "retry_after": secs})),
        )
            .into_response()
    } else {
        (StatusCode::TOO_MANY_REQUESTS, retry, text).into_response()
    }
}

/// `401` with a `WWW-Authenticate` challenge.
pub fn unauthenticated() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"outscore\"")],
        axum::Json(serde_json::json!({"error": "authentication required"})),
    )
        .into_response()
}
