use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use multiproc_wire::spin::{self, DEFAULT_WATCH, Spin};
use multiproc_wire::{Fingerprint, fd_serde, frame, sys as wsys};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::ring::{self, Link};
use crate::sys;

/// The default limit on an incoming message: 256 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = frame::DEFAULT_MAX_LEN;

/// How much is read ahead in one system call.
const READ_AHEAD: usize = 64 << 10;
/// The longest a connection over shared rings sleeps before looking at them again: a bell
/// can be taken by another handle on the same end (`try_clone`), and this bounds the delay.
pub(crate) const RECHECK: Duration = Duration::from_millis(50);
/// Sends over shared rings between checks that the peer still exists.
const PEER_CHECK_EVERY: u32 = 256;

/// What carries a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Transport {
    /// An `AF_UNIX` stream socket: can carry file descriptors.
    Unix,
    /// Any other stream socket (TCP).
    Inet,
}

/// One end of a connection between two processes (CPython's `multiprocessing.connection.Connection`).
///
/// Made by [`pipe`], [`Listener::accept`](crate::Listener::accept) or
/// [`Client::connect`](crate::Client::connect). Messages are framed as CPython frames them, so
/// [`send_bytes`](Connection::send_bytes) / [`recv_bytes`](Connection::recv_bytes) talk to a
/// CPython peer; [`send`](Connection::send) / [`recv`](Connection::recv) carry any serde value,
/// including file descriptors ([`Fd`](multiproc_wire::Fd)) and other `Connection`s over Unix
/// sockets. Between the two ends of a [`pipe`], the frames travel through shared memory instead
/// of the kernel.
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
    /// Descriptors received and not yet claimed by a message, in arrival order, each with a
    /// stream offset inside the frame they were sent with. Over a socket, that is the offset
    /// of the last byte of the read that brought them: the kernel delivers a sender's
    /// descriptors with the read that reaches the first byte of its `sendmsg` and ends that
    /// read inside the same `sendmsg`, whose bytes all belong to one frame. Over shared rings,
    /// the control record names the offset.
    rfds: VecDeque<(u64, OwnedFd)>,
    /// The shared rings of a connection made by `pipe` (see `ring.rs`). Their descriptors
    /// wait in the link's control state, not in `rfds`.
    link: Option<Link>,
    /// The stream offset where the message being received starts.
    frame_start: u64,
    /// Sends since the peer was last seen to exist.
    unchecked: Cell<u32>,
    /// Bytes received from the stream so far.
    received: u64,
    /// A large message being received straight into its own buffer: (buffer, its length).
    /// Over a socket the buffer has that length from the start (zeroed) and the bytes filled
    /// are counted in `big_filled`; over shared rings it grows as bytes arrive.
    big: Option<(Vec<u8>, usize)>,
    big_filled: usize,
    /// Bytes of an oversized message still to discard.
    skip: u64,
    /// Reused encoding buffers.
    scratch: Vec<u8>,
    scratch_fds: Vec<RawFd>,
    spin: Spin,
}

/// A pair of connected [`Connection`]s (CPython's `multiprocessing.Pipe`).
///
/// With `duplex`, both ends send and receive; without, the first end only receives and the
/// second only sends. Messages travel through shared memory (a ring per direction), so a
/// message costs no system call while the receiver is awake; a Unix socket between the two
/// ends wakes a sleeping receiver, tells each end when the other has gone, and carries file
/// descriptors.
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
    let (a, b) = wsys::socketpair()?;
    let (ring_a, ring_b) = Link::pair()?;
    Ok((
        Connection::with_link(a, Transport::Unix, true, duplex, Some(ring_a))?,
        Connection::with_link(b, Transport::Unix, duplex, true, Some(ring_b))?,
    ))
}

impl Connection {
    fn new(fd: OwnedFd, transport: Transport, readable: bool, writable: bool) -> Result<Connection> {
        Connection::with_link(fd, transport, readable, writable, None)
    }

    fn with_link(
        fd: OwnedFd,
        transport: Transport,
        readable: bool,
        writable: bool,
        link: Option<Link>,
    ) -> Result<Connection> {
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
            received: link.as_ref().map_or(0, Link::position),
            link,
            frame_start: 0,
            unchecked: Cell::new(0),
            big: None,
            big_filled: 0,
            skip: 0,
            scratch: Vec::new(),
            scratch_fds: Vec::new(),
            spin: Spin::new(DEFAULT_WATCH),
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
        if let Some(link) = self.link.take() {
            link.want_bell();
        }
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
    ///
    /// For a connection made by [`pipe`], messages travel through shared memory and this
    /// socket only carries wake-ups: wait for such a connection with [`poll`](Connection::poll)
    /// or [`wait`](crate::wait), not on the descriptor alone.
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

    /// Sets how long a receive may spin (watching the connection) before it sleeps: 50 µs by
    /// default on a machine with more than one core. Spinning saves the cost of a wake-up
    /// (tens of microseconds between cores) when the peer answers quickly; after a few
    /// microseconds the watch yields the core at each look, so a thread with work runs first.
    /// The spin shortens by itself while the peer takes long; set zero to sleep at once.
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
        let mut copy =
            Connection::with_link(fd, self.transport, self.readable, self.writable, self.link.clone())?;
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
    /// `Connection`s) travel with it over [`pipe`]s and Unix-socket connections.
    ///
    /// The message carries a fingerprint of `T` ([`multiproc_wire::Fingerprint`]) that
    /// [`recv`](Connection::recv) checks: `&str` is received as a `String`, `&[T]` as a
    /// `Vec<T>`, but a value of another type is refused.
    ///
    /// The value is encoded in the calling thread before anything is sent: an encoding error
    /// is returned here and nothing reaches the peer.
    ///
    /// # Errors
    /// [`Error::Encode`] (also for descriptors on a TCP connection), and as
    /// [`send_bytes`](Connection::send_bytes).
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.send_fingerprinted(Fingerprint::of::<T>(), value)
    }

    /// Sends `value` as a `T`: for a type that serializes exactly as `T` does (a mirror of `T`
    /// that borrows what `T` owns, say), received with `recv::<T>()`.
    ///
    /// # Errors
    /// As [`send`](Connection::send).
    pub fn send_as<T: ?Sized, V: Serialize + ?Sized>(&mut self, value: &V) -> Result<()> {
        self.send_fingerprinted(Fingerprint::of::<T>(), value)
    }

    fn send_fingerprinted<V: Serialize + ?Sized>(
        &mut self,
        fingerprint: Fingerprint,
        value: &V,
    ) -> Result<()> {
        let mut body = std::mem::take(&mut self.scratch);
        let mut fds = std::mem::take(&mut self.scratch_fds);
        body.clear();
        fds.clear();
        body.push(0);
        let result = self.encode_and_send(fingerprint, value, &mut body, &mut fds);
        self.scratch = body;
        self.scratch_fds = fds;
        result
    }

    fn encode_and_send<V: Serialize + ?Sized>(
        &mut self,
        fingerprint: Fingerprint,
        value: &V,
        body: &mut Vec<u8>,
        fds: &mut Vec<RawFd>,
    ) -> Result<()> {
        let fd = self.check_writable()?;
        multiproc_wire::encode_as_into(fingerprint, value, body, fds)?;
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
        if let Some(link) = &self.link {
            return self.ring_send(fd, link, parts, fds);
        }
        frame::send_all(fd, parts, fds, None)?;
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
        drop(self.take_fds(0));
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
        drop(self.take_fds(0));
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
    /// Every typed message carries a fingerprint of its Rust type, checked before anything is
    /// decoded: a message of another type (or bytes from [`send_bytes`](Connection::send_bytes))
    /// is [`Error::Decode`] naming the type expected, never a wrong value. The message is
    /// consumed and the connection stays usable. CPython's `recv` has no such check (a pickle
    /// of any type is accepted).
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
        let wanted = match &body {
            Body::Buffered(start, len) => self.rbuf[*start..start + len].first().copied(),
            Body::Owned(bytes) => bytes.first().copied(),
        };
        let fds = self.take_fds(usize::from(wanted.unwrap_or(0)));
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
        Ok(multiproc_wire::decode_typed(encoded, fds)?)
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
        if self.link.is_none() {
            return Ok(wsys::wait_readable(fd, deadline)?);
        }
        loop {
            if self.ring_ready()? {
                return Ok(true);
            }
            let fd = self.fd()?;
            wsys::wait_readable(fd, recheck(deadline))?;
            self.drain_control()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return self.ring_ready();
            }
        }
    }

    /// The stream offset of the next byte to consume.
    fn consumed(&self) -> u64 {
        self.received - (self.rend - self.rpos) as u64
    }

    /// Takes the descriptors that came with the bytes consumed so far: right after a whole
    /// message, the ones sent with it (earlier messages have taken or dropped theirs).
    fn take_fds(&mut self, want: usize) -> Vec<OwnedFd> {
        let mine = self.frame_start..self.consumed();
        let Some(link) = self.link.clone() else {
            let mut fds = Vec::new();
            while self.rfds.front().is_some_and(|(at, _)| *at < mine.end) {
                // Those of earlier messages (skipped, cut short, read as bytes) are closed.
                fds.extend(self.rfds.pop_front().filter(|(at, _)| mine.contains(at)).map(|(_, fd)| fd));
            }
            return fds;
        };
        // The descriptor record of a message goes out before the message is published: if it
        // is not among those read so far, it waits on the socket.
        if want > 0 && link.fds_for(mine.clone()) < want {
            let _ = self.drain_control();
        }
        link.take_fds(mine)
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
        drop(self.take_fds(0));
        self.frame_start = self.consumed();
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
        let have = (self.rend - self.rpos).min(len);
        let already = &self.rbuf[self.rpos..self.rpos + have];
        let bytes = if self.link.is_some() {
            let mut bytes = Vec::with_capacity(len);
            bytes.extend_from_slice(already);
            bytes
        } else {
            let mut bytes = vec![0u8; len];
            bytes[..have].copy_from_slice(already);
            bytes
        };
        self.rpos += have;
        self.big = Some((bytes, len));
        self.big_filled = have;
        self.finish_big(deadline)
    }

    fn finish_big(&mut self, deadline: Option<Instant>) -> Result<Body> {
        let (mut bytes, len) = self.big.take().expect("a large message in progress");
        let mut filled = self.big_filled;
        while filled < len {
            let result = match self.link.clone() {
                // Straight from the ring into the buffer's spare room: nothing is zeroed.
                Some(link) => self.ring_wait(&link, deadline).and_then(|more| {
                    if !more {
                        return Ok(0);
                    }
                    let (n, wake) = link.read_append(&mut bytes, len - filled)?;
                    self.ring_consumed(&link, wake);
                    Ok(n)
                }),
                None => self.read_into(&mut bytes[filled..], deadline),
            };
            match result {
                Ok(0) => return Err(Error::Truncated),
                Ok(n) => filled += n,
                Err(err) => {
                    if err.is_timeout() {
                        self.big = Some((bytes, len));
                        self.big_filled = filled;
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
        if self.link.is_some() {
            return self.ring_read(buf, deadline);
        }
        let fd = self.fd.as_ref().ok_or(Error::Closed)?.as_fd();
        loop {
            let mut fds = Vec::new();
            let result = wsys::recv_with_fds(fd, buf, &mut fds, true);
            if let Ok(n) = result {
                // The offset of the last byte of this read (see `rfds`).
                let at = (self.received + n as u64).saturating_sub(1);
                self.rfds.extend(fds.into_iter().map(|fd| (at, fd)));
            }
            match result {
                Ok(n) => {
                    self.received += n as u64;
                    return Ok(n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return Ok(0),
                Err(err) => return Err(err.into()),
            }
            // Watch (with poll, which does not take the descriptor's lock that a read would
            // contend for with the writer), for a short while; an error shows in the read.
            if self.spin.watch(deadline, || wsys::wait_readable(fd, Some(Instant::now())).unwrap_or(true)) {
                continue;
            }
            let sleep = Instant::now();
            if !wsys::wait_readable(fd, deadline)? {
                return Err(Error::Timeout);
            }
            self.spin.slept(sleep.elapsed());
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// Whether the peer of socket `fd` has closed its end (`POLLHUP` without waiting).
fn peer_closed(fd: BorrowedFd<'_>) -> Result<bool> {
    let mut pfd = [libc::pollfd { fd: fd.as_raw_fd(), events: 0, revents: 0 }];
    wsys::poll(&mut pfd, Some(Instant::now()))?;
    Ok(pfd[0].revents & (libc::POLLHUP | libc::POLLERR) != 0)
}

/// The deadline of one sleep of a ring connection: `deadline`, or sooner (see [`RECHECK`]).
fn recheck(deadline: Option<Instant>) -> Option<Instant> {
    let soon = Instant::now() + RECHECK;
    Some(deadline.map_or(soon, |d| d.min(soon)))
}

// ----------------------------------------------------------------------- shared rings
impl Connection {
    /// Whether the incoming ring holds bytes or the peer has gone; when not, arms the reader
    /// flag so that the peer's next message rings the bell (the caller then sleeps on the
    /// socket).
    pub(crate) fn ring_ready(&self) -> Result<bool> {
        let Some(link) = self.link.as_ref().filter(|_| self.fd.is_some()) else { return Ok(false) };
        if link.peer_gone() {
            return Ok(true);
        }
        if !self.readable {
            return Ok(false);
        }
        if link.readable()? > 0 || link.broken(true) {
            return Ok(true);
        }
        Ok(link.arm_reader()?)
    }

    /// For `wait`, after the descriptor polled readable: whether this end is really ready
    /// (a ring connection's socket also carries wake-ups and descriptors).
    pub(crate) fn confirm_ready(&self) -> bool {
        self.link.is_none()
            || self.drain_control().is_err()
            || self.has_buffered()
            || self.ring_ready().unwrap_or(true)
    }

    /// Reads what the socket of a ring connection holds: bells (dropped), descriptor records
    /// (kept with their ring offsets), end of stream. Never blocks.
    pub(crate) fn drain_control(&self) -> Result<()> {
        let (Some(fd), Some(link)) = (self.fd.as_ref(), self.link.as_ref()) else { return Ok(()) };
        let mut ctl = link.control();
        let mut buf = [0u8; ring::RECORD * 56];
        loop {
            let carry = ctl.carry.len();
            buf[..carry].copy_from_slice(&ctl.carry);
            let mut fds = Vec::new();
            let n = match wsys::recv_with_fds(fd.as_fd(), &mut buf[carry..], &mut fds, true) {
                Ok(0) => {
                    link.set_peer_gone();
                    return Ok(());
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                    link.set_peer_gone();
                    return Ok(());
                }
                Err(err) => return Err(err.into()),
            };
            let total = carry + n;
            let whole = total - total % ring::RECORD;
            // Descriptors belong to the last descriptor record that begins in this read.
            let begun = |start: usize| start > 0 || carry == 0;
            let owner = (0..total).step_by(ring::RECORD).rfind(|&at| begun(at) && buf[at] == ring::FDS);
            for at in (0..whole).step_by(ring::RECORD) {
                match buf[at] {
                    ring::BELL => {}
                    ring::FDS => {
                        let offset =
                            u64::from_le_bytes(buf[at + 1..at + ring::RECORD].try_into().expect("8 bytes"));
                        let mine = if Some(at) == owner && begun(at) {
                            std::mem::take(&mut fds)
                        } else if !begun(at) {
                            std::mem::take(&mut ctl.orphans)
                        } else {
                            Vec::new()
                        };
                        link.keep_fds(&mut ctl, offset, mine);
                    }
                    tag => {
                        return Err(Error::Io(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("unknown control record {tag}"),
                        )));
                    }
                }
            }
            if !fds.is_empty() && owner.is_some_and(|at| at >= whole) {
                ctl.orphans = fds;
            }
            ctl.carry.clear();
            ctl.carry.extend_from_slice(&buf[whole..total]);
        }
    }

    /// Rings the peer's bell.
    fn ring_bell(&self, fd: BorrowedFd<'_>) -> Result<()> {
        let record = [ring::BELL; ring::RECORD];
        match wsys::send_with_fds_nonblocking(fd, &[IoSlice::new(&record)], &[]) {
            // A full socket holds records the peer has yet to read: it wakes anyway.
            Ok(_) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(err) if matches!(err.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => {
                Err(Error::Disconnected)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Sends one frame over the outgoing ring.
    fn ring_send(&self, fd: BorrowedFd<'_>, link: &Link, parts: &[&[u8]], fds: &[RawFd]) -> Result<()> {
        let _guard = link.lock();
        if link.peer_gone() {
            return Err(Error::Disconnected);
        }
        if link.broken(false) {
            // The receiver may sleep: let it see the broken ring.
            let _ = self.ring_bell(fd);
            return Err(Error::Truncated);
        }
        let mut at = link.tail();
        let mut rest: u64 = parts.iter().map(|p| p.len() as u64).sum();
        link.begin_message(at.wrapping_add(rest), !fds.is_empty());
        if !fds.is_empty() {
            let mut record = [ring::FDS; ring::RECORD];
            record[1..].copy_from_slice(&at.to_le_bytes());
            frame::send_all(fd, &[&record], fds, None)?;
        }
        let (mut part, mut offset) = (0, 0);
        while rest > 0 {
            let room = link.writable()?;
            if room == 0 {
                self.wait_for_room(fd, link)?;
                continue;
            }
            let mut chunk = rest.min(room).min(ring::MAX_CHUNK);
            rest -= chunk;
            while chunk > 0 {
                let bytes = &parts[part][offset..];
                let n = bytes.len().min(chunk as usize);
                link.write_at(at, &bytes[..n]);
                at = at.wrapping_add(n as u64);
                chunk -= n as u64;
                offset += n;
                if offset == parts[part].len() {
                    part += 1;
                    offset = 0;
                }
            }
            if link.publish(at) {
                self.ring_bell(fd)?;
                self.unchecked.set(0);
            }
        }
        link.end_message();
        let unchecked = self.unchecked.get() + 1;
        self.unchecked.set(unchecked);
        if unchecked >= PEER_CHECK_EVERY {
            if peer_closed(fd)? {
                // Every later send looks again (and fails).
                return Err(Error::Disconnected);
            }
            self.unchecked.set(0);
        }
        Ok(())
    }

    /// Waits until the outgoing ring has room, or the peer has gone.
    fn wait_for_room(&self, fd: BorrowedFd<'_>, link: &Link) -> Result<()> {
        // An error shows in `arm_writer`.
        if spin::watch(self.spin.max(), None, || link.writable().map_or(true, |room| room > 0)) {
            return Ok(());
        }
        loop {
            if link.arm_writer()? {
                link.disarm_writer();
                return Ok(());
            }
            wsys::wait_readable(fd, recheck(None))?;
            self.drain_control()?;
            if link.peer_gone() {
                return Err(Error::Disconnected);
            }
        }
    }

    /// Reads what the incoming ring holds into `buf` (at least one byte, or 0 once the peer
    /// has gone and everything it sent was read), spinning briefly and then sleeping.
    fn ring_read(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize> {
        let link = self.link.clone().ok_or(Error::Closed)?;
        if buf.is_empty() || !self.ring_wait(&link, deadline)? {
            return Ok(0);
        }
        let (n, wake) = link.read(buf)?;
        self.ring_consumed(&link, wake);
        Ok(n)
    }

    /// After bytes were consumed from the incoming ring: updates the stream offset, and wakes
    /// the peer's sender if it waits for room.
    fn ring_consumed(&mut self, link: &Link, wake: bool) {
        self.received = link.position();
        if wake {
            // If the peer has gone, there is nobody to wake.
            if let Ok(fd) = self.fd() {
                let _ = self.ring_bell(fd);
            }
        }
    }

    /// Waits until the incoming ring holds bytes (`true`), or the peer has gone and everything
    /// it sent was read (`false`), spinning briefly and then sleeping.
    fn ring_wait(&mut self, link: &Link, deadline: Option<Instant>) -> Result<bool> {
        loop {
            if link.readable()? > 0 {
                return Ok(true);
            }
            if link.broken(true) || link.peer_gone() {
                return Ok(false);
            }
            // An error shows at the top of the loop.
            if self.spin.watch(deadline, || link.readable().map_or(true, |n| n > 0)) {
                continue;
            }
            if link.arm_reader()? {
                link.disarm_reader();
                continue;
            }
            let sleep = Instant::now();
            if deadline.is_some_and(|d| sleep >= d) {
                return Err(Error::Timeout);
            }
            wsys::wait_readable(self.fd()?, recheck(deadline))?;
            self.drain_control()?;
            self.spin.slept(sleep.elapsed());
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
    ring: Option<RingRef<'a>>,
    transport: Transport,
    readable: bool,
    writable: bool,
    max_len: u64,
}

#[derive(Serialize)]
struct RingRef<'a> {
    #[serde(with = "fd_serde")]
    memfd: BorrowedFd<'a>,
    side: u8,
}

#[derive(Deserialize)]
struct RingOwned {
    #[serde(with = "fd_serde")]
    memfd: OwnedFd,
    side: u8,
}

#[derive(Deserialize)]
struct WireOwned {
    #[serde(with = "fd_serde")]
    fd: OwnedFd,
    ring: Option<RingOwned>,
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
        let control_held = self.link.as_ref().is_some_and(Link::holds_control);
        if self.has_buffered() || self.skip > 0 || !self.rfds.is_empty() || control_held {
            return Err(S::Error::custom("cannot send a connection that holds unread received data"));
        }
        WireRef {
            fd: fd.as_fd(),
            ring: self.link.as_ref().map(|link| RingRef { memfd: link.memfd(), side: link.side() }),
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
        let link = match w.ring {
            Some(RingOwned { memfd, side }) => Some(Link::open(memfd, side).map_err(D::Error::custom)?),
            None => None,
        };
        let mut conn = Connection::with_link(w.fd, w.transport, w.readable, w.writable, link)
            .map_err(D::Error::custom)?;
        conn.max_len = w.max_len;
        Ok(conn)
    }
}
