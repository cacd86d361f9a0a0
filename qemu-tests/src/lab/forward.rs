//! Port forwards from the host's loopback into the lab namespace.
//!
//! A forward listens on `127.0.0.1:<port>` in the host namespace (port 0
//! picks a free one). For every accepted connection it opens a connection
//! to the target from inside the lab namespace
//! ([`super::netns::in_namespace`]) and relays bytes both ways, one thread
//! per direction; a half-close from the client is passed on; when the target closes, the
//! client connection is closed. Nothing is routed: the host
//! never gets a route or an address in the lab network. Dropping the
//! forward stops the listener and shuts every relayed connection down.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::netns;

/// How long connecting to the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Connections = Arc<Mutex<HashMap<u64, (TcpStream, TcpStream)>>>;

/// A running forward.
#[derive(Debug)]
pub struct Forward {
    /// Where clients connect (host namespace, loopback).
    pub listen: SocketAddr,
    /// Where connections go (inside the lab namespace).
    pub target: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Connections,
    thread: Option<JoinHandle<()>>,
}

impl Forward {
    /// Listens on `127.0.0.1:listen_port` and relays to `target` inside
    /// `netns`.
    pub fn start(netns: &str, target: SocketAddr, listen_port: u16) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", listen_port))?;
        let listen = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Connections = Arc::default();
        let thread = {
            let (stop, connections, netns) = (stop.clone(), connections.clone(), netns.to_owned());
            std::thread::Builder::new()
                .name(format!("lab-forward-{}", listen.port()))
                .spawn(move || accept_loop(&listener, &netns, target, &stop, &connections))?
        };
        Ok(Self {
            listen,
            target,
            stop,
            connections,
            thread: Some(thread),
        })
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Ok(connections) = self.connections.lock() {
            for (client, upstream) in connections.values() {
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
            }
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    netns: &str,
    target: SocketAddr,
    stop: &AtomicBool,
    connections: &Connections,
) {
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let (netns, connections) = (netns.to_owned(), connections.clone());
                let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
                let _ = std::thread::Builder::new()
                    .name("lab-forward-conn".into())
                    .spawn(move || {
                        if let Err(e) = relay(client, &netns, target, id, &connections) {
                            tracing::debug!("forward to {target} in {netns}: {e}");
                        }
                        if let Ok(mut connections) = connections.lock() {
                            connections.remove(&id);
                        }
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) => {
                tracing::warn!("forward to {target}: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn relay(
    client: TcpStream,
    netns: &str,
    target: SocketAddr,
    id: u64,
    connections: &Connections,
) -> io::Result<()> {
    client.set_nonblocking(false)?;
    let upstream = netns::in_namespace(netns, || {
        TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)
    })?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Ok(mut map) = connections.lock() {
        map.insert(id, (client.try_clone()?, upstream.try_clone()?));
    }
    let (mut client_read, mut upstream_write) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::Builder::new()
        .name("lab-forward-up".into())
        .spawn(move || {
            let _ = io::copy(&mut client_read, &mut upstream_write);
            let _ = upstream_write.shutdown(Shutdown::Write);
        })?;
    let (mut upstream_read, mut client_write) = (upstream, client);
    let _ = io::copy(&mut upstream_read, &mut client_write);
    // The target is done: end the client's side too, so the other
    // direction's thread stops even if the client keeps its socket open.
    let _ = client_write.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}
