//! `sessiond serve`: build the store and server from the configuration, bind, run until a
//! signal, shut down.

use std::sync::Arc;

use tokio::net::UnixListener;

use crate::config::Config;
use crate::engine::{Engine, EngineConfig};
use crate::server::listener::{accept_tcp, accept_unix, bind_tcp, check_protected_mode};
use crate::server::Server;

pub async fn run(config: Config) -> Result<(), String> {
    check_protected_mode(
        &config.listen,
        config.requirepass.is_some(),
        config.protected_mode,
    )?;
    let engine = Engine::new(EngineConfig {
        databases: config.databases,
        maxmemory: config.maxmemory,
        policy: config.maxmemory_policy,
        active_expiry: true,
    });
    let server = Arc::new(Server::new(engine, config.clone()));

    let mut tasks = Vec::new();
    for addr in &config.listen {
        let l = bind_tcp(*addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        tracing::info!(
            "listening on {}",
            l.local_addr().map(|a| a.to_string()).unwrap_or_default()
        );
        tasks.push(tokio::spawn(accept_tcp(server.clone(), l)));
    }
    if let Some(path) = &config.unixsocket {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path)
            .map_err(|e| format!("cannot listen on unix socket {path}: {e}"))?;
        tracing::info!("listening on unix socket {path}");
        tasks.push(tokio::spawn(accept_unix(server.clone(), l, path.clone())));
    }
    tracing::info!(
        "sessiond {} ready (embedded engine, {} databases)",
        env!("CARGO_PKG_VERSION"),
        config.databases
    );

    wait_for_signal().await;
    tracing::info!("shutting down");
    server.begin_shutdown();
    for t in tasks {
        let _ = t.await;
    }
    if let Some(path) = &config.unixsocket {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we can still run; ctrl-c ends the process the default way.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
