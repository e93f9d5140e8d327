//! How memory moves: cold, pre-copy or post-copy, and when pre-copy's rounds stop.

use super::MigError;

/// How memory moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Checkpoint, copy, restore: the VE is down for all of it.
    Cold,
    /// Rounds of pre-dumps while the VE runs, then a final dump of what is still dirty.
    Precopy,
    /// Dump all but memory, restore at once, pages follow on demand (CRIU lazy pages).
    Postcopy,
}

impl Mode {
    /// The mode's name, as the summary and the destination's log say it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Cold => "cold",
            Mode::Precopy => "precopy",
            Mode::Postcopy => "postcopy",
        }
    }
}

/// The mode asked for an online move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// Pre-copy where the kernel tracks dirty pages, else post-copy.
    Auto,
    Precopy,
    Postcopy,
}

impl std::str::FromStr for Requested {
    type Err = MigError;

    fn from_str(text: &str) -> Result<Requested, MigError> {
        match text {
            "auto" => Ok(Requested::Auto),
            "precopy" => Ok(Requested::Precopy),
            "postcopy" => Ok(Requested::Postcopy),
            other => Err(MigError::UnknownMode(other.to_string())),
        }
    }
}

/// The mode a move takes: cold unless `online`; pre-copy only where the kernel tracks
/// dirty pages (soft-dirty), which it needs.
pub fn pick_mode(online: bool, requested: Requested, soft_dirty: bool) -> Result<Mode, MigError> {
    if !online {
        return Ok(Mode::Cold);
    }
    match requested {
        Requested::Auto | Requested::Precopy if soft_dirty => Ok(Mode::Precopy),
        Requested::Auto | Requested::Postcopy => Ok(Mode::Postcopy),
        Requested::Precopy => Err(MigError::NoSoftDirty),
    }
}

/// Why the pre-copy rounds end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Few pages are still dirty: the final dump will be short.
    FewDirty,
    /// A round sent about as much as the one before: the VE dirties memory as fast as it
    /// is copied, more rounds would not shorten the final one.
    NotShrinking,
    MaxRounds,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::FewDirty => "few pages are still dirty",
            Stop::NotShrinking => "the rounds no longer shrink",
            Stop::MaxRounds => "the most rounds allowed",
        })
    }
}

/// The pre-copy rule, given the pages each round wrote (CRIU's `pages_written` from
/// stats-dump): stop when the last round wrote at most `few` pages, when it wrote more than
/// 90% of the round before, or after `max_rounds`.
pub fn precopy_stop(written: &[u64], few: u64, max_rounds: u32) -> Option<Stop> {
    let last = *written.last()?;
    if last <= few {
        return Some(Stop::FewDirty);
    }
    if written.len() >= 2 {
        let prev = written[written.len() - 2];
        if last * 10 > prev * 9 {
            return Some(Stop::NotShrinking);
        }
    }
    if written.len() as u32 >= max_rounds {
        return Some(Stop::MaxRounds);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precopy_rounds_stop_for_the_right_reason() {
        // Recorded pages_written of pre-copy runs (a writer rewriting 32 MiB of 512 MiB
        // touched, and an idle VE), and a VE that dirties memory faster than it moves.
        let busy = [131_072, 8_390, 8_211];
        assert_eq!(precopy_stop(&busy[..1], 64, 8), None);
        assert_eq!(precopy_stop(&busy[..2], 64, 8), None);
        assert_eq!(precopy_stop(&busy, 64, 8), Some(Stop::NotShrinking));
        let idle = [24_500, 310, 12];
        assert_eq!(precopy_stop(&idle[..2], 64, 8), None);
        assert_eq!(precopy_stop(&idle, 64, 8), Some(Stop::FewDirty));
        let shrinking = [100_000, 50_000, 25_000, 12_000];
        assert_eq!(precopy_stop(&shrinking, 64, 4), Some(Stop::MaxRounds));
        assert_eq!(precopy_stop(&shrinking, 64, 8), None);
        assert_eq!(precopy_stop(&[], 64, 8), None);
    }

    #[test]
    fn modes() {
        let mode = |m: &str| m.parse::<Requested>().unwrap();
        assert_eq!(pick_mode(false, mode("auto"), true).unwrap(), Mode::Cold);
        assert_eq!(pick_mode(true, mode("auto"), true).unwrap(), Mode::Precopy);
        assert_eq!(
            pick_mode(true, mode("auto"), false).unwrap(),
            Mode::Postcopy
        );
        assert_eq!(
            pick_mode(true, mode("postcopy"), true).unwrap(),
            Mode::Postcopy
        );
        let e = pick_mode(true, mode("precopy"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("soft-dirty"), "{e}");
        assert!("fast".parse::<Requested>().is_err());
    }
}
