//! `Event`: a process-shared flag that threads wait for.

use std::fmt;
use std::mem;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::segment::{self, Kind, PlaceIn, PlaceOut, bad_place, deserialize_tagged, serialize_tagged};
use crate::sys::{self, EventState, Shared, Wait, Wake};

/// A process-shared event (CPython's `multiprocessing.Event`): a flag that threads of any
/// process set, clear, and wait for.
///
/// ```
/// use multiproc_shmem::Event;
/// use std::time::Duration;
///
/// let event = Event::new()?;
/// assert!(!event.wait_timeout(Duration::from_millis(1)), "not set");
/// event.set();
/// assert!(event.is_set());
/// event.wait();
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    state: Shared<EventState>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}

impl Event {
    /// A new event, clear.
    ///
    /// # Errors
    /// When the system cannot provide shared memory.
    pub fn new() -> Result<Event> {
        let state = segment::alloc(mem::size_of::<EventState>(), mem::align_of::<EventState>())?
            .into_cell()
            .map_err(|e| Error::io("cannot initialise an event", e))?;
        Ok(Event { state })
    }

    /// Whether the event is set.
    pub fn is_set(&self) -> bool {
        self.state.flag.load(Ordering::Acquire) != 0
    }

    /// Sets the event, waking every waiter.
    pub fn set(&self) {
        let state = &*self.state;
        state.flag.store(1, Ordering::SeqCst);
        if state.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(&state.flag, u32::MAX);
        }
    }

    /// Clears the event.
    pub fn clear(&self) {
        self.state.flag.store(0, Ordering::SeqCst);
    }

    fn wait_with(&self, wait: Wait) -> bool {
        if self.is_set() {
            return true;
        }
        let state = &*self.state;
        let deadline = wait.deadline();
        state.waiters.fetch_add(1, Ordering::SeqCst);
        let set = loop {
            if self.is_set() {
                break true;
            }
            if sys::futex_wait(&state.flag, 0, deadline) == Wake::TimedOut {
                break self.is_set();
            }
        };
        state.waiters.fetch_sub(1, Ordering::SeqCst);
        set
    }

    /// Waits until the event is set.
    pub fn wait(&self) {
        self.wait_with(Wait::Forever);
    }

    /// Waits at most `timeout` for the event to be set; whether it is set (CPython's
    /// `wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_with(Wait::timeout(Some(timeout)))
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_tagged(serializer, Kind::Event, 0, PlaceOut::new(self.state.segment(), self.state.offset()))
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Event, D::Error> {
        let place: PlaceIn = deserialize_tagged(deserializer, Kind::Event, 0)?;
        let (seg, offset) = place.attach()?;
        let state = Shared::attach(seg, offset).ok_or_else(|| bad_place("an Event"))?;
        Ok(Event { state })
    }
}
