//! Views of `Pod` elements in shared memory: [`RawSlots`], read and written only atomically, and
//! [`LockedSlots`], handed out as `&mut [T]` only to the holder of their lock.

use std::marker::PhantomData;
use std::mem::{self, MaybeUninit};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

use super::mutex::Held;
use super::pod::{AtomicPod, Pod};
use super::segment::{CellId, Fresh, Segment, fits};

/// The alignment of element storage: the element's, and at least 8 so that the std atomic of
/// any [`AtomicPod`] fits.
pub(crate) fn slot_align<T>() -> usize {
    mem::align_of::<T>().max(8)
}

/// `len` elements of `T` at `offset` of `seg`, in bounds and aligned (checked when made).
struct Slots<T> {
    seg: Arc<Segment>,
    offset: usize,
    len: usize,
    _elem: PhantomData<fn() -> T>,
}

impl<T> Clone for Slots<T> {
    fn clone(&self) -> Slots<T> {
        Slots { seg: self.seg.clone(), offset: self.offset, len: self.len, _elem: PhantomData }
    }
}

impl<T: Pod> Slots<T> {
    fn fresh(fresh: Fresh, len: usize) -> Slots<T> {
        let (seg, offset, bytes) = fresh.into_parts();
        let size = len.checked_mul(mem::size_of::<T>()).expect("element storage fits in memory");
        assert!(bytes >= size && offset % slot_align::<T>() == 0, "allocation does not fit its elements");
        Slots { seg, offset, len, _elem: PhantomData }
    }

    /// Fresh memory holding a copy of `values`.
    fn fresh_from(fresh: Fresh, values: &[T]) -> Slots<T> {
        let slots = Slots::fresh(fresh, values.len());
        // SAFETY: the destination is in bounds and aligned for `values.len()` elements (checked
        // by `fresh`) and, being fresh, is known to no other thread or process, so nothing
        // reads or writes it concurrently; the source is a valid slice of Pod values.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), slots.ptr(), values.len()) };
        slots
    }

    fn attach(seg: Arc<Segment>, offset: u64, len: u64) -> Option<Slots<T>> {
        let len = usize::try_from(len).ok()?;
        let size = len.checked_mul(mem::size_of::<T>())?;
        let offset = fits(&seg, offset, size, slot_align::<T>())?;
        Some(Slots { seg, offset, len, _elem: PhantomData })
    }

    fn ptr(&self) -> *mut T {
        self.seg.as_ptr().wrapping_add(self.offset).cast::<T>()
    }

    /// The address of element `index`.
    ///
    /// # Panics
    /// If `index` is out of bounds.
    fn elem(&self, index: usize) -> *mut T {
        assert!(index < self.len, "index {index} out of range for {} elements", self.len);
        self.ptr().wrapping_add(index)
    }
}

/// The unit in which a `T` is copied to or from shared memory: its alignment, at most 8 bytes.
/// Every primitive field of a `Pod` of at most 8 bytes then lies inside one unit, so a copy
/// racing with a writer never tears a field, only a struct between fields.
const fn unit<T>() -> usize {
    let align = mem::align_of::<T>();
    if align < 8 { align } else { 8 }
}

macro_rules! copy_units {
    ($word:ty, $atomic:ty, load, $shared:expr, $local:expr, $n:expr) => {
        for i in 0..$n {
            // SAFETY: (caller) `$shared` is aligned to the unit and valid for `$n` units of
            // shared memory accessed only atomically; `$local` is a writable local of `$n`
            // units, aligned for T and so for the unit.
            unsafe {
                let value = <$atomic>::from_ptr($shared.cast::<$word>().add(i)).load(Ordering::Acquire);
                $local.cast::<$word>().add(i).write(value);
            }
        }
    };
    ($word:ty, $atomic:ty, store, $shared:expr, $local:expr, $n:expr) => {
        for i in 0..$n {
            // SAFETY: as for load, with `$local` readable: a Pod value has no uninitialised
            // bytes.
            unsafe {
                let value = $local.cast::<$word>().add(i).read();
                <$atomic>::from_ptr($shared.cast::<$word>().add(i)).store(value, Ordering::Release);
            }
        }
    };
}

/// Reads a `T` from shared memory with acquire loads, one [`unit`] at a time.
fn atomic_load<T: Pod>(shared: *mut T) -> T {
    let mut out = MaybeUninit::<T>::uninit();
    let local = out.as_mut_ptr();
    let units = mem::size_of::<T>() / unit::<T>();
    match unit::<T>() {
        8 => copy_units!(u64, AtomicU64, load, shared, local, units),
        4 => copy_units!(u32, AtomicU32, load, shared, local, units),
        2 => copy_units!(u16, AtomicU16, load, shared, local, units),
        _ => copy_units!(u8, AtomicU8, load, shared, local, units),
    }
    // SAFETY: every byte of `out` was written above (the size of T is a multiple of its
    // unit), with bytes that another cooperating process wrote as a T, field by field; Pod
    // guarantees such a combination is a valid T.
    unsafe { out.assume_init() }
}

/// Writes `value` to shared memory with release stores, one [`unit`] at a time.
fn atomic_store<T: Pod>(shared: *mut T, value: T) {
    let local = &value as *const T;
    let units = mem::size_of::<T>() / unit::<T>();
    match unit::<T>() {
        8 => copy_units!(u64, AtomicU64, store, shared, local, units),
        4 => copy_units!(u32, AtomicU32, store, shared, local, units),
        2 => copy_units!(u16, AtomicU16, store, shared, local, units),
        _ => copy_units!(u8, AtomicU8, store, shared, local, units),
    }
}

/// Elements that any thread of any process may read and write at any time: every access is
/// atomic (acquire loads and release stores, per [`unit`]), and no reference to them is ever
/// handed out except as std atomics.
pub(crate) struct RawSlots<T>(Slots<T>);

impl<T> Clone for RawSlots<T> {
    fn clone(&self) -> RawSlots<T> {
        RawSlots(self.0.clone())
    }
}

impl<T: Pod> RawSlots<T> {
    /// `len` zeroed elements in fresh memory.
    pub(crate) fn fresh(fresh: Fresh, len: usize) -> RawSlots<T> {
        RawSlots(Slots::fresh(fresh, len))
    }

    /// A copy of `values` in fresh memory.
    pub(crate) fn fresh_from(fresh: Fresh, values: &[T]) -> RawSlots<T> {
        RawSlots(Slots::fresh_from(fresh, values))
    }

    /// `len` elements at `offset` of a received segment; `None` if they do not fit.
    pub(crate) fn attach(seg: Arc<Segment>, offset: u64, len: u64) -> Option<RawSlots<T>> {
        Slots::attach(seg, offset, len).map(RawSlots)
    }

    /// The segment, offset and length.
    pub(crate) fn parts(&self) -> (&Arc<Segment>, usize, usize) {
        (&self.0.seg, self.0.offset, self.0.len)
    }

    /// The number of elements.
    pub(crate) fn len(&self) -> usize {
        self.0.len
    }

    /// Element `index`.
    ///
    /// # Panics
    /// If `index` is out of bounds.
    pub(crate) fn load(&self, index: usize) -> T {
        atomic_load(self.0.elem(index))
    }

    /// Sets element `index`.
    ///
    /// # Panics
    /// If `index` is out of bounds.
    pub(crate) fn store(&self, index: usize, value: T) {
        atomic_store(self.0.elem(index), value)
    }
}

impl<T: AtomicPod> RawSlots<T> {
    /// The elements as std atomics.
    pub(crate) fn atomics(&self) -> &[T::Atomic] {
        // SAFETY: the elements are in bounds and aligned to at least 8 (checked when made), so
        // aligned for T::Atomic, which has T's size and representation (AtomicPod); the
        // mapping lives while `self` is borrowed; raw slots are only ever accessed atomically.
        unsafe { std::slice::from_raw_parts(self.0.ptr().cast::<T::Atomic>(), self.0.len) }
    }
}

/// Elements guarded by a process-shared lock: every process reaches them only through a
/// [`Held`] of that lock, so the holder may have `&mut [T]`.
pub(crate) struct LockedSlots<T> {
    slots: Slots<T>,
    lock: CellId,
}

impl<T> Clone for LockedSlots<T> {
    fn clone(&self) -> LockedSlots<T> {
        LockedSlots { slots: self.slots.clone(), lock: self.lock }
    }
}

impl<T: Pod> LockedSlots<T> {
    /// `len` zeroed elements in fresh memory, guarded from now on by the mutex `lock`.
    pub(crate) fn fresh(fresh: Fresh, len: usize, lock: CellId) -> LockedSlots<T> {
        LockedSlots { slots: Slots::fresh(fresh, len), lock }
    }

    /// A copy of `values` in fresh memory, guarded from now on by the mutex `lock`.
    pub(crate) fn fresh_from(fresh: Fresh, values: &[T], lock: CellId) -> LockedSlots<T> {
        LockedSlots { slots: Slots::fresh_from(fresh, values), lock }
    }

    /// `len` elements at `offset` of a received segment, guarded by `lock`; `None` if they do
    /// not fit.
    pub(crate) fn attach(seg: Arc<Segment>, offset: u64, len: u64, lock: CellId) -> Option<LockedSlots<T>> {
        Slots::attach(seg, offset, len).map(|slots| LockedSlots { slots, lock })
    }

    /// The segment, offset and length.
    pub(crate) fn parts(&self) -> (&Arc<Segment>, usize, usize) {
        (&self.slots.seg, self.slots.offset, self.slots.len)
    }

    /// The number of elements.
    pub(crate) fn len(&self) -> usize {
        self.slots.len
    }

    /// Whether `held` is a hold of this storage's lock.
    pub(crate) fn is_guarded_by(&self, held: &Held) -> bool {
        held.id() == self.lock
    }

    fn check(&self, held: &Held) {
        assert!(self.is_guarded_by(held), "the lock held does not guard this shared data");
    }

    /// The elements, for as long as the lock stays held.
    ///
    /// # Panics
    /// If `held` holds another lock.
    pub(crate) fn slice<'a>(&'a self, held: &'a Held) -> &'a [T] {
        self.check(held);
        // SAFETY: in bounds and aligned (checked when made), mapped while `self` is borrowed.
        // Every process reaches these bytes only through a hold of their lock, and `held`
        // proves this thread holds it for 'a; only shared references can be derived from a
        // shared borrow of `held`, so nothing mutates them meanwhile.
        unsafe { std::slice::from_raw_parts(self.slots.ptr(), self.slots.len) }
    }

    /// The elements, mutably, for as long as the lock stays held.
    ///
    /// # Panics
    /// If `held` holds another lock.
    pub(crate) fn slice_mut<'a>(&'a self, held: &'a mut Held) -> &'a mut [T] {
        self.check(held);
        // SAFETY: as for `slice`; the exclusive borrow of the only hold of this lock in the
        // system (a mutex has one holder, an error-checking one cannot be held twice by a
        // thread) makes this the only reference to the elements anywhere for 'a.
        unsafe { std::slice::from_raw_parts_mut(self.slots.ptr(), self.slots.len) }
    }
}
