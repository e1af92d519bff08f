# Shared by scripts/device_cnn.sh and scripts/device_check.sh (sourced, not run): sets the
# environment (reglab from src/, data in .data/), names the GPU, installs carried wheels, lists
# which runtime dependencies import (sets MISSING and `has NAME`), checks torch/CUDA, and finds
# Fashion-MNIST. Expects ROOT, PY, DEVICE and a `finish RC` function from the caller.

export PYTHONUNBUFFERED=1 MPLBACKEND=Agg MPLCONFIGDIR=/tmp/reglab_mpl
export REGLAB_DATA_DIR=$ROOT/.data REGLAB_CACHE_DIR=/tmp/reglab_cache
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader

# -- carried wheels, if any ------------------------------------------------------------------
if compgen -G ".whl/*.whl" >/dev/null; then
  echo "== installing carried wheels from .whl/ into /tmp/site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi

# -- which runtime dependencies of pyproject.toml import -------------------------------------
echo "== dependencies (pyproject.toml [project].dependencies)"
MISSING=$("$PY" - <<'EOF'
import importlib, re, sys
try:
    import tomllib
    deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
except ImportError:  # Python 3.10: read the list by hand
    text = open("pyproject.toml").read()
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.S | re.M).group(1)
    deps = re.findall(r'^\s*"((?:[^"\\]|\\.)*)"', block, re.M)
    deps = [d.replace('\\"', '"') for d in deps]
missing = []
for dep in deps:
    requirement, _, marker = dep.partition(";")
    name = re.match(r"[A-Za-z0-9_.-]+", requirement.strip()).group(0)
    if marker.strip():
        try:
            from packaging.markers import Marker
            applies = Marker(marker.strip()).evaluate()
        except Exception:  # only python_version markers are used in pyproject.toml
            m = re.search(r'python_version\s*<\s*"(\d+)\.(\d+)"', marker)
            applies = bool(m) and sys.version_info[:2] < (int(m[1]), int(m[2]))
        if not applies:
            print(f"  --       {name:12s} not needed ({marker.strip()})", file=sys.stderr)
            continue
    module = name.lower().replace("-", "_")
    try:
        importlib.import_module(module)
        try:
            from importlib.metadata import version
            found = version(name)
        except Exception:  # importable but not installed as a distribution (e.g. on PYTHONPATH)
            found = "?"
        print(f"  ok       {name:12s} {found:14s} (wants {requirement.strip()})", file=sys.stderr)
    except Exception as error:
        print(f"  MISSING  {name:12s} ({type(error).__name__}: {error})", file=sys.stderr)
        missing.append(name.lower())
print(" ".join(missing))
EOF
)
echo "missing: ${MISSING:-none}"
has() { [[ " $MISSING " != *" $1 "* ]]; }
if ! has torch || ! has numpy; then
  echo "FATAL: torch and numpy are required; carry them as wheels (see the top of this script)."
  finish 3
fi
"$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| cuda', torch.version.cuda, '| available:', torch.cuda.is_available(),
'|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')"
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "FATAL: torch sees no CUDA device; this study is meant for --device cuda."
  finish 3
fi

# -- data --------------------------------------------------------------------------------------
echo "== Fashion-MNIST"
FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
have_data() {
  for f in $FILES; do [ -f "$1/$f.gz" ] || [ -f "$1/$f" ] || return 1; done
}
if have_data "$REGLAB_DATA_DIR/fashion-mnist"; then
  ls -l "$REGLAB_DATA_DIR/fashion-mnist"
elif have_data /usr/share/datasets/fashion-mnist; then
  echo "using /usr/share/datasets/fashion-mnist (no .data/fashion-mnist carried)"
else
  echo "FATAL: no Fashion-MNIST in $REGLAB_DATA_DIR/fashion-mnist nor /usr/share/datasets."
  echo "Before the call, in the repo root: mkdir -p .data && cp -r /usr/share/datasets/fashion-mnist .data/"
  finish 3
fi

