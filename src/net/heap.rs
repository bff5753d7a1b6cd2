//! How the `server` and `party` processes keep their heap.
//!
//! Their working set is a few very large vectors (per candidate pair, per row) allocated and
//! freed step after step. glibc's allocator raises its `mmap` threshold each time such a block
//! is freed (up to 32 MiB), so that later blocks below it come from the heap arenas, where
//! freed memory stays counted in the process's resident set. At 100,000 entities per side that
//! kept about 400 MiB per server resident beyond what was live (peak 1,769 MiB against 1,371
//! with a fixed threshold, docs/benchmarks.md). [`return_freed_memory`] fixes the threshold at
//! 128 KiB and trims the heap above 128 KiB of free space, so that large blocks are always
//! mapped and unmapped and the resident set follows what is live: the budgets of
//! [`crate::model::footprint`] are measured this way. Other allocators and platforms are left
//! as they are.

/// Large blocks are always mapped and returned to the system when freed (module docs). Call
/// first thing in `main`, before any thread starts.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: `mallopt` only sets allocator parameters; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        }
    }
}
