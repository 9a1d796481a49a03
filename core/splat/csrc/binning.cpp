// Per-Gaussian pixel boxes and tile binning: _kernels.prepare_geometry, _composite.tile_rects and
// _kernels.bin_tiles in one place (same arithmetic, same order of intersections), in two calls:
// sr_bin_count (geometry, boxes, counts; returns the number of intersections M) and, once the
// caller has allocated [M] arrays, sr_bin_fill.
#include "common.h"

namespace {

template <typename R>
int64_t bin_count_impl(const SrBin* a) {
    const R* m2 = static_cast<const R*>(a->means2d);
    const R* cn = static_cast<const R*>(a->conics);
    const R* op = static_cast<const R*>(a->opac);
    R* geom = static_cast<R*>(a->geom);
    const int64_t G = a->C * a->N, W = a->width, H = a->height;
    const int64_t tx = a->tiles_x, ty = a->tiles_y, n_tc = tx * ty;
    for (int64_t g = 0; g < G; ++g) {
        int32_t* rc = a->rect + 4 * g;
        int32_t* tr = a->trect + 4 * g;
        R* ge = geom + 8 * g;
        const int32_t r0 = a->radii[2 * g], r1 = a->radii[2 * g + 1];
        if (!(r0 > 0 && r1 > 0)) {
            rc[0] = 1; rc[1] = 0; rc[2] = 1; rc[3] = 0;
            tr[0] = tr[1] = tr[2] = tr[3] = 0;
            for (int k = 0; k < 8; ++k) ge[k] = R(0);
            continue;
        }
        const R mx = m2[2 * g], my = m2[2 * g + 1];
        const R ca = cn[3 * g], cb = cn[3 * g + 1], cc = cn[3 * g + 2], o = op[g];
        // tile range (gsplat's isect_tiles rule, as tile_rects: in the dtype of means2d)
        {
            const R mtx = mx / R(16), mty = my / R(16);
            const R rtx = R(r0) / R(16), rty = R(r1) / R(16);
            const R lx = std::floor(mtx - rtx), hx = std::ceil(mtx + rtx);
            const R ly = std::floor(mty - rty), hy = std::ceil(mty + rty);
            tr[0] = int32_t(std::min(std::max(lx, R(0)), R(tx)));
            tr[1] = int32_t(std::min(std::max(hx, R(0)), R(tx)));
            tr[2] = int32_t(std::min(std::max(ly, R(0)), R(ty)));
            tr[3] = int32_t(std::min(std::max(hy, R(0)), R(ty)));
        }
        // alpha >= 1/255 needs sigma <= log(255 o); smax keeps a margin so the prefilter never
        // rejects a pair that the exact test would accept. (prepare_geometry's float64 maths.)
        double smax = std::log(255.0 * double(o)) + 1e-3;
        if (smax < 0.0) smax = 0.0;
        ge[0] = mx; ge[1] = my; ge[2] = ca; ge[3] = cb; ge[4] = cc; ge[5] = o;
        ge[6] = R(smax);
        ge[7] = R(0);
        const R det = ca * cc - cb * cb;
        double x0, x1, y0, y1;
        if (det > 0 && ca > 0 && cc > 0) {
            const double hx = std::sqrt(2.0 * smax * double(cc) / double(det)) + 0.01;
            const double hy = std::sqrt(2.0 * smax * double(ca) / double(det)) + 0.01;
            x0 = std::ceil(double(mx) - hx - 0.5);
            x1 = std::floor(double(mx) + hx - 0.5);
            y0 = std::ceil(double(my) - hy - 0.5);
            y1 = std::floor(double(my) + hy - 0.5);
            if (!(x0 > -1e9 && x1 < 1e9 && y0 > -1e9 && y1 < 1e9)) {
                x0 = 0; x1 = double(W - 1); y0 = 0; y1 = double(H - 1);
            }
        } else {
            x0 = 0; x1 = double(W - 1); y0 = 0; y1 = double(H - 1);
        }
        rc[0] = std::max<int32_t>(0, int32_t(x0));
        rc[1] = std::min<int32_t>(int32_t(W - 1), int32_t(x1));
        rc[2] = std::max<int32_t>(0, int32_t(y0));
        rc[3] = std::min<int32_t>(int32_t(H - 1), int32_t(y1));
    }
    // counts per tile (tile_start[t + 1]) and the slot-major offsets of the depth-ordered slots
    int64_t* ts = a->tile_start;
    std::fill(ts, ts + a->C * n_tc + 1, int64_t(0));
    int64_t total = 0;
    for (int64_t r = 0; r < a->V; ++r) {
        const int64_t g = a->order[r];
        const int32_t* tr = a->trect + 4 * g;
        const int64_t base = (g / a->N) * n_tc;
        a->slot_start[r] = total;
        for (int32_t y = tr[2]; y < tr[3]; ++y)
            for (int32_t x = tr[0]; x < tr[1]; ++x) ++ts[base + y * tx + x + 1];
        total += int64_t(std::max(0, tr[3] - tr[2])) * std::max(0, tr[1] - tr[0]);
    }
    a->slot_start[a->V] = total;
    for (int64_t t = 0; t < a->C * n_tc; ++t) ts[t + 1] += ts[t];
    return total;
}

// Counting sort by tile of the depth-ordered intersections: depth order within each tile.
static void bin_fill_impl(const SrBin* a) {
    const int64_t tx = a->tiles_x, n_tc = tx * a->tiles_y;
    std::vector<int64_t> next(a->tile_start, a->tile_start + a->C * n_tc);
    for (int64_t r = 0; r < a->V; ++r) {
        const int64_t g = a->order[r];
        const int32_t* tr = a->trect + 4 * g;
        const int64_t base = (g / a->N) * n_tc;
        int64_t k = a->slot_start[r];
        for (int32_t y = tr[2]; y < tr[3]; ++y)
            for (int32_t x = tr[0]; x < tr[1]; ++x) {
                const int64_t pos = next[base + y * tx + x]++;
                a->gid[pos] = int32_t(g);
                a->slot[pos] = int32_t(k++);
            }
    }
}

}  // namespace

SR_EXPORT int64_t sr_bin_count_f32(const SrBin* a) { return bin_count_impl<float>(a); }
SR_EXPORT int64_t sr_bin_count_f64(const SrBin* a) { return bin_count_impl<double>(a); }
SR_EXPORT void sr_bin_fill_f32(const SrBin* a) { bin_fill_impl(a); }
SR_EXPORT void sr_bin_fill_f64(const SrBin* a) { bin_fill_impl(a); }
