//! The settings table: every setting of `sessiond serve`, once (see `def.rs` for what a row
//! holds and why). The flags and `--help`, the `SESSIOND_*` environment variables, the TOML
//! file's keys, `CONFIG GET`/`CONFIG SET`, a reload of the file and the admin API's
//! migration changes all read it. Settings that combine (the TLS listener, the admin API,
//! the upstream options, the migration) are gathered in [`Parts`] and combined, with the
//! checks between them, by `Config::finish`.
//!
//! Rows are grouped by concern, one file each; the groups' order and the rows' order are
//! the order of `--help` and of `CONFIG GET *`.

use std::path::PathBuf;

mod admin;
mod migrate;
mod persist;
mod server;
mod tls;
mod upstream;

use super::def::{
    count, float, int_from, int_in, memory, memory_in, migrating, millis, one_of, text, yes,
    yes_no, By, Def, Kind, Running, R,
};
use super::Config;
use crate::engine::Policy;
use crate::migrate::guard::GuardConfig;
use crate::migrate::stage::{Setting, Stage};
use crate::persist::Fsync;
use crate::upstream::ReadFrom;

/// Settings that `Config::finish` combines into one structure each.
#[derive(Clone, Debug, Default)]
pub struct Parts {
    pub tls_port: Option<u16>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub tls_ca_cert_file: Option<String>,
    pub tls_auth_clients: Option<crate::tls::AuthClients>,
    pub tls_protocols: Vec<String>,
    pub tls_ciphersuites: Vec<String>,
    pub tls_ciphers: Vec<String>,
    pub tls_user_from_cn: bool,
    pub admin_listen: Option<std::net::SocketAddr>,
    pub admin_token: Option<String>,
    pub admin_tls_cert_file: Option<String>,
    pub admin_tls_key_file: Option<String>,
    pub admin_allow_plaintext: bool,
    pub console_show_values: bool,
    pub upstream: Option<String>,
    pub upstream_connections: Option<usize>,
    pub upstream_pinned_max: Option<usize>,
    pub upstream_timeout: Option<std::time::Duration>,
    pub upstream_connect_timeout: Option<std::time::Duration>,
    pub upstream_health_interval: Option<std::time::Duration>,
    pub upstream_failure_limit: Option<u32>,
    pub upstream_read_from_replica: Option<ReadFrom>,
    pub upstream_failover_wait: Option<std::time::Duration>,
    pub upstream_refresh_interval: Option<std::time::Duration>,
    pub migrate_from: Option<String>,
    pub migrate_to: Option<String>,
    pub migrate_stage: Option<Stage>,
    pub migrate_percent: Option<f64>,
    pub migrate_guard: Option<GuardConfig>,
    pub migrate_shadow_sample: Option<u32>,
    pub migrate_client_prefix: Option<String>,
    pub migrate_legacy_prefix: Option<String>,
}

use Kind::{Bool, Float, Int, List, Size, Text};

fn split(v: &str, sep: char) -> Vec<String> {
    v.split(sep)
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// `maxmemory*` are the embedded engine's: a gateway's memory is the upstream's.
fn embedded_memory(r: &dyn Running) -> Result<(), String> {
    match r.is_gateway() {
        true => Err("memory limits belong to the upstream Redis; set them there".into()),
        false => Ok(()),
    }
}

/// Every row, in `--help` order.
pub fn all() -> impl Iterator<Item = &'static Def> {
    [
        server::ROWS,
        tls::ROWS,
        persist::ROWS,
        upstream::ROWS,
        admin::ROWS,
        migrate::ROWS,
    ]
    .into_iter()
    .flatten()
}

/// A row by its `CONFIG` name or alias (lower case).
pub fn find(name: &str) -> Option<&'static Def> {
    all().find(|d| d.is(name))
}
