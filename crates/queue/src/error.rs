use std::error::Error;
use std::fmt;

/// Why a `put` failed; holds the item, which was not enqueued.
///
/// Blocking [`put`](crate::Queue::put) fails only with `Closed`, `Encode` or `TooLarge`; the
/// timed and non-blocking forms also with `Full`.
#[non_exhaustive]
pub enum PutError<T> {
    /// The queue stayed full (CPython's `queue.Full`): every slot taken (`maxsize`), or not
    /// enough free bytes in its buffer, until the timeout.
    Full(T),
    /// [`close`](crate::Queue::close) was called on this handle.
    Closed(T),
    /// The item could not be serialized (or holds file descriptors, which a queue cannot
    /// carry). Nothing was enqueued; the queue is unaffected.
    Encode {
        /// The item.
        item: T,
        /// The serializer's error.
        error: multiproc_wire::Error,
    },
    /// The serialized item is larger than the queue's whole buffer, so it can never fit.
    TooLarge {
        /// The item.
        item: T,
        /// Its serialized size in bytes.
        size: usize,
        /// The queue's buffer size in bytes.
        capacity: usize,
    },
}

impl<T> PutError<T> {
    /// The item that was not enqueued.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(item) | PutError::Closed(item) => item,
            PutError::Encode { item, .. } | PutError::TooLarge { item, .. } => item,
        }
    }

    /// Whether the queue was full (the timed and non-blocking forms).
    pub fn is_full(&self) -> bool {
        matches!(self, PutError::Full(_))
    }

    /// Whether the handle was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, PutError::Closed(_))
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Encode { error, .. } => {
                f.debug_struct("Encode").field("error", error).finish_non_exhaustive()
            }
            PutError::TooLarge { size, capacity, .. } => f
                .debug_struct("TooLarge")
                .field("size", size)
                .field("capacity", capacity)
                .finish_non_exhaustive(),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("queue is full"),
            PutError::Closed(_) => f.write_str("queue is closed"),
            PutError::Encode { .. } => f.write_str("cannot serialize the item"),
            PutError::TooLarge { size, capacity, .. } => {
                write!(f, "item of {size} bytes exceeds the queue's buffer of {capacity} bytes")
            }
        }
    }
}

impl<T> Error for PutError<T> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PutError::Encode { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Why a `get` failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum GetError {
    /// The queue stayed empty until the timeout (CPython's `queue.Empty`).
    Empty,
    /// [`close`](crate::Queue::close) was called on this handle.
    Closed,
    /// An item was taken from the queue but could not be deserialized as `T`; it is lost.
    Decode(multiproc_wire::Error),
}

impl GetError {
    /// Whether the queue was empty (the timed and non-blocking forms).
    pub fn is_empty(&self) -> bool {
        matches!(self, GetError::Empty)
    }

    /// Whether the handle was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, GetError::Closed)
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("queue is empty"),
            GetError::Closed => f.write_str("queue is closed"),
            GetError::Decode(_) => f.write_str("cannot deserialize the item"),
        }
    }
}

impl Error for GetError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            GetError::Decode(error) => Some(error),
            _ => None,
        }
    }
}

/// [`task_done`](crate::JoinableQueue::task_done) was called more times than items were put
/// (CPython raises `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskDoneError;

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done called more times than items were put")
    }
}

impl Error for TaskDoneError {}

/// [`join_timeout`](crate::JoinableQueue::join_timeout) timed out with items still unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinTimeoutError;

impl fmt::Display for JoinTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for unfinished tasks")
    }
}

impl Error for JoinTimeoutError {}
