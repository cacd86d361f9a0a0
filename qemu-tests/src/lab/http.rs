//! The lab's HTTP server on the gateway: machine configs and PXE files.
//!
//! | path | answer |
//! |---|---|
//! | `/config/<mac>` or `/config/<node name>` | the node's machine config (TOML); 404 when it has none |
//! | `/pxe/boot.ipxe` | an iPXE script chaining to `/pxe/${mac}/boot.ipxe` |
//! | `/pxe/<mac>/boot.ipxe` | the image's `boot.ipxe` with `cairn.config=<url of /config/<mac>>` appended to its `kernel` line |
//! | `/pxe/[<mac>/]<file>` | `vmlinuz`, `initramfs.cpio.zst`, `cmdline`, `cairn.efi` from the image |
//! | `/healthz` | `ok` |
//!
//! MACs match case-insensitively, with `:` or `-` separators. The listener
//! is bound inside the lab namespace (see [`super::netns::in_namespace`]);
//! accepting and answering happen on ordinary threads. Each answer is
//! `HTTP/1.1` with `Connection: close`; files are streamed. Every request
//! is appended to the lab's `http.log` (path percent-decoded) and kept in memory for tests
//! ([`HttpServer::requests`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Image files the server hands out.
pub const PXE_FILES: &[&str] = &["vmlinuz", "initramfs.cpio.zst", "cmdline", "cairn.efi"];

/// What the server answers with; shared with the lab, which changes
/// configs while the server runs.
#[derive(Debug, Clone, Default)]
pub struct Content {
    /// The image directory the PXE files come from.
    pub image: PathBuf,
    /// `http://<gateway>:<port>`.
    pub base_url: String,
    pub nodes: Vec<ServedNode>,
}

#[derive(Debug, Clone)]
pub struct ServedNode {
    pub name: String,
    pub mac: String,
    /// The machine config served at `/config/<mac>`; `None` answers 404.
    pub config: Option<String>,
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// The running server; dropping it stops it.
#[derive(Debug)]
pub struct HttpServer {
    pub addr: SocketAddr,
    content: Arc<RwLock<Content>>,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Normalises a MAC for comparison: lower case, `:` separators.
pub fn normalize_mac(text: &str) -> String {
    text.trim().to_ascii_lowercase().replace('-', ":")
}

impl HttpServer {
    /// Starts serving on `listener` (already bound, e.g. inside the lab
    /// namespace), logging requests to `log`.
    pub fn start(
        listener: TcpListener,
        content: Arc<RwLock<Content>>,
        log: Option<PathBuf>,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, content, requests) = (stop.clone(), content.clone(), requests.clone());
            std::thread::Builder::new()
                .name("lab-http".into())
                .spawn(move || accept_loop(listener, &stop, &content, &requests, log))?
        };
        Ok(Self {
            addr,
            content,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    /// The shared content (change configs through it).
    pub fn content(&self) -> &Arc<RwLock<Content>> {
        &self.content
    }

    /// Requests answered so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    stop: &AtomicBool,
    content: &Arc<RwLock<Content>>,
    requests: &Arc<Mutex<Vec<Request>>>,
    log: Option<PathBuf>,
) {
    let log = log.map(Arc::new);
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (content, requests, log) = (content.clone(), requests.clone(), log.clone());
                let _ = std::thread::Builder::new()
                    .name("lab-http-conn".into())
                    .spawn(move || {
                        if let Some(request) = handle(stream, &content) {
                            if let Some(log) = log.as_deref() {
                                append_log(log, &request);
                            }
                            if let Ok(mut requests) = requests.lock() {
                                requests.push(request);
                            }
                        }
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) => {
                tracing::warn!("lab HTTP server: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn append_log(path: &std::path::Path, request: &Request) {
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(
            file,
            "{} {} {}",
            request.method, request.path, request.status
        );
    }
}

enum Body {
    Text(&'static str, String),
    File(PathBuf),
}

fn handle(stream: TcpStream, content: &RwLock<Content>) -> Option<Request> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    // Skip the headers.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = percent_decode(parts.next().unwrap_or_default());
    let answer = if method == "GET" || method == "HEAD" {
        let content = content.read().ok()?.clone();
        route(&path, &content)
    } else {
        Err(405)
    };
    let status = match &answer {
        Ok(_) => 200,
        Err(status) => *status,
    };
    let mut stream = stream;
    let _ = respond(&mut stream, &method, answer);
    Some(Request {
        method,
        path,
        status,
    })
}

fn respond(stream: &mut TcpStream, method: &str, answer: Result<Body, u16>) -> io::Result<()> {
    let head_only = method == "HEAD";
    match answer {
        Ok(Body::Text(content_type, text)) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                text.len()
            )?;
            if !head_only {
                stream.write_all(text.as_bytes())?;
            }
        }
        Ok(Body::File(path)) => {
            let mut file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(_) => return respond(stream, method, Err(404)),
            };
            let length = file.metadata()?.len();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
            )?;
            if !head_only {
                io::copy(&mut (&mut file).take(length), stream)?;
            }
        }
        Err(status) => {
            let reason = match status {
                404 => "Not Found",
                405 => "Method Not Allowed",
                _ => "Error",
            };
            let text = format!("{status} {reason}\n");
            write!(
                stream,
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                text.len(),
                if head_only { "" } else { &text }
            )?;
        }
    }
    stream.flush()
}

fn find_node<'a>(content: &'a Content, key: &str) -> Option<&'a ServedNode> {
    let mac = normalize_mac(key);
    content
        .nodes
        .iter()
        .find(|node| normalize_mac(&node.mac) == mac || node.name == key)
}

/// Decodes `%XX` escapes (iPXE escapes the colons of a MAC in a path).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route(path: &str, content: &Content) -> Result<Body, u16> {
    let path = path.split('?').next().unwrap_or_default();
    let decoded: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["healthz"] => Ok(Body::Text("text/plain", "ok\n".into())),
        ["config", key] => find_node(content, key)
            .and_then(|node| node.config.clone())
            .map(|config| Body::Text("application/toml", config))
            .ok_or(404),
        ["pxe", "boot.ipxe"] => Ok(Body::Text(
            "text/plain",
            format!(
                "#!ipxe\nchain {}/pxe/${{mac}}/boot.ipxe\n",
                content.base_url
            ),
        )),
        ["pxe", key, "boot.ipxe"] => {
            let node = find_node(content, key).ok_or(404u16)?;
            let script =
                std::fs::read_to_string(content.image.join("boot.ipxe")).map_err(|_| 404u16)?;
            Ok(Body::Text(
                "text/plain",
                pxe_script(&script, &config_url(&content.base_url, &node.mac)),
            ))
        }
        ["pxe", file] | ["pxe", _, file] if PXE_FILES.contains(file) => {
            Ok(Body::File(content.image.join(file)))
        }
        _ => Err(404),
    }
}

/// The URL a node fetches its machine config from.
pub fn config_url(base_url: &str, mac: &str) -> String {
    format!("{base_url}/config/{}", normalize_mac(mac))
}

/// The image's iPXE script with `cairn.config=<url>` appended to every
/// `kernel` line.
pub fn pxe_script(script: &str, config_url: &str) -> String {
    let mut out = String::new();
    for line in script.lines() {
        out.push_str(line);
        if line.trim_start().starts_with("kernel ") {
            out.push_str(" cairn.config=");
            out.push_str(config_url);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_line_gets_the_config_url() {
        let script = "#!ipxe\nkernel vmlinuz initrd=initramfs.cpio.zst console=ttyS0\ninitrd initramfs.cpio.zst\nboot\n";
        let out = pxe_script(script, "http://10.5.0.1:8080/config/52:54:00:ca:01:01");
        assert!(out.contains(
            "console=ttyS0 cairn.config=http://10.5.0.1:8080/config/52:54:00:ca:01:01\n"
        ));
        assert!(out.contains("\ninitrd initramfs.cpio.zst\nboot\n"));
    }

    #[test]
    fn routes() {
        let content = Content {
            image: PathBuf::from("/nonexistent"),
            base_url: "http://10.5.0.1:8080".into(),
            nodes: vec![ServedNode {
                name: "node-1".into(),
                mac: "52:54:00:ca:01:01".into(),
                config: Some("[node]\n".into()),
            }],
        };
        for key in ["52:54:00:CA:01:01", "52-54-00-ca-01-01", "node-1"] {
            assert!(matches!(
                route(&format!("/config/{key}"), &content),
                Ok(Body::Text(_, text)) if text == "[node]\n"
            ));
        }
        assert!(matches!(
            route("/config/52:54:00:00:00:00", &content),
            Err(404)
        ));
        assert!(
            matches!(route("/pxe/x/vmlinuz", &content), Ok(Body::File(p)) if p.ends_with("vmlinuz"))
        );
        assert!(matches!(route("/pxe/../etc/passwd", &content), Err(404)));
        assert!(
            matches!(route("/pxe/boot.ipxe", &content), Ok(Body::Text(_, t)) if t.contains("${mac}"))
        );
    }
}
