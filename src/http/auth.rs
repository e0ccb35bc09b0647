//! Who is asking: credentials (Argon2id PHC strings; the secret is shown
//! once and never stored; older SHA-256 records are rehashed at their next
//! login), bearer tokens, page sessions and roles. A session or cached
//! token ends as soon as its user is removed or changes role.

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

/// `iterations` of a record whose `hash` is an Argon2id PHC string (the
/// salt and cost are inside it).
pub const ARGON2: i64 = 0;
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

/// Salted, iterated SHA-256 of a secret, hex: how credentials were kept
/// before Argon2id; still verified, then replaced at the next login.
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
    (argon2_record(name, role, &secret), secret)
}

/// A record keeping `secret` as an Argon2id PHC string.
pub fn argon2_record(name: &str, role: Role, secret: &str) -> UserRecord {
    UserRecord {
        name: name.to_string(),
        role,
        salt: String::new(),
        iterations: ARGON2,
        hash: argon2_hash(secret),
    }
}

fn argon2_hash(secret: &str) -> String {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("Argon2 with its default parameters hashes any secret")
        .to_string()
}

/// The record is not an Argon2id hash with today's parameters.
pub fn needs_rehash(record: &UserRecord) -> bool {
    use argon2::password_hash::PasswordHash;
    let Ok(parsed) = PasswordHash::new(&record.hash) else {
        return true;
    };
    let current = argon2::Params::default();
    parsed.algorithm != argon2::Algorithm::Argon2id.ident()
        || argon2::Params::try_from(&parsed).map_or(true, |p| {
            p.m_cost() != current.m_cost()
                || p.t_cost() != current.t_cost()
                || p.p_cost() != current.p_cost()
        })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `secret` matches the record.
pub fn verify(record: &UserRecord, secret: &str) -> bool {
    if record.iterations == ARGON2 {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        return PasswordHash::new(&record.hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        });
    }
    let hash = hash_secret(secret, &record.salt, record.iterations);
    constant_time_eq(hash.as_bytes(), record.hash.as_bytes())
}

/// A record no secret matches, verified for unknown user names so that
/// they take as long to refuse as a wrong secret.
fn decoy() -> &'static UserRecord {
    static DECOY: std::sync::OnceLock<UserRecord> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| argon2_record("-", Role::Viewer, &random_hex(20)))
}

/// Page sessions and recently verified tokens, in memory (a restart logs
/// everyone out).
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, (Principal, Instant)>>,
    tokens: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    /// The outcome of a session's last form post, shown once by the page
    /// it is redirected to (good or bad, and the text).
    flashes: Mutex<HashMap<String, (bool, String)>>,
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
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.flashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Keep a form's outcome for the session's next page; only for a live
    /// session, so the map never outgrows the sessions.
    pub fn set_flash(&self, id: &str, good: bool, text: String) {
        if self.get(id).is_none() {
            return;
        }
        let mut flashes = self.flashes.lock().unwrap_or_else(|e| e.into_inner());
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        flashes.retain(|k, _| sessions.contains_key(k));
        flashes.insert(id.to_string(), (good, text));
    }

    /// The session's pending outcome, removed: it is shown once.
    pub fn take_flash(&self, id: &str) -> Option<(bool, String)> {
        self.flashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    fn cached_token(&self, token: &str) -> Option<Principal> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&key)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(p, _)| p.clone())
    }

    fn forget_token(&self, token: &str) {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&key);
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
    let (record, known) = match super::db::user(&state.store, name).await {
        Ok(Some(record)) => (record, true),
        // An unknown name costs a full verification too: no timing tells
        // which names exist.
        Ok(None) => (decoy().clone(), false),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read credentials");
            return None;
        }
    };
    // The hash is CPU work: keep it off the async workers.
    let secret = secret.to_string();
    let (ok, record, upgraded) = tokio::task::spawn_blocking(move || {
        let ok = verify(&record, &secret) && known;
        let upgraded = (ok && needs_rehash(&record))
            .then(|| argon2_record(&record.name, record.role, &secret));
        (ok, record, upgraded)
    })
    .await
    .ok()?;
    if !ok {
        return None;
    }
    if let Some(upgraded) = upgraded {
        match super::db::put_user(&state.store, &upgraded).await {
            Ok(()) => {
                tracing::info!(user = %printable(&record.name), "credential rehashed with Argon2id")
            }
            Err(e) => tracing::warn!(error = %e, "cannot store the rehashed credential"),
        }
    }
    Some(Principal {
        user: record.name,
        role: record.role,
    })
}

/// The user still exists with this role: a removed user's session and
/// cached token end at once.
async fn still_valid(state: &AppState, who: &Principal) -> bool {
    match super::db::user(&state.store, &who.user).await {
        Ok(Some(record)) => record.role == who.role,
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read credentials");
            false
        }
    }
}

async fn check_bearer(state: &AppState, token: &str) -> Option<Principal> {
    if let Some(p) = state.sessions.cached_token(token) {
        if still_valid(state, &p).await {
            return Some(p);
        }
        state.sessions.forget_token(token);
        return None;
    }
    let (name, secret) = token.split_once(':')?;
    let who = check_password(state, name, secret).await?;
    state.sessions.cache_token(token, who.clone());
    Some(who)
}

/// The session id in a request's cookies.
pub fn session_cookie(parts: &Parts) -> Option<String> {
    session_in(&parts.headers)
}

/// The session id in these request headers' cookies.
pub fn session_in(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
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
        } else if let Some(id) = session_cookie(parts) {
            if let Some(who) = state.sessions.get(&id) {
                if still_valid(state, &who).await {
                    return Ok(who);
                }
                state.sessions.remove(&id);
            }
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
