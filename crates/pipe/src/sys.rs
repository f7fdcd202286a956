//! The system calls of this crate that need `unsafe`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Once;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};

use multiproc_wire::sys::{SharedMap, cvt_retry};

/// Fills `buf` with random bytes from the kernel (`getrandom`).
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is writable for its length.
        let n = cvt_retry(|| unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) })?;
        filled += n as usize;
    }
    Ok(())
}

/// The socket type of `fd` (`SO_TYPE`) and its address family (`SO_DOMAIN`), or `None` when
/// it is not a socket.
pub(crate) fn socket_domain(fd: BorrowedFd<'_>) -> Option<i32> {
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `domain` is writable for `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (ret == 0).then_some(domain)
}

// --------------------------------------------------------------------------- shared rings

/// The control words at the start of a connection's shared memory (see `ring.rs`). Only
/// atomics: valid for any bit pattern another process may have written.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) id: IdLine,
    pub(crate) rings: [RingHeader; 2],
}

/// What identifies a connection's memory.
#[repr(C, align(64))]
pub(crate) struct IdLine {
    pub(crate) magic: AtomicU64,
    pub(crate) capacity: AtomicU64,
}

/// The control words of one direction.
#[repr(C)]
pub(crate) struct RingHeader {
    pub(crate) producer: ProducerLine,
    pub(crate) consumer: ConsumerLine,
    pub(crate) flags: FlagLine,
}

/// Written by the sending side.
#[repr(C, align(64))]
pub(crate) struct ProducerLine {
    /// Bytes ever published.
    pub(crate) tail: AtomicU64,
    /// 0, or the pid of the process sending (with `LOCK_CONTENDED` when others wait).
    pub(crate) lock: AtomicU32,
    /// Set for good when a sender died with its message partly published.
    pub(crate) broken: AtomicU32,
    /// Where the message being sent starts and ends, and whether its descriptor record was
    /// (maybe) sent: what a sender that takes over from a dead one checks.
    pub(crate) msg_start: AtomicU64,
    pub(crate) msg_end: AtomicU64,
    pub(crate) msg_fds: AtomicU32,
}

/// Written by the receiving side.
#[repr(C, align(64))]
pub(crate) struct ConsumerLine {
    /// Bytes ever consumed.
    pub(crate) head: AtomicU64,
}

/// Written by whichever side goes to sleep, cleared by the side that wakes it.
#[repr(C, align(64))]
pub(crate) struct FlagLine {
    pub(crate) reader_waiting: AtomicU32,
    pub(crate) writer_waiting: AtomicU32,
}

/// Where the data areas start: one page after the header.
pub(crate) const DATA_START: usize = 4096;
const _: () = assert!(std::mem::size_of::<Header>() <= DATA_START);

/// A connection's shared memory: the header page, then the data areas.
#[derive(Debug)]
pub(crate) struct Mapping {
    map: SharedMap,
}

impl Mapping {
    /// A fresh memory file of `len` bytes (at least the header page), mapped.
    pub(crate) fn create(len: usize) -> io::Result<Mapping> {
        Ok(Mapping { map: SharedMap::create(c"multiproc-pipe", len.max(DATA_START))? })
    }

    /// Maps a memory file received from another process, whole.
    pub(crate) fn open(fd: OwnedFd) -> io::Result<Mapping> {
        Ok(Mapping { map: SharedMap::open(fd, DATA_START)? })
    }

    /// The memory file, for passing the connection to another process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    /// The mapping's length.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The header page.
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the mapping is at least DATA_START bytes (checked when made), page aligned
        // (so aligned for Header), lives as long as `self`, and Header holds only atomics,
        // valid for any bit pattern.
        unsafe { &*self.map.base().as_ptr().cast::<Header>() }
    }

    /// The address of byte `offset` of a range of `len` bytes in the data areas.
    ///
    /// # Panics
    /// When the range is outside the data areas.
    fn data(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(offset >= DATA_START && offset.checked_add(len).is_some_and(|end| end <= self.len()));
        // SAFETY: `offset` is inside the mapping (checked above).
        unsafe { self.map.base().as_ptr().add(offset) }
    }

    /// Copies `src` into the mapping at `offset`.
    ///
    /// # Panics
    /// When the range is outside the data areas.
    pub(crate) fn write(&self, offset: usize, src: &[u8]) {
        let dst = self.data(offset, src.len());
        // SAFETY: the range is inside the mapping and past the header (checked by `data`), so
        // no reference covers it; the ring protocol gives these bytes to this writer alone
        // until it publishes them. A peer breaking the protocol can only change byte values.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
    }

    /// Copies bytes of the mapping at `offset` into `dst`.
    ///
    /// # Panics
    /// When the range is outside the data areas.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) {
        let src = self.data(offset, dst.len());
        // SAFETY: as for `write`: inside the mapping, past the header, published to this reader
        // by the ring protocol; `dst` is a distinct, writable Rust buffer.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
    }

    /// Appends `len` bytes of the mapping at `offset` to `buf`, without zeroing its new room
    /// first.
    ///
    /// # Panics
    /// When the range is outside the data areas.
    pub(crate) fn read_append(&self, offset: usize, len: usize, buf: &mut Vec<u8>) {
        let src = self.data(offset, len);
        buf.reserve(len);
        // SAFETY: the source range is inside the mapping, past the header (as for `read`); the
        // destination is the spare capacity of `buf`, reserved above for `len` bytes and
        // distinct from the mapping; after the copy those bytes are initialised, so the length
        // may cover them.
        unsafe {
            std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr().add(buf.len()), len);
            buf.set_len(buf.len() + len);
        }
    }
}

/// This process's id, cached (`getpid` is a system call); the cache is cleared in the child
/// of a `fork`.
pub(crate) fn current_pid() -> u32 {
    static PID: AtomicU32 = AtomicU32::new(0);
    static AT_FORK: Once = Once::new();
    extern "C" fn forget() {
        PID.store(0, Relaxed);
    }
    let pid = PID.load(Relaxed);
    if pid != 0 {
        return pid;
    }
    AT_FORK.call_once(|| {
        // SAFETY: the child handler only stores to an atomic (async-signal-safe); registering
        // cannot fail but for lack of memory, when the cache is merely never cleared.
        unsafe { libc::pthread_atfork(None, None, Some(forget)) };
    });
    let pid = std::process::id();
    PID.store(pid, Relaxed);
    pid
}

/// Whether process `pid` is alive: it exists (`kill(pid, 0)`; a process of another user
/// counts) and has not exited (a zombie, not yet reaped by its parent, is dead).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 checks only for existence; nothing is delivered.
    let exists =
        unsafe { libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH) };
    if !exists {
        return false;
    }
    // The state follows the command name, which ends with the last ')'.
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.iter().rposition(|&b| b == b')').and_then(|end| stat.get(end + 2));
            !matches!(state, Some(b'Z' | b'X'))
        }
        Err(err) => err.kind() != io::ErrorKind::NotFound,
    }
}
