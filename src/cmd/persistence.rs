//! SAVE, BGSAVE, BGREWRITEAOF, LASTSAVE, SHUTDOWN — Redis's persistence commands over
//! [`crate::persist`]. Here SAVE, BGSAVE and BGREWRITEAOF all write a snapshot and (with the
//! log on) start a fresh log: one mechanism, Redis's replies.

use std::sync::Arc;

use super::args::lossy;
use super::{CmdError, CmdResult, Ctx, Flow};
use crate::deployment::Deployment;
use crate::persist::Persistence;

fn persistence<S: Deployment>(cx: &Ctx<'_, '_, S>) -> Result<Arc<Persistence>, CmdError> {
    cx.server
        .persist
        .clone()
        .ok_or_else(|| CmdError::msg("ERR persistence is not available for this store"))
}

/// Runs blocking disk work off the runtime threads: only this client waits.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
}

pub async fn save<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    let p = persistence(cx)?;
    match blocking(move || p.save()).await {
        Ok(()) => cx.out.ok(),
        Err(e) if e == "in progress" => {
            return Err(CmdError::msg("ERR Background save already in progress"))
        }
        Err(e) => return Err(CmdError::msg(format!("ERR {e}"))),
    }
    Ok(())
}

pub fn bgsave<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let schedule = match a.get(1) {
        None => false,
        Some(o) if a.len() == 2 && o.eq_ignore_ascii_case(b"schedule") => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    let p = persistence(cx)?;
    match p.start_background("BGSAVE") {
        Ok(()) => cx.out.simple("Background saving started"),
        // A running rewrite already produces a fresh snapshot.
        Err(_) if schedule => cx.out.simple("Background saving scheduled"),
        Err(_) => return Err(CmdError::msg("ERR Background save already in progress")),
    }
    Ok(())
}

pub fn bgrewriteaof<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    let p = persistence(cx)?;
    match p.start_background("BGREWRITEAOF") {
        Ok(()) => cx
            .out
            .simple("Background append only file rewriting started"),
        Err(_) => {
            return Err(CmdError::msg(
                "ERR Background append only file rewriting already in progress",
            ))
        }
    }
    Ok(())
}

pub fn lastsave<S: Deployment>(cx: &mut Ctx<'_, '_, S>) -> CmdResult {
    let p = persistence(cx)?;
    cx.out.int(p.last_save_unix());
    Ok(())
}

/// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE]`: make the data durable, then stop the server. As in
/// Redis, success sends no reply (the connection closes); a failure to save is an error reply
/// and the server keeps running.
pub async fn shutdown<S: Deployment>(cx: &mut Ctx<'_, '_, S>, a: &[&[u8]]) -> CmdResult {
    let (mut save, mut nosave) = (false, false);
    for o in &a[1..] {
        match lossy(o).to_ascii_lowercase().as_str() {
            "save" => save = true,
            "nosave" => nosave = true,
            "now" | "force" => {}
            _ => return Err(CmdError::Syntax),
        }
    }
    if save && nosave {
        return Err(CmdError::Syntax);
    }
    if cx.server.scripts.busy.any() {
        // A script runs past busy-reply-threshold and holds its shards. Only NOSAVE ends
        // it, as in Redis: what completed is made durable, the script's own changes (its log
        // frame is appended only when it ends) are lost, all of them.
        if !nosave {
            return Err(CmdError::msg(
                "ERR a script is running past busy-reply-threshold: use SCRIPT KILL (or FUNCTION KILL), or SHUTDOWN NOSAVE, which ends the server without the script's writes",
            ));
        }
        if let Some(p) = cx.server.persist.clone() {
            if let Err(e) = blocking(move || p.shutdown(false, true)).await {
                tracing::error!("SHUTDOWN NOSAVE during a busy script: {e}");
            }
        }
        tracing::warn!(
            "SHUTDOWN NOSAVE by client {} while a script was busy: exiting",
            cx.client.handle.id
        );
        std::process::exit(0);
    }
    if let Some(p) = cx.server.persist.clone() {
        if let Err(e) = blocking(move || p.shutdown(save, nosave)).await {
            tracing::error!("SHUTDOWN refused: {e}");
            return Err(CmdError::msg("ERR Errors trying to SHUTDOWN. Check logs."));
        }
    }
    tracing::info!("SHUTDOWN requested by client {}", cx.client.handle.id);
    cx.server.begin_shutdown();
    cx.flow = Flow::Close;
    Ok(())
}
