//! The registry of connected clients, for `CLIENT LIST/KILL`, `INFO clients` and `maxclients`.
//!
//! Per-command updates (last command, idle time, db) are relaxed atomics on the client's own
//! handle, so the registry's mutex is taken only on connect, disconnect and by admin commands.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Shared view of one connection.
pub struct ClientHandle {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub created_ms: i64,
    pub last_ms: AtomicI64,
    pub db: AtomicUsize,
    pub resp: AtomicU8,
    /// Index into the command table of the last command (usize::MAX: none yet).
    pub last_cmd: AtomicUsize,
    pub names: Mutex<ClientNames>,
    killed: AtomicBool,
    kill: Notify,
}

#[derive(Default, Clone)]
pub struct ClientNames {
    pub name: String,
    /// The ACL user the connection is authenticated as (empty: `default`).
    pub user: String,
    pub lib_name: String,
    pub lib_ver: String,
}

impl ClientHandle {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Resolves when the client is killed.
    pub async fn killed(&self) {
        if self.is_killed() {
            return;
        }
        self.kill.notified().await;
    }

    /// A handle for commands sessiond sends itself (the migration router's copies), never
    /// registered: CLIENT LIST does not show it.
    pub fn internal(name: &str) -> Arc<ClientHandle> {
        Arc::new(ClientHandle {
            id: 0,
            addr: "internal".into(),
            laddr: String::new(),
            created_ms: 0,
            last_ms: AtomicI64::new(0),
            db: AtomicUsize::new(0),
            resp: AtomicU8::new(2),
            last_cmd: AtomicUsize::new(usize::MAX),
            names: Mutex::new(ClientNames {
                name: name.into(),
                ..ClientNames::default()
            }),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        })
    }

    pub fn names(&self) -> ClientNames {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The ACL user the connection is authenticated as.
    pub fn user_name(&self) -> String {
        let n = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if n.user.is_empty() {
            "default".into()
        } else {
            n.user.clone()
        }
    }

    pub fn update_names(&self, f: impl FnOnce(&mut ClientNames)) {
        f(&mut self.names.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

#[derive(Default)]
pub struct ClientRegistry {
    next_id: std::sync::atomic::AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
}

impl ClientRegistry {
    /// Registers a connection unless `maxclients` is reached.
    pub fn register(
        &self,
        addr: String,
        laddr: String,
        maxclients: usize,
        now: i64,
    ) -> Option<Arc<ClientHandle>> {
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= maxclients {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let h = Arc::new(ClientHandle {
            id,
            addr,
            laddr,
            created_ms: now,
            last_ms: AtomicI64::new(now),
            db: AtomicUsize::new(0),
            resp: AtomicU8::new(2),
            last_cmd: AtomicUsize::new(usize::MAX),
            names: Mutex::new(ClientNames::default()),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        map.insert(id, h.clone());
        Some(h)
    }

    pub fn unregister(&self, id: u64) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    pub fn snapshot(&self) -> Vec<Arc<ClientHandle>> {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn count(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
