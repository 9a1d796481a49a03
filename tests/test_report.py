"""The run report on a tiny fake run directory, and the picture helpers it uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from splatrefine.errors import SplatrefineError
from splatrefine.figures import ERROR_COLOURS, bar_chart, contact_sheet, error_map, line_chart, text_tile
from splatrefine.io.labels import write_image, write_labels
from splatrefine.report import loss_series, write_report
from splatrefine.schema import CELEBAMASK_HQ

S = CELEBAMASK_HQ
H, W = 24, 32


def _metrics(scale: float) -> dict:
    per_class = {c: {"iou": scale * (0.5 + 0.02 * i), "f1": scale} for i, c in enumerate(S.classes[1:6])}
    buckets = {b: {"miou": scale * v, "mean_f1": scale, "pixel_acc": scale, "n_views": n}
               for b, v, n in (("frontal", 0.8, 1), ("mid", 0.6, 1), ("extreme", 0.4, 2))}
    return {"miou": scale * 0.6, "mean_f1": scale * 0.7, "pixel_acc": scale * 0.9, "coverage": 1.0,
            "per_class": per_class, "buckets": buckets}


def _fake_run(root: Path, *, gt: bool = True) -> Path:
    run = root / "run"
    rng = np.random.default_rng(0)
    samples = []
    for name, yaw, source in (("cam_front", 5.0, "input"), ("cam_side", 75.0, "input"),
                              ("novel_0000", -45.0, "novel"), ("novel_0001", 80.0, "novel"),
                              ("novel_0002", -70.0, "novel")):
        labels = rng.integers(0, 6, (H, W)).astype(np.uint8)
        write_image(run / "refined" / "images" / f"{name}.png", rng.integers(0, 256, (H, W, 3)).astype(np.uint8))
        write_labels(run / "refined" / "labels" / f"{name}.png", labels, S)
        if source == "input" and name != "cam_side":  # cam_side has no initial labels: 'n/a' tile
            write_labels(run / "initial" / "labels" / f"{name}.png", labels[::-1].copy(), S)
        if gt and name != "novel_0002":  # novel_0002 has no GT: 'n/a' GT and error tiles
            g = labels.copy()
            g[:4] = 1
            g[-2:] = 255
            write_labels(run / "gt" / f"{name}.png", g, S)
        samples.append({"name": name, "image": f"images/{name}.png", "labels": f"labels/{name}.png",
                        "confidence": f"confidence/{name}.png", "yaw": yaw, "pitch": 0.0, "source": source,
                        "viewmat": np.eye(4).tolist(), "K": np.eye(3).tolist(), "width": W, "height": H,
                        "coverage": 0.95})
    (run / "refined" / "manifest.json").write_text(json.dumps({"schema": S.name, "samples": samples}))
    if gt:
        (run / "metrics.json").write_text(json.dumps(
            {"initial": _metrics(0.8), "refined_input": _metrics(1.0), "refined_novel": _metrics(0.9)}))
    (run / "model").mkdir(parents=True)
    it = list(range(0, 200, 10))
    (run / "model" / "history.json").write_text(json.dumps({
        "iteration": it, "loss": [1.0 / (1 + i) for i in it], "rgb": [0.5 / (1 + i) for i in it],
        "seconds": [0.1 * i for i in it], "lr_means": [1e-3] * len(it),
        "gaussians": [1000 + 5 * i for i in it]}))
    (run / "stages.json").write_text(json.dumps({"completed": ["parse", "fit", "sample", "render"],
                                                 "timings": {"parse": 1.5, "fit": 60.25, "sample": 0.1,
                                                             "render": 3.0}}))
    (run / "config.yaml").write_text(yaml.safe_dump({"seed": 3, "view_sampler": {"plugin": "orbit", "params": {}}}))
    return run


def _images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_report_with_gt(tmp_path):
    run = _fake_run(tmp_path)
    out = write_report(run)
    assert out == run / "report.html"
    text = out.read_text()
    srcs = _images(text)
    assert set(srcs) == {
        "report/miou_buckets.png", "report/iou_per_class.png", "report/loss.png", "report/gaussians.png",
        "report/sheet_input_frontal.png", "report/sheet_input_extreme.png", "report/sheet_novel_mid.png",
        "report/sheet_novel_extreme.png"}
    for src in srcs:
        path = run / src
        assert path.is_file(), src
        w, h = Image.open(path).size
        assert 100 <= w <= 3000 and 100 <= h <= 2000, (src, w, h)
    assert sorted(p.name for p in (run / "report").iterdir()) == sorted(Path(s).name for s in srcs)
    # contact sheets: 5 columns for input views, 4 for novel ones; 2 rows in the novel extreme sheet
    inp = np.asarray(Image.open(run / "report/sheet_input_frontal.png"))
    nov = np.asarray(Image.open(run / "report/sheet_novel_extreme.png"))
    assert inp.shape[1] > nov.shape[1]
    assert nov.shape[0] > inp.shape[0]
    # numbers: percentages with their units, the bucket table, timings and plugins
    assert "mIoU, refined (novel views) (%)</td><td>54.0" in text
    assert "mIoU, initial parser (input views) (%)</td><td>48.0" in text
    assert "80.0 (1 views)" in text and "time (s)" in text and "60.2" in text and "64.8" in text
    assert "view_sampler plugin</td><td>orbit" in text
    assert "no ground truth" not in text
    assert "2 of 2 shown" in text
    assert ("mIoU, initial → refined at the input views: frontal 64.0 % → 80.0 %, mid 48.0 % → 60.0 %, "
            "extreme 32.0 % → 40.0 %; refined at the novel views: 54.0 %") in text


def test_report_names_pseudo_gt_as_such(tmp_path):
    """Labels a parser made (capture.json "labels_name", recorded in metrics.json) are called what
    they are in the headline, a note and the contact sheets' column, and in the CLI's summary line."""
    from splatrefine.refine import summary_line

    run = _fake_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    plain_sheet = np.asarray(Image.open((write_report(run), run / "report/sheet_input_frontal.png")[1]))
    metrics["labels_name"] = "pseudo-GT"
    (run / "metrics.json").write_text(json.dumps(metrics))
    text = write_report(run).read_text()
    assert "extreme 32.0 % → 40.0 %; refined at the novel views: 54.0 % (against pseudo-GT)" in text
    assert "The capture&#x27;s labels are pseudo-GT" in text and "agreement with them, not accuracy" in text
    sheet = np.asarray(Image.open(run / "report/sheet_input_frontal.png"))
    changed = np.nonzero((sheet != plain_sheet).any(axis=(1, 2)))[0]  # only the column titles
    assert len(changed) and changed.max() < 40, changed
    assert summary_line(metrics).endswith("novel views mIoU 0.540 (against pseudo-GT)")
    metrics.pop("labels_name")  # runs written before the field: GT, said as before
    assert summary_line(metrics).endswith("novel views mIoU 0.540")


def test_report_without_gt_skips_metrics_once(tmp_path):
    run = _fake_run(tmp_path, gt=False)
    m = json.loads((run / "refined" / "manifest.json").read_text())
    m["samples"][1]["yaw"] = None  # a view without a known pose gets its own sheet
    (run / "refined" / "manifest.json").write_text(json.dumps(m))
    text = write_report(run).read_text()
    assert text.count("no ground truth") == 1
    assert "report/sheet_input_unposed.png" in _images(text) and "no pose known" in text
    srcs = _images(text)
    assert "report/miou_buckets.png" not in srcs and "report/iou_per_class.png" not in srcs
    assert "report/sheet_novel_extreme.png" in srcs
    for src in srcs:
        assert (run / src).is_file()


def test_report_on_an_almost_empty_run(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    text = write_report(run).read_text()
    assert _images(text) == [] and "no contact sheets" in text
    with pytest.raises(SplatrefineError, match="no such run directory"):
        write_report(tmp_path / "missing")


def test_report_refuses_manifest_paths_outside_the_run(tmp_path):
    run = _fake_run(tmp_path)
    m = json.loads((run / "refined" / "manifest.json").read_text())
    m["samples"][0]["image"] = "../../../etc/passwd"
    (run / "refined" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(SplatrefineError, match="points outside"):
        write_report(run)
    m["samples"][0]["image"] = "images/cam_front.png"
    m["samples"][0]["name"] = "../x"
    (run / "refined" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(SplatrefineError, match="not a plain file name"):
        write_report(run)
    assert not (run / "report.html").exists() and not (run / "report").exists()


def test_broken_metrics_leave_no_half_report(tmp_path):
    run = _fake_run(tmp_path)
    write_report(run)
    before = (run / "report.html").read_text()
    (run / "metrics.json").write_text("{not json")
    with pytest.raises(SplatrefineError, match="metrics.json: cannot read as JSON"):
        write_report(run)
    assert (run / "report.html").read_text() == before
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_error_map_colours():
    gt = np.array([[1, 2], [3, 255]], np.uint8)
    pred = np.array([[1, 1], [255, 4]], np.uint8)
    e = error_map(pred, gt)
    assert tuple(e[0, 0]) == ERROR_COLOURS["correct"]
    assert tuple(e[0, 1]) == ERROR_COLOURS["wrong"]
    assert tuple(e[1, 0]) == ERROR_COLOURS["ignored by the aggregator"]
    assert tuple(e[1, 1]) == ERROR_COLOURS["no GT"]


def test_contact_sheet_layout_and_na_tiles():
    a = np.full((20, 40, 3), 200, np.uint8)
    sheet = contact_sheet([[a, None], [a, a]], ["one", "two"], ["r0", "r1"], tile_height=40, gap=4)
    # two rows of 40 px tiles (aspect 2 -> 80 px wide) plus a header
    assert sheet.dtype == np.uint8 and sheet.shape[2] == 3
    assert sheet.shape[0] == max(16, 40 // 6) + 2 * (40 + 4) + 4
    na = text_tile("n/a", 80, 40)
    assert na.shape == (40, 80, 3) and (na != na[0, 0]).any()  # the text is drawn
    with pytest.raises(ValueError, match="one per column label"):
        contact_sheet([[a]], ["one", "two"])
    # a title wider than its tiles widens its column; a second line adds a line to the header
    wide = contact_sheet([[a, a]], ["one", "a title much wider than eighty pixels\nand a second line"], tile_height=40)
    narrow = contact_sheet([[a, a]], ["one", "two"], tile_height=40)
    assert wide.shape[1] > narrow.shape[1] + 100 and wide.shape[0] == narrow.shape[0] + 11 + 3


def test_charts_render_to_images():
    img = bar_chart(["a", "b"], {"x": [10.0, None], "y": [50.0, 90.0]}, title="t", ylabel="v (%)")
    assert img.shape == (400, 800, 3) and img.dtype == np.uint8 and img.std() > 5
    img = line_chart({"loss": ([0, 1, 2], [1.0, 0.5, float("nan")])}, title="t", xlabel="i", ylabel="l",
                     log_y=True)
    assert img.shape == (360, 600, 3)


def _chromium() -> str | None:
    import shutil

    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="needs a headless Chromium")
def test_every_report_image_loads_in_a_browser(tmp_path):
    import subprocess

    run = _fake_run(tmp_path)
    html_text = write_report(run).read_text()
    # the report itself has no script; a probe page beside it loads the report in an iframe
    # and lists each image's decoded size
    probe = run / "probe.html"
    probe.write_text("""<!DOCTYPE html><html><body><iframe id="f" src="report.html" width="1400" height="900"></iframe>
<pre id="out">pending</pre><script>
document.getElementById('f').addEventListener('load', () => {
  const doc = document.getElementById('f').contentDocument;
  const imgs = Array.from(doc.images);
  document.getElementById('out').textContent = imgs.map(
    i => i.getAttribute('src') + ' ' + (i.complete ? i.naturalWidth + 'x' + i.naturalHeight : 'incomplete')).join('\\n');
});
</script></body></html>""")
    out = subprocess.run([_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    dom = out.stdout
    lines = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S).group(1).strip().splitlines()
    assert len(lines) == len(_images(html_text)) == 8
    for line in lines:
        src, size = line.split()
        w, h = (int(v) for v in size.split("x"))
        assert (w, h) == Image.open(run / src).size and w > 0, line


def test_loss_series_keeps_only_loss_terms():
    h = {"iteration": [0, 10], "loss": [1.0, 0.5], "rgb": [0.4, None], "seconds": [0.0, 3.0],
         "gaussians": [100, 120], "lr_means": [1e-3, 1e-4], "note": "text"}
    out = loss_series(h)
    assert set(out) == {"loss", "rgb"}
    assert out["loss"] == ([0.0, 10.0], [1.0, 0.5])
    assert out["rgb"][1][0] == 0.4 and np.isnan(out["rgb"][1][1])


def test_report_explains_itself(tmp_path):
    run = _fake_run(tmp_path)
    (run / "config.yaml").write_text(yaml.safe_dump({
        "seed": 3, "initial_parser": {"plugin": "simulated", "params": {"severity": 1.0}},
        "view_sampler": {"plugin": "orbit", "params": {"yaw_count": 4}},
        "target_parser": {"plugin": "bisenet", "params": {}}}))
    (run / "run.json").write_text(json.dumps({"splatrefine": "0.1.0", "capture": {"path": "/data/caps/id_007"}}))
    text = write_report(run).read_text()
    assert "<td>capture</td><td>/data/caps/id_007</td>" in text
    assert f"<td>run directory</td><td>{run.resolve()}</td>" in text
    assert "<td>initial_parser plugin</td><td>simulated (severity=1.0)</td>" in text
    assert "<td>view_sampler plugin</td><td>orbit (yaw_count=4)</td>" in text
    assert "target_parser" not in text and "bisenet" not in text
    # the metric definitions sit next to the numbers
    assert "background excluded; a class absent from both is left out" in text
    assert "frontal |yaw| &lt; 30°, mid 30° ≤ |yaw| &lt; 60°, extreme |yaw| ≥ 60°" in text
    assert "Classes averaged in 'all' (background excluded): initial parser (input views): 5 of 18 classes " \
           "(absent from prediction and GT: " in text
