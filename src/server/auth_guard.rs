//! Password guessing and protected mode: what a server reachable by strangers needs.
//!
//! **Guessing.** One connection pipelining wrong passwords used to get ~300k answers a second
//! and write a log line for each. Now the k-th failure on a connection is answered after
//! (k−1)×100 ms and the tenth closes the connection, so one connection guesses about ten
//! times in 4.5 s instead of a million; the replies stay Redis's (`WRONGPASS`). The log gets
//! one line per address and 10 s window — "N failed AUTH from ADDR in the last 10 s" — at
//! most [`MAX_ADDRS_LOGGED`] addresses per window, the rest summed up.
//!
//! **Protected mode**, applied to the live state: while no password is set, only local
//! clients — 127.0.0.1, ::1 and the unix socket, the same rule as Redis's — may use the
//! server; any other is refused with `-DENIED`. So removing the password with `CONFIG SET
//! requirepass ""` or turning protected mode back on takes effect for every connection
//! that has not authenticated, not only for the next start.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use crate::logging::THROTTLE_WINDOW_MS;

/// Failed AUTHs after which a connection is closed.
pub const MAX_FAILURES_PER_CONNECTION: u32 = 10;
/// Addresses named in one window's log lines.
const MAX_ADDRS_LOGGED: usize = 16;
/// Addresses counted per window; beyond it failures are only summed (bounded memory).
const MAX_ADDRS_COUNTED: usize = 4096;

pub const DENIED: &str = "DENIED sessiond is in protected mode: no password is set, so only \
    local clients (127.0.0.1, ::1, the unix socket) may connect. Set a password with CONFIG \
    SET requirepass, or, on a trusted network only, send CONFIG SET protected-mode no from a \
    local client.";

/// How long the reply to a connection's `failures`-th failed AUTH waits.
pub fn failure_delay(failures: u32) -> Duration {
    Duration::from_millis(100 * u64::from(failures.saturating_sub(1).min(10)))
}

/// Whether a client address counts as local for protected mode: exactly 127.0.0.1 or ::1
/// (IPv4-mapped too), or anything that is not an IP address (the unix socket).
pub fn is_local(addr: &str) -> bool {
    match addr.parse::<SocketAddr>() {
        Ok(a) => match a.ip() {
            IpAddr::V4(ip) => ip == std::net::Ipv4Addr::LOCALHOST,
            IpAddr::V6(ip) => {
                ip == std::net::Ipv6Addr::LOCALHOST
                    || ip.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
            }
        },
        Err(_) => true,
    }
}

#[derive(Default)]
struct Window {
    started_ms: i64,
    by_addr: HashMap<String, u64>,
    uncounted: u64,
}

/// Failed AUTHs per client address, logged once per window.
#[derive(Default)]
pub struct AuthFailures {
    window: Mutex<Window>,
}

impl AuthFailures {
    /// Counts a failure from `addr` (`ip:port`; the port is dropped).
    pub fn record(&self, addr: &str) {
        let ip = addr
            .parse::<SocketAddr>()
            .map_or_else(|_| addr.to_string(), |a| a.ip().to_string());
        let now = crate::clock::now_ms();
        let ended = {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let ended = (now - w.started_ms >= THROTTLE_WINDOW_MS).then(|| take(&mut w, now));
            let counted = w.by_addr.len();
            match w.by_addr.get_mut(&ip) {
                Some(n) => *n += 1,
                None if counted < MAX_ADDRS_COUNTED => {
                    w.by_addr.insert(ip, 1);
                }
                None => w.uncounted += 1,
            }
            ended
        };
        if let Some(w) = ended {
            log(w);
        }
    }

    /// Logs the window if it is over (called every few seconds, so a burst is reported
    /// even when no failure follows it), or whatever it holds with `force` (at shutdown).
    pub fn flush(&self, force: bool) {
        let now = crate::clock::now_ms();
        let ended = {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            (force || now - w.started_ms >= THROTTLE_WINDOW_MS).then(|| take(&mut w, now))
        };
        if let Some(w) = ended {
            log(w);
        }
    }
}

fn take(w: &mut Window, now: i64) -> Window {
    let old = std::mem::take(w);
    w.started_ms = now;
    old
}

fn log(w: Window) {
    let mut addrs: Vec<(String, u64)> = w.by_addr.into_iter().collect();
    addrs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut rest = w.uncounted;
    for (i, (addr, n)) in addrs.into_iter().enumerate() {
        if i < MAX_ADDRS_LOGGED {
            tracing::warn!("{n} failed AUTH from {addr} in the last 10 s");
        } else {
            rest += n;
        }
    }
    if rest > 0 {
        tracing::warn!("{rest} failed AUTH from other addresses in the last 10 s");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_is_exactly_loopback_one_or_the_unix_socket() {
        assert!(is_local("127.0.0.1:5000"));
        assert!(is_local("[::1]:5000"));
        assert!(is_local("[::ffff:127.0.0.1]:5000"));
        assert!(is_local("/run/sessiond.sock:0"));
        assert!(!is_local("127.0.0.2:5000"));
        assert!(!is_local("10.1.2.3:5000"));
        assert!(!is_local("[fe80::1]:5000"));
    }

    #[test]
    fn delays_grow_and_are_capped() {
        assert_eq!(failure_delay(1), Duration::ZERO);
        assert_eq!(failure_delay(2), Duration::from_millis(100));
        assert_eq!(failure_delay(50), Duration::from_secs(1));
    }

    #[test]
    fn failures_are_counted_per_address_within_bounds() {
        let f = AuthFailures::default();
        f.window.lock().unwrap().started_ms = crate::clock::now_ms();
        for i in 0..(MAX_ADDRS_COUNTED + 10) {
            f.record(&format!("10.0.{}.{}:1", i / 250, i % 250));
        }
        f.record("10.0.0.0:2");
        let w = f.window.lock().unwrap();
        assert_eq!(w.by_addr.len(), MAX_ADDRS_COUNTED);
        assert_eq!(w.by_addr.get("10.0.0.0"), Some(&2));
        assert_eq!(w.uncounted, 10);
    }
}
