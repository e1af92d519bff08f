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
              "layers/mixing.py", "layers/reshaping.py", "layers/activation_layers.py"],
    "optimizer": ["optimizers/optimizers.py", "optimizers/adaptive.py", "optimizers/factored.py"],
    "regularizer": ["regularizers/*.py"],  # every file: a new regularizer needs no entry here
    "constraint": ["constraints/constraints.py"],
    "early_stopping": ["callbacks/early_stopping.py"],
    "augment": ["augment/sampling.py"],
}
#: the base class a node's class derives from, for the kinds that have one (a helper class
#: defined beside the optimizers is no optimizer a study may name)
BASES = {"layer": "Layer", "optimizer": "Optimizer", "regularizer": "Regularizer",
         "constraint": "Constraint"}
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
def _class_nodes(kind: str) -> tuple[dict[str, ast.ClassDef], dict[str, list[str]]]:
    """Every class defined in ``kind``'s sources (private bases too, for an inherited
    ``__init__``) and each one's bases."""
    nodes: dict[str, ast.ClassDef] = {}
    bases: dict[str, list[str]] = {}
    paths = [path for pattern in SOURCES[kind] for path in sorted(_PACKAGE.glob(pattern))]
    for path in paths:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                nodes[node.name] = node
                bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]
    return nodes, bases


def _inherited(kind: str, read):
    """``{class name: read(its node)}``, a class without its own ``__init__`` taking its
    nearest base's (``read`` returns None for a class without one)."""
    nodes, bases = _class_nodes(kind)
    own = {name: read(node) for name, node in nodes.items()}

    def resolve(name: str):
        if own.get(name) is not None:
            return own[name]
        for base in bases.get(name, []):
            if base in own:
                return resolve(base)
        return None
    return {name: resolve(name) for name in nodes}


def _derives(kind: str, name: str, base: str) -> bool:
    """Whether class ``name`` of ``kind``'s sources derives from ``base`` (by name)."""
    _, bases = _class_nodes(kind)
    seen, todo = set(), [name]
    while todo:
        for parent in bases.get(todo.pop(), []):
            if parent == base:
                return True
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return False


@functools.cache
def classes(kind: str) -> dict[str, tuple[str, ...]]:
    """``{class name: constructor argument names}`` of the public classes of ``kind``."""
    result = {}
    for name, arguments in _inherited(kind, _arguments).items():
        if name.startswith("_") or name in ("Layer", "Optimizer", "Regularizer", "Constraint",
                                            "Input", "Initializer"):
            continue
        if kind in BASES and not _derives(kind, name, BASES[kind]):
            continue
        args = [a for a in (arguments or []) if a != "kwargs"]
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
    fields = {}  # a dataclass's fields with literal defaults
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) \
                and item.value is not None:
            try:
                fields[item.target.id] = ast.literal_eval(item.value)
            except ValueError:
                continue
    return fields or None


@functools.cache
def defaults(kind: str) -> dict[str, dict[str, object]]:
    """``{class name: {argument: default}}`` for the constructor arguments of ``kind``'s
    classes whose defaults are literals (``units``-like required arguments have none)."""
    found = _inherited(kind, _literal_defaults)
    return {name: found.get(name) or {} for name in classes(kind)}


def _required_arguments(node: ast.ClassDef) -> list[str] | None:
    """The constructor's arguments without a default (a dataclass's fields without one)."""
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            args = item.args
            positional = [a.arg for a in args.posonlyargs + args.args if a.arg != "self"]
            positional = positional[:len(positional) - len(args.defaults)]
            return positional + [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults)
                                 if d is None]
    fields = [item.target.id for item in node.body if isinstance(item, ast.AnnAssign)
              and isinstance(item.target, ast.Name) and item.value is None]
    return fields or None


@functools.cache
def required(kind: str) -> dict[str, tuple[str, ...]]:
    """``{class name: the constructor arguments it cannot do without}`` (``Dense``'s
    ``units``), for the public classes of ``kind``."""
    found = _inherited(kind, _required_arguments)
    return {name: tuple(found.get(name) or ()) for name in classes(kind)}
