//! Fitting `maxclients` to the process's open-file limit, as Redis does at start.
//!
//! Every client is a file descriptor, and the server needs some for itself (listeners, the
//! log, the data files, upstream connections). With `maxclients 10000` and a soft
//! `RLIMIT_NOFILE` of 1024 (a common default), clients past ~1000 would not be refused with
//! Redis's "max number of clients reached": `accept` would fail and they would hang. So at
//! start the soft limit is raised toward `maxclients + RESERVED` (up to the hard limit), and
//! if it still falls short, `maxclients` is lowered to fit, with a warning.

/// Descriptors kept for the server itself (Redis keeps 32).
pub const RESERVED: u64 = 32;

/// The soft and hard `RLIMIT_NOFILE`.
fn nofile() -> Option<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0)
        .then_some((r.rlim_cur, r.rlim_max))
}

fn set_soft(soft: u64, hard: u64) -> bool {
    let r = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0 }
}

/// The `maxclients` this process can serve: `wanted` if the descriptor limit allows (raising
/// the soft limit if needed), otherwise as many as it does (at least 1). `extra`: descriptors
/// needed besides clients (a gateway's upstream connections).
pub fn fit_maxclients(wanted: usize, extra: u64) -> usize {
    let Some((soft, hard)) = nofile() else {
        return wanted;
    };
    let reserved = RESERVED + extra;
    let need = wanted as u64 + reserved;
    if soft >= need {
        return wanted;
    }
    let target = need.min(hard);
    let soft = if target > soft && set_soft(target, hard) {
        target
    } else {
        soft
    };
    if soft >= need {
        tracing::info!("raised the open-file limit to {soft} for maxclients {wanted}");
        return wanted;
    }
    let fit = soft.saturating_sub(reserved).max(1) as usize;
    tracing::warn!(
        "the open-file limit is {soft} (hard limit {hard}): maxclients lowered from {wanted} \
         to {fit}; raise it with `ulimit -n` or LimitNOFILE= to serve more clients"
    );
    fit
}

/// The most clients the current descriptor limit allows (`CONFIG SET maxclients` checks it).
pub fn max_fitting() -> Option<usize> {
    nofile().map(|(soft, _)| soft.saturating_sub(RESERVED).max(1) as usize)
}
