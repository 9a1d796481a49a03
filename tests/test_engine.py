"""The engine over a run directory, with the fake components of splatrefine.testing."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from splatrefine import cli
from splatrefine.config import resolve
from splatrefine.engine import STAGES, Engine, prepare_run_dir
from splatrefine.errors import SplatrefineError
from splatrefine.testing import FAKE_CONFIG, make_fake_registry, tiny_capture


def _run(tmp_path, capture=None, name="run"):
    reg = make_fake_registry()
    cfg = resolve(reg, {k: dict(v) for k, v in FAKE_CONFIG.items()})
    run_dir = tmp_path / name
    prepare_run_dir(run_dir, resume=False, overwrite=False)
    engine = Engine(reg, cfg, capture or tiny_capture(), run_dir)
    return engine, engine.run()


def test_full_run_writes_every_stage_output(tmp_path):
    engine, summary = _run(tmp_path)
    run = engine.run_dir
    state = json.loads((run / "stages.json").read_text())
    assert state["completed"] == list(STAGES)
    assert set(state["timings"]) == set(STAGES)
    manifest = json.loads((run / "refined" / "manifest.json").read_text())
    sources = [s["source"] for s in manifest["samples"]]
    assert sources.count("input") == 6 and sources.count("novel") == 4
    for s in manifest["samples"]:
        for key in ("image", "labels", "confidence"):
            assert (run / "refined" / s[key]).is_file()
        assert (run / "gt" / f"{s['name']}.png").is_file()
    label_png = Image.open(run / "refined" / manifest["samples"][0]["labels"])
    assert label_png.mode == "P" and label_png.getpalette()[3:6] == [255, 85, 0]  # skin colour
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"initial", "refined_input", "refined_novel", "labels_name"}
    assert metrics["labels_name"] == "GT"  # tiny_capture's labels are exact
    # the fake representation renders the exact sphere, so refined labels are perfect
    assert metrics["refined_input"]["miou"] == pytest.approx(1.0)
    assert metrics["refined_novel"]["miou"] == pytest.approx(1.0)
    assert (run / "report.html").is_file()
    assert (run / "config.yaml").is_file() and (run / "initial" / "probs.npy").is_file()
    assert summary["metrics"] == metrics


def test_metrics_say_what_the_labels_are(tmp_path):
    from dataclasses import replace

    engine, summary = _run(tmp_path, replace(tiny_capture(), labels_name="pseudo-GT"))
    assert summary["metrics"]["labels_name"] == "pseudo-GT"
    assert "(against pseudo-GT)" in (engine.run_dir / "report.html").read_text()


def test_refined_folder_is_itself_a_capture(tmp_path):
    engine, _ = _run(tmp_path)
    again = make_fake_registry().open_capture(str(engine.run_dir / "refined"))
    assert len(again) == 10
    manifest = json.loads((engine.run_dir / "refined" / "manifest.json").read_text())
    first = manifest["samples"][0]
    assert np.allclose(again.views[0].camera.viewmat, np.asarray(first["viewmat"]), atol=1e-6)
    assert again.views[0].labels is not None


def test_resume_skips_completed_stages(tmp_path):
    engine, _ = _run(tmp_path)
    run = engine.run_dir
    state = json.loads((run / "stages.json").read_text())
    state["completed"] = ["parse", "fit"]
    (run / "stages.json").write_text(json.dumps(state))
    model_mtime = (run / "model" / "model.pt").stat().st_mtime_ns
    reg = make_fake_registry()
    cfg = resolve(reg, {k: dict(v) for k, v in FAKE_CONFIG.items()})
    prepare_run_dir(run, resume=True, overwrite=False)
    again = Engine(reg, cfg, tiny_capture(), run)
    again.run()
    assert (run / "model" / "model.pt").stat().st_mtime_ns == model_mtime
    assert json.loads((run / "stages.json").read_text())["completed"] == list(STAGES)


def test_capture_without_gt_skips_metrics_and_says_so(tmp_path):
    cap = tiny_capture()
    for v in cap.views:
        v.labels = None
    reg = make_fake_registry()
    cfg = resolve(reg, {**{k: dict(v) for k, v in FAKE_CONFIG.items()},
                        "initial_parser": {"plugin": "fake-parser"}})
    run = tmp_path / "run"
    prepare_run_dir(run, resume=False, overwrite=False)
    engine = Engine(reg, cfg, cap, run)
    engine.stage_evaluate()
    assert engine.notes == ["the capture has no GT labels: metrics are skipped"]
    assert not (run / "metrics.json").exists()


def test_output_folder_rules(tmp_path):
    engine, _ = _run(tmp_path)
    with pytest.raises(SplatrefineError, match="already holds a run"):
        prepare_run_dir(engine.run_dir, resume=False, overwrite=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    # a folder that is not ours: the one way out is another -o, and the message says why
    for resume in (False, True):
        with pytest.raises(SplatrefineError) as err:
            prepare_run_dir(other, resume=resume, overwrite=False)
        assert str(err.value) == (f"{other}: exists, is not empty and holds no splatrefine run\n"
                                  "  Choose a new or empty folder with -o (--resume and --overwrite act only on run folders).")
    with pytest.raises(SplatrefineError, match="refusing to delete it even with --overwrite"):
        prepare_run_dir(other, resume=False, overwrite=True)
    assert prepare_run_dir(engine.run_dir, resume=True, overwrite=False) is False
    assert prepare_run_dir(engine.run_dir, resume=False, overwrite=True) is True
    assert not any(engine.run_dir.iterdir())


def test_bad_config_leaves_no_run_folder(tmp_path, monkeypatch):
    from splatrefine.io.capture_folder import write_capture_folder

    monkeypatch.setattr(cli, "_registry", make_fake_registry)
    cap_dir = write_capture_folder(tiny_capture(), tmp_path / "cap")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(FAKE_CONFIG))
    run = tmp_path / "run"
    result = CliRunner().invoke(cli.main, ["refine", str(cap_dir), "-c", str(cfg), "-o", str(run),
                                           "--set", "view_sampler.count=-1", "-q"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: view_sampler 'fake-sampler'.count: -1 is below the minimum 1")
    assert not run.exists()


def test_unwritable_output_is_one_line(tmp_path, monkeypatch):
    import os

    if os.geteuid() == 0:
        target = "/proc/splatrefine-run"  # even root cannot create folders there
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = str(locked / "run")
    with pytest.raises(SplatrefineError):
        prepare_run_dir(__import__("pathlib").Path(target), resume=False, overwrite=False)


def test_cli_refine_end_to_end_with_fakes(tmp_path, monkeypatch):
    from splatrefine.io.capture_folder import write_capture_folder

    monkeypatch.setattr(cli, "_registry", make_fake_registry)
    cap_dir = write_capture_folder(tiny_capture(), tmp_path / "cap")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(FAKE_CONFIG))
    run = tmp_path / "run"
    result = CliRunner().invoke(cli.main, ["refine", str(cap_dir), "-c", str(cfg), "-o", str(run), "-q"])
    assert result.exit_code == 0, result.output
    assert f"Report: {run / 'report.html'}" in result.output
    assert "mIoU initial -> refined (input views):" in result.output


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os

    from splatrefine.io.atomic import atomic_dir, write_text

    write_text(tmp_path / "a.txt", "x")
    with atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("y")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask


def test_release_free_memory_collects_cycles_only_when_asked():
    import gc
    import weakref

    from splatrefine.engine import release_free_memory

    class Node:
        pass

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        node = Node()
        node.self = node  # a reference cycle: refcounting alone never frees it
        ref = weakref.ref(node)
        del node
        release_free_memory(collect=False)
        assert ref() is not None
        release_free_memory(collect=True)
        assert ref() is None
    finally:
        if was_enabled:
            gc.enable()
