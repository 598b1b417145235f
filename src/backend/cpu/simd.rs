//! Run-time instruction-set dispatch for the CPU kernels' hot loops.
//!
//! The crate builds for the baseline x86-64 target (SSE2) so one binary runs everywhere; loops
//! written to auto-vectorise are compiled again with AVX-512 and with AVX2+FMA and picked once per
//! call by CPUID (std caches the query).

/// `multiversion!(fn name(args) -> ret => fast, base)` defines `name`, which calls the expression
/// `fast` (compiled inside AVX-512 and AVX2+FMA functions, so it inlines there and vectorises
/// wider) when the CPU has those features, else `base`. `fast` and `base` are usually the same
/// `#[inline(always)]` function, or two instances of one generic (e.g. `k::<true>` may use
/// `mul_add`, which is a single instruction only where FMA exists).
macro_rules! multiversion {
    (fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $fast:expr, $base:expr) => {
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v512($($arg: $ty),*) $(-> $ret)? {
                    ($fast)($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v256($($arg: $ty),*) $(-> $ret)? {
                    ($fast)($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") {
                    // SAFETY: the running CPU has the features v512 is compiled for.
                    return unsafe { v512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for v256.
                    return unsafe { v256($($arg),*) };
                }
            }
            ($base)($($arg),*)
        }
    };
}
