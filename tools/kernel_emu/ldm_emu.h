// A CPU emulation of the CUDA features our tensor-core kernels use, so that their index logic
// (tiling, fragment layouts, bounds, the online softmax) is checked on a machine with no GPU.
//
// Why: CI and the development machine have no GPU, and a GPU is lent only now and then. With this
// header, kernels/*.cu compile as plain C++ (g++ -DLDM_KERNEL_EMU) and run with one std::thread
// per CUDA thread: __syncthreads is a block barrier, warp shuffles and mma.sync exchange their
// operands through a per-warp buffer between two warp barriers. mma.sync.m16n8k16 is computed
// from the fragment layouts of the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating
// point type"), so a kernel that indexes its fragments wrongly fails here as it would on a GPU.
//
// What it cannot show: speed, and hardware rounding order (products of f16/bf16 inputs are exact
// in f32 here; the tensor core's internal accumulation order differs within f32 rounding).
// Used by tools/kernel_emu/*.cpp and tests/kernel_emulation.rs.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <sched.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

using std::max;
using std::min;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__
#define __align__(n) alignas(n)

struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

// ---------------------------------------------------------------------------------------------
// f16 / bf16 storage types with round-to-nearest-even conversions (bit exact with CUDA's _rn).

struct __half {
    uint16_t bits;
};
struct __nv_bfloat16 {
    uint16_t bits;
};

inline uint32_t emu_f2u(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float emu_u2f(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline float __int_as_float(int i) { return emu_u2f((uint32_t)i); }
inline int __float_as_int(float f) { return (int)emu_f2u(f); }

inline float __bfloat162float(__nv_bfloat16 h) { return emu_u2f((uint32_t)h.bits << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u = emu_f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return {(uint16_t)(u >> 16)};
}
inline float __half2float(__half h) {
    uint32_t s = (uint32_t)(h.bits & 0x8000u) << 16, e = (h.bits >> 10) & 0x1f, m = h.bits & 0x3ffu;
    if (e == 0x1f) return emu_u2f(s | 0x7f800000u | (m << 13));
    if (e == 0) return (s ? -1.0f : 1.0f) * std::ldexp((float)m, -24);
    return emu_u2f(s | ((e + 112u) << 23) | (m << 13));
}
inline __half __float2half_rn(float f) {
    uint32_t u = emu_f2u(f), s = (u >> 16) & 0x8000u;
    float a = std::fabs(f);
    if (std::isnan(f)) return {(uint16_t)(s | 0x7e00u)};
    if (a >= 65520.0f) return {(uint16_t)(s | 0x7c00u)};  // rounds to infinity
    if (a < 6.103515625e-05f) {                           // subnormal: multiples of 2^-24
        float q = std::nearbyint(a * 16777216.0f);        // ties to even (default rounding mode)
        return {(uint16_t)(s | (uint32_t)q)};
    }
    uint32_t au = emu_f2u(a);
    au += 0xfffu + ((au >> 13) & 1u);
    uint32_t e = (au >> 23) - 112u, m = (au >> 13) & 0x3ffu;
    return {(uint16_t)(s | (e << 10) | m)};
}
inline unsigned short __half_as_ushort(__half h) { return h.bits; }
inline __half __ushort_as_half(unsigned short b) { return {b}; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short b) { return {b}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.bits; }

// exp2f, expf, log2f, fmaxf, fminf come from <cmath> as they are; CUDA's rsqrtf is approximate
// (≤ 2 ulp), this one correctly rounded.
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

// ---------------------------------------------------------------------------------------------
// Blocks, warps, barriers.

namespace ldm_emu {

// Every CUDA thread of a block runs the same __shared__ declarations in the same order, so a
// per-thread bump allocator over the block's buffer hands each the same address, as on a GPU.
constexpr size_t SMEM_BYTES = 228 * 1024;

struct Warp {
    std::barrier<> bar{32};
    uint32_t a[32][4];
    uint32_t b[32][2];
    uint64_t word[32];
};

struct Block {
    std::barrier<> bar;
    std::atomic<int> any{0};  // __syncthreads_or's vote
    std::vector<std::unique_ptr<Warp>> warps;
    std::vector<unsigned char> smem;
    Block(int threads) : bar(threads), smem(SMEM_BYTES + 1024, 0) {
        for (int w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<Warp>());
    }
};

inline thread_local Block* current = nullptr;
inline thread_local size_t shared_used = 0;
inline std::mutex atomic_lock;

inline int linear_tid() { return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)); }
inline int lane() { return linear_tid() & 31; }
inline Warp& warp() { return *current->warps[linear_tid() >> 5]; }
// The block's shared window starts 1024-byte aligned (as a GPU's does), so that the shared-memory
// addresses below (offsets from it) keep the alignment a swizzled wgmma operand relies on.
inline unsigned char* smem_base() { return (unsigned char*)(((uintptr_t)current->smem.data() + 1023) & ~(uintptr_t)1023); }
inline void* shared_alloc(size_t bytes, size_t align = 16) {
    shared_used = (shared_used + align - 1) & ~(align - 1);
    void* p = (void*)(smem_base() + shared_used);
    shared_used = (shared_used + bytes + 15) & ~(size_t)15;
    if (shared_used > SMEM_BYTES) {
        std::fprintf(stderr, "ldm_emu: more than %zu bytes of shared memory\n", SMEM_BYTES);
        std::exit(2);
    }
    return p;
}

// A condition the GPU would fault on (an unaligned vector access): stop with its name.
[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "ldm_emu: %s (block %u,%u,%u thread %u)\n", what, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x);
    std::exit(3);
}

// Runs `body` for every thread of every block, one block at a time, with one std::thread per CUDA
// thread kept for the whole launch. The block size must be a multiple of 32 (whole warps).
template <class F>
void launch(dim3 grid, dim3 block, F body) {
    gridDim = grid;
    blockDim = block;
    int threads = (int)(block.x * block.y * block.z);
    if (threads % 32 != 0) {
        std::fprintf(stderr, "ldm_emu: block of %d threads is not whole warps\n", threads);
        std::exit(2);
    }
    // All threads on one core: the barriers hand control from thread to thread thousands of times
    // per block, and a wake-up on another core costs ~6× more than a switch on the same one
    // (measured: the conv cases took 24 s spread over 2 cores, 3.7 s on one).
    static bool pinned = [] {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) != 0) return false;
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) {
                CPU_ZERO(&set);
                CPU_SET(c, &set);
                return sched_setaffinity(0, sizeof set, &set) == 0;
            }
        return false;
    }();
    (void)pinned;
    Block blk(threads);
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            current = &blk;
            threadIdx = {(unsigned)(t % block.x), (unsigned)(t / block.x % block.y), (unsigned)(t / (block.x * block.y))};
            for (unsigned bz = 0; bz < grid.z; ++bz)
                for (unsigned by = 0; by < grid.y; ++by)
                    for (unsigned bx = 0; bx < grid.x; ++bx) {
                        blockIdx = {bx, by, bz};
                        shared_used = 0;
                        body();
                        blk.bar.arrive_and_wait();  // the next block reuses the shared memory
                    }
        });
    }
    for (auto& th : pool) th.join();
}

}  // namespace ldm_emu

// A statically sized __shared__ array: `LDM_SHARED(T, name, count);` (kernels/common.cuh), and
// one aligned to `align` bytes of the shared window.
#define LDM_SHARED(T, name, count) T* name = (T*)ldm_emu::shared_alloc(sizeof(T) * (count))
#define LDM_SHARED_ALIGNED(T, name, count, align) T* name = (T*)ldm_emu::shared_alloc(sizeof(T) * (count), align)

inline void __syncthreads() { ldm_emu::current->bar.arrive_and_wait(); }

// A block barrier that returns nonzero to every thread if any thread's `pred` was nonzero.
inline int __syncthreads_or(int pred) {
    auto& b = *ldm_emu::current;
    if (pred) b.any.store(1);
    b.bar.arrive_and_wait();
    const int any = b.any.load();
    b.bar.arrive_and_wait();  // every thread has read the vote
    if (ldm_emu::linear_tid() == 0) b.any.store(0);
    b.bar.arrive_and_wait();  // cleared before the next vote
    return any;
}

template <typename V>
inline V __shfl_xor_sync(unsigned, V v, int lane_mask) {
    static_assert(sizeof(V) <= 8, "shuffle of at most 8 bytes");
    auto& w = ldm_emu::warp();
    int l = ldm_emu::lane();
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(V));
    w.word[l] = bits;
    w.bar.arrive_and_wait();
    bits = w.word[l ^ lane_mask];
    w.bar.arrive_and_wait();
    std::memcpy(&v, &bits, sizeof(V));
    return v;
}

// cp.async (sm_80): each copy lands in shared memory only when a cp.async.wait_group of its
// thread covers its group — never earlier — so a kernel that reads a stage before waiting for it,
// or waits for too few groups, reads stale data here and fails its test. The source is read at
// issue (the kernels' operands are read-only). Threads live for one launch, so no state leaks.
namespace ldm_emu {
struct PendingCopy {
    void* dst;
    unsigned char bytes[16];
};
inline thread_local std::vector<std::vector<PendingCopy>> cp_groups;  // committed, oldest first
inline thread_local std::vector<PendingCopy> cp_open;                 // issued, not yet committed
}  // namespace ldm_emu

inline void cp_async16(void* smem, const void* gmem, bool full) {
    if (reinterpret_cast<uintptr_t>(smem) % 16 != 0 || (full && reinterpret_cast<uintptr_t>(gmem) % 16 != 0)) ldm_emu::fail("cp.async: unaligned 16-byte copy");
    ldm_emu::PendingCopy c{smem, {}};
    if (full) std::memcpy(c.bytes, gmem, 16);
    ldm_emu::cp_open.push_back(c);
}
inline void cp_async_commit() {
    ldm_emu::cp_groups.push_back(std::move(ldm_emu::cp_open));
    ldm_emu::cp_open.clear();
}
template <int N>
inline void cp_async_wait() {
    auto& groups = ldm_emu::cp_groups;
    while (groups.size() > (size_t)N) {
        for (const auto& c : groups.front()) std::memcpy(c.dst, c.bytes, 16);
        groups.erase(groups.begin());
    }
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 (sm_75+), from the PTX ISA's description:
// lane L gives the address of row L % 8 of matrix L / 8 (8 contiguous 16-bit elements, 16-byte
// aligned); register i of lane L receives matrix i's elements (row L/4, cols 2(L%4), 2(L%4)+1),
// or with .trans (rows 2(L%4), 2(L%4)+1, col L/4), the lower index in the low half. A kernel that
// hands a lane the wrong row, or expects the wrong transpose, gets the wrong fragment here.
template <bool TRANS>
inline void emu_ldmatrix_x4(uint32_t r[4], const void* row) {
    if (reinterpret_cast<uintptr_t>(row) % 16 != 0) ldm_emu::fail("ldmatrix: unaligned row address");
    auto& w = ldm_emu::warp();
    int l = ldm_emu::lane();
    w.word[l] = (uint64_t)reinterpret_cast<uintptr_t>(row);
    w.bar.arrive_and_wait();
    for (int i = 0; i < 4; ++i) {
        auto at = [&](int rr, int cc) -> uint32_t {
            const uint16_t* p = reinterpret_cast<const uint16_t*>((uintptr_t)w.word[8 * i + rr]);
            return p[cc];
        };
        int g = l >> 2, t = l & 3;
        r[i] = TRANS ? (at(2 * t, g) | at(2 * t + 1, g) << 16) : (at(g, 2 * t) | at(g, 2 * t + 1) << 16);
    }
    w.bar.arrive_and_wait();
}
inline void ldmatrix_x4(uint32_t r[4], const void* row) { emu_ldmatrix_x4<false>(r, row); }
inline void ldmatrix_x4_trans(uint32_t r[4], const void* row) { emu_ldmatrix_x4<true>(r, row); }
// ex2.approx.ftz.f32 (≤ 2 ulp on the GPU): exact here.
inline float fast_exp2(float x) { return exp2f(x); }

// wgmma (sm_90a), as far as the kernel lab's GEMM variant 5 uses it: wgmma.mma_async
// m64nNk16, f32 accumulators, A and B both K-major in shared memory behind matrix descriptors with
// the 64-byte swizzle. Emulated from the PTX ISA's description ("Matrix Descriptor Format",
// "Shared Memory Matrix Layout", "Register Fragments" for wgmma .m64nNk16):
//   descriptor bits 0–13 start address >> 4, 16–29 leading byte offset >> 4 (unused by a
//   swizzled K-major operand), 32–45 stride byte offset >> 4 (between 8-row groups), 49–51 base
//   offset (0 here: the operand's 8-row atoms are 512-byte aligned), 62–63 layout (2: 64-byte swizzle);
//   element (row r, k) of such an operand sits at start + (r / 8)·SBO + (r % 8)·64 + 2k, with
//   address bits 4–5 XORed by bits 7–8 (16-byte chunk c of row r moves to c ^ ((r >> 1) & 3));
//   accumulator 4j + e of thread T (warp w = T / 32 of the warpgroup, g = T % 32 / 4, t = T % 4)
//   is row 16w + g (+8 for e ≥ 2), column 8j + 2t + (e & 1).
// The product is computed at issue, from shared memory as it is then (the kernel waits for it
// before touching shared memory or the accumulators again); fences, commits and waits do nothing
// here. A descriptor with another layout stops the emulator.
inline uint32_t smem_addr(const void* p) { return (uint32_t)((const unsigned char*)p - ldm_emu::smem_base()); }
inline void wgmma_fence() {}
inline void wgmma_commit() {}
template <int N>
inline void wgmma_wait() {}
inline void fence_proxy_async() {}
template <bool BF16, int N>
inline void emu_wgmma_m64k16(float* d, uint64_t da, uint64_t db) {
    auto elem = [](uint64_t desc, int r, int k) -> float {
        if ((desc >> 62) != 2 || ((desc >> 49) & 7) != 0) ldm_emu::fail("wgmma: only the 64-byte swizzle at base offset 0 is emulated");
        uint32_t start = (uint32_t)(desc & 0x3fff) << 4, sbo = (uint32_t)((desc >> 32) & 0x3fff) << 4;
        uint32_t a = start + (uint32_t)(r >> 3) * sbo + (uint32_t)(r & 7) * 64 + 2 * (uint32_t)k;
        a ^= ((a >> 7) & 3) << 4;
        uint16_t h;
        std::memcpy(&h, ldm_emu::smem_base() + a, 2);
        return BF16 ? __bfloat162float(__nv_bfloat16{h}) : __half2float(__half{h});
    };
    int tid = ldm_emu::linear_tid() % 128, w = tid / 32, g = (tid % 32) >> 2, t = tid & 3;
    for (int j = 0; j < N / 8; ++j)
        for (int e = 0; e < 4; ++e) {
            int row = 16 * w + g + (e >= 2 ? 8 : 0), col = 8 * j + 2 * t + (e & 1);
            float acc = d[4 * j + e];
            for (int k = 0; k < 16; ++k) acc += elem(da, row, k) * elem(db, col, k);
            d[4 * j + e] = acc;
        }
}

inline float atomicAdd(float* p, float v) {
    std::lock_guard<std::mutex> g(ldm_emu::atomic_lock);
    float old = *p;
    *p = old + v;
    return old;
}
inline int atomicAdd(int* p, int v) {
    std::lock_guard<std::mutex> g(ldm_emu::atomic_lock);
    int old = *p;
    *p = old + v;
    return old;
}
// Blocks run one after another here, so every earlier block's writes are visible: a fence has
// nothing to order, and an L2 load (ld.global.cg) is a load.
inline void __threadfence() {}
template <typename V>
inline V __ldcg(const V* p) { return *p; }

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}: d = A·B + c, A 16×16 (row), B 16×8 (col).
// The layouts below are the PTX ISA's, section 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with
// floating point type" (checked against its text: A element ai at row g (+8 for i in 2,3,6,7),
// col 2t + (i & 1) (+8 for i >= 4); B element bi at row 2t + (i & 1) (+8 for i >= 2), col g;
// C element ci at row g (+8 for i >= 2), col 2t + (i & 1)), two 16-bit elements per register.
// Lane L holds, with g = L / 4 and t = L % 4 (low half of each 32-bit register = lower index):
//   a0 = A[g][2t..2t+1], a1 = A[g+8][2t..2t+1], a2 = A[g][2t+8..2t+9], a3 = A[g+8][2t+8..2t+9]
//   b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   c/d: [0] = D[g][2t], [1] = D[g][2t+1], [2] = D[g+8][2t], [3] = D[g+8][2t+1]
template <bool BF16>
inline void emu_mma_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    auto& w = ldm_emu::warp();
    int l = ldm_emu::lane();
    std::memcpy(w.a[l], a, 16);
    std::memcpy(w.b[l], b, 8);
    w.bar.arrive_and_wait();
    auto val = [](uint32_t reg, int hi) -> float {
        uint16_t h = (uint16_t)(hi ? reg >> 16 : reg & 0xffffu);
        return BF16 ? __bfloat162float(__nv_bfloat16{h}) : __half2float(__half{h});
    };
    float A[16][16], B[16][8];
    for (int L = 0; L < 32; ++L) {
        int g = L >> 2, t = L & 3;
        for (int hi = 0; hi < 2; ++hi) {
            A[g][2 * t + hi] = val(w.a[L][0], hi);
            A[g + 8][2 * t + hi] = val(w.a[L][1], hi);
            A[g][2 * t + 8 + hi] = val(w.a[L][2], hi);
            A[g + 8][2 * t + 8 + hi] = val(w.a[L][3], hi);
            B[2 * t + hi][g] = val(w.b[L][0], hi);
            B[2 * t + 8 + hi][g] = val(w.b[L][1], hi);
        }
    }
    w.bar.arrive_and_wait();
    int g = l >> 2, t = l & 3;
    for (int i = 0; i < 4; ++i) {
        int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
        float acc = d[i];
        for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
        d[i] = acc;
    }
}
