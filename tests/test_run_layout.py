"""RunLayout names every path of a run folder; the names are a file format and must not change."""

from pathlib import Path

from splatrefine.run_layout import MANIFEST, REFINED, RunLayout


def test_run_folder_paths_are_the_documented_ones(tmp_path):
    run = RunLayout(str(tmp_path))
    rel = {k: str(getattr(run, k).relative_to(tmp_path)) for k in (
        "record", "config", "stages", "initial", "initial_probs", "initial_labels", "model", "model_file",
        "splats", "history", "sample", "sample_cameras", "refined", "refined_manifest", "refined_cameras", "gt",
        "metrics", "report", "report_dir", "demo_capture")}
    assert rel == {
        "record": "run.json", "config": "config.yaml", "stages": "stages.json",
        "initial": "initial", "initial_probs": "initial/probs.npy", "initial_labels": "initial/labels",
        "model": "model", "model_file": "model/model.pt", "splats": "model/splats.ply",
        "history": "model/history.json", "sample": "sample", "sample_cameras": "sample/cameras.json",
        "refined": "refined", "refined_manifest": "refined/manifest.json", "refined_cameras": "refined/cameras.json",
        "gt": "gt", "metrics": "metrics.json", "report": "report.html", "report_dir": "report",
        "demo_capture": "capture"}
    assert run.initial_label("view_0001") == tmp_path / "initial" / "labels" / "view_0001.png"
    assert run.gt_label("view_0001") == tmp_path / "gt" / "view_0001.png"
    assert isinstance(run.root, Path) and (REFINED, MANIFEST) == ("refined", "manifest.json")


def test_engine_stage_outputs_and_markers_come_from_the_layout():
    from splatrefine import run_layout
    from splatrefine.engine import RUN_MARKER, STAGE_OUTPUTS
    from splatrefine.run_record import RECORD

    assert RUN_MARKER == run_layout.STAGES_FILE == "stages.json" and RECORD == "run.json"
    assert STAGE_OUTPUTS == {"parse": ("initial",), "fit": ("model",), "sample": ("sample",), "render": ("refined",),
                             "evaluate": ("metrics.json", "gt"), "report": ("report.html", "report")}


def test_one_manifest_writer(tmp_path):
    """manifest.json (refined/, labelled folders, a fleet's OUT/, after a correction) is written by
    run_record.write_manifest alone, in the layout splatrefine.datasets reads."""
    import json
    from pathlib import Path

    from splatrefine.run_record import write_manifest

    path = write_manifest(tmp_path, "celebamask-hq", [{"name": "a", "image": "images/a.png"}],
                          extra={"schema": "ignored", "samples": "ignored", "note": "kept"})
    assert path == tmp_path / "manifest.json"
    assert list(json.loads(path.read_text()).items()) == [
        ("schema", "celebamask-hq"), ("note", "kept"), ("samples", [{"name": "a", "image": "images/a.png"}])]
    import re

    core = Path(__file__).resolve().parents[1] / "core"
    writes = re.compile(r"write_text\([^)\n]*MANIFEST|MANIFEST\)\.write_text|open\([^)\n]*MANIFEST[^)\n]*['\"]w")
    writers = sorted(str(p.relative_to(core)) for p in core.rglob("*.py") if writes.search(p.read_text()))
    assert writers == ["io/capture_folder.py"]  # its MANIFEST is capture.json; dataset manifests go through write_manifest
