//! Persistence: the data directory, the append-only log and its rewrites.

use super::*;

pub(super) static ROWS: &[Def] = &[
    Def::new(
        "dir",
        Text,
        "DIR",
        "Data directory: the append-only log, snapshots and their manifest (created if \
         missing; one server per directory). Default ./sessiond-data.",
        |c, v| {
            c.dir = text(v).ok_or("must not be empty")?.into();
            Ok(())
        },
    )
    .get(|r| {
        let dir = &r.config().dir;
        std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.clone())
            .display()
            .to_string()
    }),
    Def::new(
        "appendonly",
        Bool,
        "yes|no",
        "`yes`: log every write before acknowledging it, so a restart or crash logs nobody out. \
         `no`: only snapshots (SAVE, BGSAVE, and at a graceful shutdown). Default yes.",
        |c, v| {
            c.appendonly = yes_no(v)?;
            Ok(())
        },
    )
    .get(|r| yes(r.journal().is_some())),
    Def::new(
        "appendfsync",
        Text,
        "POLICY",
        "When the log is fsynced: `always` (before each reply; concurrent clients share one \
         fsync), `everysec` (at most ~1 s of acknowledged writes lost on power loss; none on a \
         process crash), `no` (the OS decides). Default everysec.",
        |c, v| {
            c.appendfsync = one_of(v, &["always", "everysec", "no"], Fsync::parse)?;
            Ok(())
        },
    )
    .get(|r| {
        r.journal()
            .map_or(r.config().appendfsync, |j| j.policy())
            .name()
            .into()
    })
    .mode(|r| match r.journal() {
        Some(_) => Ok(()),
        None => Err("appendonly is off (start with --appendonly yes)".into()),
    })
    .live(|r, c, _| {
        if let Some(j) = r.journal() {
            j.set_policy(c.appendfsync);
        }
    }),
    Def::new(
        "auto-aof-rewrite-percentage",
        Int,
        "PERCENT",
        "Rewrite (compact) the log when it exceeds this percentage of the last snapshot's size; \
         0 disables automatic rewrites. Default 100.",
        |c, v| {
            c.auto_aof_rewrite_percentage = count(v)?;
            Ok(())
        },
    )
    .get(|r| r.config().auto_aof_rewrite_percentage.to_string()),
    Def::new(
        "auto-aof-rewrite-min-size",
        Size,
        "BYTES",
        "…but not before the log reaches this size. Default 64mb.",
        |c, v| {
            c.auto_aof_rewrite_min_size = memory(v)?;
            Ok(())
        },
    )
    .get(|r| r.config().auto_aof_rewrite_min_size.to_string()),
    Def::new(
        "group-commit-window-us",
        Int,
        "MICROS",
        "`appendfsync always`: how long an fsync round may be held open for more concurrent \
         writers to share it, in microseconds; 0 disables. Only when at least two writers are \
         waiting, and never longer than it takes every connected client to join. Default 1000.",
        |c, v| {
            c.group_commit_window_us = int_in(v, 0, 1_000_000)? as u64;
            Ok(())
        },
    )
    .get(|r| r.config().group_commit_window_us.to_string()),
    Def::shown("save", |_| String::new()),
];
