//! The embedded engine as one side of a migration: the engine with a command server of its
//! own, so the router can run any command on it and get Redis's reply bytes.
//!
//! The router serves string sessions through the `Store` trait, but hashes, sets, sorted sets
//! and lists go through the engine's typed API, which only the command layer (`cmd/`) speaks.
//! Running those commands *as commands* on this side's own [`Server`] reuses every
//! check, error text and reply shape the embedded mode has, and gives the router what it gets
//! from a Redis upstream: a reply frame. Keyspace events of this side go to the process's one
//! pub/sub hub (`serve.rs` hands the outer server this server's hub).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::cmd::{table, ClientState};
use crate::engine::Engine;
use crate::resp::reply::Proto;
use crate::resp::Reply;
use crate::server::clients::ClientHandle;
use crate::server::Server;

pub struct EmbeddedSide {
    pub server: Arc<Server<Engine>>,
    /// The user the router's commands run as (every command, key and channel): built once,
    /// not per call.
    user: Arc<crate::acl::User>,
}

impl EmbeddedSide {
    pub fn new(server: Server<Engine>) -> Self {
        EmbeddedSide {
            server: Arc::new(server),
            user: Arc::new(crate::acl::User::default_user()),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.server.store
    }

    /// Runs one command as the client `handle` on database `db` and returns its reply frame
    /// and whether it wrote (for the caller's durability wait). The engine never waits, so
    /// this completes at once; a command that would wait (a blocking pop) is refused before
    /// it gets here.
    pub fn call(
        &self,
        handle: &Arc<ClientHandle>,
        db: usize,
        args: &[&[u8]],
        resp3: bool,
    ) -> Result<(Bytes, bool), String> {
        let idx = table::lookup(args[0]).ok_or_else(|| crate::cmd::unknown_command_error(args))?;
        let spec = &table::commands()[idx];
        if !table::arity_ok(spec.arity, args.len()) {
            return Err(crate::cmd::wrong_args(spec.name).message());
        }
        let mut client = ClientState::new(handle.clone(), true, true, self.user.clone());
        client.db = db;
        client.proto = if resp3 { Proto::Resp3 } else { Proto::Resp2 };
        let wrote = table::is_write(table::subcommand(spec, args).unwrap_or(spec));
        if wrote {
            if let Some(e) = self.server.persist.as_ref().and_then(|p| p.write_error()) {
                return Err(format!("MISCONF {e}"));
            }
        }
        let mut buf = BytesMut::new();
        let mut out = Reply::new(&mut buf, client.proto);
        let now = crate::clock::now_ms();
        let fut =
            crate::cmd::execute_checked_at(&self.server, &mut client, spec, args, &mut out, now);
        match crate::cmd::run_now(fut) {
            Some(_) => Ok((buf.freeze(), wrote)),
            None => Err(format!(
                "ERR '{}' would wait on the embedded engine, which the migration router does not do",
                spec.name
            )),
        }
    }

    /// Runs `commands` as one client in order (a `MULTI … EXEC` block) and returns the last
    /// reply frame and whether any of them wrote.
    pub fn call_block(
        &self,
        handle: &Arc<ClientHandle>,
        db: usize,
        commands: &[&[&[u8]]],
        resp3: bool,
    ) -> Result<(Bytes, bool), String> {
        let mut client = ClientState::new(handle.clone(), true, true, self.user.clone());
        client.db = db;
        client.proto = if resp3 { Proto::Resp3 } else { Proto::Resp2 };
        let mut buf = BytesMut::new();
        let mut wrote = false;
        for args in commands {
            // Only the last reply is kept.
            buf.clear();
            if let Some(idx) = table::lookup(args[0]) {
                let spec = &table::commands()[idx];
                if table::is_write(table::subcommand(spec, args).unwrap_or(spec)) {
                    if let Some(e) = self.server.persist.as_ref().and_then(|p| p.write_error()) {
                        return Err(format!("MISCONF {e}"));
                    }
                    wrote = true;
                }
            }
            let mut out = Reply::new(&mut buf, client.proto);
            let fut = crate::cmd::execute(&self.server, &mut client, args, &mut out);
            if crate::cmd::run_now(fut).is_none() {
                return Err("ERR a command of the transaction would wait".into());
            }
        }
        Ok((buf.freeze(), wrote))
    }
}
