//! How memory moves: cold, pre-copy or post-copy, and when pre-copy's rounds stop.

use std::path::Path;

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

/// `--mode auto` takes pre-copy where the kernel tracks dirty pages, else post-copy.
pub fn pick_mode(online: bool, requested: &str, soft_dirty: bool) -> Result<Mode, MigError> {
    if !online {
        return Ok(Mode::Cold);
    }
    match requested {
        "auto" if soft_dirty => Ok(Mode::Precopy),
        "auto" => Ok(Mode::Postcopy),
        "precopy" if soft_dirty => Ok(Mode::Precopy),
        "precopy" => Err(MigError::Mode(
            "--mode precopy: this kernel has no soft-dirty page tracking (criu check --feature mem_dirty_track); use --mode postcopy or auto".into(),
        )),
        "postcopy" => Ok(Mode::Postcopy),
        other => Err(MigError::Mode(format!(
            "--mode: {other:?} is not one of auto, precopy, postcopy"
        ))),
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

/// `pages_written` from a CRIU `stats-dump` image: a 4-byte magic, then size-prefixed
/// StatsEntry messages whose field 1 is DumpStatsEntry with pages_written as field 7.
pub fn stats_pages_written(path: &Path) -> Option<u64> {
    let data = std::fs::read(path).ok()?;
    // Images start with one or two 32-bit magics (the second for "service" images).
    for skip in [4usize, 8] {
        if data.len() < skip + 4 {
            continue;
        }
        let len = u32::from_le_bytes(data[skip..skip + 4].try_into().ok()?) as usize;
        let Some(msg) = data.get(skip + 4..skip + 4 + len) else {
            continue;
        };
        if let Some(dump) = proto_field(msg, 1).and_then(|f| f.bytes()) {
            if let Some(v) = proto_field(dump, 7).and_then(|f| f.varint()) {
                return Some(v);
            }
        }
    }
    None
}

enum ProtoValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> ProtoValue<'a> {
    fn varint(&self) -> Option<u64> {
        match self {
            ProtoValue::Varint(v) => Some(*v),
            _ => None,
        }
    }
    fn bytes(&self) -> Option<&'a [u8]> {
        match self {
            ProtoValue::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

fn varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The first occurrence of field `want` in a protobuf message (wire types 0, 1, 2, 5).
fn proto_field(data: &[u8], want: u64) -> Option<ProtoValue<'_>> {
    let mut pos = 0;
    while pos < data.len() {
        let key = varint(data, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => ProtoValue::Varint(varint(data, &mut pos)?),
            1 => {
                pos += 8;
                ProtoValue::Varint(0)
            }
            2 => {
                let len = varint(data, &mut pos)? as usize;
                let b = data.get(pos..pos + len)?;
                pos += len;
                ProtoValue::Bytes(b)
            }
            5 => {
                pos += 4;
                ProtoValue::Varint(0)
            }
            _ => return None,
        };
        if field == want {
            return Some(value);
        }
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
        assert_eq!(pick_mode(false, "auto", true).unwrap(), Mode::Cold);
        assert_eq!(pick_mode(true, "auto", true).unwrap(), Mode::Precopy);
        assert_eq!(pick_mode(true, "auto", false).unwrap(), Mode::Postcopy);
        let e = pick_mode(true, "precopy", false).unwrap_err().to_string();
        assert!(e.contains("soft-dirty"), "{e}");
        assert!(pick_mode(true, "fast", true).is_err());
    }

    #[test]
    fn stats_image_is_read() {
        // magic, size, StatsEntry{ dump: DumpStatsEntry{ freezing_time: 5, pages_written: 300 } }
        let dump = [0x08, 5, 0x38, 0xac, 0x02];
        let mut entry = vec![0x0a, dump.len() as u8];
        entry.extend_from_slice(&dump);
        let mut img = 0x5709_3306u32.to_le_bytes().to_vec();
        img.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        img.extend_from_slice(&entry);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stats-dump");
        std::fs::write(&p, &img).unwrap();
        assert_eq!(stats_pages_written(&p), Some(300));
    }
}
