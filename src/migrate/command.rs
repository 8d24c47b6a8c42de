//! A migration side that runs whole commands: what the router needs to carry every Redis
//! type (hashes, sets, sorted sets, lists) between Redis-protocol stores, where the `Store`
//! trait's semantic operations cover strings only.
//!
//! A side answers with the reply frame as the store wrote it, in the client's protocol, so
//! the router can hand it to the client unchanged and compare two sides byte for byte. The
//! legacy stores (SQL, PHP files) hold strings only: they refuse, naming themselves.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::any::AnyStore;
use super::timed::Timed;
use crate::server::clients::ClientHandle;
use crate::store::{Db, StoreError, StoreResult};

/// One command for a side: who sends it, where, and how its reply is wanted.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub client: &'a Arc<ClientHandle>,
    pub db: Db,
    /// The key it is routed by (a cluster's slot); `None` for keyless commands.
    pub key: Option<&'a [u8]>,
    pub args: &'a [&'a [u8]],
    pub write: bool,
    pub resp3: bool,
}

pub use crate::deployment::Frame;

/// A store that runs Redis commands (every method forwards: no defaults to fall back on).
pub trait CommandStore: Send + Sync {
    /// `Err` with the reason when this store holds strings only.
    fn speaks_redis(&self) -> Result<(), String>;
    fn command(&self, call: Call<'_>) -> impl Future<Output = StoreResult<Frame>> + Send;
    /// Runs `commands` back to back as one client (a `MULTI … EXEC` block): the last reply.
    fn block(
        &self,
        call: Call<'_>,
        commands: &[&[&[u8]]],
    ) -> impl Future<Output = StoreResult<Frame>> + Send;
    /// Independent commands in as few round trips as the store allows (bulk copies): every
    /// reply frame, in order.
    fn pipeline(
        &self,
        client: &Arc<ClientHandle>,
        db: Db,
        commands: &[&[&[u8]]],
    ) -> impl Future<Output = StoreResult<Vec<Bytes>>> + Send;
    /// The embedded engine's pub/sub hub, for the process to share.
    fn hub(&self) -> Option<Arc<crate::pubsub::Hub>>;
    /// The embedded engine's script registry, whose live settings follow the server's.
    fn scripts(&self) -> Option<&crate::script::Scripts>;
}

impl CommandStore for AnyStore {
    fn speaks_redis(&self) -> Result<(), String> {
        match self {
            AnyStore::Embedded(_) | AnyStore::Redis(_) => Ok(()),
            AnyStore::Files(_) | AnyStore::Sql(_) => Err(format!(
                "the {} store holds string sessions only",
                self.kind()
            )),
        }
    }

    async fn command(&self, call: Call<'_>) -> StoreResult<Frame> {
        match self {
            AnyStore::Embedded(side) => side
                .call(call.client, call.db, call.args, call.resp3)
                .map_err(StoreError::Other),
            AnyStore::Redis(up) => up
                .call_frame(call.db, call.key, call.args, call.write, call.resp3)
                .await
                .map(|f| (f, false)),
            AnyStore::Files(_) | AnyStore::Sql(_) => Err(StoreError::Other(format!(
                "ERR the {} store holds string sessions only",
                self.kind()
            ))),
        }
    }

    async fn block(&self, call: Call<'_>, commands: &[&[&[u8]]]) -> StoreResult<Frame> {
        match self {
            AnyStore::Embedded(side) => side
                .call_block(call.client, call.db, commands, call.resp3)
                .map_err(StoreError::Other),
            AnyStore::Redis(up) => up
                .call_block(call.db, call.key, commands, call.resp3)
                .await
                .map(|f| (f, false)),
            AnyStore::Files(_) | AnyStore::Sql(_) => Err(StoreError::Other(format!(
                "ERR the {} store holds string sessions only",
                self.kind()
            ))),
        }
    }

    async fn pipeline(
        &self,
        client: &Arc<ClientHandle>,
        db: Db,
        commands: &[&[&[u8]]],
    ) -> StoreResult<Vec<Bytes>> {
        match self {
            AnyStore::Embedded(side) => commands
                .iter()
                .map(|c| {
                    side.call(client, db, c, false)
                        .map(|(f, _)| f)
                        .map_err(StoreError::Other)
                })
                .collect(),
            AnyStore::Redis(up) => up.pipeline(db, commands).await,
            AnyStore::Files(_) | AnyStore::Sql(_) => Err(StoreError::Other(format!(
                "ERR the {} store holds string sessions only",
                self.kind()
            ))),
        }
    }

    fn hub(&self) -> Option<Arc<crate::pubsub::Hub>> {
        match self {
            AnyStore::Embedded(side) => Some(side.server.pubsub.clone()),
            _ => None,
        }
    }

    fn scripts(&self) -> Option<&crate::script::Scripts> {
        match self {
            AnyStore::Embedded(side) => Some(&side.server.scripts),
            _ => None,
        }
    }
}

impl<S: CommandStore> CommandStore for Timed<S> {
    fn speaks_redis(&self) -> Result<(), String> {
        self.inner.speaks_redis()
    }

    async fn command(&self, call: Call<'_>) -> StoreResult<Frame> {
        self.timed(self.inner.command(call)).await
    }

    async fn block(&self, call: Call<'_>, commands: &[&[&[u8]]]) -> StoreResult<Frame> {
        self.timed(self.inner.block(call, commands)).await
    }

    async fn pipeline(
        &self,
        client: &Arc<ClientHandle>,
        db: Db,
        commands: &[&[&[u8]]],
    ) -> StoreResult<Vec<Bytes>> {
        self.timed(self.inner.pipeline(client, db, commands)).await
    }

    fn hub(&self) -> Option<Arc<crate::pubsub::Hub>> {
        self.inner.hub()
    }

    fn scripts(&self) -> Option<&crate::script::Scripts> {
        self.inner.scripts()
    }
}

/// A bare engine (the router's unit tests) has no command server: it holds strings only as
/// far as the router is concerned.
impl CommandStore for crate::engine::Engine {
    fn speaks_redis(&self) -> Result<(), String> {
        Err("a bare engine without its command server serves string sessions only".into())
    }

    async fn command(&self, _call: Call<'_>) -> StoreResult<Frame> {
        Err(StoreError::Other(
            "ERR a bare engine runs no commands".into(),
        ))
    }

    async fn block(&self, _call: Call<'_>, _commands: &[&[&[u8]]]) -> StoreResult<Frame> {
        Err(StoreError::Other(
            "ERR a bare engine runs no commands".into(),
        ))
    }

    async fn pipeline(
        &self,
        _client: &Arc<ClientHandle>,
        _db: Db,
        _commands: &[&[&[u8]]],
    ) -> StoreResult<Vec<Bytes>> {
        Err(StoreError::Other(
            "ERR a bare engine runs no commands".into(),
        ))
    }

    fn hub(&self) -> Option<Arc<crate::pubsub::Hub>> {
        None
    }

    fn scripts(&self) -> Option<&crate::script::Scripts> {
        None
    }
}
