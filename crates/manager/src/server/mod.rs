//! The server: an accept loop, a thread per client connection (a session), and the objects in
//! a map with reference counts.
//!
//! A session reads requests in order and answers most at once; a call that must wait runs on a
//! thread of its own and answers when it is done, so replies may overtake each other. A call
//! that took something for its caller is undone when its reply cannot be delivered (see
//! `peer`). The references a session holds are released when its connection ends, and so are
//! the owned locks (`RLock`s) its client's threads held.

mod objects;
mod peer;
mod sync;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_pipe::{Address, Client, Listener};
use multiproc_wire::Bytes;
use serde::de::DeserializeOwned;

use self::objects::{Caller, Object, Outcome, Reply, args, ok, unit};
use self::peer::Peer;
use self::sync::Owner;
use crate::client::{self, ClientConn, lock};
use crate::error::{Error, ErrorKind, Result};
use crate::managed::{self, DynManaged, Managed};
use crate::manager::Manager;
use crate::protocol::{
    Created, Hello, MAGIC, MANAGER, NO_REPLY, ReplyHead, RequestHead, Spec, VERSION, WireError,
};
use crate::proxy::AnyProxy;
use crate::transport::{self, ReadError, Reader};

/// The default limit on a request: 64 MiB.
pub const DEFAULT_MAX_REQUEST: u64 = 64 << 20;

/// The largest reply the server sends: the client's connection refuses larger frames.
const MAX_REPLY: usize = (multiproc_pipe::DEFAULT_MAX_MESSAGE - 1024) as usize;

/// How long a ticket (a reference held for a proxy in transit) lasts unclaimed.
const TICKET_TTL: Duration = Duration::from_secs(60);

/// Waiting calls per connection that get threads of their own; more wait on the session's
/// thread (holding up that client's later requests, and no one else's).
const MAX_WAITING: usize = 4096;

/// The stack of a thread that runs a waiting call: it only waits and encodes a reply.
const WAITER_STACK: usize = 256 << 10;

type Constructor = Arc<dyn Fn(&[u8]) -> Result<Box<dyn DynManaged>> + Send + Sync>;
type Callable = Arc<dyn Fn(&[u8]) -> Result<AnyProxy> + Send + Sync>;

#[derive(Default)]
struct Registry {
    types: HashMap<String, Constructor>,
    callables: HashMap<String, Callable>,
}

struct Entry {
    object: Arc<Object>,
    refs: usize,
}

#[derive(Default)]
struct Objects {
    map: HashMap<u64, Entry>,
    next_id: u64,
    /// Tickets and the object each holds a reference to.
    tickets: HashMap<u64, u64>,
    next_ticket: u64,
    /// When each ticket expires, oldest first.
    expiry: VecDeque<(Instant, u64)>,
}

impl Objects {
    fn incref(&mut self, id: u64) -> Result<()> {
        match self.map.get_mut(&id) {
            Some(entry) => {
                entry.refs += 1;
                Ok(())
            }
            None => {
                Err(Error::new(ErrorKind::UnknownObject, format!("no object with id {id} in the manager")))
            }
        }
    }

    /// Drops a reference; returns the object if that was the last (to be dropped by the
    /// caller, outside the lock).
    fn decref(&mut self, id: u64) -> Option<Arc<Object>> {
        let entry = self.map.get_mut(&id)?;
        entry.refs -= 1;
        if entry.refs == 0 { self.map.remove(&id).map(|e| e.object) } else { None }
    }

    /// Releases the references of expired tickets.
    fn sweep(&mut self, dropped: &mut Vec<Arc<Object>>) {
        let now = Instant::now();
        while self.expiry.front().is_some_and(|(at, _)| *at <= now) {
            let (_, ticket) = self.expiry.pop_front().expect("a front entry");
            if let Some(id) = self.tickets.remove(&ticket) {
                dropped.extend(self.decref(id));
            }
        }
    }
}

/// What the accept loop and every session share.
pub(crate) struct Shared {
    address: Address,
    authkey: Vec<u8>,
    /// The socket file this server made, with its inode, removed at shutdown.
    socket_file: Option<(PathBuf, u64)>,
    max_request: AtomicU64,
    objects: Mutex<Objects>,
    registry: RwLock<Registry>,
    serving: AtomicBool,
    stopping: AtomicBool,
    /// A duplicate of each session's socket, to shut it down at shutdown.
    sessions: Mutex<HashMap<u64, OwnedFd>>,
    next_session: AtomicU64,
}

impl Shared {
    fn lookup(&self, id: u64) -> Option<Arc<Object>> {
        lock(&self.objects).map.get(&id).map(|e| e.object.clone())
    }

    fn insert(&self, object: Object) -> Created {
        let type_id = object.type_id().to_owned();
        let mut objects = lock(&self.objects);
        objects.next_id += 1;
        let id = objects.next_id;
        objects.map.insert(id, Entry { object: Arc::new(object), refs: 1 });
        Created { id, type_id }
    }

    fn incref(&self, id: u64) -> Result<()> {
        lock(&self.objects).incref(id)
    }

    fn decref(&self, id: u64, times: usize) {
        let mut dropped = Vec::new();
        {
            let mut objects = lock(&self.objects);
            for _ in 0..times {
                dropped.extend(objects.decref(id));
            }
        }
        drop(dropped);
    }

    fn ticket(&self, id: u64) -> Result<u64> {
        let mut dropped = Vec::new();
        let ticket = {
            let mut objects = lock(&self.objects);
            objects.sweep(&mut dropped);
            objects.incref(id)?;
            objects.next_ticket += 1;
            let ticket = objects.next_ticket;
            objects.tickets.insert(ticket, id);
            objects.expiry.push_back((Instant::now() + TICKET_TTL, ticket));
            ticket
        };
        drop(dropped);
        Ok(ticket)
    }

    /// Takes a reference to `id` for a session, and releases the ticket's.
    fn claim(&self, id: u64, ticket: u64) -> Result<()> {
        let mut dropped = Vec::new();
        let result = {
            let mut objects = lock(&self.objects);
            let result = objects.incref(id);
            if objects.tickets.get(&ticket) == Some(&id) {
                objects.tickets.remove(&ticket);
                dropped.extend(objects.decref(id));
            }
            objects.sweep(&mut dropped);
            result
        };
        drop(dropped);
        result
    }

    fn start_session(self: &Arc<Self>, socket: OwnedFd) -> Result<()> {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        lock(&self.sessions).insert(id, socket.try_clone()?);
        if self.stopping.load(Ordering::Acquire) {
            lock(&self.sessions).remove(&id);
            return Err(Error::disconnected());
        }
        let session = Session {
            id,
            shared: self.clone(),
            peer: Arc::new(Peer::new(socket)),
            held: HashMap::new(),
            locks: HashMap::new(),
            waiting: Vec::new(),
        };
        let spawned =
            std::thread::Builder::new().name(format!("manager-session-{id}")).spawn(move || session.run());
        if let Err(err) = spawned {
            lock(&self.sessions).remove(&id);
            return Err(Error::from(err));
        }
        Ok(())
    }

    /// Stops accepting, ends every session, removes the socket file.
    fn shut_down(&self) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.serving.load(Ordering::Acquire) {
            // The accept loop waits in accept(): a connection wakes it, and it sees `stopping`.
            let _ = Client::new(wake_address(&self.address))
                .authkey(&self.authkey)
                .timeout(Duration::from_secs(2))
                .connect();
        }
        for (_, fd) in lock(&self.sessions).drain() {
            // shutdown(2) acts on the socket, whatever its family, and ends the session's
            // reads; UnixStream is only the safe way to call it on a descriptor.
            let _ = UnixStream::from(fd).shutdown(std::net::Shutdown::Both);
        }
        if let Some((path, inode)) = &self.socket_file {
            // Only the file this server made, not one that replaced it since.
            if std::fs::metadata(path).is_ok_and(|m| m.ino() == *inode) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Where to connect to reach a listener bound at `address` (a TCP listener on every interface
/// is reached on loopback).
fn wake_address(address: &Address) -> Address {
    match address {
        Address::Tcp(addr) if addr.ip().is_unspecified() => {
            let ip = match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            Address::Tcp(SocketAddr::new(ip, addr.port()))
        }
        other => other.clone(),
    }
}

/// A manager server in a process you control (CPython's `BaseManager.get_server()` and
/// `serve_forever`): listen on a TCP address, register types and callables, serve.
///
/// [`Manager::start`](crate::Manager::start) runs one in a child process; use this type to run
/// one yourself, for example on the host that clients on other hosts
/// [`connect`](crate::Manager::connect) to:
///
/// ```no_run
/// use multiproc_manager::{ManagerServer, QueueProxy};
///
/// let server = ManagerServer::bind("0.0.0.0:50000".parse::<std::net::SocketAddr>().unwrap(), b"secret")?;
/// // Objects made here live in the server; a callable hands them to clients.
/// let queue: QueueProxy<String> = server.manager()?.queue()?;
/// server.register_callable("get_queue", move |()| Ok(queue.clone()))?;
/// server.serve_forever()?;
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
///
/// A client that fails the authkey handshake is turned away; the server goes on serving the
/// others. Dropping the server (or [`ShutdownHandle::shutdown`]) ends every client's
/// connection and removes a Unix socket file it made.
pub struct ManagerServer {
    listener: Listener,
    shared: Arc<Shared>,
}

impl fmt::Debug for ManagerServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerServer").field("address", &self.shared.address).finish()
    }
}

impl ManagerServer {
    /// Listens on `address` (a TCP address, a Unix socket path, or an abstract name); every
    /// client must present `authkey`.
    ///
    /// # Errors
    /// [`ErrorKind::Io`] when the address cannot be bound (`EADDRINUSE`, ...).
    pub fn bind(address: impl Into<Address>, authkey: &[u8]) -> Result<ManagerServer> {
        let listener = Listener::bind(address, Some(authkey))?;
        let address = listener.address().clone();
        let socket_file = match &address {
            Address::Unix(path) => std::fs::metadata(path).ok().map(|m| (path.clone(), m.ino())),
            _ => None,
        };
        let shared = Arc::new(Shared {
            address,
            authkey: authkey.to_vec(),
            socket_file,
            max_request: AtomicU64::new(DEFAULT_MAX_REQUEST),
            objects: Mutex::new(Objects::default()),
            registry: RwLock::new(Registry::default()),
            serving: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
        });
        Ok(ManagerServer { listener, shared })
    }

    /// The address the server listens on (for TCP, with the port actually bound).
    pub fn address(&self) -> &Address {
        &self.shared.address
    }

    /// The authkey clients must present.
    pub fn authkey(&self) -> &[u8] {
        &self.shared.authkey
    }

    /// Sets the limit on a request (default [`DEFAULT_MAX_REQUEST`]) for connections made
    /// from now on. A larger request is refused by the client before it is sent; a client
    /// that sends one anyway gets an error and its connection goes on.
    pub fn set_max_request_size(&self, max: u64) {
        self.shared.max_request.store(max, Ordering::Relaxed);
    }

    /// Registers the type `T` under [`T::TYPE_ID`](Managed::TYPE_ID), so that clients can make
    /// objects of it with [`Manager::create`](crate::Manager::create) (CPython's
    /// `register(typeid, callable)`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidValue`] when the name is a built-in type's.
    pub fn register<T: Managed>(&self) -> Result<()> {
        managed::check_name("type", T::TYPE_ID)?;
        let constructor: Constructor = Arc::new(managed::construct::<T>);
        self.shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .types
            .insert(T::TYPE_ID.to_owned(), constructor);
        Ok(())
    }

    /// Registers a callable under `name`: a client's [`Manager::call`](crate::Manager::call)
    /// runs it here with the client's arguments and gets a proxy of the object it returns
    /// (CPython's `register('get_queue', callable=lambda: queue)`).
    ///
    /// The callable returns a proxy made through this server's [`manager`](Self::manager) (or
    /// received from a client); it runs on the calling client's connection thread and should
    /// not block for long.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidValue`] for an empty name.
    pub fn register_callable<A, P, F>(&self, name: &str, callable: F) -> Result<()>
    where
        A: DeserializeOwned,
        P: Into<AnyProxy>,
        F: Fn(A) -> Result<P> + Send + Sync + 'static,
    {
        managed::check_name("callable", name)?;
        let callable: Callable = Arc::new(move |bytes: &[u8]| {
            let args: A = managed::typed_args(bytes)?;
            callable(args).map(Into::into)
        });
        self.shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .callables
            .insert(name.to_owned(), callable);
        Ok(())
    }

    /// A manager in this process, connected to this server without a socket (CPython's server
    /// process using its own objects): make the objects that callables hand out with it.
    ///
    /// # Errors
    /// [`ErrorKind::Io`] when the connection cannot be made.
    pub fn manager(&self) -> Result<Manager> {
        let (ours, theirs) = transport::socketpair()?;
        self.shared.start_session(theirs)?;
        let conn = ClientConn::establish(ours, self.shared.address.clone(), self.shared.authkey.clone())?;
        Ok(Manager::from_conn(client::register(conn)))
    }

    /// A handle that stops [`serve_forever`](Self::serve_forever) from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { shared: self.shared.clone() }
    }

    /// Accepts and serves clients until [`ShutdownHandle::shutdown`]; each client connection
    /// is served by a thread of its own. A client that fails the handshake is turned away.
    ///
    /// # Errors
    /// None at present; the `Result` leaves room for failures that end serving.
    pub fn serve_forever(&self) -> Result<()> {
        self.shared.serving.store(true, Ordering::Release);
        while !self.shared.stopping.load(Ordering::Acquire) {
            match self.listener.accept() {
                Ok(conn) => {
                    if self.shared.stopping.load(Ordering::Acquire) {
                        break;
                    }
                    // A session that cannot start closes its connection; the client sees it.
                    if let Ok(socket) = transport::take_socket(&conn) {
                        drop(conn);
                        let _ = self.shared.start_session(socket);
                    }
                }
                // Out of descriptors or memory: let some connections end before the next try.
                Err(multiproc_pipe::Error::Io(_)) => std::thread::sleep(Duration::from_millis(10)),
                // A client that failed the handshake or went away during it.
                Err(_) => {}
            }
        }
        self.shared.serving.store(false, Ordering::Release);
        Ok(())
    }
}

impl Drop for ManagerServer {
    fn drop(&mut self) {
        self.shared.shut_down();
    }
}

/// Stops a [`ManagerServer`]: it accepts no more clients, ends every client's connection
/// (their calls fail with [`ErrorKind::Disconnected`]), and removes a Unix socket file it made.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle").field("address", &self.shared.address).finish()
    }
}

impl ShutdownHandle {
    /// Stops the server; [`serve_forever`](ManagerServer::serve_forever) returns.
    pub fn shutdown(&self) {
        self.shared.shut_down();
    }
}

/// One client connection's state, owned by its thread.
struct Session {
    id: u64,
    shared: Arc<Shared>,
    /// The client: replies are written there, from the session's thread and from the threads
    /// of its waiting calls.
    peer: Arc<Peer>,
    /// References this connection holds, by object.
    held: HashMap<u64, usize>,
    /// Lock-like objects this connection acquired or waited on.
    locks: HashMap<u64, Arc<Object>>,
    /// Calls waiting on threads of their own.
    waiting: Vec<(Arc<Object>, JoinHandle<()>)>,
}

impl Session {
    fn run(mut self) {
        let max_request = self.shared.max_request.load(Ordering::Relaxed);
        let hello = Hello { magic: MAGIC.to_owned(), version: VERSION, max_request, pid: std::process::id() };
        let sent = multiproc_wire::encode(&hello).is_ok_and(|hello| self.peer.send(&hello.bytes));
        if sent {
            let peer = self.peer.clone();
            let mut reader = Reader::new(max_request);
            loop {
                match reader.next(peer.socket(), None) {
                    Ok(frame) => self.handle(frame),
                    // Skipped whole: the next frame is read as usual.
                    Err(ReadError::TooLarge { len, max }) => send_reply(
                        &self.peer,
                        NO_REPLY,
                        Err(Error::new(
                            ErrorKind::TooLarge,
                            format!("request of {len} bytes exceeds the server's limit of {max} bytes"),
                        )),
                    ),
                    // End of stream, a reset, a broken frame header: nothing more can be read.
                    Err(_) => break,
                }
            }
        }
        self.end();
    }

    fn handle(&mut self, frame: &[u8]) {
        let (head, used) = match multiproc_wire::decode_prefix::<RequestHead>(frame, Vec::new()) {
            Ok(decoded) => decoded,
            Err(err) => {
                send_reply(&self.peer, NO_REPLY, Err(Error::bad_request("cannot decode the request", err)));
                return;
            }
        };
        let args = &frame[used..];
        let dispatched = catch_unwind(AssertUnwindSafe(|| self.dispatch(&head, args)));
        let (outcome, object) =
            dispatched.unwrap_or_else(|panic| (Outcome::Done(Err(panicked(panic))), None));
        match outcome {
            Outcome::Done(result) => {
                if head.id != NO_REPLY {
                    send_reply(&self.peer, head.id, result);
                }
            }
            Outcome::Took(reply) => deliver(&self.peer, head.id, reply),
            Outcome::Block(job) => self.wait_apart(head.id, object, job),
        }
    }

    /// Runs a waiting call on a thread of its own; it replies when done.
    fn wait_apart(&mut self, id: u64, object: Option<Arc<Object>>, job: Box<dyn FnOnce() -> Reply + Send>) {
        let peer = self.peer.clone();
        let run = move || {
            let reply =
                catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|panic| Reply::done(Err(panicked(panic))));
            deliver(&peer, id, reply);
        };
        self.waiting.retain(|(_, handle)| !handle.is_finished());
        let Some(object) = object.filter(|_| self.waiting.len() < MAX_WAITING) else {
            run();
            return;
        };
        match std::thread::Builder::new().name("manager-wait".into()).stack_size(WAITER_STACK).spawn(run) {
            Ok(handle) => self.waiting.push((object, handle)),
            Err(err) => send_reply(
                &self.peer,
                id,
                Err(Error::with_source(ErrorKind::Io, "cannot start a thread for a waiting call", err)),
            ),
        }
    }

    fn dispatch(&mut self, head: &RequestHead, args: &[u8]) -> (Outcome, Option<Arc<Object>>) {
        if head.object == MANAGER {
            return (Outcome::Done(self.manager_call(&head.method, args)), None);
        }
        let Some(object) = self.shared.lookup(head.object) else {
            let err = Error::new(
                ErrorKind::UnknownObject,
                format!("no object with id {} in the manager", head.object),
            );
            return (Outcome::Done(Err(err)), None);
        };
        if object.may_own_lock(&head.method) {
            self.locks.insert(head.object, object.clone());
        }
        let caller = Caller { owner: Owner { conn: self.id, caller: head.caller }, peer: &self.peer };
        (object.call(&head.method, args, &caller), Some(object))
    }

    fn hold(&mut self, id: u64) {
        *self.held.entry(id).or_insert(0) += 1;
    }

    fn manager_call(&mut self, method: &str, bytes: &[u8]) -> Result<Vec<u8>> {
        match method {
            "create" => {
                let created = self.create(args(bytes)?)?;
                self.hold(created.id);
                ok(&created)
            }
            "incref" => {
                let id: u64 = args(bytes)?;
                self.shared.incref(id)?;
                self.hold(id);
                unit()
            }
            "decref" => {
                let id: u64 = args(bytes)?;
                // Only a reference this connection holds.
                if let Some(n) = self.held.get_mut(&id) {
                    *n -= 1;
                    if *n == 0 {
                        self.held.remove(&id);
                    }
                    self.shared.decref(id, 1);
                }
                unit()
            }
            "ticket" => {
                let id: u64 = args(bytes)?;
                ok(&self.shared.ticket(id)?)
            }
            "claim" => {
                let (id, ticket): (u64, u64) = args(bytes)?;
                self.shared.claim(id, ticket)?;
                self.hold(id);
                unit()
            }
            "call" => {
                let (name, call_args): (String, Bytes) = args(bytes)?;
                let callable = self
                    .shared
                    .registry
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .callables
                    .get(&name)
                    .cloned();
                let callable = callable.ok_or_else(|| {
                    Error::new(ErrorKind::UnknownType, format!("no callable named '{name}' is registered"))
                })?;
                let proxy = callable(&call_args.0)?;
                if !proxy.served_by(std::process::id(), &self.shared.authkey) {
                    return Err(Error::new(
                        ErrorKind::InvalidValue,
                        format!("the callable '{name}' returned a proxy of another manager"),
                    ));
                }
                self.shared.incref(proxy.id())?;
                self.hold(proxy.id());
                ok(&Created { id: proxy.id(), type_id: proxy.type_id().to_owned() })
            }
            "count" => ok(&(lock(&self.shared.objects).map.len() as u64)),
            _ => Err(Error::unknown_method("manager", method)),
        }
    }

    fn create(&self, spec: Spec) -> Result<Created> {
        let object = match spec {
            Spec::Condition(Some(lock_id)) => {
                let object = self.shared.lookup(lock_id).ok_or_else(|| {
                    Error::new(
                        ErrorKind::UnknownObject,
                        format!("no object with id {lock_id} in the manager"),
                    )
                })?;
                let lock = object.as_lock().ok_or_else(|| {
                    Error::new(ErrorKind::InvalidValue, "a condition needs a Lock or an RLock")
                })?;
                Object::Condition(Arc::new(sync::Condition::new(lock.clone())))
            }
            Spec::User { type_id, init } => {
                let constructor = self
                    .shared
                    .registry
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .types
                    .get(&type_id)
                    .cloned();
                let constructor = constructor.ok_or_else(|| {
                    Error::new(ErrorKind::UnknownType, format!("no type named '{type_id}' is registered"))
                })?;
                Object::User(Mutex::new(constructor(&init.0)?), type_id)
            }
            spec => Object::from_spec(spec)?,
        };
        Ok(self.shared.insert(object))
    }

    /// After the connection ended: stop its waiting calls (undoing what they took), release its
    /// owned locks and its references.
    fn end(&mut self) {
        self.peer.end();
        // Replies still being written to a client that stopped reading fail now, instead of
        // holding up the waiting calls' threads joined below.
        if let Ok(socket) = self.peer.socket().try_clone_to_owned() {
            let _ = UnixStream::from(socket).shutdown(std::net::Shutdown::Both);
        }
        for (object, _) in &self.waiting {
            object.wake_all();
        }
        for (_, handle) in self.waiting.drain(..) {
            let _ = handle.join();
        }
        for object in self.locks.values() {
            object.release_owned_by(self.id);
        }
        self.locks.clear();
        for (id, n) in std::mem::take(&mut self.held) {
            self.shared.decref(id, n);
        }
        lock(&self.shared.sessions).remove(&self.id);
    }
}

/// A panic caught in the server, as an error for the caller.
fn panicked(payload: Box<dyn std::any::Any + Send>) -> Error {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    };
    Error::new(ErrorKind::Panicked, format!("the method panicked in the server: {message}"))
}

/// Delivers a reply, or undoes what the call took when the client has gone (it is looked at
/// first: a write into a socket whose peer has just died may still succeed) or the write
/// fails. A request that asked for no reply is committed.
fn deliver(peer: &Peer, id: u64, reply: Reply) {
    let Reply { result, undo } = reply;
    if id == NO_REPLY {
        return;
    }
    let Some(undo) = undo else {
        send_reply(peer, id, result);
        return;
    };
    if peer.gone() || !write_reply(peer, id, result) {
        undo();
    }
}

/// Sends the reply to request `id` (ignoring a client that has gone: its session ends).
fn send_reply(peer: &Peer, id: u64, result: Result<Vec<u8>>) {
    write_reply(peer, id, result);
}

/// Sends the reply to request `id`; returns whether it was written.
fn write_reply(peer: &Peer, id: u64, result: Result<Vec<u8>>) -> bool {
    let result = result.and_then(|body| {
        if body.len() > MAX_REPLY {
            Err(Error::new(
                ErrorKind::TooLarge,
                format!("reply of {} bytes exceeds the limit of {MAX_REPLY} bytes", body.len()),
            ))
        } else {
            Ok(body)
        }
    });
    let mut frame = Vec::with_capacity(32 + result.as_ref().map_or(0, Vec::len));
    let mut fds = Vec::new();
    let encoded = match &result {
        Ok(body) => multiproc_wire::encode_into(&ReplyHead { id, error: None }, &mut frame, &mut fds)
            .map(|()| frame.extend_from_slice(body)),
        Err(err) => multiproc_wire::encode_into(
            &ReplyHead { id, error: Some(WireError::from(err)) },
            &mut frame,
            &mut fds,
        ),
    };
    encoded.is_ok() && peer.send(&frame)
}
