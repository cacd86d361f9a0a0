//! The machine, as networking uses it: [`NetHost`] for links, addresses
//! and routes, [`DhcpTransport`] for DHCP datagrams. [`LinuxNet`] does it
//! with rtnetlink and a UDP socket; tests use recording doubles.

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn, sockopt,
};

use super::netlink::{self, RouteProtocol};
use super::{Link, NetError};

pub const DHCP_SERVER_PORT: u16 = 67;
pub const DHCP_CLIENT_PORT: u16 = 68;

pub trait NetHost {
    fn links(&mut self) -> Result<Vec<Link>, NetError>;
    fn set_up(&mut self, link: &Link, up: bool) -> Result<(), NetError>;
    /// Adds or updates an address; `lifetime` in seconds, `None` forever.
    fn add_address(
        &mut self,
        link: &Link,
        address: IpAddr,
        prefix: u8,
        lifetime: Option<u32>,
    ) -> Result<(), NetError>;
    fn remove_address(&mut self, link: &Link, address: IpAddr, prefix: u8) -> Result<(), NetError>;
    /// Adds or replaces the default route of the gateway's family.
    fn add_default_route(
        &mut self,
        link: &Link,
        gateway: IpAddr,
        protocol: RouteProtocol,
        onlink: bool,
    ) -> Result<(), NetError>;
    /// A DHCP client socket on this link.
    fn dhcp_transport(&mut self, link: &Link) -> Result<Box<dyn DhcpTransport>, NetError>;
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// DHCP datagrams from and to the client port.
pub trait DhcpTransport: Send {
    /// Sends `packet` to port 67 of `to` (the limited broadcast address or
    /// a server).
    fn send(&mut self, packet: &[u8], to: Ipv4Addr) -> io::Result<()>;
    /// The next datagram, or `None` once `timeout` has passed.
    fn receive(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>>;
}

/// The real machine, in the calling thread's network namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxNet;

fn netlink_error(operation: &str, interface: &str) -> impl FnOnce(io::Error) -> NetError {
    let operation = operation.to_owned();
    let interface = interface.to_owned();
    move |source| NetError::Netlink {
        operation,
        interface,
        source,
    }
}

fn request(message: netlink::Message, operation: &str, interface: &str) -> Result<(), NetError> {
    netlink::Socket::open()
        .and_then(|mut socket| socket.request(message))
        .map_err(netlink_error(operation, interface))
}

impl NetHost for LinuxNet {
    fn links(&mut self) -> Result<Vec<Link>, NetError> {
        let payloads = netlink::Socket::open()
            .and_then(|mut socket| socket.dump(netlink::get_links()))
            .map_err(netlink_error("listing links", "all interfaces"))?;
        let mut links: Vec<Link> = payloads
            .iter()
            .filter_map(|p| netlink::parse_link(p))
            .collect();
        links.sort_by_key(|l| l.index);
        Ok(links)
    }

    fn set_up(&mut self, link: &Link, up: bool) -> Result<(), NetError> {
        let operation = if up {
            "setting link up"
        } else {
            "setting link down"
        };
        request(netlink::set_link_up(link.index, up), operation, &link.name)
    }

    fn add_address(
        &mut self,
        link: &Link,
        address: IpAddr,
        prefix: u8,
        lifetime: Option<u32>,
    ) -> Result<(), NetError> {
        request(
            netlink::add_address(link.index, address, prefix, lifetime),
            &format!("adding address {address}/{prefix}"),
            &link.name,
        )
    }

    fn remove_address(&mut self, link: &Link, address: IpAddr, prefix: u8) -> Result<(), NetError> {
        request(
            netlink::remove_address(link.index, address, prefix),
            &format!("removing address {address}/{prefix}"),
            &link.name,
        )
    }

    fn add_default_route(
        &mut self,
        link: &Link,
        gateway: IpAddr,
        protocol: RouteProtocol,
        onlink: bool,
    ) -> Result<(), NetError> {
        request(
            netlink::add_default_route(link.index, gateway, protocol, onlink),
            &format!("adding default route via {gateway}"),
            &link.name,
        )
    }

    fn dhcp_transport(&mut self, link: &Link) -> Result<Box<dyn DhcpTransport>, NetError> {
        let transport = UdpTransport::bind(&link.name).map_err(|source| NetError::Socket {
            operation: format!("binding the DHCP client socket (UDP port {DHCP_CLIENT_PORT})"),
            interface: link.name.clone(),
            source,
        })?;
        Ok(Box::new(transport))
    }
}

/// `0.0.0.0:68` tied to one interface, broadcasts allowed.
#[derive(Debug)]
pub struct UdpTransport {
    socket: UdpSocket,
}

impl UdpTransport {
    pub fn bind(interface: &str) -> io::Result<Self> {
        let fd = socket::socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Udp,
        )?;
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        socket::setsockopt(&fd, sockopt::Broadcast, &true)?;
        socket::setsockopt(&fd, sockopt::BindToDevice, &OsString::from(interface))?;
        socket::bind(
            fd.as_raw_fd(),
            &SockaddrIn::new(0, 0, 0, 0, DHCP_CLIENT_PORT),
        )?;
        Ok(Self {
            socket: UdpSocket::from(fd),
        })
    }
}

impl DhcpTransport for UdpTransport {
    fn send(&mut self, packet: &[u8], to: Ipv4Addr) -> io::Result<()> {
        self.socket
            .send_to(packet, SocketAddr::from((to, DHCP_SERVER_PORT)))
            .map(|_| ())
    }

    fn receive(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut buf = vec![0u8; 1500];
        match self.socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
