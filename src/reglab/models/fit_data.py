"""What ``Sequential.fit`` accepts, turned into arrays for the engine.

Arrays (with ``validation_split``, ``class_weight`` and ``sample_weight`` as
Keras handles them), an ``ImageDataGenerator.flow`` iterator (trained on
tensors: the generator's standardization once, its random transforms per batch
inside the engine), or any Python generator of ``(x, y)`` batches with
``steps_per_epoch`` (collected one epoch at a time, each batch trained as it came). A flow
given ``steps_per_epoch`` is read as Keras 3 reads it: each epoch takes the flow's next
``steps_per_epoch`` batches, going on from where the last epoch stopped, and ends early
where the flow's pass over its images ends (the next epoch starts a new pass). A torch
``DataLoader`` or a ``PyDataset`` is read a pass per epoch (:mod:`reglab.models.datasets`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reglab.engine.data import as_array, as_numpy, check_count
from reglab.errors import ConfigError, DataError
from reglab.models import datasets
from reglab.utils.tensors import sum_is_finite


@dataclass
class FitData:
    x: Any
    y: Any
    sample_weight: Any = None
    batch_size: int = 32
    shuffle: bool = True
    augment: Any = None
    generator: Any = None  # a Python iterator of batches, read steps_per_epoch at a time
    steps_per_epoch: int | None = None


def _as_array(where: str, name: str, value):
    """A checked numeric array (a torch tensor stays one), or None; see ``engine.data``."""
    return None if value is None else as_array(where, name, value)


def validation_split_arrays(x, y, sample_weight, fraction: float):
    """Keras's split: the last ``fraction`` of the samples, taken before any shuffling."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating,
                                                                np.integer)) \
            or not 0.0 <= fraction < 1.0:
        raise ConfigError(f"fit: 'validation_split' must be a float in [0, 1). Got {fraction!r}.")
    n = len(x)
    split_at = int(math.floor(n * (1.0 - fraction)))
    if split_at == 0 or split_at == n:
        raise DataError(f"fit: validation_split={fraction} leaves an empty training or "
                        f"validation set out of {n} samples.")

    def part(a, lo, hi):
        return None if a is None else a[lo:hi]
    train = (x[:split_at], y[:split_at], part(sample_weight, 0, split_at))
    val = (x[split_at:], y[split_at:], part(sample_weight, split_at, n))
    return train, val


def class_weights_to_sample_weights(y, class_weight: dict, sample_weight=None):
    """Keras's ``class_weight``: each sample weighted by its class's weight (times its own
    ``sample_weight``, which Keras 3 refuses beside ``class_weight`` and tf.keras took so)."""
    if not isinstance(class_weight, dict):
        raise ConfigError(f"fit: 'class_weight' must be a dict {{class index: weight}}. "
                          f"Got {type(class_weight).__name__}.")
    y = as_numpy("fit", "y", y)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError("fit: 'y' must hold finite numbers to look up 'class_weight'. Got NaN "
                        f"or infinite labels at {int((~np.isfinite(y)).sum())} places.")
    # Keras 3's rule: one-hot rows by their largest entry, a label column squeezed, labels
    # rounded to the nearest class (0.9 -> 1), a class without a weight weighted 1.
    classes = y.argmax(axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y), -1)[:, 0]
    classes = np.round(classes).astype(np.int64)
    weights = np.array([class_weight.get(int(c), 1.0) for c in classes], dtype=np.float64)
    if sample_weight is None:
        return weights
    sample_weight = as_numpy("fit", "sample_weight", sample_weight)
    if sample_weight.shape == (len(weights), 1):  # a column of weights, as Keras takes it
        sample_weight = sample_weight.reshape(-1)
    if sample_weight.shape != weights.shape:
        raise DataError(f"fit: 'sample_weight' must have shape ({len(weights)},). "
                        f"Got {sample_weight.shape}.")
    return weights * sample_weight


def single_input(x):
    """A one-element list or tuple holding an array or tensor is that input (Keras takes
    ``fit([x], y)`` for a model with one input)."""
    if isinstance(x, (list, tuple)) and len(x) == 1 and \
            isinstance(x[0], (np.ndarray, torch.Tensor)):
        return x[0]
    return x


def resolve_inputs(x, y, batch_size, shuffle, sample_weight, steps_per_epoch) -> FitData:
    """Recognizes arrays, a ``flow`` iterator or a generator."""
    x = single_input(x)
    if is_flow(x):  # ImageDataGenerator.flow(...)
        if y is not None:
            raise ConfigError("fit: pass either an ImageDataGenerator iterator or (x, y). Got "
                              "both an iterator and y.")
        if steps_per_epoch is not None:  # its batches as Keras reads them, not whole passes
            return FitData(None, None, generator=FlowBatches(x),
                           steps_per_epoch=check_count("fit", "steps_per_epoch",
                                                       steps_per_epoch), shuffle=False)
        generator = x.image_data_generator
        spec = generator.standardized_warp(np.shape(x.x)[-1])
        if spec is None:  # read in Keras's order, one pass
            return FitData(None, None, generator=FlowBatches(x), steps_per_epoch=len(x),
                           shuffle=False)
        images = generator.standardize_array(np.asarray(x.x, dtype=np.float32))
        return FitData(images, x.y, x.sample_weight, x.batch_size, x.shuffle, augment=spec)
    if datasets.is_dataset(x):  # a torch DataLoader or a PyDataset: a pass per epoch
        if y is not None:
            raise ConfigError(f"fit: pass either a dataset ({type(x).__name__}) or (x, y). "
                              "Got both a dataset and y.")
        if steps_per_epoch is not None:
            steps_per_epoch = check_count("fit", "steps_per_epoch", steps_per_epoch)
        steps = datasets.steps_for("fit", x, steps_per_epoch)
        batches = datasets.EpochBatches(x, shuffle=shuffle is not False and
                                        not isinstance(x, torch.utils.data.DataLoader))
        batches.reset()
        return FitData(None, None, generator=batches, steps_per_epoch=steps, shuffle=False)
    if is_generator(x):
        if steps_per_epoch is None:
            raise ConfigError("fit: a Python generator needs 'steps_per_epoch' (how many batches "
                              "make one epoch). Got None.")
        return FitData(None, None, generator=x,
                       steps_per_epoch=check_count("fit", "steps_per_epoch", steps_per_epoch),
                       shuffle=False)
    if x is None or y is None:
        raise ConfigError("fit: expected x and y arrays, an ImageDataGenerator.flow(...) "
                          "iterator, or a generator of (x, y) batches with steps_per_epoch. "
                          f"Got x={type(x).__name__}, y={type(y).__name__}.")
    return FitData(_as_array("fit", "x", x), _as_array("fit", "y", y),
                   _as_array("fit", "sample_weight", sample_weight),
                   32 if batch_size is None else batch_size,
                   "batch" if isinstance(shuffle, str) and shuffle == "batch" else bool(shuffle))


class FlowBatches:
    """A flow's batches as one ``fit`` of Keras 3 reads them: ``flow[0]``, ``flow[1]``, ...
    of the flow's present order from the call's start (whatever ``next(flow)`` read before),
    then, the pass over, the flow's next epoch (a new order and new augmentations) from
    its first batch again."""

    def __init__(self, flow):
        self.flow, self.index = flow, 0

    def pass_over(self) -> bool:
        return self.index >= len(self.flow)

    def finish(self) -> None:
        """At the end of ``fit``: a pass read to its end moves the flow to its next epoch, so
        the next ``fit`` starts a new order and new augmentations (as Keras's does)."""
        if self.pass_over():
            self.flow.on_epoch_end()
            self.index = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.pass_over():
            self.flow.on_epoch_end()
            self.index = 0
        batch = self.flow[self.index]
        self.index += 1
        return batch


class ArrayBatches:
    """Arrays read ``steps_per_epoch`` batches at a time, as Keras 3 reads them: batches of
    ``batch_size`` from a pass over the samples (in a new random order at each pass when
    ``shuffle``; with ``'batch'``, each batch's samples shuffled among themselves), each epoch
    going on from where the last stopped and ending early where a pass ends. The orders
    are drawn from the model's seed and the pass's number (reproducible, and no draw from a
    global generator)."""

    def __init__(self, data: FitData, seed: int):
        self.x, self.y, self.sample_weight = data.x, data.y, data.sample_weight
        self.batch_size, self.shuffle, self.seed = data.batch_size, data.shuffle, seed
        self.n, self.passes, self.index, self.order = len(data.x), 0, 0, None

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def pass_over(self) -> bool:
        return self.order is not None and self.index >= len(self)

    def __iter__(self):
        return self

    def _new_pass(self) -> None:
        state = np.random.SeedSequence([self.seed, self.passes]).generate_state(1, np.uint64)
        self.generator = torch.Generator().manual_seed(int(state[0]) >> 1)
        if self.shuffle and self.shuffle != "batch":
            self.order = torch.randperm(self.n, generator=self.generator)
        else:
            self.order = torch.arange(self.n)
        self.passes, self.index = self.passes + 1, 0

    def __next__(self):
        if self.order is None or self.pass_over():
            self._new_pass()
        rows = self.order[self.index * self.batch_size:(self.index + 1) * self.batch_size]
        if self.shuffle == "batch":
            rows = rows[torch.randperm(len(rows), generator=self.generator)]
        self.index += 1
        def take(a):
            return a[rows] if isinstance(a, torch.Tensor) else np.asarray(a)[rows.numpy()]

        batch = (take(self.x), take(self.y))
        return batch if self.sample_weight is None else (*batch, take(self.sample_weight))


def array_batches(data: FitData, steps_per_epoch: int, seed: int,
                  batch_size: int | None) -> FitData:
    """``data``'s arrays as :class:`ArrayBatches`, read ``steps_per_epoch`` at a time, in
    batches of ``batch_size``, or, not given, of ``ceil(n / steps_per_epoch)`` (Keras's
    array adapter: an epoch is then one pass)."""
    if data.y is None:
        raise ConfigError("fit: expected x and y arrays with 'steps_per_epoch'. Got y=None.")
    if batch_size is None:
        data.batch_size = max(1, math.ceil(len(data.x) / steps_per_epoch))
    return FitData(None, None, generator=ArrayBatches(data, seed),
                   steps_per_epoch=steps_per_epoch, shuffle=False)


def next_epoch_from_generator(generator, steps: int | None, where: str = "fit",
                              x_alone: bool = False):
    """Reads ``steps`` batches (None: a dataset's pass of unknown length, to its end);
    returns ``(x, y, sample_weight, batch_sizes)``: the arrays joined, each None where the
    batches have none, and each batch's size in order (the engine trains them as they
    came). A source read by passes (a flow, a dataset, arrays) ends early where its pass
    does, as Keras's epochs; ``x_alone``: batches of ``x`` alone are taken too (predict)."""
    passes = hasattr(generator, "pass_over")  # a flow, a dataset or arrays: read by passes
    kind = "dataset" if isinstance(generator, datasets.EpochBatches) else "generator"
    if hasattr(generator, "begin_epoch"):  # a dataset's hooks, as Keras's epoch iterator
        generator.begin_epoch()
    parts: tuple[list, list, list] = ([], [], [])
    for step in (range(steps) if steps is not None else itertools.count()):
        if step and passes and generator.pass_over():
            break  # the pass is over: Keras ends the epoch here
        try:
            batch = next(generator)
        except StopIteration:
            if step and (passes or steps is None):
                break  # a pass ran out early, or a generator read to its end: as in Keras
            what = f"the {kind} has no batches" if passes or steps is None else \
                f"the generator ran out after {step} batches; steps_per_epoch is {steps}"
            raise DataError(f"{where}: {what}.") from None
        if isinstance(batch, list):
            batch = tuple(batch)
        if x_alone and not isinstance(batch, tuple):
            batch = (batch,)
        if not isinstance(batch, tuple) or not (1 if x_alone else 2) <= len(batch) <= 3:
            shapes = "(x, y) or (x, y, sample_weight)" + (" or x alone" if x_alone else "")
            got = f"a {type(batch).__name__}" + (
                f" of {len(batch)}" if isinstance(batch, tuple) else "")
            raise DataError(f"{where}: dataset batch {step} must be {shapes}. Got {got}."
                            if kind == "dataset" else
                            f"{where}: a generator must yield {shapes} batches. Got {got}.")
        place = f"{where}: {kind} batch {step}"
        for name, part, value in zip(("x", "y", "sample_weight"), parts, batch):
            part.append(as_numpy(place, name, value))
        if len(parts[0][-1]) == 0:
            raise DataError(f"{place}: the batch has no samples (x of shape "
                            f"{parts[0][-1].shape}); every batch needs one at least.")
    if hasattr(generator, "end_epoch"):
        generator.end_epoch()
    joined = []
    for name, part in zip(("x", "y", "sample_weight"), parts):
        if part and len(part) != len(parts[0]):
            raise DataError(f"{where}: a {kind}'s batches must all have '{name}' or none "
                            f"have it. Got it in {len(part)} of {len(parts[0])} batches.")
        shapes = sorted({array.shape[1:] for array in part})
        if len(shapes) > 1:
            raise DataError(f"{where}: a {kind}'s batches must share one sample shape for "
                            f"'{name}'. Got samples of shapes {shapes}.")
        joined.append(np.concatenate(part) if part else None)
    return (*joined, [len(x) for x in parts[0]])


def dataset_arrays(where: str, dataset, steps: int | None, need_y: bool, reset: bool):
    """One pass (or its first ``steps`` batches, never beyond the pass) of ``dataset`` as
    :func:`next_epoch_from_generator` returns it; ``reset``: Keras's iterator reset first
    (``evaluate`` and validation, not ``predict``)."""
    batches = datasets.EpochBatches(dataset)
    if reset:
        batches.reset()
    return next_epoch_from_generator(batches, datasets.steps_for(where, dataset, steps), where,
                                     x_alone=not need_y)


def is_flow(x) -> bool:
    """Whether ``x`` is reglab's ``ImageDataGenerator.flow`` (Keras's legacy flow, a Keras
    ``PyDataset``, is read as one)."""
    from reglab.preprocessing.image import NumpyArrayIterator

    return isinstance(x, NumpyArrayIterator)


def is_generator(x) -> bool:
    return x is not None and hasattr(x, "__next__") and not isinstance(x, np.ndarray)


def refuse_non_finite(where: str, name: str, x) -> None:
    """A DataError when floating ``x`` (an array, a tensor, or a list of them for a model
    with several inputs) holds NaN or infinity: the loss would be NaN from the first batch
    that reads one, and training would stop there."""
    if isinstance(x, (list, tuple)):
        for i, part in enumerate(x):
            refuse_non_finite(where, f"{name}[{i}]", part)
        return
    if sum_is_finite(x):
        return  # NaN and infinity carry through a sum: every value is finite
    if hasattr(x, "detach") and (x.is_floating_point() or x.is_complex()):  # a tensor
        bad = ~torch.isfinite(x.detach())
        count, first = int(bad.sum()), bad.nonzero()[:1].tolist()
    elif isinstance(x, np.ndarray) and x.dtype.kind in "fc":
        bad = ~np.isfinite(x)
        count, first = int(bad.sum()), np.argwhere(bad)[:1].tolist()
    else:
        return
    if count:
        first = tuple(first[0])
        raise DataError(f"{where}: '{name}' must hold finite numbers. Got {count} NaN or "
                        f"infinite value(s), the first at index {first} ({x[first].item()}); "
                        "impute or drop them before training.")


def flow_arrays(flow, steps: int | None = None):
    """A flow's standardized images (without augmentation), targets and sample weights: all
    of them, or the samples of its first ``steps`` batches in its present order."""
    images = flow.image_data_generator.standardize_array(np.asarray(flow.x, dtype=np.float32))
    if steps is None:
        return images, flow.y, flow.sample_weight
    rows = np.asarray(flow.index_array)[:steps * flow.batch_size]
    return (images[rows], None if flow.y is None else np.asarray(flow.y)[rows],
            None if flow.sample_weight is None else np.asarray(flow.sample_weight)[rows])


def resolve_validation(validation_data, steps: int | None = None, batch_size: int = 32):
    """``(validation arrays, the batch size they came in or None)``. A flow iterator
    validates on its standardized images without augmentation; with ``steps``, Keras's first
    ``steps`` batches only (of the flow's own size, else of ``batch_size``). A dataset is
    read once, here, and validated on in its own batches' size at every epoch."""
    if is_flow(validation_data):
        return flow_arrays(validation_data, steps), None
    if datasets.is_dataset(validation_data):
        x, y, w, sizes = dataset_arrays("fit: validation_data", validation_data, steps,
                                        need_y=True, reset=True)
        return ((x, y) if w is None else (x, y, w)), sizes[0]
    if is_generator(validation_data):
        raise ConfigError("fit: 'validation_data' as a Python generator is not supported. "
                          "Pass (x_val, y_val) arrays or an ImageDataGenerator.flow(...).")
    if isinstance(validation_data, (list, tuple)) and validation_data:
        arrays = (single_input(validation_data[0]), *validation_data[1:])
        return (arrays if steps is None else first_samples(arrays, steps * batch_size)), None
    return validation_data, None


def batch_arrays(where: str, x, y=None, sample_weight=None):
    """The arrays of one batch for ``*_on_batch`` (Keras takes arrays or tensors there, not
    iterators or generators)."""
    if is_flow(x) or is_generator(x):
        raise ConfigError(f"{where}: expected one batch as arrays (x, y). Got "
                          f"{type(x).__name__}; use fit/evaluate/predict for iterators and "
                          "generators, or next(iterator) for one batch.")
    return resolve_eval_inputs(where, x, y, sample_weight, None)[:3]


def resolve_eval_inputs(where: str, x, y, sample_weight, steps, batch_size=None):
    """``(x, y, sample_weight, batch size)`` for evaluate/predict from arrays, a flow
    iterator, a dataset or a generator; the batch size is the one the data comes in (a
    flow's, a dataset's or generator's first batch's; for arrays ``batch_size``, else 32,
    else with ``steps`` Keras's ``ceil(n / steps)``). With ``steps``, Keras's first ``steps``
    batches only (all of them when there are fewer)."""
    x = single_input(x)
    if steps is not None:
        steps = check_count(where, "steps", steps)
    if is_flow(x):
        return (*flow_arrays(x, steps), x.batch_size)
    if datasets.is_dataset(x):
        if y is not None:
            raise ConfigError(f"{where}: pass either a dataset ({type(x).__name__}) or (x, y). "
                              "Got both a dataset and y.")
        *arrays, sizes = dataset_arrays(where, x, steps, need_y=where != "predict",
                                         reset=where != "predict")
        return (*arrays, batch_size or sizes[0])
    if is_generator(x):  # without steps, read to its end (Keras's evaluate and predict)
        xs, ys, ws, sizes = next_epoch_from_generator(x, steps, where,
                                                      x_alone=where == "predict")
        return xs, ys, ws, batch_size or sizes[0]
    if x is None:
        raise ConfigError(f"{where}: expected x (an array, an ImageDataGenerator.flow(...) "
                          "iterator or a generator). Got None.")
    arrays = (_as_array(where, "x", x), _as_array(where, "y", y),
              _as_array(where, "sample_weight", sample_weight))
    if steps is None:
        return (*arrays, batch_size or 32)
    if batch_size is None:  # Keras's array adapter: steps batches cover the samples
        return (*arrays, max(1, math.ceil(len(arrays[0]) / steps)))
    return (*first_samples(arrays, steps * batch_size), batch_size)


def first_samples(arrays, count: int) -> tuple:
    """The first ``count`` samples of each of ``arrays`` (None stays None): what Keras reads
    of them in its first batches. Arrays of different lengths are returned whole, for the
    engine's error that names them."""
    if len({len(a) for a in arrays if a is not None}) > 1:
        return tuple(arrays)
    return tuple(None if a is None else a[:count] for a in arrays)
