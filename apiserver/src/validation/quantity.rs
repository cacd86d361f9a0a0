//! Kubernetes resource quantities (`100m`, `1.5Gi`, `2e3`, `500Mi`).
//!
//! Grammar (from `k8s.io/apimachinery/pkg/api/resource`):
//! `[+-]digits[.digits]` followed by nothing, a decimal SI suffix
//! (`n u m k M G T P E`), a binary SI suffix (`Ki Mi Gi Ti Pi Ei`) or a
//! decimal exponent (`e3`, `E-2`). The value is kept in nano-units (an
//! `i128`, saturating), enough to compare requests with limits exactly for
//! every quantity Kubernetes can represent with at most nine fractional
//! decimal digits; finer fractions round up, as Kubernetes rounds up.

use std::fmt;

/// The message Kubernetes gives for an unparsable quantity.
pub const QUANTITY_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A parsed quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

/// A string that is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{QUANTITY_MSG}")]
pub struct QuantityError;

impl Quantity {
    /// Parses a quantity string.
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(QuantityError);
        }
        let (negative, rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_len = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        let (number, suffix) = rest.split_at(num_len);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(QuantityError);
        }
        // Decimal exponent of the suffix, or a binary multiplier.
        let (exp10, mult2): (i32, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            other => {
                let exp = other
                    .strip_prefix('e')
                    .or_else(|| other.strip_prefix('E'))
                    .ok_or(QuantityError)?;
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(QuantityError);
                }
                let e: i32 = exp.parse().map_err(|_| QuantityError)?;
                (e, 0)
            }
        };
        // mantissa = int_part.frac_part as an integer scaled by 10^-len(frac).
        let mut mantissa: i128 = 0;
        for c in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .saturating_mul(10)
                .saturating_add(i128::from(c - b'0'));
        }
        let frac_len = i32::try_from(frac_part.len()).map_err(|_| QuantityError)?;
        // nanos = mantissa * 2^mult2 * 10^(exp10 - frac_len + 9)
        let mut value = mantissa.saturating_mul(1i128 << mult2);
        let scale = exp10.saturating_sub(frac_len).saturating_add(9);
        if scale >= 0 {
            for _ in 0..scale.min(40) {
                value = value.saturating_mul(10);
            }
        } else {
            let mut divisor: i128 = 1;
            let mut rounded_to_zero = false;
            for _ in 0..(-scale) {
                if divisor > i128::MAX / 10 {
                    rounded_to_zero = true;
                    break;
                }
                divisor *= 10;
            }
            value = if rounded_to_zero {
                i128::from(value != 0)
            } else {
                // round up, as Kubernetes does when it loses precision
                (value + divisor - 1) / divisor
            };
        }
        Ok(Self {
            nanos: if negative { -value } else { value },
        })
    }

    /// The value in nano-units (`1` is `1_000_000_000`).
    pub fn as_nanos(&self) -> i128 {
        self.nanos
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

impl fmt::Display for Quantity {
    /// A plain decimal rendering (`1.5`, `0.1`, `1073741824`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        let whole = abs / 1_000_000_000;
        let frac = abs % 1_000_000_000;
        if frac == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> i128 {
        Quantity::parse(s)
            .map(|q| q.as_nanos())
            .unwrap_or(i128::MIN)
    }

    const G: i128 = 1_000_000_000;

    #[test]
    fn parses_the_forms_kubernetes_accepts() {
        assert_eq!(n("100m"), G / 10);
        assert_eq!(n("1"), G);
        assert_eq!(n("0.5"), G / 2);
        assert_eq!(n(".5"), G / 2);
        assert_eq!(n("5."), 5 * G);
        assert_eq!(n("1.5Gi"), 3 * (1 << 29) * G);
        assert_eq!(n("500Mi"), 500 * (1 << 20) * G);
        assert_eq!(n("2e3"), 2000 * G);
        assert_eq!(n("2E-3"), G * 2 / 1000);
        assert_eq!(n("1k"), 1000 * G);
        assert_eq!(n("1M"), 1_000_000 * G);
        assert_eq!(n("-1"), -G);
        assert_eq!(n("+1"), G);
        assert_eq!(n("1n"), 1);
        assert_eq!(n("1Ei"), (1i128 << 60) * G);
        assert_eq!(n("0.1n"), 1, "sub-nano rounds up");
        assert!(
            Quantity::parse("1Gi").unwrap_or_else(|_| panic!())
                > Quantity::parse("1G").unwrap_or_else(|_| panic!())
        );
    }

    #[test]
    fn rejects_the_rest() {
        for bad in [
            "", "abc", "1.2.3", "1Gb", "1 Gi", "Mi", "1e", "1e+", "1ee3", "--1", ".", "1KI", "1Gi1",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn displays_decimal() {
        assert_eq!(
            Quantity::parse("1500m").map(|q| q.to_string()),
            Ok("1.5".to_owned())
        );
        assert_eq!(
            Quantity::parse("1Ki").map(|q| q.to_string()),
            Ok("1024".to_owned())
        );
        assert_eq!(
            Quantity::parse("-100m").map(|q| q.to_string()),
            Ok("-0.1".to_owned())
        );
    }
}
