//! `Store` over a Redis upstream: the semantic operations the migration router (and, in a
//! cluster, the gateway's split-and-merge of multi-key and keyspace commands) call, each one
//! or a few Redis commands routed like the forwarded ones.

use bytes::Bytes;

use super::Upstream;
use crate::resp::value::Value;
use crate::store::{
    Db, ExpireCondition, KeyType, ScanFilter, SetCondition, SetOptions, SetOutcome, Store,
    StoreError, StoreResult, Ttl, TtlChange, UnixMs,
};

fn unexpected(v: &Value) -> StoreError {
    StoreError::Other(format!("ERR unexpected reply from upstream: {v:?}"))
}

fn bulk(v: Value) -> StoreResult<Option<Bytes>> {
    match v {
        Value::Bulk(b) => Ok(Some(b)),
        Value::Nil => Ok(None),
        v => Err(unexpected(&v)),
    }
}

pub(super) fn int(v: Value) -> StoreResult<i64> {
    match v {
        Value::Int(i) => Ok(i),
        v => Err(unexpected(&v)),
    }
}

fn upstream_error(e: StoreError) -> StoreError {
    match e {
        StoreError::Other(m) if m.starts_with("ERR value is not an integer") => {
            StoreError::NotInteger
        }
        StoreError::Other(m) if m.starts_with("ERR increment or decrement would overflow") => {
            StoreError::Overflow
        }
        StoreError::Other(m) if m == "ERR no such key" => StoreError::NoSuchKey,
        StoreError::Other(m) if m.starts_with("OOM ") => StoreError::OutOfMemory,
        e => e,
    }
}

/// The session-lock release that phpredis and others send as a script.
const DEL_IF_EQUAL: &[u8] =
    b"if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end";

impl Store for Upstream {
    async fn get(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<Option<Bytes>> {
        bulk(self.call(db, &[b"GET", key], true).await?)
    }

    async fn get_ex(
        &self,
        db: Db,
        key: &[u8],
        ttl: TtlChange,
        _now: UnixMs,
    ) -> StoreResult<Option<Bytes>> {
        let v = match ttl {
            TtlChange::Keep => self.call(db, &[b"GETEX", key], false).await?,
            TtlChange::Clear => self.call(db, &[b"GETEX", key, b"PERSIST"], false).await?,
            TtlChange::At(ms) => {
                let ms = ms.to_string();
                self.call(db, &[b"GETEX", key, b"PXAT", ms.as_bytes()], false)
                    .await?
            }
        };
        bulk(v)
    }

    async fn get_del(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<Option<Bytes>> {
        bulk(self.call(db, &[b"GETDEL", key], false).await?)
    }

    async fn mget(&self, db: Db, keys: &[&[u8]], _now: UnixMs) -> StoreResult<Vec<Option<Bytes>>> {
        let mut out = vec![None; keys.len()];
        let groups = self.split(db, b"MGET", keys).await?;
        for (idx, v) in groups {
            let Value::Array(items) = v else {
                return Err(unexpected(&v));
            };
            for (i, item) in idx.into_iter().zip(items) {
                out[i] = bulk(item)?;
            }
        }
        Ok(out)
    }

    async fn set(
        &self,
        db: Db,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
        _now: UnixMs,
    ) -> StoreResult<SetOutcome> {
        let ms;
        let mut args: Vec<&[u8]> = vec![b"SET", key, value];
        match opts.condition {
            SetCondition::Always => {}
            SetCondition::IfAbsent => args.push(b"NX"),
            SetCondition::IfPresent => args.push(b"XX"),
        }
        match opts.ttl {
            TtlChange::Clear => {}
            TtlChange::Keep => args.push(b"KEEPTTL"),
            TtlChange::At(t) => {
                ms = t.to_string();
                args.push(b"PXAT");
                args.push(ms.as_bytes());
            }
        }
        if opts.get {
            args.push(b"GET");
        }
        let v = self.call(db, &args, false).await.map_err(upstream_error)?;
        if opts.get {
            let previous = bulk(v)?;
            let written = match opts.condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => previous.is_none(),
                SetCondition::IfPresent => previous.is_some(),
            };
            return Ok(SetOutcome { written, previous });
        }
        Ok(SetOutcome {
            written: !matches!(v, Value::Nil),
            previous: None,
        })
    }

    async fn mset(
        &self,
        db: Db,
        pairs: &[(&[u8], &[u8])],
        only_if_none_exist: bool,
        _now: UnixMs,
    ) -> StoreResult<bool> {
        let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| *k).collect();
        if only_if_none_exist && self.by_slot(&keys).len() > 1 {
            // All-or-nothing across nodes cannot be had; Redis Cluster refuses it too.
            return Err(StoreError::Other(
                "CROSSSLOT Keys in request don't hash to the same slot".into(),
            ));
        }
        let cmd: &[u8] = if only_if_none_exist {
            b"MSETNX"
        } else {
            b"MSET"
        };
        let mut groups = Vec::new();
        for (node, idx) in self.by_slot(&keys) {
            // Pairs in their original order, so the last of a repeated key wins.
            let mut args = vec![cmd];
            for i in idx {
                args.push(pairs[i].0);
                args.push(pairs[i].1);
            }
            groups.push(
                self.call_node(&node, db, &args)
                    .await
                    .map_err(upstream_error)?,
            );
        }
        Ok(groups.iter().all(|v| !matches!(v, Value::Int(0))))
    }

    async fn append(&self, db: Db, key: &[u8], value: &[u8], _now: UnixMs) -> StoreResult<u64> {
        let v = self.call(db, &[b"APPEND", key, value], false).await;
        Ok(int(v.map_err(upstream_error)?)? as u64)
    }

    async fn strlen(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<u64> {
        Ok(int(self.call(db, &[b"STRLEN", key], true).await?)? as u64)
    }

    async fn incr_by(&self, db: Db, key: &[u8], delta: i64, _now: UnixMs) -> StoreResult<i64> {
        let d = delta.to_string();
        let v = self.call(db, &[b"INCRBY", key, d.as_bytes()], false).await;
        int(v.map_err(upstream_error)?)
    }

    async fn del(&self, db: Db, keys: &[&[u8]], _now: UnixMs) -> StoreResult<u64> {
        self.count(db, b"DEL", keys).await
    }

    async fn del_if_equal(
        &self,
        db: Db,
        key: &[u8],
        expected: &[u8],
        _now: UnixMs,
    ) -> StoreResult<bool> {
        let v = self
            .call(db, &[b"EVAL", DEL_IF_EQUAL, b"1", key, expected], false)
            .await?;
        Ok(int(v)? == 1)
    }

    async fn exists(&self, db: Db, keys: &[&[u8]], _now: UnixMs) -> StoreResult<u64> {
        self.count(db, b"EXISTS", keys).await
    }

    async fn key_type(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<Option<KeyType>> {
        match self.call(db, &[b"TYPE", key], true).await? {
            Value::Simple(t) if t == "none" => Ok(None),
            Value::Simple(t) if t == "string" => Ok(Some(KeyType::String)),
            Value::Simple(t) => Ok(Some(KeyType::Other(t))),
            v => Err(unexpected(&v)),
        }
    }

    async fn rename(
        &self,
        db: Db,
        src: &[u8],
        dst: &[u8],
        only_if_absent: bool,
        _now: UnixMs,
    ) -> StoreResult<bool> {
        let cmd: &[u8] = if only_if_absent {
            b"RENAMENX"
        } else {
            b"RENAME"
        };
        match self
            .call(db, &[cmd, src, dst], false)
            .await
            .map_err(upstream_error)?
        {
            Value::Int(n) => Ok(n == 1),
            _ => Ok(true),
        }
    }

    async fn expire_at(
        &self,
        db: Db,
        key: &[u8],
        at: UnixMs,
        cond: ExpireCondition,
        _now: UnixMs,
    ) -> StoreResult<bool> {
        let at = at.to_string();
        let mut args: Vec<&[u8]> = vec![b"PEXPIREAT", key, at.as_bytes()];
        match cond {
            ExpireCondition::Always => {}
            ExpireCondition::Nx => args.push(b"NX"),
            ExpireCondition::Xx => args.push(b"XX"),
            ExpireCondition::Gt => args.push(b"GT"),
            ExpireCondition::Lt => args.push(b"LT"),
        }
        Ok(int(self.call(db, &args, false).await?)? == 1)
    }

    async fn persist(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<bool> {
        Ok(int(self.call(db, &[b"PERSIST", key], false).await?)? == 1)
    }

    async fn ttl(&self, db: Db, key: &[u8], _now: UnixMs) -> StoreResult<Ttl> {
        Ok(
            match int(self.call(db, &[b"PEXPIRETIME", key], true).await?)? {
                -2 => Ttl::Missing,
                -1 => Ttl::Persistent,
                at => Ttl::At(at),
            },
        )
    }

    async fn scan(
        &self,
        db: Db,
        cursor: u64,
        filter: &ScanFilter,
        _now: UnixMs,
    ) -> StoreResult<(u64, Vec<Bytes>)> {
        // In a cluster the cursor carries the node: its index in the top 16 bits, that
        // node's own cursor below (Redis's cursors stay far below 2^48).
        let primaries = self.primaries();
        let (mut node_i, mut c) = ((cursor >> 48) as usize, cursor & ((1 << 48) - 1));
        if node_i >= primaries.len() {
            return Err(StoreError::Other("ERR invalid cursor".into()));
        }
        let count = filter.count.max(1).to_string();
        loop {
            let cs = c.to_string();
            let mut args: Vec<&[u8]> = vec![b"SCAN", cs.as_bytes(), b"COUNT", count.as_bytes()];
            if let Some(p) = &filter.pattern {
                args.push(b"MATCH");
                args.push(p);
            }
            if let Some(t) = &filter.key_type {
                args.push(b"TYPE");
                args.push(t);
            }
            let (next, keys) = match self.call_node(&primaries[node_i], db, &args).await? {
                Value::Array(mut items) if items.len() == 2 => {
                    let keys: Vec<Bytes> = match items.pop() {
                        Some(Value::Array(k)) => k
                            .into_iter()
                            .filter_map(|k| bulk(k).ok().flatten())
                            .collect(),
                        _ => Vec::new(),
                    };
                    (items.pop().and_then(|c| c.int()).unwrap_or(0) as u64, keys)
                }
                v => return Err(unexpected(&v)),
            };
            if next != 0 {
                return Ok((((node_i as u64) << 48) | next, keys));
            }
            node_i += 1;
            c = 0;
            if node_i == primaries.len() {
                return Ok((0, keys));
            }
            if !keys.is_empty() {
                return Ok(((node_i as u64) << 48, keys));
            }
        }
    }

    async fn keys(&self, db: Db, pattern: &[u8], _now: UnixMs) -> StoreResult<Vec<Bytes>> {
        let mut out = Vec::new();
        for n in self.primaries() {
            match self.call_node(&n, db, &[b"KEYS", pattern]).await? {
                Value::Array(items) => {
                    out.extend(items.into_iter().filter_map(|k| bulk(k).ok().flatten()))
                }
                v => return Err(unexpected(&v)),
            }
        }
        Ok(out)
    }

    async fn random_key(&self, db: Db, _now: UnixMs) -> StoreResult<Option<Bytes>> {
        let nodes = self.primaries();
        let start = fastrand::usize(..nodes.len());
        for i in 0..nodes.len() {
            let n = &nodes[(start + i) % nodes.len()];
            if let Some(k) = bulk(self.call_node(n, db, &[b"RANDOMKEY"]).await?)? {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    async fn dbsize(&self, db: Db) -> StoreResult<u64> {
        let mut total = 0;
        for n in self.primaries() {
            total += int(self.call_node(&n, db, &[b"DBSIZE"]).await?)? as u64;
        }
        Ok(total)
    }

    async fn flush_db(&self, db: Db) -> StoreResult<()> {
        for n in self.primaries() {
            self.call_node(&n, db, &[b"FLUSHDB"]).await?;
        }
        Ok(())
    }

    async fn flush_all(&self) -> StoreResult<()> {
        for n in self.primaries() {
            self.call_node(&n, 0, &[b"FLUSHALL"]).await?;
        }
        Ok(())
    }

    async fn swap_db(&self, a: Db, b: Db) -> StoreResult<()> {
        if self.is_cluster() {
            return Err(StoreError::Other(
                "ERR SWAPDB is not allowed in cluster mode".into(),
            ));
        }
        let (a, b) = (a.to_string(), b.to_string());
        self.call(0, &[b"SWAPDB", a.as_bytes(), b.as_bytes()], false)
            .await
            .map(|_| ())
    }

    fn databases(&self) -> usize {
        self.opts.databases
    }

    async fn get_with_ttl(
        &self,
        db: Db,
        key: &[u8],
        now: UnixMs,
    ) -> StoreResult<Option<(Bytes, crate::store::Ttl)>> {
        crate::store::composite::get_with_ttl(self, db, key, now).await
    }

    /// Memory and eviction are Redis's own (its INFO and CONFIG), not counted here.
    fn stats(&self, _now: UnixMs) -> crate::store::StoreStats {
        crate::store::StoreStats::unaccounted()
    }

    fn set_maxmemory(&self, _bytes: u64) {}

    fn set_maxmemory_policy(&self, _policy: &str) -> bool {
        false
    }

    fn latency(&self) -> Option<crate::metrics::histogram::Latency> {
        None
    }

    fn info_sections(&self) -> Vec<(&'static str, String)> {
        vec![("upstream", self.info())]
    }
}

impl crate::deployment::Deployment for Upstream {
    fn gateway(&self) -> Option<&Upstream> {
        Some(self)
    }

    fn engine(&self) -> Option<&crate::engine::Engine> {
        None
    }

    fn migration(&self) -> Option<&dyn crate::deployment::MigrationControl> {
        None
    }
}
