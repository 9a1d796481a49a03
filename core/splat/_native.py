"""Build (once per machine and source version) and load the C++/OpenMP kernels in csrc/.

The sources (csrc/*.cpp, csrc/*.h, shipped as package data) are compiled with the system C++
compiler on first use into $SPLATREFINE_CACHE_DIR (default ~/.cache/splatrefine). The file name is
a checksum of the sources, the flags, the compiler version and the CPU (-march=native code is only
valid on a matching CPU), so later processes only dlopen it. The build holds an fcntl lock on a
file next to the library: concurrent processes on a cold cache (a pool of workers starting at
once) wait for one build instead of each running the compiler. The compiler writes a temporary
name that is renamed into place, so no process can see a half-written library; the checksum is
compiled into the library and checked before and after loading it.

The library links libgomp.so.1, which resolves to the OpenMP runtime torch already loaded: torch
ops and the kernels share one thread pool instead of two competing ones.

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

log = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent / "csrc"
FLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-math-errno",
         "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden"]
_HASH_PREFIX = b"splatrefine-kernels:"

_LIB: ctypes.CDLL | None = None
_TRIED = False
_ERROR: str | None = None
_BUILT_HERE = False

# ---- the C side's argument structs, one table each (csrc/common.h, same order) ----
_P, _I64, _F64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double


def _struct(name: str, fields: str) -> type[ctypes.Structure]:
    """A ctypes.Structure from 'name:type ...' (p = pointer, i = int64, d = double; 'i4' = an
    array of 4 int64)."""
    kinds = {"p": _P, "i": _I64, "d": _F64}

    def ctype(t: str):
        return kinds[t[0]] * int(t[1:]) if len(t) > 1 else kinds[t]

    return type(name, (ctypes.Structure,),
                {"_fields_": [(f.split(":")[0], ctype(f.split(":")[1])) for f in fields.split()]})


RasterArgs = _struct("RasterArgs", """
    geom:p rect:p feats:p bgs:p tile_start:p gid:p slot_of:p
    out:p out_alpha:p out_T:p out_last:p used:p
    g_out:p g_alpha:p gbuf:p
    Dp:i has_bg:i width:i height:i tiles_x:i tiles_y:i n_tiles:i D:i go_s:i4 ga_s:i3""")

ProjectArgs = _struct("ProjectArgs", """
    means:p quats:p scales:p opac:p viewmats:p Ks:p
    radii:p means2d:p depths:p conics:p
    g_means2d:p g_depths:p g_conics:p g_means:p g_quats:p g_scales:p
    C:i N:i width:i height:i eps2d:d near_plane:d far_plane:d""")

BinArgs = _struct("BinArgs", """
    means2d:p conics:p opac:p radii:p order:p geom:p rect:p trect:p tile_start:p slot_start:p
    gid:p slot:p C:i N:i V:i width:i height:i tiles_x:i tiles_y:i""")

# exported functions: name ({s} = f32 | f64) -> (restype, argtypes), one letter per type:
# p pointer, i int64, r / j / b a RasterArgs / ProjectArgs / BinArgs (passed by reference)
_SIGNATURES = {
    "sr_forward_{s}": (None, "r"),
    "sr_backward_{s}": (None, "r"),
    "sr_project_fwd_{s}": (None, "j"),
    "sr_project_bwd_{s}": (None, "j"),
    "sr_reduce_{s}": (None, "pippip"),  # order, V, slot_start, gbuf, K, grads
    "sr_depth_order_{s}": ("i", "ppiip"),  # depths, radii, C, N, order -> V
    "sr_bin_count_{s}": ("i", "b"),  # -> M
    "sr_bin_fill_{s}": (None, "b"),
}
_ARG = {"p": _P, "i": _I64, "r": ctypes.POINTER(RasterArgs), "j": ctypes.POINTER(ProjectArgs),
        "b": ctypes.POINTER(BinArgs)}


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


def sources(source_dir: Path | None = None) -> list[Path]:
    """The kernel sources (every .cpp and .h of csrc/), sorted by name."""
    d = source_dir or SOURCE_DIR
    return sorted([*d.glob("*.cpp"), *d.glob("*.h")], key=lambda p: p.name)


def cache_key(cxx: str, source_dir: Path | None = None, flags: list[str] | None = None) -> str:
    """sha256 (hex) of the sources (names and bytes), the flags, the compiler and the CPU."""
    h = hashlib.sha256()
    for p in sources(source_dir):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    for part in (" ".join(flags or FLAGS), version, _cpu_model()):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _holds_key(path: Path, key: str) -> bool:
    """Whether `path` is a library built from the sources of `key` (its embedded checksum)."""
    try:
        return _HASH_PREFIX + key.encode() in path.read_bytes()
    except OSError:
        return False


def _build(cxx: str, source_dir: Path | None = None) -> tuple[Path, str]:
    """(path, cache key) of the cached library for the sources, compiled first if needed (under
    a lock)."""
    global _BUILT_HERE
    key = cache_key(cxx, source_dir)
    out = cache_dir() / f"splat_kernels_{key[:16]}.so"
    if _holds_key(out, key):
        return out, key
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "a") as lock:
        _lock(lock)  # released when the file closes (or the process dies)
        if _holds_key(out, key):  # another process built it while this one waited
            return out, key
        srcs = [str(p) for p in sources(source_dir) if p.suffix == ".cpp"]
        fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
        os.close(fd)
        try:
            proc = subprocess.run([cxx, *FLAGS, f'-DSR_SOURCE_HASH="{key}"', *srcs, "-o", tmp],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{cxx} failed: {proc.stderr.strip()[:2000]}")
            os.replace(tmp, out)  # atomic: a reader sees no file or the whole file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    _BUILT_HERE = True
    log.info("built splat kernels %s", out)
    return out, key


def _lock(fh) -> None:
    """Exclusive fcntl lock on an open file; where locking is unavailable (no fcntl, a file system
    without locks) builds go ahead unlocked: the atomic rename still keeps readers safe, only the
    work may be done twice."""
    try:
        import fcntl

        fcntl.flock(fh, fcntl.LOCK_EX)
    except (ImportError, OSError) as exc:
        log.info("splat: building without a lock (%s)", exc)


def _declare(lib: ctypes.CDLL, key: str) -> None:
    lib.sr_source_hash.restype = ctypes.c_char_p
    got = lib.sr_source_hash()
    if got != _HASH_PREFIX + key.encode():
        raise RuntimeError(f"kernel library checksum {got!r} does not match the sources ({key})")
    sizes = (ctypes.c_int64 * 3)()
    lib.sr_struct_sizes.argtypes = [ctypes.c_void_p]
    lib.sr_struct_sizes(sizes)
    if tuple(sizes) != tuple(ctypes.sizeof(s) for s in (RasterArgs, ProjectArgs, BinArgs)):
        raise RuntimeError("kernel argument structs differ between csrc/common.h and _native.py")
    for pattern, (res, args) in _SIGNATURES.items():
        for suf in ("f32", "f64"):
            fn = getattr(lib, pattern.format(s=suf))
            fn.argtypes = [_ARG[a] for a in args]
            fn.restype = _ARG[res] if res else None


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
        path, key = _build(cxx)
        lib = ctypes.CDLL(str(path))
        _declare(lib, key)
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


def built_here() -> bool:
    """Whether this process ran the compiler (False when it loaded a cached library)."""
    return _BUILT_HERE
