//! Downloading pinned URL artifacts.
//!
//! An artifact is named by its sha256: if the cache has it, nothing is
//! downloaded. Otherwise the body streams into a temporary file in the cache
//! while a progress bar runs, and the file is admitted only if its digest
//! matches the pin. Transient failures (connection errors, timeouts, HTTP
//! 5xx and 429) are retried with exponential backoff; anything else fails at
//! once with the status, since retrying a 404 only wastes time.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::cache::{Cache, CacheError};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("downloading {url} failed after {attempts} attempt(s): {reason}")]
    Download {
        url: String,
        attempts: u32,
        reason: String,
    },
    #[error("{url}: {source}")]
    Cache {
        url: String,
        #[source]
        source: CacheError,
    },
}

/// Retry policy for transient failures.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_delay: Duration::from_millis(500),
        }
    }
}

enum Failure {
    Transient(String),
    Permanent(String),
}

/// Returns the cached path of the artifact, downloading it if needed.
pub fn fetch(cache: &Cache, url: &str, sha256: &str, retry: Retry) -> Result<PathBuf, FetchError> {
    if cache.contains(sha256) {
        tracing::debug!(url, sha256, "artifact already cached");
        return Ok(cache.blob_path(sha256));
    }
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(600))
        .user_agent(concat!("cairn-images/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Download {
            url: url.to_owned(),
            attempts: 0,
            reason: e.to_string(),
        })?;
    let mut delay = retry.first_delay;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match download_once(&client, cache, url, sha256) {
            Ok(path) => return Ok(path),
            Err(DownloadError::Cache(source)) => {
                return Err(FetchError::Cache {
                    url: url.to_owned(),
                    source,
                });
            }
            Err(DownloadError::Http(Failure::Permanent(reason))) => {
                return Err(FetchError::Download {
                    url: url.to_owned(),
                    attempts: attempt,
                    reason,
                });
            }
            Err(DownloadError::Http(Failure::Transient(reason))) => {
                if attempt >= retry.attempts {
                    return Err(FetchError::Download {
                        url: url.to_owned(),
                        attempts: attempt,
                        reason,
                    });
                }
                tracing::warn!(url, attempt, %reason, "download failed; retrying in {delay:?}");
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
    }
}

enum DownloadError {
    Http(Failure),
    Cache(CacheError),
}

fn download_once(
    client: &reqwest::blocking::Client,
    cache: &Cache,
    url: &str,
    sha256: &str,
) -> Result<PathBuf, DownloadError> {
    let mut response = client
        .get(url)
        .send()
        .map_err(|e| DownloadError::Http(Failure::Transient(format!("request failed: {e}"))))?;
    let status = response.status();
    if !status.is_success() {
        let reason = format!("HTTP {status}");
        return Err(DownloadError::Http(
            if status.is_server_error() || status.as_u16() == 429 {
                Failure::Transient(reason)
            } else {
                Failure::Permanent(reason)
            },
        ));
    }
    let bar = ProgressBar::new(response.content_length().unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(short_name(url));
    let mut temp = cache.temp_file().map_err(DownloadError::Cache)?;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = response.read(&mut buffer).map_err(|e| {
            DownloadError::Http(Failure::Transient(format!("reading the body failed: {e}")))
        })?;
        if read == 0 {
            break;
        }
        temp.as_file_mut()
            .write_all(&buffer[..read])
            .map_err(|source| {
                DownloadError::Cache(CacheError::Io {
                    path: temp.path().to_path_buf(),
                    source,
                })
            })?;
        bar.inc(read as u64);
    }
    bar.finish_and_clear();
    cache
        .commit(temp, sha256, url)
        .map_err(DownloadError::Cache)
}

fn short_name(url: &str) -> String {
    url.rsplit('/')
        .find(|part| !part.is_empty())
        .unwrap_or(url)
        .to_owned()
}
