//! Async locks by name (a unit, a session), created on first use and dropped as soon as nobody
//! holds or waits for them, so the map stays as small as the work in flight however many
//! units and sessions pass through a long-running daemon.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// A set of named async mutexes.
#[derive(Debug, Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds one named lock; releases it (and forgets the name if nobody else wants it) on drop.
#[derive(Debug)]
pub struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    /// Waits for the lock named `key`.
    pub async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        KeyedGuard {
            locks: self,
            key: key.to_string(),
            guard: Some(mutex.lock_owned().await),
        }
    }

    /// Takes the lock named `key` if it is free.
    pub fn try_lock(&self, key: &str) -> Option<KeyedGuard<'_>> {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let guard = KeyedGuard {
            locks: self,
            key: key.to_string(),
            guard: mutex.try_lock_owned().ok(),
        };
        guard.guard.is_some().then_some(guard)
    }

    /// Waits for every lock in `keys`, in sorted order (so two callers never wait on each
    /// other in opposite orders).
    pub async fn lock_all<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k String>,
    ) -> Vec<KeyedGuard<'_>> {
        let mut keys: Vec<&String> = keys.into_iter().collect();
        keys.sort();
        keys.dedup();
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            guards.push(self.lock(key).await);
        }
        guards
    }

    /// How many names are in use (held or waited for).
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no name is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map's own reference left: nobody holds or waits for this name.
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_are_forgotten_once_released_and_held_names_exclude() {
        let locks = KeyedLocks::default();
        let a = locks.lock("a").await;
        let both = locks.lock_all([&"b".to_string(), &"c".to_string()]).await;
        assert_eq!(locks.len(), 3);
        assert!(locks.try_lock("a").is_none(), "a held lock excludes");
        assert_eq!(locks.len(), 3, "a failed try does not leak a name");
        drop(both);
        assert_eq!(locks.len(), 1);
        drop(a);
        assert!(locks.is_empty());
    }
}
