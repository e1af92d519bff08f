"""Augmentation of each training batch, per seed.

Leading augmentation layers (RandomFlip, RandomRotation, ...) and an optional
ImageDataGenerator-style :class:`reglab.augment.AffineSpec` each sample one
pixel-space transform per image from the seed's own stream. Each layer warps the
images in turn, as Keras's layers do (every bilinear resampling blurs a little: a
fused warp of a rotation and a zoom would be sharper than Keras's images, not only at
the borders); a flip, which moves pixels onto pixels, is composed into its neighbour's
warp (the same image, up to the coordinates' rounding), and the generator's transform
is one warp, as Keras's generator's. A layer that changes values (RandomBrightness,
RandomContrast) takes the images as the warps before it leave them, as in Keras. Members
that share a seed see the same augmented images.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from reglab.engine.rng import epoch_purpose

#: rows of a group's ImageDataGenerator-style transforms drawn and built at once. Its stream
#: gives its numbers one after another whatever the size of each draw, and each row's matrix
#: is its own (:func:`reglab.augment.affine_params_to_transforms`), so drawing ahead changes
#: the cost (the matrices' many small operations once per chunk, not once per batch), not
#: a bit of any batch's transforms.
TRANSFORM_CHUNK = 2048


class _DrawnAhead:
    """One group's spec transforms for its epoch, drawn a chunk at a time, handed out in
    order, ``b`` rows per batch."""

    def __init__(self, spec, height: int, width: int, generator: torch.Generator):
        self.spec, self.height, self.width, self.generator = spec, height, width, generator
        self.rows = torch.empty(0, 3, 3, dtype=torch.float64, device=generator.device)
        self.next = 0

    def take(self, b: int) -> torch.Tensor:
        from reglab.augment.sampling import sample_stacked_transforms

        left = self.rows.shape[0] - self.next
        if left < b:
            fresh = sample_stacked_transforms(self.spec, max(TRANSFORM_CHUNK, b - left),
                                              self.height, self.width, [self.generator])
            self.rows, self.next = torch.cat((self.rows[self.next:], fresh)), 0
        out = self.rows[self.next:self.next + b]
        self.next += b
        return out


class _Stage(NamedTuple):
    """One step of a batch's augmentation, in order: a warp (``key``: fill mode, fill
    value, interpolation and rounding; ``mats``: ``(N, 3, 3)`` transforms; ``flips``: flips
    only) or, with ``values_layer``, a change of values (RandomBrightness, RandomContrast;
    ``mats``: one value per image)."""

    key: tuple | None
    mats: torch.Tensor
    flips: bool = False
    values_layer: Any = None


def augments(population, spec=None) -> bool:
    """Whether :func:`augment_batch` changes a batch: augmentation layers or a spec."""
    return not _identity(spec) or any(lp.layer.is_augmentation for lp in population.plan.layers)


def _identity(spec) -> bool:
    return spec is None or spec.is_identity


def augment_batch(population, xb: torch.Tensor, groups, spec=None) -> torch.Tensor:
    """``xb`` is ``(G, b, H, W, C)``, one row per (seed, epoch) group; returns it augmented,
    one stream per group."""
    layers = [lp for lp in population.plan.layers if lp.layer.is_augmentation]
    if not layers and _identity(spec):
        return xb
    from reglab.augment import warp
    from reglab.augment.affine import compose

    s, b = xb.shape[:2]
    image_shape = tuple(xb.shape[2:])
    if layers:  # a Reshape before the augmentation layers: warped in its shape
        image_shape = _reshaped_images(population, image_shape)
    if len(image_shape) != 3:
        raise ValueError("augmentation expects image batches (N, H, W, C). Got samples of shape "
                         f"{tuple(xb.shape[2:])}. Reshape flat images to (N, 28, 28, 1).")
    h, w = image_shape[0], image_shape[1]
    images = xb.reshape(s * b, *image_shape)
    stages: list[_Stage] = []
    if spec is not None and not spec.is_identity:
        # Each group's draws from its own stream, drawn ahead (see TRANSFORM_CHUNK): each
        # group's the same as alone and as drawn batch by batch.
        streams = population.streams

        def ahead(seed, epoch):
            purpose = epoch_purpose("augment", epoch)
            return streams.drawn_ahead(
                ("augment", seed, purpose, h, w),
                lambda: _DrawnAhead(spec, h, w, streams.get(seed, purpose)))

        mats = torch.cat([ahead(seed, epoch).take(b) for seed, epoch in groups]).to(xb.device)
        stages.append(_Stage((spec.fill_mode, spec.cval, spec.interpolation, "up"), mats,
                             spec.flips_only))
    # A Rescaling before the layers (Keras warps its output): the raw batch is warped and
    # rescaled after, so a constant fill is mapped back through it
    from reglab.engine.member import rescaling_before

    scale, offset = rescaling_before([lp.layer for lp in population.plan.layers])
    for lp in layers:
        layer = lp.layer
        streams = [population.streams.get(seed, epoch_purpose(f"augment/{lp.canonical_name}",
                                                              epoch)) for seed, epoch in groups]
        if getattr(layer, "changes_values", False):  # RandomBrightness, RandomContrast
            values = torch.cat([layer.sample_values(b, stream, xb.device) for stream in streams])
            stages.append(_Stage(None, values, values_layer=layer))
            continue
        mats = torch.cat([layer.sample_transforms(b, h, w, stream, xb.device,
                                                  dtype=torch.float64) for stream in streams])
        # Keras 3's layers round a nearest tie as torch.round does (half to even)
        fill = (layer.fill_value - offset) / scale if scale else layer.fill_value
        stages.append(_Stage((layer.fill_mode, fill, layer.interpolation, "even"), mats,
                             type(layer).__name__ == "RandomFlip"))
    current_key, current, current_flips = None, None, False
    for key, mats, flips, values_layer in stages:
        if values_layer is not None:  # the warps before it first
            if current is not None:
                images = _apply(images, current, current_key, current_flips, warp)
                current = None
            images = values_layer.apply_values(images, mats, scale, offset)
            continue
        if current is not None and not (flips or current_flips):  # a warp of its own
            images = _apply(images, current, current_key, current_flips, warp)
            current = None
        if current is None:
            current, current_key, current_flips = mats, key, flips
            continue
        # Output -> input maps compose by right-multiplication: apply earlier stages last.
        current = compose(current, mats)
        if current_flips:  # a flip samples nothing outside: the other stage's fill
            current_key = key
        current_flips = current_flips and flips
    if current is not None:
        images = _apply(images, current, current_key, current_flips, warp)
    return images.reshape(xb.shape)


def _apply(images: torch.Tensor, mats: torch.Tensor, key, flips_only: bool, warp):
    """``images`` (N, H, W, C) warped by ``mats``; flips alone are exact (pixels moved, as
    Keras's RandomFlip moves them), not resampled."""
    if not flips_only:
        return warp(images, mats.to(images.dtype), *key)
    rows, cols = (mats[:, i, i] < 0 for i in (0, 1))  # (row, col) coordinates' signs
    shape = (-1, 1, 1, 1)
    images = torch.where(cols.to(images.device).view(shape), images.flip(2), images)
    return torch.where(rows.to(images.device).view(shape), images.flip(1), images)


def _reshaped_images(population, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The image shape a leading ``Reshape`` gives samples of ``sample_shape`` before the
    augmentation layers (``Input((784,)) -> Reshape((28, 28, 1)) -> RandomRotation``), or
    ``sample_shape`` itself when none does. Warping the batch in that shape and handing it
    on flat is what Keras computes: the Reshape then lays it out again."""
    from reglab.engine.member import is_reshape

    shape = sample_shape
    for lp in population.plan.layers:
        if lp.layer.is_augmentation:
            return shape
        if is_reshape(lp.layer):
            shape = tuple(lp.output_shape)
    return shape
