"""`splatrefine parse`, `train`, `evaluate` through click's CliRunner: outputs and exact error lines."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from splatrefine.commands.parsers import evaluate_cmd, labels_from_probs, metrics_table, parse_cmd, train_cmd
from splatrefine.datasets import write_labelled_folder
from splatrefine.io.labels import read_labels, write_image
from splatrefine.schema import CELEBAMASK_HQ
from splatrefine.testing import tiny_capture

torch = pytest.importorskip("torch")
SMALL = ["--set", "target_parser.input_size=64", "--set", "target_parser.train_batch_size=2"]


def run(cmd, args):
    result = CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cap = tiny_capture(views=6, size=48)
    root = write_labelled_folder(tmp / "ds", [v.name for v in cap.views], [v.image for v in cap.views],
                                 [v.labels for v in cap.views], yaw=cap.cameras().yaw)
    return root, cap


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    root, _ = dataset
    out = tmp_path_factory.mktemp("model") / "parser"
    code, output = run(train_cmd, [root, "-o", out, "--steps", "2", "-q", *SMALL])
    assert code == 0, output
    return out, output


def test_labels_from_probs_marks_no_opinion_as_ignore():
    probs = np.full((1, 4, 1, 2), 0.25, np.float32)
    probs[0, :, 0, 0] = [0.1, 0.7, 0.1, 0.1]
    np.testing.assert_array_equal(labels_from_probs(probs), [[[1, 255]]])


def test_parse_writes_palettized_labels_named_after_inputs(dataset, tmp_path):
    _, cap = dataset
    src = tmp_path / "imgs"
    for v in cap.views[:3]:
        write_image(src / f"{v.name}.jpg", v.image)
    write_image(src / "small.png", cap.views[0].image[:32, :40])  # another size is fine
    (src / "notes.txt").write_text("not an image")
    code, out = run(parse_cmd, [src, "-o", tmp_path / "out", "--plugin", "initial_parser=bisenet",
                                "--set", "initial_parser.input_size=64", "-q"])
    assert code == 0, out
    assert "Note: bisenet has no checkpoint: its weights are random" in out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted([f"{v.name}.png" for v in cap.views[:3]] + ["small.png"])
    img = Image.open(tmp_path / "out" / "small.png")
    assert img.mode == "P" and img.size == (40, 32)
    assert read_labels(tmp_path / "out" / "small.png", CELEBAMASK_HQ).max() < 19
    # refuses to overwrite a non-empty folder
    code, out = run(parse_cmd, [src, "-o", tmp_path / "out", "-q"])
    assert code == 2 and out.splitlines()[0] == f"Error: {tmp_path / 'out'}: already exists and is not empty"


def test_parse_with_mediapipe_notes_views_without_a_face(tmp_path):
    pytest.importorskip("mediapipe")
    src = tmp_path / "imgs"
    write_image(src / "wall.png", np.full((64, 64, 3), 90, np.uint8))
    code, out = run(parse_cmd, [src, "-o", tmp_path / "out", "--plugin", "initial_parser=mediapipe", "-q"])
    assert code == 0, out
    assert "Note: mediapipe found no face in view wall: all its pixels are left without labels" in out
    assert (read_labels(tmp_path / "out" / "wall.png", CELEBAMASK_HQ) == 255).all()


def test_parse_with_a_trained_parser_folder_as_checkpoint(trained, dataset, tmp_path):
    model, _ = trained
    _, cap = dataset
    src = tmp_path / "imgs"
    write_image(src / "a.png", cap.views[0].image)
    code, out = run(parse_cmd, [src, "-o", tmp_path / "out", "--plugin", "bisenet", "-q",
                                "--set", f"initial_parser.checkpoint={model}", "--set", "initial_parser.input_size=64"])
    assert code == 0 and "Note" not in out, out
    assert (tmp_path / "out" / "a.png").is_file()


def test_train_writes_a_parser_folder(trained):
    out, output = trained
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "parser.json", "weights.pt"]
    info = json.loads((out / "parser.json").read_text())
    assert info["plugin"] == "bisenet" and info["params"]["input_size"] == 64 and info["params"]["checkpoint"] is None
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 2
    assert output.startswith("Trained bisenet on 6 images for 2 steps")
    assert not out.with_name("parser.train").exists()  # the work folder is cleaned up


def test_evaluate_writes_metrics_table_and_sheet(trained, dataset, tmp_path):
    pytest.importorskip("splatrefine.metrics")
    model, _ = trained
    root, _ = dataset
    code, out = run(evaluate_cmd, [model, root, "-o", tmp_path / "eval", "-q", "--sheet", "4"])
    assert code == 0, out
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 <= m["pixel_acc"] <= 1 and m["n_images"] == 6
    assert set(m["buckets"]) == {"frontal", "mid", "extreme"}
    assert sum(b["n_views"] for b in m["buckets"].values()) == 6
    lines = out.splitlines()
    assert lines[0].split() == ["bucket", "views", "mIoU", "mean", "F1", "pix", "acc"]
    assert [ln.split()[0] for ln in lines[1:5]] == ["frontal", "mid", "extreme", "all"]
    sheet = Image.open(tmp_path / "eval" / "contact_sheet.png")
    assert sheet.size == (3 * 128, 4 * 128)
    assert len(list((tmp_path / "eval" / "predictions").iterdir())) == 6


def test_evaluate_a_bare_state_dict_file(trained, dataset, tmp_path):
    pytest.importorskip("splatrefine.metrics")
    model, _ = trained
    root, _ = dataset
    sd = torch.load(model / "weights.pt", weights_only=True)
    torch.save(sd, tmp_path / "my weights #1.pth")
    code, out = run(evaluate_cmd, [tmp_path / "my weights #1.pth", root, "-o", tmp_path / "e1", "-q",
                                   "--set", "target_parser.input_size=64"])
    assert code == 0, out
    code, out2 = run(evaluate_cmd, [model, root, "-o", tmp_path / "e2", "-q"])
    a = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    b = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert a["miou"] == b["miou"] and a["per_class"] == b["per_class"]


def test_commands_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, splatrefine.commands.parsers; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_metrics_table_handles_undefined_values():
    rows = metrics_table({"miou": None, "mean_f1": 0.5, "pixel_acc": 1.0, "n_images": 2,
                          "buckets": {"mid": {"miou": 0.25, "mean_f1": 0.5, "pixel_acc": 0.75, "n_views": 2}}})
    assert rows[1].split() == ["mid", "2", "0.250", "0.500", "0.750"]
    assert rows[2].split() == ["all", "2", "-", "0.500", "1.000"]


# bad input: one line, exit 2 ---------------------------------------------------------------------
def test_bad_checkpoints(tmp_path, dataset):
    _, cap = dataset
    src = tmp_path / "imgs"
    write_image(src / "a.png", cap.views[0].image)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    code, out = run(parse_cmd, [src, "-o", tmp_path / "o1", "--set", f"initial_parser.checkpoint={tmp_path / 'other.pth'}"])
    assert code == 2
    assert out.splitlines()[0] == (
        f"Error: {tmp_path / 'other.pth'}: checkpoint does not fit BiSeNet (19 classes, spatial_path=resnet): "
        "160 missing (cp.resnet.conv1.weight, cp.resnet.bn1.weight, cp.resnet.bn1.bias, ... 157 more); "
        "1 unexpected (fc.weight)")
    assert out.splitlines()[1] == ("  'strict: false' would not help: no tensor of the checkpoint matches this model "
                                   "(another architecture?).")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    code, out = run(parse_cmd, [src, "-o", tmp_path / "o2", "--set", f"initial_parser.checkpoint={tmp_path / 'list.pth'}"])
    assert code == 2 and out.splitlines()[0] == f"Error: {tmp_path / 'list.pth'}: not a state dict (found list)"
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_train_on_bad_datasets(tmp_path, dataset):
    root, cap = dataset
    bad = write_labelled_folder(tmp_path / "bad", [v.name for v in cap.views[:2]], [v.image for v in cap.views[:2]],
                                [v.labels for v in cap.views[:2]])
    (bad / "manifest.json").unlink()
    (bad / "labels" / f"{cap.views[1].name}.png").unlink()
    code, out = run(train_cmd, [bad, "-o", tmp_path / "m", "--steps", "1", *SMALL])
    img = bad / "images" / f"{cap.views[1].name}.png"
    assert code == 2 and out.splitlines()[0] == (
        f"Error: {img}: image has no labels ({bad / 'labels' / (cap.views[1].name + '.png')} is missing)")
    Image.fromarray(np.full((48, 48), 77, np.uint8), mode="L").save(bad / "labels" / f"{cap.views[1].name}.png")
    code, out = run(train_cmd, [root, bad, "-o", tmp_path / "m", "--steps", "1", *SMALL])
    assert code == 2 and out.splitlines()[0] == (
        f"Error: {bad / 'labels' / (cap.views[1].name + '.png')}: label values 77 are outside schema "
        "'celebamask-hq' (0..18, 255 = ignore)")
    assert not (tmp_path / "m").exists()


def test_unknown_plugin_setting_and_role(tmp_path, dataset):
    root, _ = dataset
    code, out = run(train_cmd, [root, "-o", tmp_path / "m", "--plugin", "target_parser=bisnet"])
    assert code == 2 and out.splitlines()[0] == "Error: no target_parser named 'bisnet'. Did you mean 'bisenet'?"
    code, out = run(train_cmd, [root, "-o", tmp_path / "m", "--set", "target_parser.input_sise=64"])
    assert code == 2 and out.splitlines()[0] == (
        "Error: target_parser 'bisenet' has no setting 'input_sise'. Did you mean 'input_size'?")
    code, out = run(train_cmd, [root, "-o", tmp_path / "m", "--set", "representation.iterations=5"])
    assert code == 2 and out.splitlines()[0] == (
        "Error: --set representation.iterations=5: this command uses only target_parser settings")


def test_unknown_smp_encoder_did_you_mean(tmp_path, dataset):
    pytest.importorskip("segmentation_models_pytorch")
    root, _ = dataset
    code, out = run(train_cmd, [root, "-o", tmp_path / "m", "--plugin", "target_parser=smp",
                                "--set", "target_parser.encoder=mobilenetv2"])
    assert code == 2 and out.splitlines()[0] == "Error: smp: unknown encoder 'mobilenetv2'. Did you mean 'mobilenet_v2'?"


def test_evaluate_bad_inputs(tmp_path, dataset, trained):
    root, _ = dataset
    model, _ = trained
    code, out = run(evaluate_cmd, [tmp_path / "nothing", root, "-o", tmp_path / "e"])
    assert code == 2 and out.splitlines()[0] == f"Error: {tmp_path / 'nothing'}: no such parser folder or checkpoint file"
    (tmp_path / "empty").mkdir()
    code, out = run(evaluate_cmd, [tmp_path / "empty", root, "-o", tmp_path / "e"])
    assert code == 2 and out.splitlines()[0] == f"Error: {tmp_path / 'empty'}: not a saved parser (no parser.json)"
    code, out = run(evaluate_cmd, [model, tmp_path / "nope", "-o", tmp_path / "e"])
    assert code == 2 and out.splitlines()[0] == f"Error: {tmp_path / 'nope'}: no such dataset folder"
