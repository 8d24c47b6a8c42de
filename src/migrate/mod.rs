//! Dark-launch migration between two session stores, inside the data path (issue #5).
//!
//! [`router::Router`] is a `Store` over an old and a new store; [`stage`] holds the stage
//! table and the percentage ramp. Applications keep talking to sessiond and never change; an
//! operator steps the stages and the percentage. The stores it joins live elsewhere: the
//! engine, `Upstream` (`src/upstream/`) and the legacy stores (`src/legacy/`, with the map
//! from client keys to legacy ids).

pub mod any;
pub mod backfill;
pub mod command;
pub mod copy;
pub mod embedded;
pub mod guard;
pub mod router;
pub mod stage;
pub mod timed;
pub mod typed;

#[cfg(test)]
mod tests;
