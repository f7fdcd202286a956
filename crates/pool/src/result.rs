//! Where results wait: [`AsyncResult`] and the sinks that the dispatcher feeds.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use multiproc_process::call::{Reply, Values, catch_panic};
use multiproc_wire::spin::{DEFAULT_WATCH, watch};
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

/// A closure for the callback thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

enum State<T> {
    Pending,
    Ready(Result<T>),
    Taken(bool),
}

/// A value that becomes ready once.
pub(crate) struct Slot<T> {
    state: Mutex<State<T>>,
    cond: Condvar,
    /// Set with the value: watched without the lock while spinning.
    done: AtomicBool,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Arc<Slot<T>> {
        Arc::new(Slot {
            state: Mutex::new(State::Pending),
            cond: Condvar::new(),
            done: AtomicBool::new(false),
        })
    }

    pub(crate) fn set(&self, value: Result<T>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, State::Pending) {
            *state = State::Ready(value);
            self.done.store(true, Ordering::Release);
            self.cond.notify_all();
        }
    }

    /// Waits until ready or `deadline`; whether it is ready.
    fn wait(&self, deadline: Option<Instant>) -> bool {
        // A result that comes within the watch costs no wake-up.
        watch(DEFAULT_WATCH, deadline, || self.done.load(Ordering::Acquire));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while matches!(*state, State::Pending) {
            match deadline {
                None => state = self.cond.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    state = self.cond.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
        true
    }

    fn take(&self, deadline: Option<Instant>) -> Result<T> {
        if !self.wait(deadline) {
            return Err(Error::new(ErrorKind::Timeout, "timed out waiting for the result"));
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *state, State::Taken(false)) {
            State::Ready(value) => {
                *state = State::Taken(value.is_ok());
                value
            }
            State::Taken(ok) => {
                *state = State::Taken(ok);
                Err(Error::new(ErrorKind::ResultTaken, "the result was already taken"))
            }
            State::Pending => unreachable!("waited until ready"),
        }
    }

    fn successful(&self) -> Option<bool> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Pending => None,
            State::Ready(value) => Some(value.is_ok()),
            State::Taken(ok) => Some(*ok),
        }
    }
}

/// The result of an asynchronous call (CPython's `AsyncResult`): `get` it, wait for it, or ask
/// whether it is ready.
///
/// ```
/// use multiproc_pool::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2)?;
/// let result = pool.apply_async(square, 7);
/// assert_eq!(result.get()?, 49);
/// assert_eq!(result.successful(), Some(true));
/// # Ok::<(), multiproc_pool::Error>(())
/// ```
pub struct AsyncResult<T> {
    slot: Arc<Slot<T>>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").field("ready", &self.ready()).finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>) -> AsyncResult<T> {
        AsyncResult { slot }
    }

    /// Waits for the result and takes it.
    ///
    /// # Errors
    /// The task's error ([`ErrorKind::Panicked`], [`ErrorKind::WorkerLost`], ...), or
    /// [`ErrorKind::ResultTaken`] when an earlier call took the result.
    pub fn get(&self) -> Result<T> {
        self.slot.take(None)
    }

    /// Waits at most `timeout` for the result and takes it; on [`ErrorKind::Timeout`] the
    /// result can still be taken later.
    ///
    /// # Errors
    /// As [`get`](AsyncResult::get), and [`ErrorKind::Timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.slot.take(Instant::now().checked_add(timeout))
    }

    /// Waits until the result is ready.
    pub fn wait(&self) {
        self.slot.wait(None);
    }

    /// Waits at most `timeout`; whether the result is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.slot.wait(Instant::now().checked_add(timeout))
    }

    /// Whether the result is ready.
    pub fn ready(&self) -> bool {
        self.slot.successful().is_some()
    }

    /// Whether the task succeeded: `None` while it is not ready.
    pub fn successful(&self) -> Option<bool> {
        self.slot.successful()
    }
}

/// Decodes a worker's reply into one result per item.
pub(crate) fn decode_items<R: DeserializeOwned>(reply: Result<Reply>) -> Result<Vec<Result<R>>> {
    let items = reply?.decode::<R>().map_err(|e| Error::new(ErrorKind::Codec, e.to_string()))?;
    Ok(items.into_iter().map(|item| item.map_err(Error::panicked)).collect())
}

/// Decodes a worker's reply into all its values, or the first error.
pub(crate) fn decode_values<R: DeserializeOwned>(reply: Result<Reply>) -> Result<Vec<R>> {
    match reply?.decode_values::<R>().map_err(|e| Error::new(ErrorKind::Codec, e.to_string()))? {
        Values::All(values) => Ok(values),
        Values::Mixed(results) => results.into_iter().map(|r| r.map_err(Error::panicked)).collect(),
    }
}

/// Runs a decoder on the pool's thread: a `Deserialize` that panics fails its task with a
/// codec error (carrying the panic's message) instead of ending the thread.
fn guarded<T>(decode: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_panic(decode).unwrap_or_else(|panic| Err(Error::result_panicked(panic)))
}

/// What the dispatcher hands each finished task to.
pub(crate) trait Sink: Send + Sync {
    /// Task `chunk` of the job finished with `reply` (or failed as a whole). A chunk already
    /// settled ignores later calls, so a task whose handling panicked half way can be failed.
    fn complete(&self, chunk: usize, reply: Result<Reply>);
}

/// A user callback for a value.
pub(crate) type OnValue<T> = Box<dyn FnOnce(&T) + Send>;
/// A user callback for an error.
pub(crate) type OnError = Box<dyn FnOnce(&Error) + Send>;

/// User callbacks for one result.
pub(crate) struct Callbacks<T> {
    pub(crate) on_value: Option<OnValue<T>>,
    pub(crate) on_error: Option<OnError>,
    pub(crate) thread: Sender<Job>,
}

impl<T: Send + 'static> Callbacks<T> {
    /// Runs the callback on the callback thread, then makes the result ready (so that `get`
    /// returns after the callback has run, as in CPython).
    fn deliver(self, slot: Arc<Slot<T>>, value: Result<T>) {
        let Callbacks { on_value, on_error, thread } = self;
        let job: Job = Box::new(move || {
            // A callback that panics must neither leave the result pending forever nor end the
            // thread that runs the other callbacks: the panic hook has reported it; go on.
            let _ = catch_unwind(AssertUnwindSafe(|| match &value {
                Ok(v) => {
                    if let Some(cb) = on_value {
                        cb(v);
                    }
                }
                Err(e) => {
                    if let Some(cb) = on_error {
                        cb(e);
                    }
                }
            }));
            slot.set(value);
        });
        if let Err(unsent) = thread.send(job) {
            // The callback thread is gone (the pool is being dropped): run it here.
            (unsent.0)();
        }
    }

    /// Runs the callbacks on the calling thread (for a result known at submission).
    pub(crate) fn deliver_now(self, slot: Arc<Slot<T>>, value: Result<T>) {
        self.deliver(slot, value);
    }
}

fn finish<T: Send + 'static>(slot: &Arc<Slot<T>>, callbacks: &Mutex<Option<Callbacks<T>>>, value: Result<T>) {
    match callbacks.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some(callbacks) => callbacks.deliver(slot.clone(), value),
        None => slot.set(value),
    }
}

/// One call, one result (`apply`).
pub(crate) struct SingleSink<R> {
    pub(crate) slot: Arc<Slot<R>>,
    pub(crate) callbacks: Mutex<Option<Callbacks<R>>>,
}

impl<R: DeserializeOwned + Send + 'static> Sink for SingleSink<R> {
    fn complete(&self, _chunk: usize, reply: Result<Reply>) {
        let value = guarded(|| decode_items::<R>(reply)).and_then(|items| {
            items.into_iter().next().unwrap_or_else(|| Err(Error::new(ErrorKind::Codec, "no result")))
        });
        finish(&self.slot, &self.callbacks, value);
    }
}

/// Many chunks, one list of results (`map`).
pub(crate) struct MapSink<R> {
    pub(crate) slot: Arc<Slot<Vec<R>>>,
    pub(crate) callbacks: Mutex<Option<Callbacks<Vec<R>>>>,
    pub(crate) parts: Mutex<MapParts<R>>,
}

pub(crate) struct MapParts<R> {
    pub(crate) chunks: Vec<Option<Vec<R>>>,
    pub(crate) remaining: usize,
    pub(crate) failed: bool,
}

impl<R> MapParts<R> {
    pub(crate) fn new(chunks: usize) -> MapParts<R> {
        MapParts { chunks: (0..chunks).map(|_| None).collect(), remaining: chunks, failed: false }
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for MapSink<R> {
    fn complete(&self, chunk: usize, reply: Result<Reply>) {
        let items = guarded(|| decode_values::<R>(reply));
        let done = {
            let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            if parts.failed || parts.remaining == 0 || parts.chunks[chunk].is_some() {
                return;
            }
            match items {
                Err(e) => {
                    parts.failed = true;
                    Some(Err(e))
                }
                Ok(values) => {
                    parts.chunks[chunk] = Some(values);
                    parts.remaining -= 1;
                    (parts.remaining == 0).then(|| {
                        // Grow the first chunk's list (no copy of it) by the others.
                        let mut chunks = parts.chunks.iter_mut().map(|c| c.take().expect("every chunk done"));
                        let mut all = chunks.next().unwrap_or_default();
                        let rest: Vec<Vec<R>> = chunks.collect();
                        all.reserve_exact(rest.iter().map(Vec::len).sum());
                        rest.into_iter().for_each(|chunk| all.extend(chunk));
                        Ok(all)
                    })
                }
            }
        };
        if let Some(value) = done {
            finish(&self.slot, &self.callbacks, value);
        }
    }
}

/// Chunk results streamed to an iterator (`imap`, `imap_unordered`).
pub(crate) struct StreamSink<R> {
    pub(crate) tx: Sender<(usize, Result<Vec<Result<R>>>)>,
}

impl<R: DeserializeOwned + Send + 'static> Sink for StreamSink<R> {
    fn complete(&self, chunk: usize, reply: Result<Reply>) {
        // A dropped iterator no longer wants results.
        // The iterator ignores a chunk it has already received.
        let _ = self.tx.send((chunk, guarded(|| decode_items::<R>(reply))));
    }
}
