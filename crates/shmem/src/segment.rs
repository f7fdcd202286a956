//! Where shared objects live, and how their handles travel.
//!
//! Small objects (locks, values, small arrays) are carved out of 64 KiB arenas of anonymous
//! shared memory; larger ones get a segment of their own. An arena's allocation cursor lives in
//! the arena itself, and bytes are never handed out twice, so an object's memory is never
//! reused while any process may still use it: an arena disappears when the last handle to any
//! object in it, in every process, is gone.
//!
//! A handle serializes as its segment's descriptor (an [`Fd`](multiproc_wire::Fd) index: the
//! descriptor rides beside the bytes) and its offsets, after a tag naming its kind (and element
//! type), checked when it is received. A receiver maps each segment once: segments are
//! registered by the identity of their file, so receiving more handles into the same arena
//! reuses the mapping and closes the extra descriptors.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind};
use crate::sys::{self, Fresh, HEADER, Segment, SegmentKey};

/// The size of an arena.
const ARENA_SIZE: usize = 64 * 1024;

/// Allocations above this size get a segment of their own.
const LARGE: usize = 8 * 1024;

/// The name anonymous segments show in `/proc/<pid>/maps` and `/proc/<pid>/fd`.
const NAME: &std::ffi::CStr = c"multiproc-shmem";

/// The arena new small objects are allocated from.
static CURRENT: Mutex<Option<Arc<Segment>>> = Mutex::new(None);

/// Every segment mapped by this process, by file identity.
static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

#[derive(Default)]
struct Registry {
    segments: HashMap<SegmentKey, Weak<Segment>>,
    /// Live entries at the last pruning: the map is pruned when it doubles.
    live: usize,
}

impl Registry {
    fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut guard = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        f(guard.get_or_insert_with(Registry::default))
    }

    fn insert(&mut self, seg: &Arc<Segment>) {
        if self.segments.len() >= 2 * self.live.max(16) {
            self.segments.retain(|_, weak| weak.strong_count() > 0);
            self.live = self.segments.len();
        }
        self.segments.insert(seg.key(), Arc::downgrade(seg));
    }
}

fn create(len: usize) -> Result<Arc<Segment>, Error> {
    let seg = Segment::anonymous(NAME, len)
        .map_err(|e| Error::io(format!("cannot create a shared memory segment of {len} bytes"), e))?;
    let seg = Arc::new(seg);
    Registry::with(|r| r.insert(&seg));
    Ok(seg)
}

/// Fresh, zero-filled shared memory for `size` bytes aligned to `align`.
///
/// # Errors
/// The operating system's error when a new segment is needed and cannot be made.
pub(crate) fn alloc(size: usize, align: usize) -> Result<Fresh, Error> {
    if size > LARGE {
        let len = HEADER
            .checked_add(align)
            .and_then(|n| n.checked_add(size))
            .map(|n| n.next_multiple_of(sys::page_size()))
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("cannot share {size} bytes")))?;
        let seg = create(len)?;
        return Ok(seg.alloc(size, align).expect("a new segment holds the allocation it was made for"));
    }
    let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(fresh) = current.as_ref().and_then(|seg| seg.alloc(size, align)) {
        return Ok(fresh);
    }
    let seg = create(ARENA_SIZE)?;
    let fresh = seg.alloc(size, align).expect("a new arena holds a small allocation");
    *current = Some(seg);
    Ok(fresh)
}

/// The segment behind a received descriptor: the mapping this process already has of the same
/// file, or a new one.
///
/// # Errors
/// The operating system's error, or an unsealed file.
pub(crate) fn attach(fd: OwnedFd) -> std::io::Result<Arc<Segment>> {
    let key = sys::file_key(fd.as_fd())?;
    Registry::with(|r| {
        if let Some(seg) = r.segments.get(&key).and_then(Weak::upgrade) {
            return Ok(seg);
        }
        let seg = Arc::new(Segment::attach(fd)?);
        r.insert(&seg);
        Ok(seg)
    })
}

/// The kinds of handle, written first in each handle's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Lock = 1,
    RLock = 2,
    Semaphore = 3,
    BoundedSemaphore = 4,
    Event = 5,
    Condition = 6,
    Barrier = 7,
    Value = 8,
    RawValue = 9,
    Array = 10,
    RawArray = 11,
}

impl Kind {
    /// The kind's name, with its article.
    fn name(self) -> &'static str {
        match self {
            Kind::Lock => "a Lock",
            Kind::RLock => "an RLock",
            Kind::Semaphore => "a Semaphore",
            Kind::BoundedSemaphore => "a BoundedSemaphore",
            Kind::Event => "an Event",
            Kind::Condition => "a Condition",
            Kind::Barrier => "a Barrier",
            Kind::Value => "a Value",
            Kind::RawValue => "a RawValue",
            Kind::Array => "an Array",
            Kind::RawArray => "a RawArray",
        }
    }

    fn from_u8(value: u8) -> Option<Kind> {
        [
            Kind::Lock,
            Kind::RLock,
            Kind::Semaphore,
            Kind::BoundedSemaphore,
            Kind::Event,
            Kind::Condition,
            Kind::Barrier,
            Kind::Value,
            Kind::RawValue,
            Kind::Array,
            Kind::RawArray,
        ]
        .into_iter()
        .find(|k| *k as u8 == value)
    }
}

/// A check of an element type `T`: a hash of its name, size and alignment, so that a handle
/// received as the wrong element type (a `Value<u8>` read as a `Value<bool>`) is refused.
pub(crate) fn type_check<T>() -> u64 {
    let name = std::any::type_name::<T>();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name
        .bytes()
        .chain(std::mem::size_of::<T>().to_le_bytes())
        .chain(std::mem::align_of::<T>().to_le_bytes())
    {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Serializes a handle: its [`Tag`], then `body`.
pub(crate) fn serialize_tagged<S: Serializer, B: Serialize>(
    serializer: S,
    kind: Kind,
    check: u64,
    body: B,
) -> Result<S::Ok, S::Error> {
    (Tag::new(kind, check), body).serialize(serializer)
}

/// Deserializes the body of a handle of `kind` (and element check `check`), after checking
/// its tag: a handle of another kind is refused before anything else is read.
pub(crate) fn deserialize_tagged<'de, D: Deserializer<'de>, B: Deserialize<'de>>(
    deserializer: D,
    kind: Kind,
    check: u64,
) -> Result<B, D::Error> {
    struct Tagged<B>(Kind, u64, PhantomData<fn() -> B>);

    impl<'de, B: Deserialize<'de>> Visitor<'de> for Tagged<B> {
        type Value = B;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0.name())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<B, A::Error> {
            let tag: Tag = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(0, &self))?;
            tag.expect::<A::Error>(self.0, self.1)?;
            seq.next_element()?.ok_or_else(|| A::Error::invalid_length(1, &self))
        }
    }

    deserializer.deserialize_tuple(2, Tagged(kind, check, PhantomData))
}

/// A handle's header: its kind and element type check.
#[derive(Serialize, Deserialize)]
pub(crate) struct Tag {
    kind: u8,
    check: u64,
}

impl Tag {
    fn new(kind: Kind, check: u64) -> Tag {
        Tag { kind: kind as u8, check }
    }

    /// Fails unless the tag is `kind` with `check`.
    fn expect<E: serde::de::Error>(&self, kind: Kind, check: u64) -> Result<(), E> {
        match Kind::from_u8(self.kind) {
            Some(k) if k == kind && self.check == check => Ok(()),
            Some(k) if k == kind => {
                Err(E::custom(format!("received {} of another element type than expected", kind.name())))
            }
            Some(k) => Err(E::custom(format!("expected {}, received {}", kind.name(), k.name()))),
            None => Err(E::custom(format!("expected {}, received an unknown handle", kind.name()))),
        }
    }
}

/// A place in a segment, as sent: the segment's descriptor and an offset.
#[derive(Serialize)]
pub(crate) struct PlaceOut<'a> {
    #[serde(with = "multiproc_wire::fd_serde")]
    fd: BorrowedFd<'a>,
    offset: u64,
}

impl PlaceOut<'_> {
    pub(crate) fn new(seg: &Segment, offset: usize) -> PlaceOut<'_> {
        PlaceOut { fd: seg.fd(), offset: offset as u64 }
    }
}

/// A place in a segment, as received.
#[derive(Deserialize)]
pub(crate) struct PlaceIn {
    #[serde(with = "multiproc_wire::fd_serde")]
    fd: OwnedFd,
    offset: u64,
}

impl PlaceIn {
    /// Maps (or finds) the segment; returns it with the offset.
    pub(crate) fn attach<E: serde::de::Error>(self) -> Result<(Arc<Segment>, u64), E> {
        let seg =
            attach(self.fd).map_err(|e| E::custom(format!("cannot map a received shared segment: {e}")))?;
        Ok((seg, self.offset))
    }
}

/// The error for a received place that does not fit its segment.
pub(crate) fn bad_place<E: serde::de::Error>(what: &str) -> E {
    E::custom(format!("received {what} lies outside its shared segment"))
}
