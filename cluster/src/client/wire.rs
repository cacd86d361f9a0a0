//! HTTP/1.1 on the wire: the request head we send and the response we
//! read back, with both framings kube-apiserver uses (`Content-Length` for
//! ordinary answers, `Transfer-Encoding: chunked` for watches and large
//! lists).
//!
//! Every request carries `Connection: close`, so a body without either
//! header simply ends at EOF. Bodies are exposed as [`Read`]ers so a watch
//! can be consumed line by line while it is still streaming; ordinary
//! answers are read whole with a size limit.

use std::io::{self, BufRead, Read};

/// Largest response head accepted (status line plus headers).
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line accepted (hex digits plus extensions).
const MAX_CHUNK_LINE: usize = 4096;

/// Status line and headers of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub status: u16,
    /// Header names lower-cased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Reads one CRLF- (or LF-) terminated line without the terminator,
/// refusing lines longer than `limit`.
fn read_line_limited<R: BufRead>(reader: &mut R, limit: usize) -> io::Result<String> {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before the end of the response head",
        ));
    }
    if line.last() != Some(&b'\n') {
        return Err(invalid(format!("line longer than {limit} bytes")));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("line is not UTF-8"))
}

/// Reads the status line and headers. Interim `100 Continue` answers are
/// skipped.
pub(crate) fn read_head<R: BufRead>(reader: &mut R) -> io::Result<ResponseHead> {
    loop {
        let mut budget = MAX_HEAD;
        let status_line = read_line_limited(reader, budget)?;
        budget = budget.saturating_sub(status_line.len());
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(invalid(format!(
                "not an HTTP/1.x status line: {status_line:?}"
            )));
        }
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..1000).contains(s))
            .ok_or_else(|| invalid(format!("bad status code in {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line_limited(reader, budget)?;
            budget = budget
                .checked_sub(line.len() + 2)
                .ok_or_else(|| invalid(format!("response head larger than {MAX_HEAD} bytes")))?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(format!("header line without a colon: {line:?}")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        if status == 100 {
            continue;
        }
        return Ok(ResponseHead { status, headers });
    }
}

/// Decodes a chunked body: yields the chunk data and ends after the last
/// (zero-sized) chunk and its trailers.
#[derive(Debug)]
pub(crate) struct ChunkedReader<R> {
    inner: R,
    /// Bytes left in the current chunk.
    remaining: u64,
    finished: bool,
}

impl<R: BufRead> ChunkedReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            remaining: 0,
            finished: false,
        }
    }

    /// Reads the next chunk-size line; `Ok(false)` after the last chunk.
    fn next_chunk(&mut self) -> io::Result<bool> {
        let line = read_line_limited(&mut self.inner, MAX_CHUNK_LINE)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
        if size > 0 {
            self.remaining = size;
            return Ok(true);
        }
        // Trailers up to the empty line.
        loop {
            if read_line_limited(&mut self.inner, MAX_HEAD)?.is_empty() {
                return Ok(false);
            }
        }
    }

    /// Consumes the CRLF after a chunk's data.
    fn end_of_chunk(&mut self) -> io::Result<()> {
        let line = read_line_limited(&mut self.inner, 2)?;
        if line.is_empty() {
            Ok(())
        } else {
            Err(invalid("chunk data longer than its size"))
        }
    }
}

impl<R: BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.remaining == 0 {
            if self.finished || !self.next_chunk()? {
                self.finished = true;
                return Ok(0);
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..want])?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunk",
            ));
        }
        self.remaining -= read as u64;
        if self.remaining == 0 {
            self.end_of_chunk()?;
        }
        Ok(read)
    }
}

/// A response body, framed by the head that preceded it.
#[derive(Debug)]
pub(crate) enum Body<R> {
    Chunked(ChunkedReader<R>),
    Sized(io::Take<R>),
    UntilClose(R),
}

impl<R: BufRead> Body<R> {
    pub fn new(head: &ResponseHead, reader: R) -> io::Result<Self> {
        // A HEAD answer, 1xx, 204 and 304 carry no body whatever the
        // headers say; we never send HEAD.
        if head.status == 204 || head.status == 304 {
            return Ok(Body::Sized(reader.take(0)));
        }
        if head.is_chunked() {
            return Ok(Body::Chunked(ChunkedReader::new(reader)));
        }
        match head.header("content-length") {
            Some(text) => {
                let length = text
                    .parse::<u64>()
                    .map_err(|_| invalid(format!("bad Content-Length {text:?}")))?;
                Ok(Body::Sized(reader.take(length)))
            }
            None => Ok(Body::UntilClose(reader)),
        }
    }

    /// Reads the whole body, refusing more than `limit` bytes. A sized body
    /// cut short is an error.
    pub fn read_all(mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        (&mut self).take(limit as u64 + 1).read_to_end(&mut body)?;
        if body.len() > limit {
            return Err(invalid(format!("response body larger than {limit} bytes")));
        }
        if let Body::Sized(take) = &self
            && take.limit() > 0
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed {} bytes before the end of the body",
                    take.limit()
                ),
            ));
        }
        Ok(body)
    }
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Chunked(reader) => reader.read(buf),
            Body::Sized(reader) => reader.read(buf),
            // Without framing, the end of the connection is the end of the
            // body; a peer that closes without TLS close_notify is then not
            // an error (nothing could tell a truncation apart anyway).
            Body::UntilClose(reader) => match reader.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(raw: &[u8]) -> (ResponseHead, Vec<u8>) {
        let mut reader = io::BufReader::new(raw);
        let head = read_head(&mut reader).expect("head");
        let body = Body::new(&head, reader)
            .expect("body")
            .read_all(1024)
            .expect("read");
        (head, body)
    }

    #[test]
    fn content_length_body() {
        let (head, body) = response(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}trailing",
        );
        assert_eq!(head.status, 200);
        assert_eq!(head.header("Content-Type"), Some("application/json"));
        assert_eq!(body, b"{}");
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let (head, body) = response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\n",
        );
        assert_eq!(head.status, 200);
        assert_eq!(body, b"hello 0123456789");
    }

    #[test]
    fn interim_continue_is_skipped_and_untill_close_reads_to_eof() {
        let (head, body) =
            response(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\nrest of it");
        assert_eq!(head.status, 404);
        assert_eq!(body, b"rest of it");
    }

    #[test]
    fn truncated_and_malformed_bodies_are_errors() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        ] {
            let mut reader = io::BufReader::new(raw);
            let head = read_head(&mut reader).expect("head");
            let result = Body::new(&head, reader).and_then(|b| b.read_all(1024));
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
        let mut reader = io::BufReader::new(&b"SSH-2.0-OpenSSH\r\n\r\n"[..]);
        assert!(read_head(&mut reader).is_err());
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let mut reader = io::BufReader::new(&b"HTTP/1.1 200 OK\r\n\r\n0123456789"[..]);
        let head = read_head(&mut reader).expect("head");
        let err = Body::new(&head, reader)
            .expect("body")
            .read_all(4)
            .expect_err("too large");
        assert!(err.to_string().contains("larger than 4"), "{err}");
    }

    #[test]
    fn chunked_stream_can_be_read_line_by_line() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    4\r\n{\"a\"\r\n4\r\n:1}\n\r\n6\r\n{\"b\":2\r\n2\r\n}\n\r\n0\r\n\r\n";
        let mut reader = io::BufReader::new(&raw[..]);
        let head = read_head(&mut reader).expect("head");
        let lines: Vec<String> = io::BufReader::new(Body::new(&head, reader).expect("body"))
            .lines()
            .collect::<Result<_, _>>()
            .expect("lines");
        assert_eq!(lines, vec![r#"{"a":1}"#, r#"{"b":2}"#]);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode_query_value("app in (a,b),tier!=x y"),
            "app%20in%20%28a%2Cb%29%2Ctier%21%3Dx%20y"
        );
        assert_eq!(
            encode_query_value("metadata.name=n-1_a~"),
            "metadata.name%3Dn-1_a~"
        );
    }
}
