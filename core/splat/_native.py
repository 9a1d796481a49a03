"""Build (once per machine and source version) and load the C++/OpenMP tile kernels.

The shared library is compiled with the system C++ compiler on first use and cached under
$SPLATREFINE_CACHE_DIR (default ~/.cache/splatrefine), keyed by a hash of the source, the flags,
the compiler and the CPU model, so later processes only dlopen it. It links libgomp.so.1, which
resolves to the OpenMP runtime torch already loaded: torch ops and the kernels share one thread
pool instead of two competing ones.

SPLATREFINE_SPLAT_KERNELS=numba skips the native kernels (then the numba ones in _kernels.py run);
"native" makes a failed build an error instead of a logged fallback.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from ._native_src import SOURCE

log = logging.getLogger(__name__)

FLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-math-errno",
         "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden"]

_LIB: ctypes.CDLL | None = None
_TRIED = False
_ERROR: str | None = None


def _cpu_model() -> str:
    """CPU model and feature flags (-march=native code is only valid on a matching CPU)."""
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags") and key not in found:
                    found[key] = line
                if len(found) == 2:
                    break
    except OSError:
        pass
    return "".join(found.values()) or platform.machine() + platform.processor()


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def cache_dir() -> Path:
    base = os.environ.get("SPLATREFINE_CACHE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "splatrefine"


def _build(cxx: str) -> Path:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([SOURCE, " ".join(FLAGS), version, _cpu_model()]).encode())
    out = cache_dir() / f"splat_kernels_{key.hexdigest()[:16]}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src = Path(tmp) / "kernels.cpp"
        src.write_text(SOURCE)
        so = Path(tmp) / "kernels.so"
        proc = subprocess.run([cxx, *FLAGS, str(src), "-o", str(so)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{cxx} failed: {proc.stderr.strip()[:2000]}")
        os.replace(so, out)  # atomic: concurrent builders both end with a whole file
    log.info("built splat kernels %s", out)
    return out


def _declare(lib: ctypes.CDLL) -> None:
    P, I, L = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    for suf in ("f32", "f64"):
        getattr(lib, f"sr_forward_{suf}").argtypes = [P, P, P, L, P, I, P, P, I, I, I, I, L, L,
                                                       P, P, P, P, P]
        getattr(lib, f"sr_backward_{suf}").argtypes = [P, P, P, L, P, I, P, P, P, I, I, I, I, L,
                                                        L, P, P, P, P, P, P]
        getattr(lib, f"sr_reduce_{suf}").argtypes = [P, L, P, P, L, P]
        R = ctypes.c_float if suf == "f32" else ctypes.c_double
        getattr(lib, f"sr_project_fwd_{suf}").argtypes = [P, P, P, P, P, P, L, L, I, I, R, R, R,
                                                           P, P, P, P]
        getattr(lib, f"sr_project_bwd_{suf}").argtypes = [P, P, P, P, P, L, L, I, I, R, R, R, P,
                                                           P, P, P, P, P]
        getattr(lib, f"sr_depth_order_{suf}").argtypes = [P, P, L, L, P]
        getattr(lib, f"sr_depth_order_{suf}").restype = L
        for name in ("forward", "backward", "reduce", "project_fwd", "project_bwd"):
            getattr(lib, f"sr_{name}_{suf}").restype = None


def load() -> ctypes.CDLL | None:
    """The native kernel library, or None when it cannot be built (then numba kernels run)."""
    global _LIB, _TRIED, _ERROR
    if _TRIED:
        return _LIB
    _TRIED = True
    mode = os.environ.get("SPLATREFINE_SPLAT_KERNELS", "auto")
    if mode == "numba":
        return None
    try:
        cxx = _compiler()
        if cxx is None:
            raise RuntimeError("no C++ compiler found (set CXX)")
        lib = ctypes.CDLL(str(_build(cxx)))
        _declare(lib)
        _LIB = lib
    except Exception as exc:  # any build/load problem: fall back to numba
        _ERROR = str(exc)
        if mode == "native":
            raise
        log.warning("splat: native kernels unavailable (%s); using numba kernels", exc)
    return _LIB


def error() -> str | None:
    """Why the native kernels are not in use (None when they are, or were not tried)."""
    return _ERROR
