//! The types that may live in shared memory: [`Pod`], and [`AtomicPod`] for those with a std
//! atomic.

use std::fmt;
use std::sync::atomic::{
    AtomicBool, AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize,
};

/// Plain old data that can live in shared memory: the primitive numbers, `bool`, `char`, arrays
/// of them, and `#[repr(C)]` structs made only of them without padding.
///
/// A value is copied in and out of shared memory, never referred to by pointer from another
/// process, so it must mean the same thing in every process that reads its bytes.
///
/// # Safety
/// Implement it only for a `Copy` type that
/// - has no padding and no uninitialised bytes: every byte of every value is initialised
///   (`#[repr(C)]` with fields ordered so that none needs padding, or explicit padding fields);
/// - is valid when all its bytes are zero (a new [`Array`](crate::Array) is zero-filled);
/// - holds no pointer, reference, descriptor or anything else whose meaning is tied to one
///   process, and no interior mutability;
/// - consists only of fields that are themselves `Pod`, so that a value whose fields were last
///   written by different processes (see [`RawValue`](crate::RawValue)) is still valid.
///
/// ```
/// use multiproc_shmem::{Pod, Value};
///
/// #[derive(Debug, Clone, Copy, PartialEq)]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
///     id: u32,
///     flags: u32,
/// }
///
/// // SAFETY: repr(C) without padding (8 + 8 + 4 + 4 bytes, alignment 8); every field is Pod;
/// // all zeros is a valid Point.
/// unsafe impl Pod for Point {}
///
/// let p = Value::new(Point { x: 1.0, y: 2.0, id: 7, flags: 0 })?;
/// p.update(|p| p.x += 1.0).unwrap();
/// assert_eq!(p.get().unwrap().x, 2.0);
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => {
        $(
            // SAFETY: a primitive without padding, valid when zero, holding no pointer.
            unsafe impl Pod for $t {}
        )*
    };
}

pod!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);

// SAFETY: one initialised byte, valid when zero (false). Shared memory only ever holds a bool
// written as a bool by this crate (a handle's element type is checked when it is received), so
// no other byte value can appear there.
unsafe impl Pod for bool {}

// SAFETY: four initialised bytes, valid when zero ('\0'); as for bool, only valid chars are
// ever written as chars.
unsafe impl Pod for char {}

// SAFETY: an array of Pod elements has no padding between them (the size of a type is a
// multiple of its alignment), is zero when they are, and holds only Pod fields.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// A [`Pod`] type with a std atomic of the same size and representation: the element types of
/// [`RawValue::as_atomic`](crate::RawValue::as_atomic) and
/// [`RawArray::as_atomic`](crate::RawArray::as_atomic), for lock-free operations such as
/// `fetch_add` on shared memory.
///
/// # Safety
/// `Atomic` must have the same size and bit representation as `Self`, and an alignment of at
/// most 8 bytes.
pub unsafe trait AtomicPod: Pod {
    /// The std atomic type for `Self` (`AtomicU64` for `u64`).
    type Atomic: Send + Sync + fmt::Debug + 'static;
}

macro_rules! atomic_pod {
    ($($t:ty => $a:ty),*) => {
        $(
            // SAFETY: std documents that this atomic has the same size and in-memory
            // representation as the primitive; its alignment is at most 8.
            unsafe impl AtomicPod for $t {
                type Atomic = $a;
            }
        )*
    };
}

atomic_pod!(
    u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize,
    bool => AtomicBool
);
