//! sessiond: a session store that speaks the Redis protocol.
//!
//! The data path, top-down: [`server::listener`] accepts → [`server::connection`] reads and
//! parses ([`resp`]) → [`cmd`] executes against a [`store::Store`] → the embedded
//! [`engine`] or a Redis [`upstream`] (gateway mode; later also the migration router). See
//! `docs/ARCHITECTURE.md`.

pub mod acl;
pub mod admin;
pub mod audit;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod console;
pub mod ctl;
pub mod deployment;
pub mod engine;
pub mod legacy;
pub mod logging;
pub mod metrics;
pub mod migrate;
pub mod persist;
pub mod pubsub;
pub mod resp;
pub mod script;
pub mod serve;
pub mod server;
pub mod store;
pub mod tls;
pub mod upstream;
pub mod util;

/// The Redis version whose commands and replies sessiond reproduces (reported as
/// `redis_version` in INFO and `version` in HELLO, which client libraries check).
pub const REDIS_COMPAT_VERSION: &str = "7.0.0";
