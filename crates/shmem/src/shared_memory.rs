//! `SharedMemory`: named POSIX shared memory for processes that share nothing else.

use std::ffi::CString;
use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, Segment};
use crate::tracker;

/// The prefix of the names [`SharedMemory::create`] chooses: `mp-<pid>-<16 random hex digits>`,
/// `<pid>` being the creator's process id (`/dev/shm/mp-1234-0123456789abcdef`).
pub const NAME_PREFIX: &str = "mp-";

/// The longest name a segment may have (`NAME_MAX` less the leading slash).
const MAX_NAME: usize = 254;

/// A named block of shared memory (CPython's `multiprocessing.shared_memory.SharedMemory`): a
/// POSIX shared memory object (`/dev/shm/<name>`) that unrelated processes attach to by name.
///
/// Only the creator removes the name: by default when its handle is dropped (or
/// [`close`](SharedMemory::close)d), or explicitly with [`unlink`](SharedMemory::unlink). Attaching
/// never schedules a removal (CPython's gh-82300), so a process that attaches, uses and drops a
/// segment leaves it for the others. Memory stays mapped in each process until its handle goes,
/// even after the name is removed.
///
/// ```
/// use multiproc_shmem::SharedMemory;
///
/// let shm = SharedMemory::create(4096)?;
/// shm.write(0, b"hello");
///
/// // Another process would do this with the name:
/// let other = SharedMemory::attach(shm.name())?;
/// assert_eq!(other.size(), 4096);
/// let mut buf = [0u8; 5];
/// other.read(0, &mut buf);
/// assert_eq!(&buf, b"hello");
/// drop(other); // an attached handle does not remove the name
/// assert!(SharedMemory::attach(shm.name()).is_ok());
/// drop(shm); // the creator's does
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
///
/// When the process that should remove a name ends without doing it (it is killed, or exits
/// without dropping the handle), a tracker process removes it, as CPython's resource tracker
/// does: the first segment a process creates starts the tracker, a fresh exec of the same
/// executable. For memory shared only with child processes, prefer [`RawArray`](crate::RawArray)
/// or [`Array`](crate::Array): they have no name at all. (The tracker is a child process of the
/// creator that ends soon after it: a program that waits for *all* its children, with
/// `waitpid(-1)`, would wait for it too.)
///
/// Any process with access to the name can change the segment's size; a segment shrunk under
/// a mapping makes accesses past its new end fail with `SIGBUS`. Share names only with
/// processes you trust.
pub struct SharedMemory {
    seg: Segment,
    name: String,
    creator: bool,
    unlink_on_drop: bool,
    unlinked: AtomicBool,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size())
            .field("creator", &self.creator)
            .field("unlink_on_drop", &self.unlink_on_drop)
            .finish()
    }
}

/// The system name (`/name`) of the segment `name` (given with or without its slash).
fn system_name(name: &str) -> Result<(String, CString)> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let invalid = |why: &str| {
        Error::new(ErrorKind::InvalidInput, format!("invalid shared memory name {name:?}: {why}"))
    };
    if bare.is_empty() {
        return Err(invalid("empty"));
    }
    if bare.len() > MAX_NAME {
        return Err(invalid("longer than 254 bytes"));
    }
    if bare.contains('/') || bare == "." || bare == ".." {
        return Err(invalid("it must not contain '/' after the first character"));
    }
    let system = CString::new(format!("/{bare}")).map_err(|_| invalid("it contains a NUL byte"))?;
    Ok((bare.to_owned(), system))
}

/// A fresh random name: [`NAME_PREFIX`], the creator's process id, 64 random bits
/// (`mp-1234-0123456789abcdef`).
fn random_name() -> Result<String> {
    let mut bytes = [0u8; 8];
    sys::getrandom(&mut bytes).map_err(|e| Error::io("cannot choose a random shared memory name", e))?;
    Ok(format!("{NAME_PREFIX}{}-{:016x}", sys::getpid(), u64::from_ne_bytes(bytes)))
}

impl SharedMemory {
    /// Creates a segment of `size` bytes (zero-filled) under a new random name (see
    /// [`NAME_PREFIX`]).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a size of 0; the system's refusal.
    pub fn create(size: usize) -> Result<SharedMemory> {
        // 64 random bits: a collision is all but impossible, and retried if it happens.
        for _ in 0..16 {
            match SharedMemory::create_named(&random_name()?, size) {
                Err(err) if err.is_already_exists() => continue,
                other => return other,
            }
        }
        Err(Error::new(ErrorKind::AlreadyExists, "cannot find a free shared memory name"))
    }

    /// Creates a segment of `size` bytes (zero-filled) named `name` (with or without a leading
    /// `/`).
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when the name is taken; [`ErrorKind::InvalidInput`] for a
    /// size of 0 or an invalid name; the system's refusal.
    pub fn create_named(name: &str, size: usize) -> Result<SharedMemory> {
        let (bare, system) = system_name(name)?;
        if size == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, "a shared memory segment cannot have size 0"));
        }
        let fd = sys::shm_open(&system, true).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Error::new(ErrorKind::AlreadyExists, format!("shared memory segment {bare} already exists"))
            }
            _ => Error::io(format!("cannot create shared memory segment {bare}"), e),
        })?;
        let mapped = sys::ftruncate(std::os::fd::AsFd::as_fd(&fd), size).and_then(|()| Segment::named(fd));
        match mapped {
            Ok(seg) => {
                tracker::register(&bare);
                Ok(SharedMemory {
                    seg,
                    name: bare,
                    creator: true,
                    unlink_on_drop: true,
                    unlinked: AtomicBool::new(false),
                })
            }
            Err(e) => {
                let _ = sys::shm_unlink(&system);
                Err(Error::io(format!("cannot size shared memory segment {bare} to {size} bytes"), e))
            }
        }
    }

    /// Attaches to the existing segment `name` (with or without a leading `/`); its size is the
    /// segment's. Dropping the handle does not remove the name.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when no segment has that name; [`ErrorKind::InvalidInput`] for
    /// an invalid name or a segment of size 0; the system's refusal.
    pub fn attach(name: &str) -> Result<SharedMemory> {
        let (bare, system) = system_name(name)?;
        let fd = sys::shm_open(&system, false).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::new(ErrorKind::NotFound, format!("no shared memory segment named {bare}"))
            }
            _ => Error::io(format!("cannot open shared memory segment {bare}"), e),
        })?;
        SharedMemory::attached(fd, bare)
    }

    fn attached(fd: OwnedFd, name: String) -> Result<SharedMemory> {
        let seg = Segment::named(fd)
            .map_err(|e| Error::io(format!("cannot map shared memory segment {name}"), e))?;
        Ok(SharedMemory {
            seg,
            name,
            creator: false,
            unlink_on_drop: false,
            unlinked: AtomicBool::new(false),
        })
    }

    /// The name, without the leading `/` (as CPython gives it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size in bytes.
    pub fn size(&self) -> usize {
        self.seg.len()
    }

    /// The bytes (CPython's `buf`), as atomics: other processes may write them at any moment,
    /// so only atomic access is sound.
    pub fn buf(&self) -> &[AtomicU8] {
        self.seg.bytes()
    }

    /// Copies bytes from `offset` into `out`.
    ///
    /// # Panics
    /// If the range is outside the segment.
    pub fn read(&self, offset: usize, out: &mut [u8]) {
        let end = offset.checked_add(out.len()).filter(|&end| end <= self.size());
        let end = end.unwrap_or_else(|| {
            panic!("read of {} bytes at {offset} outside {} bytes", out.len(), self.size())
        });
        for (dst, src) in out.iter_mut().zip(&self.buf()[offset..end]) {
            *dst = src.load(Ordering::Relaxed);
        }
    }

    /// Copies `bytes` into the segment from `offset` on.
    ///
    /// # Panics
    /// If the range is outside the segment.
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        let end = offset.checked_add(bytes.len()).filter(|&end| end <= self.size());
        let end = end.unwrap_or_else(|| {
            panic!("write of {} bytes at {offset} outside {} bytes", bytes.len(), self.size())
        });
        for (dst, src) in self.buf()[offset..end].iter().zip(bytes) {
            dst.store(*src, Ordering::Relaxed);
        }
    }

    /// A copy of the whole segment.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.size()];
        self.read(0, &mut out);
        out
    }

    /// The address of the first byte, valid while `self` lives, for code that coordinates its
    /// own access (through a [`Lock`](crate::Lock), say) and wants to avoid copies. Reading or
    /// writing through it is `unsafe`, and sound only while no other thread or process writes
    /// the same bytes.
    pub fn as_ptr(&self) -> *mut u8 {
        self.seg.as_ptr()
    }

    /// Whether this handle created the segment.
    pub fn is_creator(&self) -> bool {
        self.creator
    }

    /// Whether dropping this handle removes the name (by default: for the creator only).
    pub fn unlinks_on_drop(&self) -> bool {
        self.unlink_on_drop
    }

    /// Chooses whether dropping this handle removes the name: `false` lets a creator leave the
    /// segment to other processes (one of which then calls [`unlink`](SharedMemory::unlink)).
    pub fn set_unlink_on_drop(&mut self, unlink: bool) {
        if unlink != self.unlink_on_drop && !self.unlinked.load(Ordering::Relaxed) {
            if unlink { tracker::register(&self.name) } else { tracker::unregister(&self.name) }
        }
        self.unlink_on_drop = unlink;
    }

    /// Removes the name now: no process can attach any more, and the memory goes when the last
    /// mapping does. Any handle may do it (CPython's `unlink()`).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when the name is already gone.
    pub fn unlink(&self) -> Result<()> {
        let (_, system) = system_name(&self.name)?;
        if !self.unlinked.swap(true, Ordering::Relaxed) && self.unlink_on_drop {
            tracker::unregister(&self.name);
        }
        sys::shm_unlink(&system).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::new(
                ErrorKind::NotFound,
                format!("shared memory segment {} is already unlinked", self.name),
            ),
            _ => Error::io(format!("cannot unlink shared memory segment {}", self.name), e),
        })
    }

    /// Unmaps the segment in this process (CPython's `close()`), and removes the name if this
    /// handle [unlinks on drop](SharedMemory::unlinks_on_drop), reporting an error dropping
    /// would ignore.
    ///
    /// # Errors
    /// As [`unlink`](SharedMemory::unlink), except that a name already gone is not an error.
    pub fn close(mut self) -> Result<()> {
        let result = if self.unlink_on_drop && !self.unlinked.load(Ordering::Relaxed) {
            match self.unlink() {
                Err(err) if err.is_not_found() => Ok(()),
                other => other,
            }
        } else {
            Ok(())
        };
        self.unlink_on_drop = false;
        result
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.unlink_on_drop && !self.unlinked.load(Ordering::Relaxed) {
            let _ = self.unlink();
        }
    }
}

impl Serialize for SharedMemory {
    /// A segment travels as its name and its descriptor: the receiver maps the same memory
    /// (even if the name is removed meanwhile) and is not its creator.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            name: &'a str,
            #[serde(with = "multiproc_wire::fd_serde")]
            fd: std::os::fd::BorrowedFd<'a>,
        }
        Wire { name: &self.name, fd: self.seg.fd() }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<SharedMemory, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            name: String,
            #[serde(with = "multiproc_wire::fd_serde")]
            fd: OwnedFd,
        }
        let wire = Wire::deserialize(deserializer)?;
        let (bare, _) = system_name(&wire.name).map_err(D::Error::custom)?;
        SharedMemory::attached(wire.fd, bare).map_err(D::Error::custom)
    }
}
