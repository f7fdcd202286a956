use std::fmt;
use std::io;

/// What went wrong, as returned by [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No shared memory segment has the name given.
    NotFound,
    /// A shared memory segment with the name given exists already.
    AlreadyExists,
    /// An argument is not acceptable: a size of 0, a name that is not a valid segment name, a
    /// barrier of 0 parties.
    InvalidInput,
    /// The operating system refused (see [`std::error::Error::source`]): out of memory or
    /// descriptors, permissions.
    Io,
}

/// An error from creating or attaching shared memory or a synchronisation primitive.
///
/// Match on [`kind`](Error::kind).
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<io::Error>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), source: None }
    }

    /// An operating-system error: its kind follows the errno (`ENOENT` is
    /// [`ErrorKind::NotFound`], `EEXIST` [`ErrorKind::AlreadyExists`], `EINVAL`
    /// [`ErrorKind::InvalidInput`]).
    pub(crate) fn io(message: impl Into<String>, err: io::Error) -> Error {
        let kind = match err.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            _ => ErrorKind::Io,
        };
        Error { kind, message: message.into(), source: Some(err) }
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether this is [`ErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Whether this is [`ErrorKind::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        self.kind == ErrorKind::AlreadyExists
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match err.kind {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
            ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
            ErrorKind::Io => err.source.as_ref().map_or(io::ErrorKind::Other, io::Error::kind),
        };
        io::Error::new(kind, err)
    }
}

/// A shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The lock was acquired, but its previous owner (a thread, in this process or another) died
/// while holding it, so the data it guards may be half-updated. Like std's
/// [`PoisonError`](std::sync::PoisonError), it carries what the call would have returned: the
/// guard, or the value read.
///
/// Only the first acquirer after the death is told; the lock is usable again at once.
///
/// ```no_run
/// use multiproc_shmem::{Lock, OwnerDied};
///
/// let lock = Lock::new()?;
/// // ... a child process dies while holding `lock` ...
/// let guard = lock.acquire().unwrap_or_else(|died: OwnerDied<_>| {
///     eprintln!("the previous holder died; repairing the shared state");
///     died.into_inner()
/// });
/// # drop(guard);
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
pub struct OwnerDied<T> {
    inner: T,
}

impl<T> OwnerDied<T> {
    pub(crate) fn new(inner: T) -> OwnerDied<T> {
        OwnerDied { inner }
    }

    /// What the call would have returned had the owner not died.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// A reference to what the call returned.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// A mutable reference to what the call returned.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> OwnerDied<U> {
        OwnerDied { inner: f(self.inner) }
    }
}

impl<T> fmt::Debug for OwnerDied<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for OwnerDied<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous owner of the lock died while holding it")
    }
}

impl<T> std::error::Error for OwnerDied<T> {}

/// The result of acquiring a lock: `Err` carries the guard (or value) when the previous owner
/// died holding the lock (see [`OwnerDied`]).
pub type LockResult<T> = std::result::Result<T, OwnerDied<T>>;

/// Why a `try_` acquisition did not give the lock cleanly.
pub enum TryLockError<T> {
    /// The lock was acquired; its previous owner died holding it.
    OwnerDied(OwnerDied<T>),
    /// The lock is held by another thread (of this process or another), or, for a [`Lock`],
    /// by the calling thread itself.
    ///
    /// [`Lock`]: crate::Lock
    WouldBlock,
}

/// Why a `_timeout` acquisition did not give the lock cleanly.
pub enum LockTimeoutError<T> {
    /// The lock was acquired; its previous owner died holding it.
    OwnerDied(OwnerDied<T>),
    /// The timeout passed while another thread held the lock.
    Timeout,
}

impl<T> LockTimeoutError<T> {
    /// Whether this is [`LockTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, LockTimeoutError::Timeout)
    }
}

impl<T> From<OwnerDied<T>> for TryLockError<T> {
    fn from(died: OwnerDied<T>) -> TryLockError<T> {
        TryLockError::OwnerDied(died)
    }
}

impl<T> From<OwnerDied<T>> for LockTimeoutError<T> {
    fn from(died: OwnerDied<T>) -> LockTimeoutError<T> {
        LockTimeoutError::OwnerDied(died)
    }
}

impl<T> fmt::Debug for TryLockError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::OwnerDied(died) => f.debug_tuple("OwnerDied").field(died).finish(),
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
        }
    }
}

impl<T> fmt::Debug for LockTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::OwnerDied(died) => f.debug_tuple("OwnerDied").field(died).finish(),
            LockTimeoutError::Timeout => f.write_str("Timeout"),
        }
    }
}

impl<T> fmt::Display for TryLockError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::OwnerDied(died) => died.fmt(f),
            TryLockError::WouldBlock => f.write_str("the lock is held"),
        }
    }
}

impl<T> fmt::Display for LockTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::OwnerDied(died) => died.fmt(f),
            LockTimeoutError::Timeout => f.write_str("timed out waiting for the lock"),
        }
    }
}

impl<T> std::error::Error for TryLockError<T> {}

impl<T> std::error::Error for LockTimeoutError<T> {}

/// [`RLock::release`](crate::RLock::release) was called by a thread that does not hold the
/// lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOwner;

impl fmt::Display for NotOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot release a lock the calling thread does not hold")
    }
}

impl std::error::Error for NotOwner {}

/// A [`BoundedSemaphore`](crate::BoundedSemaphore) was released above its initial value (or a
/// [`Semaphore`](crate::Semaphore) above the largest value it can hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseError;

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("semaphore released too many times")
    }
}

impl std::error::Error for ReleaseError {}

/// Why [`Barrier::wait`](crate::Barrier::wait) did not pass the barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarrierError {
    /// The barrier is broken: aborted, reset while this party waited, or timed out in
    /// another party (CPython's `BrokenBarrierError`).
    Broken,
    /// This party's timeout passed; the barrier is now broken for everyone.
    Timeout,
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Broken => f.write_str("barrier is broken"),
            BarrierError::Timeout => f.write_str("timed out waiting at the barrier, which is now broken"),
        }
    }
}

impl std::error::Error for BarrierError {}
