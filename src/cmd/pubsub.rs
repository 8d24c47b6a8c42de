//! Pub/sub commands on the embedded engine (Redis's `pubsub.c`); the hub, delivery and
//! keyspace notifications are in `src/pubsub.rs`.

use super::args::is;
use super::{wrong_args, CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::pubsub::{Kind, Subscription};

/// `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE`: one confirmation per name.
pub fn subscribe<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], kind: Kind) -> CmdResult {
    let (hub, id, proto) = (&cx.server.pubsub, cx.client.handle.id, cx.client.proto);
    let sub = cx
        .client
        .sub
        .get_or_insert_with(|| Box::new(Subscription::new(hub, id, proto)));
    for name in &a[1..] {
        sub.subscribe(kind, name);
        cx.out.push(3);
        cx.out.bulk(kind.verb(true));
        cx.out.bulk(name);
        cx.out.int(sub.count(kind) as i64);
    }
    Ok(())
}

/// `UNSUBSCRIBE`, `PUNSUBSCRIBE`, `SUNSUBSCRIBE`: the names given, or every one of the kind;
/// with none to leave, one confirmation with a nil name, as Redis.
pub fn unsubscribe<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], kind: Kind) -> CmdResult {
    let names: Vec<bytes::Bytes> = if a.len() > 1 {
        a[1..]
            .iter()
            .map(|n| bytes::Bytes::copy_from_slice(n))
            .collect()
    } else {
        cx.client
            .sub
            .as_ref()
            .map_or_else(Vec::new, |s| s.names(kind))
    };
    if names.is_empty() {
        let count = cx.client.sub.as_ref().map_or(0, |s| s.count(kind));
        cx.out.push(3);
        cx.out.bulk(kind.verb(false));
        cx.out.null();
        cx.out.int(count as i64);
        return Ok(());
    }
    for name in names {
        let count = match cx.client.sub.as_mut() {
            Some(s) => {
                s.unsubscribe(kind, &name);
                s.count(kind)
            }
            None => 0,
        };
        cx.out.push(3);
        cx.out.bulk(kind.verb(false));
        cx.out.bulk(&name);
        cx.out.int(count as i64);
    }
    Ok(())
}

/// `PUBLISH` / `SPUBLISH channel message`.
pub fn publish<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], shard: bool) -> CmdResult {
    let n = cx.server.pubsub.publish(a[1], a[2], shard);
    cx.out.int(n as i64);
    Ok(())
}

const HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

/// `PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB|HELP`.
pub fn pubsub<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let hub = &cx.server.pubsub;
    let sub = a[1];
    if is(sub, "help") && a.len() == 2 {
        cx.out.help(HELP);
    } else if (is(sub, "channels") || is(sub, "shardchannels")) && a.len() <= 3 {
        let mut list = hub.channels(a.get(2).copied(), is(sub, "shardchannels"));
        list.sort();
        cx.out.array(list.len());
        for c in list {
            cx.out.bulk(&c);
        }
    } else if is(sub, "numsub") || is(sub, "shardnumsub") {
        let shard = is(sub, "shardnumsub");
        cx.out.map(a.len() - 2);
        for c in &a[2..] {
            cx.out.bulk(c);
            cx.out.int(hub.numsub(c, shard) as i64);
        }
    } else if is(sub, "numpat") && a.len() == 2 {
        cx.out.int(hub.numpat() as i64);
    } else {
        let name = String::from_utf8_lossy(sub);
        let known = [
            "help",
            "channels",
            "shardchannels",
            "numsub",
            "shardnumsub",
            "numpat",
        ];
        return Err(CmdError::msg(match known.iter().find(|k| is(sub, k)) {
            Some(k) => format!("ERR wrong number of arguments for 'pubsub|{k}' command"),
            None => format!("ERR unknown subcommand '{name}'. Try PUBSUB HELP."),
        }));
    }
    Ok(())
}

/// `PING` in RESP2 subscriber mode: `["pong", arg or ""]`, as Redis.
pub fn subscribed_ping<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    if a.len() > 2 {
        return Err(wrong_args("ping"));
    }
    cx.out.array(2);
    cx.out.bulk(b"pong");
    cx.out.bulk(a.get(1).copied().unwrap_or_default());
    Ok(())
}
