"""reglab: a regularization laboratory for neural networks, on PyTorch.

``import reglab as keras`` gives Keras's namespaces: ``keras.Sequential``,
``keras.Input``, ``keras.layers``, ``keras.regularizers``, ``keras.callbacks``,
``keras.optimizers``, ``keras.losses``, ``keras.metrics``, ``keras.constraints``,
``keras.initializers``, ``keras.activations``, ``keras.backend`` (``clear_session``...),
``keras.datasets``, ``keras.utils``,
``keras.models``, ``keras.mixed_precision``, ``keras.ops`` (its common part) and
``keras.preprocessing``.

Submodules load on first use, so that ``import reglab.study`` (which parses study
files) imports no torch.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "activations", "backend", "callbacks", "constraints", "datasets", "initializers", "layers",
    "losses", "metrics", "mixed_precision", "models", "ops", "optimizers", "preprocessing",
    "regularizers", "saving", "utils",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"reglab.{name}")
    if name == "Sequential":
        return importlib.import_module("reglab.models").Sequential
    if name == "Model":
        return importlib.import_module("reglab.models").Model
    if name == "Input":
        return importlib.import_module("reglab.layers").Input
    raise AttributeError(f"module 'reglab' has no attribute {name!r}")


def __dir__():
    return sorted([*_SUBMODULES, "Input", "Model", "Sequential", "__version__"])


__all__ = ["Input", "Model", "Sequential", *_SUBMODULES]
