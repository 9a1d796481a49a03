"""The `labels` initial parser: label PNGs and probability arrays from outside parsers, matched to
views by name; every bad folder is one error naming the file and the fix; a tiny refine via the CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from splatrefine import cli
from splatrefine.errors import CaptureError, ConfigError
from splatrefine.io.labels import write_labels
from splatrefine.plugins.labels_parser.config import LabelsConfig
from splatrefine.plugins.labels_parser.parser import LabelsParser
from splatrefine.schema import CELEBAMASK_HQ, IGNORE, LAPA, schema_mapping
from splatrefine.testing import FAKE_CONFIG, make_fake_registry, tiny_capture

K = CELEBAMASK_HQ.num_classes


@pytest.fixture(scope="module")
def cap():
    return tiny_capture(views=4, size=16)


def _gt(cap) -> np.ndarray:
    return np.stack([v.labels for v in cap.views])


def _pngs(cap, folder, schema=CELEBAMASK_HQ):
    folder.mkdir(exist_ok=True)
    for v in cap.views:
        write_labels(folder / f"{v.name}.png", v.labels, schema)
    return folder


def _softmax(cap, seed=0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(len(cap), K) + cap.views[0].image.shape[:2]) * 3
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _arrays(cap, folder, probs, suffix=".npy"):
    folder.mkdir(exist_ok=True)
    for v, p in zip(cap.views, probs):
        if suffix == ".npy":
            np.save(folder / f"{v.name}.npy", p)
        else:
            np.savez(folder / f"{v.name}.npz", p)
    return folder


def _parse(cap, folder, **settings) -> np.ndarray:
    return LabelsParser(LabelsConfig(path=str(folder), **settings)).parse(cap)


def _error(exc_type, fn) -> str:
    with pytest.raises(exc_type) as exc:
        fn()
    return str(exc.value)


# round trips ------------------------------------------------------------------------------------
def test_label_pngs_round_trip_with_smoothing(cap, tmp_path):
    probs = _parse(cap, _pngs(cap, tmp_path / "maps"))
    assert probs.shape == (4, K, 16, 16) and probs.dtype == np.float32
    assert np.array_equal(probs.argmax(axis=1), _gt(cap))
    assert np.allclose(probs.max(axis=1), 0.9) and np.allclose(probs.sum(axis=1), 1.0)
    assert np.allclose(np.sort(probs, axis=1)[:, -2], 0.1 / (K - 1))
    hard = _parse(cap, tmp_path / "maps", smoothing=0.0)
    assert np.array_equal(hard, np.eye(K, dtype=np.float32)[_gt(cap)].transpose(0, 3, 1, 2))


def test_grey_and_colour_pngs_and_ignore(cap, tmp_path):
    folder = _pngs(cap, tmp_path / "maps")
    grey, colour = cap.views[0], cap.views[1]
    lab = grey.labels.copy()
    lab[:4] = IGNORE  # no opinion -> uniform
    Image.fromarray(lab, mode="L").save(folder / f"{grey.name}.png")
    Image.fromarray(CELEBAMASK_HQ.colorize(colour.labels)).save(folder / f"{colour.name}.png")
    probs = _parse(cap, folder)
    assert np.allclose(probs[0, :, :4], 1.0 / K)
    assert np.array_equal(probs[0, :, 4:].argmax(axis=0), grey.labels[4:])
    assert np.array_equal(probs[1].argmax(axis=0), colour.labels)


@pytest.mark.parametrize("suffix,dtype", [(".npy", np.float32), (".npy", np.float16), (".npz", np.float32)])
def test_probability_arrays_round_trip(cap, tmp_path, suffix, dtype):
    want = _softmax(cap)
    probs = _parse(cap, _arrays(cap, tmp_path / "maps", want.astype(dtype), suffix))
    assert np.allclose(probs, want, atol=2e-3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_npz_with_a_probs_array_among_others(cap, tmp_path):
    want = _softmax(cap)
    folder = tmp_path / "maps"
    folder.mkdir()
    for v, p in zip(cap.views, want):
        np.savez(folder / f"{v.name}.npz", logits=np.log(p), probs=p)
    assert np.allclose(_parse(cap, folder), want, atol=1e-6)


def test_maps_in_another_schema_are_mapped(cap, tmp_path):
    to_lapa = schema_mapping(CELEBAMASK_HQ, LAPA)
    folder = tmp_path / "maps"
    folder.mkdir()
    for v in cap.views:
        write_labels(folder / f"{v.name}.png", to_lapa[v.labels], LAPA)
    probs = _parse(cap, folder, schema="lapa")
    back = schema_mapping(LAPA, CELEBAMASK_HQ)[to_lapa[_gt(cap)]]
    known = back != IGNORE
    assert np.array_equal(probs.argmax(axis=1)[known], back[known])
    # arrays: classes merging into one add up, each pixel still sums to 1
    lapa = np.full((LAPA.num_classes, 16, 16), 1.0 / LAPA.num_classes, np.float32)
    for v in cap.views:
        (folder / f"{v.name}.png").unlink()
        np.save(folder / f"{v.name}.npy", lapa)
    probs = _parse(cap, folder, schema="lapa")
    assert np.allclose(probs.sum(axis=1), 1.0) and np.allclose(probs[:, CELEBAMASK_HQ.index("skin")], 1.0 / 11)


def test_missing_uniform_leaves_a_view_without_opinion(cap, tmp_path):
    folder = _pngs(cap, tmp_path / "maps")
    (folder / f"{cap.views[2].name}.png").unlink()
    parser = LabelsParser(LabelsConfig(path=str(folder), missing="uniform"))
    probs = parser.parse(cap)
    assert np.allclose(probs[2], 1.0 / K) and np.array_equal(probs[3].argmax(axis=0), cap.views[3].labels)
    assert parser.notes == [f"no map for 1 of the 4 views in {folder} ({cap.views[2].name}): left without labels"]


def test_format_picks_one_kind_of_file(cap, tmp_path):
    folder = _arrays(cap, _pngs(cap, tmp_path / "maps"), _softmax(cap))
    assert np.array_equal(_parse(cap, folder, format="png").argmax(axis=1), _gt(cap))
    assert np.allclose(_parse(cap, folder, format="npy"), _softmax(cap), atol=1e-6)


# errors -----------------------------------------------------------------------------------------
def test_folder_unset_or_missing(tmp_path):
    assert _error(ConfigError, lambda: LabelsParser(LabelsConfig())) == (
        "initial_parser 'labels' needs the folder of label maps\n  Set it with --set initial_parser.path=FOLDER.")
    missing = tmp_path / "nope"
    assert _error(ConfigError, lambda: LabelsParser(LabelsConfig(path=str(missing)))) == (
        f"{missing}: no such folder of label maps (initial_parser 'labels' path)\n"
        "  Point --set initial_parser.path=FOLDER at the folder that holds VIEW.png / VIEW.npy files.")


def test_ambiguous_duplicates_at_build(cap, tmp_path):
    folder = _arrays(cap, _pngs(cap, tmp_path / "maps"), _softmax(cap))
    name = cap.views[0].name
    assert _error(CaptureError, lambda: LabelsParser(LabelsConfig(path=str(folder)))) == (
        f"{folder / name}.npy: 4 view(s) have more than one map ({name}.npy and {name}.png, "
        f"{cap.views[1].name}.npy and {cap.views[1].name}.png, {cap.views[2].name}.npy and {cap.views[2].name}.png, ...)\n"
        "  Keep one file per view, or pick one kind with --set initial_parser.format=png (or npy).")


def test_views_without_maps_list_names_and_count(cap, tmp_path):
    folder = _pngs(cap, tmp_path / "maps")
    for v in cap.views[1:]:
        (folder / f"{v.name}.png").unlink()
    n = [v.name for v in cap.views]
    assert _error(CaptureError, lambda: _parse(cap, folder)) == (
        f"{folder}: no map for 3 of the 4 views ({n[1]}, {n[2]}, {n[3]})\n"
        f"  Add {n[1]}.png and the others, or let such views stay without an opinion with "
        "--set initial_parser.missing=uniform.")


def test_no_map_matches_any_view_even_with_missing_uniform(cap, tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    write_labels(folder / "IMG_0001.png", cap.views[0].labels, CELEBAMASK_HQ)
    n = [v.name for v in cap.views]
    assert _error(CaptureError, lambda: _parse(cap, folder, missing="uniform")) == (
        f"{folder}: no map matches any of the capture's 4 views (views are named {n[0]}, {n[1]}, {n[2]}, ...; "
        f"the folder has IMG_0001)\n  Name each map after its view: {n[0]}.png or {n[0]}.npy.")


def test_wrong_size(cap, tmp_path):
    folder = _pngs(cap, tmp_path / "maps")
    bad = folder / f"{cap.views[1].name}.png"
    write_labels(bad, np.zeros((12, 20), np.uint8), CELEBAMASK_HQ)
    hint = "  Make each map the size of its view's image (nearest-neighbour resize for labels)."
    assert _error(CaptureError, lambda: _parse(cap, folder)) == f"{bad}: map is 20x12 but its view is 16x16\n{hint}"
    folder = _arrays(cap, tmp_path / "arrays", _softmax(cap))
    bad = folder / f"{cap.views[0].name}.npy"
    np.save(bad, np.full((K, 16, 15), 1.0 / K, np.float32))
    assert _error(CaptureError, lambda: _parse(cap, folder)) == f"{bad}: map is 15x16 but its view is 16x16\n{hint}"


def test_values_outside_the_schema(cap, tmp_path):
    folder = _pngs(cap, tmp_path / "maps")
    bad = folder / f"{cap.views[3].name}.png"
    lab = cap.views[3].labels.copy()
    lab[0, 0], lab[0, 1] = 40, 19
    Image.fromarray(lab, mode="L").save(bad)
    hint = ("  Label maps hold class indices of schema 'celebamask-hq' (0..18, 255 = no opinion) or its palette "
            "colours; --set initial_parser.schema=NAME if they use another schema.")
    assert _error(CaptureError, lambda: _parse(cap, folder)) == (
        f"{bad}: label values 19, 40 are outside schema 'celebamask-hq' (0..18, 255 = ignore)\n{hint}")
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(bad)
    assert _error(CaptureError, lambda: _parse(cap, folder)) == (
        f"{bad}: colour (7, 7, 7) is not in the palette of schema 'celebamask-hq'\n{hint}")


def test_probabilities_that_do_not_sum_to_one(cap, tmp_path):
    probs = _softmax(cap)
    folder = _arrays(cap, tmp_path / "maps", probs)
    bad = folder / f"{cap.views[0].name}.npy"
    off = probs[0].copy()
    off[:, 3, 5] *= 2
    np.save(bad, off)
    assert _error(CaptureError, lambda: _parse(cap, folder)) == (
        f"{bad}: probabilities must sum to 1 over the 19 classes; pixel (y=3, x=5) sums to 2\n"
        "  Apply a softmax over axis 0 before saving.")
    np.save(bad, np.log(probs[0]))
    assert _error(CaptureError, lambda: _parse(cap, folder)).startswith(
        f"{bad}: probabilities must be finite and >= 0 (found min -")
    nan = probs[0].copy()
    nan[0, 0, 0] = np.nan
    np.save(bad, nan)
    assert _error(CaptureError, lambda: _parse(cap, folder)) == (
        f"{bad}: probabilities must be finite and >= 0 (found NaN or inf)\n  Save softmax probabilities, not logits.")


def test_wrong_number_of_classes_or_layout(cap, tmp_path):
    probs = _softmax(cap)
    folder = _arrays(cap, tmp_path / "maps", probs)
    bad = folder / f"{cap.views[1].name}.npy"
    np.save(bad, probs[1][:11] / probs[1][:11].sum(axis=0))
    assert _error(CaptureError, lambda: _parse(cap, folder)) == (
        f"{bad}: has 11 classes on axis 0; schema 'celebamask-hq' has 19\n"
        "  Save all 19 classes of schema 'celebamask-hq' in its order, or --set initial_parser.schema=NAME.")
    np.save(bad, probs[1].transpose(1, 2, 0))
    assert _error(CaptureError, lambda: _parse(cap, folder)) == (
        f"{bad}: has 16 classes on axis 0; schema 'celebamask-hq' has 19\n"
        "  It looks like [H,W,K]: save probs.transpose(2, 0, 1).")
    np.save(bad, cap.views[1].labels)
    assert _error(CaptureError, lambda: _parse(cap, folder)) == (
        f"{bad}: expected float probabilities [K,H,W] = [19,16,16], got uint8 [16, 16]\n"
        "  Save each view's softmax output as a float array [K,H,W].")


def test_unreadable_or_unclear_arrays(cap, tmp_path):
    folder = _arrays(cap, tmp_path / "maps", _softmax(cap), suffix=".npz")
    bad = folder / f"{cap.views[2].name}.npz"
    np.savez(bad, a=np.zeros(3), b=np.zeros(3))
    assert _error(CaptureError, lambda: _parse(cap, folder)) == (
        f"{bad}: holds arrays a, b; expected one array or one named 'probs'\n"
        "  Save it with np.savez(path, probs=probs).")
    bad.write_bytes(b"not an array")
    assert _error(CaptureError, lambda: _parse(cap, folder)).startswith(f"{bad}: cannot read probability array (")
    bad.write_bytes((folder / f"{cap.views[0].name}.npz").read_bytes()[:60])  # a truncated zip
    assert _error(CaptureError, lambda: _parse(cap, folder)).startswith(f"{bad}: cannot read probability array (")


# through the CLI --------------------------------------------------------------------------------
@pytest.fixture
def cli_capture(tmp_path, monkeypatch):
    from splatrefine.io.capture_folder import write_capture_folder

    monkeypatch.setattr(cli, "_registry", make_fake_registry)
    cap = tiny_capture(views=4, size=16)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(FAKE_CONFIG))
    return cap, write_capture_folder(cap, tmp_path / "cap"), cfg


def _refine(path, cfg, run, maps, *extra):
    return CliRunner().invoke(cli.main, ["refine", str(path), "-c", str(cfg), "-o", str(run), "-q",
                                         "--plugin", "initial_parser=labels",
                                         "--set", f"initial_parser.path={maps}", *extra])


def test_refine_with_outside_labels_via_the_cli(cli_capture, tmp_path):
    from splatrefine.io.labels import read_labels

    cap, path, cfg = cli_capture
    maps = _pngs(cap, tmp_path / "maps")
    run = tmp_path / "run"
    result = _refine(path, cfg, run, maps, "--set", "initial_parser.smoothing=0.2")
    assert result.exit_code == 0, result.output
    for v in cap.views:
        assert np.array_equal(read_labels(run / "initial" / "labels" / f"{v.name}.png", CELEBAMASK_HQ), v.labels)
    probs = np.load(run / "initial" / "probs.npy").astype(np.float32)
    assert np.allclose(probs.max(axis=1), 0.8, atol=1e-3)
    assert json.loads((run / "metrics.json").read_text())["initial"]["miou"] == pytest.approx(1.0)


def test_refine_stops_before_the_fit_on_a_bad_folder(cli_capture, tmp_path):
    cap, path, cfg = cli_capture
    maps = _pngs(cap, tmp_path / "maps")
    (maps / f"{cap.views[0].name}.png").unlink()
    run = tmp_path / "run"
    result = _refine(path, cfg, run, maps)
    assert result.exit_code == 2
    assert [ln for ln in result.output.splitlines() if ln.strip()] == [
        f"Error: {maps}: no map for 1 of the 4 views ({cap.views[0].name})",
        f"  Add {cap.views[0].name}.png and the others, or let such views stay without an opinion with "
        "--set initial_parser.missing=uniform.",
    ]
    assert not (run / "initial").exists() and not (run / "model").exists()
