//! Sizes as people type them: `512`, `64k`, `512M`, `1.5G`, `2T` (powers of 1024, either
//! case, an optional trailing `B`/`iB`) and `unlimited`/`-1`.

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SizeError {
    #[error(
        "{0:?} is not a size (use a number with an optional K, M, G or T suffix, or unlimited)"
    )]
    Invalid(String),
}

/// `None` means unlimited.
pub fn parse_size(input: &str) -> Result<Option<u64>, SizeError> {
    let s = input.trim();
    if s.eq_ignore_ascii_case("unlimited") || s == "-1" || s.eq_ignore_ascii_case("max") {
        return Ok(None);
    }
    let bad = || SizeError::Invalid(input.to_string());
    let lower = s.to_ascii_lowercase();
    let trimmed = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, mult) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1u64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        Some('t') => (&trimmed[..trimmed.len() - 1], 1 << 40),
        Some(c) if c.is_ascii_digit() => (trimmed, 1),
        _ => return Err(bad()),
    };
    if num.is_empty() || num.starts_with('-') {
        return Err(bad());
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).map(Some).ok_or_else(bad);
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    if !f.is_finite() || f < 0.0 {
        return Err(bad());
    }
    let v = f * mult as f64;
    if v > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Some(v as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_unlimited() {
        assert_eq!(parse_size("512"), Ok(Some(512)));
        assert_eq!(parse_size("64k"), Ok(Some(65536)));
        assert_eq!(parse_size("512M"), Ok(Some(512 << 20)));
        assert_eq!(parse_size("512MiB"), Ok(Some(512 << 20)));
        assert_eq!(parse_size("1.5G"), Ok(Some(3 << 29)));
        assert_eq!(parse_size("2T"), Ok(Some(2 << 40)));
        assert_eq!(parse_size("unlimited"), Ok(None));
        assert_eq!(parse_size("-1"), Ok(None));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["banana", "", "M", "-5M", "1X", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("banana")
            .unwrap_err()
            .to_string()
            .contains("\"banana\" is not a size"));
    }
}
