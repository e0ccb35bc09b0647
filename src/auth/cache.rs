//! A TTL cache for DNS answers, shared by every message the daemon scores,
//! in the shape mail-auth's resolver accepts. Knows nothing of SPF.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use mail_auth::ResolverCache;

/// Entries kept until their DNS TTL runs out. When full, expired entries are
/// dropped first; if that frees nothing, the whole cache is emptied (a cheap,
/// bounded policy: a relay's working set of sender domains is small).
#[derive(Debug)]
pub struct TtlCache<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> TtlCache<K, V> {
        TtlCache {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The live entry and its stored key.
    pub fn get_entry<Q>(&self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_key_value(key) {
            Some((k, (v, until))) if *until > Instant::now() => Some((k.clone(), v.clone())),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: K, value: V, valid_until: Instant) {
        let now = Instant::now();
        if valid_until <= now {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (value, valid_until));
    }

    /// Live and expired entries held now.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A per-evaluation view of a shared cache that notes which names were read
/// and counts misses (each miss is a DNS query the resolver then sends).
pub struct Tracked<'a, K, V> {
    inner: &'a TtlCache<K, V>,
    names: Mutex<Vec<String>>,
    misses: &'a AtomicU32,
}

impl<'a, K, V> Tracked<'a, K, V> {
    pub fn new(inner: &'a TtlCache<K, V>, misses: &'a AtomicU32) -> Tracked<'a, K, V> {
        Tracked {
            inner,
            names: Mutex::new(Vec::new()),
            misses,
        }
    }

    /// Names read or stored through this view, first use first, no repeats.
    pub fn names(&self) -> Vec<String> {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn note(&self, name: String) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if !names.contains(&name) {
            names.push(name);
        }
    }
}

impl<K: Hash + Eq + Clone + Display, V: Clone> ResolverCache<K, V> for Tracked<'_, K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.inner.get_entry(name) {
            Some((key, value)) => {
                self.note(key.to_string());
                Some(value)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.inner.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        self.note(key.to_string());
        self.inner.put(key, value, valid_until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(2);
        let later = Instant::now() + Duration::from_secs(60);
        cache.put("a.".into(), 1, later);
        cache.put("b.".into(), 2, later);
        cache.put("gone.".into(), 9, Instant::now());
        assert_eq!(cache.get_entry("a.").map(|e| e.1), Some(1));
        assert!(cache.get_entry("gone.").is_none());
        cache.put("c.".into(), 3, later);
        assert!(cache.len() <= 2);
        assert_eq!(cache.get_entry("c.").map(|e| e.1), Some(3));
    }
}
