"""``NumpyArrayIterator``: batches of augmented images from numpy arrays, as Keras 2 yields them.

What ``ImageDataGenerator.flow`` returns. A Keras ``Sequence``-like object: ``len()`` batches per
epoch, ``iterator[i]`` is batch ``i`` of the current epoch, and ``next(iterator)`` cycles through
epochs forever (the last batch of each epoch is partial), reshuffling at each new epoch.

Randomness is explicit and reproducible: epoch ``e`` visits the samples in an order drawn from
``(seed, e)``, and batch ``i`` of epoch ``e`` is augmented from a torch generator seeded with
``(seed, e, i)``, in ONE vectorized warp for the whole batch. So ``iterator[i]`` returns the same
arrays however often it is asked within an epoch, and ``on_epoch_end()`` moves to the next epoch
(new order, new augmentations). With ``seed=None`` a seed is drawn once, when the iterator is made.
Keras instead reseeds numpy's global generator with ``seed + total_batches_seen``; the draws differ,
their distribution does not.

Example:
    >>> import numpy as np
    >>> from reglab.preprocessing.image import ImageDataGenerator
    >>> x, y = np.zeros((10, 8, 8, 1)), np.arange(10)
    >>> it = ImageDataGenerator(rotation_range=20).flow(x, y, batch_size=4, seed=0)
    >>> len(it), it[2][0].shape, it[2][1].shape
    (3, (2, 8, 8, 1), (2,))
"""

from __future__ import annotations

import math
import numbers
import threading
import warnings

import numpy as np
import torch

from reglab.engine.data import as_numpy
from reglab.errors import ConfigError, DataError, unknown_name

SUBSETS = ("training", "validation")


def images_shape_error(where: str, shape: tuple[int, ...]) -> DataError:
    """The error for an array that is not ``(N, height, width, channels)``, with the reshape to do."""
    message = f"{where}: x must be images of shape (N, height, width, channels). Got shape {shape}."
    if len(shape) == 2:
        features = shape[1]
        for channels in (1, 3):
            side = math.isqrt(features // channels)
            if side > 0 and side * side * channels == features:
                image = (side, side, channels)
                return DataError(
                    f"{message} Reshape with x.reshape(-1, {side}, {side}, {channels}) and start "
                    f"the model with Flatten() (or input_shape={image})."
                )
        return DataError(f"{message} Reshape with x.reshape(-1, height, width, channels).")
    if len(shape) == 3:
        image = (shape[1], shape[2], 1)
        return DataError(
            f"{message} Add a channels axis with x.reshape(-1, {shape[1]}, {shape[2]}, 1) (or "
            f"x[..., None]) and give the model input_shape={image}."
        )
    return DataError(message)


def as_images(where: str, x) -> np.ndarray:
    """``x`` as an ``(N, H, W, C)`` numeric array (not copied when it already is one; a torch
    tensor on any device comes to the CPU)."""
    if isinstance(x, torch.Tensor):
        array = as_numpy(where, "x", x)
    else:
        try:
            array = np.asarray(x)
        except (ValueError, TypeError):  # ragged nested lists: the shared check says so
            array = as_numpy(where, "x", x)
    if array.ndim != 4:
        raise images_shape_error(where, array.shape)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"{where}: x must hold numbers. Got dtype {array.dtype}.")
    return array


def _labels(where: str, name: str, values):
    """Labels or weights as numpy; any values numpy takes, as Keras (checked when trained on)."""
    if values is None:
        return None
    return as_numpy(where, name, values) if isinstance(values, torch.Tensor) else \
        np.asarray(values)


def warn_channels(where: str, shape: tuple[int, ...], stacklevel: int = 3) -> None:
    """Keras's warning for images with a channel count other than 1, 3 or 4."""
    if shape[3] not in (1, 3, 4):
        warnings.warn(
            f"{where}: expected 1, 3 or 4 channels on axis 3 (channels_last). Got an array of "
            f"shape {shape} ({shape[3]} channels).",
            UserWarning,
            stacklevel=stacklevel,
        )


def _check_seed(seed) -> None:
    if seed is not None and not (
        isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0
    ):
        raise ConfigError(
            f"ImageDataGenerator.flow: 'seed' must be a non-negative int or None. Got {seed!r}."
        )


class NumpyArrayIterator:
    """Batches ``(x, y[, sample_weight])`` of augmented, standardized images.

    Arguments are Keras's (``keras.preprocessing.image.NumpyArrayIterator``); ``save_to_dir`` and
    tuple inputs ``(images, extra_inputs)`` are not supported yet. Attributes: ``x`` (the images
    of the subset, cast to ``dtype``), ``y``, ``sample_weight`` (both of the subset, or None),
    ``n``, ``batch_size``, ``shuffle``, ``seed``, ``image_data_generator``, ``subset``, ``dtype``,
    ``epoch``, ``batch_index``, ``total_batches_seen``.

    Example:
        >>> from reglab.preprocessing.image import ImageDataGenerator
        >>> it = ImageDataGenerator().flow(np.ones((5, 4, 4, 1)), batch_size=2, shuffle=False)
        >>> [next(it).shape[0] for _ in range(4)]
        [2, 2, 1, 2]
    """

    def __init__(
        self,
        x,
        y,
        image_data_generator,
        batch_size=32,
        shuffle=False,
        sample_weight=None,
        seed=None,
        data_format=None,
        save_to_dir=None,
        save_prefix="",
        save_format="png",
        subset=None,
        ignore_class_split=False,
        dtype=None,
    ):
        where = "ImageDataGenerator.flow"
        if isinstance(x, (tuple, list)):
            raise ConfigError(
                f"{where}: x must be one numpy array of images; the (images, extra_inputs) form "
                f"is not supported yet. Got a {type(x).__name__}. Pass np.asarray(images)."
            )
        if save_to_dir is not None:
            raise ConfigError(
                f"{where}: 'save_to_dir' is not supported yet; it must be None. Got "
                f"{save_to_dir!r}."
            )
        if data_format not in (None, "channels_last"):
            raise ConfigError(
                f"{where}: 'data_format' must be 'channels_last' (or None). Got {data_format!r}."
            )
        x = as_images(where, x)
        y, sample_weight = _labels(where, "y", y), _labels(where, "sample_weight", sample_weight)
        for name, values in (("y", y), ("sample_weight", sample_weight)):
            if values is not None and len(values) != len(x):
                raise DataError(
                    f"{where}: x and {name} must hold the same number of samples. Got x.shape = "
                    f"{x.shape} and {name}.shape = {np.asarray(values).shape}."
                )
        if sample_weight is not None and y is None:
            raise ConfigError(
                f"{where}: 'sample_weight' needs labels y (Keras ignores the weights when y is "
                "None). Pass y, or drop sample_weight."
            )
        if (
            not isinstance(batch_size, numbers.Integral)
            or isinstance(batch_size, bool)
            or (batch_size < 1)
        ):
            raise ConfigError(f"{where}: 'batch_size' must be a positive int. Got {batch_size!r}.")
        _check_seed(seed)
        if subset is not None:
            if subset not in SUBSETS:
                raise unknown_name(where, "'subset'", subset, SUBSETS)
            split = int(len(x) * image_data_generator.validation_split)
            if (
                y is not None
                and not ignore_class_split
                and not np.array_equal(np.unique(y[:split]), np.unique(y[split:]))
            ):
                raise DataError(
                    f"{where}: the training and validation subsets hold different classes after "
                    f"the split at sample {split}. If x and y are sorted by label, shuffle them "
                    "first, or pass ignore_class_split=True."
                )
            # Keras: validation is the FIRST int(n * validation_split) samples, training the rest.
            part = slice(None, split) if subset == "validation" else slice(split, None)
            x = x[part]
            y = None if y is None else y[part]
            # Keras leaves sample_weight unsplit (misaligned); split it with x and y.
            sample_weight = None if sample_weight is None else np.asarray(sample_weight)[part]
        if len(x) == 0:
            raise DataError(
                f"{where}: x must hold at least one sample. Got shape {x.shape}"
                + (f" for subset {subset!r}." if subset else ".")
            )
        warn_channels(where, x.shape, stacklevel=4)  # the caller of flow()

        self.dtype = np.dtype(dtype or image_data_generator.dtype or "float32")
        self.x = np.asarray(x, dtype=self.dtype)
        self.y = None if y is None else np.asarray(y)
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight)
        self.image_data_generator = image_data_generator
        self.n = len(self.x)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.subset = subset
        self.data_format = "channels_last"
        self.epoch = 0
        self.batch_index = 0
        self.total_batches_seen = 0
        self.lock = threading.Lock()
        # unseeded: drawn from NumPy's global generator, as Keras's iterator draws its order
        # (so np.random.seed or keras.utils.set_random_seed repeats it)
        self._entropy = int(seed) if seed is not None else int(
            np.random.randint(0, 2**62, dtype=np.int64))
        self._order_cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices epoch ``epoch`` visits, ``(n,)``: a permutation drawn from
        ``(seed, epoch)`` when ``shuffle``, else ``0..n-1``."""
        if not self.shuffle:
            return np.arange(self.n)
        if self._order_cache is None or self._order_cache[0] != epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self._entropy, 0, epoch]))
            self._order_cache = (epoch, rng.permutation(self.n))
        return self._order_cache[1]

    @property
    def index_array(self) -> np.ndarray:
        """The order of the current epoch (Keras's attribute)."""
        return self.order(self.epoch)

    def transform_seed(self, epoch: int, index: int) -> int:
        """The torch seed that augments batch ``index`` of epoch ``epoch``."""
        state = np.random.SeedSequence([self._entropy, 1, epoch, index]).generate_state(
            1, np.uint64
        )
        return int(state[0]) >> 1  # below 2**63: any torch.Generator accepts it

    def __getitem__(self, index: int):
        if not isinstance(index, numbers.Integral) or not 0 <= index < len(self):
            raise IndexError(
                f"NumpyArrayIterator: batch index must be an int in [0, {len(self)}). "
                f"Got {index!r}."
            )
        return self._batch(self.epoch, int(index))

    def on_epoch_end(self) -> None:
        """Moves to the next epoch: a new order (when shuffling) and new augmentations."""
        self.epoch += 1
        self.batch_index = 0

    def reset(self) -> None:
        """Restarts ``next()`` at the first batch of the current epoch."""
        self.batch_index = 0

    def __iter__(self):
        return self

    def __next__(self):
        with self.lock:
            if self.batch_index >= len(self):
                self.on_epoch_end()
            epoch, index = self.epoch, self.batch_index
            self.batch_index += 1
        return self._batch(epoch, index)

    next = __next__  # Keras 1's name

    def _batch(self, epoch: int, index: int):
        import torch

        rows = self.order(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        self.total_batches_seen += 1
        generator = torch.Generator().manual_seed(self.transform_seed(epoch, index))
        datagen = self.image_data_generator
        batch_x = datagen.standardize_array(datagen.random_transform_array(self.x[rows], generator))
        if self.y is None:
            return batch_x
        if self.sample_weight is None:
            return batch_x, self.y[rows]
        return batch_x, self.y[rows], self.sample_weight[rows]
