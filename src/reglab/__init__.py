"""reglab: a regularization laboratory for neural networks, on PyTorch.

``import reglab as keras`` gives Keras's namespaces: ``keras.Sequential``,
``keras.Input``, ``keras.layers``, ``keras.regularizers``, ``keras.callbacks``,
``keras.optimizers``, ``keras.losses``, ``keras.metrics``, ``keras.constraints``,
``keras.initializers``, ``keras.activations``, ``keras.datasets``, ``keras.utils``,
``keras.models`` and ``keras.preprocessing``.
"""

__version__ = "0.1.0"

from reglab import (  # noqa: E402
    activations,
    callbacks,
    constraints,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
    utils,
)
from reglab.layers import Input  # noqa: E402
from reglab.models import Sequential  # noqa: E402


def __getattr__(name):
    # preprocessing imports the augmentation stack: load it on first use.
    if name == "preprocessing":
        import importlib

        return importlib.import_module("reglab.preprocessing")
    raise AttributeError(f"module 'reglab' has no attribute {name!r}")


__all__ = [
    "Input", "Sequential", "activations", "callbacks", "constraints", "datasets",
    "initializers", "layers", "losses", "metrics", "models", "optimizers", "preprocessing",
    "regularizers", "utils",
]
