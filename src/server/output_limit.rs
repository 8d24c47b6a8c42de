//! `client-output-buffer-limit`, in Redis's syntax: `class hard soft seconds`, repeated, for
//! the classes `normal`, `replica` (alias `slave`) and `pubsub`.
//!
//! What it limits here: replies are never queued without bound in the first place. A
//! connection stops executing (embedded engine) or stops sending more upstream (gateway)
//! once its unwritten replies fill a small buffer, and waits for the client to read. So the
//! limit decides when a client that does not read is *disconnected* rather than waited on:
//! at once when the replies pending exceed `hard`, or when they stay above `soft` for
//! `seconds`. The `normal` class applies to replies; `pubsub` to the messages queued for an
//! embedded-engine subscriber (its mailbox, `src/pubsub.rs`), which a publisher never waits
//! on; `replica` is accepted only so that Redis configuration files load.

use crate::util::size::parse_size;

/// One class's limits; 0 disables a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_seconds: u64,
}

/// Every class's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    pub normal: OutputLimit,
    pub replica: OutputLimit,
    pub pubsub: OutputLimit,
}

impl Default for OutputLimits {
    /// Redis's defaults.
    fn default() -> Self {
        const MB: u64 = 1024 * 1024;
        OutputLimits {
            normal: OutputLimit::default(),
            replica: OutputLimit {
                hard: 256 * MB,
                soft: 64 * MB,
                soft_seconds: 60,
            },
            pubsub: OutputLimit {
                hard: 32 * MB,
                soft: 8 * MB,
                soft_seconds: 60,
            },
        }
    }
}

impl OutputLimits {
    /// Applies `text` (one or more `class hard soft seconds` groups) over `self`; the
    /// classes it does not name keep their limits, as with Redis's CONFIG SET.
    pub fn parse_over(&self, text: &str) -> Result<OutputLimits, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() || !words.len().is_multiple_of(4) {
            return Err("Wrong number of arguments in buffer limit configuration.".into());
        }
        let mut out = *self;
        for group in words.chunks_exact(4) {
            let size = |s: &str| {
                parse_size(s).map_err(|_| {
                    "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                        .to_string()
                })
            };
            let limit = OutputLimit {
                hard: size(group[1])?,
                soft: size(group[2])?,
                soft_seconds: group[3].parse().map_err(|_| {
                    "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                        .to_string()
                })?,
            };
            match group[0].to_ascii_lowercase().as_str() {
                "normal" => out.normal = limit,
                "replica" | "slave" => out.replica = limit,
                "pubsub" => out.pubsub = limit,
                other => {
                    return Err(format!(
                        "Invalid client class specified in buffer limit configuration: {other}"
                    ))
                }
            }
        }
        Ok(out)
    }

    /// As `CONFIG GET` shows it (Redis's form: bytes, `normal`, `slave`, `pubsub`).
    pub fn render(&self) -> String {
        let one = |name: &str, l: &OutputLimit| {
            format!("{name} {} {} {}", l.hard, l.soft, l.soft_seconds)
        };
        format!(
            "{} {} {}",
            one("normal", &self.normal),
            one("slave", &self.replica),
            one("pubsub", &self.pubsub)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_syntax_and_keeps_unnamed_classes() {
        let d = OutputLimits::default();
        assert_eq!(
            d.render(),
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        );
        let l = d.parse_over("normal 10mb 1mb 5").unwrap();
        assert_eq!(
            l.normal,
            OutputLimit {
                hard: 10 * 1024 * 1024,
                soft: 1024 * 1024,
                soft_seconds: 5
            }
        );
        assert_eq!(l.pubsub, d.pubsub);
        let l = d.parse_over("pubsub 0 0 0 replica 1 2 3").unwrap();
        assert_eq!(l.pubsub, OutputLimit::default());
        assert_eq!(l.replica.soft, 2);
        assert!(d.parse_over("normal 1 2").is_err());
        assert!(d.parse_over("master 1 2 3").is_err());
        assert!(d.parse_over("normal x 2 3").is_err());
        assert!(d.parse_over("normal 1 2 -3").is_err());
        assert!(d.parse_over("").is_err());
    }
}
