//! The caching device allocator: freed blocks go to size-bucketed free lists and are handed out
//! again without a driver call, so a sampling loop that allocates the same activations every step
//! stops calling cuMemAlloc after its first step (the scheme PyTorch's caching allocator made
//! standard). All work runs on one stream, so a block freed by one op can be reused by the next
//! op at once: the stream orders the new writer after the old reader.
//!
//! The bucketing and bookkeeping are generic over `RawMemory`, so they are tested on the CPU with
//! a fake device (tests at the end); the driver implementation lives in mod.rs.

use std::collections::HashMap;
use std::sync::Mutex;

/// What the driver can do for the allocator.
pub trait RawMemory {
    /// A new device allocation of exactly `bytes` (a bucket size).
    fn malloc(&self, bytes: usize) -> Result<u64, RawError>;
    /// Returns an allocation from `malloc` to the driver.
    fn free(&self, ptr: u64, bytes: usize);
}

#[derive(Debug, PartialEq, Eq)]
pub enum RawError {
    OutOfMemory,
    Other(String),
}

/// Why an allocation failed, with the numbers a person needs to act on it.
#[derive(Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The device is full even after returning every cached block to the driver.
    OutOfMemory { requested: usize, in_use: usize, peak: usize },
    Driver(String),
}

/// Byte counters, for benches and the out-of-memory message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Bytes in blocks that tensors hold now (bucket sizes).
    pub in_use: usize,
    /// The largest `in_use` seen.
    pub peak: usize,
    /// Bytes in free blocks kept for reuse.
    pub cached: usize,
    /// Driver allocations made so far (a steady-state loop keeps this constant).
    pub driver_mallocs: usize,
    /// Allocations served from the cache.
    pub reuses: usize,
}

/// A block handed out by the allocator; give it back with `release`.
#[derive(Debug, PartialEq, Eq)]
pub struct Block {
    pub ptr: u64,
    pub bytes: usize,
}

/// The size class a request is served from. Small requests round to 512 B (the driver's own
/// granularity is coarser, so nothing is lost); from 1 MiB up there are four classes per power of
/// two, so a block is at most 25% larger than asked and a few classes cover every activation size
/// of a model.
pub fn bucket(bytes: usize) -> usize {
    const SMALL: usize = 512;
    const LARGE: usize = 1 << 20;
    let bytes = bytes.max(1);
    if bytes < LARGE {
        return bytes.div_ceil(SMALL) * SMALL;
    }
    let pow2_below = 1usize << (usize::BITS - 1 - bytes.leading_zeros());
    let step = pow2_below / 4;
    bytes.div_ceil(step) * step
}

pub struct CachingAllocator<R: RawMemory> {
    raw: R,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    free: HashMap<usize, Vec<u64>>,
    stats: AllocStats,
}

impl<R: RawMemory> CachingAllocator<R> {
    pub fn new(raw: R) -> Self {
        CachingAllocator { raw, state: Mutex::new(State::default()) }
    }

    pub fn raw(&self) -> &R {
        &self.raw
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A block of at least `bytes`: a cached one of the same class when there is one, a driver
    /// allocation otherwise. When the driver is out of memory, every cached block is returned to
    /// it and the allocation tried once more before giving up.
    pub fn alloc(&self, bytes: usize) -> Result<Block, AllocError> {
        let size = bucket(bytes);
        let mut st = self.state();
        if let Some(ptr) = st.free.get_mut(&size).and_then(Vec::pop) {
            st.stats.cached -= size;
            st.stats.reuses += 1;
            Self::count_in(&mut st.stats, size);
            return Ok(Block { ptr, bytes: size });
        }
        let ptr = match self.raw.malloc(size) {
            Ok(p) => p,
            Err(RawError::OutOfMemory) => {
                self.release_cached(&mut st);
                match self.raw.malloc(size) {
                    Ok(p) => p,
                    Err(RawError::OutOfMemory) => {
                        return Err(AllocError::OutOfMemory { requested: bytes, in_use: st.stats.in_use, peak: st.stats.peak })
                    }
                    Err(RawError::Other(m)) => return Err(AllocError::Driver(m)),
                }
            }
            Err(RawError::Other(m)) => return Err(AllocError::Driver(m)),
        };
        st.stats.driver_mallocs += 1;
        Self::count_in(&mut st.stats, size);
        Ok(Block { ptr, bytes: size })
    }

    fn count_in(stats: &mut AllocStats, size: usize) {
        stats.in_use += size;
        stats.peak = stats.peak.max(stats.in_use);
    }

    /// Takes a block back into its free list (no driver call).
    pub fn release(&self, block: Block) {
        let mut st = self.state();
        st.stats.in_use -= block.bytes;
        st.stats.cached += block.bytes;
        st.free.entry(block.bytes).or_default().push(block.ptr);
    }

    /// Returns every cached block to the driver (after a large one-off allocation pattern, or
    /// before measuring memory).
    pub fn empty_cache(&self) {
        let mut st = self.state();
        self.release_cached(&mut st);
    }

    fn release_cached(&self, st: &mut State) {
        for (size, ptrs) in st.free.drain() {
            for p in ptrs {
                self.raw.free(p, size);
            }
        }
        st.stats.cached = 0;
    }

    pub fn stats(&self) -> AllocStats {
        self.state().stats
    }

    /// Starts a new peak measurement from the bytes in use now.
    pub fn reset_peak(&self) {
        let mut st = self.state();
        st.stats.peak = st.stats.in_use;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A device with `capacity` bytes that records driver calls.
    struct FakeDevice {
        capacity: usize,
        used: RefCell<usize>,
        next: RefCell<u64>,
        frees: RefCell<usize>,
    }
    impl FakeDevice {
        fn new(capacity: usize) -> Self {
            FakeDevice { capacity, used: RefCell::new(0), next: RefCell::new(0x1000), frees: RefCell::new(0) }
        }
    }
    impl RawMemory for FakeDevice {
        fn malloc(&self, bytes: usize) -> Result<u64, RawError> {
            if *self.used.borrow() + bytes > self.capacity {
                return Err(RawError::OutOfMemory);
            }
            *self.used.borrow_mut() += bytes;
            let p = *self.next.borrow();
            *self.next.borrow_mut() += bytes as u64;
            Ok(p)
        }
        fn free(&self, _ptr: u64, bytes: usize) {
            *self.used.borrow_mut() -= bytes;
            *self.frees.borrow_mut() += 1;
        }
    }
    // The allocator is used behind a Mutex on the device; RefCell keeps the fake simple.
    unsafe impl Sync for FakeDevice {}

    #[test]
    fn buckets_round_up_by_at_most_a_quarter() {
        assert_eq!(bucket(0), 512);
        assert_eq!(bucket(1), 512);
        assert_eq!(bucket(513), 1024);
        assert_eq!(bucket((1 << 20) - 1), 1 << 20);
        assert_eq!(bucket(1 << 20), 1 << 20);
        assert_eq!(bucket((1 << 20) + 1), (1 << 20) + (1 << 18));
        assert_eq!(bucket(3 << 20), 3 << 20);
        assert_eq!(bucket(10_000_000), 10 << 20);
        for bytes in [700usize, 5_000, 1 << 20, 1_234_567, 99_999_999, 3 << 30] {
            let b = bucket(bytes);
            assert!(b >= bytes && (b - bytes) as f64 <= 0.25 * bytes as f64 + 512.0, "{bytes} -> {b}");
            assert_eq!(bucket(b), b, "a bucket size is its own bucket");
        }
    }

    #[test]
    fn a_steady_loop_stops_calling_the_driver() {
        let a = CachingAllocator::new(FakeDevice::new(1 << 30));
        for _step in 0..10 {
            let blocks: Vec<Block> = [4096usize, 1 << 20, 3 << 20, 4096].iter().map(|&n| a.alloc(n).unwrap()).collect();
            for b in blocks {
                a.release(b);
            }
        }
        let s = a.stats();
        assert_eq!(s.driver_mallocs, 4, "only the first step allocates");
        assert_eq!(s.reuses, 36);
        assert_eq!(s.in_use, 0);
        assert_eq!(s.cached, 2 * 4096 + (1 << 20) + (3 << 20));
        assert_eq!(s.peak, 2 * 4096 + (1 << 20) + (3 << 20));
    }

    #[test]
    fn out_of_memory_frees_the_cache_then_reports_sizes() {
        let dev = FakeDevice::new(8 << 20);
        let a = CachingAllocator::new(dev);
        let b = a.alloc(6 << 20).unwrap();
        a.release(b); // cached: 6 MiB
        // 4 MiB does not fit next to the cached 6 MiB: the cache is returned and it fits.
        let c = a.alloc(4 << 20).unwrap();
        assert_eq!(*a.raw().frees.borrow(), 1);
        assert_eq!(a.stats().cached, 0);
        // Now 4 MiB is held and 6 MiB cannot fit at all.
        let err = a.alloc(6 << 20).unwrap_err();
        assert_eq!(err, AllocError::OutOfMemory { requested: 6 << 20, in_use: 4 << 20, peak: 6 << 20 });
        a.release(c);
        a.empty_cache();
        assert_eq!(*a.raw().used.borrow(), 0);
    }
}
