//! Go's `time.Duration` syntax for flags such as
//! `--cluster-signing-duration=8760h0m0s`.
//!
//! kube-controller-manager takes durations in Go's notation (a sequence of
//! decimal numbers, each with an optional fraction and a unit: `ns`, `us`
//! (or `µs`), `ms`, `s`, `m`, `h`); scripts and kubeadm pass values in that
//! form, so the flags accept exactly that and print the canonical
//! `8760h0m0s` form back in `--help` and logs.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A non-negative duration written the way Go's `time.ParseDuration`
/// accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

/// Why a duration text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason} (expected Go syntax such as 8760h0m0s, 720h or 90s)")]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| DurationError {
            text: text.to_owned(),
            reason,
        };
        let rest = text.strip_prefix('+').unwrap_or(text);
        if rest.starts_with('-') {
            return Err(fail("negative durations are not allowed"));
        }
        if rest == "0" {
            return Ok(Self(Duration::ZERO));
        }
        if rest.is_empty() {
            return Err(fail("empty"));
        }
        let mut remaining = rest;
        let mut total_nanos: u128 = 0;
        while !remaining.is_empty() {
            let number_len = remaining
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(remaining.len());
            let number = &remaining[..number_len];
            if number.is_empty() || number == "." || number.matches('.').count() > 1 {
                return Err(fail("expected a number"));
            }
            remaining = &remaining[number_len..];
            let unit_len = remaining
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(remaining.len());
            let unit = &remaining[..unit_len];
            remaining = &remaining[unit_len..];
            let Some((_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
                return Err(if unit.is_empty() {
                    fail("missing unit")
                } else {
                    fail("unknown unit")
                });
            };
            let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
            let whole: u128 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| fail("number too large"))?
            };
            let mut nanos = whole
                .checked_mul(*scale)
                .ok_or_else(|| fail("number too large"))?;
            // The fraction is scaled digit by digit so `1.5h` is exact.
            let mut place = *scale;
            for digit in fraction.bytes() {
                place /= 10;
                nanos += u128::from(digit - b'0') * place;
            }
            total_nanos = total_nanos
                .checked_add(nanos)
                .ok_or_else(|| fail("number too large"))?;
        }
        // Go durations are int64 nanoseconds.
        if total_nanos > i64::MAX as u128 {
            return Err(fail("number too large"));
        }
        let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| fail("too large"))?;
        let subsec = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| fail("too large"))?;
        Ok(Self(Duration::new(secs, subsec)))
    }
}

impl fmt::Display for GoDuration {
    /// Go's `Duration.String()` for whole seconds and above (`8760h0m0s`,
    /// `1m30s`, `0s`); sub-second parts are printed as a decimal fraction
    /// of seconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        let (hours, minutes, seconds) = (total / 3600, (total % 3600) / 60, total % 60);
        let seconds_text = if nanos == 0 {
            seconds.to_string()
        } else {
            let fraction = format!("{nanos:09}");
            format!("{seconds}.{}", fraction.trim_end_matches('0'))
        };
        if hours > 0 {
            write!(f, "{hours}h{minutes}m{seconds_text}s")
        } else if minutes > 0 {
            write!(f, "{minutes}m{seconds_text}s")
        } else {
            write!(f, "{seconds_text}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Duration {
        text.parse::<GoDuration>()
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .0
    }

    #[test]
    fn accepts_go_forms() {
        assert_eq!(parse("8760h0m0s"), Duration::from_secs(8760 * 3600));
        assert_eq!(parse("720h"), Duration::from_secs(720 * 3600));
        assert_eq!(parse("90s"), Duration::from_secs(90));
        assert_eq!(parse("1h30m"), Duration::from_secs(5400));
        assert_eq!(parse("1.5h"), Duration::from_secs(5400));
        assert_eq!(parse("500ms"), Duration::from_millis(500));
        assert_eq!(parse("2us"), Duration::from_micros(2));
        assert_eq!(parse("2µs"), Duration::from_micros(2));
        assert_eq!(parse("0"), Duration::ZERO);
        assert_eq!(parse("+10m"), Duration::from_secs(600));
        assert_eq!(parse(".5s"), Duration::from_millis(500));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "10",
            "h",
            "5d",
            "-1h",
            "1..5s",
            "1h 30m",
            "abc",
            "9999999999h",
        ] {
            let error = bad.parse::<GoDuration>().expect_err(bad);
            assert!(error.to_string().contains("8760h0m0s"), "{error}");
        }
    }

    #[test]
    fn prints_like_go() {
        for (text, shown) in [
            ("8760h", "8760h0m0s"),
            ("90s", "1m30s"),
            ("0", "0s"),
            ("1500ms", "1.5s"),
            ("2h3s", "2h0m3s"),
        ] {
            assert_eq!(parse(text), parse(shown));
            assert_eq!(GoDuration(parse(text)).to_string(), shown);
        }
    }
}
