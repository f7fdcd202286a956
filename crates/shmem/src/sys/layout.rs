//! The layouts of the process-shared state of the synchronisation primitives: `#[repr(C)]`
//! structures of atomics, one place for every byte that several processes interpret.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64};

use super::segment::Cell;

/// Who holds an [`RLock`](crate::RLock) and how many times. Written only by the holder of the
/// lock's mutex.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct RLockState {
    /// The owner thread's [`thread_token`](super::thread_token); 0 when free.
    pub(crate) owner: AtomicU64,
    /// The owner's process id, for display.
    pub(crate) pid: AtomicI32,
    /// The owner's thread id, for display.
    pub(crate) tid: AtomicI32,
    /// The recursion level.
    pub(crate) count: AtomicU32,
}

/// A semaphore: its value and a count of sleepers (so that a release makes a system call only
/// when someone sleeps).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct SemState {
    /// The value; the futex word sleepers wait on.
    pub(crate) value: AtomicU32,
    /// Threads sleeping (or about to) in `acquire`.
    pub(crate) waiters: AtomicU32,
    /// The largest value a release may reach.
    pub(crate) max: AtomicU32,
}

/// An event: its flag (the futex word) and a count of sleepers.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct EventState {
    /// 1 when set, 0 when clear.
    pub(crate) flag: AtomicU32,
    /// Threads sleeping (or about to) in `wait`.
    pub(crate) waiters: AtomicU32,
}

/// A condition variable: a sequence number bumped by every notification (the futex word), and
/// a count of sleepers.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct CondState {
    /// Bumped by every notification.
    pub(crate) seq: AtomicU32,
    /// Threads sleeping (or about to) in `wait`.
    pub(crate) waiters: AtomicU32,
}

/// A barrier. Every field but `seq` is read and written only under the barrier's mutex.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct BarrierState {
    /// The number of parties, fixed at creation.
    pub(crate) parties: AtomicU32,
    /// Parties arrived in the current cycle.
    pub(crate) count: AtomicU32,
    /// 1 while broken.
    pub(crate) broken: AtomicU32,
    /// Cycles completed.
    pub(crate) completed: AtomicU32,
    /// Aborts, resets and timeouts, each of which breaks the current cycle.
    pub(crate) breaks: AtomicU32,
    /// Bumped by every event that wakes the waiters (the futex word).
    pub(crate) seq: AtomicU32,
    /// How many waiter slots follow the barrier's slot mutexes (see `Barrier`).
    pub(crate) slots: AtomicU32,
    /// When a waiter last looked for dead waiters (`CLOCK_MONOTONIC` nanoseconds).
    pub(crate) last_check: AtomicU64,
}

/// The round a barrier's waiter slot was taken in: the barrier's `completed` and `breaks`
/// counts then, side by side. Written by the slot's holder under the barrier's mutex.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct SlotRound(pub(crate) AtomicU64);

// SAFETY: a repr(C) structure of atomics, valid for every bit pattern, mutated only
// atomically; the same holds for the four below.
unsafe impl Cell for RLockState {}
// SAFETY: as above.
unsafe impl Cell for SemState {}
// SAFETY: as above.
unsafe impl Cell for EventState {}
// SAFETY: as above.
unsafe impl Cell for CondState {}
// SAFETY: as above.
unsafe impl Cell for BarrierState {}
// SAFETY: as above.
unsafe impl Cell for SlotRound {}
