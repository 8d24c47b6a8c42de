//! One command or a pipeline sent for a `Store` method or a forwarded client command:
//! routed by key, retried when only a read was lost, redirected when a cluster says
//! `-MOVED`/`-ASK`, and split by node for multi-key commands.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::conn::{encode, MAX_REPLY_BULK};
use super::node::Node;
use super::{cluster, forward, store, Upstream};
use crate::resp::value::{decode, FrameScanner, Value};
use crate::store::{Db, StoreError, StoreResult};

/// Whether a failed attempt may be tried again (the request surely did not run, or only
/// read).
enum Retry {
    Lost(String),
    No(String),
}

impl Upstream {
    /// Sends one command for a `Store` method, routed by its first argument, and decodes
    /// its reply. Reads whose connection failed are retried, re-routed (to a replica if the
    /// primary is down and the policy allows); cluster redirections are followed.
    pub(super) async fn call(&self, db: Db, args: &[&[u8]], read_only: bool) -> StoreResult<Value> {
        self.call_key(db, args.get(1).copied(), args, read_only)
            .await
    }

    async fn call_key(
        &self,
        db: Db,
        key: Option<&[u8]>,
        args: &[&[u8]],
        read_only: bool,
    ) -> StoreResult<Value> {
        let mut req = BytesMut::new();
        encode(&mut req, args);
        let req = req.freeze();
        let attempts = if read_only { 3 } else { 1 };
        // Built only when every attempt failed: a String per call was a tenth of the
        // router's allocations.
        let mut last = None;
        for _ in 0..attempts {
            let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
            let node = self.route(key, !read_only, slot);
            match self.call_on(&node, db, req.clone(), 1, slot).await {
                Ok(v) => return self.follow_moved(db, v, &req, slot).await,
                Err(Retry::Lost(e)) => last = Some(e),
                Err(Retry::No(e)) => return Err(StoreError::Other(e)),
            }
        }
        Err(StoreError::Other(
            last.unwrap_or_else(|| "ERR upstream unavailable".into()),
        ))
    }

    /// One attempt on one node: the decoded last of `count` replies (errors included, as
    /// `Value::Error`).
    async fn call_on(
        &self,
        node: &Arc<Node>,
        db: Db,
        req: Bytes,
        count: usize,
        slot: u64,
    ) -> Result<Value, Retry> {
        let frame = self.frame_on(node, db, req, count, slot, false).await?;
        match decode(&frame, MAX_REPLY_BULK) {
            Ok(Some((v, _))) => Ok(v),
            _ => Err(Retry::No("ERR malformed reply from upstream".into())),
        }
    }

    /// One attempt on one node: the bytes of all `count` replies, in the protocol asked for
    /// (`resp3` picks the connection pool). A lost connection or a timeout kills the
    /// connection and is worth a retry.
    async fn send_on(
        &self,
        node: &Arc<Node>,
        db: Db,
        req: Bytes,
        count: usize,
        slot: u64,
        resp3: bool,
    ) -> Result<Bytes, Retry> {
        let key = node
            .pool_key(db, resp3)
            .ok_or_else(|| Retry::No("ERR DB index is out of range".into()))?;
        // As in `ClientForwarder::conn`: the connecting path boxed, and taken only when the
        // pool's connection is not up (this is the migration router's per-call path).
        let conn = match node.live_conn(key, slot) {
            Some(c) => c,
            None => Box::pin(node.conn(key, slot)).await.map_err(Retry::Lost)?,
        };
        node.stats.requests.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.opts.timeout(), conn.send(req, count)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => {
                node.stats.errors.fetch_add(1, Ordering::Relaxed);
                conn.kill();
                Err(Retry::Lost(forward::lost_message(&node.addr)))
            }
            Err(_) => {
                node.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                conn.kill();
                Err(Retry::Lost(forward::timeout_message(
                    &node.addr,
                    self.opts.timeout(),
                )))
            }
        }
    }

    /// One attempt on one node: the last of `count` reply frames as it came.
    async fn frame_on(
        &self,
        node: &Arc<Node>,
        db: Db,
        req: Bytes,
        count: usize,
        slot: u64,
        resp3: bool,
    ) -> Result<Bytes, Retry> {
        let bytes = self.send_on(node, db, req, count, slot, resp3).await?;
        let mut at = 0;
        loop {
            let mut scan = FrameScanner::default();
            match scan.next_frame(&bytes[at..], MAX_REPLY_BULK) {
                Ok(Some(n)) if at + n >= bytes.len() => return Ok(bytes.slice(at..)),
                Ok(Some(n)) => at += n,
                _ => return Err(Retry::No("ERR malformed reply from upstream".into())),
            }
        }
    }

    /// Sends many independent commands with as few round trips as the topology allows: one
    /// request per node, grouped by each command's key (`args[1]`), the nodes at once. The
    /// replies come back in the commands' order. A command whose slot moved meanwhile is
    /// sent again on its own, its redirection followed. For bulk copies (`migrate
    /// backfill`), where one round trip per key would bound the rate.
    pub async fn pipeline(&self, db: Db, commands: &[&[&[u8]]]) -> StoreResult<Vec<Bytes>> {
        if !self.is_cluster() && !commands.is_empty() {
            // One node serves every key: one request, its frames in order, nothing grouped
            // (the migration router mirrors each write with a two-command pipeline).
            let mut req = BytesMut::new();
            for c in commands {
                encode(&mut req, c);
            }
            let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
            let node = self.route(None, true, slot);
            return self
                .frames_on(&node, db, req.freeze(), commands.len(), slot)
                .await
                .map_err(|(Retry::Lost(e) | Retry::No(e))| StoreError::Other(e));
        }
        let keys: Vec<&[u8]> = commands
            .iter()
            .map(|c| c.get(1).copied().unwrap_or(b""))
            .collect();
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let groups = self.by_serving_node(&keys);
        let sends = groups.iter().map(|(node, idx)| {
            let mut req = BytesMut::new();
            for &i in idx {
                encode(&mut req, commands[i]);
            }
            self.frames_on(node, db, req.freeze(), idx.len(), slot)
        });
        let replies = futures_util::future::join_all(sends).await;
        let mut out = vec![Bytes::new(); commands.len()];
        for ((_, idx), frames) in groups.iter().zip(replies) {
            let frames = frames.map_err(|(Retry::Lost(e) | Retry::No(e))| StoreError::Other(e))?;
            for (&i, f) in idx.iter().zip(frames) {
                out[i] = f;
            }
        }
        for (i, f) in out.iter_mut().enumerate() {
            if cluster::redirect(f).is_some() {
                *f = self
                    .call_frame(db, Some(keys[i]), commands[i], true, false)
                    .await?;
            }
        }
        Ok(out)
    }

    /// One request of `count` commands on one node: every reply frame, in order.
    async fn frames_on(
        &self,
        node: &Arc<Node>,
        db: Db,
        req: Bytes,
        count: usize,
        slot: u64,
    ) -> Result<Vec<Bytes>, Retry> {
        let bytes = self.send_on(node, db, req, count, slot, false).await?;
        let malformed = || Retry::No("ERR malformed reply from upstream".into());
        let mut frames = Vec::with_capacity(count);
        let mut at = 0;
        while at < bytes.len() {
            let mut scan = FrameScanner::default();
            match scan.next_frame(&bytes[at..], MAX_REPLY_BULK) {
                Ok(Some(n)) => {
                    frames.push(bytes.slice(at..at + n));
                    at += n;
                }
                _ => return Err(malformed()),
            }
        }
        if frames.len() != count {
            return Err(malformed());
        }
        Ok(frames)
    }

    /// Sends `commands` back to back on one connection of the node serving `key` (a
    /// `MULTI … EXEC` block, which Redis runs atomically) and returns the last reply frame.
    /// Nothing is retried or redirected: a transaction that met a moved slot fails with
    /// Redis's own `EXECABORT`, which the client sees.
    pub async fn call_block(
        &self,
        db: Db,
        key: Option<&[u8]>,
        commands: &[&[&[u8]]],
        resp3: bool,
    ) -> StoreResult<Bytes> {
        let mut req = BytesMut::new();
        for c in commands {
            encode(&mut req, c);
        }
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let node = self.route(key, true, slot);
        match self
            .frame_on(&node, db, req.freeze(), commands.len(), slot, resp3)
            .await
        {
            Ok(f) => {
                if cluster::may_redirect(&f) {
                    self.request_refresh();
                }
                Ok(f)
            }
            Err(Retry::Lost(e) | Retry::No(e)) => Err(StoreError::Other(e)),
        }
    }

    /// Sends one command routed by `key` and returns its reply frame as Redis wrote it
    /// (errors included), in RESP3 when `resp3`: the migration router's typed commands,
    /// whose replies go to the client unchanged. Reads whose connection failed are retried;
    /// cluster redirections are followed.
    pub async fn call_frame(
        &self,
        db: Db,
        key: Option<&[u8]>,
        args: &[&[u8]],
        write: bool,
        resp3: bool,
    ) -> StoreResult<Bytes> {
        let mut req = BytesMut::new();
        encode(&mut req, args);
        let req = req.freeze();
        let attempts = if write { 1 } else { 3 };
        // Built only when every attempt failed: a String per call was a tenth of the
        // router's allocations.
        let mut last = None;
        'attempt: for _ in 0..attempts {
            let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
            let node = self.route(key, write, slot);
            let mut frame = match self.frame_on(&node, db, req.clone(), 1, slot, resp3).await {
                Ok(f) => f,
                Err(Retry::Lost(e)) => {
                    last = Some(e);
                    continue;
                }
                Err(Retry::No(e)) => return Err(StoreError::Other(e)),
            };
            for _ in 0..5 {
                let Some(r) = cluster::redirect(&frame) else {
                    return Ok(frame);
                };
                let (node, req, count) = match r {
                    cluster::Redirect::Moved(s, addr) => {
                        self.moved(s, &addr);
                        (self.node(&addr), req.clone(), 1)
                    }
                    cluster::Redirect::Ask(_, addr) => {
                        self.asked();
                        let mut b = BytesMut::new();
                        encode(&mut b, &[b"ASKING"]);
                        b.extend_from_slice(&req);
                        (self.node(&addr), b.freeze(), 2)
                    }
                };
                frame = match self.frame_on(&node, db, req, count, slot, resp3).await {
                    Ok(f) => f,
                    Err(Retry::Lost(e)) => {
                        last = Some(e);
                        continue 'attempt;
                    }
                    Err(Retry::No(e)) => return Err(StoreError::Other(e)),
                };
            }
            return Err(StoreError::Other(
                "ERR too many cluster redirections".into(),
            ));
        }
        Err(StoreError::Other(
            last.unwrap_or_else(|| "ERR upstream unavailable".into()),
        ))
    }

    /// Follows `-MOVED`/`-ASK` replies (cluster), then turns error replies into errors.
    async fn follow_moved(
        &self,
        db: Db,
        mut v: Value,
        req: &Bytes,
        slot: u64,
    ) -> StoreResult<Value> {
        for _ in 0..5 {
            let Value::Error(e) = &v else { return Ok(v) };
            let Some(r) = cluster::redirect(format!("-{e}\r\n").as_bytes()) else {
                return Err(StoreError::Other(e.clone()));
            };
            let (node, req, count) = match r {
                cluster::Redirect::Moved(s, addr) => {
                    self.moved(s, &addr);
                    (self.node(&addr), req.clone(), 1)
                }
                cluster::Redirect::Ask(_, addr) => {
                    self.asked();
                    let mut b = BytesMut::new();
                    encode(&mut b, &[b"ASKING"]);
                    b.extend_from_slice(req);
                    // Two replies: ASKING's +OK, then the command's.
                    (self.node(&addr), b.freeze(), 2)
                }
            };
            v = match self.call_on(&node, db, req, count, slot).await {
                Ok(v) => v,
                Err(Retry::Lost(e) | Retry::No(e)) => return Err(StoreError::Other(e)),
            };
        }
        Err(StoreError::Other(
            "ERR too many cluster redirections".into(),
        ))
    }

    /// Groups key positions by hash slot, as a cluster node accepts a multi-key command only
    /// for keys of one slot (one group outside a cluster). Groups come in the order of their
    /// first key, positions in each in the keys' order. Sorting makes this O(n log n): a
    /// page of 1,000 keys spans about as many slots, and a search of the groups per key
    /// was quadratic.
    pub(super) fn by_slot(&self, keys: &[&[u8]]) -> Vec<(Arc<Node>, Vec<usize>)> {
        if keys.is_empty() {
            return Vec::new();
        }
        if !self.is_cluster() {
            return vec![(self.route(None, true, 0), (0..keys.len()).collect())];
        }
        let routes = self.shared.routes();
        let mut order: Vec<(u16, usize)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (cluster::slot(k), i))
            .collect();
        order.sort_unstable();
        let mut groups: Vec<(usize, Arc<Node>, Vec<usize>)> = Vec::new();
        for run in order.chunk_by(|a, b| a.0 == b.0) {
            let first = run[0].1;
            let node = self.route_in(&routes, Some(keys[first]), true, 0);
            groups.push((first, node, run.iter().map(|&(_, i)| i).collect()));
        }
        groups.sort_unstable_by_key(|g| g.0);
        groups.into_iter().map(|(_, n, v)| (n, v)).collect()
    }

    /// Groups single-key commands' positions by the node serving each key: a node takes
    /// commands of any of its slots in one request, so a page costs one request per node,
    /// not one per slot. Positions keep the commands' order within a node.
    fn by_serving_node(&self, keys: &[&[u8]]) -> Vec<(Arc<Node>, Vec<usize>)> {
        if keys.is_empty() {
            return Vec::new();
        }
        if !self.is_cluster() {
            return vec![(self.route(None, true, 0), (0..keys.len()).collect())];
        }
        let routes = self.shared.routes();
        let mut groups: Vec<(Arc<Node>, Vec<usize>)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let node = self.route_in(&routes, Some(k), true, 0);
            // A handful of primaries: a linear search is the cheapest lookup.
            match groups.iter_mut().find(|(n, _)| Arc::ptr_eq(n, &node)) {
                Some((_, v)) => v.push(i),
                None => groups.push((node, vec![i])),
            }
        }
        groups
    }

    /// One command on a given node (cluster fan-out), redirections followed.
    pub(super) async fn call_node(
        &self,
        node: &Arc<Node>,
        db: Db,
        args: &[&[u8]],
    ) -> StoreResult<Value> {
        let mut req = BytesMut::new();
        encode(&mut req, args);
        let req = req.freeze();
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        match self.call_on(node, db, req.clone(), 1, slot).await {
            Ok(v) => self.follow_moved(db, v, &req, slot).await,
            Err(Retry::Lost(e) | Retry::No(e)) => Err(StoreError::Other(e)),
        }
    }

    /// A multi-key command (`cmd key…`) split per slot: each group's key positions and
    /// its reply, in group order.
    pub(super) async fn split(
        &self,
        db: Db,
        cmd: &'static [u8],
        keys: &[&[u8]],
    ) -> StoreResult<Vec<(Vec<usize>, Value)>> {
        let mut out = Vec::new();
        for (node, idx) in self.by_slot(keys) {
            let mut args = Vec::with_capacity(idx.len() + 1);
            args.push(cmd);
            args.extend(idx.iter().map(|&i| keys[i]));
            let v = self.call_node(&node, db, &args).await?;
            out.push((idx, v));
        }
        Ok(out)
    }

    /// `DEL`/`EXISTS`-style counts, summed over the groups of [`Upstream::split`].
    pub(super) async fn count(
        &self,
        db: Db,
        cmd: &'static [u8],
        keys: &[&[u8]],
    ) -> StoreResult<u64> {
        let mut total = 0;
        for (_, v) in self.split(db, cmd, keys).await? {
            total += store::int(v)? as u64;
        }
        Ok(total)
    }
}
