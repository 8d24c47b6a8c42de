//! Pub/sub through the gateway: a subscriber gets a pinned upstream connection of its own.
//!
//! **Why one connection per subscriber, not a shared multiplexer.** A multiplexer (one
//! upstream subscription per channel, messages fanned out by sessiond) saves upstream
//! connections when thousands of clients subscribe. A session tier does not have thousands
//! of subscribers: Spring Session's indexed repository and keyspace-expiry listeners
//! subscribe once per *application server*. A dedicated connection keeps every reply the
//! upstream's own bytes (subscription counts, RESP3 push frames, `PING` in subscriber
//! mode, keyspace events), needs no fan-out queue per client inside sessiond, and a slow
//! subscriber only ever fills its own socket. The cost is measured in `docs/BENCHMARKS.md`
//! (1,000 subscribers: upstream connections and memory on both sides); past
//! `upstream-pinned-max` a subscriber gets a clear error.
//!
//! While subscribed, the connection loop waits on both the client and the upstream
//! ([`GatewayClient::pubsub_read`]). Client commands go straight to the upstream, which
//! answers them as Redis does in subscriber mode; the few sessiond answers itself (`AUTH`,
//! `SELECT`, `CLIENT`…) are answered in order by sending a `PING <token>` upstream and
//! putting sessiond's reply where its answer comes back. The subscriptions are tracked from
//! the upstream's confirmations, so when the connection is lost (a Sentinel failover) the
//! gateway connects to the current primary, subscribes to the same channels and patterns
//! again, and hides those confirmations: the client keeps receiving messages. When the
//! last subscription ends the connection goes back to the pinned pool.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::gateway::GatewayClient;
use super::Server;
use crate::cmd::{self, table, ClientState, Flow};
use crate::deployment::Deployment;
use crate::resp::reply::Proto;
use crate::resp::value::{decode, Value};
use crate::resp::Reply;
use crate::upstream::conn::MAX_REPLY_BULK;
use crate::upstream::policy::Action;
use crate::upstream::Upstream;

/// How long a subscriber whose upstream connection was lost waits for a primary to
/// subscribe on again before its connection is closed.
const RESUBSCRIBE_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Subscriber {
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
    shard_channels: BTreeSet<Vec<u8>>,
    /// Confirmations of the gateway's own re-subscriptions still to hide.
    swallow: usize,
    /// Replies sessiond owes, each waiting for its `PING <token>` to come back.
    markers: VecDeque<(Vec<u8>, Bytes)>,
    /// The last confirmation said no subscription is left.
    ended: bool,
    /// `sunsubscribe` confirmations the client asked for and has not had yet. One it did
    /// not ask for is the server's: the shard channel's slot moved away (below).
    requested_sunsubscribes: usize,
    /// A shard channel whose slot moved: to subscribe again on the new owner.
    moved_shard: Option<Vec<u8>>,
}

/// A frame's kind (`message`, `subscribe`…), channel, and subscription count.
type Kind<'a> = (&'a [u8], Option<&'a [u8]>, Option<i64>);

/// What a frame from a subscribed upstream connection is.
fn kind(v: &Value) -> Option<Kind<'_>> {
    let Value::Array(items) = v else { return None };
    let Some(Value::Bulk(k)) = items.first() else {
        return None;
    };
    let name = match items.get(1) {
        Some(Value::Bulk(b)) => Some(&b[..]),
        _ => None,
    };
    let count = match items.get(2) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    Some((&k[..], name, count))
}

impl Subscriber {
    /// Follows the subscription state through a frame from the upstream; returns what the
    /// client gets instead (`None`: nothing).
    fn filter(&mut self, frame: Bytes) -> Option<Bytes> {
        if let Some((token, reply)) = self.markers.front() {
            if frame.len() < 128 && frame.ends_with(&[&token[..], b"\r\n"].concat()) {
                let reply = reply.clone();
                self.markers.pop_front();
                return Some(reply);
            }
        }
        let Ok(Some((v, _))) = decode(&frame, MAX_REPLY_BULK) else {
            return Some(frame);
        };
        let Some((k, name, count)) = kind(&v) else {
            return Some(frame);
        };
        let name = name.map(<[u8]>::to_vec);
        if k == b"sunsubscribe" {
            if self.requested_sunsubscribes > 0 {
                self.requested_sunsubscribes -= 1;
            } else if let Some(n) = name.as_ref().filter(|n| self.shard_channels.contains(*n)) {
                // Unasked: the node gave the channel's slot away (Redis unsubscribes shard
                // channel subscribers then). Hidden; the gateway follows the slot.
                self.moved_shard = Some(n.clone());
                return None;
            }
        }
        let subscribe = match k {
            b"subscribe" | b"psubscribe" | b"ssubscribe" => true,
            b"unsubscribe" | b"punsubscribe" | b"sunsubscribe" => false,
            _ => return Some(frame),
        };
        let set = match k {
            b"subscribe" | b"unsubscribe" => &mut self.channels,
            b"psubscribe" | b"punsubscribe" => &mut self.patterns,
            _ => &mut self.shard_channels,
        };
        if let Some(n) = name {
            if subscribe {
                set.insert(n);
            } else {
                set.remove(&n);
            }
        }
        self.ended = count == Some(0);
        if subscribe && self.swallow > 0 {
            self.swallow -= 1;
            return None;
        }
        Some(frame)
    }
}

impl GatewayClient {
    pub fn is_subscribed(&self) -> bool {
        self.sub.is_some()
    }

    /// Enters subscriber mode with the client's first (P|S)SUBSCRIBE.
    pub(super) async fn subscribe(
        &mut self,
        up: &Upstream,
        state: &ClientState,
        args: &[&[u8]],
        wbuf: &mut BytesMut,
    ) -> Result<(), String> {
        self.drain(up, wbuf).await;
        // Sharded channels live on their slot's node. Other channels could be on any node
        // (Redis Cluster broadcasts PUBLISH to all), but PUBLISH counts only the receiving
        // node's subscribers: so both go to the node of the channel's slot, and a gateway
        // PUBLISH counts the gateway's subscribers.
        let key = args.get(1).copied();
        self.pin(up, state, key, wbuf).await?;
        self.sub = Some(Subscriber::default());
        self.send_sub(args).await
    }

    async fn send_sub(&mut self, args: &[&[u8]]) -> Result<(), String> {
        match self.pinned.as_mut() {
            Some(p) => p.send_unsolicited(args).await,
            None => Err("ERR subscriber connection lost".into()),
        }
    }

    /// A command from a subscribed client.
    pub(super) async fn subscribed_command<S: Deployment>(
        &mut self,
        server: &Server<S>,
        state: &mut ClientState,
        args: &[&[u8]],
        action: Action,
        wbuf: &mut BytesMut,
    ) -> Flow {
        let name = args[0];
        if name.eq_ignore_ascii_case(b"quit") {
            return Flow::Close;
        }
        if name.eq_ignore_ascii_case(b"reset") {
            // The upstream connection's state is the client's: closed, not reused.
            if let Some(mut p) = self.pinned.take() {
                p.spoil();
            }
            self.sub = None;
            if let Some(spec) = table::lookup(name).map(|i| &table::commands()[i]) {
                let mut reply = Reply::new(wbuf, state.proto);
                cmd::execute_checked(server, state, spec, args, &mut reply).await;
            }
            return Flow::Continue;
        }
        let local = matches!(action, Action::Local | Action::Refuse(_))
            && !name.eq_ignore_ascii_case(b"ping");
        if !local {
            if name.eq_ignore_ascii_case(b"sunsubscribe") {
                if let Some(sub) = self.sub.as_mut() {
                    sub.requested_sunsubscribes += if args.len() > 1 {
                        args.len() - 1
                    } else {
                        sub.shard_channels.len().max(1)
                    };
                }
            }
            if self.send_sub(args).await.is_err() {
                // Noticed by the reader, which re-subscribes; the command is lost as on
                // a dropped connection.
            }
            return Flow::Continue;
        }
        // Answered by sessiond, in order with the upstream's replies.
        let mut out = BytesMut::new();
        match action {
            Action::Refuse(msg) => Reply::new(&mut out, state.proto).error(msg),
            _ if state.proto == Proto::Resp2 => {
                let full = table::resolve(args).map_or("", |s| s.name);
                Reply::new(&mut out, state.proto).error(&format!(
                    "ERR Can't execute '{full}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / \
                     PING / QUIT / RESET are allowed in this context"
                ))
            }
            _ => {
                if let Some(spec) = table::lookup(name).map(|i| &table::commands()[i]) {
                    let mut reply = Reply::new(&mut out, state.proto);
                    cmd::execute_checked(server, state, spec, args, &mut reply).await;
                }
            }
        }
        let token = format!("sessiond-{:032x}", fastrand::u128(..)).into_bytes();
        if let Some(sub) = self.sub.as_mut() {
            sub.markers.push_back((token.clone(), out.freeze()));
        }
        let ping: [&[u8]; 2] = [b"PING", &token];
        let _ = self.send_sub(&ping).await;
        Flow::Continue
    }

    /// Waits for the next frame from the subscribed upstream connection and appends what
    /// the client gets to `out`. On a lost connection, subscribes again on the current
    /// primary; `Err` when that fails for [`RESUBSCRIBE_FOR`].
    pub async fn pubsub_read(
        &mut self,
        up: &Upstream,
        state: &ClientState,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        let frame = match self.pinned.as_mut() {
            Some(p) => p.next_frame().await,
            None => Err("no connection".into()),
        };
        match frame {
            Ok(frame) => {
                if let Some(sub) = self.sub.as_mut() {
                    if let Some(f) = sub.filter(frame) {
                        out.extend_from_slice(&f);
                    }
                    if let Some(channel) = sub.moved_shard.take() {
                        return self.follow_slot(up, state, out, &channel).await;
                    }
                    if sub.ended && sub.markers.is_empty() {
                        // No subscription left: a normal client again.
                        self.sub = None;
                        if let Some(p) = self.pinned.take() {
                            up.pinned.give_back(p);
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                tracing::debug!(client = state.handle.id, "subscriber connection lost: {e}");
                self.resubscribe(up, state, out).await
            }
        }
    }

    /// A shard channel's slot left the node this subscriber is on: waits (bounded) for the
    /// slot map to name its new owner, then subscribes everything again there.
    async fn follow_slot(
        &mut self,
        up: &Upstream,
        state: &ClientState,
        out: &mut BytesMut,
        channel: &[u8],
    ) -> Result<(), String> {
        let old = self.pinned.as_ref().map(|p| p.node.id);
        up.request_refresh();
        let deadline = Instant::now() + RESUBSCRIBE_FOR;
        while Some(up.route(Some(channel), true, 0).id) == old && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(
            client = state.handle.id,
            "shard channel {} moved: subscribing again on its new owner",
            String::from_utf8_lossy(channel)
        );
        self.resubscribe(up, state, out).await
    }

    /// Pins to the primary (or the first shard channel's owner) and sends every subscription.
    async fn subscribe_again(
        &mut self,
        up: &Upstream,
        state: &ClientState,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        // Where the first subscription routes: a shard channel's slot, else a channel's.
        let key = self.sub.as_ref().and_then(|s| {
            s.shard_channels
                .iter()
                .chain(&s.channels)
                .chain(&s.patterns)
                .next()
                .cloned()
        });
        self.pin(up, state, key.as_deref(), out).await?;
        let Some(sub) = self.sub.as_mut() else {
            return Ok(());
        };
        // Replies sessiond still owed are given now: their PINGs died with the connection.
        for (_, reply) in sub.markers.drain(..) {
            out.extend_from_slice(&reply);
        }
        let groups: [(&[u8], Vec<Vec<u8>>); 3] = [
            (b"SUBSCRIBE", sub.channels.iter().cloned().collect()),
            (b"PSUBSCRIBE", sub.patterns.iter().cloned().collect()),
            (b"SSUBSCRIBE", sub.shard_channels.iter().cloned().collect()),
        ];
        sub.swallow = groups.iter().map(|(_, v)| v.len()).sum();
        for (cmd, names) in groups {
            if names.is_empty() {
                continue;
            }
            let mut args: Vec<&[u8]> = vec![cmd];
            args.extend(names.iter().map(Vec::as_slice));
            self.send_sub(&args).await?;
        }
        Ok(())
    }

    async fn resubscribe(
        &mut self,
        up: &Upstream,
        state: &ClientState,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        let deadline = Instant::now() + RESUBSCRIBE_FOR;
        loop {
            self.pinned = None;
            match self.subscribe_again(up, state, out).await {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => return Err(e),
                // A new primary can drop the connection just made: Sentinel's promotion ends
                // with `CLIENT KILL TYPE normal`, and a connection is "normal" until its
                // SUBSCRIBE is processed. So a failed send is retried like a failed connect.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        tracing::info!(
            client = state.handle.id,
            "subscriber re-subscribed on {}",
            self.pinned.as_ref().map_or("?", |p| p.node.addr.as_str())
        );
        Ok(())
    }
}
