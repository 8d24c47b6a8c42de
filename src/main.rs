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
    /// Re-read the configuration file: apply what can change live, report the rest (as
    /// SIGHUP does). An invalid file is refused and the running configuration kept.
    Reload {
        /// Print the full JSON.
        #[arg(long)]
        json: bool,
    },
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

#[derive(clap::Args)]
struct Sides {
    /// The store sessions move from: mysql://…, files:///dir, redis://…, embedded.
    #[arg(long)]
    from: String,
    /// The store sessions move to.
    #[arg(long)]
    to: String,
    /// What clients put before the session id (for SQL and file stores).
    #[arg(long, default_value = "PHPREDIS_SESSION:")]
    client_prefix: String,
    /// What the legacy store puts before it.
    #[arg(long, default_value = "")]
    legacy_prefix: String,
    /// Data directory, when one side is `embedded` (no server may be running on it).
    #[arg(long, default_value = "sessiond-data")]
    dir: std::path::PathBuf,
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Copy every unexpired session from --from to --to with its remaining TTL, never over a
    /// session already in --to; resumable with --checkpoint.
    Backfill {
        #[command(flatten)]
        sides: Sides,
        /// Sessions per second at most (0: unlimited).
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        /// Sessions per batch (and per checkpoint).
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// File that records progress; an interrupted run continues from it.
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Compare every unexpired session of --from with --to: missing, different value, TTL
    /// apart by more than the tolerance. Exits 1 if anything differs.
    Verify {
        #[command(flatten)]
        sides: Sides,
        #[arg(long, default_value_t = 2000)]
        ttl_tolerance_ms: i64,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Bulk tools for a migration between two stores.
    #[command(subcommand)]
    Migrate(MigrateCommand),
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
        Command::Migrate(m) => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("sessiond: cannot start runtime: {e}");
                    return std::process::ExitCode::from(1);
                }
            };
            match rt.block_on(migrate(m)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("sessiond migrate: {e}");
                    std::process::ExitCode::from(2)
                }
            }
        }
        Command::Ctl {
            admin,
            token,
            dir,
            command,
        } => {
            let t = sessiond::ctl::Target { admin, token, dir };
            let m = match command {
                CtlCommand::Migration(m) => m,
                CtlCommand::Reload { json } => {
                    return match sessiond::ctl::reload(&t) {
                        Ok(v) => {
                            println!(
                                "{}",
                                if json {
                                    v.to_string()
                                } else {
                                    sessiond::ctl::describe_reload(&v)
                                }
                            );
                            std::process::ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("sessiond ctl: {e}");
                            std::process::ExitCode::from(1)
                        }
                    };
                }
            };
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

async fn open_sides(
    sides: &Sides,
) -> Result<
    (
        sessiond::migrate::any::AnyStore,
        sessiond::migrate::any::AnyStore,
        Vec<Option<std::sync::Arc<sessiond::persist::Persistence>>>,
    ),
    String,
> {
    use sessiond::config::StoreUrl;
    let keys = sessiond::legacy::keymap::KeyMap {
        client_prefix: sides.client_prefix.clone().into_bytes(),
        legacy_prefix: sides.legacy_prefix.clone().into_bytes(),
    };
    let config = Config {
        dir: sides.dir.clone(),
        ..Config::default()
    };
    let (from, pf) =
        sessiond::serve::open_store(&StoreUrl::parse(&sides.from)?, &keys, &config).await?;
    let (to, pt) =
        sessiond::serve::open_store(&StoreUrl::parse(&sides.to)?, &keys, &config).await?;
    Ok((from, to, vec![pf, pt]))
}

async fn migrate(m: MigrateCommand) -> Result<std::process::ExitCode, String> {
    use sessiond::migrate::backfill;
    match m {
        MigrateCommand::Backfill {
            sides,
            rate,
            batch,
            checkpoint,
            quiet,
        } => {
            let (from, to, persist) = open_sides(&sides).await?;
            let from = std::sync::Arc::new(from);
            let started = std::time::Instant::now();
            let o = backfill::BackfillOptions {
                rate,
                batch,
                checkpoint,
                progress_bar: !quiet,
            };
            let p = backfill::backfill(&from, &to, &o).await?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "backfill done: {} sessions seen, {} copied, {} already there (kept), {} expired meanwhile, {} errors; this run {} sessions in {:.1} s, {:.0} sessions/s",
                p.seen, p.copied, p.kept, p.gone, p.errors, p.this_run, secs,
                p.this_run as f64 / secs.max(1e-9)
            );
            for pers in persist {
                sessiond::serve::close_store(pers).await?;
            }
            Ok(if p.errors == 0 {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            })
        }
        MigrateCommand::Verify {
            sides,
            ttl_tolerance_ms,
        } => {
            let (from, to, persist) = open_sides(&sides).await?;
            let d = backfill::verify(&from, &to, ttl_tolerance_ms).await?;
            println!(
                "verify: {} sessions checked; {} missing, {} with another value, {} with a TTL apart by more than {} ms, {} errors",
                d.checked, d.missing, d.value, d.ttl, ttl_tolerance_ms, d.errors
            );
            for s in &d.samples {
                println!("  {s}");
            }
            for pers in persist {
                sessiond::serve::close_store(pers).await?;
            }
            Ok(if d.none() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            })
        }
    }
}
