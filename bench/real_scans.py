"""Real-scan benchmark: refinement with the real MediaPipe parser on rendered textured head scans,
scored against pseudo-GT labels (docs/real_scans.md).

Per scan: render it on the rig (render-scan), build MediaPipe pseudo-GT from the near-frontal views,
run `refine` with the config under test (default: project defaults + initial_parser=mediapipe +
view_sampler=input), and print initial vs refined mIoU per pose bucket and IoU per class at the
input views, and the time per fit. The default scan is `james` from the menpo3d 0.8.6 sdist
(BSD-3), downloaded once from PyPI into bench/.cache/ (sha256 checked).

    python bench/real_scans.py                                       # james, defaults
    python bench/real_scans.py --set representation.iterations=1500 --tag it1500
    python bench/real_scans.py -c my.yaml --plugin label_aggregator=argmax --tag mine
    python bench/real_scans.py --scan other.obj --scan head2.obj:head2.png   # more scans (OBJ[:TEXTURE])

Writes OUT/captures/<scan>_<rig>_<resolution>/ (the capture with pseudo-GT, reused by later runs;
--rerender redoes it), OUT/TAG/<scan>/run/ and OUT/TAG/real_scans.{json,md}; the contact sheets
are in each run's report/ folder (report.html links them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tarfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
SIMPLE_INDEX = "https://pypi.org/simple/menpo3d/"
SDIST = "menpo3d-0.8.6.tar.gz"
SDIST_SHA256 = "96ad2c8b55b74e026cdc190cf6b1564ad7c8e6c53976cf897d6a1bf4940f084a"
# members of the sdist that are kept (nothing else is extracted)
JAMES_FILES = {f"menpo3d-0.8.6/menpo3d/data/{n}": n for n in ("james.obj", "james.jpg", "james.obj.mtl", "james.ljson")}
JAMES_FILES["menpo3d-0.8.6/LICENSE.txt"] = "LICENSE.txt"
BUCKETS = ("frontal", "mid", "extreme")
FACE_CLASSES = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sdist_url() -> str:
    """The sdist's URL from PyPI's simple index (PEP 503 html)."""
    with urllib.request.urlopen(SIMPLE_INDEX, timeout=60) as r:
        page = r.read().decode("utf-8", "replace")
    for href in re.findall(r'href="([^"]+)"', page):
        if href.split("#")[0].endswith("/" + SDIST):
            return href.split("#")[0]
    raise SystemExit(f"{SIMPLE_INDEX}: no link to {SDIST}")


def fetch_james(cache: Path, sdist: Path | None = None) -> Path:
    """cache/james/james.obj (+ .jpg, .obj.mtl, .ljson, LICENSE.txt), from a local sdist or PyPI."""
    folder = cache / "james"
    if all((folder / n).is_file() for n in JAMES_FILES.values()):
        return folder / "james.obj"
    cache.mkdir(parents=True, exist_ok=True)
    if sdist is None:
        sdist = cache / SDIST
        if not sdist.is_file() or sha256(sdist) != SDIST_SHA256:
            url = sdist_url()
            print(f"downloading {url}", file=sys.stderr)
            tmp = sdist.with_suffix(".part")
            with urllib.request.urlopen(url, timeout=300) as r, open(tmp, "wb") as f:
                while block := r.read(1 << 20):
                    f.write(block)
            os.replace(tmp, sdist)
    got = sha256(sdist)
    if got != SDIST_SHA256:
        raise SystemExit(f"{sdist}: sha256 {got} is not the expected {SDIST_SHA256}; delete it and retry")
    tmp_dir = cache / ".james.tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            name = JAMES_FILES.get(member.name)
            if name is None or not member.isfile():
                continue  # only the listed regular files, written under fixed names: nothing can escape
            src = tar.extractfile(member)
            (tmp_dir / name).write_bytes(src.read())
    missing = [n for n in JAMES_FILES.values() if not (tmp_dir / n).is_file()]
    if missing:
        raise SystemExit(f"{sdist}: lacks {missing}")
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp_dir, folder)
    return folder / "james.obj"


def current_capture(cap_dir: Path) -> bool:
    """Whether cap_dir holds a capture this version would make: its capture.json says its labels
    are pseudo-GT (older ones did not, and their reports called them GT), and the strict labels
    are beside it."""
    from splatrefine.errors import CaptureError
    from splatrefine.io.capture_folder import read_capture_json_extra
    from splatrefine.plugins.scan.pseudo_gt import PSEUDO_GT

    if not (cap_dir / "capture.json").is_file() or not strict_path(cap_dir).is_file():
        return False
    try:
        return read_capture_json_extra(cap_dir).get("labels_name") == PSEUDO_GT
    except CaptureError:
        return False


def make_capture(obj: Path, texture: Path | None, out: Path, rig: str, resolution: int) -> dict:
    """Render the scan and its MediaPipe pseudo-GT into out (a capture folder); -> timings + info."""
    from splatrefine.plugins.scan.capture import (SHADING, SUPERSAMPLE, render_scan_capture, scan_block,
                                                  write_scan_capture)
    from splatrefine.plugins.scan.frame import find_frame
    from splatrefine.plugins.scan.mesh import read_mesh
    from splatrefine.plugins.scan.pseudo_gt import PSEUDO_GT, mediapipe_labeller, pseudo_gt_labels

    t0 = time.perf_counter()
    mesh = read_mesh(obj, texture)
    frame = find_frame(mesh)
    t1 = time.perf_counter()
    capture, render = render_scan_capture(mesh, frame, rig, resolution)
    t2 = time.perf_counter()
    labels, strict, info = pseudo_gt_labels(capture, render.face_ids, mesh.faces, mediapipe_labeller())
    capture = replace(capture, views=[replace(v, labels=labels[i]) for i, v in enumerate(capture.views)],
                      labels_name=PSEUDO_GT)
    block = scan_block(mesh, frame, rig, resolution, SUPERSAMPLE, SHADING)
    block["pseudo_gt"] = info
    write_scan_capture(capture, render.depth, render.face_ids, mesh.faces, out, block)
    np.savez_compressed(strict_path(out), labels=strict, names=np.array([v.name for v in capture.views]))
    return {"frame_s": t1 - t0, "render_s": t2 - t1, "pseudo_gt_s": time.perf_counter() - t2,
            "frame": frame.to_json(), "pseudo_gt": info}


def strict_path(cap_dir: Path) -> Path:
    """The strict pseudo-GT (hair, ears, neck = 0 instead of 255) beside the capture folder."""
    return cap_dir.with_name(cap_dir.name + "_strict.npz")


def strict_metrics(cap_dir: Path, run_dir: Path) -> dict:
    """initial and refined input-view labels of the run scored against the strict pseudo-GT."""
    from splatrefine.io.capture_folder import read_capture_folder
    from splatrefine.io.labels import read_labels
    from splatrefine.metrics import evaluate_labels

    cap = read_capture_folder(cap_dir)
    with np.load(strict_path(cap_dir)) as z:
        by_name = dict(zip([str(n) for n in z["names"]], z["labels"]))
    names = [v.name for v in cap.views]
    gt = np.stack([by_name[n] for n in names])
    yaw = cap.cameras().yaw
    samples = {s["name"]: s for s in json.loads((run_dir / "refined" / "manifest.json").read_text())["samples"]}
    initial = np.stack([read_labels(run_dir / "initial" / "labels" / f"{n}.png", cap.schema) for n in names])
    refined = np.stack([read_labels(run_dir / "refined" / samples[n]["labels"], cap.schema) for n in names])
    return {"initial": evaluate_labels(initial, gt, yaw, cap.schema),
            "refined_input": evaluate_labels(refined, gt, yaw, cap.schema)}


def run_one(capture: Path, run_dir: Path, args) -> dict:
    """refine the capture with the config under test; -> metrics.json + stage timings."""
    from splatrefine.refine import run_refine

    plugins = ["initial_parser=mediapipe", "view_sampler=input", *args.plugin]
    t0 = time.perf_counter()
    if args.reuse and (run_dir / "metrics.json").is_file():
        summary, wall = {}, float("nan")
    else:
        summary = run_refine(capture=capture, demo=False, config_path=args.config, plugin_args=plugins,
                             set_args=list(args.set), output=run_dir, resume=False, overwrite=True,
                             device=args.device, quiet=args.quiet, seed=args.seed)
        wall = time.perf_counter() - t0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stages = json.loads((run_dir / "stages.json").read_text()) if (run_dir / "stages.json").is_file() else {}
    return {"metrics": metrics, "strict": strict_metrics(capture, run_dir), "timings": stages.get("timings", {}),
            "wall_s": wall,
            "report": str(summary.get("report", run_dir / "report.html")),
            "sheets": sorted(str(p) for p in (run_dir / "report").glob("sheet_input_*.png"))}


def bucket_rows(m: dict, suffix: str = "") -> list[str]:
    ini, ref = m["initial"], m["refined_input"]
    lines = []
    for label, M in (("initial (mediapipe)", ini), ("refined", ref)):
        cells = [f"{M['buckets'][b]['miou']:.3f}" if b in M["buckets"] else "-" for b in BUCKETS]
        lines.append(f"| {label}{suffix} | " + " | ".join(cells) + f" | {M['miou']:.3f} |")
    cells = [f"{ref['buckets'][b]['miou'] - ini['buckets'][b]['miou']:+.3f}" if b in ini["buckets"] else "-"
             for b in BUCKETS]
    lines.append(f"| refined - initial{suffix} | " + " | ".join(cells) + f" | {ref['miou'] - ini['miou']:+.3f} |")
    return lines


def table(name: str, res: dict) -> str:
    m = res["metrics"]
    ini, ref = m["initial"], m["refined_input"]
    lines = [f"## {name}", "", "mIoU over the face classes at the input views, against pseudo-GT "
             "(strict: hair, ears, neck count as not-face; docs/real_scans.md)", "",
             "| | " + " | ".join(BUCKETS) + " | all |", "|---|" + "---|" * (len(BUCKETS) + 1)]
    lines += bucket_rows(m) + bucket_rows(res["strict"], ", strict")
    lines += ["", "| class | initial IoU | refined IoU |", "|---|---|---|"]
    for c in FACE_CLASSES:
        a, b = ini["per_class"].get(c), ref["per_class"].get(c)
        if a or b:
            lines.append(f"| {c} | {a['iou'] if a else float('nan'):.3f} | {b['iou'] if b else float('nan'):.3f} |")
    t = res["timings"]
    lines += ["", f"fit {t.get('fit', float('nan')):.1f} s, refine total {res['wall_s']:.1f} s "
                  f"(stages: " + ", ".join(f"{k} {v:.1f}" for k, v in t.items() if isinstance(v, (int, float))) + ")",
              f"report: {res['report']}", "contact sheets: " + ", ".join(res["sheets"]), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scan", action="append", default=[], metavar="OBJ[:TEXTURE]",
                    help="scans to use (default: james from the menpo3d sdist)")
    ap.add_argument("-c", "--config", type=Path, help="YAML config for refine")
    ap.add_argument("--plugin", action="append", default=[], metavar="ROLE=NAME", help="passed to refine")
    ap.add_argument("--set", action="append", default=[], metavar="ROLE.KEY=VALUE", help="passed to refine")
    ap.add_argument("--tag", default="default", help="name of this configuration (output sub-folder)")
    ap.add_argument("--out", type=Path, default=Path("runs/real_scans"), help="output folder")
    ap.add_argument("--cache", type=Path, default=HERE / ".cache", help="download cache")
    ap.add_argument("--sdist", type=Path, help=f"a local {SDIST} instead of downloading it")
    ap.add_argument("--rig", default="facescape-like")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--rerender", action="store_true", help="render the captures again even if present")
    ap.add_argument("--reuse", action="store_true", help="score an existing finished run of this tag again, no refit")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    scans = []
    for spec in args.scan or []:
        obj, _, tex = spec.partition(":")
        scans.append((Path(obj), Path(tex) if tex else None))
    if not scans:
        scans = [(fetch_james(args.cache, args.sdist), None)]
    out = args.out / args.tag
    results: dict = {"config": {"config": str(args.config) if args.config else None, "plugin": args.plugin,
                                "set": args.set, "rig": args.rig, "resolution": args.resolution}, "scans": {}}
    report = []
    for obj, tex in scans:
        name = obj.stem
        cap_dir = out.parent / "captures" / f"{name}_{args.rig}_{args.resolution}"
        made = None
        if args.rerender or not current_capture(cap_dir):
            made = make_capture(obj, tex, cap_dir, args.rig, args.resolution)
        res = run_one(cap_dir, out / name / "run", args)
        res["capture"] = str(cap_dir)
        if made:
            res["capture_made"] = made
        results["scans"][name] = res
        text = table(name, res)
        report.append(text)
        print(text, flush=True)
    if len(scans) > 1:
        for b in BUCKETS:
            vals = [(r["metrics"]["initial"]["buckets"][b]["miou"], r["metrics"]["refined_input"]["buckets"][b]["miou"])
                    for r in results["scans"].values() if b in r["metrics"]["initial"]["buckets"]]
            if vals:
                a = np.mean(vals, axis=0)
                print(f"mean over scans, {b}: initial {a[0]:.3f} refined {a[1]:.3f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "real_scans.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "real_scans.md").write_text("\n".join(report) + "\n")
    print(f"wrote {out / 'real_scans.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
