//! The shared-memory path of connections made by [`pipe`](crate::pipe): one single-producer,
//! single-consumer byte ring per direction in a memory file both processes map, beside the
//! Unix socket that still joins the two ends.
//!
//! # Protocol
//! The bytes a ring carries are the same frames a socket would carry. `tail` counts the bytes
//! ever published and `head` the bytes ever consumed (both only grow; the offset in the data
//! area is the count modulo the capacity, a power of two). A sender copies a message in and
//! publishes it with one store of `tail`; a receiver copies out what is published and advances
//! `head` with one store. Neither makes a system call while the other is awake.
//!
//! A side that finds nothing to do sets its `*_waiting` flag, checks once more, and sleeps in
//! `poll` on the socket. The other side, after publishing (or consuming), checks the flag and,
//! if set, clears it and rings a *bell*: a control record on the socket. Both checks follow a
//! full fence, so one of the two always sees the other (no lost wake-up). The socket also tells
//! each side that the other has gone (end of stream), and carries file descriptors: a message
//! with descriptors is preceded on the socket by a record naming the ring offset where the
//! message starts, with the descriptors attached.
//!
//! # Control records
//! Every record on the socket is [`RECORD`] bytes: a tag ([`BELL`] or [`FDS`]) and a
//! little-endian `u64` (the ring offset for `FDS`).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::fence;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc_wire::sys::{futex_wait, futex_wake, multicore};

use crate::sys::{DATA_START, Mapping, RingHeader, current_pid, process_exists};

/// Data bytes of each direction's ring (sparse: only touched pages cost memory).
pub(crate) const CAPACITY: u64 = 1 << 20;
/// The most a sender copies before publishing, so that the receiver of a large message
/// copies out while the rest is copied in.
pub(crate) const MAX_CHUNK: u64 = CAPACITY / 4;
/// Identifies a connection's memory.
const MAGIC: u64 = 0x6d70_7069_7065_7201;
/// Bytes of a control record.
pub(crate) const RECORD: usize = 9;
/// Control record: "look at the ring".
pub(crate) const BELL: u8 = 0;
/// Control record: descriptors of the message at the given ring offset.
pub(crate) const FDS: u8 = 1;
/// Set in the lock word when others wait for it.
const LOCK_CONTENDED: u32 = 1 << 31;

/// One end's handle on the shared rings: it sends on ring `side` and receives on the other.
/// Clones (`Connection::try_clone`) share the process-local state.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    map: Arc<Mapping>,
    side: usize,
    mask: u64,
    local: Arc<Local>,
}

/// What the handles of one end in one process share.
#[derive(Debug, Default)]
struct Local {
    /// What was read from the socket and not yet used.
    control: Mutex<Control>,
    /// Held while consuming from the incoming ring: two threads reading at once would both
    /// copy the same bytes while the sender overwrites them.
    consuming: Mutex<()>,
    /// The peer has closed (end of stream on the socket).
    peer_gone: AtomicBool,
    /// Whether `control.fds` may hold descriptors: lets a receive skip the mutex when not.
    holds_fds: AtomicBool,
}

/// What was read from the socket of a ring connection and not yet used. Shared by every
/// handle on the end in this process, so that whichever reads the socket (a receive, a send
/// waiting for room, `wait`) keeps the descriptors for the one that receives their message.
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// The start of a control record cut by the end of a read.
    pub(crate) carry: Vec<u8>,
    /// Descriptors that came with a read ending inside a record not yet complete.
    pub(crate) orphans: Vec<OwnedFd>,
    /// Descriptors received, each with the ring offset of the message they belong to.
    fds: VecDeque<(u64, OwnedFd)>,
}

/// Holds the sending side of a ring (see [`Link::lock`]). Released with a message half sent
/// (an error in the middle), it marks the ring broken: the next message cannot follow it.
pub(crate) struct SendGuard<'a> {
    link: &'a Link,
}

impl Drop for SendGuard<'_> {
    fn drop(&mut self) {
        let producer = &self.link.tx().producer;
        if unfinished(producer) {
            producer.broken.store(1, Release);
        }
        if producer.lock.swap(0, Release) & LOCK_CONTENDED != 0 {
            futex_wake(&producer.lock, u32::MAX);
        }
    }
}

/// Whether the message being sent was left half sent: some of it published but not all, or
/// its descriptor record sent (maybe) and the message not published whole.
fn unfinished(producer: &crate::sys::ProducerLine) -> bool {
    let tail = producer.tail.load(Relaxed);
    tail != producer.msg_end.load(Relaxed)
        && (tail != producer.msg_start.load(Relaxed) || producer.msg_fds.load(Relaxed) != 0)
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("connection memory is corrupt: {what}"))
}

impl Link {
    /// A new pair of rings: (end 0, end 1).
    pub(crate) fn pair() -> io::Result<(Link, Link)> {
        let map = Mapping::create(DATA_START + 2 * CAPACITY as usize)?;
        let id = &map.header().id;
        id.capacity.store(CAPACITY, Relaxed);
        id.magic.store(MAGIC, Release);
        let map = Arc::new(map);
        let mask = CAPACITY - 1;
        Ok((
            Link { map: map.clone(), side: 0, mask, local: Arc::default() },
            Link { map, side: 1, mask, local: Arc::default() },
        ))
    }

    /// The handle of end `side` on rings received from another process.
    pub(crate) fn open(fd: OwnedFd, side: u8) -> io::Result<Link> {
        let map = Mapping::open(fd)?;
        let id = &map.header().id;
        let capacity = id.capacity.load(Relaxed);
        if id.magic.load(Acquire) != MAGIC
            || side > 1
            || !capacity.is_power_of_two()
            || (DATA_START as u64)
                .checked_add(capacity.saturating_mul(2))
                .is_none_or(|len| len > map.len() as u64)
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a connection's memory"));
        }
        Ok(Link { map: Arc::new(map), side: usize::from(side), mask: capacity - 1, local: Arc::default() })
    }

    /// The memory file, for passing this end to another process.
    pub(crate) fn memfd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    /// Which end this is (0 or 1).
    pub(crate) fn side(&self) -> u8 {
        self.side as u8
    }

    fn capacity(&self) -> u64 {
        self.mask + 1
    }

    fn tx(&self) -> &RingHeader {
        &self.map.header().rings[self.side]
    }

    fn rx(&self) -> &RingHeader {
        &self.map.header().rings[1 - self.side]
    }

    fn data(&self, side: usize) -> usize {
        DATA_START + side * self.capacity() as usize
    }

    // ----------------------------------------------------------------------- receiving

    /// Bytes published and not yet consumed on the incoming ring.
    pub(crate) fn readable(&self) -> io::Result<u64> {
        let rx = self.rx();
        let head = rx.consumer.head.load(Relaxed);
        let n = rx.producer.tail.load(Acquire).wrapping_sub(head);
        if n > self.capacity() {
            return Err(corrupt("more bytes published than fit"));
        }
        Ok(n)
    }

    /// Bytes ever consumed from the incoming ring: the stream offset of the next byte.
    pub(crate) fn position(&self) -> u64 {
        self.rx().consumer.head.load(Relaxed)
    }

    /// Copies what is published (at most `buf.len()` bytes) into `buf` and consumes it.
    /// Returns the count, and whether the sender waits for room (ring its bell).
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        let mut filled = 0;
        self.consume(buf.len(), |offset, len| {
            self.map.read(offset, &mut buf[filled..filled + len]);
            filled += len;
        })
    }

    /// [`read`](Link::read) that appends at most `max` bytes to `buf` (growing it) instead
    /// of filling a slice: the buffer's new bytes are never zeroed first.
    pub(crate) fn read_append(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<(usize, bool)> {
        self.consume(max, |offset, len| self.map.read_append(offset, len, buf))
    }

    /// Consumes at most `max` published bytes, handing `copy` their places in the mapping
    /// (two when they wrap) in order; then checks whether the sender waits for room.
    fn consume(&self, max: usize, mut copy: impl FnMut(usize, usize)) -> io::Result<(usize, bool)> {
        let _consuming = self.local.consuming.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.rx();
        let head = rx.consumer.head.load(Relaxed);
        let available = rx.producer.tail.load(Acquire).wrapping_sub(head);
        if available > self.capacity() {
            return Err(corrupt("more bytes published than fit"));
        }
        let n = available.min(max as u64) as usize;
        if n == 0 {
            return Ok((0, false));
        }
        let at = (head & self.mask) as usize;
        let first = n.min(self.capacity() as usize - at);
        let base = self.data(1 - self.side);
        copy(base + at, first);
        if n > first {
            copy(base, n - first);
        }
        rx.consumer.head.store(head.wrapping_add(n as u64), Release);
        fence(SeqCst);
        let wake = rx.flags.writer_waiting.load(Relaxed) != 0 && rx.flags.writer_waiting.swap(0, AcqRel) != 0;
        Ok((n, wake))
    }

    /// Announces that this end is about to sleep until the incoming ring has data; returns
    /// whether it has some now (then it need not sleep).
    pub(crate) fn arm_reader(&self) -> io::Result<bool> {
        self.rx().flags.reader_waiting.store(1, Relaxed);
        fence(SeqCst);
        Ok(self.readable()? > 0)
    }

    /// Withdraws [`arm_reader`](Link::arm_reader).
    pub(crate) fn disarm_reader(&self) {
        self.rx().flags.reader_waiting.store(0, Relaxed);
    }

    /// What this end's handles in this process have read from the socket.
    pub(crate) fn control(&self) -> MutexGuard<'_, Control> {
        self.local.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the socket reached end of stream: the peer has closed.
    pub(crate) fn peer_gone(&self) -> bool {
        self.local.peer_gone.load(Acquire)
    }

    /// Records end of stream on the socket.
    pub(crate) fn set_peer_gone(&self) {
        self.local.peer_gone.store(true, Release);
    }

    /// Keeps `fds`, received for the message at ring offset `at` (the caller holds `ctl`).
    pub(crate) fn keep_fds(&self, ctl: &mut Control, at: u64, fds: Vec<OwnedFd>) {
        if !fds.is_empty() {
            ctl.fds.extend(fds.into_iter().map(|fd| (at, fd)));
            self.local.holds_fds.store(true, Release);
        }
    }

    /// How many descriptors are kept for messages at offsets `range`.
    pub(crate) fn fds_for(&self, range: std::ops::Range<u64>) -> usize {
        if !self.local.holds_fds.load(Acquire) {
            return 0;
        }
        self.control().fds.iter().filter(|(at, _)| range.contains(at)).count()
    }

    /// Takes the descriptors kept for messages before offset `range.end`: those at `range`
    /// are returned, those of earlier messages (skipped, cut short, read as bytes) closed.
    pub(crate) fn take_fds(&self, range: std::ops::Range<u64>) -> Vec<OwnedFd> {
        if !self.local.holds_fds.load(Acquire) {
            return Vec::new();
        }
        let mut ctl = self.control();
        let mut fds = Vec::new();
        while ctl.fds.front().is_some_and(|(at, _)| *at < range.end) {
            fds.extend(ctl.fds.pop_front().filter(|(at, _)| range.contains(at)).map(|(_, fd)| fd));
        }
        self.local.holds_fds.store(!ctl.fds.is_empty(), Release);
        fds
    }

    /// Whether descriptors or a partial record read from the socket wait for a message.
    pub(crate) fn holds_control(&self) -> bool {
        let ctl = self.control();
        !ctl.fds.is_empty() || !ctl.carry.is_empty() || !ctl.orphans.is_empty()
    }

    // ----------------------------------------------------------------------- sending

    /// Takes the sending side of the outgoing ring: one sender at a time, across threads and
    /// processes holding this end. A sender that died holding it is detected and replaced.
    pub(crate) fn lock(&self) -> SendGuard<'_> {
        let word = &self.tx().producer.lock;
        let me = current_pid();
        let mut spins = 0u32;
        loop {
            let held = match word.compare_exchange(0, me, Acquire, Relaxed) {
                Ok(_) => return SendGuard { link: self },
                Err(held) => held,
            };
            if spins < 200 && multicore() {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let contended = held | LOCK_CONTENDED;
            if held != contended && word.compare_exchange(held, contended, Relaxed, Relaxed).is_err() {
                continue;
            }
            let woken = futex_wait(word, contended, Some(Instant::now() + Duration::from_millis(20)));
            let owner = held & !LOCK_CONTENDED;
            if !woken
                && owner != me
                && !process_exists(owner)
                && word.compare_exchange(contended, me | LOCK_CONTENDED, AcqRel, Relaxed).is_ok()
            {
                // Taken over from a sender that died holding it. A message it left half sent
                // would run into the next one: the stream is broken for good (see `broken`).
                // One it never began to publish is simply gone.
                let producer = &self.tx().producer;
                if unfinished(producer) {
                    producer.broken.store(1, Release);
                }
                return SendGuard { link: self };
            }
        }
    }

    /// Whether a sender on the incoming (`incoming`) or outgoing ring died in the middle of a
    /// message it had published in part: the bytes that follow cannot be framed.
    pub(crate) fn broken(&self, incoming: bool) -> bool {
        let ring = if incoming { self.rx() } else { self.tx() };
        ring.producer.broken.load(Relaxed) != 0
    }

    /// Records the message about to be sent: from the current tail to `end`, and whether a
    /// descriptor record goes first (see `broken`).
    pub(crate) fn begin_message(&self, end: u64, fds: bool) {
        let producer = &self.tx().producer;
        producer.msg_start.store(producer.tail.load(Relaxed), Relaxed);
        producer.msg_end.store(end, Relaxed);
        producer.msg_fds.store(u32::from(fds), Relaxed);
    }

    /// Records that the message begun is published whole.
    pub(crate) fn end_message(&self) {
        let producer = &self.tx().producer;
        producer.msg_fds.store(0, Relaxed);
        producer.msg_start.store(producer.tail.load(Relaxed), Relaxed);
    }

    /// Bytes ever published on the outgoing ring.
    pub(crate) fn tail(&self) -> u64 {
        self.tx().producer.tail.load(Relaxed)
    }

    /// Free bytes in the outgoing ring.
    pub(crate) fn writable(&self) -> io::Result<u64> {
        let tx = self.tx();
        let used = tx.producer.tail.load(Relaxed).wrapping_sub(tx.consumer.head.load(Acquire));
        if used > self.capacity() {
            return Err(corrupt("more bytes consumed than published"));
        }
        Ok(self.capacity() - used)
    }

    /// Copies `bytes` into the outgoing ring at stream offset `at` (the caller holds the lock
    /// and has checked that they fit).
    pub(crate) fn write_at(&self, at: u64, bytes: &[u8]) {
        let offset = (at & self.mask) as usize;
        let first = bytes.len().min(self.capacity() as usize - offset);
        let base = self.data(self.side);
        self.map.write(base + offset, &bytes[..first]);
        self.map.write(base, &bytes[first..]);
    }

    /// Publishes the outgoing ring's bytes up to `tail`; returns whether the receiver sleeps
    /// (ring its bell).
    pub(crate) fn publish(&self, tail: u64) -> bool {
        let tx = self.tx();
        tx.producer.tail.store(tail, Release);
        fence(SeqCst);
        tx.flags.reader_waiting.load(Relaxed) != 0 && tx.flags.reader_waiting.swap(0, AcqRel) != 0
    }

    /// Announces that this end is about to sleep until the outgoing ring has room; returns
    /// whether it has some now.
    pub(crate) fn arm_writer(&self) -> io::Result<bool> {
        self.tx().flags.writer_waiting.store(1, Relaxed);
        fence(SeqCst);
        Ok(self.writable()? > 0)
    }

    /// Withdraws [`arm_writer`](Link::arm_writer).
    pub(crate) fn disarm_writer(&self) {
        self.tx().flags.writer_waiting.store(0, Relaxed);
    }

    /// Asks the peer's sender to ring the bell after its next message: a closed end does
    /// this, so that the peer's next send learns from the socket whether any handle on this
    /// end is left.
    pub(crate) fn want_bell(&self) {
        self.rx().flags.reader_waiting.store(1, SeqCst);
    }
}
