//! `Barrier`: a process-shared meeting point for a fixed number of parties.

use std::fmt;
use std::mem;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{BarrierError, Error, ErrorKind, Result};
use crate::lock::new_mutex;
use crate::segment::{self, Kind, PlaceIn, PlaceOut, bad_place, deserialize_tagged, serialize_tagged};
use crate::sys::{self, Acquire, BarrierState, Held, Probe, RawMutex, Shared, SlotRound, Wait, Wake};

/// At most this many waiter slots per barrier (twice the parties that can wait at once, so
/// that a party of the last round that has not woken yet does not hold up the next round).
const MAX_SLOTS: usize = 8192;
/// Where a slot's round lies after its mutex.
const ROUND_AT: usize = mem::size_of::<RawMutex>().next_multiple_of(mem::align_of::<SlotRound>());
/// Bytes from one waiter slot to the next.
const STRIDE: usize = (ROUND_AT + mem::size_of::<SlotRound>()).next_multiple_of(mem::align_of::<RawMutex>());
/// How often waiting parties look for parties that died waiting (one of them at a time).
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// A process-shared barrier (CPython's `multiprocessing.Barrier`): each of `parties` threads,
/// of any processes, calls [`wait`](Barrier::wait), and all of them go on once the last one
/// arrives. Then the barrier is ready for the next round.
///
/// ```
/// use multiproc_shmem::Barrier;
///
/// let barrier = Barrier::new(2)?;
/// let other = barrier.clone();
/// let t = std::thread::spawn(move || other.wait().unwrap());
/// let mine = barrier.wait().unwrap();
/// let theirs = t.join().unwrap();
/// assert_eq!(mine + theirs, 1, "arrival indexes 0 and 1");
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
///
/// The barrier breaks (every waiter, and every later `wait`, gets [`BarrierError::Broken`])
/// when it is [`abort`](Barrier::abort)ed, when a waiter's timeout passes, or when a party
/// dies while it waits (killed, say): the last party to arrive never passes on the strength
/// of a dead one, and the parties still waiting learn of the death within about 100 ms.
/// [`reset`](Barrier::reset) makes it usable again. (CPython's barrier counts a dead party as
/// arrived, or leaves the others waiting for it forever.) Each waiting thread holds a robust
/// mutex of the barrier's, which the kernel releases when the thread dies; deaths are seen
/// among the first 4096 waiters of a round, which is every waiter of a barrier of up to 4097
/// parties.
/// CPython's `action` is left to the caller: run it in the party that gets index 0, say.
#[derive(Clone)]
pub struct Barrier {
    mutex: Shared<RawMutex>,
    state: Shared<BarrierState>,
    /// The first of `state.slots` waiter slots, `STRIDE` bytes apart: a robust mutex that
    /// a waiting thread holds, and the round it waits in.
    slots: Option<Shared<RawMutex>>,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

impl Barrier {
    /// A barrier for `parties` threads.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for 0 parties or more than `u32::MAX`; when the system
    /// cannot provide shared memory.
    pub fn new(parties: usize) -> Result<Barrier> {
        let parties = u32::try_from(parties).ok().filter(|&p| p > 0).ok_or_else(|| {
            Error::new(ErrorKind::InvalidInput, format!("a barrier cannot have {parties} parties"))
        })?;
        let mutex = new_mutex()?;
        let state: Shared<BarrierState> =
            segment::alloc(mem::size_of::<BarrierState>(), mem::align_of::<BarrierState>())?
                .into_cell()
                .map_err(|e| Error::io("cannot initialise a barrier", e))?;
        state.parties.store(parties, Ordering::Relaxed);
        let n = (2 * (parties as usize - 1)).min(MAX_SLOTS);
        let slots = match n {
            0 => None,
            n => Some(
                segment::alloc(STRIDE * n, mem::align_of::<RawMutex>())?
                    .into_cells(STRIDE, n)
                    .map_err(|e| Error::io("cannot initialise a barrier", e))?,
            ),
        };
        state.slots.store(n as u32, Ordering::Relaxed);
        Ok(Barrier { mutex, state, slots })
    }

    /// Waiter slot `i`: its mutex and its round.
    fn slot(&self, i: usize) -> Option<(Shared<RawMutex>, Shared<SlotRound>)> {
        let first = self.slots.as_ref()?;
        let mutex = first.nth(i, STRIDE)?;
        let round = Shared::attach(mutex.segment().clone(), (mutex.offset() + ROUND_AT) as u64)?;
        Some((mutex, round))
    }

    fn n_slots(&self) -> usize {
        self.slots.as_ref().map_or(0, |_| self.state.slots.load(Ordering::Relaxed) as usize)
    }

    /// The current round: the completed and broken cycles so far. Called with the mutex held.
    fn round(&self) -> u64 {
        let state = &*self.state;
        u64::from(state.completed.load(Ordering::Relaxed)) << 32
            | u64::from(state.breaks.load(Ordering::Relaxed))
    }

    /// Takes a free waiter slot for the current round. `Err` when a slot shows that a party
    /// died waiting in this round; `Ok(None)` when every slot is held. Called with the mutex
    /// held.
    fn take_slot(&self) -> std::result::Result<Option<Held>, ()> {
        let round = self.round();
        for i in 0..self.n_slots() {
            let Some((mutex, slot_round)) = self.slot(i) else { break };
            let held = match mutex.lock(Wait::No) {
                Acquire::Locked(held) => held,
                Acquire::OwnerDied(held) if slot_round.0.load(Ordering::Relaxed) == round => {
                    drop(held);
                    return Err(());
                }
                Acquire::OwnerDied(held) => held,
                Acquire::Busy | Acquire::Deadlock => continue,
            };
            slot_round.0.store(round, Ordering::Relaxed);
            return Ok(Some(held));
        }
        Ok(None)
    }

    /// Whether a party died waiting in the current round (its slot's mutex was released by
    /// the kernel). Called with the mutex held.
    fn waiter_died(&self) -> bool {
        let round = self.round();
        (0..self.n_slots()).filter_map(|i| self.slot(i)).any(|(mutex, slot_round)| {
            // A dead holder of another round passed the barrier, or was counted by a break.
            mutex.probe() == Probe::OwnerDied && slot_round.0.load(Ordering::Relaxed) == round
        })
    }

    /// Whether it is this waiter's turn to look for dead parties (one look per
    /// `CHECK_EVERY` across all waiters). Called with the mutex held.
    fn check_due(&self) -> bool {
        let now = sys::monotonic_nanos();
        let last = self.state.last_check.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= CHECK_EVERY.as_nanos() as u64;
        if due {
            self.state.last_check.store(now, Ordering::Relaxed);
        }
        due
    }

    /// Takes the barrier's own mutex; a holder that died with it may have left the state half
    /// updated, so the barrier breaks.
    fn lock(&self) -> Held {
        match self.mutex.lock(Wait::Forever) {
            Acquire::Locked(held) => held,
            Acquire::OwnerDied(held) => {
                self.break_locked();
                held
            }
            Acquire::Busy | Acquire::Deadlock => {
                unreachable!("the barrier's mutex is only held inside its methods")
            }
        }
    }

    /// Breaks the current round: every waiter wakes with `Broken`. Called with the mutex held.
    fn break_locked(&self) {
        let state = &*self.state;
        state.broken.store(1, Ordering::Relaxed);
        state.count.store(0, Ordering::Relaxed);
        state.breaks.fetch_add(1, Ordering::Relaxed);
        self.wake_all();
    }

    fn wake_all(&self) {
        self.state.seq.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake(&self.state.seq, u32::MAX);
    }

    fn wait_with(&self, wait: Wait) -> std::result::Result<usize, BarrierError> {
        let mut held = self.lock();
        let state = &*self.state;
        if state.broken.load(Ordering::Relaxed) != 0 {
            return Err(BarrierError::Broken);
        }
        let index = state.count.load(Ordering::Relaxed);
        if index + 1 >= state.parties.load(Ordering::Relaxed) {
            if self.waiter_died() {
                self.break_locked();
                return Err(BarrierError::Broken);
            }
            state.count.store(0, Ordering::Relaxed);
            state.completed.fetch_add(1, Ordering::Relaxed);
            self.wake_all();
            return Ok(index as usize);
        }
        let Ok(_slot) = self.take_slot() else {
            self.break_locked();
            return Err(BarrierError::Broken);
        };
        state.count.store(index + 1, Ordering::Relaxed);
        let completed = state.completed.load(Ordering::Relaxed);
        let breaks = state.breaks.load(Ordering::Relaxed);
        let deadline = wait.deadline();
        loop {
            let seq = state.seq.load(Ordering::SeqCst);
            let look = Instant::now() + CHECK_EVERY;
            let wake_at =
                if self.slots.is_some() { Some(deadline.map_or(look, |d| d.min(look))) } else { deadline };
            let (wake, died) = held.park(&state.seq, seq, wake_at);
            if died {
                self.break_locked();
            }
            if state.completed.load(Ordering::Relaxed) != completed {
                return Ok(index as usize);
            }
            if state.breaks.load(Ordering::Relaxed) != breaks {
                return Err(BarrierError::Broken);
            }
            if deadline.is_some_and(|d| Instant::now() >= d)
                || (wake == Wake::TimedOut && wake_at == deadline)
            {
                self.break_locked();
                return Err(BarrierError::Timeout);
            }
            if self.check_due() && self.waiter_died() {
                self.break_locked();
                return Err(BarrierError::Broken);
            }
        }
    }

    /// Waits until all parties have called `wait`; returns this party's arrival index, from 0
    /// for the first to `parties - 1` for the last.
    ///
    /// # Errors
    /// [`BarrierError::Broken`] when the barrier is or becomes broken.
    pub fn wait(&self) -> std::result::Result<usize, BarrierError> {
        self.wait_with(Wait::Forever)
    }

    /// As [`wait`](Barrier::wait), for at most `timeout`.
    ///
    /// # Errors
    /// [`BarrierError::Timeout`] when the timeout passed: the barrier is then broken, as in
    /// CPython; [`BarrierError::Broken`] as for [`wait`](Barrier::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<usize, BarrierError> {
        self.wait_with(Wait::timeout(Some(timeout)))
    }

    /// Breaks the barrier: current and future waits fail with [`BarrierError::Broken`] until
    /// [`reset`](Barrier::reset).
    pub fn abort(&self) {
        let _held = self.lock();
        self.break_locked();
    }

    /// Returns the barrier to its initial state; parties waiting in it get
    /// [`BarrierError::Broken`].
    pub fn reset(&self) {
        let _held = self.lock();
        let state = &*self.state;
        if state.count.load(Ordering::Relaxed) > 0 {
            state.breaks.fetch_add(1, Ordering::Relaxed);
        }
        state.count.store(0, Ordering::Relaxed);
        state.broken.store(0, Ordering::Relaxed);
        self.wake_all();
    }

    /// The number of parties.
    pub fn parties(&self) -> usize {
        self.state.parties.load(Ordering::Relaxed) as usize
    }

    /// The number of parties waiting in the barrier now (a snapshot).
    pub fn n_waiting(&self) -> usize {
        self.state.count.load(Ordering::Relaxed) as usize
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state.broken.load(Ordering::Relaxed) != 0
    }
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mutex = PlaceOut::new(self.mutex.segment(), self.mutex.offset());
        let state = PlaceOut::new(self.state.segment(), self.state.offset());
        let slots = self.slots.as_ref().map(|slots| PlaceOut::new(slots.segment(), slots.offset()));
        serialize_tagged(serializer, Kind::Barrier, 0, (mutex, state, slots))
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Barrier, D::Error> {
        let (mutex, state, slots): (PlaceIn, PlaceIn, Option<PlaceIn>) =
            deserialize_tagged(deserializer, Kind::Barrier, 0)?;
        let (seg, offset) = mutex.attach()?;
        let mutex = Shared::attach(seg, offset).ok_or_else(|| bad_place("a Barrier"))?;
        let (seg, offset) = state.attach()?;
        let state: Shared<BarrierState> =
            Shared::attach(seg, offset).ok_or_else(|| bad_place("a Barrier"))?;
        let slots = match slots {
            None => None,
            Some(slots) => {
                let (seg, offset) = slots.attach()?;
                Some(Shared::attach(seg, offset).ok_or_else(|| bad_place("a Barrier"))?)
            }
        };
        let barrier = Barrier { mutex, state, slots };
        // Every slot the state announces must lie inside the received segment.
        let n = barrier.state.slots.load(Ordering::Relaxed) as usize;
        if n > MAX_SLOTS || n > 0 && (barrier.slots.is_none() || barrier.slot(n - 1).is_none()) {
            return Err(bad_place("a Barrier"));
        }
        Ok(barrier)
    }
}
