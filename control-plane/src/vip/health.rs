//! The local health check: is this node's apiserver ready?
//!
//! [`HealthCheck`] GETs the readiness URL (`https://127.0.0.1:6443/readyz`
//! by default; plain `http://` works too) and counts any 2xx answer within
//! the timeout as a pass. With `--health-cafile` the server certificate is
//! verified against that CA; without it verification is skipped, which is
//! only allowed for loopback URLs (the apiserver's own certificate need not
//! name 127.0.0.1, and nothing on loopback can be spoofed from the network).
//!
//! [`Verdict`] turns single results into health changes: healthy after one
//! pass, unhealthy after `threshold` consecutive failures, so one slow
//! answer from a loaded apiserver does not move the VIP.

use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::VipError;

/// An HTTP(S) readiness probe.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    client: reqwest::Client,
    url: Url,
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl HealthCheck {
    pub fn new(url: &str, cafile: Option<&Path>, timeout: Duration) -> Result<Self, VipError> {
        let invalid = |reason: String| VipError::Health {
            url: url.to_owned(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|e| invalid(format!("not a URL: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        match (parsed.scheme(), cafile) {
            ("http", _) => {}
            ("https", Some(cafile)) => {
                let pem = std::fs::read(cafile)
                    .map_err(|e| invalid(format!("reading {}: {e}", cafile.display())))?;
                let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                    invalid(format!("{}: not a PEM certificate: {e}", cafile.display()))
                })?;
                builder = builder
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(ca);
            }
            ("https", None) if is_loopback(&parsed) => {
                builder = builder.danger_accept_invalid_certs(true);
            }
            ("https", None) => {
                return Err(invalid(
                    "an https URL off loopback needs --health-cafile".to_owned(),
                ));
            }
            (scheme, _) => return Err(invalid(format!("unsupported scheme {scheme:?}"))),
        }
        let client = builder
            .build()
            .map_err(|e| invalid(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            url: parsed,
        })
    }

    /// One probe: `Ok` when ready, else why not.
    pub async fn probe(&self) -> Result<(), String> {
        let response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| format!("GET {}: {}", self.url, error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            Err(format!("GET {}: {status}: {}", self.url, body.trim()))
        }
    }
}

/// `error: cause: cause` (reqwest's own message hides the TLS or
/// connection reason in its sources).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Turns probe results into health changes (see the module documentation).
#[derive(Debug, Clone)]
pub struct Verdict {
    threshold: u32,
    failures: u32,
    healthy: Option<bool>,
}

impl Verdict {
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            failures: 0,
            healthy: None,
        }
    }

    /// The new verdict when this result changes it.
    pub fn record(&mut self, passed: bool) -> Option<bool> {
        let healthy = if passed {
            self.failures = 0;
            true
        } else {
            self.failures = self.failures.saturating_add(1);
            // Before the first pass one failure is enough to say so.
            if self.failures < self.threshold && self.healthy == Some(true) {
                return None;
            }
            false
        };
        if self.healthy == Some(healthy) {
            return None;
        }
        self.healthy = Some(healthy);
        Some(healthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_needs_consecutive_failures() {
        let mut v = Verdict::new(2);
        assert_eq!(v.record(false), Some(false));
        assert_eq!(v.record(true), Some(true));
        assert_eq!(v.record(true), None);
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(true), None);
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(false), Some(false));
        assert_eq!(v.record(false), None);
    }

    #[test]
    fn verification_is_skipped_only_on_loopback() {
        let timeout = Duration::from_secs(1);
        assert!(HealthCheck::new("https://127.0.0.1:6443/readyz", None, timeout).is_ok());
        assert!(HealthCheck::new("https://[::1]:6443/readyz", None, timeout).is_ok());
        assert!(HealthCheck::new("https://localhost:6443/readyz", None, timeout).is_ok());
        assert!(HealthCheck::new("http://10.0.0.1:8080/readyz", None, timeout).is_ok());
        let err = HealthCheck::new("https://10.0.0.1:6443/readyz", None, timeout)
            .expect_err("off loopback without a CA");
        assert!(err.to_string().contains("--health-cafile"), "{err}");
        assert!(HealthCheck::new("ftp://127.0.0.1/readyz", None, timeout).is_err());
    }
}
