// Elementwise kernels: strided copy, dtype casts, unary maps (and their backward), affine, powf,
// broadcasting binary ops, comparisons, where, fill, and the fused GEGLU gate. Every input is read through a `Strided`
// layout (broadcast dims have stride 0); every output is contiguous. CPU twin:
// src/backend/cpu/elementwise.rs and math.rs — the op codes below follow the Rust enums' order.
#include "common.cuh"

// UnaryOp order in src/tensor/elementwise.rs.
enum { U_NEG, U_ABS, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_RECIP, U_SQR, U_TANH, U_SIGMOID, U_SILU, U_RELU,
       U_GELU_ERF, U_GELU_TANH, U_QUICK_GELU, U_SIN, U_COS };
enum { B_ADD, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN };
enum { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE };

#define SQRT_2_OVER_PI 0.7978845608f
#define INV_SQRT_2 0.7071067812f

template <int OP> __device__ __forceinline__ float unary_f(float x) {
    switch (OP) {
        case U_NEG: return -x;
        case U_ABS: return fabsf(x);
        case U_EXP: return expf(x);
        case U_LOG: return logf(x);
        case U_SQRT: return sqrtf(x);
        case U_RSQRT: return 1.0f / sqrtf(x);
        case U_RECIP: return 1.0f / x;
        case U_SQR: return x * x;
        case U_TANH: return tanhf(x);
        case U_SIGMOID: return sigmoidf_(x);
        case U_SILU: return x * sigmoidf_(x);
        case U_RELU: return fmaxf(x, 0.0f);
        case U_GELU_ERF: return gelu_erf_(x);
        case U_GELU_TANH: return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)));
        case U_QUICK_GELU: return x * sigmoidf_(1.702f * x);
        case U_SIN: return sinf(x);
        default: return cosf(x);
    }
}

// d op(x)/dx, as unary_grad_f32 in src/backend/cpu/math.rs.
template <int OP> __device__ __forceinline__ float unary_grad(float x) {
    switch (OP) {
        case U_NEG: return -1.0f;
        case U_ABS: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
        case U_EXP: return expf(x);
        case U_LOG: return 1.0f / x;
        case U_SQRT: return 0.5f / sqrtf(x);
        case U_RSQRT: return -0.5f / (x * sqrtf(x));
        case U_RECIP: return -1.0f / (x * x);
        case U_SQR: return 2.0f * x;
        case U_TANH: { float t = tanhf(x); return 1.0f - t * t; }
        case U_SIGMOID: { float s = sigmoidf_(x); return s * (1.0f - s); }
        case U_SILU: { float s = sigmoidf_(x); return s * (1.0f + x * (1.0f - s)); }
        case U_RELU: return x > 0.0f ? 1.0f : 0.0f;
        case U_GELU_ERF: {
            float cdf = 0.5f * (1.0f + erff(x * INV_SQRT_2));
            float pdf = expf(-0.5f * x * x) * 0.3989422804f;
            return cdf + x * pdf;
        }
        case U_GELU_TANH: {
            float u = SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
            float t = tanhf(u);
            float du = SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
            return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
        }
        case U_QUICK_GELU: { float s = sigmoidf_(1.702f * x); return s + 1.702f * x * s * (1.0f - s); }
        case U_SIN: return cosf(x);
        default: return -sinf(x);
    }
}

// y[i] = f(x[i]) over contiguous, 16-byte-aligned operands: a Pack per thread and step, then the
// last n mod V elements one by one. The caller has checked `packable`.
template <typename T, typename F>
__device__ __forceinline__ void map1_packed(int64_t n, const T* x, T* y, F f) {
    constexpr int V = 16 / sizeof(T);
    const int64_t packs = n / V;
    GRID_STRIDE(i, packs) {
        Pack<T> a = reinterpret_cast<const Pack<T>*>(x)[i], r;
        #pragma unroll
        for (int k = 0; k < V; ++k) r.v[k] = f(a.v[k]);
        reinterpret_cast<Pack<T>*>(y)[i] = r;
    }
    GRID_STRIDE(i, n - packs * V) y[packs * V + i] = f(x[packs * V + i]);
}

// out[i] = f(a[i], b[i]), the same for two inputs.
template <typename T, typename F>
__device__ __forceinline__ void map2_packed(int64_t n, const T* a, const T* b, T* out, F f) {
    constexpr int V = 16 / sizeof(T);
    const int64_t packs = n / V;
    GRID_STRIDE(i, packs) {
        Pack<T> x = reinterpret_cast<const Pack<T>*>(a)[i], y = reinterpret_cast<const Pack<T>*>(b)[i], r;
        #pragma unroll
        for (int k = 0; k < V; ++k) r.v[k] = f(x.v[k], y.v[k]);
        reinterpret_cast<Pack<T>*>(out)[i] = r;
    }
    GRID_STRIDE(i, n - packs * V) out[packs * V + i] = f(a[packs * V + i], b[packs * V + i]);
}

// y[i] = f(x at i) for any operand: the packed path when it and y allow it, else element by element.
template <typename T, typename F>
__device__ __forceinline__ void map1(int64_t n, const Strided& xs, const T* x, T* y, F f) {
    if (packable(xs, x) && packable(y)) return map1_packed(n, x + xs.offset, y, f);
    GRID_STRIDE(i, n) y[i] = f(x[strided_offset(xs, i)]);
}

template <typename T, int OP>
__device__ void unary_loop(int64_t n, const Strided& xs, const T* x, T* y) {
    map1(n, xs, x, y, [](T v) -> T { return from_f32<T>(unary_f<OP>(to_f32(v))); });
}

template <typename T>
__device__ void affine_loop(int64_t n, const Strided& xs, const T* x, T* y, float mul, float add) {
    map1(n, xs, x, y, [mul, add](T v) -> T { return from_f32<T>(to_f32(v) * mul + add); });
}

template <typename T>
__device__ void copy_loop(int64_t n, const Strided& xs, const T* x, T* y) {
    map1(n, xs, x, y, [](T v) -> T { return v; });
}

template <typename T, int OP>
__device__ void unary_grad_loop(int64_t n, const Strided& xs, const T* x, const Strided& gs, const T* g, T* out) {
    GRID_STRIDE(i, n) {
        float xv = to_f32(x[strided_offset(xs, i)]);
        out[i] = from_f32<T>(to_f32(g[strided_offset(gs, i)]) * unary_grad<OP>(xv));
    }
}

// The op switch sits outside the loop: each case is its own specialised loop.
#define UNARY_CASES(MACRO) \
    switch (op) { \
        case U_NEG: MACRO(U_NEG); break; case U_ABS: MACRO(U_ABS); break; case U_EXP: MACRO(U_EXP); break; \
        case U_LOG: MACRO(U_LOG); break; case U_SQRT: MACRO(U_SQRT); break; case U_RSQRT: MACRO(U_RSQRT); break; \
        case U_RECIP: MACRO(U_RECIP); break; case U_SQR: MACRO(U_SQR); break; case U_TANH: MACRO(U_TANH); break; \
        case U_SIGMOID: MACRO(U_SIGMOID); break; case U_SILU: MACRO(U_SILU); break; case U_RELU: MACRO(U_RELU); break; \
        case U_GELU_ERF: MACRO(U_GELU_ERF); break; case U_GELU_TANH: MACRO(U_GELU_TANH); break; \
        default: MACRO(U_QUICK_GELU); break; \
    }
// sin/cos get their own entry points: their huge-argument reduction (Payne-Hanek) needs a local
// stack array, which would otherwise give every activation kernel a stack frame.
#define TRIG_CASES(MACRO) \
    switch (op) { case U_SIN: MACRO(U_SIN); break; default: MACRO(U_COS); break; }

template <int OP> __device__ __forceinline__ float binary_f(float a, float b) {
    switch (OP) {
        case B_ADD: return a + b;
        case B_SUB: return a - b;
        case B_MUL: return a * b;
        case B_DIV: return a / b;
        // NaN handling as the CPU twin: `if a >= b { a } else { b }`.
        case B_MAX: return a >= b ? a : b;
        default: return a <= b ? a : b;
    }
}

template <typename T, int OP>
__device__ void binary_loop(int64_t n, const Strided& as, const T* a, const Strided& bs, const T* b, T* out) {
    auto f = [](T x, T y) -> T { return from_f32<T>(binary_f<OP>(to_f32(x), to_f32(y))); };
    if (packable(as, a) && packable(bs, b) && packable(out)) return map2_packed(n, a + as.offset, b + bs.offset, out, f);
    GRID_STRIDE(i, n) out[i] = f(a[strided_offset(as, i)], b[strided_offset(bs, i)]);
}

// What a comparison compares: floats as f32 (exact for every float storage type), integers as
// themselves (an i64 beyond 2^24 would not survive a trip through f32; VQ codebook indices are
// compared this way).
__device__ __forceinline__ float cmp_key(float v) { return v; }
__device__ __forceinline__ float cmp_key(f16 v) { return to_f32(v); }
__device__ __forceinline__ float cmp_key(bf16 v) { return to_f32(v); }
__device__ __forceinline__ int64_t cmp_key(int64_t v) { return v; }
__device__ __forceinline__ int32_t cmp_key(uint8_t v) { return v; }

template <typename T>
__device__ void cmp_loop(int64_t n, int op, const Strided& as, const T* a, const Strided& bs, const T* b, uint8_t* out) {
    GRID_STRIDE(i, n) {
        auto x = cmp_key(a[strided_offset(as, i)]), y = cmp_key(b[strided_offset(bs, i)]);
        bool r;
        switch (op) {
            case C_EQ: r = x == y; break;
            case C_NE: r = x != y; break;
            case C_LT: r = x < y; break;
            case C_LE: r = x <= y; break;
            case C_GT: r = x > y; break;
            default: r = x >= y; break;
        }
        out[i] = r ? 1 : 0;
    }
}

// GEGLU, the SD transformer's feed-forward gate, in one pass: x [rows, 2·inner] (contiguous) →
// x[:, :inner] · gelu_erf(x[:, inner:]) [rows, inner]. Unfused it is a GELU pass and a product
// pass over the gate; here each element is read once and the output written once.
template <typename T>
__device__ void geglu_loop(int64_t n, int64_t inner, const T* x, T* out) {
    GRID_STRIDE(i, n) {
        int64_t r = i / inner, j = i - r * inner;
        const T* row = x + r * 2 * inner;
        out[i] = from_f32<T>(to_f32(row[j]) * unary_f<U_GELU_ERF>(to_f32(row[inner + j])));
    }
}

#define FLOAT_OPS(T, S) \
extern "C" __global__ void geglu_##S(int64_t n, int64_t inner, const T* x, T* out) { \
    geglu_loop<T>(n, inner, x, out); \
} \
extern "C" __global__ void unary_##S(int64_t n, int32_t op, Strided xs, const T* x, T* y) { \
    UNARY_CASES(UNARY_##S) \
} \
extern "C" __global__ void unary_backward_##S(int64_t n, int32_t op, Strided xs, const T* x, Strided gs, const T* g, T* out) { \
    UNARY_CASES(UNARY_GRAD_##S) \
} \
extern "C" __global__ void unary_trig_##S(int64_t n, int32_t op, Strided xs, const T* x, T* y) { \
    TRIG_CASES(UNARY_##S) \
} \
extern "C" __global__ void unary_trig_backward_##S(int64_t n, int32_t op, Strided xs, const T* x, Strided gs, const T* g, T* out) { \
    TRIG_CASES(UNARY_GRAD_##S) \
} \
extern "C" __global__ void affine_##S(int64_t n, Strided xs, const T* x, T* y, float mul, float add) { \
    affine_loop<T>(n, xs, x, y, mul, add); \
} \
extern "C" __global__ void powf_##S(int64_t n, Strided xs, const T* x, T* y, float e) { \
    GRID_STRIDE(i, n) y[i] = from_f32<T>(powf(to_f32(x[strided_offset(xs, i)]), e)); \
} \
extern "C" __global__ void binary_##S(int64_t n, int32_t op, Strided as, const T* a, Strided bs, const T* b, T* out) { \
    switch (op) { \
        case B_ADD: binary_loop<T, B_ADD>(n, as, a, bs, b, out); break; \
        case B_SUB: binary_loop<T, B_SUB>(n, as, a, bs, b, out); break; \
        case B_MUL: binary_loop<T, B_MUL>(n, as, a, bs, b, out); break; \
        case B_DIV: binary_loop<T, B_DIV>(n, as, a, bs, b, out); break; \
        case B_MAX: binary_loop<T, B_MAX>(n, as, a, bs, b, out); break; \
        default: binary_loop<T, B_MIN>(n, as, a, bs, b, out); break; \
    } \
} \
extern "C" __global__ void cmp_##S(int64_t n, int32_t op, Strided as, const T* a, Strided bs, const T* b, uint8_t* out) { \
    cmp_loop<T>(n, op, as, a, bs, b, out); \
} \
extern "C" __global__ void where_##S(int64_t n, Strided cs, const uint8_t* c, Strided ts, const T* t, Strided fs, const T* f, T* out) { \
    GRID_STRIDE(i, n) out[i] = c[strided_offset(cs, i)] ? t[strided_offset(ts, i)] : f[strided_offset(fs, i)]; \
}

#define UNARY_f32(OP) unary_loop<float, OP>(n, xs, x, y)
#define UNARY_f16(OP) unary_loop<f16, OP>(n, xs, x, y)
#define UNARY_bf16(OP) unary_loop<bf16, OP>(n, xs, x, y)
#define UNARY_GRAD_f32(OP) unary_grad_loop<float, OP>(n, xs, x, gs, g, out)
#define UNARY_GRAD_f16(OP) unary_grad_loop<f16, OP>(n, xs, x, gs, g, out)
#define UNARY_GRAD_bf16(OP) unary_grad_loop<bf16, OP>(n, xs, x, gs, g, out)

FLOAT_OPS(float, f32)
FLOAT_OPS(f16, f16)
FLOAT_OPS(bf16, bf16)

// Integer comparisons (index tensors: argmin results, labels).
extern "C" __global__ void cmp_i64(int64_t n, int32_t op, Strided as, const int64_t* a, Strided bs, const int64_t* b, uint8_t* out) {
    cmp_loop<int64_t>(n, op, as, a, bs, b, out);
}
extern "C" __global__ void cmp_u8(int64_t n, int32_t op, Strided as, const uint8_t* a, Strided bs, const uint8_t* b, uint8_t* out) {
    cmp_loop<uint8_t>(n, op, as, a, bs, b, out);
}

// Copies and casts exist for every storage dtype, integers included.
#define COPY(T, S) \
/* [B, R, S] → [B, S, R] (NCHW → NHWC, conv weights [K, C, KH·KW] → [K, KH·KW, C]) */ \
extern "C" __global__ void transpose_last2_##S(int64_t R, int64_t Sn, const T* x, T* y) { \
    transpose_tile<T>(R, Sn, x, y, [](int64_t, T v) -> T { return v; }); \
} \
extern "C" __global__ void copy_##S(int64_t n, Strided xs, const T* x, T* y) { \
    copy_loop<T>(n, xs, x, y); \
} \
/* Writes into a strided destination (a narrow of cat's output). */ \
extern "C" __global__ void copy_into_##S(int64_t n, Strided xs, const T* x, Strided ys, T* y) { \
    GRID_STRIDE(i, n) y[strided_offset(ys, i)] = x[strided_offset(xs, i)]; \
} \
extern "C" __global__ void fill_##S(int64_t n, T* y, T v) { \
    GRID_STRIDE(i, n) y[i] = v; \
}
COPY(float, f32)
COPY(f16, f16)
COPY(bf16, bf16)
COPY(int64_t, i64)
COPY(uint8_t, u8)

// Float ↔ float casts go through f32 (exact for f16/bf16 → f32, round-to-nearest-even back).
// i64 sources read as double so large indices survive, as the CPU twin does.
__device__ __forceinline__ double to_f64(int64_t x) { return (double)x; }
template <typename T> __device__ __forceinline__ double to_f64(T x) { return (double)to_f32(x); }
template <typename D> __device__ __forceinline__ D cast_from(double v) { return from_f32<D>((float)v); }
template <> __device__ __forceinline__ int64_t cast_from<int64_t>(double v) {
    if (v != v) return 0;
    if (v >= 9.2233720368547758e18) return INT64_MAX;
    if (v <= -9.2233720368547758e18) return INT64_MIN;
    return (int64_t)v;
}
template <> __device__ __forceinline__ uint8_t cast_from<uint8_t>(double v) {
    if (!(v > 0.0)) return 0;
    if (v >= 255.0) return 255;
    return (uint8_t)v;
}

#define CAST(S, SN, D, DN) \
extern "C" __global__ void cast_##SN##_##DN(int64_t n, Strided xs, const S* x, D* y) { \
    GRID_STRIDE(i, n) y[i] = cast_from<D>(to_f64(x[strided_offset(xs, i)])); \
}
#define CAST_FROM(S, SN) \
    CAST(S, SN, float, f32) CAST(S, SN, f16, f16) CAST(S, SN, bf16, bf16) CAST(S, SN, int64_t, i64) CAST(S, SN, uint8_t, u8)
CAST_FROM(float, f32)
CAST_FROM(f16, f16)
CAST_FROM(bf16, bf16)
CAST_FROM(int64_t, i64)
CAST_FROM(uint8_t, u8)
