"""The package installs as one import package `splatrefine`; discovery stays cheap."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = {"core": "splatrefine", "registry": "splatrefine.registry", "plugins": "splatrefine.plugins",
             "examples/configs": "splatrefine.configs"}


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("name", ["core", "plugins", "registry"])
def test_code_folders_are_not_top_level_packages(name, tmp_path):
    result = _run(f"import {name}", tmp_path)
    assert result.returncode != 0 and "No module named" in result.stderr


def test_splatrefine_imports_from_anywhere(tmp_path):
    result = _run("import splatrefine.registry, splatrefine.plugins; print(splatrefine.__version__)", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.1.0"


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, pkg in CODE_DIRS.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    assert found - listed == set(), f"add these to [tool.setuptools] packages: {sorted(found - listed)}"


@pytest.mark.parametrize("argv", [["--help"], ["plugins", "list"], ["plugins", "list", "--json"]])
def test_help_and_listing_do_not_import_heavy_libraries(argv, tmp_path):
    code = (
        "import sys\n"
        "from splatrefine.cli import main\n"
        f"try:\n    main({argv!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'numba', 'gsplat', 'cv2', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
