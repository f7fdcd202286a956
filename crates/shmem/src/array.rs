//! `Array<T>` (shared elements with a lock) and `RawArray<T>` (without one).

use std::fmt;
use std::ops::{Bound, Deref, DerefMut, Range, RangeBounds};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, LockResult, LockTimeoutError, OwnerDied, Result, TryLockError};
use crate::lock::{Got, Lock, LockGuard, lock_mutex};
use crate::segment::{
    self, Kind, PlaceIn, PlaceOut, bad_place, deserialize_tagged, serialize_tagged, type_check,
};
use crate::sys::{AtomicPod, Fresh, LockedSlots, Pod, RawSlots, Wait, slot_align};

/// Fresh memory for `len` elements of `T`.
fn alloc_elems<T>(len: usize) -> Result<Fresh> {
    let size =
        len.checked_mul(std::mem::size_of::<T>()).filter(|&size| isize::try_from(size).is_ok()).ok_or_else(
            || Error::new(ErrorKind::InvalidInput, format!("an array of {len} elements is too large")),
        )?;
    segment::alloc(size, slot_align::<T>())
}

/// The index range `range` of a sequence of `len` elements.
///
/// # Panics
/// If the range is decreasing or goes past `len`.
fn index_range(range: impl RangeBounds<usize>, len: usize) -> Range<usize> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1).expect("range start overflows"),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1).expect("range end overflows"),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => len,
    };
    assert!(start <= end, "range starts at {start} but ends at {end}");
    assert!(end <= len, "range end {end} out of range for {len} elements");
    start..end
}

/// Elements of `T` in shared memory with a lock (CPython's `multiprocessing.Array`).
///
/// Every access goes through the lock: [`lock`](Array::lock) gives a guard that dereferences
/// to `&mut [T]` (slices, iteration, sorting: everything a slice does) while it holds the lock;
/// [`get`](Array::get), [`set`](Array::set) and [`to_vec`](Array::to_vec) take it for one
/// operation. Handles clone cheaply and pass to child processes and through a `Connection`,
/// referring to the same memory.
///
/// ```
/// use multiproc_shmem::Array;
///
/// let arr = Array::from_slice(&[1, 2, 3])?;
/// for x in arr.lock().unwrap().iter_mut() {
///     *x += 1;
/// }
/// assert_eq!(arr.to_vec().unwrap(), [2, 3, 4]);
/// assert_eq!(&arr.lock().unwrap()[1..], [3, 4]);
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
///
/// Owner death and the differences from CPython are as for [`Value`](crate::Value).
pub struct Array<T> {
    lock: Lock,
    data: LockedSlots<T>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Array<T> {
        Array { lock: self.lock.clone(), data: self.data.clone() }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Array");
        d.field("len", &self.len());
        if let Ok(guard) = self.try_lock() {
            d.field("elements", &&*guard);
        }
        d.finish()
    }
}

impl<T: Pod> Array<T> {
    /// `len` zeroed elements with a lock of their own (CPython's `Array(typecode, size)`).
    ///
    /// # Errors
    /// When the system cannot provide shared memory, or `len` elements do not fit in memory.
    pub fn new(len: usize) -> Result<Array<T>> {
        let lock = Lock::new()?;
        let data = LockedSlots::fresh(alloc_elems::<T>(len)?, len, lock.id());
        Ok(Array { lock, data })
    }

    /// A copy of `values` with a lock of its own (CPython's `Array(typecode, sequence)`).
    ///
    /// # Errors
    /// As [`new`](Array::new).
    pub fn from_slice(values: &[T]) -> Result<Array<T>> {
        Array::with_lock(values, Lock::new()?)
    }

    /// A copy of `values` guarded by `lock`, which may guard other data too (CPython's
    /// `Array(..., lock=lock)`).
    ///
    /// # Errors
    /// As [`new`](Array::new).
    pub fn with_lock(values: &[T], lock: Lock) -> Result<Array<T>> {
        let data = LockedSlots::fresh_from(alloc_elems::<T>(values.len())?, values, lock.id());
        Ok(Array { lock, data })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_with(&self, wait: Wait) -> Got<ArrayGuard<'_, T>> {
        lock_mutex(self.lock.mutex(), wait, "Array::lock")
            .map(|held| ArrayGuard { guard: LockGuard::from_held(held), data: &self.data })
    }

    /// Takes the lock and returns a guard that dereferences to the elements.
    ///
    /// # Errors
    /// [`OwnerDied`] (with the guard) when the previous holder died holding the lock.
    ///
    /// # Panics
    /// If the calling thread already holds the lock.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.lock_with(Wait::Forever).blocking()
    }

    /// Takes the lock if it is free.
    ///
    /// # Errors
    /// As [`Lock::try_acquire`].
    pub fn try_lock(&self) -> std::result::Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        self.lock_with(Wait::No).trying()
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Lock::acquire_timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ArrayGuard<'_, T>, LockTimeoutError<ArrayGuard<'_, T>>> {
        self.lock_with(Wait::timeout(Some(timeout))).timed()
    }

    /// Element `index` (CPython's `arr[i]`), read under the lock.
    ///
    /// # Errors
    /// [`OwnerDied`] (with the element) when the previous holder died holding the lock.
    ///
    /// # Panics
    /// If `index` is out of bounds, as slice indexing does.
    pub fn get(&self, index: usize) -> LockResult<T> {
        match self.lock() {
            Ok(guard) => Ok(guard[index]),
            Err(died) => Err(OwnerDied::new(died.get_ref()[index])),
        }
    }

    /// Sets element `index` (CPython's `arr[i] = x`), under the lock.
    ///
    /// # Errors
    /// [`OwnerDied`] when the previous holder died holding the lock; the element is set.
    ///
    /// # Panics
    /// If `index` is out of bounds, as slice indexing does.
    pub fn set(&self, index: usize, value: T) -> LockResult<()> {
        match self.lock() {
            Ok(mut guard) => {
                guard[index] = value;
                Ok(())
            }
            Err(died) => {
                died.into_inner()[index] = value;
                Err(OwnerDied::new(()))
            }
        }
    }

    /// A copy of the elements (CPython's `arr[:]`), taken under the lock.
    ///
    /// # Errors
    /// [`OwnerDied`] (with the copy) when the previous holder died holding the lock.
    pub fn to_vec(&self) -> LockResult<Vec<T>> {
        match self.lock() {
            Ok(guard) => Ok(guard.to_vec()),
            Err(died) => Err(OwnerDied::new(died.get_ref().to_vec())),
        }
    }

    /// The lock (CPython's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// The elements, reached through a guard of their lock taken some other way.
    ///
    /// # Panics
    /// If `guard` holds another lock than this array's.
    pub fn get_mut<'g>(&'g self, guard: &'g mut LockGuard<'_>) -> &'g mut [T] {
        self.data.slice_mut(guard.held_mut())
    }
}

/// The lock of an [`Array`], held by the calling thread; dereferences to the elements.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    guard: LockGuard<'a>,
    data: &'a LockedSlots<T>,
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.data.slice(self.guard.held())
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.data.slice_mut(self.guard.held_mut())
    }
}

impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let (seg, offset, len) = self.data.parts();
        let body = (len as u64, &self.lock, PlaceOut::new(seg, offset));
        serialize_tagged(serializer, Kind::Array, type_check::<T>(), body)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Array<T>, D::Error> {
        let (len, lock, place): (u64, Lock, PlaceIn) =
            deserialize_tagged(deserializer, Kind::Array, type_check::<T>())?;
        let (seg, offset) = place.attach()?;
        let data = LockedSlots::attach(seg, offset, len, lock.id()).ok_or_else(|| bad_place("an Array"))?;
        Ok(Array { lock, data })
    }
}

/// Elements of `T` in shared memory without a lock (CPython's `RawArray`, or
/// `Array(..., lock=False)`).
///
/// Every element is read and written atomically per machine word, as for
/// [`RawValue`](crate::RawValue); copies out of the array ([`to_vec`](RawArray::to_vec),
/// [`slice`](RawArray::slice), [`iter`](RawArray::iter)) are element by element, not a snapshot.
/// Integer and `bool` elements are also available as std atomics
/// ([`as_atomic`](RawArray::as_atomic)).
///
/// ```
/// use multiproc_shmem::RawArray;
///
/// let arr = RawArray::<f64>::new(4)?;
/// arr.set(1, 2.5);
/// arr.set_slice(2, &[3.0, 4.0]);
/// assert_eq!(arr.to_vec(), [0.0, 2.5, 3.0, 4.0]);
/// assert_eq!(arr.iter().sum::<f64>(), 9.5);
/// assert_eq!(arr.slice(1..3), [2.5, 3.0]);
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
pub struct RawArray<T> {
    data: RawSlots<T>,
}

impl<T> Clone for RawArray<T> {
    fn clone(&self) -> RawArray<T> {
        RawArray { data: self.data.clone() }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Pod> RawArray<T> {
    /// `len` zeroed elements.
    ///
    /// # Errors
    /// When the system cannot provide shared memory, or `len` elements do not fit in memory.
    pub fn new(len: usize) -> Result<RawArray<T>> {
        Ok(RawArray { data: RawSlots::fresh(alloc_elems::<T>(len)?, len) })
    }

    /// A copy of `values`.
    ///
    /// # Errors
    /// As [`new`](RawArray::new).
    pub fn from_slice(values: &[T]) -> Result<RawArray<T>> {
        Ok(RawArray { data: RawSlots::fresh_from(alloc_elems::<T>(values.len())?, values) })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `index`.
    ///
    /// # Panics
    /// If `index` is out of bounds.
    pub fn get(&self, index: usize) -> T {
        self.data.load(index)
    }

    /// Sets element `index`.
    ///
    /// # Panics
    /// If `index` is out of bounds.
    pub fn set(&self, index: usize, value: T) {
        self.data.store(index, value)
    }

    /// A copy of the elements in `range` (CPython's `arr[a:b]`).
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Vec<T> {
        index_range(range, self.len()).map(|i| self.data.load(i)).collect()
    }

    /// Copies `values` into the elements from `start` on (CPython's `arr[a:b] = values`).
    ///
    /// # Panics
    /// If the values do not fit.
    pub fn set_slice(&self, start: usize, values: &[T]) {
        let range = index_range(start..start.saturating_add(values.len()), self.len());
        for (i, value) in range.zip(values) {
            self.data.store(i, *value);
        }
    }

    /// A copy of all the elements.
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }

    /// The elements, copied out one by one.
    pub fn iter(&self) -> RawIter<'_, T> {
        RawIter { array: self, range: 0..self.len() }
    }
}

impl<T: AtomicPod> RawArray<T> {
    /// The elements as std atomics (`[AtomicU32]` for `u32`), for lock-free operations.
    pub fn as_atomic(&self) -> &[T::Atomic] {
        self.data.atomics()
    }
}

/// An iterator over copies of the elements of a [`RawArray`].
pub struct RawIter<'a, T> {
    array: &'a RawArray<T>,
    range: Range<usize>,
}

impl<T> fmt::Debug for RawIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawIter").field("range", &self.range).finish()
    }
}

impl<T: Pod> Iterator for RawIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.range.next().map(|i| self.array.get(i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.range.size_hint()
    }
}

impl<T: Pod> DoubleEndedIterator for RawIter<'_, T> {
    fn next_back(&mut self) -> Option<T> {
        self.range.next_back().map(|i| self.array.get(i))
    }
}

impl<T: Pod> ExactSizeIterator for RawIter<'_, T> {}

impl<'a, T: Pod> IntoIterator for &'a RawArray<T> {
    type Item = T;
    type IntoIter = RawIter<'a, T>;

    fn into_iter(self) -> RawIter<'a, T> {
        self.iter()
    }
}

impl<T: Pod> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let (seg, offset, len) = self.data.parts();
        serialize_tagged(
            serializer,
            Kind::RawArray,
            type_check::<T>(),
            (len as u64, PlaceOut::new(seg, offset)),
        )
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<RawArray<T>, D::Error> {
        let (len, place): (u64, PlaceIn) =
            deserialize_tagged(deserializer, Kind::RawArray, type_check::<T>())?;
        let (seg, offset) = place.attach()?;
        let data = RawSlots::attach(seg, offset, len).ok_or_else(|| bad_place("a RawArray"))?;
        Ok(RawArray { data })
    }
}
