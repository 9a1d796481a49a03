// Depth order: per camera, a stable LSD radix sort of the visible Gaussians by depth.
#include "common.h"

namespace {


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

SR_EXPORT int64_t sr_depth_order_f32(const float* depths, const int32_t* radii, int64_t C,
                                     int64_t N, int64_t* order) {
    return depth_order_impl<float>(depths, radii, C, N, order);
}
SR_EXPORT int64_t sr_depth_order_f64(const double* depths, const int32_t* radii, int64_t C,
                                     int64_t N, int64_t* order) {
    return depth_order_impl<double>(depths, radii, C, N, order);
}
