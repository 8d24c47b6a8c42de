//! TTL commands: EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT with NX XX GT LT, TTL/PTTL,
//! EXPIRETIME/PEXPIRETIME, PERSIST.

use super::args::{int, is, lossy};
use super::{CmdError, CmdResult, Ctx};
use crate::deployment::Deployment;
use crate::store::{ExpireCondition, Ttl};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Millis,
}

/// `EXPIRE key time [NX|XX|GT|LT]` and friends. Options are validated before the time, as
/// in Redis's `expireGenericCommand`; a time at or before now deletes the key.
pub async fn expire<S: Deployment>(
    cx: &mut Ctx<'_, '_, S>,
    a: &[&[u8]],
    unit: Unit,
    absolute: bool,
) -> CmdResult {
    let name = match (unit, absolute) {
        (Unit::Seconds, false) => "expire",
        (Unit::Millis, false) => "pexpire",
        (Unit::Seconds, true) => "expireat",
        (Unit::Millis, true) => "pexpireat",
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &a[3..] {
        if is(opt, "nx") {
            nx = true;
        } else if is(opt, "xx") {
            xx = true;
        } else if is(opt, "gt") {
            gt = true;
        } else if is(opt, "lt") {
            lt = true;
        } else {
            return Err(CmdError::msg(format!(
                "ERR Unsupported option {}",
                lossy(opt)
            )));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CmdError::msg(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(CmdError::msg(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let cond = if nx {
        ExpireCondition::Nx
    } else if xx {
        ExpireCondition::Xx
    } else if gt {
        ExpireCondition::Gt
    } else if lt {
        ExpireCondition::Lt
    } else {
        ExpireCondition::Always
    };
    let mut when = int(a[2])?;
    let invalid = || CmdError::msg(format!("ERR invalid expire time in '{name}' command"));
    if unit == Unit::Seconds {
        when = when.checked_mul(1000).ok_or_else(invalid)?;
    }
    if !absolute {
        when = when.checked_add(cx.now).ok_or_else(invalid)?;
    }
    let done = cx
        .store()
        .expire_at(cx.db(), a[1], when, cond, cx.now)
        .await?;
    if done {
        let event = if when <= cx.now { "del" } else { "expire" };
        cx.notify(crate::pubsub::class::GENERIC, event, a[1]);
    }
    cx.out.int(done as i64);
    Ok(())
}

#[derive(Clone, Copy)]
pub enum TtlForm {
    Seconds,
    Millis,
    UnixSeconds,
    UnixMillis,
}

pub async fn ttl<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]], form: TtlForm) -> CmdResult {
    let t = cx.store().ttl(cx.db(), a[1], cx.now).await?;
    let n = match t {
        Ttl::Missing => -2,
        Ttl::Persistent => -1,
        Ttl::At(at) => {
            let left = (at - cx.now).max(0);
            match form {
                // Redis rounds the remaining seconds to nearest.
                TtlForm::Seconds => (left + 500) / 1000,
                TtlForm::Millis => left,
                TtlForm::UnixSeconds => at / 1000,
                TtlForm::UnixMillis => at,
            }
        }
    };
    cx.out.int(n);
    Ok(())
}

pub async fn persist<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let done = cx.store().persist(cx.db(), a[1], cx.now).await?;
    if done {
        cx.notify(crate::pubsub::class::GENERIC, "persist", a[1]);
    }
    cx.out.int(done as i64);
    Ok(())
}
