// Shared by the kernel sources of splatrefine.splat (built by _native.py into one library).
//
// Compiled without fast-math and with -ffp-contract=off: forward and backward evaluate alpha with
// bit-identical IEEE arithmetic, so both passes agree on which pixel/Gaussian pairs count.
// Layouts are those of _kernels.py (geom [G,8], rect [G,4], feats [G,Dp], sorted intersections).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#define SR_EXPORT extern "C" __attribute__((visibility("default")))

// Arguments of the exported kernels, filled from Python (ctypes.Structure built from the field
// table in _native.py, in the same order). Every field is 8 bytes (pointer, int64 or double), so
// the layout has no padding and is the same on both sides; sr_struct_sizes lets Python check.
struct SrRaster {
    // inputs of the forward pass
    const void* geom;           // [G,8] R
    const int32_t* rect;        // [G,4]
    const void* feats;          // [G,Dp] R
    const void* bgs;            // [C,D] R (has_bg)
    const int64_t* tile_start;  // [n_tiles+1]
    const int32_t* gid;         // [M] slot of each intersection
    const int32_t* slot_of;     // [M] Gaussian-major position (backward)
    // outputs of the forward pass (inputs of the backward)
    void* out;                  // [C,H,W,D] R
    void* out_alpha;            // [C,H,W] R
    void* out_T;                // [C,H,W] R
    int32_t* out_last;          // [C,H,W]
    uint8_t* used;              // [M]
    // backward
    const void* g_out;          // [C,H,W,D] R, strides go_s (elements; 0 for expanded dims)
    const void* g_alpha;        // [C,H,W] R, strides ga_s
    void* gbuf;                 // [M,8+Dp] R
    int64_t Dp, has_bg, width, height, tiles_x, tiles_y, n_tiles, D;
    int64_t go_s[4], ga_s[3];
};

struct SrProject {
    const void* means;     // [N,3]
    const void* quats;     // [N,4]
    const void* scales;    // [N,3]
    const void* opac;      // [N] or null
    const void* viewmats;  // [C,4,4]
    const void* Ks;        // [C,3,3]
    int32_t* radii;        // [C,N,2]
    void* means2d;         // [C,N,2]
    void* depths;          // [C,N]
    void* conics;          // [C,N,3]
    const void* g_means2d;
    const void* g_depths;
    const void* g_conics;
    void* g_means;
    void* g_quats;
    void* g_scales;
    int64_t C, N, width, height;
    double eps2d, near_plane, far_plane;  // rounded to R in the kernel, as ctypes would
};

struct SrBin {
    const void* means2d;      // [G,2] R
    const void* conics;       // [G,3] R
    const void* opac;         // [G] R
    const int32_t* radii;     // [G,2]
    const int64_t* order;     // [V] visible slots by (camera, depth)
    void* geom;               // out [G,8] R
    int32_t* rect;            // out [G,4] pixel box
    int32_t* trect;           // out [G,4] tile range (x0, x1, y0, y1; exclusive ends)
    int64_t* tile_start;      // out [C*T+1]
    int64_t* slot_start;      // out [V+1]
    int32_t* gid;             // out [M] (sr_bin_fill)
    int32_t* slot;            // out [M] (sr_bin_fill)
    int64_t C, N, V, width, height, tiles_x, tiles_y;
};

namespace {

template <typename R> struct Cst;
template <> struct Cst<float> {
    static constexpr float amin = 1.0f / 255.0f, amax = 0.999f, tmin = 1e-4f;
};
template <> struct Cst<double> {
    static constexpr double amin = 1.0 / 255.0, amax = 0.999, tmin = 1e-4;
};

// Pixel vectors (V, masks M, int32 lanes I; L lanes) and channel vectors (CV, CL lanes) are 32
// bytes: Dp (a multiple of 8) is a whole number of channel vectors. (64-byte pixel vectors, one
// tile row each with AVX-512, measured 10-20% slower in both passes.)
#define SR_VBYTES 32
template <typename R> struct VT;
template <> struct VT<float> {
    typedef float V __attribute__((vector_size(SR_VBYTES)));
    typedef int32_t M __attribute__((vector_size(SR_VBYTES)));
    typedef int32_t I __attribute__((vector_size(SR_VBYTES)));
    static constexpr int L = SR_VBYTES / 4;
    typedef float CV __attribute__((vector_size(32)));
    static constexpr int CL = 8;
};
template <> struct VT<double> {
    typedef double V __attribute__((vector_size(SR_VBYTES)));
    typedef int64_t M __attribute__((vector_size(SR_VBYTES)));
    typedef int32_t I __attribute__((vector_size(SR_VBYTES / 2)));
    static constexpr int L = SR_VBYTES / 8;
    typedef double CV __attribute__((vector_size(32)));
    static constexpr int CL = 4;
};

template <typename V> static inline V vload(const void* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
}
template <typename V> static inline void vstore(void* p, V v) { std::memcpy(p, &v, sizeof(V)); }

// Bit l set where lane l of the mask vector is true (all bits set), as vmovmskps/pd does.
template <typename M> static inline uint32_t lane_bits(M m) {
    constexpr int L = int(sizeof(M) / sizeof(m[0]));
#if defined(__AVX__)
    if constexpr (L == 8 && sizeof(m[0]) == 4) {
        __m256 v;
        std::memcpy(&v, &m, sizeof(v));
        return uint32_t(_mm256_movemask_ps(v));
    } else if constexpr (L == 4 && sizeof(m[0]) == 8) {
        __m256d v;
        std::memcpy(&v, &m, sizeof(v));
        return uint32_t(_mm256_movemask_pd(v));
    }
#endif
    uint32_t bits = 0;
    for (int l = 0; l < L; ++l) bits |= uint32_t(m[l] != 0) << l;
    return bits;
}

// Sum of the lanes of a vector (a shuffle tree, not the in-order sum of a simd reduction).
template <typename V> static inline auto hsum(V v) {
    constexpr int L = int(sizeof(V) / sizeof(v[0]));
#if defined(__AVX__)
    if constexpr (L == 8 && sizeof(v[0]) == 4) {
        __m256 x;
        std::memcpy(&x, &v, sizeof(x));
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        q = _mm_add_ss(q, _mm_movehdup_ps(q));
        return _mm_cvtss_f32(q);
    } else if constexpr (L == 4 && sizeof(v[0]) == 8) {
        __m256d x;
        std::memcpy(&x, &v, sizeof(x));
        __m128d q = _mm_add_pd(_mm256_castpd256_pd128(x), _mm256_extractf128_pd(x, 1));
        q = _mm_add_sd(q, _mm_unpackhi_pd(q, q));
        return _mm_cvtsd_f64(q);
    }
#endif
    auto s = v[0];
    for (int l = 1; l < L; ++l) s += v[l];
    return s;
}

// Bring the data of Gaussian g (geometry, pixel box, features) towards the cache ahead of use:
// intersections visit Gaussians in depth order, i.e. at random addresses.
template <typename R>
static inline void prefetch_gaussian(const R* geom, const int32_t* rect, const R* feats,
                                     int64_t Dp, int64_t g) {
    __builtin_prefetch(geom + 8 * g);
    __builtin_prefetch(rect + 4 * g);
    const char* f = reinterpret_cast<const char*>(feats + g * Dp);
    for (int64_t b = 0; b < int64_t(Dp * sizeof(R)); b += 64) __builtin_prefetch(f + b);
}

// Pixel indices q*L .. q*L+L-1 of a row as a mask-typed vector.
template <typename R> static inline typename VT<R>::M lane_index(int q) {
    typename VT<R>::M v;
    for (int l = 0; l < VT<R>::L; ++l) v[l] = q * VT<R>::L + l;
    return v;
}

// Positions of the set bits of a byte, packed into the bytes of a uint64 (lowest first).
struct BitLut {
    uint64_t v[256];
    constexpr BitLut() : v() {
        for (int b = 0; b < 256; ++b) {
            uint64_t e = 0;
            int n = 0;
            for (int j = 0; j < 8; ++j)
                if ((b >> j) & 1) e |= uint64_t(j) << (8 * n++);
            v[b] = e;
        }
    }
};
constexpr BitLut kBitLut{};

// Append base + j for every set bit j of the 16-bit mask to list[n..] (branch-free: 8 bytes are
// written per half, so list needs 16 bytes of slack); returns the new length. base + j < 256.
static inline int append_bits(uint8_t* list, int n, uint32_t bits, int base) {
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t lo = kBitLut.v[bits & 0xffu] + ones * uint64_t(base);
    std::memcpy(list + n, &lo, 8);
    n += __builtin_popcount(bits & 0xffu);
    const uint64_t hi = kBitLut.v[(bits >> 8) & 0xffu] + ones * uint64_t(base + 8);
    std::memcpy(list + n, &hi, 8);
    return n + __builtin_popcount((bits >> 8) & 0xffu);
}

// Bits lo..hi (inclusive) of a 16-pixel row.
static inline uint32_t span_bits(int lo, int hi) {
    return ((hi >= 31 ? 0xffffffffu : ((1u << (hi + 1)) - 1u))) & ~((1u << lo) - 1u);
}

// exp(-s) for 0 <= s < 16 on a SIMD vector: s = n ln2 + r, |r| <= ln2/2 (Cody-Waite split of
// ln2), e^-r by Taylor (degree 8 float, 13 double), 2^-n by selects. About 1 ulp, branch-free.
template <typename R> static inline typename VT<R>::V vexp_neg(typename VT<R>::V s) {
    typedef typename VT<R>::V V;
    typedef typename VT<R>::M M;
    const V t = s * R(1.4426950408889634) + R(0.5);
    const M n = __builtin_convertvector(t, M);  // floor, as t >= 0
    const V fn = __builtin_convertvector(n, V);
    const V r = (s - fn * R(0.693359375)) - fn * R(-2.1219444005469058277e-4);
    const V m = -r;
    const V m2 = m * m;
    const V m4 = m2 * m2;
    V q;
    // Taylor polynomial of e^m, Estrin's scheme (short dependency chains)
    if constexpr (sizeof(R) == 4) {
        const V p01 = m + R(1.0);
        const V p23 = m * R(1.0 / 6.0) + R(0.5);
        const V p45 = m * R(1.0 / 120.0) + R(1.0 / 24.0);
        const V p67 = m * R(1.0 / 5040.0) + R(1.0 / 720.0);
        q = (p01 + m2 * p23) + m4 * ((p45 + m2 * p67) + m4 * R(1.0 / 40320.0));
    } else {
        const V p01 = m + R(1.0);
        const V p23 = m * R(1.0 / 6.0) + R(0.5);
        const V p45 = m * R(1.0 / 120.0) + R(1.0 / 24.0);
        const V p67 = m * R(1.0 / 5040.0) + R(1.0 / 720.0);
        const V p89 = m * R(1.0 / 362880.0) + R(1.0 / 40320.0);
        const V p1011 = m * R(1.0 / 39916800.0) + R(1.0 / 3628800.0);
        const V p1213 = m * R(1.0 / 6227020800.0) + R(1.0 / 479001600.0);
        const V m8 = m4 * m4;
        q = ((p01 + m2 * p23) + m4 * (p45 + m2 * p67)) +
            m8 * ((p89 + m2 * p1011) + m4 * p1213);
    }
    // times 2^-n: subtract n from the exponent field (no underflow: n <= 23)
    M qi;
    std::memcpy(&qi, &q, sizeof(V));
    qi = qi - (n << (sizeof(R) == 4 ? 23 : 52));
    std::memcpy(&q, &qi, sizeof(V));
    return q;
}

template <typename R> static inline R exp_neg(R s) {
    typedef typename VT<R>::V V;
    V v = {};
    v[0] = s;
    return vexp_neg<R>(v)[0];
}

struct Tile {
    int cam, px0, py0, px1, py1;
};

static inline Tile tile_of(int64_t t, int tiles_x, int tiles_y, int width, int height) {
    const int64_t n_cam = int64_t(tiles_x) * tiles_y;
    Tile T;
    T.cam = int(t / n_cam);
    const int tt = int(t - int64_t(T.cam) * n_cam);
    const int tyi = tt / tiles_x, txi = tt - tyi * tiles_x;
    T.px0 = txi * 16;
    T.py0 = tyi * 16;
    T.px1 = std::min(T.px0 + 16, width);
    T.py1 = std::min(T.py0 + 16, height);
    return T;
}

// DPC: the padded channel count as a compile-time constant (0 = runtime Dp): the channel loops of

}  // namespace
