//! Queues between processes: CPython's `Queue`, `SimpleQueue` and `JoinableQueue`, as a
//! shared-memory ring that loses nothing and never buffers behind your back.
//!
//! ```
//! use multiproc_process::{Process, StartMethod};
//! use multiproc_queue::Queue;
//!
//! fn cube((input, output): (Queue<u64>, Queue<u64>)) {
//!     while let Ok(x) = input.get() {
//!         if x == 0 {
//!             break;
//!         }
//!         output.put(x * x * x).unwrap();
//!     }
//! }
//!
//! let (input, output) = (Queue::new()?, Queue::new()?);
//! let mut p = Process::new(cube, (input.clone(), output.clone()));
//! p.set_start_method(StartMethod::Spawn);
//! p.start()?;
//! for x in [1, 2, 3, 0] {
//!     input.put(x)?;
//! }
//! let cubes: Vec<u64> = (0..3).map(|_| output.get()).collect::<Result<_, _>>()?;
//! assert_eq!(cubes, [1, 8, 27]);
//! assert_eq!(p.join()?, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//! - **Serialized by the caller.** [`Queue::put`] serializes the item (serde, the workspace's
//!   codec) in the calling thread and copies it into shared memory. A serialization error is
//!   returned with the item; nothing is enqueued and the queue is unaffected. There is no feeder
//!   thread: when `put` returns, the item is in the queue and survives the producer exiting or
//!   being killed.
//! - **Exactly once, in order.** Each item is delivered to exactly one `get`; items put by one
//!   thread come out in the order it put them. Any number of producers and consumers, threads
//!   and processes mixed, may use a queue at once.
//! - **Backpressure, not hidden buffering.** An "unbounded" queue is bounded by its shared
//!   buffer ([`DEFAULT_BUFFER`], 1 GiB of address space by default): a `put` that finds it full
//!   waits (or fails with [`PutError::Full`] in its timed and non-blocking forms). CPython's
//!   `put` never waits on an unbounded queue because it buffers without limit in the feeder
//!   thread; here the memory is shared and visible instead.
//! - **Any size.** Items from a few bytes up to the buffer's size (64 MiB and more by default)
//!   share one queue; a record is always contiguous.
//!
//! # Processes killed at any moment
//! A process killed by `SIGKILL` never blocks the others nor corrupts the queue: the queue's
//! lock is a robust process-shared mutex, and its state changes with one atomic store after
//! the item's bytes are copied, so the next process to lock finds a consistent queue.
//! - A **producer** killed inside `put` either enqueued its item completely (the state was
//!   published) or not at all. Once its `put` has returned, the item is safe.
//! - A **consumer** killed inside `get` either left the item in the queue (killed before the
//!   state was published: another consumer gets it) or took it (killed after): then the item
//!   is lost, as it would be if the consumer died right after `get` returned. With a
//!   [`JoinableQueue`] such an item also stays unfinished, so use `join_timeout`.
//! - A process killed while sleeping in `get` or `put` leaves its place in a count of
//!   sleepers, which costs the others one needless wake-up call.
//!
//! # Memory
//! The buffer is an anonymous `memfd` (nothing in `/dev/shm`, freed when the last handle in
//! the last process goes away), mapped sparse: pages cost memory only once touched. A steady
//! stream cycles through the first 8 MiB; a backlog or a huge item uses more, and that memory
//! is given back to the system once the queue has drained below 8 MiB again.
//!
//! # Departures from CPython
//! - `close` affects this handle (and its clones in this process) only, and there is nothing
//!   to flush: no `join_thread` or `cancel_join_thread`.
//! - `qsize`, `empty` and `full` are snapshots, as in CPython, but `qsize` works everywhere.
//! - Items cannot hold file descriptors (send those through a `Connection`).

mod error;
mod queue;
mod ring;
mod sys;

pub use error::{GetError, JoinTimeoutError, PutError, TaskDoneError};
pub use queue::{DEFAULT_BUFFER, JoinableQueue, Queue, SimpleQueue};
