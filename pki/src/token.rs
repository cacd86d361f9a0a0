//! Bootstrap tokens (`abcdef.0123456789abcdef`).
//!
//! The id is public (it names the `bootstrap-token-<id>` Secret and the
//! `cluster-info` signature); the secret is not, so `Debug` never prints it.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::types::InvalidValue;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;

#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let mut pick = |len: usize| -> String {
            (0..len)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect()
        };
        Self {
            id: pick(ID_LEN),
            secret: pick(SECRET_LEN),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }
}

fn is_token_part(part: &str, len: usize) -> bool {
    part.len() == len
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl FromStr for BootstrapToken {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = "expected a bootstrap token of the form [a-z0-9]{6}.[a-z0-9]{16}, e.g. abcdef.0123456789abcdef";
        let valid = s
            .split_once('.')
            .filter(|(id, secret)| is_token_part(id, ID_LEN) && is_token_part(secret, SECRET_LEN));
        match valid {
            Some((id, secret)) => Ok(Self {
                id: id.to_owned(),
                secret: secret.to_owned(),
            }),
            // The rejected value may be a real secret with a typo: keep it
            // out of the message.
            None => Err(InvalidValue(format!("invalid token; {shape}"))),
        }
    }
}

impl fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back() {
        for _ in 0..100 {
            let token = BootstrapToken::generate();
            let text = token.to_string();
            assert_eq!(text.len(), 23);
            assert_eq!(text.parse::<BootstrapToken>().expect("parse"), token);
        }
    }

    #[test]
    fn malformed_tokens_are_rejected_without_echo() {
        for bad in [
            "qwerty9876543210qwerty",
            "QWERTY.9876543210qwerty",
            "qwert.9876543210qwerty",
            "qwerty.9876543210qwert",
            "qwerty.9876543210qwerty_",
            "qwe-ty.9876543210qwerty",
        ] {
            let err = bad.parse::<BootstrapToken>().expect_err(bad).to_string();
            assert!(!err.contains(bad), "message leaks the token: {err}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let token: BootstrapToken = "abcdef.0123456789abcdef".parse().expect("parse");
        assert_eq!(format!("{token:?}"), "BootstrapToken(abcdef.<redacted>)");
    }
}
