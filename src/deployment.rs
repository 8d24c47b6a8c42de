//! What a server runs on, beyond the data operations of [`Store`]: whether its store *is*
//! the embedded engine, a Redis upstream (gateway mode) or a migration router, and the
//! router's live control.
//!
//! These name the implementors themselves (`Engine`, `Upstream`, the router's types), so
//! they live here and not in `store/`: the seam points one way, the store trait knowing
//! nothing of what implements it. Connections, commands and the control plane are generic
//! over `S: Deployment`; a store that only ever serves as one side of a migration (SQL rows,
//! session files) implements [`Store`] alone.

use bytes::Bytes;

use crate::store::{Db, Store, StoreResult};

/// A [`Store`] a server can run on, saying which of the three it is.
pub trait Deployment: Store {
    /// A store that is itself a Redis upstream (gateway mode): connections forward data
    /// commands to it as raw RESP instead of calling the [`Store`] methods, so replies are the
    /// upstream's own bytes and pipelines stay pipelines. See `upstream/forward.rs`.
    fn gateway(&self) -> Option<&crate::upstream::Upstream>;
    /// The embedded engine, if this store is it: commands on types beyond strings (hashes…)
    /// use its typed API directly rather than growing this trait by a method per command.
    fn engine(&self) -> Option<&crate::engine::Engine>;
    /// The migration router's live control (stage and percentage), if this store is one.
    fn migration(&self) -> Option<&dyn MigrationControl>;
}

/// A command's reply frame as a store wrote it, and whether it wrote to the embedded engine
/// (the connection then waits for the log as for its own writes).
pub type Frame = (Bytes, bool);

/// One command the migration router routes as a whole (`migrate/typed.rs`): `spec` is the
/// effective table entry (a subcommand's own).
pub struct CommandRequest<'a> {
    pub client: &'a std::sync::Arc<crate::server::clients::ClientHandle>,
    pub db: Db,
    pub args: &'a [&'a [u8]],
    pub spec: &'static crate::cmd::table::Spec,
    pub resp3: bool,
}

/// A transaction's queue at `EXEC`, for the migration router.
pub struct TransactionRequest<'a> {
    pub client: &'a std::sync::Arc<crate::server::clients::ClientHandle>,
    pub db: Db,
    pub commands: &'a [Vec<&'a [u8]>],
    pub resp3: bool,
}

/// Live control of a migration: read and change the stage and percentage.
pub trait MigrationControl: Send + Sync {
    fn setting(&self) -> crate::migrate::stage::Setting;
    fn set_setting(&self, s: crate::migrate::stage::Setting);
    /// Everything the admin API reports about the migration.
    fn status(&self) -> serde_json::Value;
    /// Adds the migration's families to a `/metrics` scrape.
    fn metrics(&self, f: &mut crate::metrics::export::Families);
    /// Which store (`old`/`new`) serves this key's session in the current setting.
    fn serving(&self, key: &[u8]) -> &'static str;
    /// The guarded ramp's bounds (`None`: off).
    fn guard(&self) -> Option<crate::migrate::guard::GuardConfig>;
    fn set_guard(&self, g: Option<crate::migrate::guard::GuardConfig>);
    /// Share of shadow reads compared, in hundredths of a percent.
    fn shadow_sample(&self) -> u32;
    /// The embedded side's script registry (scripts routed to it run there), so the
    /// scripting settings changed live reach it too.
    fn embedded_scripts(&self) -> Option<&crate::script::Scripts>;
    fn set_shadow_sample(&self, basis_points: u32);
    /// The engine a script runs on in the current setting: the one store every session is
    /// served from and written to (`off`: the old store; `complete` at 100%: the new one),
    /// if that store is the embedded engine. Otherwise Redis's error text saying why.
    fn script_engine(&self) -> Result<&crate::engine::Engine, String>;
    /// `Err` with the reason when a side holds strings only (SQL, PHP files): then the
    /// commands on other types are refused, naming that store.
    fn commands_supported(&self) -> Result<(), String>;
    /// Runs a keyless command that changes a store's scripts (FUNCTION LOAD, DELETE…) on
    /// both stores: the serving store's reply.
    fn everywhere<'a>(
        &'a self,
        req: CommandRequest<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<Frame>> + Send + 'a>>;
    /// Runs a transaction's queue at EXEC (`migrate/typed.rs`): its EXEC reply frame.
    fn transaction<'a>(
        &'a self,
        req: TransactionRequest<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<Frame>> + Send + 'a>>;
    /// Routes one command on a type other than string between the two stores
    /// (`migrate/typed.rs`) and returns its reply frame.
    fn command<'a>(
        &'a self,
        req: CommandRequest<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<Frame>> + Send + 'a>>;
}
