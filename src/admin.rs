//! The admin HTTP API (`--admin-listen HOST:PORT`), and what `sessiond ctl` talks to.
//!
//! * `GET /admin/migration`: stage, percentage, comparison counters, mismatch samples,
//!   per-store latencies (JSON).
//! * `GET /metrics`: everything operators graph, in the OpenMetrics text format Prometheus
//!   scrapes (`metrics/export.rs`). Prometheus sends the token with its `authorization`
//!   (or `bearer_token_file`) scrape setting.
//! * `POST /admin/reload`: re-read the configuration file (as SIGHUP); the report of what
//!   was applied, what needs a restart, what a flag overrides (`server/reload.rs`), or 400
//!   with the error when the file is invalid (nothing changed then).
//! * `PUT /admin/migration` with `{"stage": "shadow", "percent": 5}` (either field may be
//!   left out): both change in one step, seen by every connection's next command, and logged.
//! * `GET /admin/settings`: every `CONFIG` parameter with its running value (secrets shown
//!   only as set or not) and whether it can change live; `PUT /admin/settings` with
//!   `{"timeout": 30, "loglevel": "warning"}` changes live ones, as one `CONFIG SET` would
//!   (the same rows of the settings table, all or nothing), audited.
//!
//! The operator's console (`/console/`, `console/`) is served by the same listener; it logs
//! in with the same token and keeps a cookie session.
//!
//! Every API request needs `Authorization: Bearer <token>`, compared in constant time. The token
//! is `--admin-token`; without one, sessiond makes a random one (from the OS CSPRNG) and writes it to
//! `<dir>/admin.token` (mode 0600, replacing whatever was there, never through a symlink), where `sessiond ctl` on the same host finds it. A
//! non-loopback admin address needs an explicit token, as a non-loopback data address needs a
//! password (protected mode).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::deployment::Deployment;
use crate::server::Server;

/// Where the API listens and the token it wants.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
    /// `--console-show-values`.
    pub show_values: bool,
    /// `--admin-tls-cert-file`, `--admin-tls-key-file`: HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--admin-allow-plaintext yes`: plain HTTP on a non-loopback address (the token and
    /// the console's cookie then cross the network readable).
    pub allow_plaintext: bool,
}

/// The file a generated token is written to.
pub fn token_path(dir: &Path) -> PathBuf {
    dir.join("admin.token")
}

/// The token to require: the configured one, or a new random one written to the data
/// directory for `sessiond ctl`.
fn token(cfg: &AdminConfig, dir: &Path) -> Result<String, String> {
    if let Some(t) = &cfg.token {
        return Ok(t.clone());
    }
    if !cfg.listen.ip().is_loopback() {
        return Err(format!(
            "--admin-listen {} is not a loopback address: give an --admin-token",
            cfg.listen
        ));
    }
    let t = crate::util::secret::random_token(32)
        .map_err(|e| format!("cannot read random bytes for the admin token: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = token_path(dir);
    crate::util::secret::write_private(&path, &t)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(t)
}

struct Admin<S: Deployment> {
    server: Arc<Server<S>>,
    token: String,
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    token_matches(given, token)
}

/// Compares a given token with the admin token in constant time.
pub fn token_matches(given: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    // Digests, so that the comparison does not leak the length either.
    let a = sha1_smol::Sha1::from(given).digest().bytes();
    let b = sha1_smol::Sha1::from(token).digest().bytes();
    a.ct_eq(&b).into()
}

type Reply = (StatusCode, Json<Value>);

/// Every API route's gate: the bearer token, checked once here rather than in each handler
/// (the console's routes have their own cookie session).
async fn require_token<S: Deployment>(
    State(a): State<Arc<Admin<S>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !authorized(req.headers(), &a.token) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    }
    next.run(req).await
}

fn error(code: StatusCode, msg: &str) -> Reply {
    (code, Json(json!({ "error": msg })))
}

async fn status<S: Deployment>(State(a): State<Arc<Admin<S>>>) -> Reply {
    match a.server.store.migration() {
        Some(m) => (StatusCode::OK, Json(m.status())),
        None => error(
            StatusCode::CONFLICT,
            "not migrating (start with --migrate-from and --migrate-to)",
        ),
    }
}

async fn metrics<S: Deployment>(State(a): State<Arc<Admin<S>>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = crate::metrics::export::gather(&a.server).encode();
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::export::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
}

async fn reload<S: Deployment>(State(a): State<Arc<Admin<S>>>) -> Reply {
    let server = a.server.clone();
    let r = tokio::task::spawn_blocking(move || crate::server::reload::reload(&server)).await;
    match r {
        Ok(Ok(report)) => {
            tracing::info!("configuration reloaded: {}", report.summary());
            (StatusCode::OK, Json(json!(report)))
        }
        Ok(Err(e)) => {
            tracing::warn!("configuration reload refused, running configuration kept: {e}");
            error(StatusCode::BAD_REQUEST, &e)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn settings<S: Deployment>(State(a): State<Arc<Admin<S>>>) -> Reply {
    let list: Vec<Value> = crate::server::live::params()
        .map(|(name, def)| {
            let value = def.get.map(|g| g(&*a.server)).unwrap_or_default();
            let value = match def.secret {
                true if value.is_empty() => "".to_string(),
                true => "(set)".to_string(),
                false => value,
            };
            json!({ "name": name, "value": value, "live": def.apply.is_some() })
        })
        .collect();
    (StatusCode::OK, Json(json!({ "settings": list })))
}

async fn change_settings<S: Deployment>(
    State(a): State<Arc<Admin<S>>>,
    body: axum::body::Bytes,
) -> Reply {
    let changes: serde_json::Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
    };
    let mut pairs = Vec::with_capacity(changes.len());
    for (name, value) in &changes {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Bool(b) => crate::config::def::yes(*b),
            Value::Number(n) => n.to_string(),
            _ => {
                let msg = format!("{name}: expected a string, a number or a boolean");
                return error(StatusCode::BAD_REQUEST, &msg);
            }
        };
        pairs.push((name.to_ascii_lowercase(), text));
    }
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let who = crate::audit::token_id(&a.token);
    let by = crate::config::def::By {
        who: &who,
        why: "admin API",
    };
    match crate::server::live::set(&*a.server, &pairs, &by) {
        Ok(applied) => {
            let applied: Vec<Value> = applied
                .into_iter()
                .map(|(name, from, to)| {
                    tracing::info!("admin API set {name} {from:?} -> {to:?}");
                    json!({ "name": name, "from": from, "to": to })
                })
                .collect();
            (StatusCode::OK, Json(json!({ "applied": applied })))
        }
        Err(crate::server::live::Refused::Unknown(name)) => {
            error(StatusCode::BAD_REQUEST, &format!("{name}: no such setting"))
        }
        Err(crate::server::live::Refused::Failed(name, e)) => {
            error(StatusCode::BAD_REQUEST, &format!("{name}: {e}"))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    stage: Option<String>,
    percent: Option<f64>,
    /// The guarded ramp's bounds (`errors=1%,p99=20ms,window=30s`), or `off`.
    guard: Option<String>,
}

async fn update<S: Deployment>(State(a): State<Arc<Admin<S>>>, body: axum::body::Bytes) -> Reply {
    match change_migration(&a.server, &crate::audit::token_id(&a.token), &body) {
        Ok(v) => (StatusCode::OK, Json(v)),
        Err((code, e)) => error(code, &e),
    }
}

/// A change of the migration's stage, percentage and/or guard (`{"stage": "shadow",
/// "percent": 5, "guard": "errors=1%,window=30s"}`, each optional), as the admin API and the
/// console make it: all checked before anything changes, then applied and audited as `who`.
/// Returns the new status.
pub fn change_migration<S: Deployment>(
    server: &Server<S>,
    who: &str,
    body: &[u8],
) -> Result<Value, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let Some(m) = server.store.migration() else {
        return Err((
            StatusCode::CONFLICT,
            "not migrating (start with --migrate-from and --migrate-to)".into(),
        ));
    };
    let change: Change = serde_json::from_slice(body).map_err(|e| bad(format!("bad JSON: {e}")))?;
    // The same settings as CONFIG SET migrate-stage, migrate-percent and migrate-guard,
    // through the same table: one parse, one check, all or nothing, audited as `who`.
    let percent = change.percent.map(|p| p.to_string());
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = &change.stage {
        pairs.push(("migrate-stage", s));
    }
    if let Some(p) = &percent {
        pairs.push(("migrate-percent", p));
    }
    if let Some(g) = &change.guard {
        pairs.push(("migrate-guard", g));
    }
    let by = crate::config::def::By { who, why: "" };
    crate::server::live::set(server, &pairs, &by).map_err(|e| match e {
        crate::server::live::Refused::Unknown(n) => bad(format!("{n}: unknown")),
        crate::server::live::Refused::Failed(n, e) => {
            bad(format!("{}: {e}", n.trim_start_matches("migrate-")))
        }
    })?;
    Ok(m.status())
}

/// Binds the admin listener (before the data listeners, so a bad address fails start-up)
/// and serves it until the process ends.
pub async fn start<S: Deployment>(server: Arc<Server<S>>, cfg: &AdminConfig) -> Result<(), String> {
    let token = token(cfg, &server.config.dir)?;
    if cfg.tls.is_none() && !cfg.listen.ip().is_loopback() && !cfg.allow_plaintext {
        return Err(format!(
            "--admin-listen {} is not a loopback address: serve it over TLS \
             (--admin-tls-cert-file, --admin-tls-key-file), or waive that with \
             --admin-allow-plaintext yes on a trusted network",
            cfg.listen
        ));
    }
    let tls = match &cfg.tls {
        None => None,
        Some((cert, key)) => Some(Arc::new(crate::tls::TlsServer::new(
            crate::tls::TlsOptions {
                port: cfg.listen.port(),
                cert_file: cert.clone(),
                key_file: key.clone(),
                ca_cert_file: None,
                auth_clients: crate::tls::AuthClients::No,
                protocols: Vec::new(),
                ciphersuites: Vec::new(),
                ciphers: Vec::new(),
                user_from_cn: false,
            },
        )?)),
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on --admin-listen {}: {e}", cfg.listen))?;
    tracing::info!(
        "admin API on {}://{}",
        if tls.is_some() { "https" } else { "http" },
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let admin = Arc::new(Admin {
        server: server.clone(),
        token: token.clone(),
    });
    let app = axum::Router::new()
        .route("/admin/migration", get(status::<S>).put(update::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/admin/reload", axum::routing::post(reload::<S>))
        .route(
            "/admin/settings",
            get(settings::<S>).put(change_settings::<S>),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            require_token::<S>,
        ))
        .with_state(admin)
        .merge(crate::console::routes(Arc::new(
            crate::console::Console::new(server.clone(), token, cfg.show_values)
                .secure_cookie(tls.is_some()),
        )));
    match tls {
        None => {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!("admin API stopped: {e}");
                }
            });
        }
        Some(tls) => {
            let _ = server.admin_tls.set(tls.clone());
            tokio::spawn(async move {
                let l = TlsListener { tcp: listener, tls };
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!("admin API stopped: {e}");
                }
            });
        }
    }
    Ok(())
}

/// The admin API's HTTPS listener: a TCP listener whose connections finish a TLS handshake
/// (within 10 s) before axum sees them. The certificate is reloaded on SIGHUP.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: Arc<crate::tls::TlsServer>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((sock, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let handshake = self.tls.acceptor().accept(sock);
            match tokio::time::timeout(std::time::Duration::from_secs(10), handshake).await {
                Ok(Ok(s)) => return (s, addr),
                Ok(Err(e)) => {
                    static LOG: crate::logging::Throttle = crate::logging::Throttle::new();
                    crate::logging::throttled(
                        &LOG,
                        format_args!("admin API: TLS handshake with {addr} failed: {e}"),
                    );
                }
                Err(_) => {}
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
