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
/// One pointer, so that a value's slot is no larger for it (S9, memory per queued task): what it
/// needs to free itself (a [`Husk`]) is written into the emptied memory. Only memory: whatever the
/// box held (a task's extras, a job's inputs, a cancel handle that points back at the value's
/// slot) is dropped where it ran, so no user code runs when a `Spent` is freed, and no cycle
/// through the slot can keep it alive.
pub(crate) struct Spent(NonNull<Husk>);

/// What an emptied box holds until it is freed.
struct Husk {
    /// Frees the memory this husk lives in, with the layout it was allocated with.
    free: unsafe fn(NonNull<Husk>),
}

// SAFETY: a `Spent` owns its husk (a function pointer) and the allocation under it, which holds
// nothing else alive: freeing it from another thread is freeing a `Box` from another thread.
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
        // SAFETY: the memory is a `T`'s, at least as large and as aligned as a husk (checked
        // above), and nothing alive is in it any more: writing a husk there overwrites nothing.
        unsafe { husk.write(Husk { free: free_as::<T> }) };
        // A pointer from `Box::into_raw` is never null.
        (contents, NonNull::new(husk).map(Spent))
    }
}

/// Frees the memory a husk lives in as a `T`'s.
///
/// # Safety
///
/// `husk` was written by [`Spent::hollow::<T>`] into the allocation of a `Box<T>`, and this is
/// called once for it.
unsafe fn free_as<T>(husk: NonNull<Husk>) {
    // SAFETY: by the contract above the memory is a `Box<T>`'s allocation, freed once, as a
    // `MaybeUninit<T>` (same layout), which drops nothing (a husk has nothing to drop).
    drop(unsafe { Box::from_raw(husk.as_ptr().cast::<MaybeUninit<T>>()) });
}

impl Drop for Spent {
    fn drop(&mut self) {
        // SAFETY: the husk is alive (written by `hollow`, and only this drop frees it), and its
        // `free` is the function written for its memory's type.
        unsafe {
            let free = (*self.0.as_ptr()).free;
            free(self.0);
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
}
