//! The process-shared robust mutex every lock of this crate is built on, and `Held`, the proof
//! that the calling thread holds one.

use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Instant;

use super::segment::{Cell, CellId, InitToken, Shared};
use super::{Wait, Wake, futex_wait, monotonic_timespec};

unsafe extern "C" {
    /// glibc 2.30+: `pthread_mutex_timedlock` against a chosen clock (here `CLOCK_MONOTONIC`,
    /// so that a change of the wall clock does not stretch or cut a timeout). The `libc` crate
    /// does not declare it.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// A pthread mutex in shared memory: process-shared, robust (when its owner thread dies, the
/// next locker is told, with `EOWNERDEAD`), and error-checking (relocking from the owner thread
/// fails with `EDEADLK` instead of hanging, unlocking from another thread fails with `EPERM`).
#[repr(C)]
pub(crate) struct RawMutex(UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a process-shared pthread mutex is made to be operated on concurrently by every thread
// of every process that maps it, and this type touches it only through pthread functions.
unsafe impl Sync for RawMutex {}

/// `Ok` for 0, else the error number as an `io::Error` (pthread functions return it).
fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(ret)) }
}

// SAFETY: pthread_mutex_t is plain bytes (any bit pattern is a value: a zeroed one is a default
// mutex, garbage at worst a misbehaving one, never undefined behaviour in this process's Rust
// code), and it is only mutated through pthread calls on `&RawMutex`, which are made for
// concurrent use.
unsafe impl Cell for RawMutex {
    fn init(&self, _fresh: &InitToken) -> io::Result<()> {
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is writable; pthread_mutexattr_init initialises it.
        check(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
        let attr_ptr = attr.as_mut_ptr();
        // SAFETY: `attr` was initialised above and is destroyed once, after its last use; the
        // mutex memory is fresh (the token proves that no thread or process uses it yet), so
        // initialising it races with nothing.
        let result = unsafe {
            check(libc::pthread_mutexattr_setpshared(attr_ptr, libc::PTHREAD_PROCESS_SHARED))
                .and_then(|()| check(libc::pthread_mutexattr_setrobust(attr_ptr, libc::PTHREAD_MUTEX_ROBUST)))
                .and_then(|()| {
                    check(libc::pthread_mutexattr_settype(attr_ptr, libc::PTHREAD_MUTEX_ERRORCHECK))
                })
                .and_then(|()| check(libc::pthread_mutex_init(self.0.get(), attr_ptr)))
        };
        // SAFETY: `attr` is initialised and no longer used.
        unsafe { libc::pthread_mutexattr_destroy(attr_ptr) };
        result
    }
}

impl RawMutex {
    fn trylock(&self) -> libc::c_int {
        // SAFETY: the mutex lives in a mapping kept alive by the caller's Shared; pthread
        // functions are made for concurrent calls on a process-shared mutex.
        unsafe { libc::pthread_mutex_trylock(self.0.get()) }
    }

    fn lock_forever(&self) -> libc::c_int {
        // SAFETY: as for trylock.
        unsafe { libc::pthread_mutex_lock(self.0.get()) }
    }

    fn lock_until(&self, deadline: Instant) -> libc::c_int {
        let ts = monotonic_timespec(deadline);
        // SAFETY: as for trylock; `ts` is a valid absolute time for the duration of the call.
        unsafe { pthread_mutex_clocklock(self.0.get(), libc::CLOCK_MONOTONIC, &ts) }
    }

    fn unlock(&self) -> libc::c_int {
        // SAFETY: as for trylock; an error-checking mutex refuses (EPERM) to be unlocked by a
        // thread that does not own it.
        unsafe { libc::pthread_mutex_unlock(self.0.get()) }
    }

    fn make_consistent(&self) {
        // SAFETY: as for trylock; called by the owner right after EOWNERDEAD.
        let ret = unsafe { libc::pthread_mutex_consistent(self.0.get()) };
        assert_eq!(ret, 0, "pthread_mutex_consistent failed: {}", io::Error::from_raw_os_error(ret));
    }

    /// The mutex's lock word (glibc's `__data.__lock`, the first `int` of `pthread_mutex_t`:
    /// the owner's thread id, 0 when free), read to spin without writing the cache line.
    fn lock_word(&self) -> &AtomicI32 {
        // SAFETY: glibc's pthread_mutex_t starts with its futex word, an aligned int that
        // glibc and the kernel only access atomically; reading it atomically is sound.
        unsafe { &*self.0.get().cast::<AtomicI32>() }
    }
}

/// How many times a contended lock is retried before the thread sleeps in the kernel: the
/// holder usually releases within a microsecond, and a wake-up through the kernel costs about
/// 20 µs between cores. No spinning on a single CPU, where it would only delay the holder.
fn spin_rounds() -> u32 {
    if super::multicore() { 100 } else { 0 }
}

/// What a lock attempt gave.
#[derive(Debug)]
pub(crate) enum Acquire {
    /// The calling thread holds the mutex.
    Locked(Held),
    /// The calling thread holds the mutex; its previous owner died holding it (the mutex has
    /// been made consistent again).
    OwnerDied(Held),
    /// Another thread holds it (and the deadline, if any, passed).
    Busy,
    /// The calling thread already holds it.
    Deadlock,
}

impl Shared<RawMutex> {
    /// Locks the mutex, waiting as `wait` allows.
    ///
    /// # Panics
    /// If pthread reports an error that only a corrupted mutex can give.
    pub(crate) fn lock(&self, wait: Wait) -> Acquire {
        let mutex: &RawMutex = self;
        let mut ret = mutex.trylock();
        if ret == libc::EBUSY && wait != Wait::No {
            for round in 0..spin_rounds() {
                for _ in 0..(1u32 << round.min(4)) {
                    std::hint::spin_loop();
                }
                if mutex.lock_word().load(Ordering::Relaxed) == 0 {
                    ret = mutex.trylock();
                    if ret != libc::EBUSY {
                        break;
                    }
                }
            }
            if ret == libc::EBUSY {
                ret = match wait {
                    Wait::Until(deadline) => mutex.lock_until(deadline),
                    _ => mutex.lock_forever(),
                };
            }
        }
        match ret {
            0 => Acquire::Locked(Held::new(self.clone())),
            libc::EOWNERDEAD => {
                mutex.make_consistent();
                Acquire::OwnerDied(Held::new(self.clone()))
            }
            libc::EBUSY | libc::ETIMEDOUT => Acquire::Busy,
            libc::EDEADLK => Acquire::Deadlock,
            other => panic!("process-shared mutex failed: {}", io::Error::from_raw_os_error(other)),
        }
    }
}

/// Whose a mutex is, as [`Shared::<RawMutex>::probe`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Nobody holds it.
    Free,
    /// Another live thread holds it.
    Held,
    /// The calling thread holds it.
    Mine,
    /// Its owner died holding it (it is free and consistent again now).
    OwnerDied,
}

impl Shared<RawMutex> {
    /// Finds out who holds the mutex without waiting, and leaves it as it was (a mutex whose
    /// owner died is made consistent and left free).
    ///
    /// # Panics
    /// If pthread reports an error that only a corrupted mutex can give.
    pub(crate) fn probe(&self) -> Probe {
        let mutex: &RawMutex = self;
        let (probe, ret) = match mutex.trylock() {
            0 => (Probe::Free, mutex.unlock()),
            libc::EOWNERDEAD => {
                mutex.make_consistent();
                (Probe::OwnerDied, mutex.unlock())
            }
            libc::EBUSY => (Probe::Held, 0),
            libc::EDEADLK => (Probe::Mine, 0),
            other => (Probe::Held, other),
        };
        assert_eq!(ret, 0, "probing a process-shared mutex failed: {}", io::Error::from_raw_os_error(ret));
        probe
    }
}

/// Proof that the calling thread holds a [`RawMutex`]; unlocks it when dropped.
///
/// It is neither `Send` nor `Sync` (a pthread mutex is unlocked by its owner thread), and it
/// keeps the mutex's segment mapped: a `Held` that is leaked (`mem::forget`) leaks the mapping
/// too, so the thread's robust list (which glibc and the kernel walk through the mutex's
/// memory) never points into unmapped or reused memory.
#[derive(Debug)]
pub(crate) struct Held {
    mutex: Shared<RawMutex>,
    _not_send: PhantomData<*const ()>,
}

impl Held {
    fn new(mutex: Shared<RawMutex>) -> Held {
        Held { mutex, _not_send: PhantomData }
    }

    /// The held mutex's identity.
    pub(crate) fn id(&self) -> CellId {
        self.mutex.id()
    }

    /// Unlocks the mutex, sleeps while `word` holds `expected` (until woken or `deadline`),
    /// and locks the mutex again (without deadline). Returns how the sleep ended and whether
    /// the mutex's owner died meanwhile. The caller reads `expected` while holding the mutex,
    /// and wakers change `word` while holding it, so no wake-up is lost.
    pub(crate) fn park(
        &mut self,
        word: &AtomicU32,
        expected: u32,
        deadline: Option<Instant>,
    ) -> (Wake, bool) {
        let mutex: &RawMutex = &self.mutex;
        let ret = mutex.unlock();
        assert_eq!(ret, 0, "unlocking a held mutex failed: {}", io::Error::from_raw_os_error(ret));
        let wake = futex_wait(word, expected, deadline);
        let died = match mutex.lock_forever() {
            0 => false,
            libc::EOWNERDEAD => {
                mutex.make_consistent();
                true
            }
            other => {
                panic!("relocking a process-shared mutex failed: {}", io::Error::from_raw_os_error(other))
            }
        };
        (wake, died)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Only the owner thread can hold a `Held` (it is not Send); EPERM (not the owner, as in
        // a forked child that inherited a copy) leaves the mutex alone.
        self.mutex.unlock();
    }
}
