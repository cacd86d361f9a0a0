//! Just enough HTTP/1.1 for the node API: one request per connection,
//! `Content-Length` bodies only, `Connection: close`.

use std::io::{self, Read, Write};
use std::time::Instant;

/// Limits the server applies while reading a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Request line plus headers.
    pub head: usize,
    /// Body.
    pub body: usize,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// Percent-decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read; each maps to an answer (or none).
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed before sending anything: nothing to answer.
    Closed,
    /// 400.
    Malformed(String),
    /// 431.
    HeadTooLarge,
    /// 413.
    BodyTooLarge { length: u64 },
    /// 501.
    Unsupported(String),
    /// 408.
    Timeout,
    /// The connection broke: nothing to answer.
    Io(io::Error),
}

impl ReadError {
    /// Status and message to answer with, if the connection can still
    /// carry one.
    pub fn answer(&self, limits: &Limits) -> Option<(u16, String)> {
        match self {
            ReadError::Closed | ReadError::Io(_) => None,
            ReadError::Malformed(reason) => Some((400, format!("malformed request: {reason}"))),
            ReadError::HeadTooLarge => Some((
                431,
                format!("request line and headers exceed {} bytes", limits.head),
            )),
            ReadError::BodyTooLarge { length } => Some((
                413,
                format!(
                    "request body of {length} bytes exceeds the limit of {} bytes",
                    limits.body
                ),
            )),
            ReadError::Unsupported(what) => Some((501, format!("not supported: {what}"))),
            ReadError::Timeout => Some((408, "request not received in time".into())),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Reads one request, enforcing `limits` and `deadline` (checked between
/// reads; each read is bounded by the socket's read timeout).
pub(crate) fn read_request<R: Read>(
    reader: &mut R,
    limits: &Limits,
    deadline: Instant,
) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > limits.head {
            return Err(ReadError::HeadTooLarge);
        }
        if Instant::now() > deadline {
            return Err(ReadError::Timeout);
        }
        match reader.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(ReadError::Closed),
            Ok(0) => {
                return Err(ReadError::Malformed(
                    "connection closed inside the headers".into(),
                ));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(ReadError::Timeout),
            Err(e) if buf.is_empty() && e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ReadError::Closed);
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    };
    if head_end > limits.head {
        return Err(ReadError::HeadTooLarge);
    }
    let mut body = buf.split_off(head_end);
    let head = std::str::from_utf8(&buf[..head_end - 4])
        .map_err(|_| ReadError::Malformed("headers are not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed(format!(
            "request line {:?} is not \"METHOD /path HTTP/1.1\"",
            truncate(request_line)
        )));
    };
    if !is_token(method) {
        return Err(ReadError::Malformed(format!(
            "bad method {:?}",
            truncate(method)
        )));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ReadError::Malformed(format!(
            "unsupported version {:?}",
            truncate(version)
        )));
    }
    if !target.starts_with('/') {
        return Err(ReadError::Malformed(format!(
            "request target {:?} is not an absolute path",
            truncate(target)
        )));
    }
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(raw_path, false)
        .ok_or_else(|| ReadError::Malformed("bad percent-encoding in the path".into()))?;
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_decode(k, true).zip(percent_decode(v, true));
        let Some((k, v)) = decoded else {
            return Err(ReadError::Malformed(
                "bad percent-encoding in the query".into(),
            ));
        };
        query.push((k, v));
    }

    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed(format!(
                "header line {:?} has no colon",
                truncate(line)
            )));
        };
        if !is_token(name) {
            return Err(ReadError::Malformed(format!(
                "bad header name {:?}",
                truncate(name)
            )));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(ReadError::Malformed(format!(
                "control character in header {name}"
            )));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }

    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(ReadError::Unsupported(
            "Transfer-Encoding (send Content-Length)".into(),
        ));
    }
    let mut length: Option<u64> = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        let parsed = value
            .parse::<u64>()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                ReadError::Malformed(format!(
                    "Content-Length {:?} is not a number",
                    truncate(value)
                ))
            })?;
        if length.is_some_and(|l| l != parsed) {
            return Err(ReadError::Malformed(
                "conflicting Content-Length headers".into(),
            ));
        }
        length = Some(parsed);
    }
    let length = length.unwrap_or(0);
    if length > limits.body as u64 {
        return Err(ReadError::BodyTooLarge { length });
    }
    let length = length as usize;
    if body.len() > length {
        // Pipelined data after the body: ignored (one request per connection).
        body.truncate(length);
    }
    while body.len() < length {
        if Instant::now() > deadline {
            return Err(ReadError::Timeout);
        }
        let want = (length - body.len()).min(chunk.len());
        match reader.read(&mut chunk[..want]) {
            Ok(0) => {
                return Err(ReadError::Malformed(format!(
                    "body ended after {} of {length} bytes",
                    body.len()
                )));
            }
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(ReadError::Timeout),
            Err(e) => return Err(ReadError::Io(e)),
        }
    }

    Ok(Request {
        method: method.to_owned(),
        path,
        query,
        headers,
        body,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (and `+` as space in queries); `None` on a bad
/// escape or a result that is not UTF-8.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes everything but unreserved characters and `/` (for paths and
/// query values).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// An answer to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub extra_headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn write_to<W: Write>(&self, w: &mut W) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        w.write_all(&self.body)?;
        w.flush()
    }
}

/// A parsed answer, client side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ParsedResponse {
    #[cfg(test)]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a whole response (up to `max_body` bytes of body). Returns a
/// readable reason on malformed input; I/O errors pass through.
pub(crate) fn read_response<R: Read>(
    reader: &mut R,
    max_head: usize,
    max_body: usize,
) -> Result<Result<ParsedResponse, String>, io::Error> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > max_head {
            return Ok(Err(format!("response headers exceed {max_head} bytes")));
        }
        match reader.read(&mut chunk) {
            Ok(0) if buf.is_empty() => {
                return Ok(Err(
                    "the server closed the connection without answering".into()
                ));
            }
            Ok(0) => return Ok(Err("connection closed inside the response headers".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end - 4]) else {
        return Ok(Err("response headers are not UTF-8".into()));
    };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code.parse::<u16>().ok(),
        _ => None,
    };
    let Some(status) = status else {
        return Ok(Err(format!("bad status line {:?}", truncate(status_line))));
    };
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Ok(Err(format!("bad header line {:?}", truncate(line))));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>());
    let mut body = buf.split_off(head_end);
    match length {
        Some(Ok(length)) => {
            if length > max_body {
                return Ok(Err(format!(
                    "response body of {length} bytes exceeds the limit of {max_body}"
                )));
            }
            while body.len() < length {
                let want = (length - body.len()).min(chunk.len());
                match reader.read(&mut chunk[..want]) {
                    Ok(0) => {
                        return Ok(Err(format!(
                            "response body ended after {} of {length} bytes",
                            body.len()
                        )));
                    }
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            body.truncate(length);
        }
        Some(Err(_)) => return Ok(Err("bad Content-Length in the response".into())),
        None => loop {
            if body.len() > max_body {
                return Ok(Err(format!(
                    "response body exceeds the limit of {max_body}"
                )));
            }
            match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        },
    }
    Ok(Ok(ParsedResponse {
        status,
        headers,
        body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        head: 256,
        body: 16,
    };

    fn parse(raw: &[u8]) -> Result<Request, ReadError> {
        read_request(
            &mut &raw[..],
            &LIMITS,
            Instant::now() + Duration::from_secs(5),
        )
    }

    #[test]
    fn parses_a_request_with_query_and_body() -> Result<(), String> {
        let req = parse(
            b"POST /v1/read%20x?path=%2Fetc%2Fos-release&lines=5&a+b=c+d HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nX-Thing:  v \r\n\r\nbodyEXTRA",
        )
        .map_err(|e| format!("{e:?}"))?;
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/read x");
        assert_eq!(req.query_param("path"), Some("/etc/os-release"));
        assert_eq!(req.query_param("lines"), Some("5"));
        assert_eq!(req.query_param("a b"), Some("c d"));
        assert_eq!(req.header("x-thing"), Some("v"));
        assert_eq!(req.body, b"body");
        Ok(())
    }

    #[test]
    fn malformed_requests_get_the_right_answer() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"", None),
            (b"GARBAGE\r\n\r\n", Some(400)),
            (b"GET /x HTTP/1.1\r\nno colon\r\n\r\n", Some(400)),
            (b"GET x HTTP/1.1\r\n\r\n", Some(400)),
            (b"GET /x HTTP/2.0\r\n\r\n", Some(400)),
            (b"GET /%zz HTTP/1.1\r\n\r\n", Some(400)),
            (b"GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", Some(400)),
            (
                b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Some(400),
            ),
            (b"POST /x HTTP/1.1\r\nContent-Length: 17\r\n\r\n", Some(413)),
            (
                b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Some(501),
            ),
            (
                b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
                Some(400),
            ),
            (b"GET /x HTTP/1.1\r\nHost: x\r\n", Some(400)),
        ];
        for (raw, expected) in cases {
            let seen = match parse(raw) {
                Ok(req) => panic!("{:?} parsed as {req:?}", String::from_utf8_lossy(raw)),
                Err(e) => e.answer(&LIMITS).map(|(s, _)| s),
            };
            assert_eq!(seen, *expected, "input {:?}", String::from_utf8_lossy(raw));
        }
        let mut long = b"GET /x HTTP/1.1\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 300));
        long.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(parse(&long), Err(ReadError::HeadTooLarge)));
    }

    #[test]
    fn percent_encoding_round_trips() {
        for s in ["/var/log/a b", "ä/ü?&=%", "plain"] {
            assert_eq!(percent_decode(&percent_encode(s), true).as_deref(), Some(s));
        }
    }

    #[test]
    fn responses_round_trip() -> Result<(), String> {
        let response = Response {
            status: 422,
            content_type: "application/json",
            extra_headers: vec![("X-A", "b".into())],
            body: b"{}".to_vec(),
        };
        let mut wire = Vec::new();
        response.write_to(&mut wire).map_err(|e| e.to_string())?;
        let parsed = read_response(&mut &wire[..], 1024, 1024).map_err(|e| e.to_string())??;
        assert_eq!(parsed.status, 422);
        assert_eq!(parsed.header("x-a"), Some("b"));
        assert_eq!(parsed.body, b"{}");
        Ok(())
    }
}
