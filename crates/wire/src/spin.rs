//! Watching before sleeping. A wake-up through the kernel costs tens of microseconds between
//! cores (≈20 µs on a virtual machine), a short watch nothing when the awaited event comes
//! within it. Every waiter of the multiproc crates (a pipe end, a pool's dispatcher, a result
//! handle, a manager client) watches the same way: CPU pauses for a few microseconds, then
//! yielding the core at each look, so that on a machine with as many busy processes as cores
//! a watcher gives way to the thread that has work (often the very one it waits for). On one
//! core nobody watches.
//!
//! ```
//! use std::time::Duration;
//! use multiproc_wire::spin::Spin;
//!
//! let mut spin = Spin::new(Duration::from_micros(50));
//! let mut looks = 0;
//! // Ready at the third look (or at once, on a single-core machine).
//! let ready = spin.watch(None, || {
//!     looks += 1;
//!     looks == 3
//! });
//! assert!(ready || spin.budget().is_zero());
//! spin.slept(Duration::from_millis(5)); // the event came long after: watch less next time
//! assert!(spin.budget() <= Duration::from_micros(25));
//! ```

use std::time::{Duration, Instant};

use crate::sys::multicore;

/// The usual longest watch.
pub const DEFAULT_WATCH: Duration = Duration::from_micros(50);
/// How long a watch pauses the CPU before it starts yielding the core.
const PURE_SPIN: Duration = Duration::from_micros(5);
/// A budget below this is not worth watching.
const MIN_WATCH: Duration = Duration::from_micros(2);

/// Watches `ready` for up to `limit` (and not past `deadline`); whether it became true. On a
/// single-core machine it looks once.
pub fn watch(limit: Duration, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
    if ready() {
        return true;
    }
    if limit.is_zero() || !multicore() {
        return false;
    }
    let started = Instant::now();
    let until = deadline.map_or(started + limit, |d| d.min(started + limit));
    let mut now = started;
    while now < until {
        if now - started < PURE_SPIN {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        if ready() {
            return true;
        }
        now = Instant::now();
    }
    false
}

/// A watch budget that adapts to how fast the awaited side answers: full while a longer watch
/// would have caught what the waiter slept for, halved (down to none) while it would not.
#[derive(Debug, Clone, Copy)]
pub struct Spin {
    budget: Duration,
    max: Duration,
}

impl Spin {
    /// A budget of at most `max` (none on a single-core machine).
    pub fn new(max: Duration) -> Spin {
        let max = if multicore() { max } else { Duration::ZERO };
        Spin { budget: max, max }
    }

    /// How long the next watch may last.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The most the budget grows to.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Sets the most the budget grows to (zero: never watch).
    pub fn set_max(&mut self, max: Duration) {
        self.max = max;
        self.budget = self.budget.min(max);
    }

    /// [`watch`] for the current budget.
    pub fn watch(&self, deadline: Option<Instant>, ready: impl FnMut() -> bool) -> bool {
        watch(self.budget, deadline, ready)
    }

    /// After sleeping `slept` for what the watch missed: had the budget been longer, would
    /// the watch have caught it? Then watch fully next time; else watch less.
    pub fn slept(&mut self, slept: Duration) {
        if slept < self.max * 2 && !self.budget.is_zero() || slept < self.max {
            self.budget = self.max;
        } else {
            self.budget /= 2;
            if self.budget < MIN_WATCH {
                self.budget = Duration::ZERO;
            }
        }
    }
}
