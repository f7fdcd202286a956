//! `Manager`: starts a server process (or connects to one) and makes objects in it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use multiproc_pipe::{Address, Connection};
use multiproc_process::{Process, StartMethod, get_start_method};
use multiproc_wire::Bytes;
use serde::{Deserialize, Serialize};

use crate::client::{self, ClientConn, current_pid, lock};
use crate::error::{Error, ErrorKind, Result};
use crate::managed::Managed;
use crate::protocol::{Created, MANAGER, Spec, WireAddress, encode_value};
use crate::proxy::{
    AnyProxy, ArrayProxy, BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy,
    JoinableQueueProxy, ListProxy, LockProxy, NamespaceProxy, Proxy, QueueProxy, RLockProxy, SemaphoreProxy,
    ValueProxy,
};
use crate::server::{DEFAULT_MAX_REQUEST, ManagerServer};

/// How long a starting server may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The length of a generated authkey, in bytes.
const AUTHKEY_LEN: usize = 32;

/// What a server started by [`Manager::start`] runs before it serves: register types and
/// callables, make objects (CPython's manager subclass with `register` calls, and its
/// `initializer`).
///
/// Implemented by every `fn(&ManagerServer) -> Result<()>` item and closure that captures
/// nothing: the server process may be a fresh exec of this executable, which rebuilds the
/// function from its type alone (a capturing closure is a compile-time error).
pub trait Setup: Copy + Send + Sync + 'static {
    /// Runs in the server process, before it accepts clients.
    ///
    /// # Errors
    /// An error makes [`ManagerBuilder::start`] fail with [`ErrorKind::Start`].
    fn setup(self, server: &ManagerServer) -> Result<()>;
}

impl<F> Setup for F
where
    F: Fn(&ManagerServer) -> Result<()> + Copy + Send + Sync + 'static,
{
    fn setup(self, server: &ManagerServer) -> Result<()> {
        self(server)
    }
}

/// The setup of a plain manager: nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSetup;

impl Setup for NoSetup {
    fn setup(self, _: &ManagerServer) -> Result<()> {
        Ok(())
    }
}

/// Options for starting a manager's server process; made by [`Manager::builder`].
///
/// ```no_run
/// use multiproc_manager::{Manager, ManagerServer, Result};
/// use multiproc_process::StartMethod;
///
/// fn setup(server: &ManagerServer) -> Result<()> {
///     // server.register::<MyType>()?; server.register_callable(...)?;
///     Ok(())
/// }
///
/// let manager = Manager::builder().start_method(StartMethod::Spawn).setup(setup).start()?;
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ManagerBuilder<S = NoSetup> {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    method: Option<StartMethod>,
    max_request: u64,
    setup: S,
}

impl<S: Setup> ManagerBuilder<S> {
    /// Where the server listens: an abstract Unix socket with a fresh random name by default
    /// (no file anywhere); a path (the socket file is removed at shutdown), or a TCP address
    /// (reachable from other hosts: keep the authkey secret).
    pub fn address(mut self, address: impl Into<Address>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The key clients must present; by default 32 random bytes.
    pub fn authkey(mut self, authkey: &[u8]) -> Self {
        self.authkey = Some(authkey.to_vec());
        self
    }

    /// The start method of the server process; by default the process-wide default
    /// ([`get_start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// The limit on a request (default 64 MiB): larger ones fail with
    /// [`ErrorKind::TooLarge`] before anything is sent.
    pub fn max_request_size(mut self, max: u64) -> Self {
        self.max_request = max;
        self
    }

    /// What the server runs before it serves (see [`Setup`]).
    pub fn setup<T: Setup>(self, setup: T) -> ManagerBuilder<T> {
        ManagerBuilder {
            address: self.address,
            authkey: self.authkey,
            method: self.method,
            max_request: self.max_request,
            setup,
        }
    }

    /// Starts the server process and connects to it.
    ///
    /// # Errors
    /// [`ErrorKind::Start`] when the process cannot start, cannot listen, or its setup fails
    /// (the message says why); [`ErrorKind::Io`] when connecting fails.
    pub fn start(self) -> Result<Manager> {
        let authkey = match self.authkey {
            Some(key) => key,
            None => client::random_bytes(AUTHKEY_LEN)?,
        };
        let address = match self.address {
            Some(address) => address,
            None => default_address()?,
        };
        let method = self.method.unwrap_or_else(get_start_method);
        let (control, theirs) = multiproc_pipe::pipe(true)?;
        let args = ServerArgs {
            control: theirs,
            address: WireAddress::from(&address),
            authkey: Bytes(authkey.clone()),
            max_request: self.max_request,
        };
        let setup = self.setup;
        let mut process = Process::new(move |args: ServerArgs| serve_process(setup, args), args);
        process.set_daemon(true).set_start_method(method).set_name("ManagerServer");
        let (process, keeper) = start_process(process, method)?;
        let mut server = ServerProcess { process, control, keeper, address };
        let ready = match server.control.recv_timeout::<Started>(START_TIMEOUT) {
            Ok(Started::Ready(address)) => Ok(Address::from(address)),
            Ok(Started::Failed(message)) => Err(Error::new(ErrorKind::Start, message)),
            Err(err) => {
                Err(Error::with_source(ErrorKind::Start, "the manager's server process did not start", err))
            }
        };
        let conn = ready.and_then(|address| {
            server.address = address;
            client::connect(&server.address, &authkey)
        });
        match conn {
            Ok(conn) => Ok(Manager {
                binding: Mutex::new(conn),
                server: Mutex::new(Some(server)),
                creator: current_pid(),
            }),
            Err(err) => {
                server.stop();
                Err(err)
            }
        }
    }
}

/// A fresh abstract socket name: nothing to remove afterwards.
fn default_address() -> Result<Address> {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let random: String = client::random_bytes(8)?.iter().map(|b| format!("{b:02x}")).collect();
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    Ok(Address::Abstract(format!("multiproc-manager-{}-{n}-{random}", std::process::id()).into_bytes()))
}

/// Starts the server process. A `Spawn` child is started from a thread that lives as long as
/// the server: a daemon child's `PR_SET_PDEATHSIG` fires when the *thread* that started it
/// ends, and the manager may outlive the thread that made it.
fn start_process(
    mut process: Process<()>,
    method: StartMethod,
) -> Result<(Process<()>, Option<mpsc::Sender<()>>)> {
    if method != StartMethod::Spawn {
        process.start()?;
        return Ok((process, None));
    }
    let (started_tx, started_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("manager-keeper".into())
        .spawn(move || {
            let result = process.start().map(|()| process);
            let ok = result.is_ok();
            let _ = started_tx.send(result);
            if ok {
                // Until the manager stops the server (or is gone).
                let _ = stop_rx.recv();
            }
        })
        .map_err(|e| Error::with_source(ErrorKind::Start, "cannot start the manager's keeper thread", e))?;
    let process = started_rx
        .recv()
        .map_err(|_| Error::new(ErrorKind::Start, "the manager's keeper thread ended early"))??;
    Ok((process, Some(stop_tx)))
}

/// What the parent passes to the server process.
#[derive(Serialize, Deserialize)]
struct ServerArgs {
    control: Connection,
    address: WireAddress,
    authkey: Bytes,
    max_request: u64,
}

/// The server's first message on the control connection.
#[derive(Serialize, Deserialize)]
enum Started {
    Ready(WireAddress),
    Failed(String),
}

/// What the parent says on the control connection.
#[derive(Serialize, Deserialize)]
enum Control {
    Shutdown,
}

/// The server's last message: it has stopped serving.
#[derive(Serialize, Deserialize)]
struct Stopped;

/// The server process's target: bind, set up, serve until the parent says stop or goes away.
fn serve_process<S: Setup>(setup: S, args: ServerArgs) {
    // As CPython's server: a Ctrl-C reaches the whole foreground process group, and the
    // parent, which may handle it, stops the server its own way.
    multiproc_process::ignore_sigint();
    let ServerArgs { mut control, address, authkey, max_request } = args;
    let server = ManagerServer::bind(Address::from(address), &authkey.0).and_then(|server| {
        server.set_max_request_size(max_request);
        setup.setup(&server)?;
        Ok(server)
    });
    let server = match server {
        Ok(server) => server,
        Err(err) => {
            let mut message = format!("the manager's server could not start: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            let _ = control.send(&Started::Failed(message));
            return;
        }
    };
    let handle = server.shutdown_handle();
    let address = WireAddress::from(server.address());
    let serving =
        std::thread::Builder::new().name("manager-accept".into()).spawn(move || server.serve_forever());
    if serving.is_err() {
        let _ = control.send(&Started::Failed("cannot start the accept thread".into()));
        return;
    }
    if control.send(&Started::Ready(address)).is_ok() {
        // A shutdown message, or end of stream when the parent has gone.
        let _ = control.recv::<Control>();
    }
    handle.shutdown();
    let _ = control.send(&Stopped);
}

/// The server process a manager started.
struct ServerProcess {
    process: Process<()>,
    control: Connection,
    /// Ends the keeper thread of a `Spawn` server (dropped).
    keeper: Option<mpsc::Sender<()>>,
    address: Address,
}

impl ServerProcess {
    /// Asks the server to stop, waits for it, kills it if it does not; removes its socket file
    /// if it could not.
    fn stop(&mut self) {
        let _ = self.control.send(&Control::Shutdown);
        // The server says it has stopped after removing its socket file.
        let stopped = self.control.recv_timeout::<Stopped>(STOP_TIMEOUT).is_ok();
        if !matches!(self.process.join_timeout(STOP_TIMEOUT), Ok(Some(_))) {
            let _ = self.process.kill();
            let _ = self.process.join_timeout(STOP_TIMEOUT);
        }
        if let (false, Address::Unix(path)) = (stopped, &self.address) {
            // It died before it could: the file is stale.
            let _ = std::fs::remove_file(path);
        }
        self.keeper = None;
    }
}

/// A manager: a server process holding shared objects, and this process's connection to it
/// (CPython's `multiprocessing.Manager()` / `SyncManager`).
///
/// [`Manager::start`] starts a server process; [`Manager::connect`] reaches a server another
/// process started, on this host or another. The factory methods make an object in the server
/// and return a typed proxy of it. Proxies can be cloned, shared between threads, passed to
/// child processes and sent through `Connection`s; the object lives while any proxy of it
/// exists.
///
/// Dropping a manager that started a server (or [`shutdown`](Manager::shutdown)) stops the
/// server: every proxy's calls then fail with [`ErrorKind::Disconnected`].
///
/// ```no_run
/// use multiproc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let d = manager.dict::<String, u32>()?;
/// let l = manager.list_from(0..10u32)?;
/// d.set("answer", &42)?;
/// l.reverse()?;
/// assert_eq!(d.get("answer")?, Some(42));
/// assert_eq!(l.get(0)?, 9);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
pub struct Manager {
    binding: Mutex<Arc<ClientConn>>,
    server: Mutex<Option<ServerProcess>>,
    /// The process that made this manager: only it stops the server.
    creator: u32,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conn = lock(&self.binding).clone();
        f.debug_struct("Manager")
            .field("address", conn.address())
            .field("server_pid", &conn.server_pid())
            .field("started", &lock(&self.server).is_some())
            .finish()
    }
}

impl Manager {
    /// Starts a server process with the default options (see [`Manager::builder`]) and
    /// connects to it.
    ///
    /// # Errors
    /// As [`ManagerBuilder::start`].
    pub fn start() -> Result<Manager> {
        Manager::builder().start()
    }

    /// Options for starting a server process.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            address: None,
            authkey: None,
            method: None,
            max_request: DEFAULT_MAX_REQUEST,
            setup: NoSetup,
        }
    }

    /// Connects to a running server (started by [`Manager::start`] or served by a
    /// [`ManagerServer`]), on this host or another.
    ///
    /// # Errors
    /// [`ErrorKind::Auth`] for a wrong authkey; [`ErrorKind::Io`] when the address cannot be
    /// reached.
    pub fn connect(address: impl Into<Address>, authkey: &[u8]) -> Result<Manager> {
        let conn = client::connect(&address.into(), authkey)?;
        Ok(Manager::from_conn(conn))
    }

    pub(crate) fn from_conn(conn: Arc<ClientConn>) -> Manager {
        Manager { binding: Mutex::new(conn), server: Mutex::new(None), creator: current_pid() }
    }

    /// This process's connection (a new one after a fork).
    fn conn(&self) -> Result<Arc<ClientConn>> {
        let mut binding = lock(&self.binding);
        if binding.pid() != current_pid() {
            *binding = client::connect(binding.address(), binding.authkey())?;
        }
        Ok(binding.clone())
    }

    /// The address of the server.
    pub fn address(&self) -> Address {
        lock(&self.binding).address().clone()
    }

    /// The key the server requires (pass it to [`Manager::connect`] elsewhere).
    pub fn authkey(&self) -> Vec<u8> {
        lock(&self.binding).authkey().to_vec()
    }

    /// The process id of the server.
    pub fn server_pid(&self) -> u32 {
        lock(&self.binding).server_pid()
    }

    /// The largest request the server accepts.
    pub fn max_request_size(&self) -> u64 {
        lock(&self.binding).max_request()
    }

    /// The number of objects in the server (CPython's `_number_of_objects`): for diagnostics.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    pub fn object_count(&self) -> Result<usize> {
        self.conn()?.call::<_, u64>(MANAGER, "count", &(), None).map(|n| n as usize)
    }

    /// Stops the server this manager started: waits for it to exit (killing it after 5 s),
    /// and leaves nothing behind. Does nothing for a manager made by
    /// [`connect`](Manager::connect), or in a process other than the one that started it.
    ///
    /// # Errors
    /// None at present: a server that does not stop is killed.
    pub fn shutdown(&self) -> Result<()> {
        if current_pid() != self.creator {
            return Ok(());
        }
        let server = lock(&self.server).take();
        if let Some(mut server) = server {
            server.stop();
        }
        Ok(())
    }

    fn make<P: TryFrom<AnyProxy, Error = Error>>(&self, spec: &Spec) -> Result<P> {
        let conn = self.conn()?;
        let created: Created = conn.call(MANAGER, "create", spec, None)?;
        P::try_from(AnyProxy::new(conn, created))
    }

    /// A new empty dict (`manager.dict()`).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] when the server has gone (this holds for every factory).
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        self.make(&Spec::Dict(Vec::new()))
    }

    /// A new dict holding `items` (`manager.dict(items)`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict); [`ErrorKind::Codec`].
    pub fn dict_from<K: Serialize, V: Serialize>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
    ) -> Result<DictProxy<K, V>> {
        let items = items
            .into_iter()
            .map(|(k, v)| Ok((encode_value(&k)?, encode_value(&v)?)))
            .collect::<Result<_>>()?;
        self.make(&Spec::Dict(items))
    }

    /// A new empty list (`manager.list()`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict).
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        self.make(&Spec::List(Vec::new()))
    }

    /// A new list holding `items` (`manager.list(items)`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict); [`ErrorKind::Codec`].
    pub fn list_from<T: Serialize>(&self, items: impl IntoIterator<Item = T>) -> Result<ListProxy<T>> {
        let items = items.into_iter().map(|v| encode_value(&v)).collect::<Result<_>>()?;
        self.make(&Spec::List(items))
    }

    /// A new namespace (`manager.Namespace()`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict).
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        self.make(&Spec::Namespace)
    }

    /// A new value (`manager.Value(typecode, value)`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict); [`ErrorKind::Codec`].
    pub fn value<T: Serialize>(&self, value: &T) -> Result<ValueProxy<T>> {
        self.make(&Spec::Value(encode_value(value)?))
    }

    /// A new fixed-length array holding `items` (`manager.Array(typecode, items)`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict); [`ErrorKind::Codec`].
    pub fn array<T: Serialize>(&self, items: &[T]) -> Result<ArrayProxy<T>> {
        let items = items.iter().map(encode_value).collect::<Result<_>>()?;
        self.make(&Spec::Array(items))
    }

    /// A new unbounded queue (`manager.Queue()`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict).
    pub fn queue<T>(&self) -> Result<QueueProxy<T>> {
        self.make(&Spec::Queue { maxsize: 0, joinable: false })
    }

    /// A new queue holding at most `maxsize` items (`manager.Queue(maxsize)`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict); [`ErrorKind::InvalidValue`] for `maxsize == 0`.
    pub fn bounded_queue<T>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        check_positive("a bounded queue's size", maxsize)?;
        self.make(&Spec::Queue { maxsize, joinable: false })
    }

    /// A new unbounded joinable queue (`manager.JoinableQueue()`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict).
    pub fn joinable_queue<T>(&self) -> Result<JoinableQueueProxy<T>> {
        self.make(&Spec::Queue { maxsize: 0, joinable: true })
    }

    /// A new joinable queue holding at most `maxsize` items.
    ///
    /// # Errors
    /// See [`dict`](Manager::dict); [`ErrorKind::InvalidValue`] for `maxsize == 0`.
    pub fn bounded_joinable_queue<T>(&self, maxsize: usize) -> Result<JoinableQueueProxy<T>> {
        check_positive("a bounded queue's size", maxsize)?;
        self.make(&Spec::Queue { maxsize, joinable: true })
    }

    /// A new lock (`manager.Lock()`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict).
    pub fn lock(&self) -> Result<LockProxy> {
        self.make(&Spec::Lock { reentrant: false })
    }

    /// A new reentrant lock (`manager.RLock()`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict).
    pub fn rlock(&self) -> Result<RLockProxy> {
        self.make(&Spec::Lock { reentrant: true })
    }

    /// A new semaphore with `value` units (`manager.Semaphore(value)`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict).
    pub fn semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        self.make(&Spec::Semaphore { value, bounded: false })
    }

    /// A new bounded semaphore with `value` units (`manager.BoundedSemaphore(value)`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict).
    pub fn bounded_semaphore(&self, value: usize) -> Result<BoundedSemaphoreProxy> {
        self.make(&Spec::Semaphore { value, bounded: true })
    }

    /// A new condition variable over a new reentrant lock (`manager.Condition()`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict).
    pub fn condition(&self) -> Result<ConditionProxy> {
        self.make(&Spec::Condition(None))
    }

    /// A new condition variable over `lock`, a [`LockProxy`] or [`RLockProxy`] of this
    /// manager (`manager.Condition(lock)`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict); [`ErrorKind::InvalidValue`] when `lock` is not a lock.
    pub fn condition_with(&self, lock: &impl AsRef<AnyProxy>) -> Result<ConditionProxy> {
        self.make(&Spec::Condition(Some(lock.as_ref().id())))
    }

    /// A new event (`manager.Event()`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict).
    pub fn event(&self) -> Result<EventProxy> {
        self.make(&Spec::Event)
    }

    /// A new barrier for `parties` callers (`manager.Barrier(parties)`).
    ///
    /// # Errors
    /// See [`dict`](Manager::dict); [`ErrorKind::InvalidValue`] for `parties == 0`.
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy> {
        self.make(&Spec::Barrier(parties))
    }

    /// A new object of the registered type `T`, made in the server from `init`.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownType`] when the server has not registered `T`; the errors of
    /// [`Managed::create`].
    pub fn create<T: Managed>(&self, init: &T::Init) -> Result<Proxy<T>> {
        self.make(&Spec::User { type_id: T::TYPE_ID.to_owned(), init: encode_value(init)? })
    }

    /// Calls the callable registered as `name` in the server with `args`, and returns a proxy
    /// of the object it hands out (CPython's `manager.get_queue()` after
    /// `register('get_queue', callable=...)`).
    ///
    /// ```no_run
    /// use multiproc_manager::{Manager, QueueProxy};
    ///
    /// let manager = Manager::connect("10.0.0.1:50000".parse::<std::net::SocketAddr>().unwrap(), b"secret")?;
    /// let queue: QueueProxy<String> = manager.call("get_queue", &())?;
    /// queue.put("work")?;
    /// # Ok::<(), multiproc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::UnknownType`] when nothing is registered under `name`;
    /// [`ErrorKind::WrongType`] when the object is not a `P`; the callable's errors.
    pub fn call<A: Serialize + ?Sized, P: TryFrom<AnyProxy, Error = Error>>(
        &self,
        name: &str,
        args: &A,
    ) -> Result<P> {
        P::try_from(self.call_any(name, args)?)
    }

    /// Calls a registered callable, as [`call`](Manager::call) does, and returns the object as
    /// an [`AnyProxy`] whatever its type.
    ///
    /// # Errors
    /// As [`call`](Manager::call).
    pub fn call_any<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<AnyProxy> {
        let conn = self.conn()?;
        let created: Created = conn.call(MANAGER, "call", &(name, encode_value(args)?), None)?;
        Ok(AnyProxy::new(conn, created))
    }
}

fn check_positive(what: &str, n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::new(ErrorKind::InvalidValue, format!("{what} must be at least 1")));
    }
    Ok(())
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
