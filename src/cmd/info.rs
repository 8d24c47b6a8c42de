//! `INFO [section ...]` with Redis's section and field names, so dashboards and client
//! libraries that parse INFO work unchanged.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::args::lossy;
use super::{CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::util::size::human;

pub fn info<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let wanted: Vec<String> = a[1..]
        .iter()
        .map(|s| lossy(s).to_ascii_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| matches!(w.as_str(), "all" | "default" | "everything"));
    let text = render(cx, |s| all || wanted.iter().any(|w| w == s));
    cx.out.verbatim(text.as_bytes());
    Ok(())
}

pub fn rss_bytes() -> u64 {
    // /proc/self/statm: size resident ... in pages.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn cpu_seconds() -> (f64, f64) {
    // /proc/self/stat fields 14 and 15: utime, stime in clock ticks (100 Hz on Linux).
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    let Some(after) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return (0.0, 0.0);
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (tick(12), tick(11))
}

/// Renders the selected sections. Pure formatting; the numbers come from the store, the
/// client registry and the server counters.
pub fn render<S: Deployment>(cx: &Ctx<'_, '_, S>, want: impl Fn(&str) -> bool) -> String {
    let srv = cx.server;
    let st = srv.store.stats(cx.now);
    let mut sections: Vec<String> = Vec::new();
    let mut o = String::new();
    if want("server") {
        let port = srv.config.listen.first().map_or(0, |a| a.port());
        let uptime = srv.started.elapsed().as_secs();
        let _ = write!(
            o,
            "# Server\r\nredis_version:{}\r\nsessiond_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nexecutable:{}\r\nconfig_file:{}\r\nlog_lines_dropped:{}\r\n",
            crate::REDIS_COMPAT_VERSION,
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            srv.run_id,
            port,
            crate::clock::now_us(),
            uptime,
            uptime / 86400,
            std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            srv.config.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            crate::logging::dropped(),
        );
        sections.push(std::mem::take(&mut o));
    }
    if want("clients") {
        let _ = write!(
            o,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\ntracking_clients:0\r\npubsub_clients:{}\r\n",
            srv.clients.count(),
            srv.settings.maxclients.load(Ordering::Relaxed),
            srv.store.engine().map_or(0, |e| e.blocked_clients()),
            srv.pubsub.subscribers(),
        );
        sections.push(std::mem::take(&mut o));
    }
    if want("memory") {
        let rss = rss_bytes();
        let _ = write!(
            o,
            "# Memory\r\nused_memory:{}\r\nused_memory_human:{}\r\nused_memory_rss:{}\r\nused_memory_rss_human:{}\r\nused_memory_peak:{}\r\nused_memory_peak_human:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nevicted_keys:{}\r\nexpired_keys:{}\r\nmem_allocator:libc\r\n",
            st.used_memory,
            human(st.used_memory),
            rss,
            human(rss),
            st.peak_memory,
            human(st.peak_memory),
            st.maxmemory,
            human(st.maxmemory),
            st.maxmemory_policy,
            st.evicted_keys,
            st.expired_keys,
        );
        // Scripts: the EVAL cache and the FUNCTION libraries (as Redis 7 reports them).
        let (cached, cached_bytes) = cx.server.scripts.cached();
        let (libraries, functions) = cx.server.scripts.libraries().counts();
        let _ = write!(
            o,
            "used_memory_scripts_eval:{cached_bytes}\r\nnumber_of_cached_scripts:{cached}\r\nnumber_of_functions:{functions}\r\nnumber_of_libraries:{libraries}\r\n",
        );
        sections.push(std::mem::take(&mut o));
    }
    if want("persistence") {
        o.push_str("# Persistence\r\n");
        match &srv.persist {
            Some(p) => {
                for (k, v) in p.info_fields() {
                    let _ = write!(o, "{k}:{v}\r\n");
                }
            }
            None => o.push_str("loading:0\r\naof_enabled:0\r\n"),
        }
        sections.push(std::mem::take(&mut o));
    }
    if want("stats") {
        let s = &srv.stats;
        let _ = write!(
            o,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\n",
            s.connections_received.get(),
            s.commands_processed.get(),
            s.net_input_bytes.get(),
            s.net_output_bytes.get() + srv.pubsub.direct_bytes.load(Ordering::Relaxed),
            s.rejected_connections.get(),
            st.expired_keys,
            st.evicted_keys,
            st.keyspace_hits,
            st.keyspace_misses,
        );
        sections.push(std::mem::take(&mut o));
    }
    if want("replication") {
        o.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n");
        sections.push(std::mem::take(&mut o));
    }
    if want("cpu") {
        let (sys, user) = cpu_seconds();
        let _ = write!(
            o,
            "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\n"
        );
        sections.push(std::mem::take(&mut o));
    }
    for (name, text) in srv.store.info_sections() {
        if want(name) {
            sections.push(text);
        }
    }
    if want("keyspace") {
        o.push_str("# Keyspace\r\n");
        for (db, keys, expires, avg) in &st.keyspace {
            let _ = write!(o, "db{db}:keys={keys},expires={expires},avg_ttl={avg}\r\n");
        }
        sections.push(std::mem::take(&mut o));
    }
    sections.join("\r\n")
}
