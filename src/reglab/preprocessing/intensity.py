"""``ImageDataGenerator``'s changes of pixel values: channel shifts, brightness, ZCA whitening.

Each works on a batch ``(N, height, width, channels)`` at once and gives, image by image,
what Keras's legacy functions give for one image (``apply_channel_shift``,
``apply_brightness_shift`` with ``scale=False`` as ``apply_transform`` calls it, and the
whitening matrix ``ImageDataGenerator.fit`` learns), down to the rounding:

- a channel shift adds one intensity to every channel of an image, in the image's dtype,
  and clips the result to the image's own minimum and maximum (over all its channels);
- a brightness shift goes through an 8-bit picture as Keras's does through PIL: values are
  truncated to integers 0-255 (after stretching the image to 0-255 when it holds values
  outside that range, and back afterwards), multiplied by the factor in single precision
  (PIL's ``Image.blend`` with a black image), truncated again and clipped to 0-255. An image
  of values in [0, 1] therefore comes out as 0s and 1s, as in Keras: rescale after
  augmenting (``rescale=1/255`` does);
- the whitening matrix is ``U diag(sqrt(n) / (s + epsilon)) U^T`` from the SVD of the
  centred, flattened images.
"""

from __future__ import annotations

import warnings

import numpy as np

from reglab.errors import DataError

#: the channel counts an 8-bit picture has (PIL's modes L, RGB and RGBA)
PICTURE_CHANNELS = (1, 3, 4)


def _extremes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's minimum and maximum, ``(N, 1, 1, 1)``, in ``x``'s dtype."""
    flat = x.reshape(len(x), -1)
    shape = (len(x), 1, 1, 1)
    return flat.min(axis=1).reshape(shape), flat.max(axis=1).reshape(shape)


def channel_shift(x: np.ndarray, intensities: np.ndarray) -> np.ndarray:
    """``x + intensity`` per image (``intensities``: ``(N,)``), clipped to each image's range."""
    if len(x) == 0:
        return x.copy()
    low, high = _extremes(x)
    shift = np.asarray(intensities, dtype=np.float64).astype(x.dtype).reshape(-1, 1, 1, 1)
    return np.clip(x + shift, low, high)


def brightness_shift(x: np.ndarray, factors: np.ndarray, where: str) -> np.ndarray:
    """Each image's brightness times its factor (``factors``: ``(N,)``) through an 8-bit
    picture, as Keras's ``apply_brightness_shift(image, factor, scale=False)``; a new array
    of ``x``'s dtype."""
    if x.shape[-1] not in PICTURE_CHANNELS:
        raise DataError(f"{where}: 'brightness_range' needs images of 1, 3 or 4 channels (an "
                        f"8-bit picture, as in Keras). Got {x.shape[-1]} channels.")
    if len(x) == 0:
        return x.copy()
    if not np.isfinite(x).all():
        raise DataError(f"{where}: 'brightness_range' needs finite pixel values. Got NaN or "
                        "infinity in the images.")
    low, high = _extremes(x)  # in x's dtype: Keras's x_min, x_max
    stretched = ((low < 0) | (high > 255)).reshape(-1)
    kept = high[~stretched]
    if kept.size and (kept <= 1).all() and (kept > 0).any():
        warnings.warn(f"{where}: 'brightness_range' on images of values in [0, 1]: the "
                      "brightness shift works on 8-bit integers 0-255 (as Keras's), so the "
                      "images become 0s and 1s. Pass pixels in 0-255 and rescale with "
                      "rescale=1/255.", UserWarning, stacklevel=4)
    picture = x.astype(np.float32)  # array_to_img's float32 copy
    if stretched.any():  # stretched to 0-255 in float32, as array_to_img(scale=True)
        part = picture[stretched]
        part -= _extremes(part)[0]
        span = _extremes(part)[1]
        np.divide(part, span, out=part, where=span != 0)
        part *= np.float32(255)
        picture[stretched] = part
    pixels = picture.astype(np.uint8).astype(np.float32)  # truncation, as astype('uint8')
    alpha = np.asarray(factors, dtype=np.float64).astype(np.float32).reshape(-1, 1, 1, 1)
    blended = np.clip(np.trunc(alpha * pixels), 0, 255).astype(np.float32)
    if x.shape[-1] == 4:  # PIL's Brightness keeps an RGBA picture's alpha channel
        blended[..., 3] = pixels[..., 3]
    out = blended.astype(x.dtype)
    if stretched.any():  # back to the image's range: x / 255 * (x_max - x_min) + x_min
        out[stretched] = (blended[stretched] / np.float32(255)
                          * (high[stretched] - low[stretched]) + low[stretched])
    return out


def zca_matrix(x: np.ndarray, epsilon: float) -> np.ndarray:
    """The ZCA whitening matrix of the (already centred) images ``x``, ``(D, D)`` with
    ``D = height * width * channels``, in ``x``'s dtype, as Keras's ``fit`` computes it."""
    n = len(x)
    flat = np.reshape(x, (n, -1))
    u, s, _ = np.linalg.svd(flat.T, full_matrices=False)
    s_inv = np.sqrt(n) / (s + epsilon)
    return (u * s_inv).dot(u.T)


def whiten(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The images ``x`` (one ``(H, W, C)`` image or a batch) times the whitening matrix."""
    flat = x.reshape(-1, int(np.prod(x.shape[-3:])))
    return np.reshape(flat @ matrix, x.shape)
