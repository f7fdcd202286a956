//! Mappings of shared memory (`Segment`), fresh allocations inside them (`Fresh`), and typed
//! references to process-shared cells (`Shared<C>`).

use std::ffi::CStr;
use std::io;
use std::marker::PhantomData;
use std::mem;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use multiproc_wire::sys::cvt;

/// Bytes at the start of every anonymous segment reserved for its allocation header.
pub(crate) const HEADER: usize = 64;

/// Identifies the file behind a segment (device and inode), whatever address it is mapped at
/// and whichever descriptor refers to it.
pub(crate) type SegmentKey = (u64, u64);

/// A shared mapping of a whole memory file (a sealed `memfd`, or a POSIX shared memory object),
/// with the descriptor that keeps the file alive and lets it be sent to other processes.
///
/// Anonymous segments start with a small header holding the allocation cursor ([`alloc`]), in
/// the shared memory itself, so that processes that share an arena (a forked child and its
/// parent) never hand out the same bytes twice.
///
/// [`alloc`]: Segment::alloc
pub(crate) struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
    key: SegmentKey,
    /// Created by this process (or its forked parent) as an allocation arena.
    arena: bool,
}

// SAFETY: a Segment owns its mapping and descriptor, neither of which is tied to a thread: the
// mapping stays valid, wherever the Segment is moved, until it is dropped.
unsafe impl Send for Segment {}

// SAFETY: through `&Segment` the rest of the crate only gets the descriptor (thread-safe), raw
// addresses, atomic views (`bytes`, `Shared<C>` with `C: Cell`) and the allocation cursor, an
// atomic: nothing that would let two threads race on non-atomic memory.
unsafe impl Sync for Segment {}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("fd", &self.fd.as_raw_fd()).field("len", &self.len).finish()
    }
}

/// `fstat`: size, device and inode.
fn stat(fd: BorrowedFd<'_>) -> io::Result<(usize, SegmentKey)> {
    // SAFETY: stat is plain old data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: `st` is writable.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    let size = usize::try_from(st.st_size).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok((size, (st.st_dev, st.st_ino)))
}

/// The identity of the file behind `fd`.
///
/// # Errors
/// The operating system's error.
pub(crate) fn file_key(fd: BorrowedFd<'_>) -> io::Result<SegmentKey> {
    stat(fd).map(|(_, key)| key)
}

/// The seals that make an anonymous segment's size permanent: nobody can shrink it under a
/// mapping (which would turn accesses into `SIGBUS`) or change the seals.
const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

impl Segment {
    /// A new zero-filled anonymous segment of `len` bytes (a sealed `memfd`): it has no name,
    /// so nothing can leak in `/dev/shm`, and it disappears with the last descriptor and
    /// mapping.
    ///
    /// # Errors
    /// The operating system's error (`EMFILE`, `ENOMEM`).
    pub(crate) fn anonymous(name: &CStr, len: usize) -> io::Result<Segment> {
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let fd = cvt(unsafe { libc::memfd_create(name.as_ptr(), flags) })?;
        // SAFETY: memfd_create returned a new descriptor that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        super::ftruncate(fd.as_fd(), len)?;
        // SAFETY: F_ADD_SEALS reads only its integer arguments.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) })?;
        Segment::map(fd, true)
    }

    /// Maps an anonymous segment received from another process. It must be sealed against
    /// shrinking, as every segment this crate creates is.
    ///
    /// # Errors
    /// `InvalidData` for an unsealed or empty file, or the operating system's error.
    pub(crate) fn attach(fd: OwnedFd) -> io::Result<Segment> {
        // SAFETY: F_GET_SEALS reads only its integer arguments.
        let seals = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })?;
        if seals & libc::F_SEAL_SHRINK == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared segment is not sealed against shrinking",
            ));
        }
        Segment::map(fd, false)
    }

    /// Maps a named (POSIX shared memory) segment, whatever its size.
    ///
    /// # Errors
    /// `InvalidInput` for a segment of size 0, or the operating system's error.
    pub(crate) fn named(fd: OwnedFd) -> io::Result<Segment> {
        Segment::map(fd, false)
    }

    fn map(fd: OwnedFd, arena: bool) -> io::Result<Segment> {
        let (len, key) = stat(fd.as_fd())?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "shared memory segment has size 0"));
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a new shared mapping chosen by the kernel (null hint) of a file at least
        // `len` bytes long; it overlaps nothing that exists.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
        Ok(Segment { ptr, len, fd, key, arena })
    }

    /// The length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The file's identity.
    pub(crate) fn key(&self) -> SegmentKey {
        self.key
    }

    /// The descriptor, to send the segment to another process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The address of the first byte (valid while `self` lives).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The whole mapping as atomic bytes: the only sound byte view of memory that other
    /// processes may write at any moment.
    pub(crate) fn bytes(&self) -> &[AtomicU8] {
        // SAFETY: the mapping is `len` readable and writable bytes, alive while `self` is
        // borrowed; AtomicU8 has the size and alignment of u8, every bit pattern is valid, and
        // all access through the slice is atomic.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU8>(), self.len) }
    }

    /// The allocation cursor in the header of an anonymous segment.
    fn cursor(&self) -> &AtomicU64 {
        debug_assert!(self.len >= HEADER);
        // SAFETY: the mapping starts page-aligned with at least HEADER bytes; the first 8
        // bytes are only ever accessed as this atomic.
        unsafe { &*self.ptr.as_ptr().cast::<AtomicU64>() }
    }

    /// Reserves `size` bytes aligned to `align` (a power of two no larger than a page) that
    /// nobody has used: the cursor in the shared header only moves forward, so bytes are never
    /// handed out twice, by this process or any other that shares the arena. `None` when the
    /// segment is full or is not an arena of this process.
    pub(crate) fn alloc(self: &Arc<Segment>, size: usize, align: usize) -> Option<Fresh> {
        debug_assert!(align.is_power_of_two() && align <= super::page_size());
        if !self.arena {
            return None;
        }
        let cursor = self.cursor();
        let mut used = cursor.load(Ordering::Relaxed);
        loop {
            let start = (HEADER + usize::try_from(used).ok()?).checked_next_multiple_of(align)?;
            let end = start.checked_add(size)?;
            if end > self.len {
                return None;
            }
            match cursor.compare_exchange_weak(
                used,
                (end - HEADER) as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Fresh { seg: self.clone(), offset: start, len: size }),
                Err(now) => used = now,
            }
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this address and length and is unmapped
        // once; every reference into it borrows an Arc<Segment>, so none outlives this drop.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Proof that a piece of memory is fresh: zero-filled, and not yet known to any other handle,
/// thread or process. Only [`Segment::alloc`] makes one.
#[derive(Debug)]
pub(crate) struct Fresh {
    seg: Arc<Segment>,
    offset: usize,
    len: usize,
}

/// Proof, given to [`Cell::init`], that the memory being initialised is [`Fresh`].
#[derive(Debug)]
pub(crate) struct InitToken(());

impl Fresh {
    /// Turns the allocation into a cell, initialising it (a pthread mutex needs it).
    ///
    /// # Errors
    /// The initialiser's error.
    ///
    /// # Panics
    /// If the allocation is too small or misaligned for `C` (a bug in the caller).
    pub(crate) fn into_cell<C: Cell>(self) -> io::Result<Shared<C>> {
        assert!(self.len >= mem::size_of::<C>(), "allocation too small for its cell");
        let shared: Shared<C> =
            Shared::attach(self.seg, self.offset as u64).expect("allocation aligned for its cell");
        shared.init(&InitToken(()))?;
        Ok(shared)
    }

    /// Turns the allocation into `n` cells placed `stride` bytes apart, initialising each;
    /// returns the first (the others are [`Shared::nth`] of it).
    ///
    /// # Errors
    /// The first initialiser's error.
    ///
    /// # Panics
    /// If the allocation is too small or misaligned for the cells (a bug in the caller).
    pub(crate) fn into_cells<C: Cell>(self, stride: usize, n: usize) -> io::Result<Shared<C>> {
        assert!(n > 0 && stride >= mem::size_of::<C>() && stride % mem::align_of::<C>() == 0);
        assert!(self.len >= stride * (n - 1) + mem::size_of::<C>(), "allocation too small for its cells");
        let first: Shared<C> =
            Shared::attach(self.seg, self.offset as u64).expect("allocation aligned for its cells");
        for i in 0..n {
            first.nth(i, stride).expect("allocation holds its cells").init(&InitToken(()))?;
        }
        Ok(first)
    }

    /// The segment, offset and length of the allocation.
    pub(super) fn into_parts(self) -> (Arc<Segment>, usize, usize) {
        (self.seg, self.offset, self.len)
    }
}

/// A fixed-layout structure that lives in shared memory and is used by several processes.
///
/// # Safety
/// Implementors are `#[repr(C)]`, valid for every bit pattern (all zeros included), and only
/// ever mutated through shared references with operations that stay sound while other threads
/// and processes use the same bytes: atomics and process-shared pthread objects.
pub(crate) unsafe trait Cell: Sync + Sized {
    /// Prepares fresh (zeroed, unpublished) memory; the token proves that it is fresh.
    ///
    /// # Errors
    /// The operating system's error.
    fn init(&self, _fresh: &InitToken) -> io::Result<()> {
        Ok(())
    }
}

/// Where a cell lives: the segment's identity and the offset. Equal for every mapping of the
/// same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CellId {
    key: SegmentKey,
    offset: usize,
}

/// A reference to a `C` inside a shared segment that keeps the segment mapped.
pub(crate) struct Shared<C> {
    seg: Arc<Segment>,
    offset: usize,
    _cell: PhantomData<fn() -> C>,
}

impl<C> Clone for Shared<C> {
    fn clone(&self) -> Shared<C> {
        Shared { seg: self.seg.clone(), offset: self.offset, _cell: PhantomData }
    }
}

impl<C> std::fmt::Debug for Shared<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("segment", &self.seg).field("offset", &self.offset).finish()
    }
}

/// Whether `[offset, offset + size)` lies in `seg` past its header and `offset` is a multiple
/// of `align`.
pub(super) fn fits(seg: &Segment, offset: u64, size: usize, align: usize) -> Option<usize> {
    let offset = usize::try_from(offset).ok()?;
    let end = offset.checked_add(size)?;
    (offset >= HEADER && end <= seg.len() && offset % align == 0).then_some(offset)
}

impl<C: Cell> Shared<C> {
    /// The cell at `offset` of `seg`; `None` if it would not lie inside the segment, past its
    /// header, aligned for `C`.
    pub(crate) fn attach(seg: Arc<Segment>, offset: u64) -> Option<Shared<C>> {
        let offset = fits(&seg, offset, mem::size_of::<C>(), mem::align_of::<C>())?;
        Some(Shared { seg, offset, _cell: PhantomData })
    }

    /// The cell `i * stride` bytes after this one; `None` if it would not lie inside the
    /// segment, aligned for `C`.
    pub(crate) fn nth(&self, i: usize, stride: usize) -> Option<Shared<C>> {
        let offset = i.checked_mul(stride)?.checked_add(self.offset)?;
        Shared::attach(self.seg.clone(), offset as u64)
    }

    /// The segment the cell lives in.
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// The cell's offset in its segment.
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    /// The cell's identity.
    pub(crate) fn id(&self) -> CellId {
        CellId { key: self.seg.key(), offset: self.offset }
    }
}

impl<C: Cell> Deref for Shared<C> {
    type Target = C;

    fn deref(&self) -> &C {
        // SAFETY: `attach` checked that the cell lies inside the mapping and is aligned; the
        // mapping lives while `self` holds its Arc; `C: Cell` is valid for every bit pattern
        // and only mutated through `&C` in ways that are sound under sharing.
        unsafe { &*self.seg.as_ptr().add(self.offset).cast::<C>() }
    }
}
