//! [`Spent`]: the emptied memory of a task's box, carried back with its result so that it is
//! freed on the thread that reads the result, which is usually the one that allocated it.

use std::mem::{align_of, size_of, MaybeUninit};
use std::ptr::NonNull;

/// The emptied memory of what carried a result to its slot (a task's box), freed where the result
/// is read: usually the thread that allocated it, whose allocator then reuses it
/// at once. Freed where the task ran instead (a worker thread), each task's box made glibc's
/// `malloc` take its slow path on both threads: in a probe of S2's shape (one thread pushing, two
/// running), one such box per job slowed the suite's own floor by a quarter; and the soak's RSS
/// grew 1.15x from 100k to 1M tasks (median of 8 runs) without this, 1.08x (6 runs) with it.
///
/// The task's other blocks follow it in a chain ([`then`](Spent::then)): its extras' box and its
/// job's encoded input (up to [`LARGEST_BYTES`]), freed on the reader thread of a process worker
/// otherwise (with the task's box, 3% of the soak's profile on those threads). A settled value
/// that is not read holds them: about 260 bytes for a job (its box, its extras, a small input),
/// 48 for a closure task.
///
/// One pointer, so that a value's slot is no larger for it (S9, memory per queued task): what it
/// needs to free itself (a [`Husk`]) is written into the emptied memory. Only memory: whatever the
/// blocks held (a retry's closure, a cancel handle that points back at the value's slot) is
/// dropped where the task ran, so no user code runs when a `Spent` is freed, and no cycle through
/// the slot can keep it alive.
pub(crate) struct Spent(NonNull<Husk>);

/// What an emptied allocation holds until it is freed.
struct Husk {
    /// Frees the memory this husk lives in, with the layout it was allocated with.
    free: unsafe fn(NonNull<Husk>),
    /// The next emptied allocation of the same task, freed with this one (its extras, its job's
    /// input): a chain, so that a value's slot still holds one pointer.
    next: Option<Spent>,
}

/// The husk of an emptied byte buffer, which also says how large the buffer was.
#[repr(C)]
struct BytesHusk {
    husk: Husk,
    capacity: usize,
}

/// The smallest byte buffer that can carry its memory back ([`Spent::bytes`]): a buffer that may
/// travel so is made with at least this capacity (glibc's smallest block holds 24 bytes anyway).
pub(crate) const SMALLEST_BYTES: usize = size_of::<BytesHusk>();

/// The largest byte buffer that carries its memory back: glibc's per-thread cache holds blocks up
/// to about this size, and a larger buffer (a job's 1 MiB input, say) would stay allocated for as
/// long as its value is not read, where freeing it at once costs little.
pub(crate) const LARGEST_BYTES: usize = 1 << 10;

// SAFETY: a `Spent` owns its husks (function pointers, sizes) and the allocations under them,
// which hold nothing else alive: freeing them from another thread is freeing `Box`es from
// another thread.
unsafe impl Send for Spent {}

impl Spent {
    /// Takes `boxed`'s contents out and keeps its memory, empty; `None` (the memory freed here)
    /// when the memory is too small to hold a husk.
    pub(crate) fn hollow<T: Send + 'static>(boxed: Box<T>) -> (T, Option<Spent>) {
        let raw = Box::into_raw(boxed);
        // SAFETY: `raw` comes from `Box::into_raw`, so it is valid, aligned and initialized; its
        // contents are read exactly once, here, and never dropped in place.
        let contents = unsafe { std::ptr::read(raw) };
        if size_of::<Husk>() > size_of::<T>() || align_of::<Husk>() > align_of::<T>() {
            // SAFETY: the allocation of a `Box<T>`, whose contents were moved out above: freed as
            // a `MaybeUninit<T>` (same layout), which drops nothing.
            drop(unsafe { Box::from_raw(raw.cast::<MaybeUninit<T>>()) });
            return (contents, None);
        }
        let husk = raw.cast::<Husk>();
        let free = free_as::<T>;
        // SAFETY: the memory is a `T`'s, at least as large and as aligned as a husk (checked
        // above), and nothing alive is in it any more: writing a husk there overwrites nothing.
        unsafe { husk.write(Husk { free, next: None }) };
        // A pointer from `Box::into_raw` is never null.
        (contents, NonNull::new(husk).map(Spent))
    }

    /// Keeps a byte buffer's memory, empty; `None` (the memory freed here) when it is too small
    /// (or, with an unusual allocator, not aligned) to hold a husk, or larger than
    /// [`LARGEST_BYTES`]: a value not read for long would hold it all that time.
    pub(crate) fn bytes(buffer: Vec<u8>) -> Option<Spent> {
        let mut buffer = std::mem::ManuallyDrop::new(buffer);
        let (ptr, capacity) = (buffer.as_mut_ptr(), buffer.capacity());
        let fits = (size_of::<BytesHusk>()..=LARGEST_BYTES).contains(&capacity);
        if !fits || ptr.align_offset(align_of::<BytesHusk>()) != 0 {
            drop(std::mem::ManuallyDrop::into_inner(buffer));
            return None;
        }
        let husk = ptr.cast::<BytesHusk>();
        let free = free_bytes;
        // SAFETY: the buffer's memory, at least as large and as aligned as a `BytesHusk` (checked
        // above); bytes need no drop, and the `Vec` is never used or dropped again.
        unsafe {
            husk.write(BytesHusk {
                husk: Husk { free, next: None },
                capacity,
            });
        }
        NonNull::new(husk.cast::<Husk>()).map(Spent)
    }

    /// How many blocks the chain frees (the tests).
    #[cfg(test)]
    pub(crate) fn blocks(&self) -> usize {
        let mut n = 1;
        // SAFETY: the husks of a chain live as long as it; this reads their links only.
        let mut next = unsafe { &(*self.0.as_ptr()).next };
        while let Some(s) = next {
            n += 1;
            // SAFETY: as above.
            next = unsafe { &(*s.0.as_ptr()).next };
        }
        n
    }

    /// This allocation and `then` (and what follows it), freed together.
    pub(crate) fn then(self, then: Option<Spent>) -> Spent {
        let mut last = self.0;
        // SAFETY: every husk of a chain is alive until its chain is dropped, and this chain is
        // owned here: walking it and setting its last link reads and writes only husks.
        unsafe {
            while let Some(next) = &(*last.as_ptr()).next {
                last = next.0;
            }
            (*last.as_ptr()).next = then;
        }
        self
    }
}

/// Frees the memory a husk lives in as a `T`'s.
///
/// # Safety
///
/// `husk` was written by [`Spent::hollow::<T>`] into the allocation of a `Box<T>`, and this is
/// called once for it, after its `next` was taken.
unsafe fn free_as<T>(husk: NonNull<Husk>) {
    // SAFETY: by the contract above the memory is a `Box<T>`'s allocation, freed once, as a
    // `MaybeUninit<T>` (same layout), which drops nothing (its husk's `next` was taken).
    drop(unsafe { Box::from_raw(husk.as_ptr().cast::<MaybeUninit<T>>()) });
}

/// Frees the memory of a byte buffer's husk.
///
/// # Safety
///
/// `husk` was written by [`Spent::bytes`], and this is called once for it, after its `next` was
/// taken.
unsafe fn free_bytes(husk: NonNull<Husk>) {
    // SAFETY: by the contract above this is a `BytesHusk` in the memory of a `Vec<u8>` of that
    // capacity; rebuilt empty, the `Vec` frees it with the layout it was allocated with.
    unsafe {
        let capacity = (*husk.as_ptr().cast::<BytesHusk>()).capacity;
        drop(Vec::from_raw_parts(husk.as_ptr().cast::<u8>(), 0, capacity));
    }
}

impl Drop for Spent {
    fn drop(&mut self) {
        // One husk after the other (no recursion however long the chain).
        let mut at = Some(self.0);
        while let Some(husk) = at {
            // SAFETY: the husk is alive (written by `hollow` or `bytes`, and only this drop frees
            // it); its `next` is taken before its `free`, the function written for its memory.
            unsafe {
                at = (*husk.as_ptr()).next.take().map(|next| {
                    let ptr = next.0;
                    std::mem::forget(next);
                    ptr
                });
                let free = (*husk.as_ptr()).free;
                free(husk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Spent;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Counted(Arc<AtomicUsize>, #[allow(dead_code)] [u64; 8]);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_hollowed_box_gives_its_contents_and_drops_them_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (contents, spent) = Spent::hollow(Box::new(Counted(drops.clone(), [7; 8])));
        assert_eq!(contents.1, [7; 8]);
        assert!(spent.is_some(), "72 bytes hold a husk");
        drop(spent); // the memory only: nothing is dropped
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(contents);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn memory_too_small_for_a_husk_is_freed_at_once() {
        let (contents, spent) = Spent::hollow(Box::new(9u32));
        assert_eq!(contents, 9);
        assert!(spent.is_none());
    }

    #[test]
    fn a_chain_frees_each_block_once_and_only_memory() {
        use super::{free_as, free_bytes, Husk, SMALLEST_BYTES};
        use std::ptr::NonNull;
        static FREED: AtomicUsize = AtomicUsize::new(0);
        unsafe fn counted_box(husk: NonNull<Husk>) {
            FREED.fetch_add(1, Ordering::SeqCst);
            // SAFETY: the husk of a hollowed `Box<[u64; 4]>`, freed once.
            unsafe { free_as::<[u64; 4]>(husk) }
        }
        unsafe fn counted_bytes(husk: NonNull<Husk>) {
            FREED.fetch_add(1, Ordering::SeqCst);
            // SAFETY: the husk of a buffer kept by `Spent::bytes`, freed once.
            unsafe { free_bytes(husk) }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let (contents, first) = Spent::hollow(Box::new(Counted(drops.clone(), [1; 8])));
        let (_, second) = Spent::hollow(Box::new([2u64; 4]));
        let third = Spent::bytes(Vec::with_capacity(SMALLEST_BYTES)).expect("room for a husk");
        let (first, second) = (first.unwrap(), second.unwrap());
        // SAFETY: each husk is alive and owned here; its `free` is swapped for a counting one
        // that frees the same memory the same way.
        unsafe {
            (*second.0.as_ptr()).free = counted_box;
            (*third.0.as_ptr()).free = counted_bytes;
        }
        // Appended at the end, whatever the chain's length.
        let chain = first.then(Some(second)).then(Some(third));
        drop(chain);
        assert_eq!(
            FREED.load(Ordering::SeqCst),
            2,
            "the second and third blocks, once each"
        );
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "memory only: nothing dropped"
        );
        drop(contents);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_buffer_too_small_for_a_husk_or_too_large_to_hold_is_freed_at_once() {
        use super::{LARGEST_BYTES, SMALLEST_BYTES};
        assert!(Spent::bytes(Vec::with_capacity(8)).is_none());
        assert!(Spent::bytes(Vec::new()).is_none());
        assert!(Spent::bytes(vec![7; SMALLEST_BYTES]).is_some());
        assert!(Spent::bytes(Vec::with_capacity(LARGEST_BYTES)).is_some());
        assert!(Spent::bytes(Vec::with_capacity(LARGEST_BYTES + 1)).is_none());
    }
}
