//! Settings of the server itself: listeners, clients and their limits, memory, keyspace
//! notifications, the slow log and latency monitor, scripts, threads and logging.

use super::*;

pub(super) static ROWS: &[Def] = &[
    Def::new(
        "listen",
        List,
        "HOST:PORT",
        "Address to listen on, HOST:PORT. May be repeated (or comma-separated in the env var). \
         Default 127.0.0.1:6380.",
        |c, v| {
            c.listen = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(crate::config::parse_addr)
                .collect::<Result<_, _>>()?;
            if c.listen.is_empty() {
                return Err("expected at least one HOST:PORT".into());
            }
            Ok(())
        },
    ),
    Def::shown("bind", |r| {
        r.config()
            .listen
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }),
    Def::shown("port", |r| {
        r.config()
            .listen
            .first()
            .map_or(0, |a| a.port())
            .to_string()
    }),
    Def::new(
        "unixsocket",
        Text,
        "PATH",
        "Also listen on this unix socket path (as Redis's `unixsocket`).",
        |c, v| {
            c.unixsocket = text(v);
            Ok(())
        },
    )
    .get(|r| r.config().unixsocket.clone().unwrap_or_default()),
    Def::new(
        "requirepass",
        Text,
        "PASSWORD",
        "Password clients must give with AUTH or HELLO … AUTH (as Redis's `requirepass`).",
        |c, v| {
            c.requirepass = text(v);
            Ok(())
        },
    )
    .secret()
    .get(|r| r.settings().requirepass().unwrap_or_default())
    .live(|r, c, _| r.settings().set_requirepass(c.requirepass.clone())),
    Def::new(
        "aclfile",
        Text,
        "PATH",
        "ACL users file, in Redis's format (`user <name> <rules…>` per line): loaded at start, \
         re-read by ACL LOAD, written by ACL SAVE (as Redis's `aclfile`).",
        |c, v| {
            c.aclfile = text(v).map(PathBuf::from);
            Ok(())
        },
    )
    .get(|r| {
        r.config()
            .aclfile
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }),
    Def::new(
        "acllog-max-len",
        Int,
        "N",
        "Entries ACL LOG keeps (refused commands, failed AUTHs). Default 128.",
        |c, v| {
            c.acllog_max_len = count(v)? as usize;
            Ok(())
        },
    )
    .get(|r| r.settings().acl.log.max_len.load(R).to_string())
    .live(|r, c, _| r.settings().acl.log.set_max_len(c.acllog_max_len)),
    Def::new(
        "maxmemory",
        Size,
        "BYTES",
        "Memory limit for stored sessions: bytes, or with a unit (`512mb`, `2gb`; `k`=1000, \
         `kb`=1024 as in Redis). 0 means no limit. Default 0.",
        |c, v| {
            c.maxmemory = memory(v)?;
            Ok(())
        },
    )
    .get(|r| r.memory().0.to_string())
    .mode(embedded_memory)
    .live(|r, c, _| r.set_maxmemory(c.maxmemory)),
    Def::new(
        "maxmemory-policy",
        Text,
        "POLICY",
        "What to do when `maxmemory` is reached: `noeviction` (refuse writes), `volatile-ttl` \
         (evict the sessions closest to expiring), `allkeys-lru`. Default noeviction.",
        |c, v| {
            c.maxmemory_policy = one_of(
                v,
                &["noeviction", "volatile-ttl", "allkeys-lru"],
                Policy::parse,
            )?;
            Ok(())
        },
    )
    .get(|r| r.memory().1)
    .mode(embedded_memory)
    .live(|r, c, _| r.set_maxmemory_policy(c.maxmemory_policy.name())),
    Def::shown("maxmemory-samples", |_| "5".into()),
    Def::new(
        "pack-text-values",
        Bool,
        "yes|no",
        "`yes`: a string value of 16 bytes to 4 KiB that is all ASCII is stored seven bits a \
         character, 1/8 less memory for the unpacking and packing on each read and write \
         (docs/BENCHMARKS.md, \"Memory for 1M sessions\"). Values already stored stay as they \
         are. Default yes.",
        |c, v| {
            c.pack_text_values = yes_no(v)?;
            Ok(())
        },
    )
    .get(|_| yes(crate::engine::pack_text()))
    .mode(embedded_memory)
    .live(|_, c, _| crate::engine::set_pack_text(c.pack_text_values)),
    Def::new(
        "databases",
        Int,
        "N",
        "Number of logical databases (SELECT 0..N-1). Default 16.",
        |c, v| {
            c.databases = int_in(v, 1, 1_000_000)? as usize;
            Ok(())
        },
    )
    .get(|r| r.databases().to_string()),
    Def::new(
        "protected-mode",
        Bool,
        "yes|no",
        "`yes`: without a password, refuse to listen on non-loopback addresses. Default yes.",
        |c, v| {
            c.protected_mode = yes_no(v)?;
            Ok(())
        },
    )
    .get(|r| yes(r.settings().protected_mode.load(R)))
    .live(|r, c, _| r.settings().protected_mode.store(c.protected_mode, R)),
    Def::new(
        "timeout",
        Int,
        "SECONDS",
        "Close client connections idle for this many seconds; 0 disables. Default 0.",
        |c, v| {
            c.timeout = int_in(v, 0, i64::from(i32::MAX))? as u64;
            Ok(())
        },
    )
    .get(|r| r.settings().timeout_secs.load(R).to_string())
    .live(|r, c, _| r.settings().timeout_secs.store(c.timeout, R)),
    Def::new(
        "maxclients",
        Int,
        "N",
        "Maximum simultaneous client connections. Default 10000.",
        |c, v| {
            c.maxclients = int_in(v, 1, i64::from(u32::MAX))? as usize;
            Ok(())
        },
    )
    .get(|r| r.settings().maxclients.load(R).to_string())
    .check(|_, c| match crate::server::fd_limit::max_fitting() {
        Some(fit) if c.maxclients > fit => Err(format!(
            "the open-file limit allows at most {fit} clients; raise it (ulimit -n) first"
        )),
        _ => Ok(()),
    })
    .live(|r, c, _| r.settings().maxclients.store(c.maxclients, R)),
    Def::new(
        "proto-max-bulk-len",
        Size,
        "BYTES",
        "Largest single argument (bulk string) a client may send. Default 512mb.",
        |c, v| {
            c.proto_max_bulk_len =
                memory_in(v, 1024 * 1024, u64::from(u32::MAX), "between 1mb and 4gb")?;
            Ok(())
        },
    )
    .get(|r| r.settings().proto_max_bulk_len.load(R).to_string())
    .live(|r, c, _| {
        r.settings()
            .proto_max_bulk_len
            .store(c.proto_max_bulk_len as i64, R)
    }),
    Def::new(
        "proto-max-multibulk-len",
        Int,
        "N",
        "Most arguments in one command. Default 1048576.",
        |c, v| {
            c.proto_max_multibulk_len = int_in(v, 1, i64::from(i32::MAX))? as usize;
            Ok(())
        },
    )
    .get(|r| r.settings().proto_max_multibulk_len.load(R).to_string())
    .live(|r, c, _| {
        r.settings()
            .proto_max_multibulk_len
            .store(c.proto_max_multibulk_len as i64, R)
    }),
    Def::new(
        "client-query-buffer-limit",
        Size,
        "BYTES",
        "Largest unprocessed input buffered per client before it is disconnected. Default 1gb.",
        |c, v| {
            c.client_query_buffer_limit = memory_in(v, 1024 * 1024, u64::MAX, "at least 1mb")?;
            Ok(())
        },
    )
    .get(|r| r.settings().client_query_buffer_limit.load(R).to_string())
    .live(|r, c, _| {
        r.settings()
            .client_query_buffer_limit
            .store(c.client_query_buffer_limit, R)
    }),
    Def::new(
        "client-output-buffer-limit",
        Text,
        "LIMITS",
        "When a client that does not read its replies is disconnected, in Redis's syntax \
         `normal HARD SOFT SECONDS` (also `pubsub …`, `replica …`). Default `normal 0 0 0` \
         (never: the client is waited on, and its replies stay bounded by backpressure).",
        // Over the classes already set: a value naming one class leaves the others.
        |c, v| {
            c.client_output_buffer_limit = c.client_output_buffer_limit.parse_over(v)?;
            Ok(())
        },
    )
    .get(|r| r.settings().output_limits().render())
    .live(|r, c, _| {
        r.settings().set_output_limits(c.client_output_buffer_limit);
        r.pubsub().set_limit(c.client_output_buffer_limit.pubsub);
    }),
    Def::new(
        "notify-keyspace-events",
        Text,
        "CLASSES",
        "Keyspace notifications to publish, in Redis's letters (`KEA`, `Ex` for expiry \
         events…). Default none.",
        |c, v| {
            crate::pubsub::parse_flags(v.as_bytes())
                .ok_or("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")?;
            c.notify_keyspace_events = v.to_string();
            Ok(())
        },
    )
    .get(|r| crate::pubsub::flags_to_string(r.pubsub().notify_flags.load(R)))
    .live(|r, c, _| {
        let flags = crate::pubsub::parse_flags(c.notify_keyspace_events.as_bytes());
        r.pubsub().notify_flags.store(flags.unwrap_or(0), R);
    }),
    Def::new(
        "slowlog-log-slower-than",
        Int,
        "MICROS",
        "Commands slower than this many microseconds go to the slow log (negative: none, \
         0: every command). Default 10000, as Redis.",
        |c, v| {
            c.slowlog_log_slower_than = int_from(v, -1)?;
            Ok(())
        },
    )
    .get(|r| r.slowlog().slower_than.load(R).to_string())
    .live(|r, c, _| r.slowlog().slower_than.store(c.slowlog_log_slower_than, R)),
    Def::new(
        "slowlog-max-len",
        Int,
        "N",
        "Entries the slow log keeps. Default 128.",
        |c, v| {
            c.slowlog_max_len = count(v)? as usize;
            Ok(())
        },
    )
    .get(|r| r.slowlog().max_len.load(R).to_string())
    .live(|r, c, _| r.slowlog().set_max_len(c.slowlog_max_len)),
    Def::new(
        "latency-monitor-threshold",
        Int,
        "MS",
        "The latency monitor samples events of at least this many milliseconds (0: off, the \
         default).",
        |c, v| {
            c.latency_monitor_threshold = count(v)?;
            Ok(())
        },
    )
    .get(|r| r.latency().threshold_ms.load(R).to_string())
    .live(|r, c, _| {
        r.latency()
            .threshold_ms
            .store(c.latency_monitor_threshold, R)
    }),
    Def::new(
        "busy-reply-threshold",
        Int,
        "MS",
        "A script running longer than this many milliseconds makes other clients' commands \
         answer -BUSY and can be stopped with SCRIPT KILL (Redis's `busy-reply-threshold`, \
         formerly `lua-time-limit`). Default 5000.",
        |c, v| {
            c.busy_reply_threshold = count(v)?;
            Ok(())
        },
    )
    .aliases(&["lua-time-limit"])
    .get(|r| r.scripts()[0].busy.threshold_ms.load(R).to_string())
    .live(|r, c, _| {
        for s in r.scripts() {
            s.busy.threshold_ms.store(c.busy_reply_threshold, R);
        }
    }),
    Def::new(
        "lua-allow-undeclared-keys",
        Bool,
        "yes|no",
        "`yes`: every script may touch keys it did not declare in KEYS, and so runs under every \
         shard lock (serially, as on Redis). Default `no`: a script holds only its declared \
         keys' shards, and touching another key is an error (see the README, \"Scripts\").",
        |c, v| {
            c.lua_allow_undeclared_keys = yes_no(v)?;
            Ok(())
        },
    )
    .get(|r| yes(r.scripts()[0].allow_undeclared.load(R)))
    .live(|r, c, _| {
        for s in r.scripts() {
            s.allow_undeclared.store(c.lua_allow_undeclared_keys, R);
        }
    }),
    Def::new(
        "lua-memory-limit",
        Size,
        "BYTES",
        "Memory one worker thread's Lua interpreter may use (`256mb` by default); a script \
         past it fails with \"not enough memory\".",
        |c, v| {
            c.lua_memory_limit = memory_in(v, 1024 * 1024, u64::MAX, "at least 1mb")?;
            Ok(())
        },
    )
    .get(|r| r.scripts()[0].memory_limit.load(R).to_string())
    .live(|r, c, _| {
        for s in r.scripts() {
            s.memory_limit.store(c.lua_memory_limit, R);
        }
    }),
    Def::new(
        "threads",
        Int,
        "N",
        "Worker threads serving connections. Default: one less than the number of CPU cores \
         (at least 1), leaving a core to the kernel's network work and co-located clients.",
        |c, v| {
            c.threads = int_in(v, 1, 1024)? as usize;
            Ok(())
        },
    ),
    Def::new(
        "loglevel",
        Text,
        "LEVEL",
        "Log verbosity: debug, verbose, notice, warning (Redis's names). Default notice.",
        |c, v| {
            let names = ["debug", "verbose", "notice", "warning"];
            c.loglevel = one_of(v, &names, |v| names.contains(&v).then(|| v.to_string()))?;
            Ok(())
        },
    )
    .get(|_| crate::logging::level().to_string())
    .live(|_, c, _| {
        if let Err(e) = crate::logging::set_level(&c.loglevel) {
            tracing::warn!("{e}");
        }
    }),
    Def::new(
        "logfile",
        Text,
        "PATH",
        "Log to this file instead of standard error. Logging never blocks requests: lines go \
         through a bounded buffer and are dropped (and counted) if the disk cannot keep up.",
        |c, v| {
            c.logfile = text(v);
            Ok(())
        },
    )
    .get(|r| r.config().logfile.clone().unwrap_or_default()),
    Def::new(
        "log-buffer-lines",
        Int,
        "N",
        "Log lines queued for the log writer before new ones are dropped (and counted in \
         INFO as log_lines_dropped) rather than slow a request down. Default 128000.",
        |c, v| {
            c.log_buffer_lines = int_from(v, 1)? as usize;
            Ok(())
        },
    ),
];
