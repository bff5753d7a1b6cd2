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

/// The binaries' global allocator: the system's, with two changes for large blocks.
///
/// * Every block of at least [`HUGE_PAGE_FROM`] bytes is advised to the kernel as wanting
///   transparent huge pages (`madvise(MADV_HUGEPAGE)`, Linux only; harmless where huge pages
///   are off). With [`return_freed_memory`] every large block is a fresh mapping, faulted in
///   page by page and unmapped with a TLB flush on every core; the OT hot loops allocate and
///   free blocks of several MiB per chunk, and 10^6 dealer-free comparisons spent 40 % of their
///   time in the kernel (21.1 s; 15.4 s with huge pages, docs/benchmarks.md).
/// * Freed blocks of [`CACHE_FROM`] to [`CACHE_BLOCK_MAX`] bytes (sizes rounded up to whole
///   MiB) are kept for the next request of the same rounded size, at most [`CACHE_SLOTS`]
///   blocks and [`CACHE_BYTES`] in all: a block reused is neither faulted in nor cleared again
///   (chunk after chunk asks for the same sizes). A block taken for `alloc_zeroed` is zeroed
///   by hand. The resident set follows what is live plus at most [`CACHE_BYTES`]; a kept block
///   holds what its last owner left there, as freed heap memory always does.
pub struct Heap;

/// Blocks from this size on are advised to use huge pages. The kernel backs with huge pages
/// only the 2 MiB-aligned stretches inside a block, so a block gains from about twice this
/// size.
pub const HUGE_PAGE_FROM: usize = 2 << 20;

/// Smallest block kept for reuse when freed.
pub const CACHE_FROM: usize = 2 << 20;

/// Largest block kept for reuse when freed.
pub const CACHE_BLOCK_MAX: usize = 16 << 20;

/// Most bytes of freed blocks kept.
pub const CACHE_BYTES: usize = 64 << 20;

/// Most freed blocks kept.
pub const CACHE_SLOTS: usize = 8;

/// Kept blocks are allocated in whole MiB, page-aligned, so that any request of their rounded
/// size and an alignment up to a page fits.
const CACHE_UNIT: usize = 1 << 20;
const CACHE_ALIGN: usize = 4096;

/// The kept blocks: `(address, rounded size)`, address 0 for an empty slot.
struct Kept {
    slots: [(usize, usize); CACHE_SLOTS],
    bytes: usize,
}

static KEPT: std::sync::Mutex<Kept> = std::sync::Mutex::new(Kept {
    slots: [(0, 0); CACHE_SLOTS],
    bytes: 0,
});

fn kept() -> std::sync::MutexGuard<'static, Kept> {
    KEPT.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The rounded size of a block that may be kept, or `None`.
fn keepable(layout: std::alloc::Layout) -> Option<usize> {
    let size = layout.size();
    ((CACHE_FROM..=CACHE_BLOCK_MAX).contains(&size) && layout.align() <= CACHE_ALIGN)
        .then(|| size.next_multiple_of(CACHE_UNIT))
}

/// The layout the system allocated a keepable block of rounded size `class` with.
fn class_layout(class: usize) -> std::alloc::Layout {
    // A nonzero multiple of the alignment, far below `isize::MAX`: never the fallback.
    std::alloc::Layout::from_size_align(class, CACHE_ALIGN)
        .unwrap_or(std::alloc::Layout::new::<u8>())
}

fn take_kept(class: usize) -> Option<*mut u8> {
    let mut k = kept();
    let slot = k.slots.iter().position(|&(p, c)| p != 0 && c == class)?;
    let (p, _) = std::mem::take(&mut k.slots[slot]);
    k.bytes -= class;
    Some(p as *mut u8)
}

/// Keeps a freed block; `false` if there is no room.
fn keep(p: *mut u8, class: usize) -> bool {
    let mut k = kept();
    if k.bytes + class > CACHE_BYTES {
        return false;
    }
    let Some(slot) = k.slots.iter().position(|&(q, _)| q == 0) else {
        return false;
    };
    k.slots[slot] = (p as usize, class);
    k.bytes += class;
    true
}

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

// SAFETY: blocks too small or too large to keep are the system's, allocated and freed with the
// caller's layout. A keepable block is the system's block of its rounded size at page
// alignment (at least as large and as aligned as the caller asked), and goes back to the
// system with that same layout, or is kept whole for a later request of the same rounded size
// and at most page alignment; `realloc` moves a block between the two kinds by copying. The
// hint does not touch the memory's contents.
unsafe impl std::alloc::GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let Some(class) = keepable(layout) else {
            // SAFETY: forwarded with the caller's layout.
            let p = unsafe { std::alloc::System.alloc(layout) };
            advise_huge(p, layout.size());
            return p;
        };
        if let Some(p) = take_kept(class) {
            return p;
        }
        // SAFETY: a nonzero size.
        let p = unsafe { std::alloc::System.alloc(class_layout(class)) };
        advise_huge(p, class);
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        let Some(class) = keepable(layout) else {
            // SAFETY: forwarded with the caller's layout.
            let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
            advise_huge(p, layout.size());
            return p;
        };
        if let Some(p) = take_kept(class) {
            // SAFETY: the kept block has `class >= layout.size()` bytes.
            unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
            return p;
        }
        // SAFETY: a nonzero size.
        let p = unsafe { std::alloc::System.alloc_zeroed(class_layout(class)) };
        advise_huge(p, class);
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        match keepable(layout) {
            None => {
                // SAFETY: a block of this kind came from `System` with the caller's layout.
                unsafe { std::alloc::System.dealloc(ptr, layout) }
            }
            Some(class) => {
                if !keep(ptr, class) {
                    // SAFETY: a keepable block came from `System` with its class layout.
                    unsafe { std::alloc::System.dealloc(ptr, class_layout(class)) }
                }
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        let Ok(to) = std::alloc::Layout::from_size_align(new, layout.align()) else {
            return std::ptr::null_mut();
        };
        match (keepable(layout), keepable(to)) {
            (None, None) => {
                // SAFETY: `ptr` came from `System` with `layout`; forwarded unchanged.
                let p = unsafe { std::alloc::System.realloc(ptr, layout, new) };
                advise_huge(p, new);
                p
            }
            (Some(a), Some(b)) if a == b => ptr,
            _ => {
                // SAFETY: a fresh block of the new layout, the smaller of the two sizes copied,
                // then the old block freed as it was allocated.
                unsafe {
                    let p = self.alloc(to);
                    if !p.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new));
                        self.dealloc(ptr, layout);
                    }
                    p
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    /// Blocks of every kind (the system's, kept ones, and across the kinds by `realloc`) hold
    /// what is written; zeroed ones read zero, also when a kept block is reused; a freed
    /// keepable block is kept (unless the cache is full) and goes to the next request of its
    /// rounded size.
    #[test]
    fn the_heap_hands_out_usable_blocks_of_every_size() {
        let sizes = [
            1,
            4096,
            CACHE_FROM - 1,
            CACHE_FROM,
            3 * CACHE_FROM + 17,
            CACHE_BLOCK_MAX,
            CACHE_BLOCK_MAX + 1,
        ];
        for size in sizes {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: nonzero size; each block is written within bounds and freed once with
            // the layout it has then.
            unsafe {
                let p = Heap.alloc(layout);
                assert!(!p.is_null());
                p.write_bytes(0xab, size);
                Heap.dealloc(p, layout);
                let p = Heap.alloc_zeroed(layout);
                assert!((0..size).step_by(4093).all(|i| *p.add(i) == 0));
                assert_eq!(*p.add(size - 1), 0);
                p.add(size - 1).write(7);
                let q = Heap.realloc(p, layout, 2 * size);
                assert_eq!(*q.add(size - 1), 7);
                let r = Heap.realloc(q, Layout::from_size_align(2 * size, 16).unwrap(), size);
                assert_eq!(*r.add(size - 1), 7);
                Heap.dealloc(r, layout);
            }
        }
    }

    #[test]
    fn a_freed_keepable_block_is_reused_and_the_cache_is_bounded() {
        let class = CACHE_BLOCK_MAX - CACHE_UNIT; // a size no other test uses
        let layout = Layout::from_size_align(class - 3, 8).unwrap();
        // SAFETY: blocks written within bounds, each freed once with its layout.
        unsafe {
            let p = Heap.alloc(layout);
            Heap.dealloc(p, layout);
            let q = Heap.alloc(Layout::from_size_align(class, 4096).unwrap());
            assert_eq!(p, q, "the kept block serves a request of its rounded size");
            Heap.dealloc(q, Layout::from_size_align(class, 4096).unwrap());
            let taken = take_kept(class).expect("kept again");
            assert_eq!(taken, p);
            Heap.dealloc(taken, Layout::from_size_align(class, 8).unwrap());
        }
        let k = kept();
        assert!(k.bytes <= CACHE_BYTES);
        assert_eq!(
            k.bytes,
            k.slots
                .iter()
                .filter(|s| s.0 != 0)
                .map(|s| s.1)
                .sum::<usize>()
        );
    }
}
