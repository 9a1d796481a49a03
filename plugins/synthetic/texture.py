"""Procedural 3D value noise: textures that are a function of the surface point, so every camera
sees the same texture on the same point. The kernel is compiled with numba on first use (numba
is imported lazily, so importing this module stays cheap)."""

from __future__ import annotations

import numpy as np

_KERNEL = None


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        import numba

        @numba.njit(cache=True, nogil=True, fastmath=True)
        def noise(p, seed, out):  # pragma: no cover - compiled
            s = np.uint32((seed * 2654435761 + 12345) & 0xFFFFFFFF)
            for n in range(p.shape[0]):
                fx, fy, fz = np.floor(p[n, 0]), np.floor(p[n, 1]), np.floor(p[n, 2])
                ix, iy, iz = np.int64(fx), np.int64(fy), np.int64(fz)
                tx, ty, tz = p[n, 0] - fx, p[n, 1] - fy, p[n, 2] - fz
                tx = tx * tx * (3.0 - 2.0 * tx)
                ty = ty * ty * (3.0 - 2.0 * ty)
                tz = tz * tz * (3.0 - 2.0 * tz)
                acc = 0.0
                for dx in range(2):
                    wx = tx if dx else 1.0 - tx
                    for dy in range(2):
                        wy = ty if dy else 1.0 - ty
                        for dz in range(2):
                            wz = tz if dz else 1.0 - tz
                            h = (np.uint32((ix + dx) & 0xFFFFFFFF) * np.uint32(73856093)) ^ \
                                (np.uint32((iy + dy) & 0xFFFFFFFF) * np.uint32(19349663)) ^ \
                                (np.uint32((iz + dz) & 0xFFFFFFFF) * np.uint32(83492791)) ^ s
                            h = (h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
                            h = h ^ (h >> np.uint32(16))
                            acc += wx * wy * wz * ((h & np.uint32(0xFFFF)) / 65535.0)
                out[n] = acc

        _KERNEL = noise
    return _KERNEL


def value_noise(p: np.ndarray, seed: int = 0) -> np.ndarray:
    """Smooth noise in 0..1 (float32 [N]) at points p [N,3] (lattice spacing 1)."""
    p = np.ascontiguousarray(p, dtype=np.float64).reshape(-1, 3)
    out = np.empty(len(p), dtype=np.float32)
    if len(p):
        _kernel()(p, int(seed) & 0xFFFFFFFF, out)
    return out


def fbm(p: np.ndarray, frequency: float, octaves: int = 3, seed: int = 0) -> np.ndarray:
    """Fractal sum of value noise at points p [N,3]; result roughly in -0.5..0.5."""
    total = np.zeros(len(p), dtype=np.float32)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        total += amp * (value_noise(p * (frequency * (2.0 ** o)), seed + 101 * o) - 0.5)
        norm += amp
        amp *= 0.5
    return total / norm
