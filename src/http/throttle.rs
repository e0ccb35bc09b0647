//! Login throttling: failed logins (the page form and bearer tokens) are
//! counted per client address and per user name over a window; once either
//! count reaches its limit, further attempts are refused with `429` and a
//! `Retry-After` before any credential is checked. A successful login
//! resets nothing, so logging in to one account never buys more guesses
//! against another. The table is bounded: expired entries go first, then
//! the oldest.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};

use crate::config::HttpConfig;

/// The limits, from `[http]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginLimits {
    /// Failures from one client address (an IPv6 /64) within `window`.
    pub per_ip: u32,
    /// Failures for one user name, from anywhere, within `window`.
    pub per_user: u32,
    /// Counted from a key's first failure; the block ends with it.
    pub window: Duration,
    /// Most addresses and names remembered at once.
    pub max_entries: usize,
    /// Peers whose `X-Forwarded-For` names the client (a local TLS proxy).
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits::from_config(&HttpConfig::default())
    }
}

impl LoginLimits {
    /// Most addresses and names remembered at once (about 1 MB).
    pub const MAX_ENTRIES: usize = 10_000;

    pub fn from_config(http: &HttpConfig) -> LoginLimits {
        LoginLimits {
            per_ip: http.login_failures_per_ip,
            per_user: http.login_failures_per_user,
            window: http.login_failure_window,
            max_entries: Self::MAX_ENTRIES,
            trusted_proxies: http.trusted_proxies.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    User(String),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    first: Instant,
    failures: u32,
}

/// Failed-login counters shared by every request.
#[derive(Debug)]
pub struct LoginThrottle {
    limits: LoginLimits,
    table: Mutex<HashMap<Key, Entry>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new(LoginLimits::default())
    }
}

/// One /64 for an IPv6 client (one subscriber usually holds a whole /64).
fn ip_key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(_) => Key::Ip(ip),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Key::Ip(IpAddr::V4(v4)),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                Key::Ip(IpAddr::from(seg))
            }
        },
    }
}

fn user_key(user: &str) -> Key {
    Key::User(
        user.trim()
            .chars()
            .take(64)
            .collect::<String>()
            .to_lowercase(),
    )
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> LoginThrottle {
        LoginThrottle {
            limits,
            table: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> &LoginLimits {
        &self.limits
    }

    fn keys(&self, ip: Option<IpAddr>, user: &str) -> Vec<(Key, u32)> {
        let mut keys = Vec::with_capacity(2);
        if let Some(ip) = ip {
            keys.push((ip_key(ip), self.limits.per_ip));
        }
        if !user.trim().is_empty() {
            keys.push((user_key(user), self.limits.per_user));
        }
        keys
    }

    /// How long `ip` or `user` must wait before trying again; `None` when
    /// an attempt may be checked now.
    pub fn blocked(&self, ip: Option<IpAddr>, user: &str) -> Option<Duration> {
        self.blocked_at(ip, user, Instant::now())
    }

    fn blocked_at(&self, ip: Option<IpAddr>, user: &str, now: Instant) -> Option<Duration> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        self.keys(ip, user)
            .into_iter()
            .filter_map(|(key, limit)| {
                let entry = table.get(&key)?;
                let end = entry.first + self.limits.window;
                (entry.failures >= limit && end > now).then(|| end - now)
            })
            .max()
    }

    /// Count a failed attempt of `user` from `ip`.
    pub fn failure(&self, ip: Option<IpAddr>, user: &str) {
        self.failure_at(ip, user, Instant::now())
    }

    fn failure_at(&self, ip: Option<IpAddr>, user: &str, now: Instant) {
        let window = self.limits.window;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for (key, _) in self.keys(ip, user) {
            if !table.contains_key(&key) && table.len() >= self.limits.max_entries {
                table.retain(|_, e| e.first + window > now);
                if table.len() >= self.limits.max_entries {
                    let oldest = table
                        .iter()
                        .min_by_key(|(_, e)| e.first)
                        .map(|(k, _)| k.clone());
                    if let Some(oldest) = oldest {
                        table.remove(&oldest);
                    }
                }
            }
            let entry = table.entry(key).or_insert(Entry {
                first: now,
                failures: 0,
            });
            if entry.first + window <= now {
                *entry = Entry {
                    first: now,
                    failures: 0,
                };
            }
            entry.failures = entry.failures.saturating_add(1);
        }
    }

    /// Addresses and names currently remembered.
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client's address: the peer, or the last `X-Forwarded-For` entry
    /// when the peer is a trusted proxy. `None` without a connection (a
    /// request handed to the router directly).
    pub fn client_ip(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())?;
        if !self.limits.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        // Only the last entry is the proxy's own; earlier ones are the
        // client's word.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|s| s.trim().parse::<IpAddr>().ok());
        Some(forwarded.unwrap_or(peer))
    }
}

/// A client address for a log line (`-` when unknown).
pub fn show(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "-".to_string(), |ip| ip.to_string())
}

/// `Retry-After` seconds: whole seconds, rounded up, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// "4 minutes 10 seconds", for the login page.
pub fn plain_wait(wait: Duration) -> String {
    let secs = retry_after_secs(wait);
    let (m, s) = (secs / 60, secs % 60);
    let unit = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    match (m, s) {
        (0, s) => unit(s, "second"),
        (m, 0) => unit(m, "minute"),
        (m, s) => format!("{} {}", unit(m, "minute"), unit(s, "second")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_ip: u32, per_user: u32, max_entries: usize) -> LoginLimits {
        LoginLimits {
            per_ip,
            per_user,
            window: Duration::from_secs(300),
            max_entries,
            trusted_proxies: Vec::new(),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn blocks_an_address_after_the_limit_until_the_window_ends() {
        let t = LoginThrottle::new(limits(5, 100, 100));
        let now = Instant::now();
        for _ in 0..4 {
            t.failure_at(ip("192.0.2.1"), "alice", now);
        }
        assert_eq!(t.blocked_at(ip("192.0.2.1"), "alice", now), None);
        t.failure_at(ip("192.0.2.1"), "bob", now);
        let later = now + Duration::from_secs(60);
        assert_eq!(
            t.blocked_at(ip("192.0.2.1"), "carol", later),
            Some(Duration::from_secs(240))
        );
        // Another address is not affected; the window's end frees it.
        assert_eq!(t.blocked_at(ip("192.0.2.2"), "alice", later), None);
        let end = now + Duration::from_secs(300);
        assert_eq!(t.blocked_at(ip("192.0.2.1"), "alice", end), None);
        // After the window the count starts again.
        t.failure_at(ip("192.0.2.1"), "alice", end);
        assert_eq!(t.blocked_at(ip("192.0.2.1"), "alice", end), None);
    }

    #[test]
    fn blocks_a_user_name_from_every_address() {
        let t = LoginThrottle::new(limits(100, 3, 100));
        let now = Instant::now();
        for n in 1..=3 {
            t.failure_at(ip(&format!("198.51.100.{n}")), "Alice", now);
        }
        assert!(t.blocked_at(ip("203.0.113.9"), "alice", now).is_some());
        assert!(t.blocked_at(ip("203.0.113.9"), "bob", now).is_none());
        // Without a known address only the name counts.
        assert!(t.blocked_at(None, "ALICE", now).is_some());
    }

    #[test]
    fn one_ipv6_subscriber_is_one_address() {
        let t = LoginThrottle::new(limits(2, 100, 100));
        let now = Instant::now();
        t.failure_at(ip("2001:db8:1:2::1"), "a", now);
        t.failure_at(ip("2001:db8:1:2:ffff::9"), "b", now);
        assert!(t.blocked_at(ip("2001:db8:1:2::77"), "c", now).is_some());
        assert!(t.blocked_at(ip("2001:db8:1:3::1"), "c", now).is_none());
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = LoginThrottle::new(limits(5, 5, 50));
        let now = Instant::now();
        for n in 0..1000u32 {
            let addr = IpAddr::from(n.to_be_bytes());
            t.failure_at(Some(addr), &format!("user{n}"), now);
            assert!(t.len() <= 50, "{} entries", t.len());
        }
    }

    #[test]
    fn waits_read_plainly() {
        assert_eq!(plain_wait(Duration::from_millis(1500)), "2 seconds");
        assert_eq!(plain_wait(Duration::from_secs(60)), "1 minute");
        assert_eq!(plain_wait(Duration::from_secs(250)), "4 minutes 10 seconds");
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
    }
}
