"""From planned runs to the engine's members, and from a study's data spec to arrays.

Each run's model is the study's base layers with the variant's changes: its
regularizers and constraint on every Dense and Conv2D layer, and after each hidden
weight layer a BatchNormalization (when asked) and a Dropout (rate 0 unless asked).
Augmentation needs images: a flat input of a built-in image dataset is fed as
``(28, 28, 1)`` images behind a Flatten layer. A run's data regime (its training subset and
noisy labels, see :mod:`reglab.study.regimes`) is cut from the loaded data by
:func:`regime_data`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from reglab import constraints, optimizers, regularizers
from reglab import layers as layers_module
from reglab.augment import AffineSpec
from reglab.engine import EarlyStoppingRule, Member
from reglab.errors import DataError, ReglabError
from reglab.study.plan import PopulationSpec, RunSpec, StudyPlan, run_optimizer
from reglab.study.precision import AUTO, with_precision
from reglab.study.regimes import REGIME_KEYS, resolve_regime
from reglab.study.spec import (
    BUILTIN_DATASETS,
    PRECISIONS,
    RESIDUAL,
    StudySpec,
    StudySpecError,
    study_wide_keys,
)
from reglab.study.sweeps import format_value

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
    #: with ``[data] standardize``: the per-feature mean and standard deviation (float64, of
    #: the model's input shape) of the training split, which every split was scaled with
    feature_mean: np.ndarray | None = None
    feature_std: np.ndarray | None = None
    #: whether the targets are class labels (splits and subsets stratified, label noise,
    #: calibration): never for a regression loss's, whatever their values (prices, counts)
    class_labels: bool = True
    #: a CSV's class names, where its labels are names (class i is ``class_names[i]``)
    class_names: tuple[str, ...] | None = None


def _typed_node(node) -> dict:
    """A ``{ type = ..., args }`` node, also written as the bare class name (``"L2"``, as
    the study file's checks take it)."""
    return {"type": node} if isinstance(node, str) else node


def _regularizer(node):
    if node is None:
        return None
    node = _typed_node(node)
    args = {k: v for k, v in node.items() if k != "type"}
    return regularizers.deserialize({"class_name": node["type"], "config": args})


def _constraint(node):
    if node is None:
        return None
    node = _typed_node(node)
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


@dataclass
class _Residual:
    """A residual block of a study's model: ``input + branch(input)``, the branch dropped
    with the variant's ``stochastic_depth`` rate (a StochasticDepth layer, rate 0 when the
    variant has none), then an optional activation."""

    branch: list
    merge: Any
    activation: Any = None


def _build_layers(layer_specs, changes, explicit: set[int], output: int | None) -> list:
    """The layers of ``layer_specs`` with the run's changes: its regularizers and constraint
    on every weight layer, and after each one but the output a BatchNormalization (when
    asked) and a Dropout (rate 0 unless asked); residual blocks as :class:`_Residual`s."""
    built: list = []
    for i, layer in enumerate(layer_specs):
        if layer.type == RESIDUAL:
            for _ in range(int(layer.args.get("repeat", 1))):
                branch = _build_layers([_spec(node) for node in layer.args["layers"]],
                                       changes, explicit, None)
                merge = layers_module.StochasticDepth(float(changes.get("stochastic_depth",
                                                                          0.0)))
                merge.inserted_by = "stochastic_depth"
                activation = layer.args.get("activation")
                built.append(_Residual(branch, merge, None if activation is None
                                       else layers_module.Activation(activation)))
            continue
        args = dict(layer.args)
        if layer.type in WEIGHT_LAYERS:
            for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                        "kernel_constraint"):
                if key in changes:
                    args[key] = changes[key]
        built.append(_layer(layer.type, args))
        if "dtype" in args:
            explicit.add(id(built[-1]))
        if layer.type in WEIGHT_LAYERS and i != output:
            if changes.get("batch_norm"):
                built.append(layers_module.BatchNormalization())
            inserted = layers_module.Dropout(float(changes.get("dropout", 0.0)))
            inserted.inserted_by = "dropout"  # the variant's, not the base model's own
            built.append(inserted)
    return built


def _spec(node: dict):
    from reglab.study.spec import LayerSpec

    return LayerSpec(node["type"], {k: v for k, v in node.items() if k != "type"})


def _graph(built: list, input_shape) -> tuple[list, list]:
    """``(layers, graph)`` of a model with residual blocks, through the functional API."""
    from reglab.layers import symbolic

    inputs = layers_module.Input(shape=tuple(input_shape))

    def apply(nodes, tensor):
        for node in nodes:
            if isinstance(node, _Residual):
                merged = node.merge([tensor, apply(node.branch, tensor)])
                tensor = node.activation(merged) if node.activation is not None else merged
            else:
                tensor = node(tensor)
        return tensor
    layers, calls, graph, *_ = symbolic.topological(inputs, apply(built, inputs))
    return [layers[i] for i in calls], graph


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
    built += _build_layers(spec.layers, changes, explicit, last_weight)
    graph = None
    if any(isinstance(node, _Residual) for node in built):
        built, graph = _graph(built, input_shape)
    if spec.training.precision == AUTO:
        raise ValueError("build_member: [training] precision = 'auto' is resolved when the "
                          "study starts training (reglab.study.precision.resolve); build with "
                          "the precision it resolved to.")
    policy = PRECISIONS[spec.training.precision]
    if policy != "float32":
        built = _with_precision(built, policy, explicit)
    optimizer = run_optimizer(spec, changes)
    cls = type(optimizers.get(optimizer["type"]))
    stop = changes.get("early_stopping")
    rule = None if stop is None else EarlyStoppingRule(
        **{k: v for k, v in stop.items() if k != "verbose"})
    built_optimizer = cls(**{k: v for k, v in optimizer.items() if k != "type"})
    if policy == "mixed_float16":  # as Keras's compile does for a mixed_float16 model
        built_optimizer = optimizers.LossScaleOptimizer(built_optimizer)
    return Member(built, built_optimizer, run.seed, rule, input_shape=tuple(input_shape),
                  name=run.run_id, graph=graph)


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
    return key in study_wide_keys(spec.variants)


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


def load_study_data(spec: StudySpec, with_test: bool = True) -> StudyData:
    """Train, validation and test arrays, the same in every process that loads them.

    The test set is the built-in dataset's, the archive's ``x_test``/``y_test``, the separate
    ``test`` file, or the ``test_split`` held out of the training file (stratified, drawn with
    ``split_seed``, never with a run's seed). Validation is the last ``validation_split`` of
    what remains for training, in the file's order. With ``standardize`` every split is scaled
    by the per-feature mean and standard deviation of the training split alone (kept in
    ``feature_mean`` and ``feature_std``). ``with_test=False`` skips reading a separate test
    file (``x_test`` is then None), for callers that look at the training data only.
    """
    from reglab.datasets.splits import standardization, standardize, stratified_split

    data = spec.data
    name = data.dataset
    class_names = None  # a CSV's class names, where its labels are names
    if name in BUILTIN_DATASETS:
        from reglab import datasets

        (x, y), (x_test, y_test) = getattr(datasets, name).load_data()
        image_shape = IMAGE_SHAPES[name]
        x, x_test = x.astype("float32") / 255.0, x_test.astype("float32") / 255.0
    else:
        from reglab.datasets import load_csv, load_npz
        from reglab.datasets.user_data import npz_keys

        name = data.path
        if name.endswith(".npz"):
            keys = npz_keys(name)
            x, y = load_npz(name, *keys)
            with np.load(name, allow_pickle=False) as archive:
                held = [key for key in ("x_test", "y_test") if key in archive]
                _no_unread_splits(data.dataset, archive.files, (*keys, *held))
                if len(held) == 1:
                    missing = "y_test" if held == ["x_test"] else "x_test"
                    raise DataError(f"{data.dataset}: the archive has {held[0]!r} but no "
                                    f"{missing!r}; a test set is both (or neither, with "
                                    "data.test_split or data.test).")
                x_test, y_test = (load_npz(name, "x_test", "y_test") if held
                                  else (None, None))
        else:
            x, y, class_names = load_csv(name, data.label_column, return_classes=True)
            x_test = y_test = None
        if data.test and with_test:
            x_test, y_test = _load_test_file(spec, class_names)
        image_shape = tuple(x.shape[1:]) if x.ndim == 4 else None
    shape = tuple(spec.input_shape)

    def fit(a, split, source):
        if a is None:
            return None
        if math.prod(a.shape[1:]) != math.prod(shape):
            raise DataError(
                f"model.input_shape: {list(shape)} ({math.prod(shape)} values per sample) does "
                f"not match the {split} data of {source!r}: samples of shape "
                f"{list(a.shape[1:])} ({math.prod(a.shape[1:])} values).")
        if not _same_layout(tuple(a.shape[1:]), shape):
            raise DataError(
                f"model.input_shape: {list(shape)} does not match the {split} data of "
                f"{source!r}: samples of shape {list(a.shape[1:])}. Samples with several axes "
                "are taken as they are laid out (height, width, channels last), not "
                "rearranged; reshape the data, or flatten them to reshape freely.")
        with np.errstate(over="ignore", invalid="ignore"):
            fitted = a.reshape(len(a), *shape).astype("float32")
        bad = _non_finite(fitted)
        if bad is not None:
            raise DataError(
                f"{source}: the {split} features must be finite float32 numbers. Got "
                f"{bad[0]} samples with NaN, an infinity or a value beyond "
                f"float32's range (±3.4e38), the first at sample {bad[1]}.")
        return fitted
    x = fit(x, "training", data.dataset)
    x_test = fit(x_test, "test", data.test or data.dataset)
    _finite_targets(y, "training", data.dataset)
    _finite_targets(y_test, "test", data.test or data.dataset)
    _whole_labels(spec, y, "training", data.dataset)
    _whole_labels(spec, y_test, "test", data.test or data.dataset)
    class_labels = targets_are_class_labels(spec, y)
    if class_names is not None and not class_labels:
        raise DataError(f"data.dataset ({data.dataset!r}): its labels are class names "
                        f"({', '.join(map(repr, class_names[:5]))}"
                        f"{', ...' if len(class_names) > 5 else ''})"
                        f", but training.loss {spec.training.loss!r} is a regression loss, "
                        "which needs numbers as targets. Use a classification loss, or "
                        "numeric labels.")
    if data.test_split:
        train, test = stratified_split(y, data.test_split, data.split_seed,
                                       stratify=class_labels)
        x, y, x_test, y_test = x[train], y[train], x[test], y[test]
    n_val = int(math.floor(len(x) * data.validation_split))
    if data.validation_split and not n_val:
        raise DataError(
            f"data.validation_split: {data.validation_split} of the {len(x):,} training "
            f"samples is no validation sample. Expected a split that holds out at least one "
            f"(>= {1 / len(x):.3g}), or 0 for none.")
    classes = _present_classes(y, class_labels) or 1
    if n_val and len(x) - n_val < classes:
        raise DataError(
            f"data.validation_split: expected a split that leaves at least {classes} training "
            f"samples ({'one per class, ' + str(classes) + ' classes' if classes > 1 else 'one'}"
            f"). Got {data.validation_split}, which holds out {n_val:,} of the {len(x):,}, "
            f"leaving {len(x) - n_val:,}.")
    if n_val:
        x, y, x_val, y_val = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
    else:
        x_val = y_val = None
    mean = std = None
    if data.standardize:
        mean, std = standardization(x)
        x, x_val, x_test = (standardize(a, mean, std) for a in (x, x_val, x_test))
    return StudyData(x, y, x_val, y_val, x_test, y_test, image_shape, mean, std, class_labels,
                     class_names)


def targets_are_class_labels(spec: StudySpec, y) -> bool:
    """Whether the targets ``y`` are class labels: not when the study's loss is a
    regression's (``mse``, ``mae``, ...: whole-number targets are values there), else when
    they read as labels (:func:`reglab.datasets.splits.class_keys`)."""
    from reglab import losses
    from reglab.datasets.splits import class_keys

    if losses.resolve(spec.training.loss).regression:
        return False
    return y is not None and class_keys(np.asarray(y)) is not None


def _whole_labels(spec: StudySpec, y, split: str, source: str) -> None:
    """A DataError naming ``source`` and the first sample when the loss takes integer class
    labels and a float target is not a whole number (checked before any split, so the
    sample is the file's own; a typo's one message, not a regression's advice too)."""
    from reglab import losses

    if y is None or losses.resolve(spec.training.loss).target_kind != "sparse":
        return
    flat = np.asarray(y).reshape(-1)
    if flat.dtype.kind != "f":
        return
    fractional = np.flatnonzero(flat != np.round(flat))
    if fractional.size:
        first = int(fractional[0])
        raise DataError(f"{source}: training.loss {spec.training.loss!r} takes integer class "
                        f"labels; the {split} targets hold {fractional.size} "
                        f"{'value that is not a whole number' if fractional.size == 1 else 'values that are not whole numbers'}"
                        f", the first at sample {first}: {flat[first].item():g}.")


def _finite_targets(y, split: str, source: str) -> None:
    """A DataError naming ``source`` and the first sample when float targets hold NaN or an
    infinity (checked before any split, so the sample is the file's own)."""
    if y is None:
        return
    y = np.asarray(y)
    bad = _non_finite(y) if y.dtype.kind in "fc" else None
    if bad is not None:
        raise DataError(f"{source}: the {split} targets must be finite numbers. Got "
                        f"{bad[0]} samples with NaN or an infinity, the first at sample "
                        f"{bad[1]}.")


def _non_finite(a: np.ndarray) -> tuple[int, int] | None:
    """``(samples holding NaN or an infinity, the first of them)``; None when every value
    of every sample is finite."""
    if not len(a):
        return None
    finite = np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if finite.all():
        return None
    return int((~finite).sum()), int(np.flatnonzero(~finite)[0])


def _same_layout(sample: tuple[int, ...], model: tuple[int, ...]) -> bool:
    """Whether samples of shape ``sample`` are read as ``model`` inputs without rearranging
    axes: equal shapes, either side flat (one axis), or equal but for a trailing channel
    axis of 1 ((28, 28) images as (28, 28, 1))."""
    if len(sample) <= 1 or len(model) <= 1:
        return True
    return sample == model or sample + (1,) == model or sample == model + (1,)


def _regime_where(spec: StudySpec, key: str, value) -> str:
    """``data.train_size[2]``: the place of one value of a regime key in the study file."""
    values = getattr(spec.data, key)
    if len(values) == 1:
        return f"data.{key}"
    return f"data.{key}[{values.index(value)}]"


def _present_classes(y, class_labels: bool = True) -> int | None:
    """How many distinct classes the labels ``y`` hold; None for targets that are not
    class labels (``class_labels`` False: a regression loss's, whatever their values)."""
    from reglab.datasets.splits import class_keys

    keys = class_keys(y) if class_labels else None
    return None if keys is None else len(np.unique(keys))


def regime_data(spec: StudySpec, run: RunSpec, data: StudyData) -> tuple[StudyData, dict]:
    """``(data, facts)``: the data of ``run``'s regime for its seed, and what its record keeps
    about them (``train_samples``, and with noise the shares of replaced training and
    validation labels, ``label_noise_rate`` and ``val_label_noise_rate``; nothing in a study
    without regimes, whose data are ``data`` itself).

    The training subset is drawn from the training split left after the validation split
    (validation is never subsampled); validation labels take the same noise as training's
    (another stream of the seed) unless ``[data] noisy_validation = false``; the test set is
    never changed. With ``standardize``, the statistics stay those of the whole training
    split (features only; the same for every seed).
    """
    from reglab.datasets import regimes

    regime = resolve_regime(spec.data, run.regime)
    if not regime.seeded:  # the whole training split as it is: today's data and records
        regimes_set = any(getattr(spec.data, key) for key in REGIME_KEYS)
        return data, ({"train_samples": float(len(data.y_train))} if regimes_set else {})
    x, y = data.x_train, data.y_train
    rows = np.arange(len(y))
    if regime.train_size is not None:
        n = regimes.training_size(regime.train_size, len(y),
                                  _present_classes(y, data.class_labels),
                                  _regime_where(spec, "train_size", regime.train_size))
        rows = regimes.subset_indices(y, n, run.seed, stratify=data.class_labels)
    facts = {"train_samples": float(len(rows))}
    y_train, y_val = (y if len(rows) == len(y) else y[rows]), data.y_val
    if regime.noisy:
        classes = regimes.present_labels(data.y_train, data.y_val, data.y_test) \
            if not isinstance(regime.label_noise, tuple) else \
            regimes.label_classes(data.y_train, data.y_val, data.y_test)
        y_train, replaced = regimes.noisy_labels(y, rows, regime.label_noise, classes, run.seed)
        facts["label_noise_rate"] = float(replaced.mean()) if replaced.size else 0.0
        if regime.noisy_validation and y_val is not None and len(y_val):
            y_val, replaced = regimes.noisy_labels(y_val, np.arange(len(y_val)),
                                                   regime.label_noise, classes, run.seed,
                                                   regimes.VALIDATION_NOISE_STREAM)
            facts["val_label_noise_rate"] = float(replaced.mean())
    x_train = x if len(rows) == len(x) else x[rows]
    return dataclasses.replace(data, x_train=x_train, y_train=y_train, y_val=y_val), facts


def population_data(spec: StudySpec, population: PopulationSpec,
                    data: StudyData) -> tuple[StudyData, list[dict]]:
    """``(data, facts per run)``: :func:`regime_data` of a population's runs, which share
    their inputs (the plan puts the runs of a regime whose data depend on the seed in one
    population per seed). Runs whose regimes differ only in their label noise share the
    inputs and keep their own labels: the training and validation targets are then
    :class:`reglab.engine.PerMember`, one row per run."""
    first = population.runs[0]
    inputs = [tuple(p for p in run.regime if p[0] != "label_noise") for run in population.runs]
    seeded = any(resolve_regime(spec.data, run.regime).seeded for run in population.runs)
    if any(key != inputs[0] for key in inputs) or (
            seeded and any(run.seed != first.seed for run in population.runs)):
        raise ReglabError(f"population {population.key}: its runs need different training "
                          "inputs (data regimes or seeds); a population trains on one.")
    drawn = [regime_data(spec, run, data) for run in population.runs]
    shared, _ = drawn[0]
    facts = [run_facts for _, run_facts in drawn]
    if all(run.regime == first.regime for run in population.runs):
        return shared, facts
    from reglab.engine import PerMember

    def per_member(field):
        rows = [getattr(run_data, field) for run_data, _ in drawn]
        return None if rows[0] is None else PerMember(np.stack(rows))
    return dataclasses.replace(shared, y_train=per_member("y_train"),
                               y_val=per_member("y_val")), facts


def check_regime_data(spec: StudySpec, data: StudyData) -> list[str]:
    """Problems of the study's data regimes with its data: a ``train_size`` beyond the
    training split or below its classes, noise on targets that are not class labels, a
    confusion matrix of another size than the classes."""
    from reglab.datasets import regimes

    problems = []
    available = len(data.y_train)
    present = _present_classes(data.y_train, data.class_labels)
    sizes: dict[int, Any] = {}
    for value in spec.data.train_size:
        where = _regime_where(spec, "train_size", value)
        try:
            n = regimes.training_size(value, available, present, where)
        except ReglabError as error:
            problems.append(str(error))
            continue
        if n in sizes:  # two regimes with the same data: twice the runs, no new answer
            problems.append(f"{where}: expected sizes that differ; {value!r} and "
                            f"{sizes[n]!r} are both {n:,} training samples.")
        sizes.setdefault(n, value)
    noisy = [v for v in spec.data.label_noise if not (isinstance(v, float) and v == 0.0)]
    if not noisy:
        return problems
    if not data.class_labels or any(y is not None and regimes.noise_keys(y) is None
                                    for y in (data.y_train, data.y_val)):
        return problems + [regimes.NOT_CLASS_LABELS]
    classes = regimes.label_classes(data.y_train, data.y_val, data.y_test)
    for value in noisy:
        where = _regime_where(spec, "label_noise", value)
        if isinstance(value, tuple) and len(value) != classes:
            problems.append(f"{where}.matrix: expected {classes} × {classes}, a row and a "
                            f"column per class of the data (labels 0 to {classes - 1}). Got "
                            f"{len(value)} × {len(value)}.")
        elif not isinstance(value, tuple) and (classes or 0) < 2:
            problems.append(f"{where}: replaces a label by another class; expected data with "
                            f"at least 2 classes. Got {classes or 0}.")
    return problems + _same_noise(spec, sorted(sizes) or [available],
                                  0 if data.y_val is None else len(data.y_val))


def _same_noise(spec: StudySpec, train_sizes: list[int], validation: int) -> list[str]:
    """Label noise values that replace the same labels as another value, or none at all
    (a rate below half a label, a matrix without off-diagonal mass): one regime twice, or
    a noisy regime that is the clean data (each seed's population split for nothing), as
    two ``train_size`` values of one count are."""
    from reglab.datasets.regimes import replaced_count

    def replaced(value) -> tuple[int, ...] | None:
        """How many labels ``value`` replaces in each training size and the validation
        split; None for a matrix with off-diagonal mass (its counts depend on the class
        counts: told apart by its values)."""
        if isinstance(value, tuple):
            if any(p for i, row in enumerate(value) for j, p in enumerate(row) if i != j):
                return None
            return (0,) * (len(train_sizes) + bool(validation))
        return tuple(replaced_count(value, n) for n in
                     (*train_sizes, *([validation] if validation else [])))

    problems, seen = [], {}
    for value in spec.data.label_noise:
        counts = replaced(value)
        if counts is None:
            continue
        where = _regime_where(spec, "label_noise", value)
        shown = f"{counts[0]:,} of {train_sizes[0]:,} training labels" + (
            f" and {counts[-1]:,} of {validation:,} validation labels" if validation else "")
        if counts in seen:
            problems.append(f"{where}: expected label noise values that replace different "
                            f"labels; {value!r} and {seen[counts]!r} both replace {shown}: "
                            "one regime twice.")
        elif not any(counts) and not (isinstance(value, float) and value == 0.0):
            smallest = 0.5 / max(train_sizes)
            problems.append(f"{where}: replaces no label ({shown}): the clean data, under a "
                            f"noisy name. Expected 0, or a rate of at least {smallest:.3g} "
                            "(half a label of the largest training size).")
        seen.setdefault(counts, value)
    return problems


def _no_unread_splits(place: str, names: list[str], read: tuple[str, ...]) -> None:
    """Refuses an archive holding arrays named as data (``x``, ``y``, ``x_...``, ``y_...``)
    that the study would not read, such as a validation set: they would be dropped without
    a word. Other arrays (class names, notes) are left alone."""
    unread = [name for name in names if name not in read
              and (name in ("x", "y") or name.startswith(("x_", "y_")))]
    if unread:
        raise DataError(
            f"{place}: the archive holds {', '.join(map(repr, unread))}, which the study "
            f"would not read (it reads {', '.join(map(repr, read))}). Expected no other x_ "
            "or y_ arrays. A study validates on the last data.validation_split of the "
            "training data: put a validation set at the end of the training arrays and set "
            "data.validation_split, or remove the arrays.")


def _load_test_file(spec: StudySpec, classes=None) -> tuple[np.ndarray, np.ndarray]:
    """The separate test file, in the training file's format (a .csv with the same columns,
    its labels named as the training file's ``classes`` where those are names, or a .npz
    with ``x`` and ``y``, or ``x_test`` and ``y_test``)."""
    from reglab.datasets import load_csv, load_npz
    from reglab.datasets.user_data import csv_columns, npz_keys

    path = spec.data.test_path
    if path.endswith(".npz"):
        keys = npz_keys(path, "test")
        loaded = load_npz(path, *keys)
        with np.load(path, allow_pickle=False) as archive:
            _no_unread_splits(f"data.test ({spec.data.test!r})", archive.files, keys)
        return loaded
    x, y, named = load_csv(path, spec.data.label_column, classes=classes,
                           return_classes=True)
    if classes is None and named is not None:
        raise DataError(f"data.test ({spec.data.test!r}): its labels are class names "
                        f"({', '.join(map(repr, named[:5]))}{', ...' if len(named) > 5 else ''})"
                        f" where the training file {spec.data.dataset!r} has numbers. "
                        "Expected labels of one kind in both.")
    train_columns, test_columns = csv_columns(spec.data.path), csv_columns(path)
    if test_columns != train_columns:
        raise DataError(
            f"data.test ({spec.data.test!r}): expected the columns of the training file "
            f"{spec.data.dataset!r} in its order ({', '.join(train_columns)}). "
            f"Got {', '.join(test_columns)}.")
    return x, y


def check_study(plan: StudyPlan, data: StudyData | None = None) -> StudyData:
    """Builds what the study describes and checks it against its data, before any training:
    every variant's model at every sweep point (layers, regularizers, constraints, optimizer,
    early stopping, augmentation), each population's members together, and the data against the model's
    input shape, output units and loss. Returns the loaded data.

    Raises:
        StudySpecError: every problem found, each with its place (the variant, or ``data``).
    """
    from reglab.engine import Population
    from reglab.engine.data import prepare

    spec = plan.spec
    if spec.training.precision == AUTO:  # either may be chosen: the half precision is checked
        spec = with_precision(spec, "bfloat16")
    if data is None:
        try:
            data = load_study_data(spec)
        except ReglabError as error:
            raise StudySpecError(spec.source or spec.name, [f"data: {error}"]) from None
        except (OSError, ValueError, KeyError) as error:
            raise StudySpecError(spec.source or spec.name, [
                f"data.dataset ({spec.data.dataset!r}): cannot be read: "
                f"{type(error).__name__}: {error}"]) from None
    problems: list[str] = check_regime_data(spec, data) if any(
        getattr(spec.data, key) for key in REGIME_KEYS) else []
    problems += _averaging_never_starts(plan)
    problems += _accuracy_of_a_regression(spec, data)
    problems += _error_of_class_indices(spec)
    problems += _accuracy_of_another_format(spec)
    checked: set[tuple] = set()  # populations that differ only in their data: checked once
    for population in plan.populations:
        firsts: dict[tuple, RunSpec] = {}
        for run in population.runs:
            firsts.setdefault((run.variant, run.point), run)
        same = (population.runs[0].structure_key(spec, data=False), tuple(firsts))
        if same in checked:
            continue
        checked.add(same)
        try:
            augment = population.runs[0].changes.get("augment")
            images = (bool(augment) or _uses(spec, "cutmix")) and len(spec.input_shape) == 1 \
                and data.image_shape is not None
            shape = data.image_shape if images else tuple(spec.input_shape)
        except Exception:  # pragma: no cover - the data's shape is checked above
            shape, images = tuple(spec.input_shape), False
        augmented = sorted({run.variant for run in population.runs
                            if run.changes.get("augment")})
        if augmented and len(shape) != 3:
            problems.append(
                f"variants.{', '.join(augmented)}.augment: augmentation warps images; expected "
                f"image data (samples of shape (height, width, channels), or a built-in "
                f"image dataset). Got samples of shape {list(shape)}.")
            continue
        members = []
        failures: dict[str, list[str]] = {}  # one line per distinct error, naming its variants
        for run in firsts.values():
            try:
                if run.changes.get("augment"):  # its warp's arguments, checked as built
                    AffineSpec(**run.changes["augment"])
                members.append(build_member(spec, run, shape, images))
            except ReglabError as error:
                failures.setdefault(str(error), []).append(run.variant + _point_label(run))
            except Exception as error:
                failures.setdefault(f"{type(error).__name__}: {error}", []).append(
                    run.variant + _point_label(run))
        for message, where in failures.items():
            everyone = len(where) == len(firsts) and len(where) > 1
            problems.append(f"{'every variant' if everyone else 'variants.' + ', '.join(where)}"
                            f": {message}")
        if not members or len(members) != len(firsts):
            continue
        try:
            engine = Population(members, loss=spec.training.loss,
                                metrics=spec.training.metrics)
            x = data.x_train
            if images:
                x = x.reshape(len(x), *data.image_shape)
            places = _split_places(spec)
            prepare(engine, x, data.y_train, None, places["training"])
            if data.x_val is not None and len(data.x_val):
                x_val = data.x_val
                if images:
                    x_val = x_val.reshape(len(x_val), *data.image_shape)
                prepare(engine, x_val, data.y_val, None, places["validation"])
            if data.x_test is not None and data.y_test is not None:
                x_test = data.x_test.reshape(len(data.x_test), *shape)
                prepare(engine, x_test, data.y_test, None, places["test"])
        except ReglabError as error:
            problems.append(f"variants {', '.join(sorted({v for v, _ in firsts}))}: {error}")
        except Exception as error:
            problems.append(f"variants {', '.join(sorted({v for v, _ in firsts}))}: "
                            f"{type(error).__name__}: {error}")
    if problems:
        raise StudySpecError(spec.source or spec.name, problems)
    return data


def _split_places(spec: StudySpec) -> dict[str, str]:
    """Where each split of the study's data comes from, for its errors: the file and, in an
    archive, the arrays (``data (test split: data.dataset 'd.npz', its x_test and y_test)``)."""
    data = spec.data
    source = f"data.dataset {data.dataset!r}"
    if data.dataset in BUILTIN_DATASETS:
        training, test = source, f"{source}'s test set"
    else:
        training = source
        if data.path.endswith(".npz"):
            from reglab.datasets.user_data import npz_keys

            training += ", its {} and {}".format(*npz_keys(data.path))
        if data.test:
            test = f"data.test {data.test!r}"
        elif data.test_split:
            test = f"data.test_split of {source}"
        else:
            test = f"{source}, its x_test and y_test"
    return {"training": f"data (training split: {training})",
            "validation": f"data (validation split: data.validation_split of {training})",
            "test": f"data (test split: {test})"}


def _accuracy_of_a_regression(spec, data) -> list[str]:
    """An accuracy metric (the default) over targets that are not class labels: every run
    would score 0, and the table would rank those zeros."""
    from reglab import losses

    accuracies = [m for m in spec.training.metrics if "acc" in m]
    y = getattr(data, "y_train", None)
    if not accuracies or y is None or not len(y) or data.class_labels:
        return []
    why = (f"the loss {spec.training.loss!r} is a regression's"
           if losses.resolve(spec.training.loss).regression else
           "non-integer values or rows of other values than class scores: a regression")
    return [f"training.metrics: {accuracies[0]!r} scores class labels; the data's targets are "
            f"not class labels ({why}). Set metrics = [\"mae\"] "
            "(or another error: the table ranks on it, lower is better), or [] to rank on "
            "the data loss (the default is ['accuracy'])."]


#: Keras's regression metrics (names lowercased, without '_'): an error between numbers
_REGRESSION_METRICS = frozenset({
    "mae", "mse", "mape", "msle", "rmse", "meanabsoluteerror", "meansquarederror",
    "meanabsolutepercentageerror", "meansquaredlogarithmicerror", "rootmeansquarederror",
    "logcosh", "logcosherror", "r2score"})


def _error_of_class_indices(spec) -> list[str]:
    """A regression metric under a sparse classification loss: it would compare each
    sample's class index with its class probabilities, about alike for every run (the
    table would rank noise)."""
    from reglab import losses

    if getattr(losses.resolve(spec.training.loss), "target_kind", None) != "sparse":
        return []
    errors = [m for m in spec.training.metrics
              if isinstance(m, str) and m.lower().replace("_", "") in _REGRESSION_METRICS]
    if not errors:
        return []
    return [f"training.metrics: {errors[0]!r} is an error between numbers; with the loss "
            f"{spec.training.loss!r} the targets are class indices and the predictions class "
            f"probabilities, so it would compare a class index with each probability, about "
            f"alike for every run. Expected a classification metric, such as "
            f"metrics = [\"accuracy\"] (or [] to rank on the data loss)."]


#: the named accuracies: the targets each scores, as the crossentropy of that format takes
#: them, and the losses' target kinds it scores (a top class of 0/1 rows, under the binary
#: crossentropy, is a multi-label model's); 'accuracy' and 'acc' follow the loss (Keras's
#: choice)
_ACCURACY_FORMATS = {
    "sparse_categorical_accuracy": ("class indices", "sparse_categorical_crossentropy",
                                    {"sparse"}),
    "categorical_accuracy": ("one-hot rows", "categorical_crossentropy",
                             {"categorical", "binary"}),
    "binary_accuracy": ("0/1 values (a sigmoid's)", "binary_crossentropy", {"binary"}),
}
_TARGETS = {"sparse": "class indices", "categorical": "one-hot rows",
            "binary": "0/1 values"}


def _accuracy_of_another_format(spec) -> list[str]:
    """A named accuracy of another target format than the loss's: 'categorical_accuracy'
    under the sparse loss compared each class index's argmax with the predictions' (and
    failed where members trained together), 'binary_accuracy' over a softmax scored each
    class column by itself (0.9 for every run of ten classes)."""
    from reglab import losses

    kind = getattr(losses.resolve(spec.training.loss), "target_kind", None)
    if kind not in _TARGETS:  # a regression's: _accuracy_of_a_regression says it
        return []
    for name in spec.training.metrics:
        wanted = _ACCURACY_FORMATS.get(name)
        if wanted is not None and kind not in wanted[2]:
            return [f"training.metrics: {name!r} scores {wanted[0]}, the targets of "
                    f"{wanted[1]!r}; with the loss {spec.training.loss!r} the targets are "
                    f"{_TARGETS[kind]}. Use \"accuracy\" (Keras's choice: the accuracy of "
                    f"the loss's targets)."]
    return []


def _averaging_never_starts(plan: StudyPlan) -> list[str]:
    """A ``swa.start`` at or after the study's epochs: the run would never average, and
    train as its variant without SWA (a verdict of 'equivalent' for a technique that never
    ran). Checked on the plan, after ``--epochs``."""
    epochs = plan.spec.training.epochs
    late: dict[str, int] = {}
    for run in plan.runs:
        swa = run.changes.get("swa")
        if isinstance(swa, dict) and int(swa.get("start", 0)) >= epochs:
            late.setdefault(run.variant + _point_label(run), int(swa.get("start", 0)))
    return [f"variants.{where}.swa.start: expected an epoch the runs train (0 to "
            f"{epochs - 1}, counted from 0; the averaging starts at the end of it) with "
            f"{epochs} epochs (training.epochs, or --epochs where given). Got {start}: the "
            "runs would never average."
            for where, start in late.items()]


def _point_label(run: RunSpec) -> str:
    return "[" + ",".join(f"{path}={format_value(value)}" for path, value in run.point) + "]" \
        if run.point else ""
