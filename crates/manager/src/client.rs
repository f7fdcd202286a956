//! One authenticated connection per server per client process, shared by every proxy and
//! thread of the process.
//!
//! Requests are written whole under a lock and tagged with ids. Replies are read by whichever
//! waiting caller holds the reader role (leader/followers): it files replies for other callers
//! and wakes them, and hands the role on when its own reply has come. A caller alone (the usual
//! case) reads its own reply straight off the socket, with no hand-off between threads.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use std::os::fd::{AsFd, OwnedFd};

use multiproc_pipe::{Address, Client};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{Hello, MAGIC, NO_REPLY, ReplyHead, RequestHeadRef, VERSION};
use crate::transport::{self, ReadError, Reader};

/// The time limit on connecting and on the server's greeting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long past a blocking call's own time limit the client waits for the server's answer
/// before giving up on it (the server answers at its limit; this covers a loaded server).
pub(crate) const REPLY_GRACE: Duration = Duration::from_secs(10);

/// Locks a mutex, ignoring poisoning: the state it protects stays consistent between
/// statements, and a panic elsewhere must not take the connection down.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's id, read each time: a forked child must see its own.
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}

/// The calling thread's token: locks are owned by (connection, token).
pub(crate) fn caller() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}

/// A reply as received: the head, and the whole frame with the result's offset in it.
pub(crate) struct Incoming {
    error: Option<Error>,
    frame: Vec<u8>,
    body: usize,
}

impl Incoming {
    /// The result, or the server's error.
    pub(crate) fn decode<R: DeserializeOwned>(self) -> Result<R> {
        if let Some(err) = self.error {
            return Err(err);
        }
        multiproc_wire::decode(&self.frame[self.body..], Vec::new())
            .map_err(|e| Error::codec("cannot decode the manager's reply", e))
    }
}

struct State {
    /// Calls waiting for a reply, with the reply once it has come.
    pending: HashMap<u64, Option<Incoming>>,
    /// Whether a caller is reading replies now.
    leader: bool,
    /// Callers waiting on the condition variable (notify only when there are some).
    followers: usize,
    /// The connection is broken: every call fails.
    dead: bool,
}

/// A connection to one server, from one process.
pub(crate) struct ClientConn {
    pid: u32,
    address: Address,
    authkey: Vec<u8>,
    server_pid: u32,
    max_request: u64,
    /// The connection's socket (non-blocking), read and written by [`transport`].
    socket: OwnedFd,
    /// Held while a request is written, so that frames do not interleave.
    writer: Mutex<()>,
    reader: Mutex<Reader>,
    state: Mutex<State>,
    cv: Condvar,
    next_id: AtomicU64,
}

impl fmt::Debug for ClientConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConn").field("address", &self.address).field("pid", &self.pid).finish()
    }
}

/// A server's address and authkey, and this process's connection to it while one is in use.
type Known = (Address, Vec<u8>, Weak<ClientConn>);

/// Connections of this process, by server address and authkey.
static CONNECTIONS: Mutex<Vec<Known>> = Mutex::new(Vec::new());

/// This process's connection to the server at `address`, made (and authenticated) if there is
/// none alive.
pub(crate) fn connect(address: &Address, authkey: &[u8]) -> Result<Arc<ClientConn>> {
    if let Some(conn) = cached(address, authkey) {
        return Ok(conn);
    }
    let conn = Client::new(address.clone()).authkey(authkey).timeout(CONNECT_TIMEOUT).connect()?;
    let socket = transport::take_socket(&conn)?;
    drop(conn);
    let conn = ClientConn::establish(socket, address.clone(), authkey.to_vec())?;
    Ok(register(conn))
}

fn cached(address: &Address, authkey: &[u8]) -> Option<Arc<ClientConn>> {
    let pid = current_pid();
    lock(&CONNECTIONS)
        .iter()
        .filter(|(a, k, _)| a == address && k == authkey)
        .filter_map(|(_, _, weak)| weak.upgrade())
        .find(|conn| conn.pid == pid && !conn.is_dead())
}

/// Makes `conn` the process's connection to its server, unless another thread registered one
/// meanwhile (then that one is returned and `conn` closed).
pub(crate) fn register(conn: Arc<ClientConn>) -> Arc<ClientConn> {
    let mut all = lock(&CONNECTIONS);
    let pid = current_pid();
    all.retain(|(_, _, weak)| weak.upgrade().is_some_and(|c| c.pid == pid && !c.is_dead()));
    let existing = all
        .iter()
        .filter(|(a, k, _)| *a == conn.address && *k == conn.authkey)
        .find_map(|(_, _, weak)| weak.upgrade());
    if let Some(existing) = existing {
        return existing;
    }
    all.push((conn.address.clone(), conn.authkey.clone(), Arc::downgrade(&conn)));
    conn
}

impl ClientConn {
    /// Reads the server's greeting on an authenticated connection's socket.
    pub(crate) fn establish(socket: OwnedFd, address: Address, authkey: Vec<u8>) -> Result<Arc<ClientConn>> {
        let mut reader = Reader::new(multiproc_pipe::DEFAULT_MAX_MESSAGE);
        let deadline = Instant::now().checked_add(CONNECT_TIMEOUT);
        let hello = reader.next(socket.as_fd(), deadline).map_err(|e| match e {
            ReadError::Timeout => Error::new(ErrorKind::Timeout, format!("{address} did not greet in time")),
            ReadError::Io(err) => Error::from(err),
            _ => Error::disconnected(),
        })?;
        let hello: Hello = multiproc_wire::decode(hello, Vec::new()).map_err(|e| {
            Error::with_source(ErrorKind::BadRequest, format!("{address} is not a multiproc manager"), e)
        })?;
        if hello.magic != MAGIC || hello.version != VERSION {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!(
                    "{address} speaks {} version {}, not {MAGIC} version {VERSION}",
                    hello.magic, hello.version
                ),
            ));
        }
        Ok(Arc::new(ClientConn {
            pid: current_pid(),
            address,
            authkey,
            server_pid: hello.pid,
            max_request: hello.max_request,
            socket,
            writer: Mutex::new(()),
            reader: Mutex::new(reader),
            state: Mutex::new(State { pending: HashMap::new(), leader: false, followers: 0, dead: false }),
            cv: Condvar::new(),
            next_id: AtomicU64::new(1),
        }))
    }

    /// The address this process reached the server at.
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// The process that made this connection.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn server_pid(&self) -> u32 {
        self.server_pid
    }

    pub(crate) fn max_request(&self) -> u64 {
        self.max_request
    }

    pub(crate) fn is_dead(&self) -> bool {
        lock(&self.state).dead
    }

    fn encode_request<A: Serialize + ?Sized>(
        &self,
        id: u64,
        object: u64,
        method: &str,
        args: &A,
    ) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(64);
        let mut fds = Vec::new();
        let head = RequestHeadRef { id, object, method, caller: caller() };
        multiproc_wire::encode_into(&head, &mut bytes, &mut fds)
            .and_then(|()| multiproc_wire::encode_into(args, &mut bytes, &mut fds))
            .map_err(|e| Error::codec("cannot encode the request", e))?;
        if !fds.is_empty() {
            return Err(Error::new(ErrorKind::Codec, "a request to a manager cannot carry file descriptors"));
        }
        if bytes.len() as u64 > self.max_request {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "request of {} bytes exceeds the server's limit of {} bytes",
                    bytes.len(),
                    self.max_request
                ),
            ));
        }
        Ok(bytes)
    }

    fn send(&self, frame: &[u8]) -> Result<()> {
        let result = {
            let _writing = lock(&self.writer);
            transport::send(self.socket.as_fd(), &[frame])
        };
        result.map_err(|err| {
            let err = match err {
                multiproc_wire::Error::Io(err) => Error::from(err),
                _ => Error::disconnected(),
            };
            if err.is_disconnected() {
                self.kill();
            }
            err
        })
    }

    /// Marks the connection broken and wakes every waiting caller.
    fn kill(&self) {
        let mut state = lock(&self.state);
        state.dead = true;
        if state.followers > 0 {
            self.cv.notify_all();
        }
    }

    /// Calls `method` of `object` and waits for the reply, at most until `deadline`.
    pub(crate) fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        object: u64,
        method: &str,
        args: &A,
        deadline: Option<Instant>,
    ) -> Result<R> {
        self.request(object, method, args, deadline)?.decode()
    }

    /// Sends a request and waits for its reply.
    pub(crate) fn request<A: Serialize + ?Sized>(
        &self,
        object: u64,
        method: &str,
        args: &A,
        deadline: Option<Instant>,
    ) -> Result<Incoming> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode_request(id, object, method, args)?;
        {
            let mut state = lock(&self.state);
            if state.dead {
                return Err(Error::disconnected());
            }
            state.pending.insert(id, None);
        }
        if let Err(err) = self.send(&frame) {
            lock(&self.state).pending.remove(&id);
            return Err(err);
        }
        self.wait_reply(id, deadline)
    }

    /// Sends a request that gets no reply (releasing a reference).
    pub(crate) fn notify<A: Serialize + ?Sized>(&self, object: u64, method: &str, args: &A) -> Result<()> {
        let frame = self.encode_request(NO_REPLY, object, method, args)?;
        if self.is_dead() {
            return Err(Error::disconnected());
        }
        self.send(&frame)
    }

    fn wait_reply(&self, id: u64, deadline: Option<Instant>) -> Result<Incoming> {
        let mut state = lock(&self.state);
        loop {
            if let Some(reply) = state.pending.get_mut(&id).and_then(Option::take) {
                state.pending.remove(&id);
                return Ok(reply);
            }
            if state.dead {
                state.pending.remove(&id);
                return Err(Error::disconnected());
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                state.pending.remove(&id);
                return Err(Error::new(ErrorKind::Timeout, "the manager did not answer in time"));
            }
            if !state.leader {
                state.leader = true;
                drop(state);
                self.lead(id, deadline);
                state = lock(&self.state);
                state.leader = false;
                if state.followers > 0 {
                    self.cv.notify_all();
                }
                continue;
            }
            state.followers += 1;
            state = match deadline {
                None => self.cv.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(d) => self.cv.wait_timeout(state, d - now).unwrap_or_else(|e| e.into_inner()).0,
            };
            state.followers -= 1;
        }
    }

    /// Reads replies and files them until the reply to `id` has come, `deadline` passes, or the
    /// connection breaks.
    fn lead(&self, id: u64, deadline: Option<Instant>) {
        let mut reader = lock(&self.reader);
        loop {
            let received = match reader.next(self.socket.as_fd(), deadline) {
                Ok(frame) => multiproc_wire::decode_prefix::<ReplyHead>(frame, Vec::new())
                    .map(|(head, body)| (head, body, frame.to_vec())),
                Err(ReadError::Timeout) => return,
                Err(_) => {
                    // End of stream, a reset, or a reply that cannot be framed: nothing more
                    // can be matched to its call.
                    self.kill();
                    return;
                }
            };
            let (head, body, frame) = match received {
                Ok(decoded) => decoded,
                Err(_) => {
                    self.kill();
                    return;
                }
            };
            if head.id == NO_REPLY {
                // The server could not read one of our frames; no call can be told which.
                continue;
            }
            let reply = Incoming { error: head.error.map(Error::from), frame, body };
            let mut state = lock(&self.state);
            // A reply nobody waits for (its caller gave up) is dropped.
            if let Some(slot) = state.pending.get_mut(&head.id) {
                *slot = Some(reply);
                if head.id == id {
                    return;
                }
                if state.followers > 0 {
                    self.cv.notify_all();
                }
            }
        }
    }
}

/// `len` random bytes from the kernel.
pub(crate) fn random_bytes(len: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::with_source(ErrorKind::Io, "cannot read random bytes", e))?;
    Ok(bytes)
}
