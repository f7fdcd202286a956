//! The shared ring every queue is built on: length-prefixed records in a shared mapping, one
//! robust mutex, futex words for "not empty", "not full" and "all done".
//!
//! # Layout
//! The data area holds records `[len: u64 LE][payload][padding to 8 bytes]` between `head` and
//! `tail`. When the ring has wrapped, the live records are `[head, wrap)` then `[0, tail)`.
//! A record is always contiguous. A writer wraps to offset 0 when the record does not fit at
//! the end, or early, once `tail` passes the *soft end* (8 MiB, or a quarter of a smaller
//! ring) while the consumers are close behind and the record fits before `head`: a steady
//! stream then cycles through the first few MiB only, while a backlog or a huge record can
//! still use the whole (sparse) capacity. When a wrapped ring has no room left before `head`
//! but room after `wrap`, the writer moves the records at `[0, tail)` to `wrap` (one copy of at
//! most the soft end, rare), making the live records one run again instead of blocking. When
//! the queue becomes empty, head and tail go back to 0; memory touched beyond the soft end is
//! punched out of the file once no record lives there.
//!
//! # Robustness
//! The state (head, tail, wrap, count, unfinished) exists twice in the header; `cur` names the
//! valid copy. Every change writes the other copy, then flips `cur` with one atomic store: that
//! store publishes it. A record's bytes are copied before the flip, so a process killed at any
//! point while holding the mutex leaves either the old state (its partial record is free space
//! again) or the new one, never a mix; the next locker is told by the robust mutex and has
//! nothing to repair.

use std::io;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use crate::sys::{Guard, Header, Mapping, StateSlot, WakeWord, futex_wait, futex_wake_all, multicore};

/// `wrap` value of a ring that has not wrapped.
const NO_WRAP: u64 = u64::MAX;
/// Bytes of a record's length prefix.
const PREFIX: u64 = 8;
/// A stream wraps early once its tail passes this offset, or a quarter of the capacity if
/// that is less (see the module docs).
const SOFT_END: u64 = 8 << 20;
/// Memory touched this far beyond the soft end is punched out once no record lives there.
const PUNCH_SLACK: u64 = 4 << 20;
/// How long a `get` on an empty queue (or a `put` on a full one) watches the ring before
/// sleeping in the kernel: a wake-up costs ≈20 µs between cores, a peer often acts sooner.
const SPIN: Duration = Duration::from_micros(30);
/// How long past its deadline a call may wait for the mutex (see `Ring::lock`).
const LOCK_GRACE: Duration = Duration::from_millis(250);
/// Identifies a queue's memory.
pub(crate) const MAGIC: u64 = 0x6d70_7175_6575_6501;

/// What kind of queue a ring belongs to (checked when a handle is received).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Queue = 1,
    Simple = 2,
    Joinable = 3,
}

/// One consistent copy of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    head: u64,
    tail: u64,
    wrap: u64,
    count: u64,
    unfinished: u64,
}

/// Where a record goes (see `Ring::place`).
#[derive(Debug, Clone, Copy)]
struct Placement {
    at: u64,
    next: State,
    relocate: Option<(u64, u64, u64)>,
}

/// The failure of a ring operation; the queue types turn it into their error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    /// The deadline passed with the queue still full (put) or empty (get) or unfinished (join).
    Timeout,
    /// The record can never fit in the ring.
    TooLarge { capacity: u64 },
    /// `task_done` with no unfinished task.
    NothingUnfinished,
}

/// A process's handle on a ring.
#[derive(Debug)]
pub(crate) struct Ring {
    map: Mapping,
    capacity: u64,
    maxsize: u64,
    soft_end: u64,
}

fn record_size(len: usize) -> u64 {
    PREFIX + (len as u64).next_multiple_of(8)
}

impl Ring {
    /// A new ring of `capacity` data bytes holding at most `maxsize` records (0: no limit).
    pub(crate) fn create(capacity: usize, maxsize: usize, kind: Kind, type_hash: u64) -> io::Result<Ring> {
        let capacity = capacity.next_multiple_of(8);
        let map = Mapping::create(capacity)?;
        let h = map.header();
        for slot in &h.state {
            slot.wrap.store(NO_WRAP, Relaxed);
        }
        h.capacity.store(capacity as u64, Relaxed);
        h.maxsize.store(maxsize as u64, Relaxed);
        h.kind.store(kind as u64, Relaxed);
        h.type_hash.store(type_hash, Relaxed);
        h.magic.store(MAGIC, Release);
        Ok(Ring::with_map(map))
    }

    /// A handle on a ring received from another process, checked against `kinds` and `type_hash`.
    pub(crate) fn open(fd: std::os::fd::OwnedFd, kinds: &[Kind], type_hash: u64) -> io::Result<Ring> {
        let map = Mapping::open(fd)?;
        let h = map.header();
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("received queue: {what}"));
        if h.magic.load(Acquire) != MAGIC {
            return Err(bad("not a queue's memory"));
        }
        if !kinds.iter().any(|&kind| h.kind.load(Relaxed) == kind as u64) {
            return Err(bad("another kind of queue"));
        }
        if h.type_hash.load(Relaxed) != type_hash {
            return Err(bad("the item type differs"));
        }
        if h.capacity.load(Relaxed) > map.data_len() as u64 {
            return Err(bad("capacity beyond the memory"));
        }
        Ok(Ring::with_map(map))
    }

    fn with_map(map: Mapping) -> Ring {
        let h = map.header();
        let capacity = h.capacity.load(Relaxed);
        let maxsize = h.maxsize.load(Relaxed);
        Ring { capacity, maxsize, soft_end: SOFT_END.min(capacity / 4), map }
    }

    /// The memory file behind the ring.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.map.fd()
    }

    /// The maximum number of items (0: no limit).
    pub(crate) fn maxsize(&self) -> u64 {
        self.maxsize
    }

    /// Data bytes of the ring.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    fn header(&self) -> &Header {
        self.map.header()
    }

    /// Locks the mutex. A call's deadline bounds the wait for an item, room or completion;
    /// the mutex itself is held only for copies, so waiting for it may run up to `LOCK_GRACE`
    /// past the deadline (a non-blocking `get` on a non-empty queue does not fail just because
    /// another process is copying a large item).
    fn lock(&self, deadline: Option<Instant>) -> Option<Guard<'_>> {
        self.map.lock(deadline.map(|d| d.max(Instant::now() + LOCK_GRACE)))
    }

    fn slot(&self, index: u32) -> &StateSlot {
        &self.header().state[(index & 1) as usize]
    }

    fn load(&self, _guard: &Guard<'_>) -> State {
        let s = self.slot(self.header().cur.load(Relaxed));
        State {
            head: s.head.load(Relaxed),
            tail: s.tail.load(Relaxed),
            wrap: s.wrap.load(Relaxed),
            count: s.count.load(Relaxed),
            unfinished: s.unfinished.load(Relaxed),
        }
    }

    /// Publishes `state`: writes the spare copy, then flips `cur` (the commit point).
    fn commit(&self, _guard: &Guard<'_>, state: State) {
        let h = self.header();
        let next = h.cur.load(Relaxed) ^ 1;
        let s = self.slot(next);
        s.head.store(state.head, Relaxed);
        s.tail.store(state.tail, Relaxed);
        s.wrap.store(state.wrap, Relaxed);
        s.count.store(state.count, Relaxed);
        s.unfinished.store(state.unfinished, Relaxed);
        h.cur.store(next, Release);
    }

    /// Items in the queue, read without the lock (exact when nothing else is running).
    pub(crate) fn len(&self) -> u64 {
        self.slot(self.header().cur.load(Acquire)).count.load(Relaxed)
    }

    /// Where a record of `size` bytes goes, and the state after it, if it fits now; with a
    /// block of records to move first (`from`, `to`, `len`), see `put`.
    fn place(&self, s: State, size: u64) -> Option<Placement> {
        if self.maxsize != 0 && s.count >= self.maxsize {
            return None;
        }
        let mut next = State { count: s.count + 1, unfinished: s.unfinished + 1, ..s };
        let mut relocate = None;
        let at = if s.count == 0 {
            next.head = 0;
            next.tail = size;
            next.wrap = NO_WRAP;
            0
        } else if s.wrap == NO_WRAP {
            let linear = s.tail + size <= self.capacity;
            // Wrap early only when the consumers are close behind, so that the room left
            // before `head` is large (at least 3/4 of the soft end).
            let early = s.tail >= self.soft_end && s.tail - s.head <= self.soft_end / 4;
            if size <= s.head && (early || !linear) {
                next.wrap = s.tail;
                next.tail = size;
                0
            } else if linear {
                next.tail = s.tail + size;
                s.tail
            } else {
                return None;
            }
        } else if s.tail + size <= s.head {
            next.tail = s.tail + size;
            s.tail
        } else if s.wrap + s.tail + size <= self.capacity {
            // No room before `head`, but room after `wrap`: move the records at [0, tail) to
            // [wrap, wrap + tail), so the live records are one run [head, wrap + tail) again
            // and the ring can grow to its capacity instead of blocking.
            relocate = Some((0, s.wrap, s.tail));
            next.wrap = NO_WRAP;
            next.tail = s.wrap + s.tail + size;
            s.wrap + s.tail
        } else {
            return None;
        };
        Some(Placement { at, next, relocate })
    }

    /// Sleeps on `word` (the guard's mutex released meanwhile) until woken or `deadline`;
    /// returns the mutex locked again and whether the deadline passed.
    ///
    /// A sleeper counts itself in `waiters`; a waker bumps `seq` and sets `waiters` to 0 (it
    /// wakes them all), so while a woken sleeper is still on its way back to the mutex, other
    /// wakers make no system call. A sleeper that finds `seq` unchanged (it timed out) takes
    /// itself out of the count. All of this happens under the mutex, so no wake-up is lost.
    fn park<'a>(&'a self, guard: Guard<'a>, word: &WakeWord, deadline: Option<Instant>) -> (Guard<'a>, bool) {
        word.waiters.fetch_add(1, Relaxed);
        let seq = word.seq.load(Relaxed);
        drop(guard);
        let woken = futex_wait(&word.seq, seq, deadline);
        let guard = self.lock(None).expect("no deadline");
        if word.seq.load(Relaxed) == seq {
            word.waiters.fetch_sub(1, Relaxed);
        }
        (guard, !woken)
    }

    /// Under the mutex: if anyone sleeps on `word`, bumps it and clears the count of sleepers;
    /// the caller wakes them after unlocking (so they do not wake into a held mutex).
    fn signal(word: &WakeWord) -> bool {
        if word.waiters.load(Relaxed) == 0 {
            return false;
        }
        word.seq.fetch_add(1, Relaxed);
        word.waiters.store(0, Relaxed);
        true
    }

    /// Spins up to `SPIN` (or `deadline`) until `ready()`; false on one CPU.
    fn spin(deadline: Option<Instant>, ready: impl Fn() -> bool) -> bool {
        if !multicore() {
            return false;
        }
        let start = Instant::now();
        let end = deadline.map_or(start + SPIN, |d| d.min(start + SPIN));
        loop {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            if ready() {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
        }
    }

    /// Appends one record holding `bytes`, waiting for room until `deadline` (`None`: forever;
    /// `Some(now)`: not at all).
    pub(crate) fn put(&self, bytes: &[u8], deadline: Option<Instant>) -> Result<(), Fail> {
        let size = record_size(bytes.len());
        if size > self.capacity {
            return Err(Fail::TooLarge { capacity: self.capacity });
        }
        let h = self.header();
        let mut guard = self.lock(deadline).ok_or(Fail::Timeout)?;
        let mut spun = false;
        loop {
            let s = self.load(&guard);
            if let Some(Placement { at, next, relocate }) = self.place(s, size) {
                // Record the furthest byte ever written before writing it, for `punch`.
                let end = at + size;
                if end > h.high_water.load(Relaxed) {
                    h.high_water.store(end, Relaxed);
                }
                if let Some((from, to, len)) = relocate {
                    self.map.copy_within(&guard, from as usize, to as usize, len as usize);
                }
                self.map.write(&guard, at as usize, &(bytes.len() as u64).to_le_bytes());
                self.map.write(&guard, (at + PREFIX) as usize, bytes);
                self.commit(&guard, next);
                let wake = Ring::signal(&h.not_empty);
                drop(guard);
                if wake {
                    futex_wake_all(&h.not_empty.seq);
                }
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Fail::Timeout);
            }
            if !spun {
                spun = true;
                drop(guard);
                let maxsize = self.maxsize;
                Ring::spin(deadline, || maxsize != 0 && self.len() < maxsize);
                guard = self.lock(deadline).ok_or(Fail::Timeout)?;
                continue;
            }
            let (g, timed_out) = self.park(guard, &h.not_full, deadline);
            guard = g;
            if timed_out {
                // One last look: room may have appeared just at the deadline.
                let s = self.load(&guard);
                if self.place(s, size).is_none() {
                    return Err(Fail::Timeout);
                }
            }
        }
    }

    /// Removes the oldest record, waiting until `deadline`, and returns `f` of its bytes.
    ///
    /// The record is removed (the new state published) before `f` runs, and `f` runs with the
    /// mutex held, reading the bytes in place: no copy, and a panic in `f` cannot leave the
    /// record in the queue for the next consumer to trip over.
    pub(crate) fn get<R>(&self, deadline: Option<Instant>, f: impl FnOnce(&[u8]) -> R) -> Result<R, Fail> {
        let h = self.header();
        let mut guard = self.lock(deadline).ok_or(Fail::Timeout)?;
        let mut spun = false;
        loop {
            let s = self.load(&guard);
            if s.count > 0 {
                let len = u64::from_le_bytes(
                    self.map.view(&guard, s.head as usize, 8).try_into().expect("8 bytes"),
                );
                let size = len.checked_add(7).map(|l| PREFIX + l / 8 * 8);
                let end = size.and_then(|size| s.head.checked_add(size));
                let limit = if s.wrap == NO_WRAP { s.tail } else { s.wrap };
                let end = match end {
                    Some(end) if end <= limit => end,
                    _ => panic!("queue memory corrupted: record of {len} bytes at {} beyond {limit}", s.head),
                };
                let mut next = State { head: end, count: s.count - 1, ..s };
                if next.count == 0 {
                    next = State { head: 0, tail: 0, wrap: NO_WRAP, ..next };
                } else if s.wrap != NO_WRAP && end == s.wrap {
                    next.head = 0;
                    next.wrap = NO_WRAP;
                }
                self.commit(&guard, next);
                let wake = Ring::signal(&h.not_full);
                // Writers need the mutex, so the bytes stay intact until the guard goes.
                let result = f(self.map.view(&guard, (s.head + PREFIX) as usize, len as usize));
                self.release_memory(&guard, next);
                drop(guard);
                if wake {
                    futex_wake_all(&h.not_full.seq);
                }
                return Ok(result);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Fail::Timeout);
            }
            if !spun {
                spun = true;
                drop(guard);
                Ring::spin(deadline, || self.len() > 0);
                guard = self.lock(deadline).ok_or(Fail::Timeout)?;
                continue;
            }
            let (g, timed_out) = self.park(guard, &h.not_empty, deadline);
            guard = g;
            if timed_out && self.load(&guard).count == 0 {
                return Err(Fail::Timeout);
            }
        }
    }

    /// Punches out memory touched beyond the soft end once no record lives there.
    fn release_memory(&self, guard: &Guard<'_>, s: State) {
        let h = self.header();
        let high = h.high_water.load(Relaxed);
        if high <= self.soft_end + PUNCH_SLACK {
            return;
        }
        let live_end = if s.count == 0 {
            0
        } else if s.wrap != NO_WRAP {
            s.wrap
        } else {
            s.tail
        };
        if live_end <= self.soft_end {
            self.map.punch(guard, self.soft_end as usize, high as usize);
            h.high_water.store(self.soft_end, Relaxed);
        }
    }

    /// Marks one item done (`JoinableQueue::task_done`).
    pub(crate) fn task_done(&self) -> Result<(), Fail> {
        let h = self.header();
        let guard = self.lock(None).expect("no deadline");
        let s = self.load(&guard);
        if s.unfinished == 0 {
            return Err(Fail::NothingUnfinished);
        }
        let next = State { unfinished: s.unfinished - 1, ..s };
        self.commit(&guard, next);
        let wake = next.unfinished == 0 && Ring::signal(&h.all_done);
        drop(guard);
        if wake {
            futex_wake_all(&h.all_done.seq);
        }
        Ok(())
    }

    /// Waits until every item put has been marked done.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<(), Fail> {
        let h = self.header();
        let mut guard = self.lock(deadline).ok_or(Fail::Timeout)?;
        loop {
            if self.load(&guard).unfinished == 0 {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Fail::Timeout);
            }
            let (g, timed_out) = self.park(guard, &h.all_done, deadline);
            guard = g;
            if timed_out && self.load(&guard).unfinished != 0 {
                return Err(Fail::Timeout);
            }
        }
    }
}
