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
//! as they are. The binaries' global allocator, [`Heap`], is the system's with two changes for
//! blocks of a few MiB and more: they ask for transparent huge pages, so that mapping one afresh
//! costs few page faults, and freed ones of 2 to 16 MiB are kept (64 MiB at most) for the next
//! request of the same size, so that the resident set follows what is live plus that much.

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
///   transparent huge pages (`madvise(MADV_HUGEPAGE)`, Linux with glibc only; harmless where
///   huge pages are off). With [`return_freed_memory`] every large block the system hands out
///   is a fresh mapping, faulted in page by page and unmapped with a TLB flush on every core;
///   the OT hot loops allocate and free blocks of several MiB per chunk, and 10^6 dealer-free
///   comparisons spent 40 % of their time in the kernel (21.1 s; 15.4 s with huge pages,
///   docs/benchmarks.md).
/// * Freed blocks of [`CACHE_FROM`] to [`CACHE_BLOCK_MAX`] bytes (sizes rounded up to whole
///   MiB) are kept for the next request of the same rounded size, at most [`CACHE_SLOTS`]
///   blocks and [`CACHE_BYTES`] in all: a block reused is not faulted in again (chunk after
///   chunk asks for the same sizes); one taken for `alloc_zeroed` is zeroed by hand, which
///   costs no page faults. The resident set follows what is live plus at most [`CACHE_BYTES`]
///   (and the rounding of live blocks, below 1 MiB each, where they are written); a kept block
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

/// Kept blocks are allocated in whole MiB, at the alignment `malloc` and `calloc` give (so that
/// the system allocates them with those, and zeroes fresh ones lazily), and serve requests of
/// their rounded size and at most that alignment.
const CACHE_UNIT: usize = 1 << 20;
const CACHE_ALIGN: usize = 16;

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
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
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
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (p, len);
}

// SAFETY: blocks too small or too large to keep are the system's, allocated and freed with the
// caller's layout. A keepable block is the system's block of its rounded size at
// `CACHE_ALIGN` (at least as large and as aligned as the caller asked), and goes back to the
// system with that same layout, or is kept whole for a later request of the same rounded size
// and at most that alignment; `realloc` resizes a keepable block to another rounded size with
// the system's `realloc` of the class layouts, and moves a block between the two kinds by
// copying. The hint does not touch the memory's contents.
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
            (Some(a), Some(b)) => {
                // SAFETY: the block came from `System` with the class layout of `a`; it comes
                // back with the class layout of `b` (same alignment), or null with the old
                // block untouched.
                let p = unsafe { std::alloc::System.realloc(ptr, class_layout(a), b) };
                advise_huge(p, b);
                p
            }
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

    /// The cache is process-wide: the tests that look at it run one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Runs alone among these tests, with the cache emptied first.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        let one = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut k = kept();
        for slot in k.slots.iter_mut().filter(|s| s.0 != 0) {
            let (p, class) = std::mem::take(slot);
            // SAFETY: a kept block came from `System` with its class layout.
            unsafe { std::alloc::System.dealloc(p as *mut u8, class_layout(class)) };
        }
        k.bytes = 0;
        drop(k);
        one
    }

    /// Blocks of every kind (the system's, kept ones, resized within and across the kinds)
    /// hold what is written, and zeroed ones read zero, also when a freed block comes back.
    #[test]
    fn the_heap_hands_out_usable_blocks_of_every_size() {
        let _one = serial();
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
                let z = Heap.alloc_zeroed(layout);
                if keepable(layout).is_some() {
                    assert_eq!(z, p, "{size}: the freed block comes back");
                }
                assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                z.add(size - 1).write(7);
                let q = Heap.realloc(z, layout, 2 * size);
                assert_eq!(*q.add(size - 1), 7);
                let r = Heap.realloc(q, Layout::from_size_align(2 * size, 16).unwrap(), size);
                assert_eq!(*r.add(size - 1), 7);
                let grown = size + CACHE_UNIT / 2;
                let g = Heap.realloc(r, layout, grown);
                assert_eq!(*g.add(size - 1), 7);
                Heap.dealloc(g, Layout::from_size_align(grown, 16).unwrap());
            }
        }
    }

    /// Freed keepable blocks are kept until the bytes (or the slots) run out, then go back to
    /// the system; what is kept is counted right; blocks aligned beyond the cache's are never
    /// kept.
    #[test]
    fn the_cache_keeps_what_fits_and_frees_the_rest() {
        let _one = serial();
        let layout = Layout::from_size_align(CACHE_BLOCK_MAX - 5, 8).unwrap();
        let class = keepable(layout).unwrap();
        // SAFETY: blocks freed once each with their layout.
        unsafe {
            let blocks: Vec<*mut u8> = (0..6).map(|_| Heap.alloc(layout)).collect();
            blocks.iter().for_each(|&p| Heap.dealloc(p, layout));
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
            // As many as fit in the bytes; the rest went back to the system.
            let ours = k
                .slots
                .iter()
                .filter(|s| blocks.contains(&(s.0 as *mut u8)))
                .count();
            assert_eq!(ours, CACHE_BYTES / class);
            drop(k);
            let wide = Layout::from_size_align(CACHE_FROM, 4096).unwrap();
            assert!(keepable(wide).is_none());
            let p = Heap.alloc(wide);
            assert_eq!(p as usize % 4096, 0);
            Heap.dealloc(p, wide);
            assert!(!kept().slots.iter().any(|s| s.0 == p as usize));
        }
    }
}
