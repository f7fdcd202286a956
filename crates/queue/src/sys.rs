//! Every system call and raw-memory access of the crate: the shared mapping, the robust
//! process-shared mutex in it, futex waits and wakes, copies in and out of the ring, and hole
//! punching.

use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use multiproc_wire::sys::SharedMap;

unsafe extern "C" {
    /// glibc 2.30+: `pthread_mutex_timedlock` against `CLOCK_MONOTONIC`, so that a change of
    /// the wall clock neither stretches nor cuts a timeout. The `libc` crate does not declare it.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// Size of the header page that precedes the ring's data.
pub(crate) const HEADER_SIZE: usize = 4096;

/// A futex word with the number of threads (in any process) sleeping on it.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct WakeWord {
    /// Bumped (under the mutex) before each wake-up.
    pub(crate) seq: AtomicU32,
    /// Threads registered (under the mutex) as about to sleep or sleeping on `seq`.
    pub(crate) waiters: AtomicU32,
}

/// One copy of the queue's state (see `ring.rs`: two copies and an index make each update a
/// single atomic store).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct StateSlot {
    pub(crate) head: AtomicU64,
    pub(crate) tail: AtomicU64,
    pub(crate) wrap: AtomicU64,
    pub(crate) count: AtomicU64,
    pub(crate) unfinished: AtomicU64,
}

/// The header page at the start of the shared mapping. Every field is an atomic or the pthread
/// mutex (behind `UnsafeCell`), so references to it are sound while other processes write it.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Header {
    // First cache line: what every put and get touches.
    pub(crate) mutex: RawMutex,
    pub(crate) cur: AtomicU32,
    pub(crate) not_empty: WakeWord,
    pub(crate) not_full: WakeWord,
    pub(crate) state: [StateSlot; 2],
    pub(crate) all_done: WakeWord,
    pub(crate) high_water: AtomicU64,
    // Set once by the creator, before the memory is shared.
    pub(crate) magic: AtomicU64,
    pub(crate) type_hash: AtomicU64,
    pub(crate) capacity: AtomicU64,
    pub(crate) maxsize: AtomicU64,
    pub(crate) kind: AtomicU64,
}

const _: () = assert!(size_of::<Header>() <= HEADER_SIZE);

/// A pthread mutex in shared memory: process-shared, robust (the next locker after an owner's
/// death is told, with `EOWNERDEAD`) and error-checking (relocking from the owner thread, as
/// an item's `Deserialize` using the same queue would, panics with `EDEADLK` instead of hanging).
#[repr(C)]
pub(crate) struct RawMutex(UnsafeCell<libc::pthread_mutex_t>);

impl std::fmt::Debug for RawMutex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawMutex")
    }
}

// SAFETY: a process-shared pthread mutex is made to be operated on concurrently by every thread
// of every process that maps it, and this type touches it only through pthread functions (and
// an atomic read of its lock word).
unsafe impl Sync for RawMutex {}

/// How a lock attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// The caller holds the mutex.
    Yes,
    /// The caller holds the mutex; its previous owner died holding it (already made consistent).
    OwnerDied,
    /// The deadline passed first.
    TimedOut,
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(ret)) }
}

impl RawMutex {
    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.0.get()
    }

    /// Initialises the mutex as process-shared and robust. Only for fresh memory that no other
    /// thread or process can reach yet.
    fn init(&self) -> io::Result<()> {
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is writable; pthread_mutexattr_init initialises it.
        check(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
        let attr_ptr = attr.as_mut_ptr();
        // SAFETY: `attr` is initialised; the mutex memory is fresh (the caller created the
        // mapping and has not shared it), so initialising it races with nothing.
        let result = unsafe {
            check(libc::pthread_mutexattr_setpshared(attr_ptr, libc::PTHREAD_PROCESS_SHARED))
                .and_then(|()| check(libc::pthread_mutexattr_setrobust(attr_ptr, libc::PTHREAD_MUTEX_ROBUST)))
                .and_then(|()| {
                    check(libc::pthread_mutexattr_settype(attr_ptr, libc::PTHREAD_MUTEX_ERRORCHECK))
                })
                .and_then(|()| check(libc::pthread_mutex_init(self.raw(), attr_ptr)))
        };
        // SAFETY: `attr` is initialised and no longer used.
        unsafe { libc::pthread_mutexattr_destroy(attr_ptr) };
        result
    }

    /// glibc's lock word (the first `int` of `pthread_mutex_t`: the owner's thread id, 0 when
    /// free), read to spin without writing the cache line.
    fn lock_word(&self) -> &AtomicI32 {
        // SAFETY: glibc's pthread_mutex_t starts with its futex word, an aligned int that glibc
        // and the kernel access only atomically; reading it atomically is sound.
        unsafe { &*self.raw().cast::<AtomicI32>() }
    }

    fn trylock(&self) -> libc::c_int {
        // SAFETY: the mutex was initialised by the queue's creator and lives in a mapping that
        // the caller keeps alive; pthread functions are made for concurrent calls on it.
        unsafe { libc::pthread_mutex_trylock(self.raw()) }
    }

    /// Locks, waiting until `deadline` (forever for `None`). Spins briefly on a busy mutex
    /// first: holders release within a microsecond or so, a sleep costs a ≈20 µs wake-up.
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Locked {
        let mut ret = self.trylock();
        if ret == libc::EBUSY && multicore() {
            for round in 0..100u32 {
                for _ in 0..(1u32 << round.min(4)) {
                    std::hint::spin_loop();
                }
                if self.lock_word().load(Ordering::Relaxed) == 0 {
                    ret = self.trylock();
                    if ret != libc::EBUSY {
                        break;
                    }
                }
            }
        }
        if ret == libc::EBUSY {
            ret = match deadline {
                // SAFETY: as for trylock; `ts` is a valid absolute time for the call.
                Some(deadline) => unsafe {
                    let ts = monotonic_timespec(deadline);
                    pthread_mutex_clocklock(self.raw(), libc::CLOCK_MONOTONIC, &ts)
                },
                // SAFETY: as for trylock.
                None => unsafe { libc::pthread_mutex_lock(self.raw()) },
            };
        }
        match ret {
            0 => Locked::Yes,
            libc::EOWNERDEAD => {
                // SAFETY: as for trylock; the caller owns the mutex after EOWNERDEAD.
                let ret = unsafe { libc::pthread_mutex_consistent(self.raw()) };
                assert_eq!(ret, 0, "pthread_mutex_consistent: {}", io::Error::from_raw_os_error(ret));
                Locked::OwnerDied
            }
            libc::ETIMEDOUT => Locked::TimedOut,
            other => panic!("queue mutex failed: {}", io::Error::from_raw_os_error(other)),
        }
    }

    /// Unlocks; the caller holds the mutex.
    pub(crate) fn unlock(&self) {
        // SAFETY: as for trylock; only the owner thread calls this (the ring's guard is !Send).
        let ret = unsafe { libc::pthread_mutex_unlock(self.raw()) };
        debug_assert_eq!(ret, 0, "pthread_mutex_unlock: {}", io::Error::from_raw_os_error(ret));
    }
}

pub(crate) use multiproc_wire::sys::{futex_wait, monotonic_timespec, multicore};

/// Wakes every thread sleeping on `word`, in any process.
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    multiproc_wire::sys::futex_wake(word, u32::MAX);
}

/// The shared memory of one queue: a `memfd` mapped `MAP_SHARED`, a [`Header`] page followed
/// by the ring's data bytes. Unmapped when dropped.
#[derive(Debug)]
pub(crate) struct Mapping {
    map: SharedMap,
}

impl Mapping {
    /// A fresh anonymous mapping of `HEADER_SIZE + capacity` bytes (sparse: pages cost memory
    /// only once touched), with its mutex initialised.
    pub(crate) fn create(capacity: usize) -> io::Result<Mapping> {
        let len =
            HEADER_SIZE.checked_add(capacity).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let map = Mapping { map: SharedMap::create(c"multiproc-queue", len)? };
        map.header().mutex.init()?;
        Ok(map)
    }

    /// Maps a queue's memory received from another process.
    pub(crate) fn open(fd: OwnedFd) -> io::Result<Mapping> {
        Ok(Mapping { map: SharedMap::open(fd, HEADER_SIZE)? })
    }

    /// The memory file, for passing the queue to another process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    /// Bytes available to the ring after the header.
    pub(crate) fn data_len(&self) -> usize {
        self.map.len() - HEADER_SIZE
    }

    /// The header page.
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_SIZE bytes, page aligned (so aligned for
        // Header), lives as long as `self`, and Header holds only atomics and a pthread mutex
        // (interior mutability), valid for any bit pattern another process may have written.
        unsafe { &*self.map.base().as_ptr().cast::<Header>() }
    }

    /// Locks the mutex until `deadline` (forever for `None`); `None` if the deadline passed.
    /// A previous owner that died holding it is reported by the robust mutex and needs no
    /// repair (see `ring.rs`).
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Option<Guard<'_>> {
        match self.header().mutex.lock(deadline) {
            Locked::Yes | Locked::OwnerDied => Some(Guard { map: self, _not_send: PhantomData }),
            Locked::TimedOut => None,
        }
    }

    fn check(&self, guard: &Guard<'_>, at: usize, len: usize) -> usize {
        assert!(ptr::eq(guard.map, self), "guard of another mapping");
        assert!(at.checked_add(len).is_some_and(|end| end <= self.data_len()), "ring access out of bounds");
        HEADER_SIZE + at
    }

    /// Copies `src` to data offset `at`.
    ///
    /// # Panics
    /// If the range is outside the data area.
    pub(crate) fn write(&self, guard: &Guard<'_>, at: usize, src: &[u8]) {
        let at = self.check(guard, at, src.len());
        // SAFETY: the destination lies inside the mapping (checked) and the caller holds the
        // mutex (the guard), without which nobody reads or writes data bytes; a raw copy
        // creates no reference to them.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), self.map.base().as_ptr().add(at), src.len()) };
    }

    /// The data bytes `[at, at + len)`, borrowed while the mutex is held.
    ///
    /// # Panics
    /// If the range is outside the data area.
    pub(crate) fn view<'g>(&self, guard: &'g Guard<'_>, at: usize, len: usize) -> &'g [u8] {
        let at = self.check(guard, at, len);
        // SAFETY: the range lies inside the mapping (checked), which outlives the guard (it
        // borrows the mapping); the slice lives no longer than the guard, and while the mutex
        // is held nobody writes data bytes (every writer holds it), so the bytes cannot change
        // under the reference. Any bit pattern is a valid u8.
        unsafe { std::slice::from_raw_parts(self.map.base().as_ptr().add(at), len) }
    }

    /// Copies `len` data bytes from offset `from` to offset `to`.
    ///
    /// # Panics
    /// If a range is outside the data area or they overlap.
    pub(crate) fn copy_within(&self, guard: &Guard<'_>, from: usize, to: usize, len: usize) {
        let src = self.check(guard, from, len);
        let dst = self.check(guard, to, len);
        assert!(from + len <= to || to + len <= from, "overlapping ring move");
        let base = self.map.base().as_ptr();
        // SAFETY: both ranges lie inside the mapping and do not overlap (checked); the caller
        // holds the mutex, so nobody else touches data bytes meanwhile.
        unsafe { ptr::copy_nonoverlapping(base.add(src), base.add(dst), len) };
    }

    /// Gives the memory of data bytes `[from, to)` (rounded inwards to pages) back to the
    /// system; they read as zeros afterwards.
    pub(crate) fn punch(&self, _guard: &Guard<'_>, from: usize, to: usize) {
        let page = 4096;
        let start = (HEADER_SIZE + from).next_multiple_of(page);
        let end = (HEADER_SIZE + to.min(self.data_len())) / page * page;
        if end > start {
            // SAFETY: `fd` is the open memfd behind the mapping; punching a hole changes only
            // file contents (free ring space), never the mapping.
            let _ = unsafe {
                libc::fallocate(
                    self.map.fd().as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    start as libc::off_t,
                    (end - start) as libc::off_t,
                )
            };
        }
    }
}

/// Proof that the calling thread holds the mapping's mutex; unlocks it when dropped. Every
/// access to the data bytes takes one: all writers hold the mutex, so bytes read under it
/// cannot change, and bytes written under it are seen by nobody else until it is released.
/// Not `Send`: a pthread mutex is unlocked by its owner thread.
#[derive(Debug)]
pub(crate) struct Guard<'a> {
    map: &'a Mapping,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.map.header().mutex.unlock();
    }
}
