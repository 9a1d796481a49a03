import numpy as np
import pytest

from splatrefine.class_maps import argmax_classes, argmax_last, to_float16


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_argmax_classes_equals_numpy_ties_and_nans_included(dtype):
    rng = np.random.default_rng(0)
    probs = rng.random((3, 19, 7, 9)).astype(dtype)
    probs[0, 4] = probs[0, 2]  # ties: the first class wins
    probs[1, :, 0, 0] = 0.25  # all equal
    probs[1, 5, 1, 1] = np.nan  # a NaN is the maximum
    probs[1, 7, 1, 1] = np.nan  # the first NaN wins
    probs[2, 0, 2, 2] = np.nan  # a NaN in the first class
    probs[2, :, 3, 3] = -np.inf
    labels, top = argmax_classes(probs)
    assert labels.dtype == np.uint8 and top.dtype == dtype
    np.testing.assert_array_equal(labels, probs.argmax(axis=1))
    np.testing.assert_array_equal(top, probs.max(axis=1))
    assert labels[1, 1, 1] == 5 and labels[2, 2, 2] == 0 and labels[0].max() <= 18


def test_argmax_classes_takes_float16():
    probs = np.random.default_rng(3).random((2, 4, 5, 6)).astype(np.float16)
    labels, top = argmax_classes(probs)
    np.testing.assert_array_equal(labels, probs.argmax(axis=1))
    np.testing.assert_array_equal(top, probs.max(axis=1).astype(np.float32))


def test_argmax_classes_reads_any_strides():
    rng = np.random.default_rng(1)
    vhwk = rng.random((2, 5, 6, 4)).astype(np.float32)
    probs = np.moveaxis(vhwk, -1, 1)  # a transposed view, as run folders' probabilities are read
    labels, _ = argmax_classes(probs)
    np.testing.assert_array_equal(labels, vhwk.argmax(-1))


def test_to_float16_has_numpys_bits():
    rng = np.random.default_rng(2)
    x = rng.normal(scale=3e4, size=(2, 3, 50, 50)).astype(np.float32)
    x[0, 0, 0, :6] = [np.nan, np.inf, -np.inf, 6e-8, 1e-9, 65519.0]
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    got = to_float16(x)
    assert got.dtype == np.float16 and got.shape == x.shape
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_argmax_last_equals_numpy_ties_and_nans_included(dtype):
    rng = np.random.default_rng(4)
    probs = rng.random((3, 7, 9, 19)).astype(dtype)
    probs[0, ..., 4] = probs[0, ..., 2]  # ties: the first class wins
    probs[1, 0, 0] = 0.25
    probs[1, 1, 1, 5] = probs[1, 1, 1, 7] = np.nan  # the first NaN wins
    probs[2, 2, 2, 0] = np.nan
    probs[2, 3, 3] = -np.inf
    probs[2, 4, 4] = 0.0
    probs[2, 4, 4, 3] = -0.0
    labels, top = argmax_last(probs)
    assert labels.shape == top.shape == probs.shape[:-1] and top.dtype == dtype
    np.testing.assert_array_equal(labels, probs.argmax(-1))
    np.testing.assert_array_equal(top, probs.max(-1))
    assert labels[1, 1, 1] == 5 and labels[2, 2, 2] == 0
    # on a flat [N,K] and on one pixel
    flat = probs.reshape(-1, 19)
    np.testing.assert_array_equal(argmax_last(flat)[0], flat.argmax(-1))
    np.testing.assert_array_equal(argmax_last(flat[0])[0], flat[0].argmax())
