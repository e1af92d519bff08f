"""Native kernels: the engine's memory-bound passes (the L1/L2 penalty's value and gradient,
Adam's step, dropout forward and backward, the mixed-precision first layer's kernels laid
side by side, the fused softmax + crossentropy's gradient), fused in C, built on first use;
and the float32 first layer's per-member products, a seed group's in one call to the BLAS
sgemm torch itself calls (``member_products.py``).

The C sources beside this module are compiled with the machine's C compiler (``cc``, or
``$CC``) into a shared library kept under the user's cache (``$REGLAB_CACHE_DIR``, else
``$XDG_CACHE_HOME/reglab``, else ``~/.cache/reglab``; a directory owned by this user and
writable by no one else, or else a fresh private temporary one), keyed by the source, the
flags, the compiler and the CPU (the build targets the machine it runs on), and loaded with
:mod:`ctypes`. Where
no compiler is found, the build fails or ``REGLAB_NATIVE=0`` is set, :func:`library`
returns None and every caller keeps its torch path: the same math, a few passes more.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

__all__ = ["library", "enabled", "cache_dir", "float32_rows"]

_SOURCES = ("penalty_kernels.c", "adam_kernels.c", "dropout_kernels.c",
            "side_by_side_kernels.c", "crossentropy_kernels.c", "member_products_kernels.c")
_HEADERS = ("sign.h", "bfloat16.h", "sgemm.h")  # part of the build's key too
#: no -ffast-math (NaN, infinity and summation order as written); no contraction into
#: fused multiply-adds (a vectorized loop and its scalar tail round alike)
_FLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared")
_MACHINE_FLAGS = ("-march=native",)  # dropped when the compiler does not take it

_I64, _F32P, _F32, _INT = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "reglab_weight_penalty": (_F32P, _I64, _I64, _F32P, _F32, _INT, _F32P, _F32, _INT, _F32P),
    "reglab_add_penalty_gradient": (_F32P, _F32P, _I64, _I64, _F32P, _F32, _INT, _F32P, _F32,
                                    _INT),
    "reglab_adam_step": (_I64, _F32P, _F32P, _F32P, _F32P, _F32P, _I64, _F32P, _F32P, _F32P),
    **{name: (_F32P, _F32P, _F32P, _I64, _F32P, _I64, _I64, _F32P) for name in (
        "reglab_dropout_f32", "reglab_dropout_backward_f32", "reglab_dropout_bf16",
        "reglab_dropout_backward_bf16")},
    **{name: (_F32P, _I64, _I64, _I64, _I64, _F32P) for name in (
        "reglab_lay_side_by_side_bf16", "reglab_take_side_by_side_bf16",
        "reglab_lay_side_by_side_u16", "reglab_take_side_by_side_u16")},
    "reglab_members_addmm_f32": (_F32P, _I64, _INT, _INT, _INT, _F32P, _F32P, _I64, _F32P,
                                 _I64, _INT, _F32P),
    "reglab_members_kernel_grad_f32": (_F32P, _I64, _INT, _INT, _INT, _F32P, _F32P, _F32P),
    "reglab_adam_step_member_products_f32": (_F32P, _I64, _INT, _INT, _INT, _F32P, _F32P,
                                             _F32P, _F32P, _F32P, _F32P, _F32P, _F32P, _F32P),
    "reglab_crossentropy_backward_f32": (_F32P, _F32P, _I64, _I64, _F32P, _F32P, _F32P, _I64,
                                         _I64, _I64, _I64, _I64, _F32P),
}
#: the kernels that return a status (0: done; else nothing written), the others none
_RETURNS_STATUS = ("reglab_dropout_f32", "reglab_dropout_backward_f32", "reglab_dropout_bf16",
                   "reglab_dropout_backward_bf16", "reglab_crossentropy_backward_f32")


def enabled() -> bool:
    """False when ``REGLAB_NATIVE`` is ``0`` (or ``false``/``no``/``off``)."""
    return os.environ.get("REGLAB_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def float32_rows(t: torch.Tensor, shape: torch.Size | None = None) -> bool:
    """Whether the kernels can read ``t`` as rows of float32 in memory order: a CPU, strided,
    contiguous float32 tensor with a leading (member) axis and elements (of ``shape``, if
    given). One place for what every kernel asks of its tensors."""
    return (t.device.type == "cpu" and t.dtype == torch.float32
            and t.layout == torch.strided and t.dim() >= 1 and t.shape[0] > 0
            and t.numel() > 0 and (shape is None or t.shape == shape) and t.is_contiguous())


def cache_dir() -> Path:
    root = os.environ.get("REGLAB_CACHE_DIR")
    if root:
        return Path(root) / "native"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "reglab" / "native"


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None: disabled, no C compiler found (silently), or the build or
    load failed (a RuntimeWarning, once per process)."""
    if not enabled():
        return None
    return _load()


def _compiler() -> list[str] | None:
    """``$CC`` split into words as make does (``ccache gcc``), else ``cc`` or ``gcc``."""
    if os.environ.get("CC", "").strip():
        return shlex.split(os.environ["CC"])
    found = shutil.which("cc") or shutil.which("gcc")
    return [found] if found else None


@functools.cache
def _load() -> ctypes.CDLL | None:
    compiler = _compiler()
    if compiler is None:
        return None
    here = Path(__file__).parent
    sources = [here / name for name in _SOURCES]
    try:
        path = _build(compiler, sources)
        lib = ctypes.CDLL(str(path))
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = _INT if name in _RETURNS_STATUS else None
    except (OSError, subprocess.SubprocessError, AttributeError, ValueError) as exc:
        warnings.warn(f"reglab.native: the C kernels could not be built or loaded with "
                      f"{' '.join(compiler)!r} ({exc}); using the torch path (the same math, "
                      f"slower, rounded otherwise in a few places: see README). Set "
                      f"REGLAB_NATIVE=0 to skip the attempt.", RuntimeWarning, stacklevel=3)
        return None
    return lib


#: /proc/cpuinfo keys that say which instructions ``-march=native`` may use (x86 and ARM)
_CPU_KEYS = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags", "Features",
             "CPU implementer", "CPU architecture", "CPU variant", "CPU part", "CPU revision",
             "isa", "uarch", "cpu model")


def _cpu_signature() -> str:
    """What the build's ``-march=native`` depends on: the CPU's identity and features."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    keep = {line.strip() for line in text.splitlines()
            if line.split(":", 1)[0].strip() in _CPU_KEYS}
    return "\n".join([platform.machine(), platform.processor(), *sorted(keep)])


def _private(directory: Path) -> bool:
    """Whether ``directory`` is ours alone: owned by this user, not writable by others (a
    library found in a directory anyone could write to might not be the one we built)."""
    if not hasattr(os, "getuid"):
        return True
    info = directory.stat()
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


class BuildError(OSError):
    """The compiler failed (not the cache directory)."""


def _build(compiler: list[str], sources: list[Path]) -> Path:
    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    digest = hashlib.sha256()
    for part in (version, _cpu_signature(), *compiler, *_FLAGS, *_MACHINE_FLAGS,
                 *(s.read_bytes().decode() for s in sources),
                 *((Path(__file__).parent / h).read_text() for h in _HEADERS)):
        digest.update(part.encode())
    name = f"kernels-{digest.hexdigest()[:20]}.so"
    cache = cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if not _private(cache):
            raise PermissionError(f"{cache} is not private to this user")
        if (cache / name).exists():
            return cache / name
        return _compile(compiler, sources, cache / name)
    except BuildError:
        raise
    except OSError:
        # A read-only or shared cache (a service account, a container): a fresh private
        # directory of this process, never one that could have been prepared by another user.
        return _compile(compiler, sources,
                        Path(tempfile.mkdtemp(prefix="reglab-native-")) / name)


def _compile(compiler: list[str], sources: list[Path], target: Path) -> Path:
    error = ""
    for machine_flags in (_MACHINE_FLAGS, ()):
        # built beside the target under a unique name, then renamed: concurrent builds
        # (several processes, Dask workers on a shared home) never see half a file
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            result = subprocess.run([*compiler, *_FLAGS, *machine_flags, "-o", tmp,
                                     *map(str, sources), "-lm"], capture_output=True,
                                    text=True, timeout=300)
            if result.returncode == 0:
                os.replace(tmp, target)
                return target
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        lines = result.stderr.strip().splitlines()
        error = lines[-1] if lines else f"exit status {result.returncode}"
    raise BuildError(f"compiling {', '.join(s.name for s in sources)} failed: {error}")
