// Tile kernels: forward compositing, backward, and the Gaussian-major gradient reduction.
#include "common.h"

namespace {

// exp(-sigma) of a Gaussian's conic at the pixel offsets (dx, dy), sigma clamped to [0, smax]
// (the forward and the backward evaluate it alike); the unclamped sigma goes to `sigma`
template <typename R>
static inline typename VT<R>::V falloff(typename VT<R>::V dx, R dy, R ca, R cb, R cc, typename VT<R>::V zv,
                                        typename VT<R>::V smv, typename VT<R>::V& sigma) {
    using V = typename VT<R>::V;
    sigma = R(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy;
    V sc = sigma < zv ? zv : sigma;
    sc = sc > smv ? smv : sc;
    return vexp_neg<R>(sc);
}

constexpr int PREFETCH = 4;  // intersections ahead

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
        alignas(64) R p_w[256];   // weight of each pixel for the current intersection
        uint8_t plist[256 + 16];  // its contributing pixels (+ append slack)
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
            const int64_t s_end = tile_start[t + 1];
            for (int64_t s = tile_start[t]; s < s_end; ++s) {
                const int64_t g = gid[s];
                if (s + PREFETCH < s_end) prefetch_gaussian(geom, rect, feats, Dp, gid[s + PREFETCH]);
                const int32_t* rc = rect + 4 * g;
                const int x0 = std::max<int>(rc[0], tl.px0), x1 = std::min<int>(rc[1], tl.px1 - 1);
                const int y0 = std::max<int>(rc[2], tl.py0), y1 = std::min<int>(rc[3], tl.py1 - 1);
                used[s] = 0;
                if (x0 > x1 || y0 > y1) continue;
                const R* ge = geom + 8 * g;
                const R mx = ge[0], my = ge[1], ca = ge[2], cb = ge[3], cc = ge[4], o = ge[5],
                        smax = ge[6];
                const R* __restrict f = feats + g * Dp;
                typedef typename VT<R>::CV CV;
                constexpr int CL = VT<R>::CL, NCV = DPC > 0 ? DPC / VT<R>::CL : 1;
                CV fr[NCV];  // the features in registers (compile-time width)
                if constexpr (DPC > 0)
                    for (int q = 0; q < NCV; ++q) fr[q] = vload<CV>(f + q * CL);
                const int32_t sid = int32_t(s);
                const V smv = zv + smax;
                // pass 1: SIMD over the pixels of each row (lane groups covering [x0, x1]); the
                // contributing pixels are appended to a list without a per-pixel branch
                int n_pairs = 0;
                for (int y = y0; y <= y1; ++y) {
                    const R dy = my - (R(y) + R(0.5));
                    const int row = (y - tl.py0) * 16;
                    const int gb0 = (x0 - tl.px0) / L, gb1 = (x1 - tl.px0) / L;
                    uint32_t wbits = 0;  // pixels of the row with a non-zero weight
                    for (int gi = gb0; gi <= gb1; ++gi) {
                        const int j0 = gi * L, p0 = row + j0;
                        const V dx = mx - vload<V>(pxc + j0);
                        V sigma;
                        V a = o * falloff<R>(dx, dy, ca, cb, cc, zv, smv, sigma);
                        a = a > amaxv ? amaxv : a;
                        const V Tp = vload<V>(T + p0);
                        const V al = vload<V>(alive + p0);
                        const M ok = (sigma >= zv) & (sigma <= smv) & (a >= aminv) & (al > zv);
                        const V nT = Tp * (R(1) - a);
                        const M stop = ok & (nT <= tminv);
                        const M con = ok & (nT > tminv);
                        vstore(p_w + p0, con ? a * Tp : zv);
                        vstore(T + p0, con ? nT : Tp);
                        vstore(alive + p0, stop ? zv : al);
                        n_done += __builtin_popcount(lane_bits(stop));
                        wbits |= lane_bits(con & (a * Tp != zv)) << j0;
                    }
                    n_pairs = append_bits(plist, n_pairs, wbits & span_bits(x0 - tl.px0, x1 - tl.px0), row);
                }
                // pass 2: channels of the contributing pixels (SIMD over channels)
                for (int i = 0; i < n_pairs; ++i) {
                    const int p = plist[i];
                    const R w = p_w[p];
                    R* __restrict ac = acc + p * Dp;
                    if constexpr (DPC > 0) {
                        for (int q = 0; q < NCV; ++q)
                            vstore(ac + q * CL, vload<CV>(ac + q * CL) + w * fr[q]);
                    } else {
#pragma omp simd
                        for (int64_t k = 0; k < Dp; ++k) ac[k] += w * f[k];
                    }
                    last[p] = sid;
                }
                const uint8_t any = n_pairs > 0;
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
                   const int64_t* go_s, const R* __restrict g_alpha, const int64_t* ga_s,
                   const uint8_t* __restrict used,
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
        // per pixel of the tile, for the current intersection
        alignas(64) R p_w[256];
        alignas(64) R p_cg[256] = {};
        alignas(64) R p_ra[256];
        alignas(64) R p_ti[256];
        alignas(64) R p_raw[256];
        alignas(64) R p_vis[256];
        uint8_t plist[256 + 16];  // contributing pixels of the intersection (+ append slack)
        uint32_t rowbits[16];
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
                    TfGA[p] = Tp * g_alpha[tl.cam * ga_s[0] + y * ga_s[1] + x * ga_s[2]];
                    last[p] = out_last[pix];
                    max_last = std::max(max_last, last[p]);
                    R sg = R(0);
                    // the gradient of the render as it comes (strided, e.g. expanded by a sum)
                    const R* __restrict go = g_out + tl.cam * go_s[0] + y * go_s[1] + x * go_s[2];
                    const int64_t sd = go_s[3];
                    for (int64_t k = 0; k < D; ++k) {
                        gp[p * Dp + k] = go[k * sd];
                        if (has_bg) sg += bgs[int64_t(tl.cam) * D + k] * go[k * sd];
                    }
                    SG[p] = Tp * sg;
                }
            }
            for (int64_t s = s_end - 1; s >= s_begin; --s) {
                const int64_t g = gid[s];
                if (s - PREFETCH >= s_begin) prefetch_gaussian(geom, rect, feats, Dp, gid[s - PREFETCH]);
                R* __restrict gb = gbuf + int64_t(slot_of[s]) * K;
                const int32_t* rc = rect + 4 * g;
                const int x0 = std::max<int>(rc[0], tl.px0), x1 = std::min<int>(rc[1], tl.px1 - 1);
                const int y0 = std::max<int>(rc[2], tl.py0), y1 = std::min<int>(rc[3], tl.py1 - 1);
                if (!used[s] || s > max_last || x0 > x1 || y0 > y1) {
                    std::fill(gb, gb + K, R(0));
                    continue;
                }
                typedef typename VT<R>::CV CV;
                constexpr int CL = VT<R>::CL, NCV = DPC > 0 ? DPC / VT<R>::CL : 1;
                // with a compile-time width, the features and their gradient stay in registers
                CV fr[NCV], vfr[NCV];
                if constexpr (DPC > 0) {
                    for (int q = 0; q < NCV; ++q) {
                        fr[q] = vload<CV>(feats + g * Dp + q * CL);
                        vfr[q] = CV{};
                    }
                } else {
                    std::fill(vf, vf + Dp, R(0));
                }
                // geometry gradients summed in lanes (all lane groups of all rows into one
                // vector each), reduced once per intersection
                V l_mx = zv, l_my = zv, l_a = zv, l_b = zv, l_c = zv, l_o = zv;
                const R* ge = geom + 8 * g;
                const R mx = ge[0], my = ge[1], ca = ge[2], cb = ge[3], cc = ge[4], o = ge[5],
                        smax = ge[6];
                const R* __restrict f = feats + g * Dp;
                const int32_t sid = int32_t(s);
                const V smv = zv + smax;
                const I sidv = (I){} + sid;
                // pass 1: SIMD over the pixels of each row (T_i recovered by division); the
                // per-pixel values are kept for pass 3 and the contributing pixels appended to a
                // list without a per-pixel branch
                int n_pairs = 0;
                for (int y = y0; y <= y1; ++y) {
                    const R dy = my - (R(y) + R(0.5));
                    const int row = (y - tl.py0) * 16;
                    const int gb0 = (x0 - tl.px0) / L, gb1 = (x1 - tl.px0) / L;
                    uint32_t wbits = 0;  // pixels of the row with a non-zero weight
                    for (int gi = gb0; gi <= gb1; ++gi) {
                        const int j0 = gi * L, p0 = row + j0;
                        const V dx = mx - vload<V>(pxc + j0);
                        V sigma;
                        const V vis = falloff<R>(dx, dy, ca, cb, cc, zv, smv, sigma);
                        const V raw = o * vis;
                        const V alpha = raw > amaxv ? amaxv : raw;
                        const I lastv = vload<I>(last + p0);
                        const M in_range = __builtin_convertvector(sidv <= lastv, M);
                        const M ok = in_range & (sigma >= zv) & (sigma <= smv) & (alpha >= aminv);
                        const V ra = R(1) / (R(1) - alpha);
                        const V Tp = vload<V>(T + p0);
                        const V Ti = Tp * ra;
                        vstore(p_w + p0, ok ? alpha * Ti : zv);
                        vstore(T + p0, ok ? Ti : Tp);
                        vstore(p_ra + p0, ra);
                        vstore(p_ti + p0, Ti);
                        vstore(p_raw + p0, raw);
                        vstore(p_vis + p0, vis);
                        wbits |= lane_bits(ok & (alpha * Ti != zv)) << j0;
                    }
                    wbits &= span_bits(x0 - tl.px0, x1 - tl.px0);
                    rowbits[y - y0] = wbits;
                    n_pairs = append_bits(plist, n_pairs, wbits, row);
                }
                if (n_pairs == 0) {
                    std::fill(gb, gb + K, R(0));
                    continue;
                }
                // pass 2: channels of the contributing pixels
                for (int i = 0; i < n_pairs; ++i) {
                    const int p = plist[i];
                    const R w = p_w[p];
                    const R* __restrict gq = gp + p * Dp;
                    // Dp is a multiple of 8 (float) / 4 (double) lanes: whole vectors
                    CV cgv = {};
                    if constexpr (DPC > 0) {
                        for (int q = 0; q < NCV; ++q) {
                            const CV gqv = vload<CV>(gq + q * CL);
                            cgv += fr[q] * gqv;
                            vfr[q] += w * gqv;
                        }
                    } else {
                        for (int64_t k = 0; k < Dp; k += CL) {
                            const CV gqv = vload<CV>(gq + k);
                            cgv += vload<CV>(f + k) * gqv;
                            vstore(vf + k, vload<CV>(vf + k) + w * gqv);
                        }
                    }
                    p_cg[p] = hsum(cgv);
                }
                // pass 3: geometry gradients, SIMD over the pixels of the rows that took part
                for (int y = y0; y <= y1; ++y) {
                    if (!rowbits[y - y0]) continue;
                    const R dy = my - (R(y) + R(0.5));
                    const int row = (y - tl.py0) * 16;
                    const int gb0 = (x0 - tl.px0) / L, gb1 = (x1 - tl.px0) / L;
                    for (int gi = gb0; gi <= gb1; ++gi) {
                        const int j0 = gi * L, p0 = row + j0;
                        const V w = vload<V>(p_w + p0);
                        const M use_w = w != zv;
                        const V cg = use_w ? vload<V>(p_cg + p0) : zv;
                        const V dx = mx - vload<V>(pxc + j0);
                        const V sg = vload<V>(SG + p0);
                        const V raw = vload<V>(p_raw + p0);
                        const V v_alpha = vload<V>(p_ti + p0) * cg +
                                          (vload<V>(TfGA + p0) - sg) * vload<V>(p_ra + p0);
                        const M use = use_w & (raw <= amaxv);
                        const V v_sigma = use ? -v_alpha * raw : zv;
                        l_mx += v_sigma * (ca * dx + cb * dy);
                        l_my += v_sigma * (cb * dx + cc * dy);
                        l_a += v_sigma * R(0.5) * dx * dx;
                        l_b += v_sigma * dx * dy;
                        l_c += v_sigma * R(0.5) * dy * dy;
                        l_o += use ? v_alpha * vload<V>(p_vis + p0) : zv;
                        vstore(SG + p0, sg + w * cg);
                    }
                }
                gb[0] = hsum(l_mx); gb[1] = hsum(l_my); gb[2] = hsum(l_a);
                gb[3] = hsum(l_b); gb[4] = hsum(l_c); gb[5] = hsum(l_o);
                gb[6] = R(0); gb[7] = R(0);
                if constexpr (DPC > 0) {
                    for (int q = 0; q < NCV; ++q) vstore(gb + 8 + q * CL, vfr[q]);
                } else {
                    for (int64_t k = 0; k < Dp; ++k) gb[8 + k] = vf[k];
                }
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

#define SR_DISPATCH(FN, R, DP, ARGS)          \
    switch (DP) {                             \
        case 8: FN<R, 8> ARGS; break;         \
        case 16: FN<R, 16> ARGS; break;       \
        case 24: FN<R, 24> ARGS; break;       \
        case 32: FN<R, 32> ARGS; break;       \
        default: FN<R, 0> ARGS; break;        \
    }

#define SR_INSTANTIATE(R, SUF)                                                                  \
    SR_EXPORT void sr_forward_##SUF(const SrRaster* a) {                                        \
        SR_DISPATCH(forward_impl, R, a->Dp,                                                     \
                    ((const R*)a->geom, a->rect, (const R*)a->feats, a->Dp, (const R*)a->bgs,   \
                     int(a->has_bg), a->tile_start, a->gid, int(a->width), int(a->height),      \
                     int(a->tiles_x), int(a->tiles_y), a->n_tiles, a->D, (R*)a->out,            \
                     (R*)a->out_alpha, (R*)a->out_T, a->out_last, a->used));                    \
    }                                                                                           \
    SR_EXPORT void sr_backward_##SUF(const SrRaster* a) {                                       \
        SR_DISPATCH(backward_impl, R, a->Dp,                                                    \
                    ((const R*)a->geom, a->rect, (const R*)a->feats, a->Dp, (const R*)a->bgs,   \
                     int(a->has_bg), a->tile_start, a->gid, a->slot_of, int(a->width),          \
                     int(a->height), int(a->tiles_x), int(a->tiles_y), a->n_tiles, a->D,        \
                     (const R*)a->out_T, a->out_last, (const R*)a->g_out, a->go_s,              \
                     (const R*)a->g_alpha, a->ga_s, a->used, (R*)a->gbuf));                              \
    }                                                                                           \
    SR_EXPORT void sr_reduce_##SUF(const int64_t* order, int64_t V, const int64_t* slot_start,  \
                                   const R* gbuf, int64_t K, R* grads) {                        \
        reduce_impl<R>(order, V, slot_start, gbuf, K, grads);                                   \
    }

SR_INSTANTIATE(float, f32)
SR_INSTANTIATE(double, f64)

#ifndef SR_SOURCE_HASH
#define SR_SOURCE_HASH "unknown"
#endif

// The checksum of the sources and flags this library was built from (_native.py passes it with
// -D and checks it after loading), and the sizes of the argument structs.
SR_EXPORT const char* sr_source_hash() { return "splatrefine-kernels:" SR_SOURCE_HASH; }
SR_EXPORT void sr_struct_sizes(int64_t* out) {
    out[0] = int64_t(sizeof(SrRaster));
    out[1] = int64_t(sizeof(SrProject));
    out[2] = int64_t(sizeof(SrBin));
}
