// EWA projection, forward and hand-written backward (projection.py's arithmetic, same order).
#include "common.h"

namespace {

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


}  // namespace

#define SR_PROJECT(R, SUF)                                                                      \
    SR_EXPORT void sr_project_fwd_##SUF(const SrProject* a) {                                   \
        project_fwd_impl<R>((const R*)a->means, (const R*)a->quats, (const R*)a->scales,        \
                            (const R*)a->opac, (const R*)a->viewmats, (const R*)a->Ks, a->C,    \
                            a->N, int(a->width), int(a->height), R(a->eps2d),                   \
                            R(a->near_plane), R(a->far_plane), a->radii, (R*)a->means2d,        \
                            (R*)a->depths, (R*)a->conics);                                      \
    }                                                                                           \
    SR_EXPORT void sr_project_bwd_##SUF(const SrProject* a) {                                   \
        project_bwd_impl<R>((const R*)a->means, (const R*)a->quats, (const R*)a->scales,        \
                            (const R*)a->viewmats, (const R*)a->Ks, a->C, a->N, int(a->width),  \
                            int(a->height), R(a->eps2d), R(a->near_plane), R(a->far_plane),     \
                            (const R*)a->g_means2d, (const R*)a->g_depths,                      \
                            (const R*)a->g_conics, (R*)a->g_means, (R*)a->g_quats,              \
                            (R*)a->g_scales);                                                   \
    }

SR_PROJECT(float, f32)
SR_PROJECT(double, f64)
