//! PHP session files as a store (the second seed's old store): a directory of `sess_<id>`
//! files as PHP's `files` save handler writes them.
//!
//! * **Keys.** A client key maps to a session id through the [`KeyMap`] (by default
//!   `PHPREDIS_SESSION:<id>`), and the id to the file `sess_<id>`. Ids are checked against
//!   PHP's own alphabet (`[A-Za-z0-9,-]`, plus `_` for lock keys), so no key can name a file
//!   outside the directory.
//! * **Values** are the file's bytes: PHP's serialized session, the same bytes phpredis
//!   stores with the same `serialize_handler`.
//! * **Expiry** is PHP's: a session is gone once `mtime + gc_maxlifetime` has passed. An
//!   absolute expiry time is stored the same way, as `mtime = expiry − gc_maxlifetime`, so PHP's
//!   garbage collector and this store agree on every session's end. A session without a TTL
//!   gets `mtime = now`, as PHP gives every session it writes.
//! * **Writes** go to a temporary file renamed over the session (readers never see half a
//!   session); a conditional create (`SET NX`, a lock) uses `O_EXCL`.
//!
//! File operations run on tokio's blocking pool (`tokio::fs`), never on a worker thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::keymap::KeyMap;
use crate::store::{
    Db, ExpireCondition, ScanFilter, SetCondition, SetOptions, SetOutcome, Store, StoreError,
    StoreResult, Ttl, TtlChange, UnixMs,
};

pub struct FilesStore {
    dir: PathBuf,
    keys: KeyMap,
    /// PHP's `session.gc_maxlifetime`, in seconds.
    gc_maxlifetime: i64,
    /// The listing a SCAN walks: taken at cursor 0 and reused by the calls that continue
    /// it, so a walk over a million files lists the directory once, not once per page.
    listing: std::sync::Mutex<Option<std::sync::Arc<Vec<Bytes>>>>,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Other(format!("ERR session files: {e}"))
}

fn mtime_ms(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// The longest session id with a file: NAME_MAX (255) less the `sess_` prefix.
const MAX_ID_LEN: usize = 255 - "sess_".len();

impl FilesStore {
    pub fn new(dir: PathBuf, keys: KeyMap, gc_maxlifetime: i64) -> FilesStore {
        FilesStore {
            dir,
            keys,
            gc_maxlifetime: gc_maxlifetime.max(1),
            listing: std::sync::Mutex::new(None),
        }
    }

    /// The file for a client key, if the key maps to a session id PHP could have made.
    fn path(&self, key: &[u8]) -> Option<PathBuf> {
        let legacy = self.keys.to_legacy(key)?;
        // `sess_` + id must fit one file name (255 bytes on Linux filesystems); a longer id
        // gets the same clear error as any id PHP could not have made.
        let ok = !legacy.is_empty()
            && legacy.len() <= MAX_ID_LEN
            && legacy
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b',' | b'-' | b'_'));
        if !ok {
            return None;
        }
        let mut name = b"sess_".to_vec();
        name.extend_from_slice(&legacy);
        Some(self.dir.join(String::from_utf8(name).ok()?))
    }

    fn expiry(&self, m: &std::fs::Metadata) -> i64 {
        mtime_ms(m) + self.gc_maxlifetime * 1000
    }

    /// The live file's metadata: `None` if missing or expired.
    async fn live(&self, path: &Path, now: UnixMs) -> StoreResult<Option<std::fs::Metadata>> {
        match tokio::fs::metadata(path).await {
            Ok(m) if self.expiry(&m) > now => Ok(Some(m)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn read(&self, key: &[u8], now: UnixMs) -> StoreResult<Option<(Bytes, i64)>> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        // One trip to the blocking pool for both the expiry and the bytes: the hand-offs,
        // not the file system, are what a bulk read of many small files costs.
        let ttl_ms = self.gc_maxlifetime * 1000;
        let r = tokio::task::spawn_blocking(move || -> std::io::Result<Option<(Vec<u8>, i64)>> {
            use std::io::Read;
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let expiry = mtime_ms(&f.metadata()?) + ttl_ms;
            if expiry <= now {
                return Ok(None);
            }
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            Ok(Some((v, expiry)))
        })
        .await
        .map_err(|e| StoreError::Other(format!("ERR session files: {e}")))?;
        Ok(r.map_err(io)?.map(|(v, e)| (Bytes::from(v), e)))
    }

    /// Many sessions read in one trip to the blocking pool (backfill and verify walk pages
    /// of a thousand): value and expiry of each live one.
    pub async fn read_many(
        &self,
        keys: Vec<Bytes>,
        now: UnixMs,
    ) -> StoreResult<Vec<(Bytes, Option<(Bytes, i64)>)>> {
        let paths: Vec<Option<PathBuf>> = keys.iter().map(|k| self.path(k)).collect();
        let ttl_ms = self.gc_maxlifetime * 1000;
        let read = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|p| {
                    let path = p?;
                    let m = std::fs::metadata(&path).ok()?;
                    let expiry = mtime_ms(&m) + ttl_ms;
                    if expiry <= now {
                        return None;
                    }
                    std::fs::read(&path).ok().map(|v| (Bytes::from(v), expiry))
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Other(format!("ERR session files: {e}")))?;
        Ok(keys.into_iter().zip(read).collect())
    }

    /// The mtime that encodes an expiry time.
    fn mtime_for(&self, expiry: Option<i64>, now: UnixMs) -> i64 {
        match expiry {
            Some(e) => e - self.gc_maxlifetime * 1000,
            None => now,
        }
    }

    async fn write(
        &self,
        path: &Path,
        value: &[u8],
        mtime: i64,
        exclusive: bool,
    ) -> StoreResult<bool> {
        let path = path.to_path_buf();
        let value = value.to_vec();
        let r = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            use std::io::Write;
            if exclusive {
                let mut f = match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                    Err(e) => return Err(e),
                };
                f.write_all(&value)?;
                f.set_modified(at(mtime))?;
                return Ok(true);
            }
            // Named apart from the session (PHP's garbage collector and our listing only
            // look at `sess_*`), and short, so that the longest id still fits NAME_MAX.
            let tmp = path.with_file_name(format!(".sessiond-tmp-{:016x}", fastrand::u64(..)));
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&value)?;
            f.set_modified(at(mtime))?;
            drop(f);
            std::fs::rename(&tmp, &path).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })?;
            Ok(true)
        })
        .await
        .map_err(|e| StoreError::Other(format!("ERR session files: {e}")))?;
        r.map_err(io)
    }

    async fn touch(&self, path: &Path, mtime: i64) -> StoreResult<()> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(at(mtime)))
        })
        .await
        .map_err(|e| StoreError::Other(format!("ERR session files: {e}")))?
        .map_err(io)
    }

    async fn remove(&self, path: &Path) -> StoreResult<bool> {
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(e)),
        }
    }

    fn check_db(db: Db) -> StoreResult<()> {
        if db == 0 {
            Ok(())
        } else {
            Err(StoreError::Other(
                "ERR session files have only database 0".into(),
            ))
        }
    }

    /// Every live session's client key, sorted (SCAN, KEYS, DBSIZE, backfill).
    async fn list(&self, now: UnixMs) -> StoreResult<Vec<Bytes>> {
        let mut out = Vec::new();
        let mut rd = tokio::fs::read_dir(&self.dir).await.map_err(io)?;
        while let Some(e) = rd.next_entry().await.map_err(io)? {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_prefix("sess_")) else {
                continue;
            };
            if id.contains(".tmp") {
                continue;
            }
            let Ok(m) = e.metadata().await else { continue };
            if self.expiry(&m) <= now {
                continue;
            }
            if let Some(k) = self.keys.to_client(id.as_bytes()) {
                out.push(Bytes::from(k));
            }
        }
        out.sort();
        Ok(out)
    }
}

impl Store for FilesStore {
    // Sessions in files or rows: nothing better than the primitives, and no capabilities.
    crate::store::composite::by_primitives!();
    crate::store::composite::no_capabilities!();

    async fn get(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Option<Bytes>> {
        Self::check_db(db)?;
        Ok(self.read(key, now).await?.map(|(v, _)| v))
    }

    async fn get_with_ttl(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> StoreResult<Option<(Bytes, Ttl)>> {
        Self::check_db(db)?;
        Ok(self.read(key, now).await?.map(|(v, e)| (v, Ttl::At(e))))
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
        let Some(path) = self.path(key) else {
            return Err(StoreError::Other(
                "ERR key does not map to a PHP session file name".into(),
            ));
        };
        let current = self.read(key, now).await?;
        let previous = if opts.get {
            current.as_ref().map(|(v, _)| v.clone())
        } else {
            None
        };
        let allowed = match opts.condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => current.is_none(),
            SetCondition::IfPresent => current.is_some(),
        };
        if !allowed {
            return Ok(SetOutcome {
                written: false,
                previous,
            });
        }
        let expiry = match opts.ttl {
            TtlChange::At(t) => Some(t),
            TtlChange::Clear => None,
            TtlChange::Keep => current.as_ref().map(|(_, e)| *e),
        };
        let mtime = self.mtime_for(expiry, now);
        let written = if opts.condition == SetCondition::IfAbsent {
            // An expired file may still be there: it does not count, so remove it first.
            if tokio::fs::metadata(&path).await.is_ok() && current.is_none() {
                self.remove(&path).await?;
            }
            self.write(&path, value, mtime, true).await?
        } else {
            self.write(&path, value, mtime, false).await?
        };
        Ok(SetOutcome { written, previous })
    }

    async fn append(&self, db: Db, key: &[u8], value: &[u8], now: UnixMs) -> StoreResult<u64> {
        let (mut v, e) = match self.read(key, now).await? {
            Some((v, e)) => (v.to_vec(), Some(e)),
            None => (Vec::new(), None),
        };
        v.extend_from_slice(value);
        let ttl = e.map_or(TtlChange::Clear, TtlChange::At);
        let opts = SetOptions {
            ttl,
            ..SetOptions::plain()
        };
        self.set(db, key, &v, opts, now).await?;
        Ok(v.len() as u64)
    }

    async fn incr_by(&self, db: Db, key: &[u8], delta: i64, now: UnixMs) -> StoreResult<i64> {
        let (n, e) = match self.read(key, now).await? {
            Some((v, e)) => (
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(StoreError::NotInteger)?,
                Some(e),
            ),
            None => (0, None),
        };
        let n = n.checked_add(delta).ok_or(StoreError::Overflow)?;
        let opts = SetOptions {
            ttl: e.map_or(TtlChange::Clear, TtlChange::At),
            ..SetOptions::plain()
        };
        self.set(db, key, n.to_string().as_bytes(), opts, now)
            .await?;
        Ok(n)
    }

    async fn del(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        Self::check_db(db)?;
        let mut n = 0;
        for k in keys {
            if let Some(path) = self.path(k) {
                let live = self.live(&path, now).await?.is_some();
                if self.remove(&path).await? && live {
                    n += 1;
                }
            }
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
        // Not atomic across processes: PHP's own files handler locks with flock, which this
        // store does not take. Good enough for releasing a lock this client holds.
        match self.get(db, key, now).await? {
            Some(v) if v.as_ref() == expected => Ok(self.del(db, &[key], now).await? == 1),
            _ => Ok(false),
        }
    }

    async fn exists(&self, db: Db, keys: &[&[u8]], now: UnixMs) -> StoreResult<u64> {
        Self::check_db(db)?;
        let mut n = 0;
        for k in keys {
            if let Some(p) = self.path(k) {
                n += self.live(&p, now).await?.is_some() as u64;
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
        let Some((v, e)) = self.read(src, now).await? else {
            return Err(StoreError::NoSuchKey);
        };
        if only_if_absent && self.read(dst, now).await?.is_some() {
            return Ok(false);
        }
        let opts = SetOptions {
            ttl: TtlChange::At(e),
            ..SetOptions::plain()
        };
        self.set(db, dst, &v, opts, now).await?;
        self.del(db, &[src], now).await?;
        Ok(true)
    }

    async fn expire_at(
        &self,
        db: Db,
        key: &[u8],
        t: UnixMs,
        cond: ExpireCondition,
        now: UnixMs,
    ) -> StoreResult<bool> {
        Self::check_db(db)?;
        let Some(path) = self.path(key) else {
            return Ok(false);
        };
        let Some(m) = self.live(&path, now).await? else {
            return Ok(false);
        };
        let current = self.expiry(&m);
        let ok = match cond {
            // Every PHP session has an expiry: NX never applies, XX always does.
            ExpireCondition::Always | ExpireCondition::Xx => true,
            ExpireCondition::Nx => false,
            ExpireCondition::Gt => t > current,
            ExpireCondition::Lt => t < current,
        };
        if !ok {
            return Ok(false);
        }
        if t <= now {
            self.remove(&path).await?;
        } else {
            self.touch(&path, self.mtime_for(Some(t), now)).await?;
        }
        Ok(true)
    }

    async fn persist(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<bool> {
        // A PHP session cannot live forever; the nearest thing is "just written".
        Self::check_db(db)?;
        let Some(path) = self.path(key) else {
            return Ok(false);
        };
        if self.live(&path, now).await?.is_none() {
            return Ok(false);
        }
        self.touch(&path, now).await?;
        Ok(true)
    }

    async fn ttl(&self, db: Db, key: &[u8], now: UnixMs) -> StoreResult<Ttl> {
        Self::check_db(db)?;
        let Some(path) = self.path(key) else {
            return Ok(Ttl::Missing);
        };
        Ok(match self.live(&path, now).await? {
            Some(m) => Ttl::At(self.expiry(&m)),
            None => Ttl::Missing,
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
        // The cursor is a position in the sorted listing taken when the walk began (cursor
        // 0): sessions created during the walk may be missed, as with Redis's SCAN.
        let cached = if cursor == 0 {
            None
        } else {
            self.listing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        let all = match cached {
            Some(l) => l,
            None => {
                let l = std::sync::Arc::new(self.list(now).await?);
                *self.listing.lock().unwrap_or_else(|p| p.into_inner()) = Some(l.clone());
                l
            }
        };
        let start = (cursor as usize).min(all.len());
        let end = (start + filter.count.max(10)).min(all.len());
        let keys = all[start..end]
            .iter()
            .filter(|k| {
                filter
                    .pattern
                    .as_ref()
                    .is_none_or(|p| crate::util::glob::glob_match(p, k, false))
            })
            .cloned()
            .collect();
        Ok((if end == all.len() { 0 } else { end as u64 }, keys))
    }

    async fn keys(&self, db: Db, pattern: &[u8], now: UnixMs) -> StoreResult<Vec<Bytes>> {
        Self::check_db(db)?;
        Ok(self
            .list(now)
            .await?
            .into_iter()
            .filter(|k| crate::util::glob::glob_match(pattern, k, false))
            .collect())
    }

    async fn random_key(&self, db: Db, now: UnixMs) -> StoreResult<Option<Bytes>> {
        Self::check_db(db)?;
        let all = self.list(now).await?;
        Ok((!all.is_empty()).then(|| all[fastrand::usize(..all.len())].clone()))
    }

    async fn dbsize(&self, db: Db) -> StoreResult<u64> {
        Self::check_db(db)?;
        Ok(self.list(crate::clock::now_ms()).await?.len() as u64)
    }

    async fn flush_db(&self, db: Db) -> StoreResult<()> {
        Self::check_db(db)?;
        self.flush_all().await
    }

    async fn flush_all(&self) -> StoreResult<()> {
        let mut rd = tokio::fs::read_dir(&self.dir).await.map_err(io)?;
        while let Some(e) = rd.next_entry().await.map_err(io)? {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("sess_"))
            {
                self.remove(&e.path()).await?;
            }
        }
        Ok(())
    }

    async fn swap_db(&self, _a: Db, _b: Db) -> StoreResult<()> {
        Err(StoreError::Other(
            "ERR session files have only database 0".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(tag: &str) -> (FilesStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("sessiond-files-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (FilesStore::new(dir.clone(), KeyMap::default(), 1440), dir)
    }

    #[tokio::test]
    async fn php_files_round_trip_with_php_expiry() {
        let (s, dir) = store("rt");
        let now = crate::clock::now_ms();
        let k = b"PHPREDIS_SESSION:abc123";
        let opts = SetOptions {
            ttl: TtlChange::At(now + 600_000),
            ..SetOptions::plain()
        };
        s.set(0, k, b"user|s:5:\"alice\";", opts, now)
            .await
            .unwrap();
        // The file PHP would write, with the mtime PHP's GC reads as "600 s left".
        let f = dir.join("sess_abc123");
        assert_eq!(std::fs::read(&f).unwrap(), b"user|s:5:\"alice\";");
        let m = mtime_ms(&std::fs::metadata(&f).unwrap());
        assert!((m + 1_440_000 - (now + 600_000)).abs() < 1000);
        assert_eq!(s.ttl(0, k, now).await.unwrap(), Ttl::At(m + 1_440_000));
        assert_eq!(
            s.keys(0, b"*", now).await.unwrap(),
            vec![Bytes::from_static(k)]
        );
        // Past its expiry it is gone, as for PHP.
        assert_eq!(s.get(0, k, now + 700_000).await.unwrap(), None);
        // Locks: exclusive create.
        let lock = b"PHPREDIS_SESSION:abc123_LOCK";
        let nx = SetOptions {
            condition: SetCondition::IfAbsent,
            ttl: TtlChange::At(now + 5000),
            get: false,
        };
        assert!(s.set(0, lock, b"me", nx, now).await.unwrap().written);
        assert!(!s.set(0, lock, b"you", nx, now).await.unwrap().written);
        assert!(s.del_if_equal(0, lock, b"me", now).await.unwrap());
        // Keys that are not PHP session names never touch the file system.
        assert_eq!(
            s.get(0, b"PHPREDIS_SESSION:../../etc/passwd", now)
                .await
                .unwrap(),
            None
        );
        assert!(s
            .set(0, b"other:x", b"v", SetOptions::plain(), now)
            .await
            .is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The longest id a file name can hold is stored; one byte more gets the clear error of
    /// an unmappable id, not the OS's "File name too long".
    #[tokio::test]
    async fn ids_up_to_the_file_name_limit_and_no_further() {
        let (s, dir) = store("long");
        let now = crate::clock::now_ms();
        let longest = format!("PHPREDIS_SESSION:{}", "a".repeat(MAX_ID_LEN));
        s.set(0, longest.as_bytes(), b"v", SetOptions::plain(), now)
            .await
            .unwrap();
        assert_eq!(
            s.get(0, longest.as_bytes(), now).await.unwrap().as_deref(),
            Some(&b"v"[..])
        );
        let too_long = format!("PHPREDIS_SESSION:{}", "a".repeat(MAX_ID_LEN + 1));
        let e = s
            .set(0, too_long.as_bytes(), b"v", SetOptions::plain(), now)
            .await
            .unwrap_err();
        assert_eq!(
            e.message(),
            "ERR key does not map to a PHP session file name"
        );
        assert_eq!(s.get(0, too_long.as_bytes(), now).await.unwrap(), None);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
