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
//! as they are. The binaries' global allocator, [`Heap`], is the system's with one hint: large
//! blocks ask for transparent huge pages, so that mapping them afresh costs few page faults.

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

/// The binaries' global allocator: the system's, with every block of at least
/// [`HUGE_PAGE_FROM`] bytes advised to the kernel as wanting transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`, Linux only; harmless where huge pages are off).
///
/// With [`return_freed_memory`] every large block is a fresh mapping, so each one used to be
/// faulted in 4 KiB page by page and unmapped with a TLB flush on every core: the OT hot loops
/// allocate and free blocks of several MiB per chunk, and 10^6 dealer-free comparisons spent
/// 40 % of their time in the kernel (21.1 s; 15.4 s with huge pages, docs/benchmarks.md). A 2 MiB
/// page is one fault and one clear. The resident set still follows what is live.
pub struct Heap;

/// Blocks from this size on are advised to use huge pages. The kernel backs with huge pages
/// only the 2 MiB-aligned stretches inside a block, so a block gains from about twice this
/// size.
pub const HUGE_PAGE_FROM: usize = 2 << 20;

fn advise_huge(p: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    if !p.is_null() && len >= HUGE_PAGE_FROM {
        const PAGE: usize = 4096;
        let start = (p as usize).next_multiple_of(PAGE);
        let end = (p as usize + len) / PAGE * PAGE;
        if end > start {
            // SAFETY: the range lies inside the block just allocated; `madvise` only sets a
            // paging hint on it and fails harmlessly where the kernel lacks huge pages (the
            // caller's `errno` is kept).
            unsafe {
                let errno = libc::__errno_location();
                let saved = *errno;
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
                *errno = saved;
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, len);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the hint does not touch
// the memory's contents.
unsafe impl std::alloc::GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { std::alloc::System.alloc(layout) };
        advise_huge(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        advise_huge(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; forwarded unchanged.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new) };
        advise_huge(p, new);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn the_heap_hands_out_usable_blocks_of_every_size() {
        for size in [
            1,
            4096,
            HUGE_PAGE_FROM - 1,
            HUGE_PAGE_FROM,
            3 * HUGE_PAGE_FROM + 17,
        ] {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: nonzero size; each block is written within bounds and freed once.
            unsafe {
                let p = Heap.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert!((0..size).step_by(4093).all(|i| *p.add(i) == 0));
                p.add(size - 1).write(7);
                let q = Heap.realloc(p, layout, 2 * size);
                assert_eq!(*q.add(size - 1), 7);
                Heap.dealloc(q, Layout::from_size_align(2 * size, 16).unwrap());
            }
        }
    }
}
