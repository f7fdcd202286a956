use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use multiproc_process::call::{Call, Callable, Star, catch_panic};
use multiproc_process::{StartMethod, get_start_method};
use multiproc_wire::spin::{self, DEFAULT_WATCH};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dispatch::{self, Command, Config, Dispatcher, Task};
use crate::error::{Error, ErrorKind, Result};
use crate::result::{
    AsyncResult, Callbacks, Job, MapParts, MapSink, OnError, OnValue, SingleSink, Sink, Slot, StreamSink,
};

/// What [`Error::panicked_in`] names when the input of a `map` or `imap` panicked.
const INPUT: &str = "the input iterator";

/// How long pool creation waits for a worker to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A pool of worker processes (CPython's `multiprocessing.Pool`).
///
/// Tasks are `fn` items or closures that capture nothing, with serde arguments and results.
/// A task that panics fails alone; a worker that dies fails only the task it was running (with
/// [`ErrorKind::WorkerLost`], naming the exit code or signal), is replaced, and every other task
/// completes. No call waits forever on a dead worker.
///
/// No user code can stop the pool's threads or its workers: an argument or result whose
/// `Serialize` or `Deserialize` panics (in the caller, in the worker, or on the pool's thread)
/// fails its task alone with [`ErrorKind::Codec`] (carrying the panic's message), and a
/// callback that panics changes nothing else. CPython does worse here: an exception while
/// unpickling a result, or in a callback, ends its result thread and every later `get` hangs.
///
/// ```
/// use multiproc_pool::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
/// assert_eq!(pool.apply(square, 12)?, 144);
/// let lazy: Vec<u64> = pool.imap(square, 1..=3).collect::<Result<_, _>>()?;
/// assert_eq!(lazy, [1, 4, 9]);
/// # Ok::<(), multiproc_pool::Error>(())
/// ```
///
/// Dropping the pool closes it and waits for the submitted tasks ([`close`](Pool::close) then
/// [`join`](Pool::join)); [`terminate`](Pool::terminate) stops the workers at once.
pub struct Pool {
    tx: Sender<Command>,
    waker: UnixStream,
    /// Set by the dispatcher before it sleeps; a submitter that clears it writes to `waker`.
    sleeping: Arc<AtomicBool>,
    processes: usize,
    closed: Mutex<bool>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    callbacks: Mutex<Option<(Sender<Job>, JoinHandle<()>)>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("processes", &self.processes).finish()
    }
}

/// Settings for a [`Pool`].
///
/// ```
/// use multiproc_pool::Pool;
///
/// fn setup(level: u32) {
///     assert!(level > 0);
/// }
///
/// let pool = Pool::builder().processes(2).initializer(setup, 3).maxtasksperchild(100).build()?;
/// # drop(pool);
/// # Ok::<(), multiproc_pool::Error>(())
/// ```
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<Result<Call>>,
    maxtasks: Option<usize>,
    method: Option<StartMethod>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.init.is_some())
            .field("maxtasksperchild", &self.maxtasks)
            .field("start_method", &self.method)
            .finish()
    }
}

impl PoolBuilder {
    /// The number of worker processes (default: [`cpu_count`](multiproc_process::cpu_count));
    /// [`build`](PoolBuilder::build) refuses zero.
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = Some(n);
        self
    }

    /// A function each worker runs with `args` before its first task. If it panics, pool
    /// creation (or the next call, for a replacement worker) returns its error and no more
    /// workers are started.
    pub fn initializer<F, A>(mut self, f: F, args: A) -> PoolBuilder
    where
        F: Fn(A) + Copy + 'static,
        A: Serialize + DeserializeOwned,
    {
        self.init = Some(encode_call::<F, A, ()>(f, std::slice::from_ref(&args)));
        self
    }

    /// Replaces each worker after it has run `n` tasks (a chunk counts as one task);
    /// [`build`](PoolBuilder::build) refuses zero.
    pub fn maxtasksperchild(mut self, n: usize) -> PoolBuilder {
        self.maxtasks = Some(n);
        self
    }

    /// How workers are started (default: the process-wide default start method).
    pub fn start_method(mut self, method: StartMethod) -> PoolBuilder {
        self.method = Some(method);
        self
    }

    /// Starts the workers and waits until each has run its initializer.
    ///
    /// # Errors
    /// [`ErrorKind::Initializer`] when the initializer fails in a worker; [`ErrorKind::Io`]
    /// when workers cannot be started; [`ErrorKind::InvalidArgument`] for zero processes or
    /// zero `maxtasksperchild`.
    pub fn build(self) -> Result<Pool> {
        if self.processes == Some(0) {
            return Err(Error::new(ErrorKind::InvalidArgument, "the number of processes must be at least 1"));
        }
        if self.maxtasks == Some(0) {
            return Err(Error::new(ErrorKind::InvalidArgument, "maxtasksperchild must be at least 1"));
        }
        let config = Config {
            processes: self.processes.unwrap_or_else(multiproc_process::cpu_count).max(1),
            init: self.init.transpose()?,
            maxtasks: self.maxtasks,
            method: self.method.unwrap_or_else(get_start_method),
        };
        let mut workers = Vec::with_capacity(config.processes);
        let deadline = Instant::now() + READY_TIMEOUT;
        let started = (|| {
            for _ in 0..config.processes {
                workers.push(dispatch::start_worker(&config, false)?);
            }
            for worker in &mut workers {
                dispatch::await_ready(worker, deadline)?;
            }
            Ok(())
        })();
        if let Err(error) = started {
            for worker in workers {
                dispatch::stop_worker(worker, true);
            }
            return Err(error);
        }
        // From here on, every error stops the workers started above: none is left behind.
        let waker = UnixStream::pair().and_then(|(read, write)| {
            read.set_nonblocking(true)?;
            write.set_nonblocking(true)?;
            Ok((read, write))
        });
        let (waker_read, waker) = match waker {
            Ok(pair) => pair,
            Err(e) => {
                workers.into_iter().for_each(|worker| dispatch::stop_worker(worker, true));
                return Err(Error::new(ErrorKind::Io, format!("socketpair: {e}")));
            }
        };
        let (cb_tx, cb_rx) = crossbeam_channel::unbounded::<Job>();
        let callbacks =
            std::thread::Builder::new().name("multiproc-pool-callbacks".into()).spawn(move || {
                for job in cb_rx {
                    // Each job guards its callback; this keeps the thread for the next ones
                    // whatever else may panic.
                    let _ = catch_panic(job);
                }
            });
        let callbacks = match callbacks {
            Ok(handle) => handle,
            Err(e) => {
                workers.into_iter().for_each(|worker| dispatch::stop_worker(worker, true));
                return Err(Error::new(ErrorKind::Io, format!("cannot start the callback thread: {e}")));
            }
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let processes = config.processes;
        let sleeping = Arc::new(AtomicBool::new(false));
        let dispatcher = Dispatcher::new(rx, waker_read, sleeping.clone(), workers, config);
        // A thread that cannot start drops the dispatcher, which stops its workers.
        let dispatcher =
            std::thread::Builder::new().name("multiproc-pool".into()).spawn(move || dispatcher.run());
        let dispatcher = match dispatcher {
            Ok(handle) => handle,
            Err(e) => {
                drop(cb_tx);
                let _ = callbacks.join();
                return Err(Error::new(ErrorKind::Io, format!("cannot start the pool thread: {e}")));
            }
        };
        Ok(Pool {
            tx,
            waker,
            sleeping,
            processes,
            closed: Mutex::new(false),
            dispatcher: Mutex::new(Some(dispatcher)),
            callbacks: Mutex::new(Some((cb_tx, callbacks))),
        })
    }
}

/// Encodes a call in the caller's thread. An argument whose `Serialize` panics fails the
/// call with [`ErrorKind::Codec`] (carrying the panic's message), as one that returns an error
/// does, so that a `map` or `imap` half submitted stays consistent.
fn encode_call<F, A, R>(f: F, items: &[A]) -> Result<Call>
where
    F: Callable<A, R>,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    match catch_panic(|| Call::batch::<F, A, R>(f, items)) {
        Ok(encoded) => encoded.map_err(|e| Error::new(ErrorKind::Codec, e.to_string())),
        Err(panic) => {
            Err(Error::new(ErrorKind::Codec, format!("cannot encode the arguments: panicked: {panic}")))
        }
    }
}

/// CPython's `map` chunk size: the items spread over four chunks per worker.
fn default_chunksize(items: usize, workers: usize) -> usize {
    items.div_ceil(workers * 4).max(1)
}

impl Pool {
    /// A pool of `processes` workers with the default settings.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// Settings for a pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder { processes: None, init: None, maxtasks: None, method: None }
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.processes
    }

    fn submit(&self, tasks: Vec<Task>) -> Result<()> {
        // Held while sending: a submission never follows Close or Terminate in the channel,
        // where the dispatcher would drop it unanswered.
        let closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if *closed {
            return Err(Error::new(ErrorKind::Closed, "the pool is closed"));
        }
        // The pool's thread is gone: the caller fails the tasks with this error.
        self.tx.send(Command::Submit(tasks)).map_err(|unsent| {
            if let Command::Submit(tasks) = unsent.0 {
                tasks.into_iter().for_each(Task::forget);
            }
            Error::new(ErrorKind::Closed, "the pool is closed")
        })?;
        drop(closed);
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        // Only a sleeping dispatcher needs the byte (see Dispatcher::wait_and_handle); a full
        // socket means a wake-up is already pending.
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let _ = (&self.waker).write(&[1]);
        }
    }

    fn callback_thread(&self) -> Option<Sender<Job>> {
        self.callbacks.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(tx, _)| tx.clone())
    }

    /// Runs `f(args)` in a worker and waits for the result (CPython's `apply`).
    ///
    /// # Errors
    /// The task's error: [`ErrorKind::Panicked`], [`ErrorKind::WorkerLost`], ...
    pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R>
    where
        F: Callable<A, R> + Copy,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, args).get()
    }

    /// Runs `f(args)` in a worker; the result arrives in the returned handle.
    pub fn apply_async<F, A, R>(&self, f: F, args: A) -> AsyncResult<R>
    where
        F: Callable<A, R> + Copy,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_inner(f, args, None)
    }

    /// [`apply_async`](Pool::apply_async) with callbacks, run on the pool's callback thread
    /// in completion order: `callback` with the value, or `error_callback` with the error,
    /// before the handle's `get` returns. A callback that panics is reported by the panic
    /// hook and changes nothing else: the result is still delivered.
    pub fn apply_async_with<F, A, R>(
        &self,
        f: F,
        args: A,
        callback: impl FnOnce(&R) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> AsyncResult<R>
    where
        F: Callable<A, R> + Copy,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let callbacks = self.callback_thread().map(|thread| Callbacks {
            on_value: Some(Box::new(callback) as OnValue<R>),
            on_error: Some(Box::new(error_callback) as OnError),
            thread,
        });
        self.apply_inner(f, args, callbacks)
    }

    fn apply_inner<F, A, R>(&self, f: F, args: A, callbacks: Option<Callbacks<R>>) -> AsyncResult<R>
    where
        F: Callable<A, R> + Copy,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let slot = Slot::new();
        let sink = Arc::new(SingleSink { slot: slot.clone(), callbacks: Mutex::new(callbacks) });
        let submitted = encode_call::<F, A, R>(f, std::slice::from_ref(&args))
            .and_then(|call| self.submit(vec![Task::new(call, sink.clone(), 0)]));
        if let Err(error) = submitted {
            sink.complete(0, Err(error));
        }
        AsyncResult::new(slot)
    }

    /// Applies `f` to every item in parallel and returns the results in order (CPython's
    /// `map`), with CPython's chunk size: the items in `4 × processes` chunks.
    ///
    /// The input is collected first, in the caller's thread: if it panics, `map` returns the
    /// panic as [`ErrorKind::Panicked`] (with [`Error::panicked_in`] naming the input), and the
    /// pool goes on.
    ///
    /// # Errors
    /// The first error of any item, or the input's panic.
    pub fn map<F, A, R>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        F: Callable<A, R> + Copy,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async(f, items).get()
    }

    /// [`map`](Pool::map) with `chunksize` items per task.
    ///
    /// # Errors
    /// As [`map`](Pool::map).
    pub fn map_chunked<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        F: Callable<A, R> + Copy,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_inner(f, items, Some(chunksize), None).get()
    }

    /// [`map`](Pool::map) without waiting: the list arrives in the returned handle.
    pub fn map_async<F, A, R>(&self, f: F, items: impl IntoIterator<Item = A>) -> AsyncResult<Vec<R>>
    where
        F: Callable<A, R> + Copy,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_inner(f, items, None, None)
    }

    /// [`map_async`](Pool::map_async) with callbacks (see
    /// [`apply_async_with`](Pool::apply_async_with)).
    pub fn map_async_with<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        callback: impl FnOnce(&Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> AsyncResult<Vec<R>>
    where
        F: Callable<A, R> + Copy,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let callbacks = self.callback_thread().map(|thread| Callbacks {
            on_value: Some(Box::new(callback) as OnValue<Vec<R>>),
            on_error: Some(Box::new(error_callback) as OnError),
            thread,
        });
        self.map_inner(f, items, None, callbacks)
    }

    fn map_inner<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callbacks: Option<Callbacks<Vec<R>>>,
    ) -> AsyncResult<Vec<R>>
    where
        F: Callable<A, R> + Copy,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let slot = Slot::new();
        // An input that panics fails the map (as an exception in CPython's input does); the
        // pool is untouched, since nothing was submitted yet.
        let items: Vec<A> = match catch_panic(|| items.into_iter().collect()) {
            Ok(items) => items,
            Err(panic) => {
                let error = Error::panicked_outside_task(INPUT, panic);
                match callbacks {
                    Some(callbacks) => callbacks.deliver_now(slot.clone(), Err(error)),
                    None => slot.set(Err(error)),
                }
                return AsyncResult::new(slot);
            }
        };
        let chunksize = chunksize.unwrap_or_else(|| default_chunksize(items.len(), self.processes)).max(1);
        let chunks: Vec<&[A]> = items.chunks(chunksize).collect();
        let sink = Arc::new(MapSink {
            slot: slot.clone(),
            callbacks: Mutex::new(callbacks),
            parts: Mutex::new(MapParts::new(chunks.len())),
        });
        if chunks.is_empty() {
            sink.parts.lock().unwrap_or_else(|e| e.into_inner()).remaining = 1;
            sink.complete_empty();
            return AsyncResult::new(slot);
        }
        // Each chunk is submitted as soon as it is encoded, so workers start while the
        // next chunks are being encoded.
        for (chunk, items) in chunks.iter().enumerate() {
            let submitted = encode_call::<F, A, R>(f, items)
                .and_then(|call| self.submit(vec![Task::new(call, sink.clone() as Arc<dyn Sink>, chunk)]));
            if let Err(error) = submitted {
                sink.complete(chunk, Err(error));
                break;
            }
        }
        AsyncResult::new(slot)
    }

    /// [`map`](Pool::map) for functions of several arguments, each item a tuple of them
    /// (CPython's `starmap`).
    ///
    /// ```
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// let pool = multiproc_pool::Pool::new(2)?;
    /// assert_eq!(pool.starmap(add, [(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`map`](Pool::map).
    pub fn starmap<F, A, R>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        Star<F>: Callable<A, R> + Copy,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map(Star(f), items)
    }

    /// [`starmap`](Pool::starmap) without waiting.
    pub fn starmap_async<F, A, R>(&self, f: F, items: impl IntoIterator<Item = A>) -> AsyncResult<Vec<R>>
    where
        Star<F>: Callable<A, R> + Copy,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async(Star(f), items)
    }

    /// Applies `f` to the items lazily, yielding results in order (CPython's `imap`). Input is
    /// pulled only as results are consumed, with a bounded number of tasks in flight, so an
    /// endless iterator works. Chunk size 1 unless set with [`IMap::chunksize`].
    ///
    /// If the input panics (it runs in the caller's thread, in `next`), the results of every
    /// item it gave come first, then the panic as [`ErrorKind::Panicked`] (with
    /// [`Error::panicked_in`] naming the input) once, then the end; the pool goes on. CPython
    /// does the same with an exception, but drops the items of the chunk it interrupted; here
    /// they run, as a shorter chunk.
    pub fn imap<F, A, R, I>(&self, f: F, items: I) -> IMap<'_, F, I::IntoIter, A, R>
    where
        F: Callable<A, R> + Copy,
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        IMap::new(self, f, items.into_iter(), true)
    }

    /// [`imap`](Pool::imap) yielding results as they complete (CPython's `imap_unordered`).
    /// An input that panics ends it as in `imap`: every result of the items it gave, then the
    /// panic, then the end.
    pub fn imap_unordered<F, A, R, I>(&self, f: F, items: I) -> IMap<'_, F, I::IntoIter, A, R>
    where
        F: Callable<A, R> + Copy,
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        IMap::new(self, f, items.into_iter(), false)
    }

    /// Refuses new tasks; the workers exit once the submitted ones are done.
    pub fn close(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if !*closed {
            *closed = true;
            let _ = self.tx.send(Command::Close);
            self.wake();
        }
    }

    /// Stops the workers now, even mid-task; unfinished tasks fail with
    /// [`ErrorKind::Closed`].
    pub fn terminate(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        *closed = true;
        let _ = self.tx.send(Command::Terminate);
        drop(closed);
        self.wake();
        self.join_threads();
    }

    /// Waits for the workers to exit; call [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) first.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`] when the pool is still open (joining would wait forever).
    pub fn join(&self) -> Result<()> {
        if !*self.closed.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(Error::new(ErrorKind::Closed, "join needs a closed or terminated pool"));
        }
        self.join_threads();
        Ok(())
    }

    fn join_threads(&self) {
        let dispatcher = self.dispatcher.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = dispatcher {
            let _ = handle.join();
        }
        let callbacks = self.callbacks.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((tx, handle)) = callbacks {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close();
        self.join_threads();
    }
}

impl<R: DeserializeOwned + Send + 'static> MapSink<R> {
    fn complete_empty(&self) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.remaining = 0;
        drop(parts);
        match self.callbacks.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(callbacks) => callbacks.deliver_now(self.slot.clone(), Ok(Vec::new())),
            None => self.slot.set(Ok(Vec::new())),
        }
    }
}

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`].
pub struct IMap<'p, F, I, A, R> {
    pool: &'p Pool,
    f: F,
    input: I,
    ordered: bool,
    chunksize: usize,
    sink: Arc<StreamSink<R>>,
    rx: Receiver<(usize, Result<Vec<Result<R>>>)>,
    /// Chunks submitted so far; the next chunk's index.
    submitted: usize,
    /// Chunks whose results have been received.
    received: usize,
    /// The next chunk to yield (ordered).
    next: usize,
    exhausted: bool,
    /// The panic that ended the input, yielded once after every result of the items it gave.
    input_panic: Option<Error>,
    /// The number of items of each chunk in flight: a chunk lost as a whole (its worker died)
    /// yields its error once per item.
    sizes: BTreeMap<usize, usize>,
    waiting: BTreeMap<usize, VecDeque<Result<R>>>,
    current: VecDeque<Result<R>>,
    marker: std::marker::PhantomData<fn(A)>,
}

impl<F, I, A, R> fmt::Debug for IMap<'_, F, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &self.ordered)
            .field("chunksize", &self.chunksize)
            .field("submitted", &self.submitted)
            .field("received", &self.received)
            .finish()
    }
}

impl<'p, F, I, A, R> IMap<'p, F, I, A, R>
where
    F: Callable<A, R> + Copy,
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    fn new(pool: &'p Pool, f: F, input: I, ordered: bool) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        IMap {
            pool,
            f,
            input,
            ordered,
            chunksize: 1,
            sink: Arc::new(StreamSink { tx }),
            rx,
            submitted: 0,
            received: 0,
            next: 0,
            exhausted: false,
            input_panic: None,
            sizes: BTreeMap::new(),
            waiting: BTreeMap::new(),
            current: VecDeque::new(),
            marker: std::marker::PhantomData,
        }
    }

    /// Items per task (default 1); set before the first `next`.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = n.max(1);
        self
    }

    /// Chunks kept outstanding (see `outstanding`): enough to keep every worker busy with
    /// tasks sent ahead, few enough that input is pulled only shortly before it is needed.
    fn window(&self) -> usize {
        self.pool.processes * 64
    }

    /// Chunks pulled from the input and not yet handed to the caller: in flight, or (ordered)
    /// finished and waiting for an earlier chunk.
    fn outstanding(&self) -> usize {
        self.submitted - if self.ordered { self.next } else { self.received }
    }

    /// Submits chunks until the window is full or the input ends. Refills only once half the
    /// window has drained, in one submission, so that the pool thread is not woken per task.
    fn fill(&mut self) {
        if self.exhausted || self.outstanding() > self.window() / 2 {
            return;
        }
        let mut tasks = Vec::new();
        while !self.exhausted && self.outstanding() < self.window() {
            // The input is user code: if it panics, the items it gave still run (a short last
            // chunk), and it is not asked again.
            let mut items: Vec<A> = Vec::with_capacity(self.chunksize);
            let (input, size) = (&mut self.input, self.chunksize);
            let pulled = catch_panic(|| {
                for item in input.by_ref().take(size) {
                    items.push(item);
                }
            });
            if let Err(panic) = pulled {
                self.exhausted = true;
                self.input_panic = Some(Error::panicked_outside_task(INPUT, panic));
            }
            if items.is_empty() {
                self.exhausted = true;
                break;
            }
            let chunk = self.submitted;
            self.submitted += 1;
            self.sizes.insert(chunk, items.len());
            let sink = self.sink.clone() as Arc<dyn Sink>;
            match encode_call::<F, A, R>(self.f, &items) {
                Ok(call) => tasks.push(Task::new(call, sink, chunk)),
                Err(error) => {
                    // Yielded at this chunk's position, once per item.
                    let _ =
                        self.sink.tx.send((chunk, Ok(items.iter().map(|_| Err(error.clone())).collect())));
                }
            }
        }
        if tasks.is_empty() {
            return;
        }
        let chunks: Vec<(usize, usize)> =
            tasks.iter().map(|t| (t.chunk, self.sizes.get(&t.chunk).copied().unwrap_or(1))).collect();
        if let Err(error) = self.pool.submit(tasks) {
            for (chunk, size) in chunks {
                let _ = self.sink.tx.send((chunk, Ok((0..size).map(|_| Err(error.clone())).collect())));
            }
        }
    }

    /// The next result, waiting at most until `deadline`.
    fn next_deadline(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        loop {
            if let Some(item) = self.current.pop_front() {
                return Some(item);
            }
            self.fill();
            if self.ordered {
                if let Some(items) = self.waiting.remove(&self.next) {
                    self.next += 1;
                    self.current = items;
                    continue;
                }
            }
            if self.received == self.submitted && self.exhausted {
                // Every result is in (and, in order, yielded): then the input's panic, once.
                return self.input_panic.take().map(Err);
            }
            let received = match deadline {
                None => watch(&self.rx).or_else(|| self.rx.recv().ok()),
                Some(deadline) => match self.rx.recv_deadline(deadline) {
                    Ok(message) => Some(message),
                    Err(_) => {
                        return Some(Err(Error::new(
                            ErrorKind::Timeout,
                            "timed out waiting for the next result",
                        )));
                    }
                },
            };
            let Some((chunk, items)) = received else {
                return Some(Err(Error::new(ErrorKind::Closed, "the pool stopped")));
            };
            // A chunk received already (failed again after its handling panicked) is ignored.
            let Some(size) = self.sizes.remove(&chunk) else { continue };
            self.received += 1;
            let items: VecDeque<Result<R>> = match items {
                Ok(items) => items.into(),
                Err(error) => (0..size).map(|_| Err(error.clone())).collect(),
            };
            if self.ordered {
                self.waiting.insert(chunk, items);
            } else {
                self.current = items;
            }
        }
    }

    /// The next result, waiting at most `timeout`: `Some(Err)` with [`ErrorKind::Timeout`]
    /// when it is not ready by then (call again to keep waiting), `None` at the end.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_deadline(Instant::now().checked_add(timeout))
    }
}

/// Watches `rx` before the caller sleeps in `recv`: results that come within the watch cost
/// no wake-up.
fn watch<T>(rx: &Receiver<T>) -> Option<T> {
    let mut got = None;
    spin::watch(DEFAULT_WATCH, None, || {
        got = rx.try_recv().ok();
        got.is_some()
    });
    got
}

impl<F, I, A, R> Iterator for IMap<'_, F, I, A, R>
where
    F: Callable<A, R> + Copy,
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_deadline(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep_ms(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    fn expect_thread_death(result: Result<u64>) {
        let error = result.expect_err("the pool's thread died");
        assert_eq!(error.kind(), ErrorKind::Closed, "{error}");
    }

    /// The defensive guard: whatever ends the pool's thread, nobody waits forever.
    #[test]
    fn fails_every_waiter_when_its_thread_dies() {
        let limit = Duration::from_secs(20);
        let pool = Pool::builder().processes(1).start_method(StartMethod::Spawn).build().expect("build");
        // Long enough not to finish before the thread dies, however loaded the machine.
        let running = pool.apply_async(sleep_ms, 10_000);
        let queued = pool.apply_async(sleep_ms, 1);
        let mut it = pool.imap(sleep_ms, [100u64; 3]);
        assert!(it.next_timeout(Duration::ZERO).expect("pending").is_err_and(|e| e.is_timeout()));
        pool.tx.send(Command::Panic).expect("the pool's thread runs");
        pool.wake();
        for result in [&running, &queued] {
            let error = result.get_timeout(limit).expect_err("the pool's thread died");
            assert_eq!(error.kind(), ErrorKind::Closed, "{error}");
            assert!(error.message().contains("told to panic"), "{error}");
        }
        for _ in 0..3 {
            expect_thread_death(it.next_timeout(limit).expect("one result per item"));
        }
        assert!(it.next_timeout(limit).is_none());
        drop(it);
        // Later submissions fail at once.
        expect_thread_death(pool.apply_async(sleep_ms, 1).get_timeout(limit));
        expect_thread_death(pool.map_async(sleep_ms, [1, 2]).get_timeout(limit).map(|v| v[0]));
        let mut it = pool.imap(sleep_ms, [1]);
        expect_thread_death(it.next_timeout(limit).expect("one result"));
        assert!(it.next_timeout(limit).is_none());
        // The worker was stopped and reaped.
        let children = multiproc_process::active_children();
        assert!(children.is_empty(), "{children:?}");
    }
}
