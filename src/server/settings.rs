//! Settings that `CONFIG SET` can change while the server runs. Read on the hot path with
//! relaxed atomics; the password behind a lock (read at AUTH and connect only). The ACL
//! users live here too (`acl`): `requirepass` is the default user's password.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::RwLock;

use super::output_limit::{OutputLimit, OutputLimits};
use crate::resp::Limits;

pub struct Settings {
    requirepass: RwLock<Option<String>>,
    pub acl: crate::acl::Acl,
    pub timeout_secs: AtomicU64,
    pub maxclients: AtomicUsize,
    pub proto_max_bulk_len: AtomicI64,
    pub proto_max_multibulk_len: AtomicI64,
    pub client_query_buffer_limit: AtomicU64,
    pub protected_mode: AtomicBool,
    output_limits: RwLock<OutputLimits>,
    /// The `normal` class, read at every flush of replies: atomics, not the lock above.
    normal_hard: AtomicU64,
    normal_soft: AtomicU64,
    normal_soft_seconds: AtomicU64,
}

impl Settings {
    pub fn new(cfg: &crate::config::Config) -> Self {
        Settings {
            requirepass: RwLock::new(cfg.requirepass.clone().filter(|p| !p.is_empty())),
            acl: {
                let acl = crate::acl::Acl::new(cfg.requirepass.as_deref(), cfg.aclfile.clone());
                acl.log.set_max_len(cfg.acllog_max_len);
                acl
            },
            timeout_secs: AtomicU64::new(cfg.timeout),
            maxclients: AtomicUsize::new(cfg.maxclients),
            proto_max_bulk_len: AtomicI64::new(cfg.proto_max_bulk_len as i64),
            proto_max_multibulk_len: AtomicI64::new(cfg.proto_max_multibulk_len as i64),
            client_query_buffer_limit: AtomicU64::new(cfg.client_query_buffer_limit),
            protected_mode: AtomicBool::new(cfg.protected_mode),
            output_limits: RwLock::new(cfg.client_output_buffer_limit),
            normal_hard: AtomicU64::new(cfg.client_output_buffer_limit.normal.hard),
            normal_soft: AtomicU64::new(cfg.client_output_buffer_limit.normal.soft),
            normal_soft_seconds: AtomicU64::new(cfg.client_output_buffer_limit.normal.soft_seconds),
        }
    }

    pub fn requirepass(&self) -> Option<String> {
        self.requirepass
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets `requirepass`, which is the default user's password (as in Redis).
    pub fn set_requirepass(&self, pw: Option<String>) {
        let pw = pw.filter(|p| !p.is_empty());
        self.acl.set_requirepass(pw.as_deref());
        *self.requirepass.write().unwrap_or_else(|p| p.into_inner()) = pw;
    }

    /// `client-output-buffer-limit` for normal clients (read at each flush of replies).
    pub fn output_limit(&self) -> OutputLimit {
        OutputLimit {
            hard: self.normal_hard.load(Ordering::Relaxed),
            soft: self.normal_soft.load(Ordering::Relaxed),
            soft_seconds: self.normal_soft_seconds.load(Ordering::Relaxed),
        }
    }

    pub fn output_limits(&self) -> OutputLimits {
        *self.output_limits.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_output_limits(&self, l: OutputLimits) {
        *self
            .output_limits
            .write()
            .unwrap_or_else(|p| p.into_inner()) = l;
        self.normal_hard.store(l.normal.hard, Ordering::Relaxed);
        self.normal_soft.store(l.normal.soft, Ordering::Relaxed);
        self.normal_soft_seconds
            .store(l.normal.soft_seconds, Ordering::Relaxed);
    }

    /// What a client that has not authenticated may do now: `Ok(true)` use the server as
    /// `default` (the default user is on without a password, and protected mode allows
    /// it), `Ok(false)` authenticate first, `Err(DENIED)` nothing (protected mode: the
    /// default user has no password and the client is not local).
    pub fn open_to(&self, local: bool) -> Result<bool, &'static str> {
        match (
            self.acl.default_is_open(),
            local || !self.protected_mode.load(Ordering::Relaxed),
        ) {
            (false, _) => Ok(false),
            (true, true) => Ok(true),
            (true, false) => Err(super::auth_guard::DENIED),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_bulk_len: self.proto_max_bulk_len.load(Ordering::Relaxed),
            max_multibulk_len: self.proto_max_multibulk_len.load(Ordering::Relaxed),
        }
    }
}
