"""C++/OpenMP source of the native tile kernels (compiled on first use by _native.py).

Kept as a Python string so it ships with the package without package-data configuration.
Layouts are those of _kernels.py (geom [G,8], rect [G,4], feats [G,Dp], sorted intersections).
Compiled without fast-math and with -ffp-contract=off: forward and backward evaluate alpha with
bit-identical IEEE arithmetic, so both passes agree on which pixel/Gaussian pairs count.
"""

SOURCE = r"""
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

template <typename R> struct Cst;
template <> struct Cst<float> {
    static constexpr float amin = 1.0f / 255.0f, amax = 0.999f, tmin = 1e-4f;
};
template <> struct Cst<double> {
    static constexpr double amin = 1.0 / 255.0, amax = 0.999, tmin = 1e-4;
};

template <typename R> struct VT;
template <> struct VT<float> {
    typedef float V __attribute__((vector_size(32)));
    typedef int32_t M __attribute__((vector_size(32)));
    typedef int32_t I __attribute__((vector_size(32)));
    static constexpr int L = 8;
};
template <> struct VT<double> {
    typedef double V __attribute__((vector_size(32)));
    typedef int64_t M __attribute__((vector_size(32)));
    typedef int32_t I __attribute__((vector_size(16)));
    static constexpr int L = 4;
};

template <typename V> static inline V vload(const void* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
}
template <typename V> static inline void vstore(void* p, V v) { std::memcpy(p, &v, sizeof(V)); }

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
// the common widths (8, 16, 24, 32) unroll completely.
template <typename R, int DPC>
void forward_impl(const R* __restrict geom, const int32_t* __restrict rect,
                  const R* __restrict feats, int64_t Dp_rt, const R* __restrict bgs, int has_bg,
                  const int64_t* __restrict tile_start, const int32_t* __restrict gid,
                  int width, int height, int tiles_x, int tiles_y, int64_t n_tiles, int64_t D,
                  R* __restrict out, R* __restrict out_alpha, R* __restrict out_T,
                  int32_t* __restrict out_last, uint8_t* __restrict used) {
    const int64_t Dp = DPC ? int64_t(DPC) : Dp_rt;
    const R amin = Cst<R>::amin, amax = Cst<R>::amax, tmin = Cst<R>::tmin;
    typedef typename VT<R>::V V;
    typedef typename VT<R>::M M;
    constexpr int L = VT<R>::L;
    const V zv = {};
    const V amaxv = zv + amax, aminv = zv + amin, tminv = zv + tmin;
#pragma omp parallel
    {
        std::vector<R> acc_v(256 * Dp);
        R* __restrict acc = acc_v.data();
        alignas(64) R T[256];
        alignas(64) R alive[256];
        alignas(64) int32_t last[256];
        alignas(64) R wrow[16];
        alignas(64) R pxc[16];
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tiles; ++t) {
            const Tile tl = tile_of(t, tiles_x, tiles_y, width, height);
            const int npix = (tl.px1 - tl.px0) * (tl.py1 - tl.py0);
            std::fill(acc, acc + 256 * Dp, R(0));
            for (int p = 0; p < 256; ++p) {
                T[p] = R(1);
                last[p] = -1;
                const bool inside = (p / 16) < (tl.py1 - tl.py0) && (p % 16) < (tl.px1 - tl.px0);
                alive[p] = inside ? R(1) : R(0);
            }
            for (int j = 0; j < 16; ++j) pxc[j] = R(tl.px0 + j) + R(0.5);
            int n_done = 0;
            for (int64_t s = tile_start[t]; s < tile_start[t + 1]; ++s) {
                const int64_t g = gid[s];
                const int32_t* rc = rect + 4 * g;
                const int x0 = std::max<int>(rc[0], tl.px0), x1 = std::min<int>(rc[1], tl.px1 - 1);
                const int y0 = std::max<int>(rc[2], tl.py0), y1 = std::min<int>(rc[3], tl.py1 - 1);
                used[s] = 0;
                if (x0 > x1 || y0 > y1) continue;
                const R* ge = geom + 8 * g;
                const R mx = ge[0], my = ge[1], ca = ge[2], cb = ge[3], cc = ge[4], o = ge[5],
                        smax = ge[6];
                const R* __restrict f = feats + g * Dp;
                const int32_t sid = int32_t(s);
                const V smv = zv + smax;
                uint8_t any = 0;
                for (int y = y0; y <= y1; ++y) {
                    const R dy = my - (R(y) + R(0.5));
                    const int row = (y - tl.py0) * 16;
                    const int gb0 = (x0 - tl.px0) / L, gb1 = (x1 - tl.px0) / L;
                    int stops = 0;
                    // phase 1: SIMD over the pixels of the row (lane groups covering [x0, x1])
                    for (int gi = gb0; gi <= gb1; ++gi) {
                        const int j0 = gi * L;
                        const V dx = mx - vload<V>(pxc + j0);
                        const V sigma = R(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy;
                        V sc = sigma < zv ? zv : sigma;
                        sc = sc > smv ? smv : sc;
                        V a = o * vexp_neg<R>(sc);
                        a = a > amaxv ? amaxv : a;
                        const V Tp = vload<V>(T + row + j0);
                        const V al = vload<V>(alive + row + j0);
                        const M ok = (sigma >= zv) & (sigma <= smv) & (a >= aminv) & (al > zv);
                        const V nT = Tp * (R(1) - a);
                        const M stop = ok & (nT <= tminv);
                        const M con = ok & (nT > tminv);
                        vstore(wrow + j0, con ? a * Tp : zv);
                        vstore(T + row + j0, con ? nT : Tp);
                        vstore(alive + row + j0, stop ? zv : al);
                        for (int l = 0; l < L; ++l) stops += stop[l] != 0;
                    }
                    n_done += stops;
                    // phase 2: channels of the contributing pixels (SIMD over channels)
                    for (int j = x0 - tl.px0; j <= x1 - tl.px0; ++j) {
                        const R w = wrow[j];
                        if (w != R(0)) {
                            R* __restrict ac = acc + (row + j) * Dp;
#pragma omp simd
                            for (int64_t k = 0; k < Dp; ++k) ac[k] += w * f[k];
                            last[row + j] = sid;
                            any = 1;
                        }
                    }
                }
                used[s] = any;
                if (n_done >= npix) {
                    for (int64_t s2 = s + 1; s2 < tile_start[t + 1]; ++s2) used[s2] = 0;
                    break;
                }
            }
            for (int y = tl.py0; y < tl.py1; ++y) {
                for (int x = tl.px0; x < tl.px1; ++x) {
                    const int p = (y - tl.py0) * 16 + (x - tl.px0);
                    const int64_t pix = (int64_t(tl.cam) * height + y) * width + x;
                    const R Tp = T[p];
                    R* __restrict o_ = out + pix * D;
                    const R* __restrict ac = acc + p * Dp;
                    if (has_bg) {
                        const R* __restrict bg = bgs + int64_t(tl.cam) * D;
                        for (int64_t k = 0; k < D; ++k) o_[k] = ac[k] + Tp * bg[k];
                    } else {
                        for (int64_t k = 0; k < D; ++k) o_[k] = ac[k];
                    }
                    out_alpha[pix] = R(1) - Tp;
                    out_T[pix] = Tp;
                    out_last[pix] = last[p];
                }
            }
        }
    }
}

template <typename R, int DPC>
void backward_impl(const R* __restrict geom, const int32_t* __restrict rect,
                   const R* __restrict feats, int64_t Dp_rt, const R* __restrict bgs, int has_bg,
                   const int64_t* __restrict tile_start, const int32_t* __restrict gid,
                   const int32_t* __restrict slot_of, int width, int height, int tiles_x,
                   int tiles_y, int64_t n_tiles, int64_t D, const R* __restrict out_T,
                   const int32_t* __restrict out_last, const R* __restrict g_out,
                   const R* __restrict g_alpha, const uint8_t* __restrict used,
                   R* __restrict gbuf) {
    const int64_t Dp = DPC ? int64_t(DPC) : Dp_rt;
    const R amin = Cst<R>::amin, amax = Cst<R>::amax;
    const int64_t K = 8 + Dp;
    typedef typename VT<R>::V V;
    typedef typename VT<R>::M M;
    typedef typename VT<R>::I I;
    constexpr int L = VT<R>::L;
    const V zv = {};
    const V amaxv = zv + amax, aminv = zv + amin;
#pragma omp parallel
    {
        std::vector<R> gp_v(256 * Dp);
        R* __restrict gp = gp_v.data();
        std::vector<R> vf_v(Dp);
        R* __restrict vf = vf_v.data();
        alignas(64) R T[256];
        alignas(64) R TfGA[256];
        alignas(64) R SG[256];
        alignas(64) int32_t last[256];
        alignas(64) R pxc[16];
        alignas(64) R wrow[16];
        alignas(64) R cgrow[16];
        alignas(64) R r_ra[16];
        alignas(64) R r_ti[16];
        alignas(64) R r_raw[16];
        alignas(64) R r_vis[16];
        alignas(64) R l_mx[16];
        alignas(64) R l_my[16];
        alignas(64) R l_a[16];
        alignas(64) R l_b[16];
        alignas(64) R l_c[16];
        alignas(64) R l_o[16];
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tiles; ++t) {
            const int64_t s_begin = tile_start[t], s_end = tile_start[t + 1];
            if (s_end == s_begin) continue;
            const Tile tl = tile_of(t, tiles_x, tiles_y, width, height);
            std::fill(gp, gp + 256 * Dp, R(0));
            int32_t max_last = -1;
            for (int p = 0; p < 256; ++p) {
                T[p] = R(1);
                TfGA[p] = R(0);
                SG[p] = R(0);
                last[p] = -1;
            }
            for (int j = 0; j < 16; ++j) pxc[j] = R(tl.px0 + j) + R(0.5);
            for (int y = tl.py0; y < tl.py1; ++y) {
                for (int x = tl.px0; x < tl.px1; ++x) {
                    const int p = (y - tl.py0) * 16 + (x - tl.px0);
                    const int64_t pix = (int64_t(tl.cam) * height + y) * width + x;
                    const R Tp = out_T[pix];
                    T[p] = Tp;
                    TfGA[p] = Tp * g_alpha[pix];
                    last[p] = out_last[pix];
                    max_last = std::max(max_last, last[p]);
                    R sg = R(0);
                    const R* __restrict go = g_out + pix * D;
                    for (int64_t k = 0; k < D; ++k) {
                        gp[p * Dp + k] = go[k];
                        if (has_bg) sg += bgs[int64_t(tl.cam) * D + k] * go[k];
                    }
                    SG[p] = Tp * sg;
                }
            }
            for (int64_t s = s_end - 1; s >= s_begin; --s) {
                const int64_t g = gid[s];
                R* __restrict gb = gbuf + int64_t(slot_of[s]) * K;
                const int32_t* rc = rect + 4 * g;
                const int x0 = std::max<int>(rc[0], tl.px0), x1 = std::min<int>(rc[1], tl.px1 - 1);
                const int y0 = std::max<int>(rc[2], tl.py0), y1 = std::min<int>(rc[3], tl.py1 - 1);
                if (!used[s] || s > max_last || x0 > x1 || y0 > y1) {
                    std::fill(gb, gb + K, R(0));
                    continue;
                }
                std::fill(vf, vf + Dp, R(0));
                for (int j = 0; j < 16; ++j) {
                    l_mx[j] = R(0); l_my[j] = R(0); l_a[j] = R(0);
                    l_b[j] = R(0); l_c[j] = R(0); l_o[j] = R(0);
                }
                const R* ge = geom + 8 * g;
                const R mx = ge[0], my = ge[1], ca = ge[2], cb = ge[3], cc = ge[4], o = ge[5],
                        smax = ge[6];
                const R* __restrict f = feats + g * Dp;
                const int32_t sid = int32_t(s);
                const V smv = zv + smax;
                const I sidv = (I){} + sid;
                for (int y = y0; y <= y1; ++y) {
                    const R dy = my - (R(y) + R(0.5));
                    const int row = (y - tl.py0) * 16;
                    const int gb0 = (x0 - tl.px0) / L, gb1 = (x1 - tl.px0) / L;
                    // phase 1: SIMD over the pixels of the row, T_i recovered by division
                    M anyv = {};
                    for (int gi = gb0; gi <= gb1; ++gi) {
                        const int j0 = gi * L;
                        const V dx = mx - vload<V>(pxc + j0);
                        const V sigma = R(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy;
                        V sc = sigma < zv ? zv : sigma;
                        sc = sc > smv ? smv : sc;
                        const V vis = vexp_neg<R>(sc);
                        const V raw = o * vis;
                        const V alpha = raw > amaxv ? amaxv : raw;
                        const I lastv = vload<I>(last + row + j0);
                        const M in_range = __builtin_convertvector(sidv <= lastv, M);
                        const M ok = in_range & (sigma >= zv) & (sigma <= smv) & (alpha >= aminv);
                        const V ra = R(1) / (R(1) - alpha);
                        const V Tp = vload<V>(T + row + j0);
                        const V Ti = Tp * ra;
                        vstore(wrow + j0, ok ? alpha * Ti : zv);
                        vstore(T + row + j0, ok ? Ti : Tp);
                        vstore(r_ra + j0, ra);
                        vstore(r_ti + j0, Ti);
                        vstore(r_raw + j0, raw);
                        vstore(r_vis + j0, vis);
                        vstore(cgrow + j0, zv);
                        anyv |= ok;
                    }
                    bool any = false;
                    for (int l = 0; l < L; ++l) any |= anyv[l] != 0;
                    if (!any) continue;  // no pixel of this row took part: nothing to add
                    // phase 2: channels of the contributing pixels
                    for (int j = x0 - tl.px0; j <= x1 - tl.px0; ++j) {
                        const R w = wrow[j];
                        if (w != R(0)) {
                            const R* __restrict gq = gp + (row + j) * Dp;
                            R cg = R(0);
#pragma omp simd reduction(+ : cg)
                            for (int64_t k = 0; k < Dp; ++k) {
                                cg += f[k] * gq[k];
                                vf[k] += w * gq[k];
                            }
                            cgrow[j] = cg;
                        }
                    }
                    // phase 3: geometry gradients, SIMD over the pixels
                    for (int gi = gb0; gi <= gb1; ++gi) {
                        const int j0 = gi * L;
                        const V w = vload<V>(wrow + j0);
                        const V cg = vload<V>(cgrow + j0);
                        const V dx = mx - vload<V>(pxc + j0);
                        const V sg = vload<V>(SG + row + j0);
                        const V raw = vload<V>(r_raw + j0);
                        const V v_alpha = vload<V>(r_ti + j0) * cg +
                                          (vload<V>(TfGA + row + j0) - sg) * vload<V>(r_ra + j0);
                        const M use = (w != zv) & (raw <= amaxv);
                        const V v_sigma = use ? -v_alpha * raw : zv;
                        vstore(l_mx + j0, vload<V>(l_mx + j0) + v_sigma * (ca * dx + cb * dy));
                        vstore(l_my + j0, vload<V>(l_my + j0) + v_sigma * (cb * dx + cc * dy));
                        vstore(l_a + j0, vload<V>(l_a + j0) + v_sigma * R(0.5) * dx * dx);
                        vstore(l_b + j0, vload<V>(l_b + j0) + v_sigma * dx * dy);
                        vstore(l_c + j0, vload<V>(l_c + j0) + v_sigma * R(0.5) * dy * dy);
                        vstore(l_o + j0, vload<V>(l_o + j0) + (use ? v_alpha * vload<V>(r_vis + j0) : zv));
                        vstore(SG + row + j0, sg + w * cg);
                    }
                }
                R s_mx = 0, s_my = 0, s_a = 0, s_b = 0, s_c = 0, s_o = 0;
                for (int j = 0; j < 16; ++j) {
                    s_mx += l_mx[j]; s_my += l_my[j]; s_a += l_a[j];
                    s_b += l_b[j]; s_c += l_c[j]; s_o += l_o[j];
                }
                gb[0] = s_mx; gb[1] = s_my; gb[2] = s_a; gb[3] = s_b; gb[4] = s_c; gb[5] = s_o;
                gb[6] = R(0); gb[7] = R(0);
                for (int64_t k = 0; k < Dp; ++k) gb[8 + k] = vf[k];
            }
        }
    }
}

template <typename R>
void reduce_impl(const int64_t* __restrict order, int64_t V, const int64_t* __restrict slot_start,
                 const R* __restrict gbuf, int64_t K, R* __restrict grads) {
#pragma omp parallel for schedule(static, 256)
    for (int64_t r = 0; r < V; ++r) {
        R* __restrict dst = grads + order[r] * K;
        for (int64_t i = slot_start[r]; i < slot_start[r + 1]; ++i) {
            const R* __restrict src = gbuf + i * K;
#pragma omp simd
            for (int64_t k = 0; k < K; ++k) dst[k] += src[k];
        }
    }
}

}  // namespace

#define SR_EXPORT extern "C" __attribute__((visibility("default")))

#define SR_DISPATCH(FN, R, DP, ARGS)          \
    switch (DP) {                             \
        case 8: FN<R, 8> ARGS; break;         \
        case 16: FN<R, 16> ARGS; break;       \
        case 24: FN<R, 24> ARGS; break;       \
        case 32: FN<R, 32> ARGS; break;       \
        default: FN<R, 0> ARGS; break;        \
    }

#define SR_INSTANTIATE(R, SUF)                                                                  \
    SR_EXPORT void sr_forward_##SUF(const R* geom, const int32_t* rect, const R* feats,        \
                                    int64_t Dp, const R* bgs, int has_bg,                       \
                                    const int64_t* tile_start, const int32_t* gid, int width,  \
                                    int height, int tiles_x, int tiles_y, int64_t n_tiles,     \
                                    int64_t D, R* out, R* out_alpha, R* out_T,                 \
                                    int32_t* out_last, uint8_t* used) {                        \
        SR_DISPATCH(forward_impl, R, Dp, (geom, rect, feats, Dp, bgs, has_bg, tile_start, gid, \
                    width, height, tiles_x, tiles_y, n_tiles, D, out, out_alpha, out_T,        \
                    out_last, used));                                                          \
    }                                                                                          \
    SR_EXPORT void sr_backward_##SUF(const R* geom, const int32_t* rect, const R* feats,       \
                                     int64_t Dp, const R* bgs, int has_bg,                      \
                                     const int64_t* tile_start, const int32_t* gid,            \
                                     const int32_t* slot_of, int width, int height,            \
                                     int tiles_x, int tiles_y, int64_t n_tiles, int64_t D,     \
                                     const R* out_T, const int32_t* out_last, const R* g_out,  \
                                     const R* g_alpha, const uint8_t* used, R* gbuf) {         \
        SR_DISPATCH(backward_impl, R, Dp, (geom, rect, feats, Dp, bgs, has_bg, tile_start, gid,\
                    slot_of, width, height, tiles_x, tiles_y, n_tiles, D, out_T, out_last,     \
                    g_out, g_alpha, used, gbuf));                                              \
    }                                                                                          \
    SR_EXPORT void sr_reduce_##SUF(const int64_t* order, int64_t V, const int64_t* slot_start, \
                                   const R* gbuf, int64_t K, R* grads) {                       \
        reduce_impl<R>(order, V, slot_start, gbuf, K, grads);                                  \
    }

SR_INSTANTIATE(float, f32)
SR_INSTANTIATE(double, f64)

extern "C" __attribute__((visibility("default"))) int sr_abi_version() { return 2; }
"""
