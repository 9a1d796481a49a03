"""Undistorting images, label maps and masks of a distorted camera into its pinhole camera.

The undistorted view keeps the image size and the pinhole intrinsics (fx, fy, cx, cy) of the
distorted camera; only the lens distortion is removed. OpenCV does the resampling (imported inside
the function: listing plugins must stay cheap). Images are resampled bilinearly, label maps and
masks with nearest neighbour; pixels that fall outside the source become black (image), 255 =
ignore (labels) and background (mask).

Pixel centres: splatrefine, COLMAP and nerfstudio put the centre of pixel (0, 0) at (0.5, 0.5);
OpenCV puts it at (0, 0). `to_opencv_K` / `from_opencv_K` shift the principal point between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CaptureError
from ..schema import IGNORE

# Which distortion models we can undistort, and how many coefficients each takes (OpenCV order).
#   "opencv":  k1, k2, p1, p2[, k3[, k4, k5, k6]]  (cv2.undistort's rational model)
#   "fisheye": k1, k2, k3, k4                       (cv2.fisheye, equidistant)
MODELS = ("opencv", "fisheye")


@dataclass(frozen=True)
class Distortion:
    """Lens distortion of one camera: a model name from MODELS and its coefficients."""

    model: str
    coeffs: tuple[float, ...]

    @property
    def is_zero(self) -> bool:
        return not any(abs(c) > 0.0 for c in self.coeffs)


def to_opencv_K(K: np.ndarray) -> np.ndarray:
    """Our K (pixel (0,0) centred at 0.5) -> OpenCV's K (centred at 0)."""
    K = np.array(K, dtype=np.float64)
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    return K


def from_opencv_K(K: np.ndarray) -> np.ndarray:
    """OpenCV's K (pixel (0,0) centred at 0) -> ours (centred at 0.5)."""
    K = np.array(K, dtype=np.float64)
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


def undistort_maps(K: np.ndarray, distortion: Distortion, width: int, height: int, where: str):
    """cv2 remap tables (map_x, map_y) float32 [H,W] for our-convention K; None if no distortion."""
    if distortion.is_zero:
        return None
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a dependency
        raise CaptureError(f"{where}: camera has lens distortion and OpenCV is not installed to undistort it",
                           "pip install opencv-python-headless") from None
    Kcv = to_opencv_K(K)
    size = (int(width), int(height))
    if distortion.model == "opencv":
        coeffs = np.asarray(distortion.coeffs, dtype=np.float64)
        if coeffs.size not in (4, 5, 8):
            raise CaptureError(f"{where}: OpenCV distortion needs 4, 5 or 8 coefficients, got {coeffs.size}")
        mx, my = cv2.initUndistortRectifyMap(Kcv, coeffs, None, Kcv, size, cv2.CV_32FC1)
    elif distortion.model == "fisheye":
        coeffs = np.asarray(distortion.coeffs, dtype=np.float64).reshape(4, 1)
        mx, my = cv2.fisheye.initUndistortRectifyMap(Kcv, coeffs, np.eye(3), Kcv, size, cv2.CV_32FC1)
    else:
        raise CaptureError(f"{where}: cannot undistort distortion model '{distortion.model}' (known: {', '.join(MODELS)})")
    return mx, my


def remap(array: np.ndarray | None, maps, kind: str) -> np.ndarray | None:
    """Resample an image ("image"), label map ("labels") or bool mask ("mask") through `maps`."""
    if array is None or maps is None:
        return array
    import cv2

    mx, my = maps
    if kind == "image":
        return cv2.remap(array, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if kind == "labels":
        return cv2.remap(array, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE)
    if kind == "mask":
        out = cv2.remap(array.astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out.astype(bool)
    raise ValueError(f"unknown remap kind {kind!r}")
