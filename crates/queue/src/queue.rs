//! `Queue`, `SimpleQueue` and `JoinableQueue`: typed handles on a shared ring.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{GetError, JoinTimeoutError, PutError, TaskDoneError};
use crate::ring::{Fail, Kind, Ring};

/// Bytes of shared buffer a queue gets unless told otherwise: 1 GiB of address space, of which
/// only the pages in use cost memory (see the crate docs, "Memory").
pub const DEFAULT_BUFFER: usize = 1 << 30;

/// Encoding buffers kept per thread up to this size; larger ones are freed after use.
const KEEP_BUFFER: usize = 4 << 20;

thread_local! {
    static BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer (re-entrant: a nested call gets a fresh one).
fn with_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = BUFFER.with(std::cell::Cell::take);
    let result = f(&mut buf);
    if buf.capacity() <= KEEP_BUFFER {
        BUFFER.with(|cell| cell.set(buf));
    }
    result
}

/// A stable-within-one-executable identity of `T`, checked when a handle is received.
/// The fingerprint of the item type, kept in the ring's header and checked when a handle is
/// received: every item of a ring is a `T` by construction, so items carry none of their own
/// (the item path stays one copy of the bincode bytes).
fn type_hash<T>() -> u64 {
    multiproc_wire::Fingerprint::of::<T>().hash()
}

fn deadline(timeout: Duration) -> Option<Instant> {
    Some(Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 32)))
}

/// What a process holds of one queue: the mapping and this handle's closed flag.
#[derive(Debug)]
struct Shared {
    ring: Ring,
    closed: AtomicBool,
}

/// The serde form of every handle: the queue's memory file (the rest is in its header).
#[derive(Serialize)]
struct FormRef<'a> {
    #[serde(with = "multiproc_wire::fd_serde")]
    fd: BorrowedFd<'a>,
}

#[derive(Deserialize)]
struct Form {
    #[serde(with = "multiproc_wire::fd_serde")]
    fd: OwnedFd,
}

fn open<'de, D: Deserializer<'de>>(
    deserializer: D,
    kinds: &[Kind],
    hash: u64,
) -> Result<Arc<Shared>, D::Error> {
    let form = Form::deserialize(deserializer)?;
    let ring = Ring::open(form.fd, kinds, hash).map_err(serde::de::Error::custom)?;
    Ok(Arc::new(Shared { ring, closed: AtomicBool::new(false) }))
}

/// A multi-producer, multi-consumer FIFO queue shared between threads and processes, for any
/// serde type `T` (CPython's `multiprocessing.Queue`).
///
/// Clone it for another handle in this process; pass it to a child process as an argument
/// (any start method) or send it through a `Connection` for a handle there. Items are
/// serialized by the caller of [`put`](Queue::put) straight into shared memory: when `put`
/// returns, the item is in the queue, whatever happens to the calling process afterwards.
///
/// ```
/// use multiproc_queue::Queue;
///
/// let q = Queue::bounded(2)?;
/// q.put("a".to_string())?;
/// q.put("b".to_string())?;
/// assert!(q.put_nowait("c".to_string()).unwrap_err().is_full());
/// assert_eq!(q.get()?, "a");
/// assert_eq!(q.qsize(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T> {
    shared: Arc<Shared>,
    _item: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { shared: Arc::clone(&self.shared), _item: PhantomData }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.shared.ring.len())
            .field("maxsize", &self.shared.ring.maxsize())
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue (bounded only by its [`DEFAULT_BUFFER`] bytes: a `put` that finds
    /// them full waits, it never drops or buffers elsewhere).
    ///
    /// # Errors
    /// The operating system's error creating or mapping the shared memory.
    pub fn new() -> io::Result<Queue<T>> {
        Queue::with_buffer(0, DEFAULT_BUFFER)
    }

    /// A queue holding at most `maxsize` items (`0`: no limit, as CPython's `maxsize <= 0`).
    ///
    /// # Errors
    /// As [`new`](Queue::new).
    pub fn bounded(maxsize: usize) -> io::Result<Queue<T>> {
        Queue::with_buffer(maxsize, DEFAULT_BUFFER)
    }

    /// A queue holding at most `maxsize` items (`0`: no limit) in a shared buffer of
    /// `buffer_bytes` bytes (each item takes its serialized size plus 8 to 15 bytes; an item
    /// larger than the buffer is refused with [`PutError::TooLarge`]).
    ///
    /// # Errors
    /// As [`new`](Queue::new).
    pub fn with_buffer(maxsize: usize, buffer_bytes: usize) -> io::Result<Queue<T>> {
        Queue::create(maxsize, buffer_bytes, Kind::Queue)
    }

    fn create(maxsize: usize, buffer_bytes: usize, kind: Kind) -> io::Result<Queue<T>> {
        let ring = Ring::create(buffer_bytes, maxsize, kind, type_hash::<T>())?;
        Ok(Queue { shared: Arc::new(Shared { ring, closed: AtomicBool::new(false) }), _item: PhantomData })
    }

    fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), PutError<T>> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(PutError::Closed(item));
        }
        with_buffer(|bytes| {
            bytes.clear();
            let mut fds = Vec::new();
            if let Err(error) = multiproc_wire::encode_into(&item, bytes, &mut fds) {
                return Err(PutError::Encode { item, error });
            }
            if !fds.is_empty() {
                let error = multiproc_wire::Error::Encode("a queue cannot carry file descriptors".into());
                return Err(PutError::Encode { item, error });
            }
            match self.shared.ring.put(bytes, deadline) {
                Ok(()) => Ok(()),
                Err(Fail::TooLarge { capacity }) => {
                    Err(PutError::TooLarge { item, size: bytes.len(), capacity: capacity as usize })
                }
                Err(_) => Err(PutError::Full(item)),
            }
        })
    }

    /// Puts `item` at the back of the queue, waiting while the queue is full.
    ///
    /// The item is serialized here, in the caller: a serialization error is returned and
    /// nothing is enqueued.
    ///
    /// # Errors
    /// [`PutError::Closed`], [`PutError::Encode`], [`PutError::TooLarge`]; each returns the item.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, None)
    }

    /// As [`put`](Queue::put), waiting at most `timeout` for room (plus at most 250 ms for the
    /// queue's lock, should another process hold it for a long copy).
    ///
    /// # Errors
    /// As `put`, and [`PutError::Full`] when the queue stayed full.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(item, deadline(timeout))
    }

    /// As [`put`](Queue::put) without waiting for room. It may still wait briefly (at most
    /// 250 ms) for the queue's lock, which others hold only while they copy an item.
    ///
    /// # Errors
    /// As `put`, and [`PutError::Full`] when the queue is full.
    #[doc(alias = "try_put")]
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, Some(Instant::now()))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T, GetError> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(GetError::Closed);
        }
        match self.shared.ring.get(deadline, |bytes| multiproc_wire::decode(bytes, Vec::new())) {
            Ok(decoded) => decoded.map_err(GetError::Decode),
            Err(_) => Err(GetError::Empty),
        }
    }

    /// Removes and returns the item at the front of the queue, waiting while it is empty.
    ///
    /// # Errors
    /// [`GetError::Closed`], or [`GetError::Decode`] if the item is not a valid `T`.
    pub fn get(&self) -> Result<T, GetError> {
        self.get_until(None)
    }

    /// As [`get`](Queue::get), waiting at most `timeout` for an item (plus at most 250 ms for
    /// the queue's lock, should another process hold it for a long copy).
    ///
    /// # Errors
    /// As `get`, and [`GetError::Empty`] when the queue stayed empty.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_until(deadline(timeout))
    }

    /// As [`get`](Queue::get) without waiting for an item. It may still wait briefly (at most
    /// 250 ms) for the queue's lock, which others hold only while they copy an item.
    ///
    /// # Errors
    /// As `get`, and [`GetError::Empty`] when the queue is empty.
    #[doc(alias = "try_get")]
    pub fn get_nowait(&self) -> Result<T, GetError> {
        self.get_until(Some(Instant::now()))
    }
}

impl<T> Queue<T> {
    /// The number of items in the queue: exact when nobody else is using it, otherwise a
    /// snapshot that may already be out of date.
    pub fn qsize(&self) -> usize {
        self.shared.ring.len() as usize
    }

    /// Whether the queue is empty (a snapshot, as [`qsize`](Queue::qsize)).
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue holds `maxsize` items (a snapshot; always `false` without a maximum).
    pub fn full(&self) -> bool {
        let max = self.shared.ring.maxsize();
        max != 0 && self.shared.ring.len() >= max
    }

    /// The maximum number of items (`0`: no limit).
    pub fn maxsize(&self) -> usize {
        self.shared.ring.maxsize() as usize
    }

    /// Bytes of the shared buffer.
    pub fn buffer_bytes(&self) -> usize {
        self.shared.ring.capacity() as usize
    }

    /// Closes this handle and its clones in this process: their later `put`s and `get`s fail
    /// with `Closed`. Other processes' handles, and the items in the queue, are unaffected
    /// (CPython's `close`: "no more data will be put on this queue by the current process").
    /// Unlike CPython there is nothing to flush: every item put is already in the queue, so
    /// there is no `join_thread`.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        FormRef { fd: self.shared.ring.fd() }.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shared = open(deserializer, &[Kind::Queue, Kind::Joinable], type_hash::<T>())?;
        Ok(Queue { shared, _item: PhantomData })
    }
}

/// A simpler unbounded queue (CPython's `multiprocessing.SimpleQueue`): `put`, `get`, `empty`,
/// `close`. The same shared ring as [`Queue`], with its guarantees.
///
/// ```
/// use multiproc_queue::SimpleQueue;
///
/// let q = SimpleQueue::new()?;
/// q.put(vec![1, 2, 3])?;
/// assert_eq!(q.get()?, [1, 2, 3]);
/// assert!(q.empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SimpleQueue<T>(Queue<T>);

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue(self.0.clone())
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.0).finish()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// An unbounded queue (see [`Queue::new`]).
    ///
    /// # Errors
    /// The operating system's error creating or mapping the shared memory.
    pub fn new() -> io::Result<SimpleQueue<T>> {
        Queue::create(0, DEFAULT_BUFFER, Kind::Simple).map(SimpleQueue)
    }

    /// Puts `item` at the back of the queue (waits only if the whole buffer is full).
    ///
    /// # Errors
    /// As [`Queue::put`].
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.0.put(item)
    }

    /// Removes and returns the item at the front, waiting while the queue is empty.
    ///
    /// # Errors
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T, GetError> {
        self.0.get()
    }

    /// As [`get`](SimpleQueue::get), waiting at most `timeout` (not in CPython's `SimpleQueue`).
    ///
    /// # Errors
    /// As [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.0.get_timeout(timeout)
    }
}

impl<T> SimpleQueue<T> {
    /// Whether the queue is empty (a snapshot).
    pub fn empty(&self) -> bool {
        self.0.empty()
    }

    /// Closes this handle and its clones in this process (see [`Queue::close`]).
    pub fn close(&self) {
        self.0.close();
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shared = open(deserializer, &[Kind::Simple], type_hash::<T>())?;
        Ok(SimpleQueue(Queue { shared, _item: PhantomData }))
    }
}

/// A [`Queue`] that also counts unfinished items (CPython's `multiprocessing.JoinableQueue`):
/// every `put` adds one, every [`task_done`](JoinableQueue::task_done) removes one, and
/// [`join`](JoinableQueue::join) waits until none is left.
///
/// It dereferences to [`Queue`] for `put`, `get` and the rest, as CPython's class derives
/// from `Queue`.
///
/// ```
/// use multiproc_queue::JoinableQueue;
///
/// let q = JoinableQueue::new()?;
/// q.put(1u32)?;
/// let item = q.get()?;
/// q.task_done()?;
/// q.join();
/// assert!(q.task_done().is_err());
/// # let _ = item;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinableQueue<T>(Queue<T>);

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue(self.0.clone())
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.0).finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.0
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue (see [`Queue::new`]).
    ///
    /// # Errors
    /// The operating system's error creating or mapping the shared memory.
    pub fn new() -> io::Result<JoinableQueue<T>> {
        JoinableQueue::with_buffer(0, DEFAULT_BUFFER)
    }

    /// A joinable queue of at most `maxsize` items (`0`: no limit).
    ///
    /// # Errors
    /// As [`new`](JoinableQueue::new).
    pub fn bounded(maxsize: usize) -> io::Result<JoinableQueue<T>> {
        JoinableQueue::with_buffer(maxsize, DEFAULT_BUFFER)
    }

    /// A joinable queue of at most `maxsize` items in `buffer_bytes` bytes (see
    /// [`Queue::with_buffer`]).
    ///
    /// # Errors
    /// As [`new`](JoinableQueue::new).
    pub fn with_buffer(maxsize: usize, buffer_bytes: usize) -> io::Result<JoinableQueue<T>> {
        Queue::create(maxsize, buffer_bytes, Kind::Joinable).map(JoinableQueue)
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item taken from the queue as processed.
    ///
    /// # Errors
    /// [`TaskDoneError`] if every item put is already marked done.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        self.0.shared.ring.task_done().map_err(|_| TaskDoneError)
    }

    /// Waits until every item put has been marked done with `task_done`. An item whose
    /// consumer died before calling `task_done` stays unfinished: use
    /// [`join_timeout`](JoinableQueue::join_timeout) when consumers may die.
    pub fn join(&self) {
        // Without a deadline the ring cannot time out.
        let _ = self.0.shared.ring.join(None);
    }

    /// As [`join`](JoinableQueue::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`JoinTimeoutError`] if items were still unfinished at the timeout.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        self.0.shared.ring.join(deadline(timeout)).map_err(|_| JoinTimeoutError)
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shared = open(deserializer, &[Kind::Joinable], type_hash::<T>())?;
        Ok(JoinableQueue(Queue { shared, _item: PhantomData }))
    }
}
