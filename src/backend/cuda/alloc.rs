//! The caching device allocator: freed blocks go to size-bucketed free lists and are handed out
//! again without a driver call, so a sampling loop that allocates the same activations every step
//! stops calling cuMemAlloc after its first step (the scheme PyTorch's caching allocator made
//! standard). All work runs on one stream, so a block freed by one op can be reused by the next
//! op at once: the stream orders the new writer after the old reader.
//!
//! The bucketing and bookkeeping are generic over `RawMemory`, so they are tested on the CPU with
//! a fake device (tests at the end); the driver implementation lives in mod.rs.
//!
//! CUDA graphs need one more rule (PyTorch's private graph pools): a captured graph replays with
//! the addresses it was recorded with, so every block the capture touched — allocated during it,
//! or freed during it after the graph read it — belongs to the graph's pool until the graph is
//! dropped. Outside the capture, only that pool hands those blocks out again.

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
    /// Bytes the tensors asked for (before rounding to a bucket), now and at most: what
    /// PyTorch's memory_allocated / max_memory_allocated count, for comparing footprints.
    pub requested_in_use: usize,
    pub requested_peak: usize,
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
    /// the bucket size held
    pub bytes: usize,
    /// the size asked for
    pub requested: usize,
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

/// A CUDA graph's private pool (see the module doc).
pub type PoolId = u64;

#[derive(Default)]
struct State {
    free: HashMap<usize, Vec<u64>>,
    stats: AllocStats,
    /// The pool a capture in progress allocates from and frees into.
    capturing: Option<PoolId>,
    /// Live pools: their free blocks, by size class.
    pools: HashMap<PoolId, HashMap<usize, Vec<u64>>>,
    /// Which pool each block handed out during a capture belongs to.
    owner: HashMap<u64, PoolId>,
    next_pool: PoolId,
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
        let st = &mut *st;
        // While capturing: the graph's own free blocks first, then the shared cache's (which then
        // join the graph's pool).
        let pooled = st.capturing.and_then(|id| st.pools.get_mut(&id)).and_then(|p| p.get_mut(&size)).and_then(Vec::pop);
        if let Some(ptr) = pooled.or_else(|| st.free.get_mut(&size).and_then(Vec::pop)) {
            st.stats.cached -= size;
            st.stats.reuses += 1;
            Self::count_in(&mut st.stats, size, bytes);
            if let Some(id) = st.capturing {
                st.owner.insert(ptr, id);
            }
            return Ok(Block { ptr, bytes: size, requested: bytes });
        }
        let ptr = match self.raw.malloc(size) {
            Ok(p) => p,
            // Returning the cache to the driver waits for the device, which a capture forbids.
            Err(RawError::OutOfMemory) if st.capturing.is_some() => {
                return Err(AllocError::OutOfMemory { requested: bytes, in_use: st.stats.in_use, peak: st.stats.peak })
            }
            Err(RawError::OutOfMemory) => {
                self.release_cached(st);
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
        Self::count_in(&mut st.stats, size, bytes);
        if let Some(id) = st.capturing {
            st.owner.insert(ptr, id);
        }
        Ok(Block { ptr, bytes: size, requested: bytes })
    }

    fn count_in(stats: &mut AllocStats, size: usize, requested: usize) {
        stats.in_use += size;
        stats.peak = stats.peak.max(stats.in_use);
        stats.requested_in_use += requested;
        stats.requested_peak = stats.requested_peak.max(stats.requested_in_use);
    }

    /// Takes a block back into its free list (no driver call).
    pub fn release(&self, block: Block) {
        let mut st = self.state();
        let st = &mut *st;
        st.stats.in_use -= block.bytes;
        st.stats.requested_in_use -= block.requested;
        st.stats.cached += block.bytes;
        // Freed during a capture: the graph may have read it, so it is the graph's now.
        if let Some(id) = st.capturing {
            st.owner.insert(block.ptr, id);
        }
        let pool = st.owner.get(&block.ptr).copied().and_then(|id| st.pools.get_mut(&id));
        match pool {
            Some(p) => p.entry(block.bytes).or_default().push(block.ptr),
            None => {
                st.owner.remove(&block.ptr);
                st.free.entry(block.bytes).or_default().push(block.ptr);
            }
        }
    }

    /// Starts a capture: until `end_capture`, blocks come from and return to a new private pool.
    pub fn begin_capture(&self) -> PoolId {
        let mut st = self.state();
        st.next_pool += 1;
        let id = st.next_pool;
        st.pools.insert(id, HashMap::new());
        st.capturing = Some(id);
        id
    }

    /// Ends the capture; the pool stays reserved for its graph until `drop_pool`.
    pub fn end_capture(&self) {
        self.state().capturing = None;
    }

    /// The graph is gone: its pool's free blocks join the shared cache, and its blocks still held
    /// by tensors follow when those are released.
    pub fn drop_pool(&self, id: PoolId) {
        let mut st = self.state();
        let st = &mut *st;
        if st.capturing == Some(id) {
            st.capturing = None;
        }
        for (size, ptrs) in st.pools.remove(&id).unwrap_or_default() {
            for p in ptrs {
                st.owner.remove(&p);
                st.free.entry(size).or_default().push(p);
            }
        }
    }

    /// Returns every cached block to the driver (after a large one-off allocation pattern, or
    /// before measuring memory).
    pub fn empty_cache(&self) {
        let mut st = self.state();
        self.release_cached(&mut st);
    }

    /// Returns the shared cache to the driver (graph pools keep theirs: their graphs use them).
    fn release_cached(&self, st: &mut State) {
        for (size, ptrs) in st.free.drain() {
            for p in ptrs {
                self.raw.free(p, size);
            }
        }
        st.stats.cached = st.pools.values().flat_map(|p| p.iter().map(|(size, ptrs)| size * ptrs.len())).sum();
    }

    pub fn stats(&self) -> AllocStats {
        self.state().stats
    }

    /// Starts a new peak measurement from the bytes in use now.
    pub fn reset_peak(&self) {
        let mut st = self.state();
        st.stats.peak = st.stats.in_use;
        st.stats.requested_peak = st.stats.requested_in_use;
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
        // the bytes asked for, unrounded (4096 and the MiB multiples are bucket sizes already)
        assert_eq!((s.requested_in_use, s.requested_peak), (0, 2 * 4096 + (1 << 20) + (3 << 20)));
        let odd = a.alloc(1_234_567).unwrap();
        let s = a.stats();
        assert_eq!((s.requested_in_use, s.in_use), (1_234_567, bucket(1_234_567)));
        a.release(odd);
        a.reset_peak();
        assert_eq!(a.stats().requested_peak, 0);
    }

    #[test]
    fn a_graph_keeps_the_blocks_its_capture_touched_until_it_is_dropped() {
        let a = CachingAllocator::new(FakeDevice::new(1 << 30));
        // Before the capture: a static input, and a cached block from an eager warm-up step.
        let input = a.alloc(4096).unwrap();
        let warm = a.alloc(1 << 20).unwrap();
        let warm_ptr = warm.ptr;
        a.release(warm);
        let pool = a.begin_capture();
        // The capture reuses the cached block (it joins the pool), allocates a new one, frees an
        // intermediate and reuses it within the capture, and keeps its output.
        let h = a.alloc(1 << 20).unwrap();
        assert_eq!(h.ptr, warm_ptr);
        let tmp = a.alloc(8192).unwrap();
        let tmp_ptr = tmp.ptr;
        a.release(tmp);
        let out = a.alloc(8192).unwrap();
        assert_eq!(out.ptr, tmp_ptr, "a block freed during the capture serves the capture again");
        a.release(h);
        a.end_capture();
        // Outside the capture nobody else gets the graph's blocks...
        let other = a.alloc(1 << 20).unwrap();
        assert_ne!(other.ptr, warm_ptr, "the graph's intermediate must not be handed out while the graph lives");
        // ...not even the output once its tensor is dropped (the next replay writes it again).
        let out_ptr = out.ptr;
        a.release(out);
        let other2 = a.alloc(8192).unwrap();
        assert_ne!(other2.ptr, out_ptr);
        // A block allocated before the capture and freed after it is ordinary.
        let input_ptr = input.ptr;
        a.release(input);
        assert_eq!(a.alloc(4096).unwrap().ptr, input_ptr);
        // Dropping the graph's pool returns its blocks to everyone.
        a.drop_pool(pool);
        assert_eq!(a.alloc(1 << 20).unwrap().ptr, warm_ptr);
        assert_eq!(a.alloc(8192).unwrap().ptr, out_ptr);
        a.release(other);
        a.release(other2);
    }

    #[test]
    fn out_of_memory_during_a_capture_fails_without_touching_the_driver_cache() {
        let a = CachingAllocator::new(FakeDevice::new(8 << 20));
        let b = a.alloc(6 << 20).unwrap();
        a.release(b);
        let pool = a.begin_capture();
        // Fits only after the cache is freed, which would wait for the device: refused instead.
        assert!(matches!(a.alloc(4 << 20), Err(AllocError::OutOfMemory { .. })));
        assert_eq!(*a.raw().frees.borrow(), 0);
        a.drop_pool(pool);
        assert!(a.alloc(4 << 20).is_ok(), "after the capture the cache is returned and it fits");
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
