use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use multiproc_wire::{fd_serde, frame, sys as wsys};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::sys;

/// The default limit on an incoming message: 256 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = frame::DEFAULT_MAX_LEN;

/// How much is read ahead in one system call.
const READ_AHEAD: usize = 64 << 10;
/// The longest a blocked receive spins before sleeping in `poll`.
const MAX_SPIN: Duration = Duration::from_micros(50);

/// What carries a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Transport {
    /// An `AF_UNIX` stream socket: can carry file descriptors.
    Unix,
    /// A pipe (one-way connections).
    Pipe,
    /// Any other stream socket (TCP).
    Inet,
}

/// How long a blocked receive spins before sleeping, adapted to how fast the peer answers: a
/// wake-up through the kernel costs tens of microseconds between cores, a short spin nothing
/// when the peer answers within it.
#[derive(Debug, Clone, Copy)]
struct Spin {
    budget: Duration,
    max: Duration,
}

impl Spin {
    fn new() -> Spin {
        let max = if wsys::multicore() { MAX_SPIN } else { Duration::ZERO };
        Spin { budget: max, max }
    }

    fn set_max(&mut self, max: Duration) {
        self.max = max;
        self.budget = self.budget.min(max);
    }

    /// After sleeping `slept` for data: had the budget been longer, would spinning have caught
    /// it? Then spin fully next time; else spin less.
    fn slept(&mut self, slept: Duration) {
        if slept < self.max * 2 && self.budget > Duration::ZERO || slept < self.max {
            self.budget = self.max;
        } else {
            self.budget /= 2;
            if self.budget < Duration::from_micros(2) {
                self.budget = Duration::ZERO;
            }
        }
    }
}

/// One end of a connection between two processes (CPython's `multiprocessing.connection.Connection`).
///
/// Made by [`pipe`], [`Listener::accept`](crate::Listener::accept) or
/// [`Client::connect`](crate::Client::connect). Messages are framed as CPython frames them, so
/// [`send_bytes`](Connection::send_bytes) / [`recv_bytes`](Connection::recv_bytes) talk to a
/// CPython peer; [`send`](Connection::send) / [`recv`](Connection::recv) carry any serde value,
/// including file descriptors ([`Fd`](multiproc_wire::Fd)) and other `Connection`s over Unix
/// sockets.
///
/// A `Connection` can itself be passed to a child process as an argument, or sent through
/// another connection. It is `Send` but not `Sync`: one thread at a time uses an end (clone the
/// descriptor with [`try_clone`](Connection::try_clone) to give a second thread a sending end).
///
/// ```
/// let (mut a, mut b) = multiproc_pipe::pipe(true)?;
/// a.send(&("hello", 42u32))?;
/// let (word, n): (String, u32) = b.recv()?;
/// assert_eq!((word.as_str(), n), ("hello", 42));
/// b.send_bytes(b"raw bytes")?;
/// assert_eq!(a.recv_bytes()?, b"raw bytes");
/// # Ok::<(), multiproc_pipe::Error>(())
/// ```
pub struct Connection {
    fd: Option<OwnedFd>,
    transport: Transport,
    readable: bool,
    writable: bool,
    max_len: u64,
    /// Read-ahead: bytes `rbuf[rpos..rend]` are received and not yet consumed.
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// Descriptors received and not yet claimed by a message, in arrival order, each with the
    /// stream offset of the last byte of the read that brought it. The kernel delivers a
    /// sender's descriptors with the read that reaches the first byte of its `sendmsg` and ends
    /// that read inside the same `sendmsg`, whose bytes all belong to one frame: so that offset
    /// lies inside the frame the descriptors were sent with.
    rfds: VecDeque<(u64, OwnedFd)>,
    /// Bytes received from the stream so far.
    received: u64,
    /// A large message being received straight into its own buffer: (buffer, bytes filled).
    big: Option<(Vec<u8>, usize)>,
    /// Bytes of an oversized message still to discard.
    skip: u64,
    /// Reused encoding buffers.
    scratch: Vec<u8>,
    scratch_fds: Vec<RawFd>,
    spin: Spin,
}

/// A pair of connected [`Connection`]s (CPython's `multiprocessing.Pipe`).
///
/// With `duplex`, both ends send and receive (a Unix socketpair, which also carries file
/// descriptors). Without, the first end only receives and the second only sends (a pipe,
/// which cannot carry descriptors).
///
/// # Errors
/// The operating system's error (`EMFILE`).
///
/// ```
/// let (mut reader, mut writer) = multiproc_pipe::pipe(false)?;
/// writer.send(&[1u8, 2, 3])?;
/// assert_eq!(reader.recv::<[u8; 3]>()?, [1, 2, 3]);
/// assert!(reader.send(&0).is_err());
/// # Ok::<(), multiproc_pipe::Error>(())
/// ```
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    if duplex {
        let (a, b) = wsys::socketpair()?;
        Ok((
            Connection::new(a, Transport::Unix, true, true)?,
            Connection::new(b, Transport::Unix, true, true)?,
        ))
    } else {
        let (r, w) = sys::pipe()?;
        sys::grow_pipe(w.as_fd(), 1 << 20);
        Ok((
            Connection::new(r, Transport::Pipe, true, false)?,
            Connection::new(w, Transport::Pipe, false, true)?,
        ))
    }
}

impl Connection {
    fn new(fd: OwnedFd, transport: Transport, readable: bool, writable: bool) -> Result<Connection> {
        wsys::set_nonblocking(fd.as_fd(), true)?;
        Ok(Connection {
            fd: Some(fd),
            transport,
            readable,
            writable,
            max_len: DEFAULT_MAX_MESSAGE,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            rfds: VecDeque::new(),
            received: 0,
            big: None,
            skip: 0,
            scratch: Vec::new(),
            scratch_fds: Vec::new(),
            spin: Spin::new(),
        })
    }

    /// A duplex connection over a connected stream socket (Unix or TCP).
    ///
    /// # Errors
    /// When `fd` is not a socket, or the operating system refuses to make it non-blocking.
    pub fn from_socket(fd: OwnedFd) -> Result<Connection> {
        let transport = match sys::socket_domain(fd.as_fd()) {
            Some(libc::AF_UNIX) => Transport::Unix,
            Some(_) => Transport::Inet,
            None => {
                return Err(Error::Io(io::Error::new(io::ErrorKind::InvalidInput, "not a socket")));
            }
        };
        Connection::new(fd, transport, true, true)
    }

    fn fd(&self) -> Result<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd()).ok_or(Error::Closed)
    }

    fn check_readable(&self) -> Result<BorrowedFd<'_>> {
        let fd = self.fd()?;
        if !self.readable {
            return Err(Error::WrongDirection("write-only"));
        }
        Ok(fd)
    }

    fn check_writable(&self) -> Result<BorrowedFd<'_>> {
        let fd = self.fd()?;
        if !self.writable {
            return Err(Error::WrongDirection("read-only"));
        }
        Ok(fd)
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether [`close`](Connection::close) was called.
    pub fn closed(&self) -> bool {
        self.fd.is_none()
    }

    /// Closes this end: the peer sees end of stream once every copy is closed. Later calls
    /// return [`Error::Closed`].
    pub fn close(&mut self) {
        self.fd = None;
        // What was received and not read is gone with the connection: it must not make the
        // connection look ready (`wait`), nor hold memory.
        self.rfds.clear();
        self.rbuf = Vec::new();
        self.rpos = 0;
        self.rend = 0;
        self.big = None;
        self.skip = 0;
    }

    /// The underlying descriptor (CPython's `fileno`), or `None` once closed.
    pub fn fileno(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// The limit on incoming messages.
    pub fn max_message_size(&self) -> u64 {
        self.max_len
    }

    /// Sets the limit on incoming messages (default [`DEFAULT_MAX_MESSAGE`]). A larger message
    /// is refused with [`Error::TooLarge`] before anything is allocated for it, and skipped.
    pub fn set_max_message_size(&mut self, max: u64) {
        self.max_len = max;
    }

    /// Sets how long a receive may spin (watching the descriptor) before it sleeps: 50 µs by
    /// default on a machine with more than one core. Spinning saves the cost of a wake-up
    /// (tens of microseconds between cores) when the peer answers quickly; set zero for a
    /// process that waits long or competes with others for few cores.
    pub fn set_spin_limit(&mut self, limit: Duration) {
        self.spin.set_max(limit);
    }

    /// A second handle on the same connection (`dup`), with its own buffers: use it for
    /// sending from another thread while this one receives. Two handles receiving at once
    /// would split messages between them.
    ///
    /// # Errors
    /// [`Error::Closed`], or the operating system's error.
    pub fn try_clone(&self) -> Result<Connection> {
        let fd = self.fd()?.try_clone_to_owned()?;
        let mut copy = Connection::new(fd, self.transport, self.readable, self.writable)?;
        copy.max_len = self.max_len;
        Ok(copy)
    }

    // ----------------------------------------------------------------------- sending

    /// Sends `bytes` as one message (CPython's `send_bytes`).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::WrongDirection`], [`Error::Disconnected`] when the peer has
    /// gone (never `SIGPIPE`), or the operating system's error.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let fd = self.check_writable()?;
        let (head, len) = frame::header(bytes.len());
        self.write_frame(fd, &[&head[..len], bytes], &[])
    }

    /// Sends any serde value as one message. Descriptors inside it ([`Fd`](multiproc_wire::Fd),
    /// `Connection`s) travel with it over Unix-socket connections.
    ///
    /// The value is encoded in the calling thread before anything is sent: an encoding error
    /// is returned here and nothing reaches the peer.
    ///
    /// # Errors
    /// [`Error::Encode`] (also for descriptors on a pipe or TCP connection), and as
    /// [`send_bytes`](Connection::send_bytes).
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let mut body = std::mem::take(&mut self.scratch);
        let mut fds = std::mem::take(&mut self.scratch_fds);
        body.clear();
        fds.clear();
        body.push(0);
        let result = self.encode_and_send(value, &mut body, &mut fds);
        self.scratch = body;
        self.scratch_fds = fds;
        result
    }

    fn encode_and_send<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        body: &mut Vec<u8>,
        fds: &mut Vec<RawFd>,
    ) -> Result<()> {
        let fd = self.check_writable()?;
        multiproc_wire::encode_into(value, body, fds)?;
        if !fds.is_empty() && self.transport != Transport::Unix {
            return Err(Error::Encode(
                "file descriptors can only be sent over Unix-socket connections".into(),
            ));
        }
        if fds.len() > wsys::MAX_FDS {
            return Err(Error::Encode(format!(
                "a message can carry at most {} file descriptors, not {}",
                wsys::MAX_FDS,
                fds.len()
            )));
        }
        body[0] = fds.len() as u8;
        let (head, len) = frame::header(body.len());
        self.write_frame(fd, &[&head[..len], body], fds)
    }

    fn write_frame(&self, fd: BorrowedFd<'_>, parts: &[&[u8]], fds: &[RawFd]) -> Result<()> {
        match self.transport {
            Transport::Pipe => sys::without_sigpipe(|| frame::write_all(fd, parts, None))?,
            _ => frame::send_all(fd, parts, fds, None)?,
        }
        Ok(())
    }

    // ----------------------------------------------------------------------- receiving

    /// Receives one message as bytes (CPython's `recv_bytes`). Blocks until a whole message
    /// has arrived or the peer has gone.
    ///
    /// # Errors
    /// [`Error::Disconnected`] at end of stream, [`Error::Truncated`] when the peer went away
    /// mid-message, [`Error::TooLarge`], [`Error::Closed`], [`Error::WrongDirection`].
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        self.recv_bytes_deadline(None)
    }

    /// [`recv_bytes`](Connection::recv_bytes) with a time limit: [`Error::Timeout`] when no
    /// whole message arrives within `timeout` (a partly received message is kept for the next
    /// call).
    ///
    /// # Errors
    /// As [`recv_bytes`](Connection::recv_bytes), and [`Error::Timeout`].
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_bytes_deadline(wsys::deadline_after(timeout))
    }

    pub(crate) fn recv_bytes_deadline(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>> {
        let body = self.read_frame(deadline)?;
        // Descriptors sent with the message are not wanted: close them.
        drop(self.take_fds());
        match body {
            Body::Buffered(start, len) => Ok(self.rbuf[start..start + len].to_vec()),
            Body::Owned(bytes) => Ok(bytes),
        }
    }

    /// Receives one message into `buf`; returns its length. A message longer than `buf` is
    /// consumed and returned whole in [`Error::BufferTooShort`].
    ///
    /// # Errors
    /// As [`recv_bytes`](Connection::recv_bytes), and [`Error::BufferTooShort`].
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        let body = self.read_frame(None)?;
        drop(self.take_fds());
        let bytes = match &body {
            Body::Buffered(start, len) => &self.rbuf[*start..start + len],
            Body::Owned(bytes) => bytes.as_slice(),
        };
        if bytes.len() > buf.len() {
            return Err(Error::BufferTooShort(bytes.to_vec()));
        }
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(bytes.len())
    }

    /// Receives one value sent with [`send`](Connection::send).
    ///
    /// # Errors
    /// As [`recv_bytes`](Connection::recv_bytes), and [`Error::Decode`] when the message is not
    /// a `T` (it is consumed).
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        self.recv_deadline(None)
    }

    /// [`recv`](Connection::recv) with a time limit.
    ///
    /// # Errors
    /// As [`recv`](Connection::recv), and [`Error::Timeout`].
    pub fn recv_timeout<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T> {
        self.recv_deadline(wsys::deadline_after(timeout))
    }

    fn recv_deadline<T: DeserializeOwned>(&mut self, deadline: Option<Instant>) -> Result<T> {
        let body = self.read_frame(deadline)?;
        let fds = self.take_fds();
        let bytes = match &body {
            Body::Buffered(start, len) => &self.rbuf[*start..start + len],
            Body::Owned(bytes) => bytes.as_slice(),
        };
        let Some((&nfds, encoded)) = bytes.split_first() else {
            return Err(Error::Decode("empty message".into()));
        };
        let nfds = usize::from(nfds);
        if fds.len() < nfds {
            return Err(Error::Decode(format!(
                "message refers to {nfds} file descriptors but {} arrived",
                fds.len()
            )));
        }
        Ok(multiproc_wire::decode(encoded, fds)?)
    }

    /// Whether a message (or end of stream) can be received without blocking longer than
    /// `timeout`; `None` waits as long as it takes (CPython's `poll`).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::WrongDirection`], or the operating system's error.
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let fd = self.check_readable()?;
        if self.has_buffered() {
            return Ok(true);
        }
        let deadline = timeout.and_then(wsys::deadline_after);
        Ok(wsys::wait_readable(fd, deadline)?)
    }

    /// The stream offset of the next byte to consume.
    fn consumed(&self) -> u64 {
        self.received - (self.rend - self.rpos) as u64
    }

    /// Takes the descriptors that came with the bytes consumed so far: right after a whole
    /// message, the ones sent with it (earlier messages have taken or dropped theirs).
    fn take_fds(&mut self) -> Vec<OwnedFd> {
        let consumed = self.consumed();
        let mut fds = Vec::new();
        while self.rfds.front().is_some_and(|(at, _)| *at < consumed) {
            fds.extend(self.rfds.pop_front().map(|(_, fd)| fd));
        }
        fds
    }

    /// Whether received bytes are waiting in this handle's buffer.
    pub(crate) fn has_buffered(&self) -> bool {
        self.rend > self.rpos || self.big.is_some()
    }

    // ----------------------------------------------------------------------- framing

    /// Reads the next whole message.
    fn read_frame(&mut self, deadline: Option<Instant>) -> Result<Body> {
        self.check_readable()?;
        if self.big.is_some() {
            return self.finish_big(deadline);
        }
        self.discard_skipped(deadline)?;
        // Descriptors of messages skipped or cut short are closed.
        drop(self.take_fds());
        if self.rend == self.rpos {
            // Nothing buffered: start afresh at the beginning of the buffer.
            self.rpos = 0;
            self.rend = 0;
        }
        self.fill(4, deadline, true)?;
        let short = i32::from_be_bytes(self.rbuf[self.rpos..self.rpos + 4].try_into().expect("4 bytes"));
        let (head, len) = match short {
            -1 => {
                self.fill(12, deadline, false)?;
                let long =
                    u64::from_be_bytes(self.rbuf[self.rpos + 4..self.rpos + 12].try_into().expect("8 bytes"));
                (12, long)
            }
            n if n < 0 => {
                self.rpos = self.rend;
                return Err(Error::Decode(format!("invalid message length {n}")));
            }
            n => (4, n as u64),
        };
        if len > self.max_len {
            self.rpos += head;
            self.skip = len;
            return Err(Error::TooLarge { len, max: self.max_len });
        }
        let len = len as usize;
        if len <= READ_AHEAD {
            self.fill(head + len, deadline, false)?;
            let start = self.rpos + head;
            self.rpos = start + len;
            return Ok(Body::Buffered(start, len));
        }
        // A large message: received straight into a buffer of its own.
        self.rpos += head;
        let mut bytes = vec![0u8; len];
        let have = (self.rend - self.rpos).min(len);
        bytes[..have].copy_from_slice(&self.rbuf[self.rpos..self.rpos + have]);
        self.rpos += have;
        self.big = Some((bytes, have));
        self.finish_big(deadline)
    }

    fn finish_big(&mut self, deadline: Option<Instant>) -> Result<Body> {
        let (mut bytes, mut filled) = self.big.take().expect("a large message in progress");
        while filled < bytes.len() {
            match self.read_into(&mut bytes[filled..], deadline) {
                Ok(0) => return Err(Error::Truncated),
                Ok(n) => filled += n,
                Err(err) => {
                    if err.is_timeout() {
                        self.big = Some((bytes, filled));
                    }
                    return Err(err);
                }
            }
        }
        Ok(Body::Owned(bytes))
    }

    fn discard_skipped(&mut self, deadline: Option<Instant>) -> Result<()> {
        while self.skip > 0 {
            if self.rend == self.rpos {
                self.rpos = 0;
                self.rend = 0;
                self.fill(1, deadline, false)?;
            }
            let n = (self.rend - self.rpos).min(self.skip.min(usize::MAX as u64) as usize);
            self.rpos += n;
            self.skip -= n as u64;
        }
        Ok(())
    }

    /// Makes at least `want` bytes available in `rbuf[rpos..]`.
    fn fill(&mut self, want: usize, deadline: Option<Instant>, at_boundary: bool) -> Result<()> {
        while self.rend - self.rpos < want {
            if self.rpos + want > self.rbuf.len() {
                // Move the unconsumed bytes to the front, and grow if even that is too small.
                self.rbuf.copy_within(self.rpos..self.rend, 0);
                self.rend -= self.rpos;
                self.rpos = 0;
                let size = want.max(READ_AHEAD);
                if self.rbuf.len() < size {
                    self.rbuf.resize(size, 0);
                }
            }
            let mut buf = std::mem::take(&mut self.rbuf);
            let end = self.rend;
            let result = self.read_into(&mut buf[end..], deadline);
            self.rbuf = buf;
            match result {
                Ok(0) if at_boundary && self.rend == self.rpos => return Err(Error::Disconnected),
                Ok(0) => {
                    // The peer went away mid-message: drop the fragment.
                    self.rpos = self.rend;
                    return Err(Error::Truncated);
                }
                Ok(n) => self.rend += n,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Reads what is available into `buf` (at least one byte, or 0 at end of stream), spinning
    /// briefly and then sleeping in `poll` while nothing is there.
    fn read_into(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize> {
        // Field borrows (not `self.fd()`), so that `rfds` and `spin` stay mutable.
        let fd = self.fd.as_ref().ok_or(Error::Closed)?.as_fd();
        loop {
            let result = match self.transport {
                Transport::Pipe => wsys::read(fd, buf),
                _ => {
                    let mut fds = Vec::new();
                    let result = wsys::recv_with_fds(fd, buf, &mut fds, true);
                    if let Ok(n) = result {
                        // The offset of the last byte of this read (see `rfds`).
                        let at = (self.received + n as u64).saturating_sub(1);
                        self.rfds.extend(fds.into_iter().map(|fd| (at, fd)));
                    }
                    result
                }
            };
            match result {
                Ok(n) => {
                    self.received += n as u64;
                    return Ok(n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return Ok(0),
                Err(err) => return Err(err.into()),
            }
            // Spin: look (with poll, which does not take the descriptor's lock that a read
            // would contend for with the writer), for a short while.
            let started = Instant::now();
            let until = started + self.spin.budget;
            let mut now = started;
            let mut ready = false;
            while now < until && deadline.is_none_or(|d| now < d) {
                std::hint::spin_loop();
                if wsys::wait_readable(fd, Some(now))? {
                    ready = true;
                    break;
                }
                now = Instant::now();
            }
            if ready {
                continue;
            }
            if !wsys::wait_readable(fd, deadline)? {
                return Err(Error::Timeout);
            }
            self.spin.slept(now.elapsed());
        }
    }
}

/// Where a received message is.
enum Body {
    /// In the read-ahead buffer: (start, length).
    Buffered(usize, usize),
    /// In a buffer of its own.
    Owned(Vec<u8>),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd.as_ref().map(|fd| fd.as_raw_fd()))
            .field("transport", &self.transport)
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .finish()
    }
}

impl From<UnixStream> for Connection {
    /// A duplex connection over a connected Unix stream socket.
    fn from(stream: UnixStream) -> Connection {
        Connection::new(stream.into(), Transport::Unix, true, true).expect("fcntl on an open socket")
    }
}

impl From<TcpStream> for Connection {
    /// A duplex connection over a connected TCP socket (Nagle's algorithm off).
    fn from(stream: TcpStream) -> Connection {
        let _ = stream.set_nodelay(true);
        Connection::new(stream.into(), Transport::Inet, true, true).expect("fcntl on an open socket")
    }
}

#[derive(Serialize)]
struct WireRef<'a> {
    #[serde(with = "fd_serde")]
    fd: BorrowedFd<'a>,
    transport: Transport,
    readable: bool,
    writable: bool,
    max_len: u64,
}

#[derive(Deserialize)]
struct WireOwned {
    #[serde(with = "fd_serde")]
    fd: OwnedFd,
    transport: Transport,
    readable: bool,
    writable: bool,
    max_len: u64,
}

impl Serialize for Connection {
    /// Serializes the connection's descriptor (sent beside the bytes) and settings. Refused
    /// for a closed connection, and for one holding received bytes not yet read, which the
    /// receiver could not see.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let fd = self.fd.as_ref().ok_or_else(|| S::Error::custom("cannot send a closed connection"))?;
        if self.has_buffered() || self.skip > 0 || !self.rfds.is_empty() {
            return Err(S::Error::custom("cannot send a connection that holds unread received data"));
        }
        WireRef {
            fd: fd.as_fd(),
            transport: self.transport,
            readable: self.readable,
            writable: self.writable,
            max_len: self.max_len,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Connection, D::Error> {
        use serde::de::Error as _;
        let w = WireOwned::deserialize(deserializer)?;
        let mut conn =
            Connection::new(w.fd, w.transport, w.readable, w.writable).map_err(D::Error::custom)?;
        conn.max_len = w.max_len;
        Ok(conn)
    }
}
