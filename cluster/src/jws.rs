//! Detached HS256 JSON Web Signatures, as Kubernetes' bootstrap signer
//! writes them into the `kube-public/cluster-info` ConfigMap.
//!
//! For every bootstrap token allowed to sign, the controller-manager adds a
//! key `jws-kubeconfig-<token-id>` whose value is a compact JWS over the
//! ConfigMap's `kubeconfig` string with the payload cut out
//! (`<header>..<signature>`, RFC 7515 appendix F). The protected header is
//! exactly `{"alg":"HS256","kid":"<token-id>"}` and the HMAC key is the
//! token secret, so a joiner holding the token can check that whoever
//! published the kubeconfig (and its CA) also knows the secret. This is
//! `k8s.io/cluster-bootstrap/token/jws`: the known-answer vectors in the
//! tests are the upstream ones.
//!
//! Verification compares the MAC in constant time (`ring::hmac::verify`)
//! and refuses any header other than HS256 with the expected key id.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Why a detached signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not `<header>..<signature>` with a non-empty header and signature.
    #[error("malformed detached JWS: {0}")]
    Malformed(String),
    /// The protected header names another algorithm than HS256.
    #[error("detached JWS uses algorithm {seen:?}, expected \"HS256\"")]
    Algorithm {
        /// The header's `alg`.
        seen: String,
    },
    /// The protected header names another key than the token id.
    #[error("detached JWS is signed with key id {seen:?}, expected {expected:?}")]
    KeyId {
        /// The token id the signature should be for.
        expected: String,
        /// The header's `kid` (empty when absent).
        seen: String,
    },
    /// The HMAC does not match: the payload was changed or the signer used
    /// another secret.
    #[error("detached JWS signature for key id {token_id:?} does not match the payload")]
    SignatureMismatch {
        /// The token id.
        token_id: String,
    },
}

/// The protected header as read back; only `alg` and `kid` matter.
#[derive(Debug, Serialize, Deserialize)]
struct ProtectedHeader {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

const ALGORITHM: &str = "HS256";

fn mac_key(token_secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, token_secret.as_bytes())
}

/// The JWS signing input: `<b64url header>.<b64url payload>`.
fn signing_input(encoded_header: &str, payload: &str) -> String {
    format!("{encoded_header}.{}", BASE64URL.encode(payload.as_bytes()))
}

/// Signs `payload` with the token secret and returns the detached compact
/// serialization `<b64url header>..<b64url signature>`.
pub fn sign_detached(payload: &str, token_id: &str, token_secret: &str) -> String {
    // Written by hand rather than through serde so the byte layout is
    // obviously the one Kubernetes produces.
    let header = format!(
        "{{\"alg\":\"{ALGORITHM}\",\"kid\":{}}}",
        serde_json::Value::String(token_id.to_owned())
    );
    let encoded_header = BASE64URL.encode(header.as_bytes());
    let tag = hmac::sign(
        &mac_key(token_secret),
        signing_input(&encoded_header, payload).as_bytes(),
    );
    format!("{encoded_header}..{}", BASE64URL.encode(tag.as_ref()))
}

/// Checks a detached signature made by [`sign_detached`] (or Kubernetes'
/// bootstrap signer) over `payload` for the token `token_id.token_secret`.
pub fn verify_detached(
    payload: &str,
    signature: &str,
    token_id: &str,
    token_secret: &str,
) -> Result<(), JwsError> {
    let mut parts = signature.trim().split('.');
    let (Some(encoded_header), Some(embedded_payload), Some(encoded_mac), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed(
            "expected three dot-separated parts <header>..<signature>".into(),
        ));
    };
    if !embedded_payload.is_empty() {
        return Err(JwsError::Malformed(
            "the payload part is not empty (not a detached signature)".into(),
        ));
    }
    if encoded_header.is_empty() || encoded_mac.is_empty() {
        return Err(JwsError::Malformed("empty header or signature".into()));
    }
    let header_bytes = BASE64URL
        .decode(encoded_header)
        .map_err(|e| JwsError::Malformed(format!("header is not base64url: {e}")))?;
    let header: ProtectedHeader = serde_json::from_slice(&header_bytes)
        .map_err(|e| JwsError::Malformed(format!("header is not a JWS header: {e}")))?;
    if header.alg != ALGORITHM {
        return Err(JwsError::Algorithm { seen: header.alg });
    }
    let kid = header.kid.unwrap_or_default();
    if kid != token_id {
        return Err(JwsError::KeyId {
            expected: token_id.to_owned(),
            seen: kid,
        });
    }
    let mac = BASE64URL
        .decode(encoded_mac)
        .map_err(|e| JwsError::Malformed(format!("signature is not base64url: {e}")))?;
    hmac::verify(
        &mac_key(token_secret),
        signing_input(encoded_header, payload).as_bytes(),
        &mac,
    )
    .map_err(|_| JwsError::SignatureMismatch {
        token_id: token_id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from k8s.io/cluster-bootstrap/token/jws/jws_test.go.
    const CONTENT: &str = "Hello from the other side. I must have called a thousand times.";
    const ID: &str = "joshua";

    #[test]
    fn matches_kubernetes_known_answers() {
        let cases = [
            (
                CONTENT,
                "my voice is my passcode",
                "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8",
            ),
            (
                "",
                "my voice is my passcode",
                "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk",
            ),
            (
                CONTENT,
                "",
                "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..UfkqvDGiIFxrMnFseDj9LYJOLNrvjW8aHhF71mvvAs8",
            ),
            (
                CONTENT,
                "my voice is my passcode. my voice is my passcode",
                "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..SFoKn0-YxqnvpSExt4LuCZ_7pvIBdX3SoUO_NsTpkdg",
            ),
        ];
        for (payload, secret, expected) in cases {
            assert_eq!(sign_detached(payload, ID, secret), expected, "{secret:?}");
            verify_detached(payload, expected, ID, secret).expect("known answer verifies");
        }
    }

    #[test]
    fn wrong_secret_or_payload_is_a_mismatch() {
        let sig = sign_detached(CONTENT, "abcdef", "0123456789abcdef");
        assert_eq!(
            verify_detached(CONTENT, &sig, "abcdef", "0123456789abcdeX"),
            Err(JwsError::SignatureMismatch {
                token_id: "abcdef".into()
            })
        );
        assert!(matches!(
            verify_detached("other", &sig, "abcdef", "0123456789abcdef"),
            Err(JwsError::SignatureMismatch { .. })
        ));
    }

    #[test]
    fn wrong_key_id_is_refused_before_the_mac() {
        let sig = sign_detached(CONTENT, "abcdef", "0123456789abcdef");
        let err =
            verify_detached(CONTENT, &sig, "ghijkl", "0123456789abcdef").expect_err("other kid");
        assert_eq!(
            err,
            JwsError::KeyId {
                expected: "ghijkl".into(),
                seen: "abcdef".into()
            }
        );
    }

    #[test]
    fn other_algorithms_and_shapes_are_refused() {
        let none_header = BASE64URL.encode(br#"{"alg":"none","kid":"abcdef"}"#);
        let err = verify_detached(CONTENT, &format!("{none_header}..AAAA"), "abcdef", "s")
            .expect_err("alg none");
        assert_eq!(
            err,
            JwsError::Algorithm {
                seen: "none".into()
            }
        );

        let sig = sign_detached(CONTENT, "abcdef", "s");
        let (header, mac) = sig.split_once("..").expect("detached");
        let attached = format!("{header}.{}.{mac}", BASE64URL.encode(CONTENT));
        for bad in [attached.as_str(), "", "abc", "a..b..c", "..", "!!!..AAAA"] {
            assert!(
                matches!(
                    verify_detached(CONTENT, bad, "abcdef", "s"),
                    Err(JwsError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }
}
