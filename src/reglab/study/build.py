"""From planned runs to the engine's members, and from a study's data spec to arrays.

Each run's model is the study's base layers with the variant's changes: its
regularizers and constraint on every Dense and Conv2D layer, and after each hidden
weight layer a BatchNormalization (when asked) and a Dropout (rate 0 unless asked).
Augmentation needs images: a flat input of a built-in image dataset is fed as
``(28, 28, 1)`` images behind a Flatten layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from reglab import constraints, optimizers, regularizers
from reglab import layers as layers_module
from reglab.augment import AffineSpec
from reglab.engine import EarlyStoppingRule, Member
from reglab.study.plan import PopulationSpec, RunSpec, run_optimizer
from reglab.study.spec import BUILTIN_DATASETS, PRECISIONS, StudySpec

IMAGE_SHAPES = {"fashion_mnist": (28, 28, 1), "mnist": (28, 28, 1)}
WEIGHT_LAYERS = ("Dense", "Conv2D")


@dataclass
class StudyData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    image_shape: tuple[int, ...] | None


def _regularizer(node):
    if node is None:
        return None
    args = {k: v for k, v in node.items() if k != "type"}
    return regularizers.deserialize({"class_name": node["type"], "config": args})


def _constraint(node):
    if node is None:
        return None
    args = {k: v for k, v in node.items() if k != "type"}
    return constraints.get({"class_name": node["type"], "config": args})


def _layer(type_: str, args: dict[str, Any]):
    args = dict(args)
    for key in list(args):
        if key.endswith("_regularizer"):
            args[key] = _regularizer(args[key])
        elif key.endswith("_constraint"):
            args[key] = _constraint(args[key])
        elif isinstance(args[key], list):
            args[key] = tuple(args[key])
    return getattr(layers_module, type_)(**args)


def build_member(spec: StudySpec, run: RunSpec, input_shape: tuple[int, ...],
                 images: bool = False) -> Member:
    """The engine member for ``run``; ``images`` feeds a flat model through Flatten."""
    changes = run.changes
    weight_positions = [i for i, layer in enumerate(spec.layers) if layer.type in WEIGHT_LAYERS]
    last_weight = weight_positions[-1] if weight_positions else -1
    built = batch_transforms(spec, changes)
    explicit: set[int] = set()  # layers whose dtype the study file sets
    if images:
        built.append(layers_module.Flatten())
    for i, layer in enumerate(spec.layers):
        args = dict(layer.args)
        if layer.type in WEIGHT_LAYERS:
            for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                        "kernel_constraint"):
                if key in changes:
                    args[key] = changes[key]
        built.append(_layer(layer.type, args))
        if "dtype" in args:
            explicit.add(id(built[-1]))
        if layer.type in WEIGHT_LAYERS and i != last_weight:
            if changes.get("batch_norm"):
                built.append(layers_module.BatchNormalization())
            built.append(layers_module.Dropout(float(changes.get("dropout", 0.0))))
    policy = PRECISIONS[spec.training.precision]
    if policy != "float32":
        built = _with_precision(built, policy, explicit)
    optimizer = run_optimizer(spec, changes)
    cls = type(optimizers.get(optimizer["type"]))
    stop = changes.get("early_stopping")
    rule = None if stop is None else EarlyStoppingRule(
        **{k: v for k, v in stop.items() if k != "verbose"})
    return Member(built, cls(**{k: v for k, v in optimizer.items() if k != "type"}), run.seed,
                  rule, input_shape=tuple(input_shape), name=run.run_id)


def _with_precision(built: list, policy: str, explicit: set[int]) -> list:
    """Gives ``policy`` to every layer before the last weight layer (that layer and what
    follows it, the output, stay float32, as Keras's mixed-precision guide advises), except
    layers whose ``dtype`` the study file sets."""
    from reglab import mixed_precision

    weighted = [i for i, layer in enumerate(built) if type(layer).__name__ in WEIGHT_LAYERS]
    output = weighted[-1] if weighted else len(built) - 1
    for layer in built[:output]:
        if id(layer) not in explicit:
            layer.dtype_policy = mixed_precision.DTypePolicy(policy)
    return built


#: variant keys that become leading batch-transform layers: (layer, its argument, default)
BATCH_TRANSFORMS = {"mixup": ("MixUp", "alpha", 0.2), "cutmix": ("CutMix", "factor", 1.0),
                    "label_smoothing": ("LabelSmoothing", "smoothing", None)}


def _uses(spec: StudySpec, key: str) -> bool:
    return any(key in variant.changes for variant in spec.variants)


def batch_transforms(spec: StudySpec, changes: dict) -> list:
    """The leading MixUp / CutMix / LabelSmoothing layers of a run: every run of a study that
    uses one gets it, with strength 0 where its variant does not, so that all share
    populations (the strength is a value, not structure)."""
    built = []
    for key, (type_, argument, default) in BATCH_TRANSFORMS.items():
        if not _uses(spec, key):
            continue
        node = changes.get(key)
        if node is None:
            value = 0.0
        elif isinstance(node, dict):
            value = node.get(argument, default)
        else:
            value = node
        built.append(getattr(layers_module, type_)(float(value)))
    return built


def population_members(spec: StudySpec, population: PopulationSpec, data: StudyData):
    """``(members, augment spec or None, images?)`` for one planned population."""
    augment = population.runs[0].changes.get("augment")
    wants_images = bool(augment) or _uses(spec, "cutmix")
    images = wants_images and len(spec.input_shape) == 1 and data.image_shape is not None
    shape = data.image_shape if images else tuple(spec.input_shape)
    members = [build_member(spec, run, shape, images) for run in population.runs]
    return members, (AffineSpec(**augment) if augment else None), images


def load_study_data(spec: StudySpec) -> StudyData:
    """Train, validation (the last ``validation_split`` of train) and test arrays."""
    name = spec.data.dataset
    if name in BUILTIN_DATASETS:
        from reglab import datasets

        (x, y), (x_test, y_test) = getattr(datasets, name).load_data()
        image_shape = IMAGE_SHAPES[name]
        x, x_test = x.astype("float32") / 255.0, x_test.astype("float32") / 255.0
    else:
        from reglab.datasets import load_csv, load_npz

        if name.endswith(".npz"):
            x, y = load_npz(name)
            with np.load(name, allow_pickle=False) as archive:
                x_test = archive["x_test"] if "x_test" in archive else None
                y_test = archive["y_test"] if "y_test" in archive else None
        else:
            x, y = load_csv(name, spec.data.label_column)
            x_test = y_test = None
        image_shape = tuple(x.shape[1:]) if x.ndim == 4 else None
    shape = tuple(spec.input_shape)

    def fit(a):
        return None if a is None else a.reshape(len(a), *shape).astype("float32")
    x, x_test = fit(x), fit(x_test)
    n_val = int(math.floor(len(x) * spec.data.validation_split))
    if n_val:
        return StudyData(x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:], x_test, y_test,
                         image_shape)
    return StudyData(x, y, None, None, x_test, y_test, image_shape)
