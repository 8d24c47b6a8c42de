//! `sessiond serve`: load the data, build the server, bind, run until SHUTDOWN or a signal,
//! then shut down gracefully: stop accepting, let connections finish the commands they are
//! executing, fsync, exit 0.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UnixListener;

use crate::config::{Config, MigrationConfig, StoreUrl};
use crate::deployment::Deployment;
use crate::engine::{Engine, EngineConfig};
use crate::legacy::files::FilesStore;
use crate::legacy::keymap::KeyMap;
use crate::legacy::sql::SqlStore;
use crate::migrate::any::AnyStore;
use crate::migrate::command::CommandStore;
use crate::migrate::embedded::EmbeddedSide;
use crate::migrate::router::Router;
use crate::migrate::timed::Timed;
use crate::persist::Persistence;
use crate::server::listener::{
    accept_tcp, accept_unix, bind_tcp, check_protected_mode, dup_fd, Dup,
};
use crate::server::Server;
use crate::store::Store;
use crate::upstream::{Options as UpstreamOptions, Upstream};

/// How long a graceful shutdown waits for connections to finish their current commands.
const DRAIN: Duration = Duration::from_secs(10);

pub async fn run(mut config: Config) -> Result<(), String> {
    // A file-size limit (RLIMIT_FSIZE) must make a write fail with EFBIG, which the journal
    // handles as it handles a full disk, rather than kill the process with SIGXFSZ.
    // SAFETY: setting a signal's disposition to SIG_IGN has no other effect.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // A gateway also holds upstream connections: the pinned ones (one per client in a
    // transaction, a blocking command or subscriber mode) and the shared pools.
    let upstream_fds = config
        .upstream
        .as_ref()
        .map_or(0, |u| u.pinned_max + u.databases * 2 * u.connections * 8);
    config.maxclients =
        crate::server::fd_limit::fit_maxclients(config.maxclients, upstream_fds as u64);
    check_protected_mode(
        &config.listen,
        config.requirepass.is_some(),
        config.protected_mode,
    )?;
    if let Some(m) = config.migration.clone() {
        return run_migration(config, m).await;
    }
    match config.upstream.clone() {
        Some(opts) => run_gateway(config, opts).await,
        None => run_embedded(config).await,
    }
}

/// The embedded engine loaded from its data directory, with maxmemory applied after the
/// load (a restart never evicts or refuses its own data).
fn open_embedded(config: &Config) -> Result<(Engine, Arc<Persistence>), String> {
    crate::engine::set_pack_text(config.pack_text_values);
    let engine = Engine::new(EngineConfig {
        databases: config.databases,
        maxmemory: 0,
        policy: config.maxmemory_policy,
        active_expiry: true,
    });
    let persist = Persistence::open(config.persist(), &engine)?;
    engine.set_maxmemory(config.maxmemory);
    Ok((engine, persist))
}

/// Runs the persistence cron (automatic rewrites, everysec fsync bookkeeping).
fn persistence_cron(p: Arc<Persistence>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            p.cron();
        }
    })
}

/// Final fsync and snapshot bookkeeping of the embedded engine.
async fn close_embedded(persist: Arc<Persistence>) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        if !persist.shutdown_prepared() {
            persist.shutdown(false, false)?;
        }
        persist.finish()
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Opens one side of a migration (the embedded engine with its persistence).
pub async fn open_store(
    side: &StoreUrl,
    keys: &KeyMap,
    config: &Config,
) -> Result<(AnyStore, Option<Arc<Persistence>>), String> {
    Ok(match side {
        StoreUrl::Embedded => {
            let (engine, p) = open_embedded(config)?;
            // Its own command server, for the commands the router runs as commands
            // (`migrate/embedded.rs`).
            let mut server = Server::new(engine, config.clone());
            server.persist = Some(p.clone());
            let libraries = crate::script::persist::load(&server.scripts, &config.dir)?;
            if libraries > 0 {
                tracing::info!("loaded {libraries} function libraries");
            }
            (
                AnyStore::Embedded(Box::new(EmbeddedSide::new(server))),
                Some(p),
            )
        }
        StoreUrl::Redis(o) => (
            AnyStore::Redis(Box::new(Upstream::start((**o).clone()).await?)),
            None,
        ),
        StoreUrl::Files {
            dir,
            gc_maxlifetime,
        } => {
            if !dir.is_dir() {
                return Err(format!("{}: not a directory", dir.display()));
            }
            (
                AnyStore::Files(FilesStore::new(dir.clone(), keys.clone(), *gc_maxlifetime)),
                None,
            )
        }
        StoreUrl::Sql(c) => (
            AnyStore::Sql(Box::new(
                SqlStore::connect((**c).clone(), keys.clone()).await?,
            )),
            None,
        ),
    })
}

/// Closes what [`open_store`] opened.
pub async fn close_store(persist: Option<Arc<Persistence>>) -> Result<(), String> {
    match persist {
        Some(p) => close_embedded(p).await,
        None => Ok(()),
    }
}

/// Migration mode: the router over two stores.
async fn run_migration(config: Config, m: MigrationConfig) -> Result<(), String> {
    let mut persist = None;
    let mut stores = Vec::with_capacity(2);
    for side in [&m.from, &m.to] {
        let (store, p) = open_store(side, &m.keys, &config).await?;
        if p.is_some() {
            persist = p;
        }
        stores.push(store);
    }
    let (Some(new), Some(old)) = (stores.pop(), stores.pop()) else {
        return Err("a migration needs two stores".into());
    };
    let describe = format!(
        "sessiond {} ready (migrating {} -> {}, stage {} at {}%)",
        env!("CARGO_PKG_VERSION"),
        old.kind(),
        new.kind(),
        m.setting.stage,
        m.setting.percent()
    );
    let (old_kind, new_kind) = (old.kind(), new.kind());
    let mut router = Router::new(Timed::new(old), Timed::new(new), m.keys, m.setting);
    (router.old_kind, router.new_kind) = (old_kind, new_kind);
    *router.guard.get_mut().unwrap_or_else(|p| p.into_inner()) = m.guard;
    router.shadow_sample = std::sync::atomic::AtomicU32::new(m.shadow_sample);
    let mut server = Server::new(router, config.clone());
    server.persist = persist.clone();
    if let Some(hub) = server.store.embedded_hub() {
        // One pub/sub hub for the process: the embedded side's keyspace events reach the
        // clients subscribed here.
        server.notifier = crate::pubsub::Notifier(hub.clone());
        server.pubsub = hub;
    }
    let server = Arc::new(server);
    let cron = persist.clone().map(persistence_cron);
    let guard = tokio::spawn(guard_loop(server.clone()));
    serve_until_shutdown(&server, &describe).await?;
    guard.abort();
    if let Some(c) = cron {
        c.abort();
    }
    if let Some(p) = persist {
        close_embedded(p).await?;
    }
    tracing::info!("sessiond stopped");
    Ok(())
}

/// The guarded ramp (`migrate/guard.rs`): once a second, judge the store serving the
/// current stage over the guard's window and step back one stage if it crossed a bound.
/// Any change of the setting (an operator's or the guard's own) starts a new window.
async fn guard_loop<A: Deployment + CommandStore, B: Deployment + CommandStore>(
    server: Arc<Server<Router<Timed<A>, Timed<B>>>>,
) {
    use crate::migrate::guard::{judge, serving_side, step_back, Verdict};
    use crate::migrate::stage::Side;
    let router = &server.store;
    let mut last = router.setting();
    let mut since = crate::clock::now_ms();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = crate::clock::now_ms();
        let s = router.setting();
        let guard = *router.guard.lock().unwrap_or_else(|p| p.into_inner());
        let Some(cfg) = guard.filter(|_| s == last) else {
            (last, since) = (s, now);
            continue;
        };
        if now - since < cfg.window.as_millis() as i64 {
            continue;
        }
        let (side, name) = serving_side(s.stage);
        let secs = cfg.window.as_secs();
        let w = match side {
            Side::Old => router.old.window(secs, since),
            Side::New => router.new.window(secs, since),
        };
        if let Verdict::StepBack(why) = judge(&cfg, name, &w) {
            if let Some(back) = step_back(s) {
                router.set_setting(back);
                tracing::warn!("migration guard: stepping back to {}: {why}", back.stage);
                server.audit.record(
                    "guard",
                    "migration",
                    &format!("{} {}%", s.stage, s.percent()),
                    &format!("{} {}%", back.stage, back.percent()),
                    &why,
                );
                (last, since) = (back, now);
            }
        }
    }
}

/// The embedded engine with its persistence.
async fn run_embedded(config: Config) -> Result<(), String> {
    let (engine, persist) = open_embedded(&config)?;
    let mut server = Server::new(engine, config.clone());
    server.persist = Some(persist.clone());
    let libraries = crate::script::persist::load(&server.scripts, &config.dir)?;
    if libraries > 0 {
        tracing::info!("loaded {libraries} function libraries");
    }
    let server = Arc::new(server);
    let cron = persistence_cron(persist.clone());
    let ready = format!(
        "sessiond {} ready (embedded engine, {} databases, data in {}, appendonly {})",
        env!("CARGO_PKG_VERSION"),
        config.databases,
        config.dir.display(),
        if config.appendonly { "yes" } else { "no" }
    );
    serve_until_shutdown(&server, &ready).await?;
    cron.abort();
    close_embedded(persist).await?;
    tracing::info!("sessiond stopped; data is on disk");
    Ok(())
}

/// Gateway mode: sessions on Redis/Valkey upstreams.
async fn run_gateway(config: Config, opts: UpstreamOptions) -> Result<(), String> {
    let url = opts.url.to_string();
    let upstream = Upstream::start(opts).await?;
    let server = Arc::new(Server::new(upstream, config.clone()));
    let ready = format!(
        "sessiond {} ready (gateway to {url})",
        env!("CARGO_PKG_VERSION")
    );
    serve_until_shutdown(&server, &ready).await?;
    tracing::info!("sessiond stopped");
    Ok(())
}

/// Binds the listeners, serves until SHUTDOWN or a signal, then stops accepting and gives
/// connections up to [`DRAIN`] to finish the commands they are executing.
async fn serve_until_shutdown<S: Deployment>(
    server: &Arc<Server<S>>,
    ready: &str,
) -> Result<(), String> {
    let config = &server.config;
    // The ACL file's users, before any client can connect; a bad line stops the start.
    server
        .settings
        .acl
        .load_file_at_start(config.requirepass.as_deref())
        .map_err(|e| e.trim_start_matches("ERR ").to_string())?;
    if let Some(a) = &config.admin {
        crate::admin::start(server.clone(), a).await?;
    }
    let mut tasks = Vec::new();
    // Copies of the listening sockets for a busy script's rescue acceptor (one worker only).
    let single = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    let mut dups = Vec::new();
    for addr in &config.listen {
        let l = bind_tcp(*addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        tracing::info!(
            "listening on {}",
            l.local_addr().map(|a| a.to_string()).unwrap_or_default()
        );
        if single {
            if let Ok(fd) = dup_fd(&l) {
                dups.push(Dup::Tcp(std::net::TcpListener::from(fd)));
            }
        }
        tasks.push(tokio::spawn(accept_tcp(server.clone(), l)));
    }
    if let Some(opts) = &config.tls {
        let tls = Arc::new(crate::tls::TlsServer::new(opts.clone())?);
        let _ = server.tls.set(tls.clone());
        let mut ips: Vec<std::net::IpAddr> = config.listen.iter().map(|a| a.ip()).collect();
        ips.dedup();
        for ip in ips {
            let addr = std::net::SocketAddr::new(ip, opts.port);
            let l = bind_tcp(addr)
                .await
                .map_err(|e| format!("cannot listen (TLS) on {addr}: {e}"))?;
            tracing::info!(
                "listening (TLS) on {}",
                l.local_addr().map(|a| a.to_string()).unwrap_or_default()
            );
            tasks.push(tokio::spawn(crate::server::listener::accept_tls(
                server.clone(),
                l,
                tls.clone(),
            )));
        }
    }
    if let Some(path) = &config.unixsocket {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path)
            .map_err(|e| format!("cannot listen on unix socket {path}: {e}"))?;
        tracing::info!("listening on unix socket {path}");
        if single {
            if let Ok(fd) = dup_fd(&l) {
                dups.push(Dup::Unix(
                    std::os::unix::net::UnixListener::from(fd),
                    path.clone(),
                ));
            }
        }
        tasks.push(tokio::spawn(accept_unix(server.clone(), l, path.clone())));
    }
    if single {
        crate::server::listener::install_rescue(server, dups);
    }
    tracing::info!("{ready}");
    let auth_log = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                server.auth_failures.flush(false);
            }
        })
    };

    // SIGHUP: re-read the configuration file (`server/reload.rs`).
    let hup = {
        let server = server.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot handle SIGHUP: reload with `sessiond ctl reload`");
                return;
            };
            while hup.recv().await.is_some() {
                let s = server.clone();
                // Reading and checking the file is blocking work: not on a worker thread.
                let _ =
                    tokio::task::spawn_blocking(move || crate::server::reload::reload_and_log(&s))
                        .await;
            }
        })
    };

    wait_for_shutdown(server).await;
    hup.abort();
    auth_log.abort();
    server.auth_failures.flush(true);
    tracing::info!("shutting down");
    server.begin_shutdown();
    for t in tasks {
        let _ = t.await;
    }
    let deadline = Instant::now() + DRAIN;
    while server.clients.count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(path) = &config.unixsocket {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Returns on SIGTERM, SIGINT or the SHUTDOWN command.
async fn wait_for_shutdown<S: Deployment>(server: &Server<S>) {
    use tokio::signal::unix::{signal, SignalKind};
    let requested = async {
        loop {
            let n = server.shutdown.notified();
            if server.shutting_down.load(Ordering::SeqCst) {
                return;
            }
            n.await;
        }
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we still serve; SHUTDOWN still works.
        requested.await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = requested => {}
    }
}
