//! The objects whose methods can wait: Queue, Lock/RLock, Semaphore, Condition, Event,
//! Barrier.
//!
//! Each answers at once when it can. Otherwise it returns a job for the session to run on a
//! thread of its own, so that the connection's other requests go on. Every wait has a deadline
//! or none, and ends early when the caller's connection has gone: the session marks its
//! [`Peer`] ended and calls `wake_all`, which takes the object's mutex before notifying, so a
//! waiter cannot miss it between its check and its wait.
//!
//! Nothing is taken for a caller that has gone. A waiter looks at its peer (its socket
//! included, see [`Peer::gone`]) before each attempt to take, so a client killed while it
//! waits takes nothing even when its session has not noticed yet; a waiter that gives up so
//! passes its wake-up on. What a call takes comes with an undo ([`Reply`]) that the session
//! runs when the reply cannot be delivered: a queue item goes back to the front, a semaphore
//! unit and a lock are released, a condition's notification goes to the next waiter. A barrier
//! cannot undo a round that passed, so the last party to arrive checks that every waiting
//! party is still there, and breaks the barrier instead when one has gone.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use multiproc_wire::Bytes;

use super::objects::{Caller, Outcome, Raw, Reply, args, ok, unit, wait_arg};
use super::peer::Peer;
use crate::client::lock;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::Wait;

/// Who holds a lock: a thread (`caller`) of a client connection (`conn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) conn: u64,
    pub(crate) caller: u64,
}

/// How a wait ended.
enum Waited<T> {
    Ready(T),
    TimedOut,
    /// The caller's connection has gone.
    Gone,
}

fn deadline(wait: Wait) -> Option<Instant> {
    match wait {
        Wait::Now => Some(Instant::now()),
        Wait::For(timeout) => Instant::now().checked_add(timeout),
        Wait::Forever => None,
    }
}

/// Waits on `cv` until `ready` gives a value, `deadline` passes, or `peer` has gone.
///
/// `ready` is not tried for a peer that has gone; such a waiter passes on a wake-up it may
/// have taken (`notify_one`), so no other waiter misses it.
fn wait_on<'a, S, T>(
    mut guard: MutexGuard<'a, S>,
    cv: &Condvar,
    deadline: Option<Instant>,
    peer: &Peer,
    mut ready: impl FnMut(&mut S) -> Option<T>,
) -> (MutexGuard<'a, S>, Waited<T>) {
    loop {
        if peer.gone() {
            cv.notify_one();
            return (guard, Waited::Gone);
        }
        if let Some(value) = ready(&mut guard) {
            return (guard, Waited::Ready(value));
        }
        guard = match deadline {
            None => cv.wait(guard).unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return (guard, Waited::TimedOut);
                }
                cv.wait_timeout(guard, d - now).unwrap_or_else(|e| e.into_inner()).0
            }
        };
    }
}

fn gone() -> Error {
    Error::disconnected()
}

fn unknown(type_id: &str, method: &str) -> Outcome {
    Outcome::Done(Err(Error::unknown_method(type_id, method)))
}

/// Runs `f`, turning its error into an answer.
fn outcome(f: impl FnOnce() -> Result<Outcome>) -> Outcome {
    f().unwrap_or_else(|e| Outcome::Done(Err(e)))
}

// ---------------------------------------------------------------------------------- Queue

/// A FIFO queue of encoded items (`queue.Queue`), joinable or not.
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
    /// 0: unbounded.
    maxsize: usize,
    joinable: bool,
}

struct QueueState {
    items: VecDeque<Vec<u8>>,
    unfinished: usize,
}

impl Queue {
    pub(crate) fn new(maxsize: usize, joinable: bool) -> Queue {
        Queue {
            state: Mutex::new(QueueState { items: VecDeque::new(), unfinished: 0 }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_done: Condvar::new(),
            maxsize,
            joinable,
        }
    }

    pub(crate) fn joinable(&self) -> bool {
        self.joinable
    }

    fn has_room(&self, state: &QueueState) -> bool {
        self.maxsize == 0 || state.items.len() < self.maxsize
    }

    fn push(&self, state: &mut QueueState, item: Vec<u8>) {
        state.items.push_back(item);
        state.unfinished += 1;
        self.not_empty.notify_one();
    }

    fn take(&self, state: &mut QueueState) -> Option<Vec<u8>> {
        let item = state.items.pop_front()?;
        self.not_full.notify_one();
        Some(item)
    }

    /// The reply handing `item` to a caller; undone, the item goes back to the front (even if
    /// a put filled its place meanwhile: the queue then holds one more than its size for a
    /// while).
    fn hand_over(self: &Arc<Self>, item: Vec<u8>) -> Reply {
        let queue = self.clone();
        Reply::took(ok(&Raw(&item)), move || {
            let mut state = lock(&queue.state);
            state.items.push_front(item);
            queue.not_empty.notify_one();
        })
    }

    pub(crate) fn call(
        self: &Arc<Self>,
        type_id: &str,
        method: &str,
        bytes: &[u8],
        caller: &Caller<'_>,
    ) -> Outcome {
        outcome(|| match method {
            "put" => {
                let (item, wait): (Bytes, Wait) = args(bytes)?;
                Ok(self.put(item.0, wait, caller))
            }
            "get" => Ok(self.get(wait_arg(bytes)?, caller)),
            "len" => Ok(ok(&(lock(&self.state).items.len() as u64)).into()),
            "is_full" => Ok(ok(&!self.has_room(&lock(&self.state))).into()),
            "capacity" => Ok(ok(&(self.maxsize > 0).then_some(self.maxsize as u64)).into()),
            "task_done" if self.joinable => Ok(self.task_done().into()),
            "join" if self.joinable => Ok(self.join(wait_arg(bytes)?, caller)),
            _ => Ok(unknown(type_id, method)),
        })
    }

    fn put(self: &Arc<Self>, item: Vec<u8>, wait: Wait, caller: &Caller<'_>) -> Outcome {
        let mut state = lock(&self.state);
        if self.has_room(&state) {
            self.push(&mut state, item);
            return unit().into();
        }
        if wait == Wait::Now {
            return Outcome::Done(Err(Error::new(ErrorKind::Full, "the queue is full")));
        }
        drop(state);
        let (queue, peer, deadline) = (self.clone(), caller.peer.clone(), deadline(wait));
        let mut item = Some(item);
        Outcome::Block(Box::new(move || {
            let state = lock(&queue.state);
            let (mut state, waited) =
                wait_on(state, &queue.not_full, deadline, &peer, |s| queue.has_room(s).then_some(()));
            let result = match waited {
                Waited::Ready(()) => {
                    queue.push(&mut state, item.take().expect("put once"));
                    unit()
                }
                Waited::TimedOut => Err(Error::new(ErrorKind::Timeout, "the queue stayed full")),
                Waited::Gone => Err(gone()),
            };
            // An item put is the producer's gift: it stays whatever becomes of the reply.
            Reply::done(result)
        }))
    }

    fn get(self: &Arc<Self>, wait: Wait, caller: &Caller<'_>) -> Outcome {
        let mut state = lock(&self.state);
        if let Some(item) = self.take(&mut state) {
            drop(state);
            return Outcome::Took(self.hand_over(item));
        }
        if wait == Wait::Now {
            return Outcome::Done(Err(Error::new(ErrorKind::Empty, "the queue is empty")));
        }
        drop(state);
        let (queue, peer, deadline) = (self.clone(), caller.peer.clone(), deadline(wait));
        Outcome::Block(Box::new(move || {
            let state = lock(&queue.state);
            let (state, waited) = wait_on(state, &queue.not_empty, deadline, &peer, |s| queue.take(s));
            drop(state);
            match waited {
                Waited::Ready(item) => queue.hand_over(item),
                Waited::TimedOut => Err(Error::new(ErrorKind::Timeout, "no item came in time")).into(),
                Waited::Gone => Err(gone()).into(),
            }
        }))
    }

    fn task_done(&self) -> Result<Vec<u8>> {
        let mut state = lock(&self.state);
        if state.unfinished == 0 {
            return Err(Error::new(ErrorKind::InvalidValue, "task_done() called too many times"));
        }
        state.unfinished -= 1;
        if state.unfinished == 0 {
            self.all_done.notify_all();
        }
        unit()
    }

    fn join(self: &Arc<Self>, wait: Wait, caller: &Caller<'_>) -> Outcome {
        let state = lock(&self.state);
        if state.unfinished == 0 {
            return ok(&true).into();
        }
        if wait == Wait::Now {
            return ok(&false).into();
        }
        drop(state);
        let (queue, peer, deadline) = (self.clone(), caller.peer.clone(), deadline(wait));
        Outcome::Block(Box::new(move || {
            let state = lock(&queue.state);
            let result =
                match wait_on(state, &queue.all_done, deadline, &peer, |s| (s.unfinished == 0).then_some(()))
                    .1
                {
                    Waited::Ready(()) => ok(&true),
                    Waited::TimedOut => ok(&false),
                    Waited::Gone => Err(gone()),
                };
            result.into()
        }))
    }

    pub(crate) fn wake_all(&self) {
        let _state = lock(&self.state);
        self.not_empty.notify_all();
        self.not_full.notify_all();
        self.all_done.notify_all();
    }
}

// ---------------------------------------------------------------------------------- Lock

/// A lock (`threading.Lock`) or reentrant lock (`threading.RLock`).
///
/// Both record who took them, but only an `RLock` is owned: only its owner may release it, and
/// when its owner's connection ends it is released and the next acquirer is told
/// (`OwnerDied`). A plain `Lock` may be released by anyone, so one whose taker has gone stays
/// locked until someone does, as in CPython.
pub(crate) struct Lock {
    state: Mutex<LockState>,
    cv: Condvar,
    reentrant: bool,
}

struct LockState {
    owner: Option<Owner>,
    count: u32,
    /// Released because its owner's connection ended: the next acquirer is told.
    abandoned: bool,
}

fn owner_died() -> Error {
    Error::new(
        ErrorKind::OwnerDied,
        "acquired a lock whose previous owner's process went away while holding it",
    )
}

impl Lock {
    pub(crate) fn new(reentrant: bool) -> Lock {
        Lock {
            state: Mutex::new(LockState { owner: None, count: 0, abandoned: false }),
            cv: Condvar::new(),
            reentrant,
        }
    }

    pub(crate) fn reentrant(&self) -> bool {
        self.reentrant
    }

    /// Takes the lock if `owner` can have it now: `Some(Ok(true))`, or `Some(Err(OwnerDied))`
    /// (taken too).
    fn try_take(&self, state: &mut LockState, owner: Owner) -> Option<Result<bool>> {
        match state.owner {
            None => {
                state.owner = Some(owner);
                state.count = 1;
                if std::mem::take(&mut state.abandoned) {
                    return Some(Err(owner_died()));
                }
                Some(Ok(true))
            }
            Some(current) if self.reentrant && current == owner => {
                state.count += 1;
                Some(Ok(true))
            }
            Some(_) => None,
        }
    }

    pub(crate) fn call(
        self: &Arc<Self>,
        type_id: &str,
        method: &str,
        bytes: &[u8],
        caller: &Caller<'_>,
    ) -> Outcome {
        outcome(|| match method {
            "acquire" => Ok(self.acquire(wait_arg(bytes)?, caller)),
            "release" => Ok(self.release(caller.owner).and_then(|()| unit()).into()),
            "locked" => Ok(ok(&lock(&self.state).owner.is_some()).into()),
            _ => Ok(unknown(type_id, method)),
        })
    }

    pub(crate) fn acquire(self: &Arc<Self>, wait: Wait, caller: &Caller<'_>) -> Outcome {
        let owner = caller.owner;
        let taken = self.try_take(&mut lock(&self.state), owner);
        if let Some(taken) = taken {
            return Outcome::Took(self.hand_over(owner, taken));
        }
        if wait == Wait::Now {
            return ok(&false).into();
        }
        let (me, peer, deadline) = (self.clone(), caller.peer.clone(), deadline(wait));
        Outcome::Block(Box::new(move || {
            let taken = me.acquire_blocking(owner, deadline, &peer);
            me.hand_over(owner, taken)
        }))
    }

    /// The reply to an acquire that ended with `taken`; undone, the lock is released (and the
    /// death of an owner it reported is reported again to the next acquirer).
    fn hand_over(self: &Arc<Self>, owner: Owner, taken: Result<bool>) -> Reply {
        let died = match &taken {
            Ok(true) => false,
            Err(err) if err.kind() == ErrorKind::OwnerDied => true,
            _ => return Reply::done(taken.and_then(|t| ok(&t))),
        };
        let me = self.clone();
        Reply::took(taken.and_then(|t| ok(&t)), move || me.give_back(owner, died, false))
    }

    /// Undoes what `owner` took: one level of the lock (`fully`: every level), and
    /// `died`, whether the acquire had reported an owner's death.
    fn give_back(&self, owner: Owner, died: bool, fully: bool) {
        let mut state = lock(&self.state);
        if state.owner != Some(owner) {
            // A plain lock that someone else released meanwhile.
            return;
        }
        if !fully && state.count > 1 {
            state.count -= 1;
            return;
        }
        state.owner = None;
        state.count = 0;
        state.abandoned |= died;
        self.cv.notify_one();
    }

    /// Waits for the lock; `Ok(false)` when `deadline` passes first.
    pub(crate) fn acquire_blocking(
        &self,
        owner: Owner,
        deadline: Option<Instant>,
        peer: &Peer,
    ) -> Result<bool> {
        let state = lock(&self.state);
        match wait_on(state, &self.cv, deadline, peer, |s| self.try_take(s, owner)).1 {
            Waited::Ready(taken) => taken,
            Waited::TimedOut => Ok(false),
            Waited::Gone => Err(gone()),
        }
    }

    pub(crate) fn release(&self, owner: Owner) -> Result<()> {
        let mut state = lock(&self.state);
        match state.owner {
            None => Err(Error::new(ErrorKind::InvalidState, "release unlocked lock")),
            Some(current) if self.reentrant && current != owner => {
                Err(Error::new(ErrorKind::InvalidState, "cannot release un-acquired lock"))
            }
            Some(_) => {
                state.count = state.count.saturating_sub(1);
                if !self.reentrant || state.count == 0 {
                    state.owner = None;
                    state.count = 0;
                    self.cv.notify_one();
                }
                Ok(())
            }
        }
    }

    pub(crate) fn is_owned_by(&self, owner: Owner) -> bool {
        lock(&self.state).owner == Some(owner)
    }

    /// Releases the lock entirely (a condition's wait); returns the recursion count to restore.
    pub(crate) fn release_fully(&self, owner: Owner) -> Result<u32> {
        let mut state = lock(&self.state);
        if state.owner != Some(owner) {
            return Err(Error::new(ErrorKind::InvalidState, "cannot wait on un-acquired lock"));
        }
        let count = state.count;
        state.owner = None;
        state.count = 0;
        self.cv.notify_one();
        Ok(count)
    }

    /// Restores the recursion count after a condition's wait took the lock back.
    pub(crate) fn restore_count(&self, owner: Owner, count: u32) {
        let mut state = lock(&self.state);
        if state.owner == Some(owner) {
            state.count = count;
        }
    }

    /// Releases an `RLock` that connection `conn` holds: the next acquirer is told.
    pub(crate) fn release_owned_by(&self, conn: u64) {
        if !self.reentrant {
            // A plain lock has no owner: it stays locked until anyone releases it.
            return;
        }
        let mut state = lock(&self.state);
        if state.owner.is_some_and(|o| o.conn == conn) {
            state.owner = None;
            state.count = 0;
            state.abandoned = true;
            self.cv.notify_one();
        }
    }

    pub(crate) fn wake_all(&self) {
        let _state = lock(&self.state);
        self.cv.notify_all();
    }
}

// ---------------------------------------------------------------------------------- Semaphore

/// A counting semaphore, bounded (`BoundedSemaphore`) or not.
pub(crate) struct Semaphore {
    value: Mutex<usize>,
    cv: Condvar,
    /// The initial value, for a bounded semaphore.
    bound: Option<usize>,
}

impl Semaphore {
    pub(crate) fn new(value: usize, bounded: bool) -> Semaphore {
        Semaphore { value: Mutex::new(value), cv: Condvar::new(), bound: bounded.then_some(value) }
    }

    pub(crate) fn bounded(&self) -> bool {
        self.bound.is_some()
    }

    fn try_take(value: &mut usize) -> Option<()> {
        (*value > 0).then(|| *value -= 1)
    }

    pub(crate) fn call(
        self: &Arc<Self>,
        type_id: &str,
        method: &str,
        bytes: &[u8],
        caller: &Caller<'_>,
    ) -> Outcome {
        outcome(|| match method {
            "acquire" => Ok(self.acquire(wait_arg(bytes)?, caller)),
            "release" => {
                let mut value = lock(&self.value);
                if self.bound.is_some_and(|b| *value >= b) {
                    return Err(Error::new(ErrorKind::InvalidValue, "semaphore released too many times"));
                }
                *value += 1;
                self.cv.notify_one();
                Ok(unit().into())
            }
            "value" => Ok(ok(&(*lock(&self.value) as u64)).into()),
            _ => Ok(unknown(type_id, method)),
        })
    }

    fn acquire(self: &Arc<Self>, wait: Wait, caller: &Caller<'_>) -> Outcome {
        let taken = Semaphore::try_take(&mut lock(&self.value));
        if taken.is_some() {
            return Outcome::Took(self.hand_over());
        }
        if wait == Wait::Now {
            return ok(&false).into();
        }
        let (me, peer, deadline) = (self.clone(), caller.peer.clone(), deadline(wait));
        Outcome::Block(Box::new(move || {
            let value = lock(&me.value);
            let waited = wait_on(value, &me.cv, deadline, &peer, Semaphore::try_take).1;
            match waited {
                Waited::Ready(()) => me.hand_over(),
                Waited::TimedOut => ok(&false).into(),
                Waited::Gone => Err(gone()).into(),
            }
        }))
    }

    /// The reply to an acquire that took a unit; undone, the unit comes back.
    fn hand_over(self: &Arc<Self>) -> Reply {
        let me = self.clone();
        Reply::took(ok(&true), move || {
            let mut value = lock(&me.value);
            // A bounded semaphore that someone released in excess meanwhile stays at its bound.
            if me.bound.is_none_or(|b| *value < b) {
                *value += 1;
            }
            me.cv.notify_one();
        })
    }

    pub(crate) fn wake_all(&self) {
        let _value = lock(&self.value);
        self.cv.notify_all();
    }
}

// ---------------------------------------------------------------------------------- Condition

/// A condition variable over a lock, which may be shared with a `Lock`/`RLock` object.
///
/// A waiter takes a ticket and queues it before it releases the lock; `notify(n)` moves the
/// `n` oldest tickets to the notified set. So a notification made after the waiter released
/// the lock always finds it.
pub(crate) struct Condition {
    lock: Arc<Lock>,
    state: Mutex<CondState>,
    cv: Condvar,
}

struct CondState {
    waiting: VecDeque<u64>,
    notified: HashSet<u64>,
    next: u64,
}

impl Condition {
    pub(crate) fn new(lock: Arc<Lock>) -> Condition {
        Condition {
            lock,
            state: Mutex::new(CondState { waiting: VecDeque::new(), notified: HashSet::new(), next: 0 }),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn lock(&self) -> &Arc<Lock> {
        &self.lock
    }

    pub(crate) fn call(
        self: &Arc<Self>,
        type_id: &str,
        method: &str,
        bytes: &[u8],
        caller: &Caller<'_>,
    ) -> Outcome {
        outcome(|| match method {
            "acquire" => Ok(self.lock.acquire(wait_arg(bytes)?, caller)),
            "release" => Ok(self.lock.release(caller.owner).and_then(|()| unit()).into()),
            "locked" => Ok(ok(&lock(&self.lock.state).owner.is_some()).into()),
            "wait" => self.wait(wait_arg(bytes)?, caller),
            "notify" => {
                let n: u64 = args(bytes)?;
                Ok(self.notify(caller.owner, n).and_then(|()| unit()).into())
            }
            _ => Ok(unknown(type_id, method)),
        })
    }

    fn wait(self: &Arc<Self>, wait: Wait, caller: &Caller<'_>) -> Result<Outcome> {
        let owner = caller.owner;
        if !self.lock.is_owned_by(owner) {
            return Err(Error::new(ErrorKind::InvalidState, "cannot wait on un-acquired lock"));
        }
        let ticket = {
            let mut state = lock(&self.state);
            let ticket = state.next;
            state.next += 1;
            state.waiting.push_back(ticket);
            ticket
        };
        let count = self.lock.release_fully(owner)?;
        let (me, peer, deadline) = (self.clone(), caller.peer.clone(), deadline(wait));
        Ok(Outcome::Block(Box::new(move || {
            let state = lock(&me.state);
            let (mut state, waited) =
                wait_on(state, &me.cv, deadline, &peer, |s| s.notified.remove(&ticket).then_some(()));
            let notified = match waited {
                Waited::Ready(()) => true,
                Waited::TimedOut | Waited::Gone => {
                    state.waiting.retain(|&t| t != ticket);
                    // Notified between the deadline and now: it counts.
                    state.notified.remove(&ticket)
                }
            };
            drop(state);
            // The lock is taken back whatever happened, as threading.Condition does, unless
            // the caller has gone.
            let taken = if peer.gone() { Err(gone()) } else { me.lock.acquire_blocking(owner, None, &peer) };
            let died = match &taken {
                Ok(_) => false,
                Err(err) if err.kind() == ErrorKind::OwnerDied => true,
                Err(_) => {
                    if notified {
                        me.pass_on();
                    }
                    return Reply::done(taken.and_then(|_| ok(&notified)));
                }
            };
            me.lock.restore_count(owner, count);
            let result = taken.and_then(|_| ok(&notified));
            Reply::took(result, move || {
                me.lock.give_back(owner, died, true);
                if notified {
                    me.pass_on();
                }
            })
        })))
    }

    /// Gives a notification that a waiter which has gone took to the oldest other waiter.
    fn pass_on(&self) {
        let mut state = lock(&self.state);
        if let Some(next) = state.waiting.pop_front() {
            state.notified.insert(next);
            self.cv.notify_all();
        }
    }

    fn notify(&self, owner: Owner, n: u64) -> Result<()> {
        if !self.lock.is_owned_by(owner) {
            return Err(Error::new(ErrorKind::InvalidState, "cannot notify on un-acquired lock"));
        }
        let mut state = lock(&self.state);
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(state.waiting.len());
        let woken: Vec<u64> = state.waiting.drain(..n).collect();
        if !woken.is_empty() {
            state.notified.extend(woken);
            self.cv.notify_all();
        }
        Ok(())
    }

    pub(crate) fn wake_all(&self) {
        {
            let _state = lock(&self.state);
            self.cv.notify_all();
        }
        self.lock.wake_all();
    }
}

// ---------------------------------------------------------------------------------- Event

/// A flag that waiters wait for (`threading.Event`).
pub(crate) struct Event {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Event {
    pub(crate) fn new() -> Event {
        Event { flag: Mutex::new(false), cv: Condvar::new() }
    }

    pub(crate) fn call(
        self: &Arc<Self>,
        type_id: &str,
        method: &str,
        bytes: &[u8],
        caller: &Caller<'_>,
    ) -> Outcome {
        outcome(|| match method {
            "set" => {
                *lock(&self.flag) = true;
                self.cv.notify_all();
                Ok(unit().into())
            }
            "clear" => {
                *lock(&self.flag) = false;
                Ok(unit().into())
            }
            "is_set" => Ok(ok(&*lock(&self.flag)).into()),
            "wait" => Ok(self.wait(wait_arg(bytes)?, caller)),
            _ => Ok(unknown(type_id, method)),
        })
    }

    fn wait(self: &Arc<Self>, wait: Wait, caller: &Caller<'_>) -> Outcome {
        if *lock(&self.flag) {
            return ok(&true).into();
        }
        if wait == Wait::Now {
            return ok(&false).into();
        }
        let (me, peer, deadline) = (self.clone(), caller.peer.clone(), deadline(wait));
        Outcome::Block(Box::new(move || {
            let flag = lock(&me.flag);
            let result = match wait_on(flag, &me.cv, deadline, &peer, |f| f.then_some(())).1 {
                Waited::Ready(()) => ok(&true),
                Waited::TimedOut => ok(&false),
                Waited::Gone => Err(gone()),
            };
            result.into()
        }))
    }

    pub(crate) fn wake_all(&self) {
        let _flag = lock(&self.flag);
        self.cv.notify_all();
    }
}

// ---------------------------------------------------------------------------------- Barrier

/// How one round of a barrier ended, shared by its waiters.
const PENDING: u8 = 0;
const PASSED: u8 = 1;
const BROKEN: u8 = 2;

/// A barrier for `parties` callers (`threading.Barrier`).
///
/// Each round has its own outcome cell, so waiters of a round that passed are not confused by
/// a reset or a break of the next one. A party whose client goes away while it waits breaks
/// the barrier (the others get `BrokenBarrier`, and so does every later wait until `reset`):
/// it never counts as arrived.
pub(crate) struct Barrier {
    parties: usize,
    state: Mutex<BarrierState>,
    cv: Condvar,
}

struct BarrierState {
    count: usize,
    /// The clients of the parties waiting in this round.
    waiters: Vec<Arc<Peer>>,
    round: Arc<Mutex<u8>>,
    broken: bool,
}

fn broken_barrier() -> Error {
    Error::new(ErrorKind::BrokenBarrier, "the barrier is broken")
}

impl Barrier {
    pub(crate) fn new(parties: usize) -> Barrier {
        Barrier {
            parties,
            state: Mutex::new(BarrierState {
                count: 0,
                waiters: Vec::new(),
                round: Arc::new(Mutex::new(PENDING)),
                broken: false,
            }),
            cv: Condvar::new(),
        }
    }

    /// Ends the current round with `outcome` and starts the next.
    fn end_round(&self, state: &mut BarrierState, outcome: u8) {
        *lock(&state.round) = outcome;
        state.round = Arc::new(Mutex::new(PENDING));
        state.count = 0;
        state.waiters.clear();
        self.cv.notify_all();
    }

    pub(crate) fn call(
        self: &Arc<Self>,
        type_id: &str,
        method: &str,
        bytes: &[u8],
        caller: &Caller<'_>,
    ) -> Outcome {
        outcome(|| match method {
            "wait" => Ok(self.wait(wait_arg(bytes)?, caller)),
            "abort" => {
                let mut state = lock(&self.state);
                state.broken = true;
                self.end_round(&mut state, BROKEN);
                Ok(unit().into())
            }
            "reset" => {
                let mut state = lock(&self.state);
                state.broken = false;
                self.end_round(&mut state, BROKEN);
                Ok(unit().into())
            }
            "parties" => Ok(ok(&(self.parties as u64)).into()),
            "n_waiting" => Ok(ok(&(lock(&self.state).count as u64)).into()),
            "broken" => Ok(ok(&lock(&self.state).broken).into()),
            _ => Ok(unknown(type_id, method)),
        })
    }

    fn wait(self: &Arc<Self>, wait: Wait, caller: &Caller<'_>) -> Outcome {
        let mut state = lock(&self.state);
        if state.broken {
            return Outcome::Done(Err(broken_barrier()));
        }
        let index = state.count;
        state.count += 1;
        state.waiters.push(caller.peer.clone());
        if state.count == self.parties {
            // A round that passed cannot be undone: every party must still be there.
            if state.waiters.iter().any(|peer| peer.gone()) {
                state.broken = true;
                self.end_round(&mut state, BROKEN);
                return Outcome::Done(Err(Error::new(
                    ErrorKind::BrokenBarrier,
                    "the barrier is broken: a waiting party's process went away",
                )));
            }
            self.end_round(&mut state, PASSED);
            return ok(&(index as u64)).into();
        }
        let round = state.round.clone();
        drop(state);
        let (me, peer, deadline) = (self.clone(), caller.peer.clone(), deadline(wait));
        Outcome::Block(Box::new(move || {
            let state = lock(&me.state);
            let (mut state, waited) = wait_on(state, &me.cv, deadline, &peer, |_| {
                let outcome = *lock(&round);
                (outcome != PENDING).then_some(outcome)
            });
            let result = match waited {
                Waited::Ready(PASSED) => ok(&(index as u64)),
                Waited::Ready(_) => Err(broken_barrier()),
                Waited::TimedOut | Waited::Gone => {
                    // A waiter that gives up breaks the barrier for everyone, unless the round
                    // ended meanwhile.
                    if Arc::ptr_eq(&state.round, &round) {
                        state.broken = true;
                        me.end_round(&mut state, BROKEN);
                    }
                    if matches!(waited, Waited::Gone) { Err(gone()) } else { Err(broken_barrier()) }
                }
            };
            result.into()
        }))
    }

    pub(crate) fn wake_all(&self) {
        let _state = lock(&self.state);
        self.cv.notify_all();
    }
}
