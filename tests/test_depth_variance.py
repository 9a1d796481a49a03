"""The dual-gs depth-variance term: the spread of the Gaussians' depths along each ray."""

import math

import pytest
import torch

from splatrefine.plugins.dual_gs.model import DualGSModel, logit, render_model


def _model(depths, opacities, scale=0.004):
    n = len(depths)
    params = {
        "means": torch.tensor([[0.0, 0.0, z] for z in depths]),
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]] * n),
        "scales": torch.full((n, 3), math.log(scale)),
        "opacities": torch.tensor([logit(o) for o in opacities]),
        "sh0": torch.full((n, 1, 3), 0.1),
        "shN": torch.zeros((n, 0, 3)),
        "classes": torch.zeros((n, 3)),
    }
    params = {k: v.requires_grad_(True) for k, v in params.items()}
    return DualGSModel(params, "logits", 0, 0, (0.0, 0.0, 0.0), 3, "test", scene_scale=0.5)


def _camera():
    viewmats = torch.eye(4)[None]  # camera at the origin looking down +z
    Ks = torch.tensor([[[64.0, 0.0, 8.5], [0.0, 64.0, 8.5], [0.0, 0.0, 1.0]]])
    return viewmats, Ks


def test_variance_of_two_layers_matches_the_compositing_weights():
    model = _model([1.0, 1.02], [0.6, 0.9])
    vm, Ks = _camera()
    _, _, alpha, _, meta = render_model(model, vm, Ks, 16, 16, depth_variance=True, backend="cpu")
    var = meta["depth_variance"][0, 8, 8].item()
    # at the centre pixel each Gaussian's alpha is its opacity: weights 0.6 and 0.4 * 0.9
    w1, w2 = 0.6, 0.4 * 0.9
    z1, z2 = 0.0, 0.02 / 0.5  # depths relative to each other, in scene-scale units
    mean = (w1 * z1 + w2 * z2) / (w1 + w2)
    expected = (w1 * z1 ** 2 + w2 * z2 ** 2) / (w1 + w2) - mean ** 2
    assert alpha[0, 8, 8, 0].item() == pytest.approx(w1 + w2, rel=1e-4)
    assert var == pytest.approx(expected, rel=1e-3)


def test_one_layer_has_no_variance_and_the_term_pulls_layers_together():
    vm, Ks = _camera()
    single = _model([1.0], [0.9])
    _, _, _, _, meta = render_model(single, vm, Ks, 16, 16, depth_variance=True, backend="cpu")
    assert meta["depth_variance"].abs().max().item() < 1e-6

    model = _model([1.0, 1.02], [0.6, 0.9])
    _, _, alpha, _, meta = render_model(model, vm, Ks, 16, 16, depth_variance=True, backend="cpu")
    meta["depth_variance"][0, 8, 8].backward()  # the pixel both Gaussians are centred on
    gz = model.params["means"].grad[:, 2]
    assert gz[0].item() < 0 < gz[1].item()  # descent (-grad) moves the front layer back, the back one forward


def test_depth_and_classes_unchanged_by_the_extra_channels():
    model = _model([1.0, 1.02], [0.6, 0.9])
    vm, Ks = _camera()
    with torch.no_grad():
        plain = render_model(model, vm, Ks, 16, 16, depth=True, backend="cpu")
        extra = render_model(model, vm, Ks, 16, 16, depth=True, depth_variance=True, backend="cpu")
    for a, b in zip(plain[:4], extra[:4]):
        assert torch.allclose(a, b, atol=1e-6)
