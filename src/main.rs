//! The `sessiond` binary: command-line parsing and logging set-up; everything else is in the
//! library.

use clap::{Parser, Subcommand};
use sessiond::config::{Config, ServeArgs};

/// sessiond — a session store that speaks the Redis protocol.
///
/// Point any Redis session handler (phpredis, redis-py, connect-redis, redis-cli…) at it.
#[derive(Parser)]
#[command(name = "sessiond", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum CtlCommand {
    /// The migration's stage, percentage and comparison counters.
    #[command(subcommand)]
    Migration(MigrationCommand),
}

#[derive(Subcommand)]
enum MigrationCommand {
    /// Show the current stage, percentage and counters.
    Status {
        /// Print the full JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change the stage and/or percentage (both at once, live).
    Set {
        #[arg(long)]
        stage: Option<String>,
        #[arg(long)]
        percent: Option<f64>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Talk to a running sessiond's admin API (--admin-listen).
    Ctl {
        /// The admin API address.
        #[arg(long, env = "SESSIOND_ADMIN", default_value = "127.0.0.1:6381")]
        admin: String,
        /// Bearer token; default: SESSIOND_ADMIN_TOKEN or <dir>/admin.token.
        #[arg(long, env = "SESSIOND_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The server's data directory (where a generated token is).
        #[arg(long, env = "SESSIOND_DIR", default_value = "sessiond-data")]
        dir: std::path::PathBuf,
        #[command(subcommand)]
        command: CtlCommand,
    },
    /// Run the session store (embedded in-memory engine) on 127.0.0.1:6380 by default.
    Serve(Box<ServeArgs>),
    /// Check a log or snapshot file, or every file of a data directory; with --fix, repair
    /// it: a torn tail is cut off, a damaged region cut out, every valid record kept, and the
    /// original saved as FILE.bak. Exits 0 when everything is (now) valid, 1 otherwise.
    CheckAof {
        /// Repair the damage found.
        #[arg(long)]
        fix: bool,
        /// A log-N.aof or snapshot-N.sdb file, or a data directory.
        path: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckAof { fix, path } => match sessiond::persist::check::check(&path, fix) {
            Ok(reports) => {
                for r in &reports {
                    println!("{}", sessiond::persist::check::describe(r));
                }
                if reports.iter().all(|r| r.ok() || r.fixed) {
                    std::process::ExitCode::SUCCESS
                } else {
                    println!("damage found; run again with --fix to repair it");
                    std::process::ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("sessiond check-aof: {e}");
                std::process::ExitCode::from(2)
            }
        },
        Command::Ctl {
            admin,
            token,
            dir,
            command: CtlCommand::Migration(m),
        } => {
            let t = sessiond::ctl::Target { admin, token, dir };
            let r = match m {
                MigrationCommand::Status { json } => sessiond::ctl::status(&t).map(|v| {
                    if json {
                        v.to_string()
                    } else {
                        sessiond::ctl::describe(&v)
                    }
                }),
                MigrationCommand::Set { stage, percent } => {
                    sessiond::ctl::set(&t, stage.as_deref(), percent)
                        .map(|v| sessiond::ctl::describe(&v))
                }
            };
            match r {
                Ok(text) => {
                    println!("{text}");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sessiond ctl: {e}");
                    std::process::ExitCode::from(1)
                }
            }
        }
        Command::Serve(args) => {
            let cfg = match Config::resolve(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("sessiond: {e}");
                    return std::process::ExitCode::from(2);
                }
            };
            let _guard = sessiond::logging::init(&cfg);
            let threads = cfg.effective_threads();
            // One worker: tokio's current-thread scheduler, with no work-stealing machinery
            // (no cross-thread wake-ups per request). Several: the multi-thread scheduler.
            let mut builder = if threads == 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(threads);
                b
            };
            builder.enable_all().thread_name("sessiond-worker");
            let rt = match builder.build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("sessiond: cannot start runtime: {e}");
                    return std::process::ExitCode::from(1);
                }
            };
            match rt.block_on(sessiond::serve::run(cfg)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("sessiond: {e}");
                    std::process::ExitCode::from(1)
                }
            }
        }
    }
}
