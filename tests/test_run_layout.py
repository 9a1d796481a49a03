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
