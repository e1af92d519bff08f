"""Study files: TOML in, a checked :class:`StudySpec` out, with every problem reported at once.

A study file names a dataset, a base model (layers as in the Keras API), training
settings, seeds, and variants, each a set of changes to the base. Any number inside a
variant may be a sweep (see :mod:`reglab.study.sweeps`). Parsing imports no torch and
writes nothing.

Example::

    seeds = 5
    [data]
    dataset = "fashion_mnist"
    validation_split = 0.1
    [model]
    input_shape = [784]
    layers = [{ type = "Dense", units = 64, activation = "relu" },
              { type = "Dense", units = 10, activation = "softmax" }]
    [training]
    optimizer = "adam"
    loss = "sparse_categorical_crossentropy"
    epochs = 30
    batch_size = 128
    [variants.baseline]
    [variants.l2]
    kernel_regularizer = { type = "L2", l2 = { log = [1e-5, 1e-1], n = 9 } }
    [stats]
    min_effect = 0.005   # optional; see reglab.stats.verdicts
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
import unicodedata
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reglab.errors import ConfigError, DataError, ReglabError, did_you_mean
from reglab.study import signatures
from reglab.study.precision import AUTO
from reglab.study.regimes import REGIME_KEYS, check_regimes
from reglab.study.sweeps import SweepSpec, is_number, is_sweep, set_path, sweep_values
from reglab.tune.spec import (
    SearchDimension,
    TuneSpec,
    check_tune,
    is_search_value,
    search_dimension,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

BUILTIN_DATASETS = ("fashion_mnist", "mnist")
DATA_SUFFIXES = (".npz", ".csv")
#: the losses a study trains with: the crossentropies, and Keras's regression losses by the
#: names ``keras.losses.get`` takes in lower case
LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
          "mean_squared_error", "mse", "mean_absolute_error", "mae",
          "mean_absolute_percentage_error", "mape", "mean_squared_logarithmic_error", "msle",
          "huber", "log_cosh", "poisson")
#: the errors a study may rank on (lower is better): a regression's
ERROR_METRICS = ("mae", "mse", "mape", "msle", "mean_absolute_error", "mean_squared_error",
                 "mean_absolute_percentage_error", "mean_squared_logarithmic_error")
METRICS = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy",
           "binary_accuracy")
#: the optimizers' gradient clipping arguments (``reglab.optimizers.optimizers.CLIPPINGS``;
#: reading a study imports no torch): at most one per optimizer, a number > 0
CLIPPINGS = ("clipnorm", "clipvalue", "global_clipnorm")
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
                   "adagrad": "Adagrad", "adadelta": "Adadelta", "adafactor": "Adafactor",
                   "adamax": "Adamax", "nadam": "Nadam", "lamb": "Lamb", "lion": "Lion",
                   "ftrl": "Ftrl"}

TOP_KEYS = ("name", "description", "seeds", "data", "model", "training", "variants", "stats",
            "tune")
DATA_KEYS = ("dataset", "validation_split", "label_column", "test", "test_split", "split_seed",
             "standardize", "train_size", "label_noise", "noisy_validation")
#: variant keys that shape every run of a study that uses them in any variant (each run
#: gets the batch transform, at strength 0 where its variant has none, and CutMix makes
#: every run's input an image: ``reglab.study.build.BATCH_TRANSFORMS``)
STUDY_WIDE_KEYS = ("mixup", "cutmix", "label_smoothing")
#: limits that keep a plan in memory and its names usable as file names
MAX_SEEDS = 10_000
#: the most epochs a study trains (a larger number is a typo: it would never end)
MAX_EPOCHS = 1_000_000
#: the largest seed a run takes (the store keeps seeds as SQLite's signed 64-bit integers)
MAX_SEED = 2**63 - 1
MAX_VARIANT_NAME = 64
#: control characters and invisible ones (zero-width, direction marks, the BOM): a name
#: holding them prints as another name, or rings the terminal's bell
_INVISIBLE = "\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff"
#: the most times a residual block repeats (a thousand blocks is already a deep network;
#: more would only take minutes to build before failing on memory)
MAX_RESIDUAL_REPEAT = 1000
#: a variant's name: no spaces, and none of the characters a run's name is made with
VARIANT_NAME = re.compile(
    rf"[^\s\[\]/,=\\{_INVISIBLE}]{{1,{MAX_VARIANT_NAME}}}")
#: a study's name: a label (the report's title), 1 to 128 printable characters
MAX_STUDY_NAME = 128
#: the bytes of one directory name on Linux's file systems (and macOS's)
MAX_DIRECTORY_NAME_BYTES = 255
STUDY_NAME = re.compile(rf"[^\x00-\x1f\x7f-\x9f]{{1,{MAX_STUDY_NAME}}}")
MODEL_KEYS = ("input_shape", "layers", "keras", "factory")
#: a residual block in a study's layers: { type = "Residual", repeat = 3, layers = [...],
#: activation = "relu" }, input + branch(input), then the activation
RESIDUAL = "Residual"
RESIDUAL_KEYS = ("type", "repeat", "layers", "activation")
TRAINING_KEYS = ("optimizer", "loss", "metrics", "epochs", "batch_size", "precision")
STATS_KEYS = ("min_effect",)
#: [training] precision -> the Keras dtype policy of the hidden layers (the output layer
#: stays float32, as Keras's mixed-precision guide advises); "float16" trains with dynamic
#: loss scaling (each run's optimizer wrapped in a LossScaleOptimizer, as Keras's compile);
#: "auto" (not a policy): bfloat16 where it is clearly faster, decided when the study starts
#: training (reglab/study/precision.py)
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
#: what a variant may change, and what each change is
VARIANT_KEYS = {
    "kernel_regularizer": "a regularizer on every Dense and Conv2D kernel",
    "bias_regularizer": "a regularizer on every Dense and Conv2D bias",
    "activity_regularizer": "a regularizer on every Dense and Conv2D output",
    "kernel_constraint": "a constraint on every Dense and Conv2D kernel",
    "dropout": "a Dropout(rate) after every hidden Dense or Conv2D layer",
    "batch_norm": "a BatchNormalization after every hidden Dense or Conv2D layer",
    "augment": "ImageDataGenerator-style augmentation of each training batch",
    "early_stopping": "Keras's EarlyStopping arguments",
    "optimizer": "another optimizer (a name or a table with 'type')",
    "learning_rate": "the optimizer's learning rate",
    "mixup": "MixUp of each training batch: { alpha = 0.2 }",
    "cutmix": "CutMix of each training batch: { factor = 1.0 } (image data)",
    "label_smoothing": "label smoothing of the training targets, a number in [0, 1]",
    "ema": "Keras's exponential moving average of the weights: { momentum = 0.99 }",
    "swa": "stochastic weight averaging from an epoch on: { start = 10 }",
    "stochastic_depth": "each residual block's branch dropped per sample with this rate",
}


@dataclass(frozen=True)
class LayerSpec:
    type: str
    args: dict[str, Any]


@dataclass(frozen=True)
class DataSpec:
    """``dataset`` as the study file writes it (a built-in name, or a path relative to the
    study file): what the fingerprint holds, so that the study is the same study from any
    working directory. ``location`` is where the file is (resolved when the file is read)
    and ``sha256`` its contents' hash, in the fingerprint, so that changed data is
    another study. ``test``, ``test_sha256`` and ``test_location`` are the same for a separate
    test file. ``test_split`` is the fraction of the training file held out as the test set
    (stratified, drawn with ``split_seed``, the same for every run); ``standardize`` scales
    each feature with the mean and standard deviation of the training split.
    ``train_size`` and ``label_noise`` hold the values of the data regimes (see
    :mod:`reglab.study.regimes`; () when not set: the whole training split, clean labels),
    ``noisy_validation`` whether validation labels are as noisy as training's."""

    dataset: str
    validation_split: float = 0.0
    label_column: str = "label"
    sha256: str = ""
    location: str = field(default="", compare=False)
    test: str = ""
    test_sha256: str = ""
    test_location: str = field(default="", compare=False)
    test_split: float = 0.0
    split_seed: int = 0
    standardize: bool = False
    train_size: tuple = ()
    label_noise: tuple = ()
    noisy_validation: bool = True

    @property
    def path(self) -> str:
        """Where to read the data: the resolved location, else the name as written."""
        return self.location or self.dataset

    @property
    def test_path(self) -> str:
        """Where to read the separate test file ('' when there is none)."""
        return self.test_location or self.test


@dataclass(frozen=True)
class TrainingSpec:
    optimizer: dict[str, Any]
    loss: str
    metrics: tuple[str, ...]
    epochs: int
    batch_size: int
    precision: str = "float32"


@dataclass(frozen=True)
class StatsSpec:
    """How verdicts are reached. ``min_effect``: the smallest difference to the baseline, in
    the ranked metric's units, that a 'better' or 'worse' verdict must clear; None for the
    default (one binomial standard error of the baseline's test accuracy, see
    :func:`reglab.study.report_table.resolve_min_effect`)."""

    min_effect: float | None = None


@dataclass(frozen=True)
class VariantSpec:
    """A named set of changes to the base model; numbers may be sweeps, or, in a tuning
    study, search dimensions (``search``; see :mod:`reglab.tune.spec`)."""

    name: str
    changes: dict[str, Any]
    sweeps: tuple[SweepSpec, ...] = ()
    search: tuple[SearchDimension, ...] = ()


def study_wide_keys(variants) -> list[str]:
    """The :data:`STUDY_WIDE_KEYS` that some variant of ``variants`` (as canonical JSON
    lists them, or VariantSpec objects) sets: they shape every run of the study."""
    used = set()
    for variant in variants or ():
        changes = variant.get("changes") if isinstance(variant, dict) else variant.changes
        used.update(key for key in STUDY_WIDE_KEYS if isinstance(changes, dict) and key in changes)
    return sorted(used)


@dataclass(frozen=True)
class StudySpec:
    name: str
    seeds: tuple[int, ...]
    data: DataSpec
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    training: TrainingSpec
    variants: tuple[VariantSpec, ...]
    description: str = ""
    stats: StatsSpec = StatsSpec()
    #: a tuning study's [tune] section (None: a grid study); its seeds are then the
    #: confirmation's fresh seeds
    tune: TuneSpec | None = None
    source: str = field(default="", compare=False)

    def canonical_json(self) -> str:
        """The resolved study as JSON with sorted keys: what the store records and hashes.

        ``[stats]`` is in it when set: a minimum effect is chosen before the results are seen,
        and the store keeps the one its runs were made for (``reglab show`` and the report
        read it there)."""
        data = asdict(self)
        data.pop("source")
        data["data"].pop("location")
        data["data"].pop("test_location")
        if not data["data"]["sha256"]:
            del data["data"]["sha256"]  # a built-in dataset
        for key, default in _DATA_DEFAULTS.items():  # keys added later: absent when not set,
            if data["data"][key] == default:          # so older studies hash as they did
                del data["data"][key]
        if data["training"]["precision"] == "float32":
            del data["training"]["precision"]  # the default: studies from before it hash alike
        if self.stats == StatsSpec():
            del data["stats"]  # likewise
        if self.tune is None:
            del data["tune"]  # likewise
        for variant in data["variants"]:
            if not variant["search"]:
                del variant["search"]
            for sweep in variant["sweeps"]:  # a list of ints stays ints (sweeps.py) but
                # hashes as the floats it was before, so that older studies resume
                if all(isinstance(v, int) for v in sweep["values"]):
                    sweep["values"] = [float(v) for v in sweep["values"]]
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=list)

    def fingerprint(self) -> str:
        """SHA-256 of :meth:`canonical_json`."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def resumable_keys(self) -> tuple[str, ...]:
        """The keys (dotted, as the store names a change) that a study may change and still
        resume: its description, and a tuning's budget (``tune.trials``, ``model_epochs``,
        ``wall_time``: more trials asked, or fewer; those told stay), not population-based
        training's, whose ``trials`` is the population it trains."""
        if self.tune is None or self.tune.scheduler == "pbt":
            return ("description",)
        return ("description", "tune.trials", "tune.model_epochs", "tune.wall_time")

    def work_fingerprint(self) -> str:
        """The fingerprint of what the study computes: without the keys it may change and
        still resume (:meth:`resumable_keys`)."""
        return hashlib.sha256(json.dumps(self._work(), sort_keys=True).encode()).hexdigest()

    def job_fingerprint(self, run_changes: list[dict]) -> str:
        """What a checkpoint of one job is checked against (besides its run names): the
        study's work without its seeds and variants, and the settings of the job's runs
        (``run_changes``, in order). A study grown by more seeds or variants
        (:mod:`reglab.study.extension`) keeps its killed jobs' checkpoints, and a run
        whose settings changed under the same name never takes another's."""
        work = self._work()
        if self.tune is None:  # a tuning's variants are its search space
            work.pop("seeds", None)
            work["study_wide"] = study_wide_keys(work.pop("variants", None))
        work["job_runs"] = run_changes
        return hashlib.sha256(json.dumps(work, sort_keys=True, default=repr).encode()
                              ).hexdigest()

    def _work(self) -> dict:
        data = json.loads(self.canonical_json())
        for key in self.resumable_keys():
            *parents, last = key.split(".")
            node = data
            for parent in parents:
                node = node.get(parent) or {}
            node.pop(last, None)
        return data

    @classmethod
    def from_canonical(cls, data: dict, where: str = "the stored study") -> StudySpec:
        """The spec back from ``json.loads(spec.canonical_json())`` (what a store keeps).

        Raises:
            DataError: ``data`` is not a study this version of reglab wrote (``where`` names
                the store in the message).
        """
        try:
            return cls._from_canonical(data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise DataError(f"{where}: not a study this version of reglab can read "
                            f"({type(error).__name__}: {error}). It was written by another "
                            "version, or is damaged; it is left as it is.") from None

    @classmethod
    def _from_canonical(cls, data: dict) -> StudySpec:
        training = dict(data["training"])
        training["metrics"] = tuple(training["metrics"])
        tune = data.get("tune")
        if tune is not None:
            tune = TuneSpec(**{**tune, "variants": tuple(tune["variants"]),
                               "pbt_factors": tuple(tune.get("pbt_factors", (0.8, 1.25)))})
        return cls(
            name=data["name"], seeds=tuple(data["seeds"]), data=_data_spec(data["data"]),
            input_shape=tuple(data["input_shape"]),
            layers=tuple(LayerSpec(layer["type"], layer["args"]) for layer in data["layers"]),
            training=TrainingSpec(**training),
            variants=tuple(
                VariantSpec(v["name"], v["changes"],
                            tuple(SweepSpec(s["path"], tuple(s["values"])) for s in v["sweeps"]),
                            tuple(SearchDimension(d["path"], d["kind"], d["low"], d["high"],
                                                  tuple(d["choices"]))
                                  for d in v.get("search", ())))
                for v in data["variants"]),
            description=data.get("description", ""), stats=StatsSpec(**data.get("stats", {})),
            tune=tune)


#: [data] keys that enter the canonical JSON only when they differ from these
_DATA_DEFAULTS = {"test": "", "test_sha256": "", "test_split": 0.0, "split_seed": 0,
                  "standardize": False, "train_size": (), "label_noise": (),
                  "noisy_validation": True}


def _data_spec(data: dict) -> DataSpec:
    """The DataSpec of a canonical JSON's ``data`` (lists back to tuples, as parsed)."""
    data = dict(data)
    data["train_size"] = tuple(data.get("train_size", ()))
    data["label_noise"] = tuple(
        tuple(tuple(row) for row in value) if isinstance(value, list) else value
        for value in data.get("label_noise", ()))
    return DataSpec(**data)


class StudySpecError(ConfigError):
    """Every problem of a study file, one per line, each with its place."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, list(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the study file:\n{lines}")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


class _Checker:
    def __init__(self):
        self.problems: list[str] = []

    def add(self, message: str) -> None:
        self.problems.append(message)

    def keys(self, where: str, table: Any, allowed) -> dict:
        if not isinstance(table, dict):
            self.add(f"{where}: expected a table. Got {table!r}.")
            return {}
        for key in table:
            if key not in allowed:
                self.add(f"{where}: unknown key {key!r}.{did_you_mean(key, allowed)} "
                         f"Expected one of: {', '.join(sorted(allowed))}.")
        return table

    def switches(self, where: str, table: dict, defaults: dict) -> None:
        """Each argument whose default is true or false given as true or false (a string
        'false' would be true in Python)."""
        for key, value in table.items():
            if isinstance(defaults.get(key), bool) and not isinstance(value, bool):
                self.add(f"{where}.{key}: expected true or false. Got {value!r}.")

    def int_(self, where, value, minimum=1):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(f"{where}: expected an int >= {minimum}. Got {value!r}.")
            return None
        return value

    def fraction(self, where, value, upper_open=True):
        if not is_number(value) or value < 0 or (value >= 1 if upper_open else value > 1):
            self.add(f"{where}: expected a number in [0, 1{')' if upper_open else ']'}. "
                     f"Got {value!r}.")
            return None
        return float(value)

    def typed(self, where: str, table: Any, kind: str, names=None) -> dict | None:
        """A ``{ type = "Class", args... }`` node checked against the class's signature."""
        known = signatures.classes(kind)
        if isinstance(table, str):  # a bare name, as Keras accepts 'adam'
            table = {"type": table}
        if not isinstance(table, dict) or "type" not in table:
            self.add(f"{where}: expected a table with 'type' (one of {', '.join(sorted(known))})."
                     f" Got {table!r}.")
            return None
        type_ = table["type"]
        if not isinstance(type_, str):
            self.add(f"{where}.type: expected the name of {_article(kind)} {kind} (one of "
                     f"{', '.join(sorted(known))}). Got {type_!r}.")
            return None
        if names and type_.lower() in names:
            type_ = names[type_.lower()]
        if type_ not in known:
            self.add(f"{where}.type: unknown {kind} {type_!r}.{did_you_mean(str(type_), known)}"
                     f" Expected one of: {', '.join(sorted(known))}.")
            return None
        self.keys(where, {k: v for k, v in table.items() if k != "type"}, known[type_])
        self.switches(where, table, signatures.defaults(kind).get(type_, {}))
        missing = [name for name in signatures.required(kind)[type_] if name not in table]
        if missing:
            self.add(f"{where}: {kind} {type_!r} needs {' and '.join(map(repr, missing))} "
                     f"(a table such as {{ type = \"{type_}\", {missing[0]} = ... }}). Got "
                     f"{table!r}.")
            return None
        return {**table, "type": type_}


def _data_input_shape(location: str, label_column) -> tuple[list[int] | None, str]:
    """One sample's shape in the study's own data file, for a model that does not give
    ``input_shape``, and why not where there is none: a CSV's columns but the label, an
    archive's ``x`` (or ``x_train``) past its first axis, read from the array's header; where
    the file does not say it so, its loader reads it, or says what is wrong with the file."""
    from reglab.datasets.user_data import csv_columns, load_csv, load_npz, npz_keys

    csv_file = location.endswith(".csv")
    try:
        if csv_file:
            columns = csv_columns(location)
            if len(columns) >= 2:
                return [len(columns) - 1], ""
        else:
            with zipfile.ZipFile(location) as archive, \
                    archive.open(npz_keys(location)[0] + ".npy") as f:
                version = np.lib.format.read_magic(f)
                read = {(1, 0): np.lib.format.read_array_header_1_0,
                        (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                shape = read(f)[0] if read is not None else ()
            if len(shape) >= 2:
                return list(shape[1:]), ""
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, ReglabError):
        pass  # the loader says what is wrong
    try:
        x = (load_csv(location, label_column) if csv_file
             else load_npz(location, *npz_keys(location)))[0]
    except ReglabError as error:
        return None, str(error)
    if x.ndim >= 2:
        return list(x.shape[1:]), ""
    return None, f"its samples have no shape of their own (x of shape {list(x.shape)})"


def _check_layer_args(checker: _Checker, where: str, args: dict) -> None:
    for key, value in args.items():
        if key.endswith("_regularizer") and value is not None:
            checker.typed(f"{where}.{key}", value, "regularizer")
        if key.endswith("_constraint") and value is not None:
            checker.typed(f"{where}.{key}", value, "constraint")


def _collect_sweeps(checker, where: str, node: Any, path: str, out: list,
                    broken: list) -> Any:
    """Replaces sweeps inside ``node`` by their first value, recording each SweepSpec (and
    in ``broken`` where a sweep's grid is wrong: None stands there)."""
    if is_sweep(node) or (isinstance(node, list) and not node):  # [] a sweep of no point
        values = sweep_values(node, where, checker.problems)
        if values:
            out.append(SweepSpec(path, values))
            return values[0]
        broken.append(where)
        return None
    if isinstance(node, dict):
        return {k: _collect_sweeps(checker, f"{where}.{k}", v, f"{path}.{k}" if path else k,
                                   out, broken)
                for k, v in node.items()}
    return node


def _not_a_file(candidate: Path) -> str:
    """Why a path the study names is not a file it can read: missing, a directory, or
    something else that is no regular file (a pipe, a device, a socket)."""
    if candidate.is_dir():
        return f"{str(candidate)!r} is a directory; expected a file there."
    if candidate.exists():
        return (f"{str(candidate)!r} is not a regular file (a pipe, a device or a socket); "
                "expected a file there.")
    return f"no file at {str(candidate)!r}."


def _check_residual(checker: _Checker, where: str, node: dict) -> LayerSpec | None:
    """A residual block: its repeat count, its branch's layers (checked as any layer; no
    block inside a block) and an optional activation after the sum."""
    checker.keys(where, node, RESIDUAL_KEYS)
    repeat = checker.int_(f"{where}.repeat", node.get("repeat", 1))
    if repeat is not None and repeat > MAX_RESIDUAL_REPEAT:
        checker.add(f"{where}.repeat: expected at most {MAX_RESIDUAL_REPEAT} blocks. Got "
                    f"{repeat}.")
        repeat = None
    branch = node.get("layers")
    if not isinstance(branch, list) or not branch:
        checker.add(f"{where}.layers: expected a non-empty list of layer tables (the branch). "
                    f"Got {branch!r}.")
        return None
    checked_branch = []
    for j, inner in enumerate(branch):
        if isinstance(inner, dict) and inner.get("type") == RESIDUAL:
            checker.add(f"{where}.layers[{j}]: a residual block inside a residual block is "
                        "not supported; put the blocks one after another.")
            continue
        checked = checker.typed(f"{where}.layers[{j}]", inner, "layer")
        if checked is not None:
            _check_layer_args(checker, f"{where}.layers[{j}]",
                              {k: v for k, v in checked.items() if k != "type"})
            checked_branch.append(checked)
    activation = node.get("activation")
    if activation is not None and not isinstance(activation, str):
        checker.add(f"{where}.activation: expected an activation's name. Got {activation!r}.")
    if repeat is None or len(checked_branch) != len(branch):
        return None
    args = {"repeat": repeat, "layers": checked_branch}
    if activation is not None:
        args["activation"] = activation
    return LayerSpec(RESIDUAL, args)


def _model_from_source(checker: _Checker, path: Path, model_raw: dict):
    """``(where, (input shape or None, layers))`` of ``[model] keras`` or ``factory``."""
    from reglab.study import model_source

    if "keras" in model_raw:
        value = model_raw["keras"]
        where = "model.keras"
        if not isinstance(value, str) or not value.endswith(".keras"):
            checker.add(f"{where}: expected a path to a .keras file. Got {value!r}.")
            return where, (None, [])
        candidate = path.parent / value if not Path(value).is_absolute() else Path(value)
        if not candidate.is_file():
            checker.add(f"{where}: {_not_a_file(candidate)}")
            return where, (None, [])
        return f"{where} ({value})", model_source.from_keras_file(
            candidate, f"{where} ({value})", checker.problems)
    value = model_raw["factory"]
    where = "model.factory"
    if not isinstance(value, str):
        checker.add(f"{where}: expected 'package.module:function'. Got {value!r}.")
        return where, (None, [])
    return f"{where} ({value})", model_source.from_factory(value, path.parent, where,
                                                           checker.problems)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _npz_has_test_part(path: Path) -> bool:
    """Whether a .npz archive holds ``x_test`` (read from its zip directory, without numpy)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "x_test.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False  # reported when the data are read


def _check_test_data(checker: _Checker, path: Path, data_raw: dict, dataset: Any,
                     dataset_sha256: str = "") -> dict:
    """The [data] keys of the test set and of standardization, as DataSpec's arguments."""
    out: dict[str, Any] = {}
    standardize = data_raw.get("standardize", False)
    if not isinstance(standardize, bool):
        checker.add(f"data.standardize: expected true or false. Got {standardize!r}.")
    else:
        out["standardize"] = standardize
    test_split = data_raw.get("test_split")
    if test_split is not None:
        if not is_number(test_split) or not 0 < test_split < 1:
            checker.add("data.test_split: expected a number in (0, 1), the fraction of the "
                        f"training file held out as the test set. Got {test_split!r}.")
        else:
            out["test_split"] = float(test_split)
    if "split_seed" in data_raw:
        seed = checker.int_("data.split_seed", data_raw["split_seed"], minimum=0)
        if test_split is None:
            checker.add("data.split_seed: seeds the held-out test split; expected only with "
                        f"test_split. Got split_seed = {data_raw['split_seed']!r} without it.")
        elif seed is not None:
            out["split_seed"] = seed
    test = data_raw.get("test")
    if test is not None and (not isinstance(test, str) or not test):
        checker.add(f"data.test: expected a path to a .csv or .npz test file. Got {test!r}.")
        test = None
    if test is not None and test_split is not None:
        checker.add("data.test, data.test_split: expected one of them (a separate test file, "
                    "or a fraction of the training file held out). Got both.")
    if not isinstance(dataset, str):
        return out
    if dataset in BUILTIN_DATASETS:
        for key in ("test", "test_split"):
            if key in data_raw:
                checker.add(f"data.{key}: {dataset!r} has its own test set (10,000 images), "
                            "which every study of it is tested on. Expected data.test and "
                            "data.test_split only with a .csv or .npz dataset.")
        return out
    suffix = Path(dataset).suffix
    if suffix not in DATA_SUFFIXES:
        return out  # reported with data.dataset
    base = path.parent / dataset if not Path(dataset).is_absolute() else Path(dataset)
    archive_test = suffix == ".npz" and base.is_file() and _npz_has_test_part(base)
    if archive_test and test_split is not None:
        checker.add(f"data.test_split: {dataset!r} holds a test set (x_test, y_test), so a "
                    "held-out split would be a second one. Expected test_split only for data "
                    "without a test part; remove it (or x_test from the archive).")
    if test is None:
        return out
    if archive_test:
        checker.add(f"data.test: {dataset!r} holds a test set (x_test, y_test) already. Expected "
                    "a separate test file only for data without a test part.")
    candidate = path.parent / test if not Path(test).is_absolute() else Path(test)
    if Path(test).suffix != suffix:
        checker.add(f"data.test: expected a {suffix} file, the format of data.dataset. "
                    f"Got {test!r}.")
    elif not candidate.is_file():
        checker.add(f"data.test: {_not_a_file(candidate)}")
    else:
        test_sha256 = _file_sha256(candidate)
        if dataset_sha256 and test_sha256 == dataset_sha256:  # hashed once, above
            checker.add(f"data.test: {test!r} holds the training data of data.dataset "
                        f"({dataset!r}) byte for byte; a test set must be samples the study "
                        "does not train on (data.test_split holds some out).")
        out.update(test=test, test_location=str(candidate.resolve()), test_sha256=test_sha256)
    return out


def _check_variant(checker: _Checker, name: str, table: Any,
                   tuning: bool = False) -> VariantSpec | None:
    # a name refused below is shown as Python writes it: no control or invisible character
    # of it reaches the terminal through the places its problems name
    where = f"variants.{name if VARIANT_NAME.fullmatch(name) else repr(name)}"
    if not VARIANT_NAME.fullmatch(name):
        checker.add(f"{where}: a variant's name must be 1 to {MAX_VARIANT_NAME} characters "
                    "without spaces, control or invisible characters, '[', ']', '/', ',', "
                    "'=' or '\\' (run names are made of the variant's name and those). Got "
                    f"{name!r}.")
    table = checker.keys(where, table, VARIANT_KEYS)
    if tuning:
        return _check_searched_variant(checker, name, where, table)
    sweeps: list[SweepSpec] = []
    broken: list[str] = []  # where a sweep's grid is wrong (said once, there)
    resolved = {k: _collect_sweeps(checker, f"{where}.{k}", v, k, sweeps, broken)
                for k, v in table.items()}
    # every point, as a value written alone would be checked
    _check_at_points(checker, where, resolved,
                     [(sweep.path, value) for sweep in sweeps for value in sweep.values[1:]],
                     broken)
    return VariantSpec(name, table, tuple(sweeps))


def _check_at_points(checker: _Checker, where: str, base: dict,
                     points: list[tuple[str, Any]], broken: list[str] = ()) -> None:
    """Checks a variant's changes as ``base`` holds them, and with each ``(path, value)`` of
    ``points`` put in its place, each problem said once (none at a ``broken`` place: a wrong
    grid, said there already)."""
    start = len(checker.problems)
    _check_changes(checker, where, base)
    for path, value in points:
        point = copy.deepcopy(base)
        set_path(point, path, value)
        _check_changes(checker, where, point)
    new = [problem for problem in checker.problems[start:]
           if not any(problem.startswith(f"{place}:") for place in broken)]
    checker.problems[start:] = list(dict.fromkeys(new))


def _collect_search(checker, where: str, node: Any, path: str, out: list,
                    broken: list) -> Any:
    """Replaces search dimensions inside ``node`` by None, recording each one (the places
    of those that are wrong, said there already, in ``broken``)."""
    if is_search_value(node):
        dimension = search_dimension(node, path, where, checker.problems)
        if dimension is not None:
            out.append(dimension)
        else:
            broken.append(where)
        return None
    if isinstance(node, dict):
        return {k: _collect_search(checker, f"{where}.{k}", v, f"{path}.{k}" if path else k, out,
                                   broken)
                for k, v in node.items()}
    return node


def _check_searched_variant(checker: _Checker, name: str, where: str,
                            table: dict) -> VariantSpec:
    """A tuning study's variant: its values are checked at every end of every range (and at
    every choice), each problem reported once."""
    dimensions: list[SearchDimension] = []
    broken: list[str] = []
    resolved = {k: _collect_search(checker, f"{where}.{k}", v, k, dimensions, broken)
                for k, v in table.items()}
    first = copy.deepcopy(resolved)
    for dimension in dimensions:
        set_path(first, dimension.path, dimension.corners[0])
    _check_at_points(checker, where, first, [(dimension.path, value) for dimension in dimensions
                                             for value in dimension.corners[1:]], broken)
    return VariantSpec(name, table, (), tuple(dimensions))


def _check_optimizer(checker: _Checker, where: str, table: Any) -> dict | None:
    """An optimizer node: its type and argument names, a learning rate > 0, and every number
    finite (each class's own ranges, such as beta_1 < 1, are checked when it is built)."""
    node = checker.typed(where, table, "optimizer", OPTIMIZER_NAMES)
    for key, value in (node or {}).items():
        if key in ("learning_rate", *CLIPPINGS):
            if not is_number(value) or value <= 0:
                checker.add(f"{where}.{key}: expected a finite number > 0. Got {value!r}.")
        elif isinstance(value, float) and not is_number(value):
            checker.add(f"{where}.{key}: expected a finite number. Got {value!r}.")
    clippings = [key for key in CLIPPINGS if key in (node or {})]
    if len(clippings) > 1:
        checker.add(f"{where}: only one of {', '.join(CLIPPINGS)} can be set (as in Keras). "
                    f"Got {', '.join(clippings)}.")
    return node


def _check_changes(checker: _Checker, where: str, resolved: dict) -> None:
    """Checks a variant's changes with every value filled in."""
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
        if key in resolved:
            node = checker.typed(f"{where}.{key}", resolved[key], "regularizer")
            for arg in ("l1", "l2"):
                value = (node or {}).get(arg)
                if value is not None and (not is_number(value) or value < 0):
                    checker.add(f"{where}.{key}.{arg}: expected a finite number >= 0. Got {value!r}.")
    if "kernel_constraint" in resolved:
        checker.typed(f"{where}.kernel_constraint", resolved["kernel_constraint"], "constraint")
    if "dropout" in resolved:
        checker.fraction(f"{where}.dropout", resolved["dropout"])
    if "batch_norm" in resolved and not isinstance(resolved["batch_norm"], bool):
        checker.add(f"{where}.batch_norm: expected true or false. Got {resolved['batch_norm']!r}.")
    if "augment" in resolved:
        augment = checker.keys(f"{where}.augment", resolved["augment"],
                               signatures.classes("augment")["AffineSpec"])
        defaults = signatures.defaults("augment").get("AffineSpec", {})
        checker.switches(f"{where}.augment", augment, defaults)
        for key, value in augment.items():  # the ranges: a number (a [low, high] pair too)
            if type(defaults.get(key)) is float and not (is_number(value) or (
                    isinstance(value, list) and value and all(map(is_number, value)))):
                checker.add(f"{where}.augment.{key}: expected a finite number. "
                            f"Got {value!r}.")
    if "early_stopping" in resolved:
        stop = checker.keys(f"{where}.early_stopping", resolved["early_stopping"],
                            signatures.classes("early_stopping")["EarlyStopping"])
        for key in ("patience", "start_from_epoch"):
            if key in stop:
                checker.int_(f"{where}.early_stopping.{key}", stop[key], minimum=0)
        for key in ("min_delta", "baseline"):
            if key in stop and not is_number(stop[key]):
                checker.add(f"{where}.early_stopping.{key}: expected a finite number. "
                            f"Got {stop[key]!r}.")
        checker.switches(f"{where}.early_stopping", stop,
                         signatures.defaults("early_stopping").get("EarlyStopping", {}))
    if "optimizer" in resolved:
        _check_optimizer(checker, f"{where}.optimizer", resolved["optimizer"])
    for key, argument in (("mixup", "alpha"), ("cutmix", "factor")):
        if key in resolved:
            node = checker.keys(f"{where}.{key}", resolved[key], (argument,))
            value = node.get(argument, 0.2 if key == "mixup" else 1.0)
            if not is_number(value) or value < 0:
                checker.add(f"{where}.{key}.{argument}: expected a finite number >= 0. Got {value!r}.")
    if "ema" in resolved:
        ema = checker.keys(f"{where}.ema", resolved["ema"], ("momentum", "overwrite_frequency"))
        momentum = ema.get("momentum", 0.99)
        if not is_number(momentum) or not 0 <= momentum <= 1:
            checker.add(f"{where}.ema.momentum: expected a number in [0, 1]. Got {momentum!r}.")
        if "overwrite_frequency" in ema:
            checker.int_(f"{where}.ema.overwrite_frequency", ema["overwrite_frequency"])
    if "swa" in resolved:
        swa = checker.keys(f"{where}.swa", resolved["swa"], ("start",))
        checker.int_(f"{where}.swa.start", swa.get("start", 0), minimum=0)
    if "stochastic_depth" in resolved:
        checker.fraction(f"{where}.stochastic_depth", resolved["stochastic_depth"])
    if "label_smoothing" in resolved:
        checker.fraction(f"{where}.label_smoothing", resolved["label_smoothing"],
                         upper_open=False)
    if "learning_rate" in resolved:
        value = resolved["learning_rate"]
        if not is_number(value) or value <= 0:
            checker.add(f"{where}.learning_rate: expected a finite number > 0. Got {value!r}.")


def _check_input_layer(checker: _Checker, layers: list, input_shape: tuple[int, ...]) -> None:
    """An ``InputLayer`` (or a first layer's ``input_shape``) says the shape the model takes,
    as in Keras: it must be the model's input shape (``model.input_shape``, or the data's),
    and an InputLayer comes first. Either had been passed over without a word: the model
    took the data's shape whatever the layer said."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, LayerSpec):
            continue
        if layer.type == "InputLayer" and i > 0:
            checker.add(f"model.layers[{i}]: an InputLayer starts a model (Keras's Sequential "
                        "takes it first). Remove it (model.input_shape, or the data, gives "
                        "the model's input shape).")
            continue
        if i > 0:
            continue
        args = layer.args
        given = args.get("shape", args.get("input_shape"))
        for batched in ("batch_shape", "batch_input_shape"):
            if given is None and isinstance(args.get(batched), list) and args[batched]:
                given = args[batched][1:]
        if isinstance(given, list) and input_shape and all(
                isinstance(d, int) and not isinstance(d, bool) for d in given) and \
                tuple(given) != tuple(input_shape):
            key = next(k for k in ("shape", "input_shape", "batch_shape", "batch_input_shape")
                       if k in args)
            checker.add(f"model.layers[0].{key}: the model takes samples of shape "
                        f"{list(input_shape)} (model.input_shape, or the data's). Got "
                        f"{args[key]!r}; remove it or make it {list(input_shape)}.")


def _check_layer_names(checker: _Checker, layers: list) -> None:
    """Layer names given twice: Keras (and ``Sequential.add``) refuse a model whose layers
    share a name; a study's model had taken them."""
    first: dict[str, int] = {}
    for i, layer in enumerate(layers):
        name = layer.args.get("name") if isinstance(layer, LayerSpec) else None
        if not isinstance(name, str):
            continue
        if name in first:
            checker.add(f"model.layers[{i}].name: {name!r} is the name of "
                        f"model.layers[{first[name]}] too; a model's layers have unique names, "
                        "as in Keras. Give another name (or none for an automatic one).")
        else:
            first[name] = i


def _check_monitors(checker: _Checker, variants, metrics) -> None:
    """Each variant's ``early_stopping.monitor`` (each choice of a tuning study's list): one
    of the values runs log (``loss``, ``data_loss``, ``penalty``, the metrics, or their
    ``val_`` forms), whose direction ``mode`` tells (an unknown mode falls back to 'auto', as
    the run will). A typo or a direction 'auto' cannot tell failed every run of the
    population when training started; here it is one line at validate. A ``val_`` value
    without a validation split stays allowed, as in Keras (the run warns and never stops):
    studies stored with one go on."""
    from reglab import monitors
    from reglab.errors import ConfigError

    names = ("loss", "data_loss", "penalty", *metrics)
    logged = (*names, *(f"val_{n}" for n in names))
    for variant in variants:
        stop = variant.changes.get("early_stopping")
        if not isinstance(stop, dict):
            continue
        where = f"variants.{variant.name}.early_stopping.monitor"
        monitor = stop.get("monitor", "val_loss")
        mode = stop.get("mode", "auto")
        mode = mode if mode in ("min", "max") else "auto"
        for choice in monitor if isinstance(monitor, list) else [monitor]:
            if not isinstance(choice, str):
                continue  # the rule's own check says what a monitor must be
            if choice not in logged:
                checker.add(f"{where}: expected a value the runs log: {', '.join(logged)} "
                            f"(training.metrics sets which). Got {choice!r}.")
                continue
            try:
                monitors.direction(choice, mode)
            except ConfigError as error:
                checker.add(f"{where}: {error}")


def _check_study_name(checker: _Checker, raw: dict, path: Path) -> str:
    """``name`` (default: the file's stem): a label, checked as a directory name only where
    it makes one (:func:`default_directory_problem`)."""
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name) or not name.strip():
        checker.add(f"name: a study's name must be a string of 1 to {MAX_STUDY_NAME} "
                    f"characters, not only spaces, without control characters. Got {name!r}.")
        return str(name)
    return name


def default_directory_problem(name: str) -> str | None:
    """Why ``runs/<name>``, a study's default output directory, cannot be made of ``name``
    (None when it can): it must be one directory name inside ``runs/``, neither above it nor
    ``runs/`` itself."""
    if "/" in name or "\\" in name or not name.strip() or name in (".", ".."):
        return (f"the study's name {name!r} cannot be its default output directory "
                "runs/<name>: that must be one directory name (no '/' or '\\', not '.' or "
                "'..'). Give --out DIR, or a name without them.")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_DIRECTORY_NAME_BYTES:
        return (f"the study's name cannot be its default output directory runs/<name>: it "
                f"is {size} bytes in UTF-8, and a directory name holds at most "
                f"{MAX_DIRECTORY_NAME_BYTES}. Give --out DIR, or a shorter name.")
    return None


def _deep_line(text: str, depth: int = 100) -> int:
    """The line where brackets and braces first nest ``depth`` deep (outside strings and
    comments), for the error of a file too deeply nested to read; the last line if none."""
    level, quote, line = 0, None, 1
    position = 0
    while position < len(text):
        char = text[position]
        if char == "\n":
            line += 1
        elif quote:
            if char == "\\" and quote == '"':
                position += 1
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            end = text.find("\n", position)
            position = len(text) if end < 0 else end
            continue
        elif char in "[{":
            level += 1
            if level >= depth:
                return line
        elif char in "]}":
            level -= 1
        position += 1
    return line


def parse_study(source: str | Path, text: str | None = None) -> StudySpec:
    """Reads and checks a study file; raises :class:`StudySpecError` listing every problem."""
    path = Path(source)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise StudySpecError(str(path), [f"cannot read the file: {error.strerror}."]) from None
        except UnicodeDecodeError as error:
            raise StudySpecError(str(path), [
                f"not a text file: byte {error.object[error.start]:#04x} at position "
                f"{error.start} is not UTF-8. A study file is TOML text."]) from None
    # a byte-order mark (Windows editors write one), as the CSV reader takes it
    text = text.removeprefix("\ufeff")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StudySpecError(str(path), [f"TOML syntax: {error}."]) from None
    except RecursionError:  # tomllib reads nested arrays and tables by recursion
        raise StudySpecError(str(path), [
            f"TOML nesting: arrays or inline tables nested too deep for the reader (line "
            f"{_deep_line(text)}). Expected a study file's values: a few levels at most."]) \
            from None
    checker = _Checker()
    checker.keys("study", raw, TOP_KEYS)
    study_name = _check_study_name(checker, raw, path)
    if not isinstance(raw.get("description", ""), str):
        checker.add(f"description: expected a string. Got {raw['description']!r}.")
    for section in ("data", "model", "training"):
        if section not in raw:
            checker.add(f"[{section}]: missing section.")
    if "variants" not in raw:
        checker.add("variants: expected at least one [variants.NAME] table. Got none.")

    seeds_raw = raw.get("seeds", 1)
    seeds: tuple[int, ...] = ()
    if isinstance(seeds_raw, list):
        if not seeds_raw or not all(isinstance(s, int) and not isinstance(s, bool)
                                    and 0 <= s <= MAX_SEED for s in seeds_raw) \
                or len(set(seeds_raw)) != len(seeds_raw):
            checker.add(f"seeds: expected an int > 0 or a list of distinct ints in "
                        f"[0, 2**63 - 1]. Got {seeds_raw!r}.")
        else:
            seeds = tuple(seeds_raw)
    elif checker.int_("seeds", seeds_raw, minimum=1) is not None:
        if seeds_raw > MAX_SEEDS:
            checker.add(f"seeds: at most {MAX_SEEDS} seeds. Got {seeds_raw}.")
        else:
            seeds = tuple(range(seeds_raw))
    if len(seeds) > MAX_SEEDS:
        checker.add(f"seeds: at most {MAX_SEEDS} seeds. Got a list of {len(seeds)}.")
        seeds = ()

    data_raw = checker.keys("data", raw.get("data", {}), DATA_KEYS)
    dataset = data_raw.get("dataset")
    location = dataset_sha256 = ""
    dataset_failed = True  # a problem of data.dataset reported (no shape to read from it)
    if not isinstance(raw.get("data"), dict):
        pass  # reported as a missing section, or one that is not a table
    elif not isinstance(dataset, str):
        checker.add(f"data.dataset: expected a built-in name ({', '.join(BUILTIN_DATASETS)}) or "
                    f"a path to a .npz or .csv file. Got {dataset!r}.")
    elif dataset not in BUILTIN_DATASETS:
        candidate = (path.parent / dataset) if not Path(dataset).is_absolute() else Path(dataset)
        if Path(dataset).suffix not in DATA_SUFFIXES:
            checker.add(f"data.dataset: unknown dataset {dataset!r}."
                        f"{did_you_mean(dataset, BUILTIN_DATASETS)} Expected one of "
                        f"{', '.join(BUILTIN_DATASETS)}, or a path to a .npz or .csv file.")
        elif not candidate.is_file():
            checker.add(f"data.dataset: {_not_a_file(candidate)}")
        else:
            location = str(candidate.resolve())
            dataset_sha256 = _file_sha256(candidate)
            dataset_failed = False
    else:
        dataset_failed = False
    label_column = data_raw.get("label_column", "label")
    if not isinstance(label_column, str) or not label_column.strip():
        checker.add(f"data.label_column: expected the name of the CSV's label column (a "
                    f"string, as its header row writes it). Got {label_column!r}.")
    elif "label_column" in data_raw and isinstance(dataset, str) and \
            not dataset.endswith(".csv"):
        checker.add(f"data.label_column: names a column of a .csv dataset; {dataset!r} has "
                    "its labels apart (an archive's 'y', a built-in dataset's own). Remove it.")
    split = checker.fraction("data.validation_split", data_raw.get("validation_split", 0.0))
    test = _check_test_data(checker, path, data_raw, dataset if "data" in raw else None,
                            dataset_sha256)
    test.update(check_regimes(data_raw, checker.problems))

    model_raw = checker.keys("model", raw.get("model", {}), MODEL_KEYS)
    shape_raw = model_raw.get("input_shape")
    layers_raw = model_raw.get("layers")
    layers_where = "model.layers"
    sources = [k for k in ("layers", "keras", "factory") if k in model_raw]
    if len(sources) > 1:
        checker.add(f"model: expected one of 'layers', 'keras' (a .keras file) or 'factory' "
                    f"('package.module:function'). Got {', '.join(sources)}.")
    source_failed = False  # a .keras file or factory that gave no model: said once, there
    if len(sources) == 1 and sources[0] != "layers":
        before = len(checker.problems)
        layers_where, (file_shape, converted) = _model_from_source(checker, path, model_raw)
        source_failed = not converted and len(checker.problems) > before
        layers_raw = [{"type": type_, **args} for type_, args in converted] or None
        if not converted and len(checker.problems) == before:
            checker.add(f"{layers_where}: expected a model with at least one layer. Got none.")
        if shape_raw is None and file_shape is not None:
            shape_raw = list(file_shape)
        elif isinstance(shape_raw, list) and file_shape is not None and \
                tuple(shape_raw) != tuple(file_shape):
            checker.add(f"model.input_shape: the model of {layers_where} takes "
                        f"{list(file_shape)}. Got {shape_raw!r}; remove model.input_shape.")
    unread = ""  # why the data file gave no input shape
    if shape_raw is None and location and not source_failed and "model" in raw:
        # Keras's model built from the shape of the data it first sees
        shape_raw, unread = _data_input_shape(location, label_column)
    input_shape: tuple[int, ...] = ()
    if "model" not in raw or (shape_raw is None and (source_failed or dataset_failed)):
        pass  # reported as a missing section, the model's source's or the data's problem
    elif unread:
        checker.add(f"model.input_shape: not given, and not read from data.dataset "
                    f"{dataset!r}: {unread}")
    elif not (isinstance(shape_raw, list) and shape_raw and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape_raw)):
        checker.add(f"model.input_shape: expected a list of positive ints such as [784] "
                    "(one sample's shape; read from a .csv or .npz dataset when left out). "
                    f"Got {shape_raw!r}.")
    else:
        input_shape = tuple(shape_raw)
    layers: list[LayerSpec] = []
    if "model" not in raw or len(sources) > 1:
        pass
    elif not isinstance(layers_raw, list) or not layers_raw:
        if layers_where == "model.layers":
            checker.add(f"model.layers: expected a non-empty list of layer tables. "
                        f"Got {layers_raw!r}.")
    else:
        for i, node in enumerate(layers_raw):
            if isinstance(node, dict) and node.get("type") == RESIDUAL:
                block = _check_residual(checker, f"{layers_where}[{i}]", node)
                if block is not None:
                    layers.append(block)
                continue
            checked = checker.typed(f"{layers_where}[{i}]", node, "layer")
            if checked is not None:
                args = {k: v for k, v in checked.items() if k != "type"}
                _check_layer_args(checker, f"{layers_where}[{i}]", args)
                layers.append(LayerSpec(checked["type"], args))
        if layers_where == "model.layers":
            _check_input_layer(checker, layers, input_shape)
            _check_layer_names(checker, layers)

    training_raw = checker.keys("training", raw.get("training", {}), TRAINING_KEYS)
    optimizer = _check_optimizer(checker, "training.optimizer",
                                 training_raw.get("optimizer", "adam")) or {}
    loss = training_raw.get("loss", "sparse_categorical_crossentropy")
    if loss not in LOSSES:
        checker.add(f"training.loss: unknown loss {loss!r}.{did_you_mean(str(loss), LOSSES)} "
                    f"Expected one of: {', '.join(LOSSES)}.")
    metrics = training_raw.get("metrics", ["accuracy"])
    metrics_ok = isinstance(metrics, list) and all(
        isinstance(m, str) and m in (*METRICS, *ERROR_METRICS) for m in metrics)
    if not metrics_ok:
        allowed = (*METRICS, *ERROR_METRICS)
        cased = [m for m in metrics if isinstance(m, str) and m not in allowed
                 and m.lower() in allowed] if isinstance(metrics, list) else []
        hint = (f" A study names them in lower case: {', '.join(map(repr, map(str.lower, cased)))}"
                f" for {', '.join(map(repr, cased))}." if cased else
                " A study ranks on an accuracy or an error (AUC, precision and recall are "
                "compile()'s in code, not a study's yet).")
        checker.add(f"training.metrics: expected a list of {', '.join(allowed)}. Got "
                    f"{metrics!r}.{hint}")
        metrics = []
    epochs = checker.int_("training.epochs", training_raw.get("epochs", 10))
    if epochs is not None and epochs > MAX_EPOCHS:
        checker.add(f"training.epochs: expected at most {MAX_EPOCHS:,} (a study that would "
                    f"never end). Got {epochs:,}.")
        epochs = None
    batch_size = checker.int_("training.batch_size", training_raw.get("batch_size", 32))
    precision = training_raw.get("precision", "float32")
    choices = [*PRECISIONS, AUTO]
    if not isinstance(precision, str) or precision not in choices:
        checker.add(f"training.precision: expected one of {', '.join(map(repr, choices))}. "
                    f"Got {precision!r}.{did_you_mean(str(precision), choices)}")
        precision = "float32"

    stats_raw = checker.keys("stats", raw.get("stats", {}), STATS_KEYS)
    min_effect = stats_raw.get("min_effect")
    if min_effect is not None and (not is_number(min_effect) or min_effect < 0):
        checker.add(f"stats.min_effect: expected a finite number >= 0. Got {min_effect!r}.")
        min_effect = None

    variants: list[VariantSpec] = []
    variants_raw = raw.get("variants", {})
    if "variants" not in raw:
        pass
    elif not isinstance(variants_raw, dict) or not variants_raw:
        checker.add("variants: expected at least one [variants.NAME] table. Got "
                    f"{'none' if variants_raw == {} else repr(variants_raw)}.")
    else:
        seen: dict[str, str] = {}  # each name as it reads (case and Unicode form aside)
        for name, table in variants_raw.items():
            variant = _check_variant(checker, name, table, tuning="tune" in raw)
            if variant is not None:
                variants.append(variant)
            looks = unicodedata.normalize("NFKC", name).casefold()
            if looks in seen and VARIANT_NAME.fullmatch(name):
                checker.add(f"variants.{name}: reads as variants.{seen[looks]} (the names differ "
                            "only in case or Unicode form, and would be told apart by neither "
                            "a reader of the table nor a case-insensitive file system). "
                            "Rename one.")
            seen.setdefault(looks, name)
        if metrics_ok:  # else training.metrics is wrong: said there
            _check_monitors(checker, variants, metrics)
        if layers and not any(layer.type == RESIDUAL for layer in layers):
            for variant in variants:
                if "stochastic_depth" in variant.changes:
                    checker.add(f"variants.{variant.name}.stochastic_depth: drops residual "
                                "branches; expected a model with residual blocks "
                                "({ type = \"Residual\", layers = [...] }). Got none.")
    tune = None
    if "tune" in raw:
        tune = check_tune(raw["tune"], {v.name: list(v.search) for v in variants},
                          checker.problems, top_seeds="seeds" in raw)
        if tune is not None:
            seeds = tune.fresh_seeds
            logged = ("val_loss", *(f"val_{m}" for m in metrics))
            if tune.objective not in logged:
                checker.add(f"tune.objective: expected a validation log of this study: "
                            f"{', '.join(logged)} (training.metrics sets which). Got "
                            f"{tune.objective!r}.")
            if not split:
                checker.add("data.validation_split: a tuning study chooses its trials on the "
                            "validation split; expected a validation_split > 0. Got 0.")
            for key in REGIME_KEYS:
                if key in test and len(test[key]) > 1:
                    checker.add(f"data.{key}: a tuning study ([tune]) searches in one data "
                                "regime (its trials train on one draw of it); an axis of "
                                "regimes is for grid studies. Expected one value. Got "
                                f"{data_raw[key]!r}.")
            if tune.model_epochs is not None and epochs is not None and \
                    tune.model_epochs < tune.seeds * epochs:
                checker.add(f"tune.model_epochs: one trial takes {tune.seeds} seed(s) × "
                            f"{epochs} epochs = {tune.seeds * epochs} model-epochs; expected a "
                            f"budget of at least that. Got {tune.model_epochs}.")
            warmup = tune.pruner_warmup
            if warmup is not None and epochs is not None and warmup >= epochs:
                checker.add(f"tune.pruner_warmup: a trial reports after each of its {epochs} "
                            f"epochs, and a warm-up of {warmup} leaves none after which it "
                            f"may be pruned; expected fewer than training.epochs = {epochs} "
                            f"(or pruner = 'none'). Got {warmup}.")

    if checker.problems:
        raise StudySpecError(str(path), checker.problems)
    return StudySpec(
        name=study_name, seeds=seeds,
        data=DataSpec(dataset, split or 0.0, str(label_column),
                      dataset_sha256, location, **test),
        input_shape=input_shape, layers=tuple(layers),
        training=TrainingSpec(optimizer, loss, tuple(metrics), epochs, batch_size, precision),
        variants=tuple(variants), description=str(raw.get("description", "")),
        stats=StatsSpec(None if min_effect is None else float(min_effect)), tune=tune,
        source=str(path))
