"""``ImageDataGenerator``: Keras 2's real-time image augmentation (removed in Keras 3), on torch.

The class keeps Keras's arguments, defaults and methods (``flow``, ``fit``, ``standardize``,
``random_transform``, ``get_random_transform``, ``apply_transform``); the geometry is
:class:`reglab.augment.AffineSpec`, sampled with :func:`~reglab.augment.sample_transforms` and
applied with ONE :func:`~reglab.augment.warp` per batch instead of one scipy call per image.

Contract with the training engine. ``Model.fit`` given a :class:`NumpyArrayIterator` may train on
tensors instead of iterating it; it then reads
``iterator.x``, ``iterator.y``, ``iterator.sample_weight`` (already cut to the ``subset``),
``iterator.batch_size``, ``iterator.shuffle`` and ``iterator.seed``, and from
``datagen = iterator.image_data_generator``:

1. ``datagen.standardize_array(iterator.x)``, once, on the whole dataset (rescale, then
   samplewise, then featurewise, as Keras's ``standardize``; a new array, per sample);
2. per batch, random transforms from ``spec = datagen.standardized_warp(channels)``
   (``sample_transforms``) applied with ``warp(..., fill_mode=spec.fill_mode, cval=spec.cval,
   interpolation=spec.interpolation)`` on the engine's own seeded streams.

Keras standardizes AFTER the warp. Rescale and featurewise normalization are per-channel affine
maps, and a warp's interpolation weights sum to one, so the two orders agree once
``fill_mode='constant'`` fills ``cval`` standardized (:meth:`ImageDataGenerator.standardized_warp`
gives that warp). Samplewise statistics of the warped image, or a ``cval`` that standardizes
to different values per channel, have no such warp: ``Model.fit`` then reads the iterator's
batches. Iterating the iterator follows Keras's order exactly.

Example:
    >>> import numpy as np
    >>> datagen = ImageDataGenerator(rotation_range=20, width_shift_range=0.2,
    ...                              height_shift_range=0.2, horizontal_flip=True)
    >>> x_batch, y_batch = next(datagen.flow(np.zeros((64, 28, 28, 1)), np.arange(64), seed=0))
    >>> x_batch.shape, x_batch.dtype, y_batch.shape
    ((32, 28, 28, 1), dtype('float32'), (32,))
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings

import numpy as np
import torch

from reglab.augment import AffineSpec, affine_params_to_transforms, sample_transforms, warp
from reglab.errors import ConfigError, DataError
from reglab.preprocessing import intensity
from reglab.preprocessing.image_arguments import (
    INTERPOLATIONS,
    WHERE,
    affine_spec_of,
    check_arguments,
)
from reglab.preprocessing.numpy_array_iterator import (
    NumpyArrayIterator,
    as_images,
    images_shape_error,
    warn_channels,
)

__all__ = ["ImageDataGenerator", "NumpyArrayIterator"]

_EPSILON = 1e-6  # Keras adds it to every std it divides by


def _warn_not_fit(flag: str) -> None:
    warnings.warn(
        f"This ImageDataGenerator specifies `{flag}`, but it hasn't been fit on any training "
        "data. Fit it first by calling `.fit(numpy_data)`.",
        UserWarning,
        stacklevel=4,
    )


def _generator(seed) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


class ImageDataGenerator:
    """Generates batches of augmented image data, with Keras 2's arguments and defaults.

    Arguments are stored unchanged and checked here. Supported: the geometric ones
    (``rotation_range``, ``width_shift_range``, ``height_shift_range``, ``shear_range``,
    ``zoom_range``, ``horizontal_flip``, ``vertical_flip``, ``fill_mode``, ``cval``;
    see :class:`~reglab.augment.AffineSpec`), ``featurewise_center`` /
    ``featurewise_std_normalization`` (after :meth:`fit`), ``samplewise_center`` /
    ``samplewise_std_normalization``, ``rescale``, ``validation_split``,
    ``interpolation_order`` 0 or 1, ``dtype``, and the pixel-value ones
    (``channel_shift_range``, ``brightness_range``, ``preprocessing_function``,
    ``zca_whitening`` / ``zca_epsilon``; see :mod:`reglab.preprocessing.intensity`).
    ``data_format='channels_first'`` raises a :class:`~reglab.errors.ConfigError`. As in Keras,
    ``featurewise_std_normalization`` implies ``featurewise_center`` and
    ``samplewise_std_normalization`` implies ``samplewise_center`` (with a warning);
    ``zca_whitening`` turns ``featurewise_center`` on and ``featurewise_std_normalization`` off
    (with warnings); std normalization divides by ``std + 1e-6``.

    Per image, in Keras's order: the geometric warp, the channel shift and the brightness
    shift (:meth:`random_transform`), then ``preprocessing_function``, ``rescale``, samplewise,
    featurewise normalization and ZCA whitening (:meth:`standardize`).

    Learned by :meth:`fit`: ``mean`` and ``std``, ``(1, 1, channels)``, and
    ``zca_whitening_matrix`` (Keras's names).

    Example:
        >>> import numpy as np
        >>> datagen = ImageDataGenerator(featurewise_center=True, rescale=1 / 255)
        >>> datagen.fit(np.full((4, 2, 2, 1), 255.0)).mean.ravel()
        array([1.], dtype=float32)
        >>> datagen.standardize(np.full((2, 2, 1), 255.0)).ravel()
        array([0., 0., 0., 0.])
    """

    def __init__(
        self,
        featurewise_center=False,
        samplewise_center=False,
        featurewise_std_normalization=False,
        samplewise_std_normalization=False,
        zca_whitening=False,
        zca_epsilon=1e-6,
        rotation_range=0,
        width_shift_range=0.0,
        height_shift_range=0.0,
        brightness_range=None,
        shear_range=0.0,
        zoom_range=0.0,
        channel_shift_range=0.0,
        fill_mode="nearest",
        cval=0.0,
        horizontal_flip=False,
        vertical_flip=False,
        rescale=None,
        preprocessing_function=None,
        data_format=None,
        validation_split=0.0,
        interpolation_order=1,
        dtype=None,
    ):
        self.featurewise_center = featurewise_center
        self.samplewise_center = samplewise_center
        self.featurewise_std_normalization = featurewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        self.zca_whitening = zca_whitening
        self.zca_epsilon = zca_epsilon
        self.rotation_range = rotation_range
        self.width_shift_range = width_shift_range
        self.height_shift_range = height_shift_range
        self.brightness_range = brightness_range
        self.shear_range = shear_range
        self.zoom_range = zoom_range
        self.channel_shift_range = channel_shift_range
        self.fill_mode = fill_mode
        self.cval = cval
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.rescale = rescale
        self.preprocessing_function = preprocessing_function
        self.data_format = data_format
        self.validation_split = validation_split
        self.interpolation_order = interpolation_order
        self.dtype = dtype
        self.mean = None
        self.std = None
        self.zca_whitening_matrix = None
        check_arguments(self)
        # as Keras keeps it: a float z as its range [1 - z, 1 + z], a pair as a list
        zoom = zoom_range
        self.zoom_range = [1 - zoom, 1 + zoom] if isinstance(zoom, numbers.Real) else \
            [zoom[0], zoom[1]]

    @property
    def affine_spec(self) -> AffineSpec:
        """The geometric arguments as an :class:`~reglab.augment.AffineSpec`."""
        return affine_spec_of(self)

    @property
    def interpolation(self) -> str:
        """The :func:`~reglab.augment.warp` interpolation of ``interpolation_order``."""
        return INTERPOLATIONS[self.interpolation_order]

    @property
    def warps_only(self) -> bool:
        """Whether the random changes are the geometric warp alone and standardization an
        affine map per channel: then the training engine may standardize the whole set once
        and warp each batch itself (see the module's contract). Otherwise (a channel or
        brightness shift, ``preprocessing_function``, ZCA whitening) ``Model.fit`` reads the
        iterator's batches, in Keras's order."""
        return (self.channel_shift_range == 0 and self.brightness_range is None
                and self.preprocessing_function is None and not self.zca_whitening)

    def standardized_warp(self, channels: int) -> AffineSpec | None:
        """The warp the training engine may apply to images it standardized first (the
        module's contract) and get what Keras's order (warp, then standardize) gives: the
        geometry with ``cval`` in standardized units. None when no such warp exists: the
        random changes are more than a warp (see :attr:`warps_only`), samplewise statistics
        are to be taken of each warped image, or ``fill_mode='constant'``'s ``cval``
        standardizes to different values in the ``channels`` channels."""
        if not self.warps_only:
            return None
        spec = self.affine_spec
        if spec.flips_only:  # mirrored images: nothing filled, each image's statistics kept
            return spec
        if self.samplewise_center or self.samplewise_std_normalization:
            return None
        if spec.fill_mode != "constant":
            return spec
        with warnings.catch_warnings():  # an unfitted generator's warning: said for the images
            warnings.simplefilter("ignore")
            filled = self._standardize_in_place(
                np.full((1, 1, 1, channels), spec.cval, dtype=self._np_dtype), (1, 2, 3))
        values = np.unique(filled)
        if len(values) != 1:
            return None
        return dataclasses.replace(spec, cval=float(values[0]))

    @property
    def _np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype or "float32")

    # ---- iteration ----------------------------------------------------------------------------

    def flow_from_directory(self, directory, *args, **kwargs):
        """Not supported yet: a directory of image files (Keras reads it through PIL)."""
        raise ConfigError(f"{WHERE}.flow_from_directory: reading image files from a directory "
                          "is not supported yet. Load the images into an array (N, height, "
                          "width, channels) and their labels, then use flow(x, y). Got "
                          f"directory={directory!r}.")

    def flow_from_dataframe(self, dataframe, *args, **kwargs):
        """Not supported yet: image files named in a pandas DataFrame."""
        raise ConfigError(f"{WHERE}.flow_from_dataframe: reading image files named in a "
                          "DataFrame is not supported yet. Load the images into an array "
                          "(N, height, width, channels) and their labels, then use flow(x, y).")

    def flow(
        self,
        x,
        y=None,
        batch_size=32,
        shuffle=True,
        sample_weight=None,
        seed=None,
        save_to_dir=None,
        save_prefix="",
        save_format="png",
        ignore_class_split=False,
        subset=None,
    ) -> NumpyArrayIterator:
        """Batches of augmented data from arrays: ``x`` is ``(N, height, width, channels)``.

        ``subset='validation'`` takes the first ``int(N * validation_split)`` samples,
        ``'training'`` the rest (Keras's split). See :class:`NumpyArrayIterator`.
        """
        return NumpyArrayIterator(
            x,
            y,
            self,
            batch_size=batch_size,
            shuffle=shuffle,
            sample_weight=sample_weight,
            seed=seed,
            save_to_dir=save_to_dir,
            save_prefix=save_prefix,
            save_format=save_format,
            subset=subset,
            ignore_class_split=ignore_class_split,
            dtype=self._np_dtype,
        )

    # ---- standardization ----------------------------------------------------------------------

    def _standardize_in_place(self, x: np.ndarray, sample_axes: tuple[int, ...]) -> np.ndarray:
        """Everything of Keras's ``standardize`` after ``preprocessing_function``."""
        if self.rescale:
            x *= self.rescale
        if self.samplewise_center or self.samplewise_std_normalization:
            x -= np.mean(x, axis=sample_axes, keepdims=True)
        if self.samplewise_std_normalization:
            x /= np.std(x, axis=sample_axes, keepdims=True) + _EPSILON
        if self.featurewise_center or self.featurewise_std_normalization:
            if self.mean is None:
                _warn_not_fit("featurewise_center")
            else:
                x -= self.mean
        if self.featurewise_std_normalization:
            if self.std is None:
                _warn_not_fit("featurewise_std_normalization")
            else:
                x /= self.std + _EPSILON
        if self.zca_whitening:
            if self.zca_whitening_matrix is None:
                _warn_not_fit("zca_whitening")
            else:
                x = intensity.whiten(x, self.zca_whitening_matrix)
        return x

    def _preprocessed(self, where: str, images: np.ndarray) -> np.ndarray:
        """``preprocessing_function`` applied to each image of ``images`` ``(N, H, W, C)``, as
        Keras's iterator calls it (one image at a time); a new array of ``dtype``."""
        out = np.empty(images.shape, dtype=self._np_dtype)
        for i, image in enumerate(images):
            # a copy per image, as Keras's iterator gives: a function that works in place
            # (keras.applications' preprocess_input) must not reach the flow's images
            result = self.preprocessing_function(np.array(image, dtype=self._np_dtype))
            shape = None if result is None else np.shape(result)
            if shape != image.shape:
                got = "None" if result is None else f"shape {shape}"
                raise DataError(
                    f"{where}: 'preprocessing_function' must return an array of its input's "
                    f"shape {image.shape}. Got {got} for image {i}."
                )
            out[i] = result
        return out

    def standardize(self, x):
        """Keras's ``standardize``: rescale, samplewise, then featurewise normalization.

        ``x`` is one ``(height, width, channels)`` image or a batch of them; samplewise statistics
        are per image (Keras takes them over the whole array it is given). Like Keras, a
        floating-point numpy ``x`` is changed in place and returned; other input is copied.
        """
        if self.preprocessing_function is not None:  # on what it is given, as in Keras
            x = self.preprocessing_function(x)
        if not (isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating)):
            x = np.array(x, dtype=self._np_dtype)
        if x.ndim not in (3, 4):
            raise images_shape_error(f"{WHERE}.standardize", x.shape)
        return self._standardize_in_place(x, (x.ndim - 3, x.ndim - 2, x.ndim - 1))

    def standardize_array(self, x) -> np.ndarray:
        """Standardizes a whole ``(N, H, W, C)`` array at once, per sample (and
        ``preprocessing_function`` image by image); returns a new array of ``dtype`` and
        leaves ``x`` untouched (what the training engine calls once)."""
        where = f"{WHERE}.standardize_array"
        if self.preprocessing_function is not None:
            x = self._preprocessed(where, as_images(where, x))
        else:
            x = np.array(as_images(where, x), dtype=self._np_dtype)
        # in dtype also after whitening by the float64 matrix (Keras's iterator writes its
        # batch in dtype)
        return self._standardize_in_place(x, (1, 2, 3)).astype(self._np_dtype, copy=False)

    def fit(self, x, augment=False, rounds=1, seed=None):
        """Computes ``mean`` and ``std`` per channel over axes (0, 1, 2) of ``x``, and the ZCA
        whitening matrix of the centred images, as Keras.

        As current Keras (tf.keras 2.x, Keras 3's legacy generator) does, ``x`` is rescaled
        first (``preprocessing_function`` is not applied); with ``augment=True`` the
        statistics are of ``rounds`` randomly transformed copies. Returns ``self``.
        """
        x = np.array(as_images(f"{WHERE}.fit", x), dtype=self._np_dtype)
        warn_channels(f"{WHERE}.fit", x.shape)
        if self.rescale:
            x *= self.rescale
        if augment:
            if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1:
                raise ConfigError(f"{WHERE}.fit: 'rounds' must be a positive int. Got {rounds!r}.")
            generator = _generator(seed)
            x = np.concatenate([self.random_transform_array(x, generator) for _ in range(rounds)])
        channels = (1, 1, x.shape[3])
        if self.featurewise_center or self.featurewise_std_normalization:
            self.mean = np.mean(x, axis=(0, 1, 2)).reshape(channels)
            x -= self.mean
        if self.featurewise_std_normalization:
            self.std = np.std(x, axis=(0, 1, 2)).reshape(channels)
            x /= self.std + _EPSILON
        if self.zca_whitening:
            self.zca_whitening_matrix = intensity.zca_matrix(x, self.zca_epsilon)
        return self

    # ---- random transforms --------------------------------------------------------------------

    def _warp(self, x: np.ndarray, transforms: torch.Tensor, brightness: bool = False
              ) -> np.ndarray:
        # In float64 ahead of a brightness shift (the generator's, or ``brightness`` given
        # to apply_transform), which truncates to integers: a float32 warp's flip or
        # whole-pixel shift can land 1e-5 below an integer (1e-3 at 224 pixels), where
        # Keras's scipy warp lands on it.
        exact = x.dtype == np.float64 or self.brightness_range is not None or brightness
        work = np.float64 if exact else np.float32
        images = np.ascontiguousarray(x, dtype=work)
        if not images.flags.writeable:  # a memory map opened read-only: torch would warn
            images = images.copy()
        images = torch.from_numpy(images)
        spec = self.affine_spec
        out = warp(
            images,
            transforms,
            fill_mode=spec.fill_mode,
            cval=float(spec.cval),
            interpolation=self.interpolation,
        )
        return out.numpy().astype(self._np_dtype, copy=False)

    def random_transform_array(self, x, generator: torch.Generator | None = None) -> np.ndarray:
        """Keras's ``random_transform`` for every image of ``(N, H, W, C)`` ``x``, in one warp.

        Returns an array of ``dtype``; ``x`` itself (cast) when no random change is set.
        """
        where = f"{WHERE}.random_transform"
        x = np.asarray(as_images(where, x), dtype=self._np_dtype)
        n, height, width, _ = x.shape
        spec = self.affine_spec
        transforms = sample_transforms(spec, n, height, width, generator, dtype=torch.float64)
        shifts, factors = self._pixel_draws(n, generator)
        if not spec.is_identity:
            x = self._warp(x, transforms)
        return self._shift_pixels(where, x, shifts, factors)

    def _pixel_draws(self, n: int, generator: torch.Generator | None):
        """Each image's channel shift intensity and brightness factor (None where off), drawn
        after the geometric parameters, uniform as Keras's ``get_random_transform``."""

        def uniform(low, high):
            u = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
            return low + (high - low) * u

        shift = self.channel_shift_range
        shifts = uniform(-shift, shift) if shift != 0 else None
        factors = None if self.brightness_range is None else uniform(*self.brightness_range)
        return shifts, factors

    def _shift_pixels(self, where: str, x: np.ndarray, shifts, factors) -> np.ndarray:
        """The channel shift, then the brightness shift (Keras's order) of warped images."""
        if shifts is not None:
            x = intensity.channel_shift(x, shifts)
        if factors is not None:
            x = intensity.brightness_shift(x, factors, where)
        return x

    def random_transform(self, x, seed=None) -> np.ndarray:
        """A randomly transformed copy of one ``(height, width, channels)`` image: Keras's
        ``apply_transform(x, get_random_transform(x.shape, seed))``, the same numbers as
        Keras for the same seed."""
        x = np.asarray(x)
        if x.ndim != 3:
            raise DataError(
                f"{WHERE}.random_transform: x must be one image of shape (height, "
                f"width, channels). Got shape {x.shape}."
            )
        return self.apply_transform(x, self.get_random_transform(x.shape, seed))

    def get_random_transform(self, img_shape, seed=None) -> dict:
        """Keras's parameter dict for one image of shape ``(height, width, channels)``: ``theta``,
        ``tx``, ``ty``, ``shear``, ``zx``, ``zy``, ``flip_horizontal``, ``flip_vertical``,
        ``channel_shift_intensity`` and ``brightness`` (None where not drawn), drawn as Keras
        draws them: NumPy's legacy generator, in Keras's order, each only where its range is
        set (the flips' always); with a seed, its own ``RandomState(seed)`` (Keras seeds the
        global one, which this leaves alone), without, the global one as Keras uses it. The
        same seed gives Keras's numbers. (``flow`` draws a batch's transforms at once from
        its own torch generator instead: its batches are not Keras's draw for draw.)"""
        draw = np.random.RandomState(int(seed)) if seed is not None else np.random.mtrand._rand
        rows, cols = int(img_shape[0]), int(img_shape[1])

        def shift(value, size):
            if not value:
                return 0
            if isinstance(value, (int, np.integer)) or isinstance(value, (list, tuple, np.ndarray)):
                amount = draw.choice(value) * draw.choice([-1, 1])
            else:
                amount = draw.uniform(-value, value)
            return amount * size if np.max(value) < 1 else amount

        theta = draw.uniform(-self.rotation_range, self.rotation_range) \
            if self.rotation_range else 0
        tx = shift(self.height_shift_range, rows)  # Keras's tx moves rows, ty columns
        ty = shift(self.width_shift_range, cols)
        shear = draw.uniform(-self.shear_range, self.shear_range) if self.shear_range else 0
        low, high = self.zoom_range
        zx, zy = (1, 1) if low == 1 and high == 1 else draw.uniform(low, high, 2)
        flip_horizontal = (draw.random() < 0.5) * self.horizontal_flip
        flip_vertical = (draw.random() < 0.5) * self.vertical_flip
        channel = draw.uniform(-self.channel_shift_range, self.channel_shift_range) \
            if self.channel_shift_range != 0 else None
        brightness = draw.uniform(*self.brightness_range) \
            if self.brightness_range is not None else None
        return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
                "flip_horizontal": flip_horizontal, "flip_vertical": flip_vertical,
                "channel_shift_intensity": channel, "brightness": brightness}

    def apply_transform(self, x, transform_parameters: dict) -> np.ndarray:
        """Applies Keras's parameter dict (see :meth:`get_random_transform`) to one image."""
        x = np.asarray(x, dtype=self._np_dtype)
        if x.ndim != 3:
            raise DataError(
                f"{WHERE}.apply_transform: x must be one image of shape (height, "
                f"width, channels). Got shape {x.shape}."
            )
        defaults = {"theta": 0, "tx": 0, "ty": 0, "shear": 0, "zx": 1, "zy": 1}
        params = {
            key: torch.tensor([float(transform_parameters.get(key, default))], dtype=torch.float64)
            for key, default in defaults.items()
        }
        for key in ("flip_horizontal", "flip_vertical"):
            params[key] = torch.tensor([bool(transform_parameters.get(key, False))])
        height, width = x.shape[:2]
        pixel = [transform_parameters.get(key) for key in ("channel_shift_intensity",
                                                           "brightness")]
        shifts, factors = (None if v is None else np.array([float(v)]) for v in pixel)
        moved = any(float(params[key]) != default for key, default in defaults.items()) or \
            any(bool(params[key]) for key in ("flip_horizontal", "flip_vertical"))
        if moved:  # as Keras, no warp (and none of its rounding) for the identity
            transforms = affine_params_to_transforms(
                params, height, width, swap_xy=self.affine_spec.swap_xy)
            x = self._warp(x[None], transforms, brightness=factors is not None)
        else:
            x = x[None].copy()
        return self._shift_pixels(f"{WHERE}.apply_transform", x, shifts, factors)[0]
