"""bench/real_scans.py: the sdist is checked and only the listed files come out of it (no network)."""

import io
import tarfile
from pathlib import Path

import pytest
from bench_scripts import load_bench


def bench_module():
    return load_bench("real_scans")


def make_sdist(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_fetch_extracts_only_the_listed_files(tmp_path, monkeypatch):
    bench = bench_module()
    members = {name: f"content of {short}".encode() for name, short in bench.JAMES_FILES.items()}
    members["menpo3d-0.8.6/../../evil.txt"] = b"escape"
    members["menpo3d-0.8.6/menpo3d/data/bunny.obj"] = b"not wanted"
    sdist = tmp_path / "menpo3d-0.8.6.tar.gz"
    make_sdist(sdist, members)
    cache = tmp_path / "cache"
    with pytest.raises(SystemExit, match="is not the expected"):
        bench.fetch_james(cache, sdist)
    monkeypatch.setattr(bench, "SDIST_SHA256", bench.sha256(sdist))
    obj = bench.fetch_james(cache, sdist)
    assert obj == cache / "james" / "james.obj"
    assert sorted(p.name for p in (cache / "james").iterdir()) == sorted(bench.JAMES_FILES.values())
    assert (cache / "james" / "james.jpg").read_bytes() == b"content of james.jpg"
    assert not (tmp_path / "evil.txt").exists() and not list(tmp_path.rglob("bunny.obj"))
    # a second call uses the cache (even without the sdist)
    assert bench.fetch_james(cache, tmp_path / "gone.tar.gz") == obj


def test_a_cached_capture_is_reused_only_when_it_says_pseudo_gt(tmp_path):
    """Captures cached by an older bench lack capture.json "labels_name": their reports would call
    the pseudo-GT "GT", so the bench renders them again."""
    import json

    mod = bench_module()
    cap = tmp_path / "james_facescape-like_256"
    assert not mod.current_capture(cap)
    cap.mkdir()
    (cap / "capture.json").write_text(json.dumps({"format": "splatrefine-capture", "views": []}))
    mod.strict_path(cap).write_bytes(b"")
    assert not mod.current_capture(cap)
    (cap / "capture.json").write_text(json.dumps({"format": "splatrefine-capture", "labels_name": "pseudo-GT"}))
    assert mod.current_capture(cap)
    mod.strict_path(cap).unlink()
    assert not mod.current_capture(cap)
