//! Live reload of the configuration file (`SIGHUP`, `sessiond ctl reload`, `POST
//! /admin/reload`): change settings without a restart and without dropping a connection.
//!
//! The file is read and **validated whole with the start-up rules** first (`Config::resolve`
//! over the same flags and environment): an invalid file is refused, with the error naming
//! the file, the key or the line, and the running configuration is kept. Then every key
//! whose value differs from the file last loaded is sorted into:
//!
//! * **applied**: a setting that can change live (a row of the settings table with a way
//!   to apply it); all of them are parsed and checked before any is applied, then applied
//!   together, exactly as one `CONFIG SET` with every changed setting would be;
//! * **overridden**: also given by a flag or an environment variable, which take precedence
//!   over the file at start and still do;
//! * **restart needed**: a setting that cannot change in a running process (listen
//!   addresses, the data directory, a different kind of upstream URL…). The gateway's
//!   `upstream` URL may change its addresses live (a new server, sentinel set or cluster
//!   seed list: `upstream/retarget.rs`);
//! * **removed**: a key no longer in the file keeps its running value until a restart
//!   (a removed key has no value to apply; its default is what a restart gives).
//!
//! Connections are never touched: a reload changes shared settings that every connection
//! reads at its next command.

use std::sync::Mutex;

use super::live;
use super::Server;
use crate::deployment::Deployment;

/// What one reload did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// (setting, old value, new value).
    pub applied: Vec<(String, String, String)>,
    pub restart_needed: Vec<String>,
    pub overridden: Vec<String>,
    pub removed: Vec<String>,
}

impl Report {
    /// One line for the log.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.applied.is_empty() {
            parts.push("nothing changed live".to_string());
        } else {
            let a: Vec<String> = self
                .applied
                .iter()
                .map(|(n, from, to)| {
                    if n == "requirepass" {
                        format!("{n} changed")
                    } else {
                        format!("{n} {from:?} -> {to:?}")
                    }
                })
                .collect();
            parts.push(format!("applied: {}", a.join(", ")));
        }
        if !self.restart_needed.is_empty() {
            parts.push(format!(
                "need a restart: {}",
                self.restart_needed.join(", ")
            ));
        }
        if !self.overridden.is_empty() {
            parts.push(format!(
                "overridden by a flag or environment variable: {}",
                self.overridden.join(", ")
            ));
        }
        if !self.removed.is_empty() {
            parts.push(format!(
                "removed from the file, running value kept until a restart: {}",
                self.removed.join(", ")
            ));
        }
        parts.join("; ")
    }
}

/// The file as last loaded (at start or by a reload), to tell which keys changed.
#[derive(Default)]
pub struct Reloader {
    last: Mutex<toml::Table>,
    /// One reload at a time (a SIGHUP and a `ctl reload` at once).
    running: Mutex<()>,
}

impl Reloader {
    /// Remembers the file the server started with (already validated by then).
    pub fn new(config: &crate::config::Config) -> Reloader {
        let table = config
            .config_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
            .unwrap_or_default();
        Reloader {
            last: Mutex::new(table),
            running: Mutex::new(()),
        }
    }
}

/// Re-reads the configuration file and applies what changed (see the module docs).
pub fn reload<S: Deployment>(server: &Server<S>) -> Result<Report, String> {
    let _one = server
        .reloader
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let path = server.config.config_file.as_ref().ok_or(
        "no configuration file to reload: sessiond was started without --config".to_string(),
    )?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
    // Every key and value, and their combinations, as at start.
    crate::config::Config::resolve(&server.config.args)?;

    let flags = &server.config.args.given;
    let mut last = server
        .reloader
        .last
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut names: Vec<&String> = table.keys().chain(last.keys()).collect();
    names.sort();
    names.dedup();
    let mut report = Report::default();
    let mut changes: Vec<(String, String)> = Vec::new();
    let mut retarget = None;
    for name in names {
        let (old, new) = (last.get(name), table.get(name));
        if old == new {
            continue;
        }
        let Some(new) = new else {
            report.removed.push(name.clone());
            continue;
        };
        if flags.contains_key(name) {
            report.overridden.push(name.clone());
            continue;
        }
        let value = crate::config::file_text(new);
        if name == "upstream" && server.store.gateway().is_some() {
            let url = crate::upstream::url::UpstreamUrl::parse(&value)
                .map_err(|e| format!("config file {}: upstream: {e}", path.display()))?;
            retarget = Some(url);
        } else if live::is_live(name) {
            changes.push((name.clone(), value));
        } else {
            report.restart_needed.push(name.clone());
        }
    }
    let pairs: Vec<(&str, &str)> = changes
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let by = crate::config::def::By {
        who: "reload",
        why: "configuration file",
    };
    let applied = live::set(server, &pairs, &by).map_err(|e| match e {
        live::Refused::Unknown(name) => format!("config file {}: {name}: unknown", path.display()),
        live::Refused::Failed(name, e) => format!("config file {}: {name}: {e}", path.display()),
    })?;
    report.applied.extend(applied);
    if let (Some(url), Some(up)) = (retarget, server.store.gateway()) {
        // Runs on a blocking thread (SIGHUP and the admin API both call reload there).
        let before = up.url().to_string();
        match tokio::runtime::Handle::current().block_on(up.retarget(&url)) {
            Ok(true) => report
                .applied
                .push(("upstream".into(), before, url.to_string())),
            Ok(false) => {}
            Err(e) => report.restart_needed.push(format!("upstream ({e})")),
        }
    }
    *last = table;
    Ok(report)
}

/// Runs a reload and logs its outcome (the `SIGHUP` path, which has no one to reply to).
/// SIGHUP also re-reads the TLS certificate, key and CA files (for new connections; open
/// ones keep their session), with or without a configuration file.
pub fn reload_and_log<S: Deployment>(server: &Server<S>) {
    let mut any_tls = false;
    for (what, tls) in [
        ("TLS", server.tls.get()),
        ("admin TLS", server.admin_tls.get()),
    ] {
        let Some(tls) = tls else { continue };
        any_tls = true;
        match tls.reload() {
            Ok(()) => tracing::info!("{what} certificates reloaded"),
            Err(e) => tracing::warn!("{what} reload refused, certificates kept: {e}"),
        }
    }
    if any_tls && server.config.config_file.is_none() {
        return;
    }
    match reload(server) {
        Ok(r) => tracing::info!("configuration reloaded: {}", r.summary()),
        Err(e) => tracing::warn!("configuration reload refused, running configuration kept: {e}"),
    }
}
