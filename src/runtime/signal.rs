//! Signal names and numbers in every form callers use: `9`, `KILL`, `SIGKILL`, `sigkill`,
//! and the real-time range (`RTMIN+3`, `SIGRTMAX-1`, `40`).

use std::str::FromStr;

use nix::sys::signal::Signal;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignalError {
    #[error("unknown signal {0:?}")]
    Unknown(String),
}

/// Returns the signal number; real-time signals have no `nix::Signal`, so a raw number
/// is the common currency.
pub fn parse(input: &str) -> Result<i32, SignalError> {
    let unknown = || SignalError::Unknown(input.to_string());
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    // Numbers go to the kernel as they are, as runc does: an invalid one fails at kill(2).
    if let Ok(n) = input.parse::<i32>() {
        if n >= 0 {
            return Ok(n);
        }
        return Err(unknown());
    }
    let upper = input.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rt = |base: i32, rest: &str| -> Option<i32> {
        let n = if rest.is_empty() {
            base
        } else if let Some(off) = rest.strip_prefix('+') {
            base + off.parse::<i32>().ok()?
        } else if let Some(off) = rest.strip_prefix('-') {
            base - off.parse::<i32>().ok()?
        } else {
            return None;
        };
        (rtmin..=rtmax).contains(&n).then_some(n)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(rtmin, rest).ok_or_else(unknown);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt(rtmax, rest).ok_or_else(unknown);
    }
    Signal::from_str(&format!("SIG{name}"))
        .map(|s| s as i32)
        .map_err(|_| unknown())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_names_and_prefixes() {
        assert_eq!(parse("9"), Ok(9));
        assert_eq!(parse("KILL"), Ok(9));
        assert_eq!(parse("SIGKILL"), Ok(9));
        assert_eq!(parse("sigterm"), Ok(15));
        assert_eq!(parse("term"), Ok(15));
        assert_eq!(parse("HUP"), Ok(1));
        assert_eq!(parse("SIGWINCH"), Ok(28));
    }

    #[test]
    fn realtime_signals() {
        assert_eq!(parse("RTMIN"), Ok(libc::SIGRTMIN()));
        assert_eq!(parse("SIGRTMIN+3"), Ok(libc::SIGRTMIN() + 3));
        assert_eq!(parse("RTMAX-1"), Ok(libc::SIGRTMAX() - 1));
        assert_eq!(parse(&libc::SIGRTMAX().to_string()), Ok(libc::SIGRTMAX()));
    }

    #[test]
    fn rejects_what_does_not_exist() {
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("99"), Ok(99));
        for bad in ["BOGUS", "-1", "SIG", "RTMIN+99", "RTMINx", ""] {
            assert_eq!(
                parse(bad),
                Err(SignalError::Unknown(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(
            parse("BOGUS").unwrap_err().to_string(),
            "unknown signal \"BOGUS\""
        );
    }
}
