//! What the gateway does with each command: the decisions, in one place.
//!
//! The default is to forward: the command goes to the node its keys live on (key positions
//! from the command table's key specs), on the shared multiplexed connections, and the
//! upstream's reply is copied back byte for byte. The exceptions are listed here by name,
//! each with its reason; the README's per-command table is this file in prose.
//!
//! * **Answered by sessiond** ([`Action::Local`]): the state of the client's connection to
//!   *sessiond* (`AUTH`, `HELLO`, `SELECT`, `CLIENT`, `RESET`, `QUIT`), and sessiond
//!   itself (`INFO`, `CONFIG`, `SHUTDOWN`, `SAVE`…), which are not the upstream's.
//! * **Transactions** (`MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`) and **blocking
//!   commands** (the `blocking` flag, `WAIT`, `WAITAOF`) run on a pinned connection of the
//!   client's own (`upstream/pinned.rs`).
//! * **Refused** with a clear error: what would act on one upstream connection while the
//!   client believes it acts on the server (`MONITOR`, replication and cluster-management
//!   commands, `CLIENT TRACKING`: client-side caching would need invalidations routed back
//!   per client, which the multiplexed connections cannot do), and what operators run on
//!   the servers themselves (`DEBUG`, `MODULE`, `ACL`).
//! * **Every primary** in a cluster ([`Action::AllPrimaries`]): commands Redis tips as
//!   `request_policy:all_nodes` or `all_shards` that are not keyspace queries (`SCRIPT
//!   LOAD`, `FUNCTION LOAD`…), so a script loaded through the gateway exists wherever an
//!   `EVALSHA` may be routed.
//! * **Keyspace commands in a cluster** (`DBSIZE`, `KEYS`, `SCAN`, `FLUSHDB`…) and
//!   multi-key commands whose keys span slots (`MGET`, `DEL`, `EXISTS`, `UNLINK`, `MSET`)
//!   are split and merged by sessiond ([`Action::Local`] through the `Store` methods); any
//!   other command whose keys span slots gets Redis Cluster's `CROSSSLOT`.

use std::sync::LazyLock;

use crate::cmd::table::{commands, lookup, CmdId, Flags, Spec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run by sessiond's own command code.
    Local,
    /// Refused with this error text.
    Refuse(&'static str),
    /// Routed by its keys on the multiplexed connections.
    Forward,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    /// Runs on a pinned connection until its reply comes.
    Block,
    /// Cluster: sent to every primary, replies combined by the response tip.
    AllPrimaries,
    /// Enters subscriber mode on a pinned connection.
    Subscribe,
}

const TRACKING: &str = "ERR client-side caching (CLIENT TRACKING) is not supported through \
                        the sessiond gateway";
const SERVER_SIDE: &str = "ERR this command is not forwarded by the sessiond gateway; run it \
                           on the upstream server directly";

/// Each command's action, decided once per command and topology (`[standalone, cluster]`);
/// `None` where it depends on the arguments.
static ACTIONS: LazyLock<Vec<[Option<Action>; 2]>> = LazyLock::new(|| {
    commands()
        .iter()
        .map(|s| [decide(s, false), decide(s, true)])
        .collect()
});

/// The gateway's action for a command (its resolved subcommand spec when it has one).
pub fn action(spec: &Spec, args: &[&[u8]], cluster: bool) -> Action {
    match ACTIONS.get(spec.index).and_then(|a| a[cluster as usize]) {
        Some(a) => a,
        None => by_arguments(spec, args, cluster),
    }
}

/// The few decisions that read the arguments.
fn by_arguments(spec: &Spec, args: &[&[u8]], cluster: bool) -> Action {
    match spec.name {
        // The upstream's keyspace notifications are its own setting.
        "config|set" | "config|get" => {
            let notify = args
                .get(2)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"notify-keyspace-events"));
            match (notify && args.len() <= 4, spec.name) {
                (true, "config|set") => Action::AllPrimaries,
                (true, _) => Action::Forward,
                (false, _) => Action::Local,
            }
        }
        // XREAD and XREADGROUP block only with a BLOCK argument.
        _ if args.iter().any(|a| a.eq_ignore_ascii_case(b"BLOCK")) => Action::Block,
        _ => decide_unblocked(spec, cluster),
    }
}

/// The action that does not depend on the arguments, or `None`.
fn decide(spec: &Spec, cluster: bool) -> Option<Action> {
    let name = spec.name;
    Some(match name {
        "multi" => Action::Multi,
        "exec" => Action::Exec,
        "discard" => Action::Discard,
        "watch" => Action::Watch,
        "unwatch" => Action::Unwatch,
        "wait" | "waitaof" => Action::Block,
        "client|tracking" | "client|caching" | "client|getredir" | "client|trackinginfo" => {
            Action::Refuse(TRACKING)
        }
        "monitor" | "sync" | "psync" | "replconf" | "replicaof" | "slaveof" | "failover"
        | "debug" | "readonly" | "readwrite" | "asking" | "client|pause" | "client|unpause"
        | "client|no-evict" | "client|no-touch" | "client|reply" | "client|unblock" => {
            Action::Refuse(SERVER_SIDE)
        }
        // Whole families, every subcommand.
        _ if matches!(name.split('|').next(), Some("cluster" | "module")) => {
            Action::Refuse(SERVER_SIDE)
        }
        // sessiond's own users: it authenticates the gateway's clients itself, and talks to
        // the upstream with its own credentials.
        _ if name.starts_with("acl|") => Action::Local,
        "config|set" | "config|get" | "xread" | "xreadgroup" => return None,
        _ if name.starts_with("client|") || name.starts_with("config|") => Action::Local,
        "subscribe" | "psubscribe" | "ssubscribe" => Action::Subscribe,
        _ if spec.flags.has(Flags::BLOCKING) => Action::Block,
        _ => decide_unblocked(spec, cluster),
    })
}

fn decide_unblocked(spec: &Spec, cluster: bool) -> Action {
    // A subcommand is decided by its parent's engine id.
    let id = match spec.name.split_once('|') {
        None => spec.id,
        Some((parent, _)) => lookup(parent.as_bytes()).and_then(|i| commands()[i].id),
    };
    if let Some(id) = id {
        use CmdId::*;
        match id {
            Ping | Echo | Auth | Hello | Select | Quit | Reset | Client | Info | Config | Time
            | Save | BgSave | BgRewriteAof | LastSave | Shutdown => return Action::Local,
            // (SWAPDB and MOVE are forwarded: the cluster answers with its own refusal.)
            DbSize | Keys | Scan | RandomKey | FlushDb | FlushAll if cluster => {
                return Action::Local
            }
            _ => {}
        }
    }
    if cluster
        && (spec.has_tip("request_policy:all_nodes") || spec.has_tip("request_policy:all_shards"))
        && spec.key_specs.is_empty()
    {
        return Action::AllPrimaries;
    }
    Action::Forward
}

/// Multi-key commands a cluster gateway splits by slot and merges (through the `Store`
/// methods) when their keys span slots.
pub fn splits(spec: &Spec) -> bool {
    matches!(
        spec.id,
        Some(CmdId::MGet | CmdId::Del | CmdId::Unlink | CmdId::Exists | CmdId::MSet)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::table::resolve;

    fn act(args: &[&str], cluster: bool) -> Action {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        action(resolve(&a).unwrap(), &a, cluster)
    }

    #[test]
    fn decisions() {
        assert_eq!(act(&["HSET", "h", "f", "v"], false), Action::Forward);
        assert_eq!(act(&["BLPOP", "l", "0"], false), Action::Block);
        assert_eq!(act(&["XREAD", "STREAMS", "s", "0"], false), Action::Forward);
        assert_eq!(
            act(&["XREAD", "BLOCK", "0", "STREAMS", "s", "0"], false),
            Action::Block
        );
        assert_eq!(act(&["MULTI"], true), Action::Multi);
        assert_eq!(
            act(&["CLIENT", "TRACKING", "on"], false),
            Action::Refuse(TRACKING)
        );
        assert_eq!(act(&["CLIENT", "ID"], false), Action::Local);
        assert_eq!(act(&["MONITOR"], false), Action::Refuse(SERVER_SIDE));
        assert_eq!(act(&["CLUSTER", "INFO"], true), Action::Refuse(SERVER_SIDE));
        assert_eq!(act(&["ACL", "WHOAMI"], false), Action::Local);
        assert_eq!(act(&["MODULE", "LIST"], false), Action::Refuse(SERVER_SIDE));
        assert_eq!(
            act(&["SCRIPT", "LOAD", "return 1"], true),
            Action::AllPrimaries
        );
        assert_eq!(act(&["SCRIPT", "LOAD", "return 1"], false), Action::Forward);
        assert_eq!(act(&["DBSIZE"], true), Action::Local);
        assert_eq!(act(&["DBSIZE"], false), Action::Forward);
        assert_eq!(act(&["EVAL", "return 1", "0"], false), Action::Forward);
        assert_eq!(act(&["PUBLISH", "c", "m"], false), Action::Forward);
        assert_eq!(act(&["SUBSCRIBE", "c"], false), Action::Subscribe);
        assert_eq!(act(&["UNSUBSCRIBE"], false), Action::Forward);
        assert_eq!(
            act(&["CONFIG", "SET", "notify-keyspace-events", "Ex"], false),
            Action::AllPrimaries
        );
        assert_eq!(
            act(&["CONFIG", "SET", "maxclients", "10"], false),
            Action::Local
        );
    }
}
