//! `sessiond ctl`: the admin API from the command line.
//!
//! ```text
//! sessiond ctl migration status
//! sessiond ctl migration set --stage shadow --percent 5
//! sessiond ctl reload
//! ```
//!
//! The token comes from `--token`, `SESSIOND_ADMIN_TOKEN`, or the `admin.token` file a
//! server without a configured token writes into its data directory (`--dir`).

use std::path::Path;

use serde_json::Value;

/// Where the API is and how to authenticate.
pub struct Target {
    pub admin: String,
    pub token: Option<String>,
    pub dir: std::path::PathBuf,
}

impl Target {
    fn token(&self) -> Result<String, String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let path = crate::admin::token_path(Path::new(&self.dir));
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("no --token given and cannot read {}: {e}", path.display()))
    }

    fn url(&self) -> String {
        format!("http://{}/admin/migration", self.admin)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into()
}

fn answer(
    r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &str,
) -> Result<Value, String> {
    let mut r = r.map_err(|e| format!("{what}: {e}"))?;
    let status = r.status();
    let body: Value = r
        .body_mut()
        .read_json()
        .map_err(|e| format!("{what}: unreadable answer ({status}): {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!(
            "{what}: {status}: {}",
            body.get("error").and_then(Value::as_str).unwrap_or("?")
        ))
    }
}

/// `ctl migration status`.
pub fn status(t: &Target) -> Result<Value, String> {
    let token = t.token()?;
    let r = agent()
        .get(&t.url())
        .header("Authorization", &format!("Bearer {token}"))
        .call();
    answer(r, &t.url())
}

/// `ctl migration set`.
pub fn set(t: &Target, stage: Option<&str>, percent: Option<f64>) -> Result<Value, String> {
    if stage.is_none() && percent.is_none() {
        return Err("give --stage, --percent or both".into());
    }
    let token = t.token()?;
    let mut body = serde_json::Map::new();
    if let Some(s) = stage {
        body.insert("stage".into(), Value::from(s));
    }
    if let Some(p) = percent {
        body.insert("percent".into(), Value::from(p));
    }
    let r = agent()
        .put(&t.url())
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(Value::Object(body));
    answer(r, &t.url())
}

/// `ctl reload`: the server re-reads its configuration file.
pub fn reload(t: &Target) -> Result<Value, String> {
    let token = t.token()?;
    let url = format!("http://{}/admin/reload", t.admin);
    let r = agent()
        .post(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_empty();
    answer(r, &url)
}

/// A reload's report, one line per kind of outcome.
pub fn describe_reload(v: &Value) -> String {
    let list = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| match x.as_array() {
                        Some(t) => format!(
                            "{} {} -> {}",
                            t.first().and_then(Value::as_str).unwrap_or("?"),
                            t.get(1).map(|x| x.to_string()).unwrap_or_default(),
                            t.get(2).map(|x| x.to_string()).unwrap_or_default()
                        ),
                        None => x.as_str().unwrap_or("?").to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (key, title) in [
        ("applied", "applied"),
        ("restart_needed", "needs a restart"),
        ("overridden", "overridden by a flag or environment variable"),
        ("removed", "removed from the file (running value kept)"),
    ] {
        let items = list(key);
        if !items.is_empty() {
            out.push(format!("{title}: {}", items.join(", ")));
        }
    }
    if out.is_empty() {
        out.push("reloaded: nothing changed".into());
    }
    out.join("\n")
}

/// A short human summary of a status.
pub fn describe(v: &Value) -> String {
    let g = |p: &str| v.pointer(p).map(|x| x.to_string()).unwrap_or_default();
    format!(
        "stage {} at {}% (others in {}); old {} -> new {}\n\
         compare: match {} mismatch {} missing-in-new {} missing-in-old {} errors {}\n\
         secondary write errors {}, fallback reads {}, copied forward {}, samples {}",
        g("/stage").trim_matches('"'),
        g("/percent"),
        g("/previous_stage").trim_matches('"'),
        g("/stores/old").trim_matches('"'),
        g("/stores/new").trim_matches('"'),
        g("/compare/match"),
        g("/compare/mismatch"),
        g("/compare/missing_in_new"),
        g("/compare/missing_in_old"),
        g("/compare/errors"),
        g("/secondary_write_errors"),
        g("/fallback_reads"),
        g("/copied_forward"),
        v.get("mismatch_samples")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
    )
}
