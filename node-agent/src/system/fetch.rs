//! A small HTTP/1.1 GET for `cairn.config=` URLs: `http://` and `https://`
//! (rustls with the Mozilla roots compiled in, since a node has no CA
//! bundle of its own), redirects, chunked or length-delimited bodies, a
//! size cap and timeouts. node-agent is `/init` and part of every image
//! twice over, so a general HTTP stack (and its async runtime) would cost
//! more than this one job is worth.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// How many redirects are followed.
const MAX_REDIRECTS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A parsed `http(s)://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!(
                "{text:?}: only http:// and https:// URLs are supported"
            ));
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('/') => (&rest[..at], rest[at..].to_owned()),
            Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
            None => (rest, "/".to_owned()),
        };
        let target = target.split('#').next().unwrap_or("/").to_owned();
        if authority.contains('@') {
            return Err(format!("{text:?}: credentials in URLs are not supported"));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: unclosed [ in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => port
                    .parse()
                    .map_err(|_| format!("{text:?}: bad port {port:?}"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("{text:?}: unexpected {after:?} after the host")),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (
                    host.to_owned(),
                    port.parse()
                        .map_err(|_| format!("{text:?}: bad port {port:?}"))?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("{text:?}: no host"));
        }
        Ok(Self {
            https,
            host,
            port,
            target,
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.https { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `location` resolved against this URL.
    fn join(&self, location: &str) -> Result<Url, String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            return Url::parse(location);
        }
        let scheme = if self.https { "https" } else { "http" };
        let base = format!("{scheme}://{}", self.host_header());
        if location.starts_with('/') {
            return Url::parse(&format!("{base}{location}"));
        }
        let directory = self.target.rsplit_once('/').map_or("", |(dir, _)| dir);
        Url::parse(&format!("{base}{directory}/{location}"))
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// GETs `url`, following redirects; the body must be at most `max_bytes`.
pub fn get(url: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
    let mut url = Url::parse(url)?;
    for _ in 0..=MAX_REDIRECTS {
        match get_once(&url, max_bytes)? {
            Answer::Body(body) => return Ok(body),
            Answer::Redirect(location) => url = url.join(&location)?,
        }
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

enum Answer {
    Body(Vec<u8>),
    Redirect(String),
}

fn connect(url: &Url) -> Result<Box<dyn Stream>, String> {
    let addresses: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {}: {e}", url.host))?
        .collect();
    let mut last_error = format!("{} has no address", url.host);
    for address in addresses {
        match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
            Ok(tcp) => {
                tcp.set_read_timeout(Some(IO_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                tcp.set_write_timeout(Some(IO_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                if !url.https {
                    return Ok(Box::new(tcp));
                }
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
                let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                    .map_err(|e| format!("{}: {e}", url.host))?;
                let connection = rustls::ClientConnection::new(Arc::new(config), name)
                    .map_err(|e| e.to_string())?;
                return Ok(Box::new(rustls::StreamOwned::new(connection, tcp)));
            }
            Err(error) => last_error = format!("connecting to {address}: {error}"),
        }
    }
    Err(last_error)
}

fn get_once(url: &Url, max_bytes: u64) -> Result<Answer, String> {
    let mut stream = connect(url)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cairn-node-agent/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.target,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", status_line.trim()))?;
    let mut length = None;
    let mut chunked = false;
    let mut location = None;
    loop {
        let mut line = String::new();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| format!("reading headers: {e}"))?;
        let line = line.trim_end();
        if read == 0 || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<u64>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "location" => location = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    if matches!(status, 301 | 302 | 303 | 307 | 308) {
        return location
            .map(Answer::Redirect)
            .ok_or_else(|| format!("HTTP {status} without a Location"));
    }
    if !(200..300).contains(&status) {
        return Err(format!(
            "HTTP {}",
            status_line.trim_start_matches("HTTP/1.1 ").trim()
        ));
    }
    let too_large = || format!("the body is larger than {max_bytes} bytes");
    let body = if chunked {
        read_chunked(&mut reader, max_bytes)?
    } else if let Some(length) = length {
        if length > max_bytes {
            return Err(too_large());
        }
        let mut body = Vec::new();
        (&mut reader)
            .take(length)
            .read_to_end(&mut body)
            .map_err(|e| format!("reading the body: {e}"))?;
        if (body.len() as u64) < length {
            return Err(format!(
                "the body ended after {} of {length} bytes",
                body.len()
            ));
        }
        body
    } else {
        let mut body = Vec::new();
        (&mut reader)
            .take(max_bytes + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("reading the body: {e}"))?;
        body
    };
    if body.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(Answer::Body(body))
}

fn read_chunked(reader: &mut impl BufRead, max_bytes: u64) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("reading a chunk size: {e}"))?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {:?}", line.trim()))?;
        if size == 0 {
            return Ok(body);
        }
        if body.len() as u64 + size > max_bytes {
            return Err(format!("the body is larger than {max_bytes} bytes"));
        }
        let before = body.len();
        reader
            .take(size)
            .read_to_end(&mut body)
            .map_err(|e| format!("reading a chunk: {e}"))?;
        if (body.len() - before) as u64 != size {
            return Err("the body ended inside a chunk".to_owned());
        }
        let mut crlf = String::new();
        reader
            .read_line(&mut crlf)
            .map_err(|e| format!("reading a chunk end: {e}"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls_parse_with_ports_paths_and_ipv6() {
        let url =
            Url::parse("http://10.5.0.1:8080/config/52:54:00:ca:00:01?x=1#frag").expect("url");
        assert_eq!(
            url,
            Url {
                https: false,
                host: "10.5.0.1".into(),
                port: 8080,
                target: "/config/52:54:00:ca:00:01?x=1".into()
            }
        );
        let url = Url::parse("https://[fd00::1]/c").expect("v6");
        assert_eq!(
            (url.host.as_str(), url.port, url.https),
            ("fd00::1", 443, true)
        );
        assert_eq!(Url::parse("http://h?q").expect("q").target, "/?q");
        assert!(Url::parse("ftp://h/x").is_err());
        assert!(Url::parse("http://u:p@h/x").is_err());
        assert!(Url::parse("http://h:99999/x").is_err());
        let base = Url::parse("http://h:81/a/b").expect("base");
        assert_eq!(base.join("/c").expect("abs").target, "/c");
        assert_eq!(base.join("c").expect("rel").target, "/a/c");
        assert_eq!(base.join("https://o/p").expect("full").host, "o");
    }

    /// Serves each canned answer to one connection, in order.
    fn serve(answers: Vec<String>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        format!("http://{address}")
    }

    #[test]
    fn bodies_redirects_and_errors() {
        let base = serve(vec![
            "HTTP/1.1 302 Found\r\nLocation: /real\r\nContent-Length: 0\r\n\r\n".into(),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".into(),
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd".into(),
            "HTTP/1.1 200 OK\r\n\r\nuntil close".into(),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(),
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".into(),
        ]);
        assert_eq!(
            get(&format!("{base}/x"), 1024).expect("chunked"),
            b"hello world"
        );
        assert_eq!(get(&base, 1024).expect("length"), b"abcd");
        assert_eq!(get(&base, 1024).expect("close"), b"until close");
        assert_eq!(get(&base, 1024).expect_err("404"), "HTTP 404 Not Found");
        assert!(
            get(&base, 10)
                .expect_err("cap")
                .contains("larger than 10 bytes")
        );
    }
}
