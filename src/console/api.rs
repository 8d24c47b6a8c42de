//! The console's JSON endpoints (cookie session; changes need the CSRF header too). Each
//! reads what INFO and `/metrics` read; changes go through the admin API's code and the
//! audit log.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use super::{refuse, Console};
use crate::deployment::Deployment;
use crate::metrics::histogram::BOUNDS_US;
use crate::metrics::FAMILIES;
use crate::store::{KeyType, Ttl};

type C<S> = State<Arc<Console<S>>>;

fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

/// Whether the cookie names a console session, and its CSRF token. (A 200 either way: the
/// page asks before it knows, and a browser reports every 401 as an error.)
async fn session<S: Deployment>(State(c): C<S>, headers: HeaderMap) -> Response {
    match c.session(&headers) {
        Some(s) => ok(json!({ "logged_in": true, "who": s.who, "csrf": s.csrf })),
        None => ok(json!({ "logged_in": false })),
    }
}

/// Counters and latency buckets since start; the page computes rates from two readings.
async fn overview<S: Deployment>(State(c): C<S>, headers: HeaderMap) -> Response {
    if let Err(r) = c.authorize(&headers, false) {
        return r.into_response();
    }
    let srv = &c.server;
    // A gateway runs few commands itself: its latency is the upstream round trips.
    let (lat, latency_source) = match srv.store.gateway() {
        Some(up) => (up.request_latency(), "upstream round trips"),
        None => (srv.commands.all_latency(), "commands run here"),
    };
    let calls: u64 = (0..FAMILIES.len()).map(|f| srv.commands.calls(f)).sum();
    let errors: u64 = (0..FAMILIES.len())
        .map(|f| srv.commands.errors(f))
        .sum::<u64>()
        + srv.store.gateway().map_or(0, |up| up.error_replies());
    let st = srv.store.stats(crate::clock::now_ms());
    let keys: u64 = st.keyspace.iter().map(|k| k.1).sum();
    let mode = if srv.store.migration().is_some() {
        "migration"
    } else if srv.store.gateway().is_some() {
        "gateway"
    } else {
        "embedded"
    };
    ok(json!({
        "mode": mode,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": srv.started.elapsed().as_secs(),
        "commands": calls,
        "errors": errors,
        "latency_bounds_us": BOUNDS_US,
        "latency_counts": lat.counts,
        "latency_source": latency_source,
        "connected_clients": srv.clients.count(),
        "blocked_clients": srv.store.engine().map_or(0, |e| e.blocked_clients()),
        "keys": keys,
        "used_memory": st.used_memory,
        "maxmemory": st.maxmemory,
        "rss": crate::cmd::info::rss_bytes(),
        "keyspace_hits": st.keyspace_hits,
        "keyspace_misses": st.keyspace_misses,
        "expired_keys": st.expired_keys,
        "evicted_keys": st.evicted_keys,
    }))
}

async fn migration<S: Deployment>(State(c): C<S>, headers: HeaderMap) -> Response {
    if let Err(r) = c.authorize(&headers, false) {
        return r.into_response();
    }
    let Some(m) = c.server.store.migration() else {
        return ok(json!({ "migrating": false }));
    };
    let mut v = m.status();
    v["migrating"] = json!(true);
    v["stages"] = json!(crate::migrate::stage::Stage::ALL
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>());
    ok(v)
}

async fn change_migration<S: Deployment>(
    State(c): C<S>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let s = match c.authorize(&headers, true) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    match crate::admin::change_migration(&c.server, &s.who, &body) {
        Ok(v) => ok(v),
        Err((code, e)) => refuse(code, &e),
    }
}

async fn upstream<S: Deployment>(State(c): C<S>, headers: HeaderMap) -> Response {
    if let Err(r) = c.authorize(&headers, false) {
        return r.into_response();
    }
    match c.server.store.gateway() {
        Some(up) => ok(up.console_view()),
        None => ok(json!({ "gateway": false })),
    }
}

async fn persistence<S: Deployment>(State(c): C<S>, headers: HeaderMap) -> Response {
    if let Err(r) = c.authorize(&headers, false) {
        return r.into_response();
    }
    let Some(p) = c.server.persist.as_ref() else {
        return ok(json!({ "persistence": false }));
    };
    let fields: serde_json::Map<String, Value> = p
        .info_fields()
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::from(v)))
        .collect();
    let fsync = p.journal().map(|j| j.fsync_latency.snapshot());
    ok(json!({
        "persistence": true,
        "info": fields,
        "fsync_p50_us": fsync.as_ref().and_then(|s| s.quantile_us(0.5)),
        "fsync_p99_us": fsync.as_ref().and_then(|s| s.quantile_us(0.99)),
        "fsyncs": fsync.as_ref().map_or(0, |s| s.count),
    }))
}

#[derive(serde::Deserialize)]
struct KeyQuery {
    key: String,
    #[serde(default)]
    db: usize,
}

/// What the console may say about a session: never its value (unless the server runs with
/// `--console-show-values`).
async fn lookup<S: Deployment>(
    State(c): C<S>,
    headers: HeaderMap,
    Query(q): Query<KeyQuery>,
) -> Response {
    if let Err(r) = c.authorize(&headers, false) {
        return r.into_response();
    }
    let srv = &c.server;
    if q.db >= srv.store.databases() {
        return refuse(StatusCode::BAD_REQUEST, "no such database");
    }
    let now = crate::clock::now_ms();
    let key = q.key.as_bytes();
    let kind = match srv.store.key_type(q.db, key, now).await {
        Ok(k) => k,
        Err(e) => return refuse(StatusCode::BAD_GATEWAY, &e.message()),
    };
    let Some(kind) = kind else {
        return ok(json!({ "key": q.key, "exists": false }));
    };
    let ttl_ms = match srv.store.ttl(q.db, key, now).await {
        Ok(Ttl::At(at)) => Some((at - now).max(0)),
        _ => None,
    };
    let mut value = Value::Null;
    let size = match &kind {
        KeyType::String => match srv.store.get(q.db, key, now).await {
            Ok(Some(v)) => {
                if c.show_values {
                    value = Value::from(String::from_utf8_lossy(&v).into_owned());
                }
                Some(v.len())
            }
            _ => None,
        },
        _ => srv
            .store
            .engine()
            .and_then(|e| e.peek(q.db, key, now, |k, _| k.map(|k| k.footprint()))),
    };
    let store = match srv.store.migration() {
        Some(m) => m.serving(key).to_string(),
        None if srv.store.gateway().is_some() => "upstream".into(),
        None => "embedded".into(),
    };
    ok(json!({
        "key": q.key,
        "exists": true,
        "type": kind.name(),
        "ttl_ms": ttl_ms,
        "size_bytes": size,
        "store": store,
        "value": value,
    }))
}

/// "Log this session out": delete it, audited.
async fn logout_session<S: Deployment>(
    State(c): C<S>,
    headers: HeaderMap,
    Query(q): Query<KeyQuery>,
) -> Response {
    let s = match c.authorize(&headers, true) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let srv = &c.server;
    if q.db >= srv.store.databases() {
        return refuse(StatusCode::BAD_REQUEST, "no such database");
    }
    match srv
        .store
        .del(q.db, &[q.key.as_bytes()], crate::clock::now_ms())
        .await
    {
        Ok(n) => {
            // Reported only once the log holds it: a logout a crash could undo would bring
            // the session back.
            if let Err(e) = srv.durable().await {
                return refuse(StatusCode::SERVICE_UNAVAILABLE, &e);
            }
            // The id is a credential: the audit log keeps a digest of it.
            let id = crate::metrics::slowlog::redact(q.key.as_bytes());
            srv.audit.record(
                &s.who,
                "session logout",
                &String::from_utf8_lossy(&id),
                if n > 0 { "deleted" } else { "not found" },
                "",
            );
            ok(json!({ "deleted": n }))
        }
        Err(e) => refuse(StatusCode::BAD_GATEWAY, &e.message()),
    }
}

async fn slowlog<S: Deployment>(State(c): C<S>, headers: HeaderMap) -> Response {
    if let Err(r) = c.authorize(&headers, false) {
        return r.into_response();
    }
    let entries: Vec<Value> = c
        .server
        .slowlog
        .newest(128)
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": e.unix_secs,
                "micros": e.micros,
                "args": e.args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>(),
                "client": e.peer,
                "name": e.name,
            })
        })
        .collect();
    ok(json!({ "entries": entries }))
}

async fn audit<S: Deployment>(State(c): C<S>, headers: HeaderMap) -> Response {
    if let Err(r) = c.authorize(&headers, false) {
        return r.into_response();
    }
    ok(json!({ "entries": c.server.audit.recent() }))
}

pub fn routes<S: Deployment>() -> axum::Router<Arc<Console<S>>> {
    axum::Router::new()
        .route("/console/api/session", get(session::<S>))
        .route("/console/api/overview", get(overview::<S>))
        .route(
            "/console/api/migration",
            get(migration::<S>).put(change_migration::<S>),
        )
        .route("/console/api/upstream", get(upstream::<S>))
        .route("/console/api/persistence", get(persistence::<S>))
        .route(
            "/console/api/sessions",
            get(lookup::<S>).delete(logout_session::<S>),
        )
        .route("/console/api/slowlog", get(slowlog::<S>))
        .route("/console/api/audit", get(audit::<S>))
}
