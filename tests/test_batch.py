"""`splatrefine batch` on the local executor: a fleet of tiny real captures with a broken one, an
unreadable folder and a FaceScape tuple whose views are all invalid; fleet.json, fleet.html, the
merged manifest; a rerun that skips finished captures and resumes an unfinished one; bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from splatrefine.cli import main

# real components, as small as they go: 33 views at 32 px, a 30-step fit
TINY = {
    "seed": 0,
    "device": "cpu",
    "initial_parser": {"plugin": "simulated"},
    "representation": {"plugin": "dual-gs", "params": {"iterations": 30, "init_points": 400,
                                                        "checkpoint_every": 10, "refine_every": 40}},
    "view_sampler": {"plugin": "orbit", "params": {"yaw_count": 4, "pitch_count": 1}},
    "label_aggregator": {"plugin": "argmax"},
}


def _facescape_tuple(folder: Path, valid: bool) -> None:
    folder.mkdir(parents=True)
    rt = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 500]]
    params = {}
    for i in range(2):
        params.update({f"{i}_K": [[100, 0, 16], [0, 100, 16], [0, 0, 1]], f"{i}_Rt": rt,
                       f"{i}_width": 32, f"{i}_height": 32, f"{i}_valid": valid})
    (folder / "params.json").write_text(json.dumps(params))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    from splatrefine.plugins.synthetic import write_synthetic

    src = tmp_path_factory.mktemp("caps")
    write_synthetic(src, identities=2, seed=5, rig="frontal-only", resolution=32)
    shutil.copytree(src / "id_001", src / "broken")
    (src / "broken" / "images" / "view_003.png").unlink()  # a user error inside its job
    (src / "junk").mkdir()
    (src / "junk" / "notes.txt").write_text("not a capture")  # unreadable: reported before any work
    _facescape_tuple(src / "100" / "1_neutral", valid=False)  # a FaceScape tree, all views invalid
    return src


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY))
    return p


def _batch(*args: str):
    return CliRunner().invoke(main, ["batch", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def fleet(source, config, tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet") / "out"
    result = _batch(source, "-o", out, "-c", config, "--workers", "2", "-q")
    return out, result


def _fleet_json(out: Path) -> dict:
    return json.loads((out / "fleet.json").read_text())


@pytest.mark.slow
def test_every_readable_capture_is_refined_and_failures_come_first(fleet):
    out, result = fleet
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert [ln.split(":")[0] for ln in lines[:3]] == ["FAILED 100__1_neutral", "FAILED broken", "FAILED junk"]
    assert lines[3].startswith("2 of 5 captures refined, 3 failed")
    data = _fleet_json(out)
    assert data["counts"] == {"done": 2, "failed": 3} and data["executor"] == "local" and data["slots"] == 2
    by = {c["name"]: c for c in data["captures"]}
    assert [c["status"] for c in data["captures"]] == ["failed"] * 3 + ["done"] * 2
    assert "view_003" in by["broken"]["error"] and "\n" not in by["broken"]["error"]
    assert by["100__1_neutral"]["error"].endswith("every view is marked invalid")
    assert by["junk"]["error"].endswith("junk: not a capture any installed reader understands")
    assert lines[1] == f"FAILED broken: {by['broken']['error']}"
    for name in ("id_000", "id_001"):
        rec = by[name]
        run = out / rec["run"]
        assert rec["run"] == f"runs/{name}" and (run / "report.html").is_file()
        assert set(rec["timings"]) >= {"parse", "fit", "render", "report"} and rec["seconds"] > 0
        assert rec["metrics"]["refined_input"]["miou"] > 0 and rec["line"].startswith("mIoU initial -> refined")
        assert rec["metrics"] == json.loads((run / "metrics.json").read_text())
    assert (out / "fleet.yaml").is_file() and yaml.safe_load((out / "fleet.yaml").read_text()) == TINY


@pytest.mark.slow
def test_fleet_html_is_one_sortable_page_with_buckets_and_thumbnails(fleet):
    out, _ = fleet
    page = (out / "fleet.html").read_text()
    assert page.count("<tr class=\"failed\">") == 3 and page.count("<tr class=\"done\">") == 2
    assert page.index("class=\"failed\"") < page.index("class=\"done\"")
    assert "addEventListener('click'" in page and "<script>" in page
    assert "mIoU per pose bucket, all captures with GT" in page
    assert page.count("data:image/jpeg;base64,") == 2 and 'href="runs/id_000/report.html"' in page
    assert "src=\"http" not in page and "<link" not in page  # self-contained


@pytest.mark.slow
def test_merged_manifest_is_a_dataset_train_reads(fleet):
    from splatrefine.datasets import LabelledDataset

    out, _ = fleet
    per_run = sum(len(json.loads((out / "runs" / n / "refined" / "manifest.json").read_text())["samples"])
                  for n in ("id_000", "id_001"))
    ds = LabelledDataset(out)
    assert len(ds) == per_run and len(set(ds.names)) == per_run
    assert ds.names[0].startswith("id_000__") and ds.yaw is not None
    image, labels = ds[0]
    assert image.shape == (32, 32, 3) and labels.shape == (32, 32)


@pytest.mark.slow
def test_rerun_skips_finished_captures_and_resumes_an_unfinished_one(fleet, source, config):
    out, _ = fleet
    run = out / "runs" / "id_001"
    stages = json.loads((run / "stages.json").read_text())
    stages["completed"].remove("report")  # as if killed while writing its report
    (run / "stages.json").write_text(json.dumps(stages))
    (run / "report.html").unlink()
    fit_stamp = (run / "model" / "model.pt").stat().st_mtime_ns
    result = _batch(source, "-o", out, "-c", config, "--workers", "1", "-q")
    assert result.exit_code == 1
    by = {c["name"]: c for c in _fleet_json(out)["captures"]}
    assert by["id_000"]["status"] == "done" and by["id_000"]["skipped"] is True
    assert by["id_001"]["status"] == "done" and by["id_001"]["resumed"] is True and "skipped" not in by["id_001"]
    assert (run / "report.html").is_file() and (run / "model" / "model.pt").stat().st_mtime_ns == fit_stamp
    assert by["broken"]["status"] == "failed"  # failed captures are tried again, and fail again


@pytest.mark.parametrize("case, message", [
    ("empty", "{src}: holds no capture any installed reader understands"),
    ("not-fleet", "{out}: exists, is not empty and holds no fleet (no readable fleet.json)"),
    ("executor", "no executor named 'lokal'. Did you mean 'local'?"),
    ("address", "executor 'local' has no setting 'address'."),
    ("resume", "{out}: holds no fleet to resume (no fleet.json)"),
    ("plugin", "no view_sampler named 'orbitt'. Did you mean 'orbit'?"),
    ("list", "{src}: lists no capture any installed reader understands (1 unreadable)"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, case, message, source):
    src, out = source, tmp_path / "out"
    args = []
    if case == "empty":
        src = tmp_path / "empty"
        src.mkdir()
    elif case == "not-fleet":
        out.mkdir()
        (out / "mine.txt").write_text("keep")
    elif case == "executor":
        args = ["--executor", "lokal"]
    elif case == "address":
        args = ["--address", "127.0.0.1:6379"]
    elif case == "resume":
        args = ["--resume"]
    elif case == "plugin":
        args = ["--plugin", "view_sampler=orbitt"]
    elif case == "list":
        src = tmp_path / "captures.txt"
        src.write_text("# one path a line\nnowhere/cap\n")
    result = CliRunner().invoke(main, ["batch", str(src), "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    first = result.output.splitlines()[0]
    assert first == "Error: " + message.format(src=src, out=out)
    if case == "not-fleet":
        assert [p.name for p in out.iterdir()] == ["mine.txt"]
    else:
        assert not out.exists()


def test_sources_name_runs_without_collisions(tmp_path):
    from splatrefine.fleet.names import run_names
    from splatrefine.fleet.sources import find_captures
    from splatrefine.registry import Registry

    for ident in ("100", "101"):
        for expr in ("1_neutral", "2_smile"):
            _facescape_tuple(tmp_path / "fs" / ident / expr, valid=True)
    _facescape_tuple(tmp_path / "a" / "cap", valid=True)
    _facescape_tuple(tmp_path / "b" / "cap", valid=True)
    (tmp_path / "fs" / "fleet" / "runs").mkdir(parents=True)  # the fleet's own OUT inside SOURCE
    entries = find_captures(tmp_path / "fs", Registry(), exclude=tmp_path / "fs" / "fleet")
    assert [e.label for e in entries] == ["100/1_neutral", "100/2_smile", "101/1_neutral", "101/2_smile"]
    assert all(e.problem is None for e in entries)
    assert run_names([e.label for e in entries])[0] == "100__1_neutral"
    listing = tmp_path / "list.txt"
    listing.write_text("a/cap\n\n# comment\nb/cap\na/cap\n")
    entries = find_captures(listing, Registry())
    assert [e.label for e in entries] == ["a/cap", "b/cap"]
    a, b, c = run_names(["x y/cap", "x_y/cap", "z"])
    assert a.startswith("x_y__cap-") and b.startswith("x_y__cap-") and a != b and c == "z"


def test_ctrl_c_stops_the_fleet_and_records_what_was_running(source, config, tmp_path):
    import _thread
    import threading
    import time

    out = tmp_path / "out"

    def interrupt_mid_fit() -> None:
        deadline = time.monotonic() + 120
        while not (out / "runs" / "id_000" / "model").is_dir():  # its fit has started
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        _thread.interrupt_main()  # what Ctrl-C does

    threading.Thread(target=interrupt_mid_fit, daemon=True).start()
    result = _batch(source, "-o", out, "-c", config, "--workers", "1", "-q")
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == f"Error: interrupted; {out} keeps every finished capture"
    by = {c["name"]: c["status"] for c in _fleet_json(out)["captures"]}
    assert by == {"100__1_neutral": "failed", "broken": "failed", "junk": "failed",
                  "id_000": "interrupted", "id_001": "pending"}
    assert (out / "fleet.html").is_file() and (out / "runs" / "id_000" / "stages.json").is_file()


def test_bucket_aggregate_weights_by_views():
    from splatrefine.fleet.html import bucket_aggregate

    def m(miou, n):
        return {"miou": miou, "buckets": {"extreme": {"miou": miou, "n_views": n}}}

    records = [{"metrics": {"initial": m(0.2, 1), "refined_input": m(0.4, 1), "refined_novel": m(0.5, 3)}},
               {"metrics": {"initial": m(0.6, 3), "refined_input": m(0.8, 3)}}, {"metrics": None}]
    agg = bucket_aggregate(records)
    assert agg["extreme"] == {"initial": pytest.approx(0.5), "refined_input": pytest.approx(0.7),
                              "refined_novel": pytest.approx(0.5), "captures": 2, "input_views": 4, "novel_views": 3}
    assert agg["frontal"]["captures"] == 0 and agg["frontal"]["initial"] is None


def test_fleet_page_says_which_captures_were_scored_against_pseudo_gt(tmp_path):
    from splatrefine.fleet.html import render_html

    def record(name: str, labels_name: str | None) -> dict:
        m = {"miou": 0.5, "buckets": {"extreme": {"miou": 0.5, "n_views": 2}}}
        metrics = {"initial": m, "refined_input": m}
        if labels_name:
            metrics["labels_name"] = labels_name
        return {"name": name, "run": f"runs/{name}", "status": "done", "seconds": 1.0, "metrics": metrics}

    meta = {"source": "caps", "executor": "local", "slots": 1, "wall_seconds": 2.0}
    page = render_html(tmp_path, meta, [record("a", None), record("b", "GT")])
    assert "mIoU per pose bucket, all captures with GT" in page and "pseudo-GT" not in page
    page = render_html(tmp_path, meta, [record("a", None), record("scan", "pseudo-GT"), record("c", "GT")])
    assert ("Of these 3 captures, 1 is scored against pseudo-GT, not labels people drew: read those "
            "numbers as agreement with a parser, not accuracy.") in page
