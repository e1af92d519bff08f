"""Constructor arguments of reglab's classes, read from their source without importing them.

Parsing a study file must not import torch, yet every node of the file maps onto a
constructor's arguments and is checked against them. The signatures are read with
:mod:`ast` from the modules that define the classes, so there is no second list to
keep in sync.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent

#: (module path relative to reglab/, class names wanted) for each kind of node
SOURCES = {
    "layer": ["layers/dense.py", "layers/core.py", "layers/convolution.py",
              "layers/regularization.py", "layers/normalization.py", "layers/augmentation.py",
              "layers/mixing.py"],
    "optimizer": ["optimizers/optimizers.py"],
    "regularizer": ["regularizers/*.py"],  # every file: a new regularizer needs no entry here
    "constraint": ["constraints/constraints.py"],
    "early_stopping": ["callbacks/early_stopping.py"],
    "augment": ["augment/sampling.py"],
}
#: keyword arguments every layer accepts through reglab.layers.Layer
LAYER_BASE_ARGUMENTS = ("name", "input_shape", "trainable", "dtype")


def _arguments(node: ast.ClassDef) -> list[str] | None:
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            args = item.args
            names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
            return [n for n in names if n != "self"]
    fields = [item.target.id for item in node.body
              if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)]
    return fields or None


@functools.cache
def classes(kind: str) -> dict[str, tuple[str, ...]]:
    """``{class name: constructor argument names}`` of the public classes of ``kind``."""
    found: dict[str, list[str] | None] = {}
    bases: dict[str, list[str]] = {}
    paths = [path for pattern in SOURCES[kind] for path in sorted(_PACKAGE.glob(pattern))]
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):  # private bases too, for inherited __init__
                found[node.name] = _arguments(node)
                bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]

    def resolve(name: str) -> list[str]:
        own = found.get(name)
        if own is not None:
            return own
        for base in bases.get(name, []):
            if base in found:
                return resolve(base)
        return []

    result = {}
    for name in found:
        if name.startswith("_") or name in ("Layer", "Optimizer", "Regularizer", "Constraint",
                                            "Input", "Initializer"):
            continue
        args = [a for a in resolve(name) if a != "kwargs"]
        if kind == "layer":
            args += [a for a in LAYER_BASE_ARGUMENTS if a not in args]
        result[name] = tuple(args)
    return result


def _literal_defaults(node: ast.ClassDef) -> dict[str, object] | None:
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            args = item.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            out = {}
            for arg, default in pairs:
                try:
                    out[arg.arg] = ast.literal_eval(default)
                except ValueError:
                    continue  # not a literal: no default to compare with
            return out
    return None


@functools.cache
def defaults(kind: str) -> dict[str, dict[str, object]]:
    """``{class name: {argument: default}}`` for the constructor arguments of ``kind``'s
    classes whose defaults are literals (``units``-like required arguments have none)."""
    found: dict[str, dict | None] = {}
    bases: dict[str, list[str]] = {}
    for pattern in SOURCES[kind]:
        for path in sorted(_PACKAGE.glob(pattern)):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef):
                    found[node.name] = _literal_defaults(node)
                    bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]

    def resolve(name: str) -> dict:
        own = found.get(name)
        if own is not None:
            return own
        for base in bases.get(name, []):
            if base in found:
                return resolve(base)
        return {}
    return {name: resolve(name) for name in classes(kind)}
