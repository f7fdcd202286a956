//! `Barrier`: a process-shared meeting point for a fixed number of parties.

use std::fmt;
use std::mem;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{BarrierError, Error, ErrorKind, Result};
use crate::lock::new_mutex;
use crate::segment::{self, Kind, PlaceIn, PlaceOut, bad_place, deserialize_tagged, serialize_tagged};
use crate::sys::{self, Acquire, BarrierState, Held, RawMutex, Shared, Wait, Wake};

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
/// when it is [`abort`](Barrier::abort)ed, when a waiter's timeout passes, or when a process
/// dies inside the barrier's own bookkeeping; [`reset`](Barrier::reset) makes it usable again.
/// CPython's `action` is left to the caller: run it in the party that gets index 0, say.
#[derive(Clone)]
pub struct Barrier {
    mutex: Shared<RawMutex>,
    state: Shared<BarrierState>,
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
        Ok(Barrier { mutex, state })
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
            state.count.store(0, Ordering::Relaxed);
            state.completed.fetch_add(1, Ordering::Relaxed);
            self.wake_all();
            return Ok(index as usize);
        }
        state.count.store(index + 1, Ordering::Relaxed);
        let completed = state.completed.load(Ordering::Relaxed);
        let breaks = state.breaks.load(Ordering::Relaxed);
        let deadline = wait.deadline();
        loop {
            let seq = state.seq.load(Ordering::SeqCst);
            let (wake, died) = held.park(&state.seq, seq, deadline);
            if died {
                self.break_locked();
            }
            if state.completed.load(Ordering::Relaxed) != completed {
                return Ok(index as usize);
            }
            if state.breaks.load(Ordering::Relaxed) != breaks {
                return Err(BarrierError::Broken);
            }
            if wake == Wake::TimedOut || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                self.break_locked();
                return Err(BarrierError::Timeout);
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
        serialize_tagged(serializer, Kind::Barrier, 0, (mutex, state))
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Barrier, D::Error> {
        let (mutex, state): (PlaceIn, PlaceIn) = deserialize_tagged(deserializer, Kind::Barrier, 0)?;
        let (seg, offset) = mutex.attach()?;
        let mutex = Shared::attach(seg, offset).ok_or_else(|| bad_place("a Barrier"))?;
        let (seg, offset) = state.attach()?;
        let state = Shared::attach(seg, offset).ok_or_else(|| bad_place("a Barrier"))?;
        Ok(Barrier { mutex, state })
    }
}
