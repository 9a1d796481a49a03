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


// ---- EWA projection (the element-wise torch code of projection.py, same operation order) ----

template <typename R> struct ProjCam {
    R v[3][4];
    R k[3][3];
    R lxp, lxn, lyp, lyn;
};

template <typename R>
static inline ProjCam<R> proj_cam(const R* vm, const R* K, int width, int height) {
    ProjCam<R> c;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 4; ++j) c.v[i][j] = vm[4 * i + j];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) c.k[i][j] = K[3 * i + j];
    const R fx = c.k[0][0], fy = c.k[1][1], cx = c.k[0][2], cy = c.k[1][2];
    const R tfx = R(0.5 * width) / fx, tfy = R(0.5 * height) / fy;
    c.lxp = (R(width) - cx) / fx + R(0.3) * tfx;
    c.lxn = cx / fx + R(0.3) * tfx;
    c.lyp = (R(height) - cy) / fy + R(0.3) * tfy;
    c.lyn = cy / fy + R(0.3) * tfy;
    return c;
}

// normalised quaternion (F.normalize, eps 1e-12), its norm, rotation matrix
template <typename R>
static inline void quat_rotation(const R* q4, R qn[4], R& nrm, R r[3][3]) {
    nrm = std::sqrt(q4[0] * q4[0] + q4[1] * q4[1] + q4[2] * q4[2] + q4[3] * q4[3]);
    const R d = std::max(nrm, R(1e-12));
    for (int i = 0; i < 4; ++i) qn[i] = q4[i] / d;
    const R w = qn[0], x = qn[1], y = qn[2], z = qn[3];
    r[0][0] = 1 - 2 * (y * y + z * z); r[0][1] = 2 * (x * y - w * z); r[0][2] = 2 * (x * z + w * y);
    r[1][0] = 2 * (x * y + w * z); r[1][1] = 1 - 2 * (x * x + z * z); r[1][2] = 2 * (y * z - w * x);
    r[2][0] = 2 * (x * z - w * y); r[2][1] = 2 * (y * z + w * x); r[2][2] = 1 - 2 * (x * x + y * y);
}

template <typename R>
static inline void covariance(const R r[3][3], const R* s, R cv[3][3]) {
    const R s2[3] = {s[0] * s[0], s[1] * s[1], s[2] * s[2]};
    for (int i = 0; i < 3; ++i)
        for (int j = i; j < 3; ++j) {
            cv[i][j] = r[i][0] * r[j][0] * s2[0] + r[i][1] * r[j][1] * s2[1] + r[i][2] * r[j][2] * s2[2];
            cv[j][i] = cv[i][j];
        }
}

// Everything the forward computes for one (camera, Gaussian), kept for the backward.
template <typename R> struct ProjVals {
    R t[3], tz, inv_z, rx_, ry_, txc, tyc, a[3], b[3], sa[3], sb[3], u, v, s00, s11, s01, det_raw,
        det, inv_det;
    bool depth_ok, rx_in, ry_in;
};

template <typename R>
static inline void project_one(const ProjCam<R>& c, const R* m, const R cv[3][3], R eps2d,
                               R near_plane, R far_plane, ProjVals<R>& p) {
    for (int i = 0; i < 3; ++i)
        p.t[i] = c.v[i][0] * m[0] + c.v[i][1] * m[1] + c.v[i][2] * m[2] + c.v[i][3];
    p.depth_ok = p.t[2] > near_plane && p.t[2] < far_plane;
    p.tz = p.depth_ok ? p.t[2] : R(1);
    const R fx = c.k[0][0], fy = c.k[1][1];
    p.inv_z = R(1) / p.tz;
    p.rx_ = p.t[0] * p.inv_z;
    p.ry_ = p.t[1] * p.inv_z;
    p.rx_in = p.rx_ >= -c.lxn && p.rx_ <= c.lxp;
    p.ry_in = p.ry_ >= -c.lyn && p.ry_ <= c.lyp;
    p.txc = p.tz * std::min(std::max(p.rx_, -c.lxn), c.lxp);
    p.tyc = p.tz * std::min(std::max(p.ry_, -c.lyn), c.lyp);
    const R j00 = fx * p.inv_z, j02 = -fx * p.txc * p.inv_z * p.inv_z;
    const R j11 = fy * p.inv_z, j12 = -fy * p.tyc * p.inv_z * p.inv_z;
    for (int k = 0; k < 3; ++k) {
        p.a[k] = j00 * c.v[0][k] + j02 * c.v[2][k];
        p.b[k] = j11 * c.v[1][k] + j12 * c.v[2][k];
    }
    for (int i = 0; i < 3; ++i) {
        p.sa[i] = cv[i][0] * p.a[0] + cv[i][1] * p.a[1] + cv[i][2] * p.a[2];
        p.sb[i] = cv[i][0] * p.b[0] + cv[i][1] * p.b[1] + cv[i][2] * p.b[2];
    }
    const R cxx = p.a[0] * p.sa[0] + p.a[1] * p.sa[1] + p.a[2] * p.sa[2];
    const R cxy = p.b[0] * p.sa[0] + p.b[1] * p.sa[1] + p.b[2] * p.sa[2];
    const R cyy = p.b[0] * p.sb[0] + p.b[1] * p.sb[1] + p.b[2] * p.sb[2];
    p.u = c.k[0][0] * p.t[0] + c.k[0][1] * p.t[1] + c.k[0][2] * p.tz;
    p.v = c.k[1][0] * p.t[0] + c.k[1][1] * p.t[1] + c.k[1][2] * p.tz;
    p.s00 = cxx + eps2d;
    p.s11 = cyy + eps2d;
    p.s01 = cxy;
    p.det_raw = p.s00 * p.s11 - p.s01 * p.s01;
    p.det = std::max(p.det_raw, R(1e-10));
    p.inv_det = R(1) / p.det;
}

template <typename R>
void project_fwd_impl(const R* __restrict means, const R* __restrict quats,
                      const R* __restrict scales, const R* __restrict opac, const R* viewmats,
                      const R* Ks, int64_t C, int64_t N, int width, int height, R eps2d,
                      R near_plane, R far_plane, int32_t* __restrict radii, R* __restrict means2d,
                      R* __restrict depths, R* __restrict conics) {
    std::vector<ProjCam<R>> cams(C);
    for (int64_t c = 0; c < C; ++c) cams[c] = proj_cam<R>(viewmats + 16 * c, Ks + 9 * c, width, height);
    const R thr = R(1.0 / 255.0);
#pragma omp parallel for schedule(static, 512)
    for (int64_t n = 0; n < N; ++n) {
        R qn[4], nrm, r[3][3], cv[3][3];
        quat_rotation<R>(quats + 4 * n, qn, nrm, r);
        covariance<R>(r, scales + 3 * n, cv);
        R extent = R(3.33);
        bool opac_ok = true;
        if (opac) {
            const R op = opac[n];
            opac_ok = op >= thr;
            extent = std::min(std::sqrt(R(2) * std::log(std::max(op, thr) / thr)), R(3.33));
        }
        for (int64_t c = 0; c < C; ++c) {
            ProjVals<R> p;
            project_one<R>(cams[c], means + 3 * n, cv, eps2d, near_plane, far_plane, p);
            const int64_t i = c * N + n;
            const R mx = p.u * p.inv_z, my = p.v * p.inv_z;
            means2d[2 * i] = mx;
            means2d[2 * i + 1] = my;
            depths[i] = p.t[2];
            conics[3 * i] = p.s11 * p.inv_det;
            conics[3 * i + 1] = -p.s01 * p.inv_det;
            conics[3 * i + 2] = p.s00 * p.inv_det;
            const R rx = std::ceil(extent * std::sqrt(std::max(p.s00, R(0))));
            const R ry = std::ceil(extent * std::sqrt(std::max(p.s11, R(0))));
            const bool inside = (mx + rx > 0) && (mx - rx < R(width)) && (my + ry > 0) &&
                                (my - ry < R(height));
            const bool keep = p.depth_ok && p.det > 0 && inside && opac_ok && rx > 0 && ry > 0;
            radii[2 * i] = keep ? int32_t(rx) : 0;
            radii[2 * i + 1] = keep ? int32_t(ry) : 0;
        }
    }
}

template <typename R>
void project_bwd_impl(const R* __restrict means, const R* __restrict quats,
                      const R* __restrict scales, const R* viewmats, const R* Ks, int64_t C,
                      int64_t N, int width, int height, R eps2d, R near_plane, R far_plane,
                      const R* __restrict g_means2d, const R* __restrict g_depths,
                      const R* __restrict g_conics, R* __restrict g_means,
                      R* __restrict g_quats, R* __restrict g_scales) {
    std::vector<ProjCam<R>> cams(C);
    for (int64_t c = 0; c < C; ++c) cams[c] = proj_cam<R>(viewmats + 16 * c, Ks + 9 * c, width, height);
#pragma omp parallel for schedule(static, 512)
    for (int64_t n = 0; n < N; ++n) {
        R qn[4], nrm, r[3][3], cv[3][3];
        quat_rotation<R>(quats + 4 * n, qn, nrm, r);
        covariance<R>(r, scales + 3 * n, cv);
        R gS[3][3] = {};  // dL/dSigma_ij, as a full (unsymmetrised) matrix
        R gm[3] = {};
        for (int64_t c = 0; c < C; ++c) {
            const ProjCam<R>& cam = cams[c];
            ProjVals<R> p;
            project_one<R>(cam, means + 3 * n, cv, eps2d, near_plane, far_plane, p);
            const int64_t i = c * N + n;
            const R ga = g_conics[3 * i], gb = g_conics[3 * i + 1], gc = g_conics[3 * i + 2];
            // conics = (s11, -s01, s00) / det
            R g_s00 = gc * p.inv_det, g_s11 = ga * p.inv_det, g_s01 = -gb * p.inv_det;
            const R g_inv_det = ga * p.s11 - gb * p.s01 + gc * p.s00;
            if (p.det_raw >= R(1e-10)) {
                const R g_det = -g_inv_det * p.inv_det * p.inv_det;
                g_s00 += g_det * p.s11;
                g_s11 += g_det * p.s00;
                g_s01 -= R(2) * p.s01 * g_det;
            }
            // cov_xx = a.S a, cov_xy = b.S a, cov_yy = b.S b
            R g_a[3], g_b[3];
            for (int k = 0; k < 3; ++k) {
                g_a[k] = R(2) * g_s00 * p.sa[k] + g_s01 * p.sb[k];
                g_b[k] = R(2) * g_s11 * p.sb[k] + g_s01 * p.sa[k];
            }
            for (int k = 0; k < 3; ++k)
                for (int l = 0; l < 3; ++l)
                    gS[k][l] += g_s00 * p.a[k] * p.a[l] + g_s01 * p.b[k] * p.a[l] +
                                g_s11 * p.b[k] * p.b[l];
            // a = j00 W0 + j02 W2, b = j11 W1 + j12 W2
            R g_j00 = 0, g_j02 = 0, g_j11 = 0, g_j12 = 0;
            for (int k = 0; k < 3; ++k) {
                g_j00 += g_a[k] * cam.v[0][k];
                g_j02 += g_a[k] * cam.v[2][k];
                g_j11 += g_b[k] * cam.v[1][k];
                g_j12 += g_b[k] * cam.v[2][k];
            }
            const R fx = cam.k[0][0], fy = cam.k[1][1], iz = p.inv_z;
            R g_iz = fx * g_j00 + fy * g_j11;
            const R g_txc = -fx * iz * iz * g_j02, g_tyc = -fy * iz * iz * g_j12;
            g_iz += R(-2) * fx * p.txc * iz * g_j02 + R(-2) * fy * p.tyc * iz * g_j12;
            R g_tx = 0, g_ty = 0, g_tz = 0;
            // txc = tz clamp(tx / tz)
            g_tz += (p.txc / p.tz) * g_txc + (p.tyc / p.tz) * g_tyc;
            if (p.rx_in) {
                g_tx += p.tz * g_txc * iz;
                g_iz += p.tz * g_txc * p.t[0];
            }
            if (p.ry_in) {
                g_ty += p.tz * g_tyc * iz;
                g_iz += p.tz * g_tyc * p.t[1];
            }
            // means2d = (u, v) / tz
            const R g_u = g_means2d[2 * i] * iz, g_v = g_means2d[2 * i + 1] * iz;
            g_iz += g_means2d[2 * i] * p.u + g_means2d[2 * i + 1] * p.v;
            g_tx += cam.k[0][0] * g_u + cam.k[1][0] * g_v;
            g_ty += cam.k[0][1] * g_u + cam.k[1][1] * g_v;
            g_tz += cam.k[0][2] * g_u + cam.k[1][2] * g_v;
            g_tz -= iz * iz * g_iz;
            const R g_d = g_depths[i] + (p.depth_ok ? g_tz : R(0));
            for (int k = 0; k < 3; ++k)
                gm[k] += cam.v[0][k] * g_tx + cam.v[1][k] * g_ty + cam.v[2][k] * g_d;
        }
        for (int k = 0; k < 3; ++k) g_means[3 * n + k] = gm[k];
        // Sigma = M M^T, M = R diag(s): dL/dM = (G + G^T) M
        const R* s = scales + 3 * n;
        R gR[3][3];
        for (int k = 0; k < 3; ++k) {
            R gs = 0;
            for (int i = 0; i < 3; ++i) {
                R gM = 0;
                for (int j = 0; j < 3; ++j) gM += (gS[i][j] + gS[j][i]) * r[j][k] * s[k];
                gR[i][k] = gM * s[k];
                gs += gM * r[i][k];
            }
            g_scales[3 * n + k] = gs;
        }
        const R w = qn[0], x = qn[1], y = qn[2], z = qn[3];
        R gq[4];
        gq[0] = 2 * (-z * gR[0][1] + y * gR[0][2] + z * gR[1][0] - x * gR[1][2] - y * gR[2][0] +
                     x * gR[2][1]);
        gq[1] = 2 * (y * gR[0][1] + z * gR[0][2] + y * gR[1][0] - 2 * x * gR[1][1] - w * gR[1][2] +
                     z * gR[2][0] + w * gR[2][1] - 2 * x * gR[2][2]);
        gq[2] = 2 * (-2 * y * gR[0][0] + x * gR[0][1] + w * gR[0][2] + x * gR[1][0] +
                     z * gR[1][2] - w * gR[2][0] + z * gR[2][1] - 2 * y * gR[2][2]);
        gq[3] = 2 * (-2 * z * gR[0][0] - w * gR[0][1] + x * gR[0][2] + w * gR[1][0] -
                     2 * z * gR[1][1] + y * gR[1][2] + x * gR[2][0] + y * gR[2][1]);
        // q / max(|q|, eps)
        if (nrm > R(1e-12)) {
            const R dot = qn[0] * gq[0] + qn[1] * gq[1] + qn[2] * gq[2] + qn[3] * gq[3];
            for (int k = 0; k < 4; ++k) g_quats[4 * n + k] = (gq[k] - qn[k] * dot) / nrm;
        } else {
            for (int k = 0; k < 4; ++k) g_quats[4 * n + k] = gq[k] / R(1e-12);
        }
    }
}


// ---- depth order: per camera, stable LSD radix sort of the visible Gaussians by depth ----

template <typename R> struct KeyOf;
template <> struct KeyOf<float> { typedef uint32_t K; };
template <> struct KeyOf<double> { typedef uint64_t K; };

// Visible depths are > near_plane > 0, so the IEEE bit patterns order like the values.
template <typename R>
int64_t depth_order_impl(const R* __restrict depths, const int32_t* __restrict radii, int64_t C,
                         int64_t N, int64_t* __restrict order) {
    typedef typename KeyOf<R>::K K;
    constexpr int BITS = 11, NB = 1 << BITS, PASSES = (8 * sizeof(K) + BITS - 1) / BITS;
    std::vector<K> keys(N), keys2(N);
    std::vector<int64_t> idx(N), idx2(N);
    std::vector<int64_t> hist(NB);
    int64_t out = 0;
    for (int64_t c = 0; c < C; ++c) {
        int64_t V = 0;
        K any_bits = 0;
        for (int64_t n = 0; n < N; ++n) {
            const int64_t i = c * N + n;
            if (radii[2 * i] > 0 && radii[2 * i + 1] > 0) {
                K k;
                std::memcpy(&k, depths + i, sizeof(K));
                keys[V] = k;
                idx[V] = i;
                any_bits |= k;
                ++V;
            }
        }
        K* ka = keys.data();
        K* kb = keys2.data();
        int64_t* ia = idx.data();
        int64_t* ib = idx2.data();
        for (int pass = 0; pass < PASSES; ++pass) {
            const int shift = pass * BITS;
            // a digit that is zero in every key would not move anything
            if (((any_bits >> shift) & K(NB - 1)) == 0) continue;
            std::fill(hist.begin(), hist.end(), 0);
            for (int64_t v = 0; v < V; ++v) ++hist[(ka[v] >> shift) & K(NB - 1)];
            int64_t sum = 0;
            for (int b = 0; b < NB; ++b) {
                const int64_t h = hist[b];
                hist[b] = sum;
                sum += h;
            }
            for (int64_t v = 0; v < V; ++v) {
                const int64_t pos = hist[(ka[v] >> shift) & K(NB - 1)]++;
                kb[pos] = ka[v];
                ib[pos] = ia[v];
            }
            std::swap(ka, kb);
            std::swap(ia, ib);
        }
        std::memcpy(order + out, ia, sizeof(int64_t) * V);
        out += V;
    }
    return out;
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

#define SR_PROJECT(R, SUF)                                                                      \
    SR_EXPORT void sr_project_fwd_##SUF(const R* means, const R* quats, const R* scales,        \
                                        const R* opac, const R* viewmats, const R* Ks,          \
                                        int64_t C, int64_t N, int width, int height, R eps2d,  \
                                        R near_plane, R far_plane, int32_t* radii,              \
                                        R* means2d, R* depths, R* conics) {                     \
        project_fwd_impl<R>(means, quats, scales, opac, viewmats, Ks, C, N, width, height,      \
                            eps2d, near_plane, far_plane, radii, means2d, depths, conics);      \
    }                                                                                           \
    SR_EXPORT void sr_project_bwd_##SUF(const R* means, const R* quats, const R* scales,        \
                                        const R* viewmats, const R* Ks, int64_t C, int64_t N,   \
                                        int width, int height, R eps2d, R near_plane,           \
                                        R far_plane, const R* g_means2d, const R* g_depths,     \
                                        const R* g_conics, R* g_means, R* g_quats,              \
                                        R* g_scales) {                                          \
        project_bwd_impl<R>(means, quats, scales, viewmats, Ks, C, N, width, height, eps2d,     \
                            near_plane, far_plane, g_means2d, g_depths, g_conics, g_means,      \
                            g_quats, g_scales);                                                 \
    }

SR_PROJECT(float, f32)
SR_PROJECT(double, f64)

SR_EXPORT int64_t sr_depth_order_f32(const float* depths, const int32_t* radii, int64_t C,
                                     int64_t N, int64_t* order) {
    return depth_order_impl<float>(depths, radii, C, N, order);
}
SR_EXPORT int64_t sr_depth_order_f64(const double* depths, const int32_t* radii, int64_t C,
                                     int64_t N, int64_t* order) {
    return depth_order_impl<double>(depths, radii, C, N, order);
}

SR_INSTANTIATE(float, f32)
SR_INSTANTIATE(double, f64)

extern "C" __attribute__((visibility("default"))) int sr_abi_version() { return 3; }
"""
