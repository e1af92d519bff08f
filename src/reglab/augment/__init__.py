"""Vectorized random affine augmentation with Keras's meanings.

One ``(N, 3, 3)`` matrix per image (output pixel -> input pixel, scipy.ndimage's convention),
composed by matrix product and applied in one :func:`warp` per batch.

Example:
    >>> import torch
    >>> from reglab.augment import AffineSpec, random_affine
    >>> images = torch.rand(8, 28, 28, 1)
    >>> spec = AffineSpec(rotation_range=10, zoom_range=0.1, horizontal_flip=True)
    >>> random_affine(images, spec, torch.Generator().manual_seed(0)).shape
    torch.Size([8, 28, 28, 1])
"""

from reglab.augment.affine import (
    FILL_MODES,
    INTERPOLATIONS,
    affine_params_to_transforms,
    center,
    flip_matrix,
    identity,
    keras3_fill_mode,
    rotation_matrix,
    shear_matrix,
    shift_matrix,
    swap_axes,
    warp,
    zoom_matrix,
)
from reglab.augment.sampling import (
    FLIP_MODES,
    IMAGE_DATA_GENERATOR_FILL_MODES,
    AffineSpec,
    factor_range,
    random_affine,
    random_flip_transforms,
    random_rotation_transforms,
    random_translation_transforms,
    random_zoom_transforms,
    sample_affine_params,
    sample_transforms,
)

__all__ = [
    "FILL_MODES",
    "FLIP_MODES",
    "IMAGE_DATA_GENERATOR_FILL_MODES",
    "INTERPOLATIONS",
    "AffineSpec",
    "affine_params_to_transforms",
    "center",
    "factor_range",
    "flip_matrix",
    "identity",
    "keras3_fill_mode",
    "random_affine",
    "random_flip_transforms",
    "random_rotation_transforms",
    "random_translation_transforms",
    "random_zoom_transforms",
    "rotation_matrix",
    "sample_affine_params",
    "sample_transforms",
    "shear_matrix",
    "shift_matrix",
    "swap_axes",
    "warp",
    "zoom_matrix",
]
