//! Commands for every primary (cluster `SCRIPT LOAD`, `FUNCTION LOAD`…), their replies
//! combined as Redis's response tip for the command says.

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::conn::{encode, MAX_REPLY_BULK};
use super::{forward, Db, Upstream};
use crate::resp::value::{decode, Value};

impl Upstream {
    /// A command for every primary (cluster: `SCRIPT LOAD`, `FUNCTION LOAD`…), its
    /// replies combined as the command's `response_policy` tip says: `agg_sum` adds them,
    /// `agg_logical_and` ands arrays of 0/1, `one_succeeded` takes the first success,
    /// anything else (`all_succeeded`) the first error if any, else the first reply.
    pub async fn all_primaries(
        &self,
        db: Db,
        args: &[&[u8]],
        spec: Option<&crate::cmd::table::Spec>,
    ) -> Bytes {
        let mut req = BytesMut::new();
        encode(&mut req, args);
        let req = req.freeze();
        let mut replies = Vec::new();
        for node in self.primaries() {
            let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
            let r = match node.pool_key(db, false) {
                None => Err("ERR DB index is out of range".to_string()),
                Some(pool) => match node.conn(pool, slot).await {
                    Err(e) => Err(e),
                    Ok(conn) => {
                        node.stats.requests.fetch_add(1, Ordering::Relaxed);
                        match tokio::time::timeout(self.opts.timeout(), conn.send(req.clone(), 1))
                            .await
                        {
                            Ok(Ok(b)) => Ok(b),
                            Ok(Err(_)) => Err(forward::lost_message(&node.addr)),
                            Err(_) => {
                                Err(forward::timeout_message(&node.addr, self.opts.timeout()))
                            }
                        }
                    }
                },
            };
            replies.push(r.unwrap_or_else(|e| Bytes::from(format!("-{e}\r\n"))));
        }
        let tip = |t: &str| spec.is_some_and(|s| s.has_tip(t));
        let decoded: Vec<Option<Value>> = replies
            .iter()
            .map(|b| decode(b, MAX_REPLY_BULK).ok().flatten().map(|(v, _)| v))
            .collect();
        let is_err = |v: &Option<Value>| !matches!(v, Some(v) if !matches!(v, Value::Error(_)));
        if tip("response_policy:one_succeeded") {
            let i = decoded.iter().position(|v| !is_err(v)).unwrap_or(0);
            return replies.swap_remove(i);
        }
        if let Some(i) = decoded.iter().position(is_err) {
            return replies.swap_remove(i);
        }
        if tip("response_policy:agg_sum") {
            let sum: i64 = decoded
                .iter()
                .map(|v| match v {
                    Some(Value::Int(n)) => *n,
                    _ => 0,
                })
                .sum();
            return Bytes::from(format!(":{sum}\r\n"));
        }
        if tip("response_policy:agg_logical_and") {
            let mut acc: Option<Vec<i64>> = None;
            for v in &decoded {
                if let Some(Value::Array(items)) = v {
                    let ints: Vec<i64> = items
                        .iter()
                        .map(|x| matches!(x, Value::Int(n) if *n != 0) as i64)
                        .collect();
                    acc = Some(match acc {
                        None => ints,
                        Some(a) => a.iter().zip(&ints).map(|(x, y)| x & y).collect(),
                    });
                }
            }
            let acc = acc.unwrap_or_default();
            let mut out = format!("*{}\r\n", acc.len());
            for n in acc {
                out.push_str(&format!(":{n}\r\n"));
            }
            return Bytes::from(out);
        }
        replies.swap_remove(0)
    }
}
