//! Migration stages, what each one reads and writes, and which sessions are in it.
//!
//! The six stages are LaunchDarkly's migration-flag stages, and the first seed's three
//! dark-launch stages fit inside them: Hootsuite's "mirror at 1%→100%" is `dualwrite`/`shadow`,
//! "read from Redis while writing both" is `live`/`rampdown`, "Redis only" is `complete`.
//!
//! | stage      | reads                       | serves | writes (authoritative first) | compares |
//! |------------|-----------------------------|--------|------------------------------|----------|
//! | off        | old                         | old    | old                          | no       |
//! | dualwrite  | old                         | old    | old, then new                | no       |
//! | shadow     | old and new                 | old    | old, then new                | yes      |
//! | live       | new and old                 | new    | new, then old                | yes      |
//! | rampdown   | new (old on a miss)         | new    | new, then old                | no       |
//! | complete   | new                         | new    | new                          | no       |
//!
//! Until `complete` the old store is written on every change, so stepping back any number of
//! stages loses nothing: no session exists only in the new store. In the stages that serve
//! from the new store, a miss there falls back to the old store and copies the session
//! forward with its remaining TTL (lazy migration), so nobody is logged out by a session that
//! was not backfilled yet.
//!
//! **Ramp.** The percentage decides which sessions are in the current stage; the others are
//! in the stage before it. A session's bucket (0–9999) is a stable hash of its id, and a
//! session is in the current stage when `bucket < percent × 100`: raising the percentage only
//! ever adds sessions, and one session never flips between stores while the setting stays.

use std::fmt;

/// A migration stage, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Off,
    DualWrite,
    Shadow,
    Live,
    RampDown,
    Complete,
}

/// Which store answers the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Old,
    New,
}

/// What one stage does with a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The store whose reply the client gets, and which is written first.
    pub serve: Side,
    /// Read the other store too, and compare the two answers.
    pub compare: bool,
    /// Write the other store too (after the authoritative one; its failure is counted, not
    /// returned).
    pub write_both: bool,
    /// A miss in the served (new) store is looked up in the old one and copied forward.
    pub fall_back: bool,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Off,
        Stage::DualWrite,
        Stage::Shadow,
        Stage::Live,
        Stage::RampDown,
        Stage::Complete,
    ];

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::Off => "off",
            Stage::DualWrite => "dualwrite",
            Stage::Shadow => "shadow",
            Stage::Live => "live",
            Stage::RampDown => "rampdown",
            Stage::Complete => "complete",
        }
    }

    /// The stage before this one (`off` for `off`).
    pub fn previous(self) -> Stage {
        let i = Stage::ALL.iter().position(|&s| s == self).unwrap_or(0);
        Stage::ALL[i.saturating_sub(1)]
    }

    pub fn plan(self) -> Plan {
        let (serve, compare, write_both, fall_back) = match self {
            Stage::Off => (Side::Old, false, false, false),
            Stage::DualWrite => (Side::Old, false, true, false),
            Stage::Shadow => (Side::Old, true, true, false),
            Stage::Live => (Side::New, true, true, true),
            Stage::RampDown => (Side::New, false, true, true),
            Stage::Complete => (Side::New, false, false, false),
        };
        Plan {
            serve,
            compare,
            write_both,
            fall_back,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Buckets per percent: the ramp moves in steps of 0.01%.
const BUCKETS: u32 = 10_000;

/// A session's bucket, 0–9999: FNV-1a over the id, then a 64-bit finaliser (splitmix64) so
/// that ids differing in one character spread evenly. Fixed forever: changing it would move
/// sessions between stages.
pub fn bucket(id: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h % BUCKETS as u64) as u32
}

/// The stage and percentage an operator set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub stage: Stage,
    /// Share of sessions in `stage`, in hundredths of a percent (0–10000); the rest are in
    /// the stage before.
    pub basis_points: u32,
}

impl Setting {
    pub fn new(stage: Stage, percent: f64) -> Result<Setting, String> {
        if !(0.0..=100.0).contains(&percent) || percent.is_nan() {
            return Err(format!("percent {percent}: expected 0 to 100"));
        }
        Ok(Setting {
            stage,
            basis_points: (percent * 100.0).round() as u32,
        })
    }

    pub fn percent(&self) -> f64 {
        self.basis_points as f64 / 100.0
    }

    /// The stage a session is in.
    pub fn stage_for(&self, id: &[u8]) -> Stage {
        if bucket(id) < self.basis_points {
            self.stage
        } else {
            self.stage.previous()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_table() {
        use Side::*;
        let rows: Vec<(Stage, Side, bool, bool, bool)> = Stage::ALL
            .iter()
            .map(|s| {
                let p = s.plan();
                (*s, p.serve, p.compare, p.write_both, p.fall_back)
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (Stage::Off, Old, false, false, false),
                (Stage::DualWrite, Old, false, true, false),
                (Stage::Shadow, Old, true, true, false),
                (Stage::Live, New, true, true, true),
                (Stage::RampDown, New, false, true, true),
                (Stage::Complete, New, false, false, false),
            ]
        );
        // Until complete, every stage writes the old store (serving it or as the second
        // write): stepping back is always safe.
        for s in &Stage::ALL[..5] {
            let p = s.plan();
            assert!(
                p.serve == Old || p.write_both,
                "{s} would leave sessions only in new"
            );
        }
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.name()), Some(s));
        }
        assert_eq!(Stage::parse("bogus"), None);
        assert_eq!(Stage::Off.previous(), Stage::Off);
        assert_eq!(Stage::Live.previous(), Stage::Shadow);
    }

    #[test]
    fn buckets_are_uniform() {
        // 200k session-like ids over 10 deciles: each within 3% of its expected share.
        let mut deciles = [0u32; 10];
        for i in 0..200_000u32 {
            let id = format!(
                "{:032x}",
                (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c)
            );
            deciles[(bucket(id.as_bytes()) / 1000) as usize] += 1;
        }
        for d in deciles {
            assert!((19_400..=20_600).contains(&d), "{deciles:?}");
        }
        // Sequential ids too.
        let mut low = 0;
        for i in 0..100_000 {
            if bucket(format!("sess{i}").as_bytes()) < 100 {
                low += 1;
            }
        }
        assert!((800..=1200).contains(&low), "1% of sequential ids: {low}");
    }

    #[test]
    fn percent_bounds() {
        assert!(Setting::new(Stage::Live, 100.5).is_err());
        assert!(Setting::new(Stage::Live, -1.0).is_err());
        assert!(Setting::new(Stage::Live, f64::NAN).is_err());
        assert_eq!(Setting::new(Stage::Live, 12.34).unwrap().basis_points, 1234);
        let all = Setting::new(Stage::Shadow, 100.0).unwrap();
        let none = Setting::new(Stage::Shadow, 0.0).unwrap();
        assert_eq!(all.stage_for(b"x"), Stage::Shadow);
        assert_eq!(none.stage_for(b"x"), Stage::DualWrite);
    }

    proptest! {
        /// Raising the percentage only ever adds sessions to the current stage.
        #[test]
        fn ramp_is_monotone(id in proptest::collection::vec(any::<u8>(), 0..40),
                            a in 0.0f64..=100.0, b in 0.0f64..=100.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let lo = Setting::new(Stage::Live, lo).unwrap();
            let hi = Setting::new(Stage::Live, hi).unwrap();
            if lo.stage_for(&id) == Stage::Live {
                prop_assert_eq!(hi.stage_for(&id), Stage::Live);
            }
            // And the answer is stable: asking again never changes it.
            prop_assert_eq!(lo.stage_for(&id), lo.stage_for(&id));
        }
    }
}
