"""Native kernels: the engine's memory-bound passes (the L1/L2 penalty's value and gradient,
Adam's step), fused in C, built on first use.

The C sources beside this module are compiled with the machine's C compiler (``cc``, or
``$CC``) into a shared library kept under the user's cache (``$REGLAB_CACHE_DIR``, else
``$XDG_CACHE_HOME/reglab``, else ``~/.cache/reglab``), keyed by the source, the flags and
the CPU (the build targets the machine it runs on), and loaded with :mod:`ctypes`. Where
no compiler is found, the build fails or ``REGLAB_NATIVE=0`` is set, :func:`library`
returns None and every caller keeps its torch path: the same math, a few passes more.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

__all__ = ["library", "enabled", "cache_dir"]

_SOURCES = ("penalty_kernels.c", "adam_kernels.c")
#: no -ffast-math (NaN, infinity and summation order as written); no contraction into
#: fused multiply-adds (a vectorized loop and its scalar tail round alike)
_FLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared", "-lm")
_MACHINE_FLAGS = ("-march=native",)  # dropped when the compiler does not take it

_I64, _F32P, _F32, _INT = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "reglab_weight_penalty": (_F32P, _I64, _I64, _F32P, _F32, _INT, _F32P, _F32, _INT, _F32P),
    "reglab_add_penalty_gradient": (_F32P, _F32P, _I64, _I64, _F32P, _F32, _INT, _F32P, _F32,
                                    _INT),
    "reglab_adam_rows": (_F32P, _F32P, _F32P, _F32P, _I64, _I64, _F32P, _F32P),
}


def enabled() -> bool:
    """False when ``REGLAB_NATIVE`` is ``0`` (or ``false``/``no``/``off``)."""
    return os.environ.get("REGLAB_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    root = os.environ.get("REGLAB_CACHE_DIR")
    if root:
        return Path(root) / "native"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "reglab" / "native"


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (disabled, no compiler, or the build failed: warned once)."""
    if not enabled():
        return None
    return _load()


@functools.cache
def _load() -> ctypes.CDLL | None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    here = Path(__file__).parent
    sources = [here / name for name in _SOURCES]
    try:
        path = _build(compiler, sources)
        lib = ctypes.CDLL(str(path))
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, None
    except (OSError, subprocess.SubprocessError, AttributeError) as exc:
        warnings.warn(f"reglab.native: the C kernels could not be built or loaded with "
                      f"{compiler!r} ({exc}); using the torch path (the same math, slower). "
                      f"Set REGLAB_NATIVE=0 to skip the attempt.", RuntimeWarning, stacklevel=3)
        return None
    return lib


def _cpu_signature() -> str:
    """What the build's ``-march=native`` depends on: the CPU's model and flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def _build(compiler: str, sources: list[Path]) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    digest = hashlib.sha256()
    for part in (version, _cpu_signature(), platform.machine(), *_FLAGS, *_MACHINE_FLAGS,
                 *(s.read_bytes().decode() for s in sources)):
        digest.update(part.encode())
    name = f"kernels-{digest.hexdigest()[:20]}.so"
    target = cache_dir() / name
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home (a service account, a container): a private temp dir
        user = getattr(os, "getuid", lambda: 0)()
        target = Path(tempfile.gettempdir()) / f"reglab-native-{user}" / name
        if target.exists():
            return target
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    error = ""
    for machine_flags in (_MACHINE_FLAGS, ()):
        # built beside the target under a unique name, then renamed: concurrent builds
        # (several processes, Dask workers on a shared home) never see half a file
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        result = subprocess.run([compiler, *_FLAGS, *machine_flags, "-o", tmp,
                                 *map(str, sources)], capture_output=True, text=True,
                                timeout=300)
        if result.returncode == 0:
            os.replace(tmp, target)
            return target
        os.unlink(tmp)
        lines = result.stderr.strip().splitlines()
        error = lines[-1] if lines else f"exit status {result.returncode}"
    raise OSError(f"compiling {', '.join(s.name for s in sources)} failed: {error}")
