//! [`Spent`]: the emptied memory of a task's box, carried back with its result so that it is
//! freed on the thread that reads the result, which is usually the one that allocated it.

/// The emptied memory of what carried a result to its slot (a task's box, and its extras), freed
/// where the result is read: usually the thread that allocated it, whose allocator then reuses it
/// at once. Freed where the task ran instead (a worker thread), each task's box made glibc's
/// `malloc` take its slow path on both threads: in a probe of S2's shape (one thread pushing, two
/// running), one such box per job slowed the suite's own floor by a quarter.
pub(crate) struct Spent {
    _memory: Box<dyn Send>,
    /// Other boxes that came with it (a task's extras), freed with it.
    _rest: Option<Box<dyn Send>>,
}

impl Spent {
    /// Takes `boxed`'s contents out and keeps its memory, empty.
    pub(crate) fn hollow<T: Send + 'static>(boxed: Box<T>) -> (T, Spent) {
        let raw = Box::into_raw(boxed);
        // SAFETY: `raw` comes from `Box::into_raw`, so it is valid, aligned and initialized; its
        // contents are read exactly once, here, and the allocation is owned from now on as a
        // `MaybeUninit<T>` (same size and alignment), which frees the memory without dropping
        // the contents a second time.
        let (contents, memory) = unsafe {
            (
                std::ptr::read(raw),
                Box::from_raw(raw.cast::<std::mem::MaybeUninit<T>>()),
            )
        };
        let spent = Spent {
            _memory: memory,
            _rest: None,
        };
        (contents, spent)
    }

    /// Frees `rest` (another box from the same thread) with this.
    pub(crate) fn with(mut self, rest: Option<Box<dyn Send>>) -> Spent {
        self._rest = rest;
        self
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
        drop(spent); // the memory only: nothing is dropped
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(contents);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn what_comes_with_it_is_dropped_with_it() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (_contents, spent) = Spent::hollow(Box::new(0u64));
        let rest: Box<dyn Send> = Box::new(Counted(drops.clone(), [0; 8]));
        let spent = spent.with(Some(rest));
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(spent);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
