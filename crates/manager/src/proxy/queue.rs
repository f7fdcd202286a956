//! Proxies of queues in the server: `Queue` and `JoinableQueue`.
//!
//! A blocked `get` or `put` waits in the server on a thread of its own: other calls of the same
//! process (another thread's `put`) go on meanwhile.
//!
//! A process killed while it waits in `get` takes no item, and an item whose reply cannot be
//! delivered (the connection broke as it was sent) goes back to the front of the queue, for
//! the next `get`. CPython's server takes the item for the dead process and loses it. An item
//! that reached a process before it died is gone with it, as with any queue.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::time::Duration;

use multiproc_wire::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{AnyProxy, type_ids, typed_proxy};
use crate::error::Result;
use crate::protocol::{Wait, decode_value, encode_value};

/// The methods both queue proxies share.
macro_rules! queue_methods {
    () => {
        /// Puts `item`, waiting for room as long as it takes (`q.put(item)`).
        ///
        /// The item is encoded here, in the caller: an encoding error is returned and nothing
        /// is queued.
        ///
        /// # Errors
        /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected),
        /// [`ErrorKind::Codec`](crate::ErrorKind::Codec) (this holds for every method).
        pub fn put<Q: Serialize + ?Sized>(&self, item: &Q) -> Result<()>
        where
            T: Borrow<Q>,
        {
            self.put_wait(item, Wait::Forever)
        }

        /// Puts `item`, waiting at most `timeout` for room (`q.put(item, timeout=t)`).
        ///
        /// # Errors
        /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when the queue stayed full.
        pub fn put_timeout<Q: Serialize + ?Sized>(&self, item: &Q, timeout: Duration) -> Result<()>
        where
            T: Borrow<Q>,
        {
            self.put_wait(item, Wait::For(timeout))
        }

        /// Puts `item` if there is room now (`q.put_nowait(item)`).
        ///
        /// # Errors
        /// [`ErrorKind::Full`](crate::ErrorKind::Full).
        pub fn try_put<Q: Serialize + ?Sized>(&self, item: &Q) -> Result<()>
        where
            T: Borrow<Q>,
        {
            self.put_wait(item, Wait::Now)
        }

        fn put_wait<Q: Serialize + ?Sized>(&self, item: &Q, wait: Wait) -> Result<()> {
            self.proxy.call_waiting("put", &(encode_value(item)?, wait), wait)
        }

        /// Takes the next item, waiting as long as it takes (`q.get()`).
        ///
        /// # Errors
        /// See [`put`](Self::put).
        pub fn get(&self) -> Result<T> {
            self.get_wait(Wait::Forever)
        }

        /// Takes the next item, waiting at most `timeout` (`q.get(timeout=t)`).
        ///
        /// # Errors
        /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when no item came.
        pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
            self.get_wait(Wait::For(timeout))
        }

        /// Takes the next item if there is one now (`q.get_nowait()`).
        ///
        /// # Errors
        /// [`ErrorKind::Empty`](crate::ErrorKind::Empty).
        pub fn try_get(&self) -> Result<T> {
            self.get_wait(Wait::Now)
        }

        fn get_wait(&self, wait: Wait) -> Result<T> {
            let item: Bytes = self.proxy.call_waiting("get", &wait, wait)?;
            decode_value(&item.0)
        }

        /// The number of items queued (`q.qsize()`).
        ///
        /// # Errors
        /// See [`put`](Self::put).
        pub fn len(&self) -> Result<usize> {
            self.proxy.call::<_, u64>("len", &()).map(|n| n as usize)
        }

        /// Whether no item is queued (`q.empty()`).
        ///
        /// # Errors
        /// See [`put`](Self::put).
        pub fn is_empty(&self) -> Result<bool> {
            Ok(self.len()? == 0)
        }

        /// Whether a bounded queue is full (`q.full()`).
        ///
        /// # Errors
        /// See [`put`](Self::put).
        pub fn is_full(&self) -> Result<bool> {
            self.proxy.call("is_full", &())
        }

        /// The bound given when the queue was made, `None` for an unbounded queue.
        ///
        /// # Errors
        /// See [`put`](Self::put).
        pub fn capacity(&self) -> Result<Option<usize>> {
            self.proxy.call::<_, Option<u64>>("capacity", &()).map(|n| n.map(|n| n as usize))
        }
    };
}

/// A proxy of a queue in the server (CPython's `manager.Queue()`, a `queue.Queue`): FIFO,
/// unbounded or bounded.
///
/// ```no_run
/// use std::time::Duration;
///
/// let manager = multiproc_manager::Manager::start()?;
/// let q = manager.queue::<String>()?;
/// q.put("job")?;
/// assert_eq!(q.get_timeout(Duration::from_secs(1))?, "job");
/// assert_eq!(q.try_get().unwrap_err().kind(), multiproc_manager::ErrorKind::Empty);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
pub struct QueueProxy<T> {
    proxy: AnyProxy,
    types: PhantomData<fn() -> T>,
}

typed_proxy!(QueueProxy<T>, type_ids::QUEUE);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    queue_methods!();
}

/// A proxy of a joinable queue in the server (CPython's `manager.JoinableQueue()`): a queue
/// that counts unfinished items, so that a producer can wait until consumers have handled
/// every item.
pub struct JoinableQueueProxy<T> {
    proxy: AnyProxy,
    types: PhantomData<fn() -> T>,
}

typed_proxy!(JoinableQueueProxy<T>, type_ids::JOINABLE_QUEUE);

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    queue_methods!();

    /// Tells the queue that an item taken earlier has been handled (`q.task_done()`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidValue`](crate::ErrorKind::InvalidValue) when called more often than
    /// items were put.
    pub fn task_done(&self) -> Result<()> {
        self.proxy.call("task_done", &())
    }

    /// Waits until every item put has been handled (`q.join()`).
    ///
    /// # Errors
    /// See [`put`](Self::put).
    pub fn join(&self) -> Result<()> {
        self.proxy.call_waiting::<_, bool>("join", &Wait::Forever, Wait::Forever).map(drop)
    }

    /// Waits at most `timeout` until every item put has been handled; returns whether they
    /// were.
    ///
    /// # Errors
    /// See [`put`](Self::put).
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        let wait = Wait::For(timeout);
        self.proxy.call_waiting("join", &wait, wait)
    }
}
