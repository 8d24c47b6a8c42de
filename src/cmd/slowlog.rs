//! `SLOWLOG` and `LATENCY`: what was slow, as Redis's `slowlog.c` and `latency.c` report it.
//! The logs themselves live in `metrics/` (recording happens for every command in
//! [`super::execute_checked_at`]); this file parses the commands and writes the replies.

use super::table;
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;

const SLOWLOG_HELP: &[&str] = &[
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
];

const LATENCY_HELP: &[&str] = &[
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
];

/// The subcommand's table entry, with Redis's errors for an unknown one and a wrong count
/// of arguments (checked against the subcommand's own arity, as Redis's lookup does).
pub(super) fn sub_spec(parent: &str, a: &[&[u8]]) -> Result<&'static table::Spec, CmdError> {
    let unknown = || {
        CmdError::msg(format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            String::from_utf8_lossy(a[1]),
            parent.to_ascii_uppercase()
        ))
    };
    let spec = table::find(parent.as_bytes()).ok_or_else(unknown)?;
    let sub = table::subcommand(spec, a).ok_or_else(unknown)?;
    if !table::arity_ok(sub.arity, a.len()) {
        return Err(super::wrong_args(sub.name));
    }
    Ok(sub)
}

/// `SLOWLOG GET [count] | LEN | RESET | HELP`.
pub fn slowlog<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let sub = sub_spec("slowlog", a)?;
    let log = &cx.server.slowlog;
    match sub.sub_name() {
        "help" => cx.out.help(SLOWLOG_HELP),
        "len" => cx.out.int(log.len() as i64),
        "reset" => {
            log.reset();
            cx.out.ok();
        }
        "get" => {
            if a.len() > 3 {
                return Err(CmdError::msg(
                    "ERR unknown subcommand or wrong number of arguments for 'GET'. Try SLOWLOG HELP.",
                ));
            }
            let count = match a.get(2) {
                None => 10,
                Some(c) => {
                    let bad = || CmdError::msg("ERR count should be greater than or equal to -1");
                    let n = std::str::from_utf8(c)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or_else(bad)?;
                    match n {
                        -1 => usize::MAX,
                        n if n < -1 => return Err(bad()),
                        n => n as usize,
                    }
                }
            };
            let entries = log.newest(count);
            cx.out.array(entries.len());
            for e in entries {
                cx.out.array(6);
                cx.out.int(e.id as i64);
                cx.out.int(e.unix_secs);
                cx.out.int(e.micros as i64);
                cx.out.array(e.args.len());
                for arg in &e.args {
                    cx.out.bulk(arg);
                }
                cx.out.bulk(e.peer.as_bytes());
                cx.out.bulk(e.name.as_bytes());
            }
        }
        other => {
            return Err(CmdError::msg(format!(
                "ERR unknown subcommand '{other}'. Try SLOWLOG HELP."
            )))
        }
    }
    Ok(())
}

/// `LATENCY LATEST | HISTORY event | RESET [event …] | HELP`. DOCTOR, GRAPH and HISTOGRAM
/// are refused with an error that says so: their figures are in `/metrics` instead.
pub fn latency<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let sub = sub_spec("latency", a)?;
    let mon = &cx.server.latency;
    match sub.sub_name() {
        "help" => cx.out.help(LATENCY_HELP),
        "latest" => {
            let latest = mon.latest();
            cx.out.array(latest.len());
            for (name, t, ms, max) in latest {
                cx.out.array(4);
                cx.out.bulk(name.as_bytes());
                cx.out.int(t);
                cx.out.int(ms as i64);
                cx.out.int(max as i64);
            }
        }
        "history" => {
            let h = mon.history(a[2]);
            cx.out.array(h.len());
            for (t, ms) in h {
                cx.out.array(2);
                cx.out.int(t);
                cx.out.int(ms as i64);
            }
        }
        "reset" => cx.out.int(mon.reset(&a[2..]) as i64),
        other => {
            return Err(CmdError::msg(format!(
                "ERR LATENCY {} is not supported by sessiond: use LATENCY LATEST/HISTORY, or the command latency histograms of /metrics on the admin listener",
                other.to_ascii_uppercase()
            )))
        }
    }
    Ok(())
}

/// How many leading arguments of `args` the slow log shows as they are: the name, and the
/// subcommand of a container command (`CONFIG GET`, `CLIENT LIST`).
pub fn shown_args(spec: &table::Spec, args: &[&[u8]]) -> usize {
    if spec.subcommands.is_empty() {
        1
    } else {
        2.min(args.len())
    }
}
