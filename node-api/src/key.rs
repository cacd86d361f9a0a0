//! The one-time maintenance key.

use std::fmt;
use std::str::FromStr;

use ring::rand::{SecureRandom, SystemRandom};

/// Crockford's base32 alphabet: digits and upper-case letters without
/// `I`, `L`, `O` and `U`, so a key read off a console is hard to mistype.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters per group.
const GROUP: usize = 5;
/// Number of groups.
const GROUPS: usize = 4;
/// Characters in a key (100 bits of entropy).
const LEN: usize = GROUP * GROUPS;

/// A one-time key that lets an operator talk to a node that has no machine
/// config yet, e.g. `7K2QD-M9XPA-0RTVB-4HN3C`.
///
/// node-agent generates one at boot while it has no valid config, prints it
/// on the console and hands it to the server; the key opens only
/// `GET /v1/status` and `POST /v1/config` and stops working once cleared.
///
/// `Display` prints the canonical form (four dash-separated groups of five
/// upper-case characters); `FromStr` accepts any case, with or without
/// dashes and spaces, and reads `O` as `0` and `I`/`L` as `1`. `Debug` does
/// not show the key. Equality is constant-time.
#[derive(Clone)]
pub struct MaintenanceKey {
    chars: [u8; LEN],
}

/// Why a string is not a maintenance key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaintenanceKeyError {
    /// The system random generator failed.
    #[error("cannot generate a maintenance key: the system random generator failed")]
    Random,
    /// Wrong number of key characters.
    #[error("a maintenance key has {LEN} characters (4 groups of 5), found {found}")]
    Length {
        /// Key characters found (dashes and spaces not counted).
        found: usize,
    },
    /// A character outside the alphabet.
    #[error("{character:?} cannot appear in a maintenance key (digits and letters except U)")]
    Character {
        /// The offending character.
        character: char,
    },
}

impl MaintenanceKey {
    /// A new random key from the system's random generator.
    pub fn generate() -> Result<Self, MaintenanceKeyError> {
        let mut bytes = [0u8; LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| MaintenanceKeyError::Random)?;
        // 256 is a multiple of 32: masking keeps the distribution uniform.
        let chars = bytes.map(|b| ALPHABET[usize::from(b & 31)]);
        Ok(Self { chars })
    }

    /// Constant-time comparison (no early exit on the first difference).
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.chars
            .iter()
            .zip(other.chars.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl PartialEq for MaintenanceKey {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for MaintenanceKey {}

impl fmt::Display for MaintenanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.chars.chunks(GROUP).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            for &c in group {
                write!(f, "{}", char::from(c))?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for MaintenanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaintenanceKey(<redacted>)")
    }
}

impl FromStr for MaintenanceKey {
    type Err = MaintenanceKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chars = [0u8; LEN];
        let mut found = 0usize;
        for c in s.chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let canonical = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            };
            let valid = canonical.is_ascii() && ALPHABET.contains(&(canonical as u8));
            if !valid {
                return Err(MaintenanceKeyError::Character { character: c });
            }
            if let Some(slot) = chars.get_mut(found) {
                *slot = canonical as u8;
            }
            found += 1;
        }
        if found != LEN {
            return Err(MaintenanceKeyError::Length { found });
        }
        Ok(Self { chars })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_differ() -> Result<(), MaintenanceKeyError> {
        let a = MaintenanceKey::generate()?;
        let b = MaintenanceKey::generate()?;
        let text = a.to_string();
        assert_eq!(text.len(), 23, "4 groups of 5 and 3 dashes: {text}");
        assert_eq!(text.matches('-').count(), 3, "{text}");
        assert_eq!(text.parse::<MaintenanceKey>()?, a);
        assert_ne!(a, b, "two random keys are equal");
        Ok(())
    }

    #[test]
    fn parsing_is_lenient_about_case_dashes_and_lookalikes() -> Result<(), MaintenanceKeyError> {
        let key: MaintenanceKey = "7k2qd m9xpa-oRTVB-4hn3c".parse()?;
        assert_eq!(key.to_string(), "7K2QD-M9XPA-0RTVB-4HN3C");
        let ones: MaintenanceKey = "iiiii-LLLLL-11111-lIlI1".parse()?;
        assert_eq!(ones.to_string(), "11111-11111-11111-11111");
        Ok(())
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        assert_eq!(
            "ABCDE-FGHJK".parse::<MaintenanceKey>().err(),
            Some(MaintenanceKeyError::Length { found: 10 })
        );
        assert_eq!(
            "ABCDE-FGHJK-MNPQR-STVWU".parse::<MaintenanceKey>().err(),
            Some(MaintenanceKeyError::Character { character: 'U' })
        );
        assert_eq!(
            "ABCDE-FGHJK-MNPQR-STVWXY".parse::<MaintenanceKey>().err(),
            Some(MaintenanceKeyError::Length { found: 21 })
        );
    }

    #[test]
    fn debug_hides_the_key() -> Result<(), MaintenanceKeyError> {
        let key = MaintenanceKey::generate()?;
        assert!(!format!("{key:?}").contains(&key.to_string()[..5]));
        Ok(())
    }
}
