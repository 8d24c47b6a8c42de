//! A MySQL/MariaDB table as a store (the first seed's old store), optionally fronted by
//! memcached as a read-through, write-through cache (the seed's MySQL + Memcached pair).
//!
//! URL: `mysql://user:pass@host:3306/db?table=sessions&id_column=id&data_column=data&`
//! `expires_column=expires_at&memcached=127.0.0.1:11211&memcached_prefix=sess:`; every
//! parameter is optional (these are the defaults; no memcached unless given). Default schema:
//!
//! ```sql
//! CREATE TABLE sessions (
//!   id         VARBINARY(255) NOT NULL PRIMARY KEY,  -- the session id (client key minus prefix)
//!   data       MEDIUMBLOB     NOT NULL,              -- the serialized session
//!   expires_at BIGINT         NOT NULL,              -- unix time in ms; 0: never
//!   KEY (expires_at)
//! );
//! ```
//!
//! Every statement checks expiry itself (`expires_at = 0 OR expires_at > now`), so rows past
//! their time are invisible whether or not a cleanup job has deleted them. Conditional writes
//! are single statements where the semantics need it (`INSERT IGNORE` after removing an
//! expired row for `SET NX`; `DELETE … AND data = ?` for the lock release). The cache is
//! filled on reads with the remaining TTL, written on plain `SET`s, and invalidated on every
//! other change, so it never holds a value the table does not.

use std::sync::Arc;

use bytes::Bytes;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::Row;

use super::keymap::KeyMap;
use crate::store::{
    Db, ExpireCondition, ScanFilter, SetCondition, SetOptions, SetOutcome, Store, StoreError,
    StoreResult, Ttl, TtlChange, UnixMs,
};

/// What a `mysql://` URL names.
#[derive(Clone, Debug)]
pub struct SqlConfig {
    /// The URL sqlx connects with (our parameters removed).
    pub url: String,
    pub table: String,
    pub id_column: String,
    pub data_column: String,
    pub expires_column: String,
    pub memcached: Option<String>,
    pub memcached_prefix: String,
}

fn identifier(s: &str, what: &str) -> Result<String, String> {
    if !s.is_empty() && s.len() <= 64 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        Ok(s.to_string())
    } else {
        Err(format!("{what} '{s}': letters, digits and _ only"))
    }
}

impl SqlConfig {
    pub fn parse(u: &str) -> Result<SqlConfig, String> {
        let (base, query) = u.split_once('?').unwrap_or((u, ""));
        let mut c = SqlConfig {
            url: base.to_string(),
            table: "sessions".into(),
            id_column: "id".into(),
            data_column: "data".into(),
            expires_column: "expires_at".into(),
            memcached: None,
            memcached_prefix: String::new(),
        };
        let mut passthrough = Vec::new();
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "table" => c.table = identifier(v, "table")?,
                "id_column" => c.id_column = identifier(v, "id_column")?,
                "data_column" => c.data_column = identifier(v, "data_column")?,
                "expires_column" => c.expires_column = identifier(v, "expires_column")?,
                "memcached" => c.memcached = Some(v.to_string()),
                "memcached_prefix" => c.memcached_prefix = v.to_string(),
                _ => passthrough.push(kv),
            }
        }
        if !passthrough.is_empty() {
            c.url = format!("{base}?{}", passthrough.join("&"));
        }
        Ok(c)
    }
}

pub struct SqlStore {
    pool: MySqlPool,
    cfg: SqlConfig,
    keys: KeyMap,
    cache: Option<Arc<memcache::Client>>,
}

fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Other(format!("ERR mysql: {e}"))
}

impl SqlStore {
    pub async fn connect(cfg: SqlConfig, keys: KeyMap) -> Result<SqlStore, String> {
        let pool = MySqlPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect(&cfg.url)
            .await
            .map_err(|e| format!("mysql: {e}"))?;
        let cache = match &cfg.memcached {
            Some(addr) => {
                let url = format!("memcache://{addr}?timeout=1&tcp_nodelay=true");
                let c =
                    tokio::task::spawn_blocking(move || memcache::Client::connect(url.as_str()))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("memcached {addr}: {e}"))?;
                Some(Arc::new(c))
            }
            None => None,
        };
        Ok(SqlStore {
            pool,
            cfg,
            keys,
            cache,
        })
    }

    /// The row id for a client key.
    fn id(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.keys.to_legacy(key)
    }

    fn sql(&self, template: &str) -> String {
        template
            .replace("{t}", &self.cfg.table)
            .replace("{id}", &self.cfg.id_column)
            .replace("{data}", &self.cfg.data_column)
            .replace("{exp}", &self.cfg.expires_column)
    }

    fn check_db(db: Db) -> StoreResult<()> {
        if db == 0 {
            Ok(())
        } else {
            Err(StoreError::Other(
                "ERR a SQL store has only database 0".into(),
            ))
        }
    }

    fn cache_key(&self, id: &[u8]) -> Option<String> {
        let id = std::str::from_utf8(id).ok()?;
        let k = format!("{}{id}", self.cfg.memcached_prefix);
        // memcached keys: at most 250 bytes, no spaces or control characters.
        (k.len() <= 250 && k.bytes().all(|c| c > b' ' && c != 0x7f)).then_some(k)
    }

    async fn cache_get(&self, id: &[u8]) -> Option<Bytes> {
        let (c, k) = (self.cache.clone()?, self.cache_key(id)?);
        tokio::task::spawn_blocking(move || c.get::<Vec<u8>>(&k).ok().flatten())
            .await
            .ok()
            .flatten()
            .map(Bytes::from)
    }

    async fn cache_put(&self, id: &[u8], value: &[u8], expires: i64, now: UnixMs) {
        let (Some(c), Some(k)) = (self.cache.clone(), self.cache_key(id)) else {
            return;
        };
        // memcached expiry in whole seconds (0: never), rounded down so the cache never
        // outlives the row.
        let secs = if expires == 0 {
            0
        } else {
            ((expires - now) / 1000).max(0) as u32
        };
        if expires != 0 && secs == 0 {
            return;
        }
        let v = value.to_vec();
        let _ = tokio::task::spawn_blocking(move || c.set(&k, v.as_slice(), secs)).await;
    }

    async fn cache_drop(&self, id: &[u8]) {
        let (Some(c), Some(k)) = (self.cache.clone(), self.cache_key(id)) else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || c.delete(&k)).await;
    }

    /// The live row: value and expiry (0: none).
    async fn row(&self, id: &[u8], now: UnixMs) -> StoreResult<Option<(Bytes, i64)>> {
        let r = sqlx::query(
            &self.sql("SELECT {data}, {exp} FROM {t} WHERE {id} = ? AND ({exp} = 0 OR {exp} > ?)"),
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(match r {
            Some(r) => Some((
                Bytes::from(r.try_get::<Vec<u8>, _>(0).map_err(db_err)?),
                r.try_get::<i64, _>(1).map_err(db_err)?,
            )),
            None => None,
        })
    }

    async fn upsert(&self, id: &[u8], value: &[u8], expires: i64) -> StoreResult<()> {
        sqlx::query(&self.sql(
            "INSERT INTO {t} ({id}, {data}, {exp}) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE {data} = VALUES({data}), {exp} = VALUES({exp})",
        ))
        .bind(id)
        .bind(value)
        .bind(expires)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Keyset pagination for backfill: up to `n` live sessions after id `after`, as client
    /// keys with their values and expiry (0: none), with the last id seen and the number of
    /// rows read. One query per page, not per session.
    pub async fn page_after(
        &self,
        after: Option<&[u8]>,
        n: usize,
        now: UnixMs,
    ) -> StoreResult<(Vec<(Bytes, Bytes, i64)>, Option<Vec<u8>>, usize)> {
        let rows = sqlx::query(&self.sql(
            "SELECT {id}, {data}, {exp} FROM {t} WHERE {id} > ? AND ({exp} = 0 OR {exp} > ?) \
             ORDER BY {id} LIMIT ?",
        ))
        .bind(after.unwrap_or(b""))
        .bind(now)
        .bind(n as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut last = None;
        for r in &rows {
            let id: Vec<u8> = r.try_get(0).map_err(db_err)?;
            let data: Vec<u8> = r.try_get(1).map_err(db_err)?;
            let exp: i64 = r.try_get(2).map_err(db_err)?;
            if let Some(k) = self.keys.to_client(&id) {
                out.push((Bytes::from(k), Bytes::from(data), exp));
            }
            last = Some(id);
        }
        Ok((out, last, rows.len()))
    }

    /// Every live session id, in order (KEYS, DBSIZE, SCAN, backfill).
    async fn ids(&self, now: UnixMs) -> StoreResult<Vec<Vec<u8>>> {
        let rows = sqlx::query(
            &self.sql("SELECT {id} FROM {t} WHERE {exp} = 0 OR {exp} > ? ORDER BY {id}"),
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| r.try_get::<Vec<u8>, _>(0).map_err(db_err))
            .collect()
    }
}

fn expiry_of(ttl: TtlChange, current: Option<i64>) -> i64 {
    match ttl {
        TtlChange::At(t) => t,
        TtlChange::Clear => 0,
        TtlChange::Keep => current.unwrap_or(0),
    }
}

impl Store for SqlStore {
    // Sessions in files or rows: nothing better than the primitives, and no capabilities.
    crate::store::composite::by_primitives!();
    crate::store::composite::no_capabilities!();

    async fn get_with_ttl(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> StoreResult<Option<(Bytes, Ttl)>> {
        Self::check_db(db)?;
        let Some(id) = self.id(key) else {
            return Ok(None);
        };
        Ok(self
            .row(&id, now)
            .await?
            .map(|(v, e)| (v, if e == 0 { Ttl::Persistent } else { Ttl::At(e) })))
    }

    async fn get(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        Self::check_db(db)?;
        let Some(id) = self.id(key) else {
            return Ok(None);
        };
        if let Some(v) = self.cache_get(&id).await {
            return Ok(Some(v));
        }
        let row = self.row(&id, now).await?;
        if let Some((v, exp)) = &row {
            self.cache_put(&id, v, *exp, now).await;
        }
        Ok(row.map(|(v, _)| v))
    }

    async fn set(
        &self,
        db: Db,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
        now: UnixMs,
    ) -> StoreResult<SetOutcome> {
        Self::check_db(db)?;
        let Some(id) = self.id(key) else {
            return Err(StoreError::Other(
                "ERR key does not map to a session id".into(),
            ));
        };
        let current =
            if opts.get || opts.ttl == TtlChange::Keep || opts.condition == SetCondition::IfPresent
            {
                self.row(&id, now).await?
            } else {
                None
            };
        let previous = if opts.get {
            current.as_ref().map(|(v, _)| v.clone())
        } else {
            None
        };
        let expires = expiry_of(opts.ttl, current.as_ref().map(|(_, e)| *e));
        let written = match opts.condition {
            SetCondition::Always => {
                self.upsert(&id, value, expires).await?;
                true
            }
            SetCondition::IfAbsent => {
                // An expired row does not count as present: remove it, then insert if absent.
                sqlx::query(
                    &self.sql("DELETE FROM {t} WHERE {id} = ? AND {exp} <> 0 AND {exp} <= ?"),
                )
                .bind(&id)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
                let r = sqlx::query(
                    &self.sql("INSERT IGNORE INTO {t} ({id}, {data}, {exp}) VALUES (?, ?, ?)"),
                )
                .bind(&id)
                .bind(value)
                .bind(expires)
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
                r.rows_affected() == 1
            }
            SetCondition::IfPresent => {
                let r = sqlx::query(&self.sql(
                    "UPDATE {t} SET {data} = ?, {exp} = ? WHERE {id} = ? AND ({exp} = 0 OR {exp} > ?)",
                ))
                .bind(value)
                .bind(expires)
                .bind(&id)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
                // MySQL counts only changed rows; an identical rewrite still "wrote".
                r.rows_affected() == 1 || current.is_some()
            }
        };
        if written {
            if opts.condition == SetCondition::Always {
                self.cache_put(&id, value, expires, now).await;
            } else {
                self.cache_drop(&id).await;
            }
        }
        Ok(SetOutcome { written, previous })
    }

    async fn append(&self, db: Db, key: &[u8], value: &[u8], now: UnixMs) -> StoreResult<u64> {
        Self::check_db(db)?;
        let Some(id) = self.id(key) else {
            return Err(StoreError::Other(
                "ERR key does not map to a session id".into(),
            ));
        };
        let (mut v, exp) = match self.row(&id, now).await? {
            Some((v, e)) => (v.to_vec(), e),
            None => (Vec::new(), 0),
        };
        v.extend_from_slice(value);
        self.upsert(&id, &v, exp).await?;
        self.cache_drop(&id).await;
        Ok(v.len() as u64)
    }

    async fn incr_by(&self, db: Db, key: &[u8], delta: i64, now: UnixMs) -> StoreResult<i64> {
        Self::check_db(db)?;
        let Some(id) = self.id(key) else {
            return Err(StoreError::Other(
                "ERR key does not map to a session id".into(),
            ));
        };
        let (n, exp) = match self.row(&id, now).await? {
            Some((v, e)) => (
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(StoreError::NotInteger)?,
                e,
            ),
            None => (0, 0),
        };
        let n = n.checked_add(delta).ok_or(StoreError::Overflow)?;
        self.upsert(&id, n.to_string().as_bytes(), exp).await?;
        self.cache_drop(&id).await;
        Ok(n)
    }

    async fn del(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        Self::check_db(db)?;
        let mut n = 0;
        for k in keys {
            let Some(id) = self.id(k) else { continue };
            let r = sqlx::query(
                &self.sql("DELETE FROM {t} WHERE {id} = ? AND ({exp} = 0 OR {exp} > ?)"),
            )
            .bind(&id)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
            n += r.rows_affected();
            self.cache_drop(&id).await;
        }
        Ok(n)
    }

    async fn del_if_equal(
        &self,
        db: Db,
        key: &[u8],
        expected: &[u8],
        now: UnixMs,
    ) -> StoreResult<bool> {
        Self::check_db(db)?;
        let Some(id) = self.id(key) else {
            return Ok(false);
        };
        let r = sqlx::query(
            &self.sql("DELETE FROM {t} WHERE {id} = ? AND {data} = ? AND ({exp} = 0 OR {exp} > ?)"),
        )
        .bind(&id)
        .bind(expected)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        self.cache_drop(&id).await;
        Ok(r.rows_affected() == 1)
    }

    async fn exists(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        Self::check_db(db)?;
        let mut n = 0;
        for k in keys {
            if let Some(id) = self.id(k) {
                n += self.row(&id, now).await?.is_some() as u64;
            }
        }
        Ok(n)
    }

    async fn rename(
        &self,
        db: Db,
        src: &[u8],
        dst: &[u8],
        only_if_absent: bool,
        now: UnixMs,
    ) -> StoreResult<bool> {
        let (Some(sid), Some(did)) = (self.id(src), self.id(dst)) else {
            return Err(StoreError::NoSuchKey);
        };
        let Some((v, exp)) = self.row(&sid, now).await? else {
            return Err(StoreError::NoSuchKey);
        };
        if only_if_absent && self.row(&did, now).await?.is_some() {
            return Ok(false);
        }
        self.upsert(&did, &v, exp).await?;
        self.del(db, &[src], now).await?;
        self.cache_drop(&did).await;
        Ok(true)
    }

    async fn expire_at(
        &self,
        db: Db,
        key: &[u8],
        at: UnixMs,
        cond: ExpireCondition,
        now: UnixMs,
    ) -> StoreResult<bool> {
        Self::check_db(db)?;
        let Some(id) = self.id(key) else {
            return Ok(false);
        };
        let extra = match cond {
            ExpireCondition::Always => "",
            ExpireCondition::Nx => " AND {exp} = 0",
            ExpireCondition::Xx => " AND {exp} <> 0",
            ExpireCondition::Gt => " AND {exp} <> 0 AND {exp} < ?",
            ExpireCondition::Lt => " AND ({exp} = 0 OR {exp} > ?)",
        };
        let live = "{id} = ? AND ({exp} = 0 OR {exp} > ?)";
        let stmt = if at <= now {
            format!("DELETE FROM {{t}} WHERE {live}{extra}")
        } else {
            format!("UPDATE {{t}} SET {{exp}} = ? WHERE {live}{extra}")
        };
        let sql = self.sql(&stmt);
        let mut q = sqlx::query(&sql);
        if at > now {
            q = q.bind(at);
        }
        q = q.bind(&id).bind(now);
        if matches!(cond, ExpireCondition::Gt | ExpireCondition::Lt) {
            q = q.bind(at);
        }
        let done = q.execute(&self.pool).await.map_err(db_err)?.rows_affected() == 1
            || (at > now && self.row(&id, now).await?.is_some_and(|(_, e)| e == at));
        self.cache_drop(&id).await;
        Ok(done)
    }

    async fn persist(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<bool> {
        Self::check_db(db)?;
        let Some(id) = self.id(key) else {
            return Ok(false);
        };
        let r = sqlx::query(
            &self.sql("UPDATE {t} SET {exp} = 0 WHERE {id} = ? AND {exp} <> 0 AND {exp} > ?"),
        )
        .bind(&id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        self.cache_drop(&id).await;
        Ok(r.rows_affected() == 1)
    }

    async fn ttl(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Ttl> {
        Self::check_db(db)?;
        let Some(id) = self.id(key) else {
            return Ok(Ttl::Missing);
        };
        Ok(match self.row(&id, now).await? {
            None => Ttl::Missing,
            Some((_, 0)) => Ttl::Persistent,
            Some((_, e)) => Ttl::At(e),
        })
    }

    async fn scan(
        &self,
        db: Db,
        cursor: u64,
        filter: &ScanFilter,
        now: UnixMs,
    ) -> StoreResult<(u64, Vec<Bytes>)> {
        Self::check_db(db)?;
        // The cursor is a position in the ordered id list.
        let ids = self.ids(now).await?;
        let start = (cursor as usize).min(ids.len());
        let end = (start + filter.count.max(10)).min(ids.len());
        let keys = ids[start..end]
            .iter()
            .filter_map(|id| self.keys.to_client(id).map(Bytes::from))
            .filter(|k| {
                filter
                    .pattern
                    .as_ref()
                    .is_none_or(|p| crate::util::glob::glob_match(p, k, false))
            })
            .collect();
        Ok((if end == ids.len() { 0 } else { end as u64 }, keys))
    }

    async fn keys(&self, db: Db, pattern: &[u8], now: UnixMs) -> StoreResult<Vec<Bytes>> {
        Self::check_db(db)?;
        Ok(self
            .ids(now)
            .await?
            .iter()
            .filter_map(|id| self.keys.to_client(id).map(Bytes::from))
            .filter(|k| crate::util::glob::glob_match(pattern, k, false))
            .collect())
    }

    async fn random_key(&self, db: Db, now: UnixMs) -> StoreResult<Option<Bytes>> {
        let all = self.keys(db, b"*", now).await?;
        Ok((!all.is_empty()).then(|| all[fastrand::usize(..all.len())].clone()))
    }

    async fn dbsize(&self, db: Db) -> StoreResult<u64> {
        Self::check_db(db)?;
        let r = sqlx::query(&self.sql("SELECT COUNT(*) FROM {t} WHERE {exp} = 0 OR {exp} > ?"))
            .bind(crate::clock::now_ms())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(r.try_get::<i64, _>(0).map_err(db_err)? as u64)
    }

    async fn flush_db(&self, db: Db) -> StoreResult<()> {
        Self::check_db(db)?;
        self.flush_all().await
    }

    async fn flush_all(&self) -> StoreResult<()> {
        sqlx::query(&self.sql("DELETE FROM {t}"))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        if let Some(c) = self.cache.clone() {
            let _ = tokio::task::spawn_blocking(move || c.flush()).await;
        }
        Ok(())
    }

    async fn swap_db(&self, _a: Db, _b: Db) -> StoreResult<()> {
        Err(StoreError::Other(
            "ERR a SQL store has only database 0".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters() {
        let c = SqlConfig::parse(
            "mysql://u:p@127.0.0.1:3306/app?table=php_sessions&memcached=127.0.0.1:11211&ssl-mode=disabled",
        )
        .unwrap();
        assert_eq!(c.table, "php_sessions");
        assert_eq!(c.memcached.as_deref(), Some("127.0.0.1:11211"));
        assert_eq!(c.url, "mysql://u:p@127.0.0.1:3306/app?ssl-mode=disabled");
        assert!(SqlConfig::parse("mysql://h/db?table=x;DROP").is_err());
        assert!(SqlConfig::parse("mysql://h/db?data_column=a%20b").is_err());
    }
}
