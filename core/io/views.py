"""Assembling one View from files: load, check sizes against the camera, undistort."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CaptureError
from ..schema import LabelSchema
from ..types import Capture, View
from .common import check_camera
from .labels import read_image, read_labels, read_mask, write_image, write_labels, write_mask
from .undistort import Distortion, remap, undistort_maps


def load_view(
    name: str,
    K: np.ndarray,
    viewmat: np.ndarray,
    width: int | None,
    height: int | None,
    image_path: Path,
    where: str,
    schema: LabelSchema,
    labels_path: Path | None = None,
    mask_path: Path | None = None,
    distortion: Distortion | None = None,
) -> View:
    """Read a view's image (and labels, mask), check every size against the camera, undistort.

    `width`/`height` None means "whatever size the image has". `where` prefixes error messages
    (the manifest and the view). K is in our convention (pixel (0,0) centred at (0.5, 0.5)).
    """
    if not image_path.is_file():
        raise CaptureError(f"{where}: image '{image_path}' does not exist")
    image = read_image(image_path)
    h, w = image.shape[:2]
    if width is None or height is None:
        width, height = w, h
    elif (w, h) != (width, height):
        raise CaptureError(f"{image_path}: image is {w}x{h} but the camera says {width}x{height}")
    camera = check_camera(K, viewmat, width, height, where)
    labels = mask = None
    if labels_path is not None:
        labels = read_labels(labels_path, schema)
        if labels.shape != (height, width):
            raise CaptureError(f"{labels_path}: labels are {labels.shape[1]}x{labels.shape[0]} but the image is {width}x{height}")
    if mask_path is not None:
        mask = read_mask(mask_path)
        if mask.shape != (height, width):
            raise CaptureError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}")
    if distortion is not None:
        maps = undistort_maps(camera.K, distortion, width, height, where)
        image, labels, mask = remap(image, maps, "image"), remap(labels, maps, "labels"), remap(mask, maps, "mask")
    return View(name=name, camera=camera, image=image, labels=labels, mask=mask)


def write_view_files(folder: Path, names: list[str], capture: Capture) -> None:
    """images/NAME.png (+ labels/NAME.png, masks/NAME.png when the view has them) under `folder`,
    the layout every capture writer shares. Two files at a time: PNG encoding releases the GIL."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        writes = []
        for name, v in zip(names, capture.views):
            writes.append(pool.submit(write_image, folder / "images" / f"{name}.png", v.image))
            if v.labels is not None:
                writes.append(pool.submit(write_labels, folder / "labels" / f"{name}.png", v.labels, capture.schema))
            if v.mask is not None:
                writes.append(pool.submit(write_mask, folder / "masks" / f"{name}.png", v.mask))
        for w in writes:
            w.result()  # the first failure raises here
