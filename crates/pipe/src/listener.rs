use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use multiproc_wire::sys as wsys;

use crate::Connection;
use crate::auth;
use crate::error::{Error, Result};

/// The default time limit on the authkey handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a [`Listener`] listens and a [`Client`] connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix socket at a path in the file system.
    Unix(PathBuf),
    /// A Linux abstract Unix socket name (no file; gone with the listener).
    Abstract(Vec<u8>),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Address {
    /// A TCP address on the loopback interface (127.0.0.1); port 0 picks a free port.
    pub fn localhost(port: u16) -> Address {
        Address::Tcp(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "{}", path.display()),
            Address::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            Address::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

impl FromStr for Address {
    type Err = std::convert::Infallible;

    /// `host:port` is TCP (an IP address, or a host name that resolves, such as
    /// `localhost:6000`), `@name` an abstract socket, anything else a path.
    fn from_str(s: &str) -> std::result::Result<Address, Self::Err> {
        use std::net::ToSocketAddrs;
        let resolved = || {
            let (_, port) = s.rsplit_once(':')?;
            port.parse::<u16>().ok()?;
            if s.contains('/') {
                return None;
            }
            s.to_socket_addrs().ok()?.next()
        };
        if let Ok(addr) = s.parse::<SocketAddr>() {
            Ok(Address::Tcp(addr))
        } else if let Some(addr) = resolved() {
            Ok(Address::Tcp(addr))
        } else if let Some(name) = s.strip_prefix('@') {
            Ok(Address::Abstract(name.as_bytes().to_vec()))
        } else {
            Ok(Address::Unix(PathBuf::from(s)))
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Tcp(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Address {
        Address::Unix(path)
    }
}

impl From<&std::path::Path> for Address {
    fn from(path: &std::path::Path) -> Address {
        Address::Unix(path.to_owned())
    }
}

enum Socket {
    /// With the path and inode of the socket file this listener created, removed on drop.
    Unix(UnixListener, Option<(PathBuf, u64)>),
    Tcp(TcpListener),
}

/// Accepts connections, authenticating each with an authkey (CPython's
/// `multiprocessing.connection.Listener`).
///
/// A TCP listener requires an authkey unless made with
/// [`bind_unauthenticated`](Listener::bind_unauthenticated). A Unix socket file made by the
/// listener is removed when it is dropped.
///
/// ```
/// use multiproc_pipe::{Address, Client, Listener};
///
/// let listener = Listener::bind(Address::localhost(0), Some(b"secret"))?;
/// let address = listener.address().clone();
/// let client = std::thread::spawn(move || -> multiproc_pipe::Result<String> {
///     let mut conn = Client::new(address).authkey(b"secret").connect()?;
///     conn.recv()
/// });
/// let mut conn = listener.accept()?;
/// conn.send("welcome")?;
/// assert_eq!(client.join().unwrap()?, "welcome");
/// # Ok::<(), multiproc_pipe::Error>(())
/// ```
pub struct Listener {
    socket: Socket,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .finish()
    }
}

impl Listener {
    /// Listens on `address`. Every accepted connection must pass the authkey handshake when
    /// `authkey` is given. A TCP address requires an authkey.
    ///
    /// # Errors
    /// [`Error::Auth`] for TCP without an authkey; the operating system's error
    /// (`EADDRINUSE`, ...).
    pub fn bind(address: impl Into<Address>, authkey: Option<&[u8]>) -> Result<Listener> {
        let address = address.into();
        if matches!(address, Address::Tcp(_)) && authkey.is_none() {
            return Err(Error::Auth(
                "a TCP listener needs an authkey (use bind_unauthenticated to accept anyone who can connect)"
                    .into(),
            ));
        }
        Listener::bind_inner(address, authkey)
    }

    /// Listens on `address` and accepts connections without authentication, also over TCP:
    /// anyone who can reach the address can then send messages.
    ///
    /// # Errors
    /// The operating system's error.
    pub fn bind_unauthenticated(address: impl Into<Address>) -> Result<Listener> {
        Listener::bind_inner(address.into(), None)
    }

    fn bind_inner(address: Address, authkey: Option<&[u8]>) -> Result<Listener> {
        let (socket, address) = match address {
            Address::Unix(path) => {
                let listener = UnixListener::bind(&path)?;
                listener.set_nonblocking(true)?;
                let inode = std::fs::metadata(&path)?.ino();
                (Socket::Unix(listener, Some((path.clone(), inode))), Address::Unix(path))
            }
            Address::Abstract(name) => {
                let addr = UnixAddr::from_abstract_name(&name)?;
                let listener = UnixListener::bind_addr(&addr)?;
                listener.set_nonblocking(true)?;
                (Socket::Unix(listener, None), Address::Abstract(name))
            }
            Address::Tcp(addr) => {
                let listener = TcpListener::bind(addr)?;
                listener.set_nonblocking(true)?;
                let bound = listener.local_addr()?;
                (Socket::Tcp(listener), Address::Tcp(bound))
            }
        };
        Ok(Listener {
            socket,
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// The address listened on (for TCP, with the port actually bound).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Sets the time limit on each accepted connection's handshake (default 10 s).
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// Accepts a connection and authenticates it: blocks until a client connects.
    ///
    /// # Errors
    /// [`Error::Auth`] when the client fails the handshake (the connection is closed; the
    /// listener keeps listening), or the operating system's error.
    pub fn accept(&self) -> Result<Connection> {
        self.accept_deadline(None)
    }

    /// [`accept`](Listener::accept) waiting at most `timeout` for a client.
    ///
    /// # Errors
    /// As [`accept`](Listener::accept), and [`Error::Timeout`].
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        self.accept_deadline(wsys::deadline_after(timeout))
    }

    fn accept_deadline(&self, deadline: Option<Instant>) -> Result<Connection> {
        let fd = match &self.socket {
            Socket::Unix(l, _) => l.as_fd(),
            Socket::Tcp(l) => l.as_fd(),
        };
        let mut conn = loop {
            if !wsys::wait_readable(fd, deadline)? {
                return Err(Error::Timeout);
            }
            // The socket is non-blocking: when another thread took the client since `poll`
            // saw it, wait again instead of blocking past the deadline.
            let accepted = match &self.socket {
                Socket::Unix(l, _) => l.accept().map(|(s, _)| Connection::from(s)),
                Socket::Tcp(l) => l.accept().map(|(s, _)| Connection::from(s)),
            };
            match accepted {
                Ok(conn) => break conn,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err.into()),
            }
        };
        if let Some(key) = &self.authkey {
            // No deadline when the limit is too far away to represent.
            let deadline = wsys::deadline_after(self.handshake_timeout);
            auth::deliver_challenge(&mut conn, key, deadline)?;
            auth::answer_challenge(&mut conn, key, deadline)?;
        }
        Ok(conn)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Socket::Unix(_, Some((path, inode))) = &self.socket {
            // Only the file this listener made: not one that replaced it since.
            if std::fs::metadata(path).is_ok_and(|m| m.ino() == *inode) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Connects to a [`Listener`] (CPython's `multiprocessing.connection.Client`).
///
/// ```no_run
/// use multiproc_pipe::Client;
///
/// let mut conn = Client::new("127.0.0.1:6000".parse::<multiproc_pipe::Address>().unwrap())
///     .authkey(b"secret")
///     .connect()?;
/// conn.send_bytes(b"hello")?;
/// # Ok::<(), multiproc_pipe::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    address: Address,
    authkey: Option<Vec<u8>>,
    timeout: Duration,
}

impl Client {
    /// A client for `address`, without an authkey, with a 10 s time limit.
    pub fn new(address: impl Into<Address>) -> Client {
        Client { address: address.into(), authkey: None, timeout: HANDSHAKE_TIMEOUT }
    }

    /// Authenticates with `authkey` (the listener must use the same).
    pub fn authkey(mut self, authkey: &[u8]) -> Client {
        self.authkey = Some(authkey.to_vec());
        self
    }

    /// The time limit on connecting (TCP) and on the handshake.
    pub fn timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Connects and, with an authkey, authenticates both ways.
    ///
    /// # Errors
    /// [`Error::Auth`] when either side rejects the other's key; the operating system's error
    /// (`ECONNREFUSED`, `ENOENT`, ...).
    pub fn connect(&self) -> Result<Connection> {
        let deadline = wsys::deadline_after(self.timeout);
        let mut conn = match &self.address {
            Address::Unix(path) => Connection::from(UnixStream::connect(path)?),
            Address::Abstract(name) => {
                Connection::from(UnixStream::connect_addr(&UnixAddr::from_abstract_name(name)?)?)
            }
            Address::Tcp(addr) => Connection::from(TcpStream::connect_timeout(addr, self.timeout)?),
        };
        if let Some(key) = &self.authkey {
            auth::answer_challenge(&mut conn, key, deadline)?;
            auth::deliver_challenge(&mut conn, key, deadline)?;
        }
        Ok(conn)
    }
}
