//! The system calls of this crate that need `unsafe`.

/// Makes the C allocator of this (worker) process keep freed memory for reuse instead of
/// returning it to the kernel at once: a worker running chunks of a `map` allocates and frees
/// buffers of megabytes per task, and fresh pages cost ≈2 µs each to fault in. Freed memory up
/// to 64 MiB stays with the process; blocks up to 32 MiB come from the heap, not `mmap`.
pub(crate) fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's allocation thresholds; it is called before the
        // worker allocates concurrently (its only thread) and cannot invalidate any allocation.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        }
    }
}
