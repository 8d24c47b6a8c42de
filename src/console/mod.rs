//! The operator's console: a web page served by the admin listener (`/console/`), built
//! into the binary (one HTML file, one script, one style sheet; no build step, no CDN).
//!
//! **Login.** The operator types the admin token into the login form; the page posts it
//! (`POST /console/login`, a JSON body: never in a URL) and gets a console session: a random
//! id in a cookie that is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's
//! page sends it) and `Path=/console` (`Secure` once the admin listener speaks TLS). The
//! session lasts 12 hours or until `POST /console/logout`.
//!
//! **CSRF.** Every request that changes something must also carry the session's CSRF token
//! in an `X-CSRF-Token` header. The page reads it from `GET /console/api/session`, which
//! only a same-origin script can do (no CORS headers are ever sent), so a forged form post
//! from elsewhere has neither the cookie (SameSite) nor the header.
//!
//! **What it shows and does** (`api.rs`): the dashboard's counters and latency buckets (the
//! page turns them into per-second rates and p50/p99, polled every second), the migration
//! (stage, percentage, guard, comparisons, mismatch samples, per-store latency) with its
//! controls, the upstream topology, persistence, a session lookup and "log this session
//! out", the slow log and the audit log. Every change goes through the same code as the
//! admin API and is audited with the console session's token id.

pub mod api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::json;

use crate::deployment::Deployment;
use crate::server::Server;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

const COOKIE: &str = "sessiond_console";
const LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// Console sessions kept at most (the oldest is dropped past it).
const MAX_SESSIONS: usize = 64;

#[derive(Clone)]
pub struct ConsoleSession {
    pub who: String,
    pub csrf: String,
    expires_ms: i64,
}

/// What the console's handlers share.
pub struct Console<S: Deployment> {
    pub server: Arc<Server<S>>,
    token: String,
    sessions: Mutex<HashMap<String, ConsoleSession>>,
    /// Whether values may be shown by the session lookup (`--console-show-values`).
    pub show_values: bool,
    /// Served over HTTPS: the cookie is marked `Secure` (never sent over plain HTTP).
    secure: bool,
}

impl<S: Deployment> Console<S> {
    pub fn new(server: Arc<Server<S>>, token: String, show_values: bool) -> Self {
        Console {
            server,
            token,
            sessions: Mutex::new(HashMap::new()),
            show_values,
            secure: false,
        }
    }

    /// Marks the session cookie `Secure` (the console is served over HTTPS).
    pub fn secure_cookie(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    fn cookie_flags(&self) -> &'static str {
        if self.secure {
            "HttpOnly; Secure; SameSite=Strict"
        } else {
            "HttpOnly; SameSite=Strict"
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ConsoleSession>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The console session a request's cookie names, if it is valid.
    pub fn session(&self, headers: &HeaderMap) -> Option<ConsoleSession> {
        let id = cookie(headers, COOKIE)?;
        let now = crate::clock::now_ms();
        let mut s = self.lock();
        s.retain(|_, v| v.expires_ms > now);
        s.get(&id).cloned()
    }

    /// The session, and for a change also a matching CSRF header; or the refusal.
    pub fn authorize(&self, headers: &HeaderMap, change: bool) -> Result<ConsoleSession, Denied> {
        let Some(s) = self.session(headers) else {
            return Err(Denied(StatusCode::UNAUTHORIZED, "log in first"));
        };
        if change {
            use subtle::ConstantTimeEq;
            let given = headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let ok: bool = (given.len() == s.csrf.len()
                && bool::from(given.as_bytes().ct_eq(s.csrf.as_bytes())))
                && !given.is_empty();
            if !ok {
                return Err(Denied(StatusCode::FORBIDDEN, "missing or wrong CSRF token"));
            }
        }
        Ok(s)
    }
}

/// A request refused for its session or CSRF token.
pub struct Denied(StatusCode, &'static str);

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        refuse(self.0, self.1)
    }
}

pub fn refuse(code: StatusCode, msg: &str) -> Response {
    (code, Json(json!({ "error": msg }))).into_response()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            // The page loads nothing from anywhere else and may not be framed.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

async fn login<S: Deployment>(
    State(c): State<Arc<Console<S>>>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(l) = serde_json::from_slice::<Login>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "expected {\"token\": \"…\"}");
    };
    if !crate::admin::token_matches(&l.token, &c.token) {
        crate::logging::throttled(
            &LOGIN_FAILURES,
            format_args!("console: a login with a wrong token"),
        );
        return refuse(StatusCode::UNAUTHORIZED, "wrong token");
    }
    let (Ok(id), Ok(csrf)) = (
        crate::util::secret::random_token(32),
        crate::util::secret::random_token(32),
    ) else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "no random bytes");
    };
    let who = crate::audit::token_id(&c.token);
    {
        let mut s = c.lock();
        if s.len() >= MAX_SESSIONS {
            if let Some(oldest) = s
                .iter()
                .min_by_key(|(_, v)| v.expires_ms)
                .map(|(k, _)| k.clone())
            {
                s.remove(&oldest);
            }
        }
        s.insert(
            id.clone(),
            ConsoleSession {
                who: who.clone(),
                csrf,
                expires_ms: crate::clock::now_ms() + LIFETIME_MS,
            },
        );
    }
    tracing::info!("console: {who} logged in");
    (
        StatusCode::OK,
        [(
            header::SET_COOKIE,
            format!(
                "{COOKIE}={id}; {}; Path=/console; Max-Age={}",
                c.cookie_flags(),
                LIFETIME_MS / 1000
            ),
        )],
        Json(json!({ "ok": true })),
    )
        .into_response()
}

static LOGIN_FAILURES: crate::logging::Throttle = crate::logging::Throttle::new();

async fn logout<S: Deployment>(State(c): State<Arc<Console<S>>>, headers: HeaderMap) -> Response {
    if let Err(r) = c.authorize(&headers, true) {
        return r.into_response();
    }
    if let Some(id) = cookie(&headers, COOKIE) {
        c.lock().remove(&id);
    }
    (
        StatusCode::OK,
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; {}; Path=/console; Max-Age=0", c.cookie_flags()),
        )],
        Json(json!({ "ok": true })),
    )
        .into_response()
}

/// The console's routes, to merge into the admin router.
pub fn routes<S: Deployment>(console: Arc<Console<S>>) -> axum::Router {
    axum::Router::new()
        .route(
            "/console",
            get(|| async { axum::response::Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        // Browsers ask for one at the origin's root; an empty answer, not a 404.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/console/login", post(login::<S>))
        .route("/console/logout", post(logout::<S>))
        .merge(api::routes::<S>())
        .with_state(console)
}
