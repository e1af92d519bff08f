"""Batched affine warps of channels-last images, and the 3x3 matrices that describe them.

Convention (the one ``scipy.ndimage.affine_transform(matrix=...)`` uses, and so the one Keras's
``ImageDataGenerator`` uses): a transform is a ``(N, 3, 3)`` matrix in PIXEL coordinates that maps
an OUTPUT pixel ``(row, col, 1)`` to the INPUT point ``(row, col, 1)`` sampled there. Pixel ``(i, j)``
is the centre of the cell ``[i - 1/2, i + 1/2] x [j - 1/2, j + 1/2]``. Consecutive augmentations
compose by matrix product: applying ``A`` and then ``B`` is the single warp ``M_A @ M_B`` (``M_B``
takes an output pixel to the intermediate image, ``M_A`` takes that to the input), so any chain
of them costs one warp.

The builders below (:func:`rotation_matrix`, :func:`shift_matrix`, :func:`shear_matrix`,
:func:`zoom_matrix`) return exactly the matrices Keras's ``apply_affine_transform`` writes down, in
Keras's own (first axis, second axis) order; :func:`center` is Keras's
``transform_matrix_offset_center`` and :func:`swap_axes` the axis permutation Keras applies after it.

Example:
    >>> import torch
    >>> images = torch.rand(4, 8, 8, 1)
    >>> flips = flip_matrix(torch.ones(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool), 8, 8)
    >>> torch.allclose(warp(images, flips), images.flip(2))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reglab.errors import ConfigError, unknown_name

# scipy.ndimage's names and meanings. ImageDataGenerator passes its fill_mode straight to scipy,
# so it uses the first four. Keras 3's layers ('constant', 'wrap') mean 'grid-constant' and
# 'grid-wrap' here; see reglab.augment.sampling.keras3_fill_mode.
FILL_MODES = ("nearest", "constant", "reflect", "wrap", "grid-constant", "grid-wrap")
# Keras 3's backends implement 'constant' and 'wrap' on the integer neighbours of each sample
# point (fill value blended in at the edge; period = size), which scipy calls 'grid-*'.
_KERAS3_FILL_MODES = {
    "reflect": "reflect",
    "nearest": "nearest",
    "constant": "grid-constant",
    "wrap": "grid-wrap",
}
INTERPOLATIONS = ("bilinear", "nearest")
#: :func:`affine_params_to_transforms` pads its rows to a multiple of this (a multiple of any
#: CPU's float64 vector loop: 2 x 8 lanes with AVX-512)
ROW_BLOCK = 64


def identity(
    n: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Returns ``n`` identity transforms, ``(n, 3, 3)``."""
    return torch.eye(3, dtype=dtype, device=device).repeat(n, 1, 1)


def _vector(value, like: torch.Tensor | None = None) -> torch.Tensor:
    """A flat float tensor: tensors keep a float dtype, Python numbers become float64 (or ``like``'s)."""
    dtype = torch.float64 if like is None else like.dtype
    device = None if like is None else like.device
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(device=device, dtype=value.dtype if like is None else dtype).reshape(-1)
    return torch.as_tensor(value, dtype=dtype, device=device).reshape(-1)


def _affine(a00, a01, a02, a10, a11, a12) -> torch.Tensor:
    """Stacks six broadcastable (N,) tensors into ``(N, 3, 3)`` matrices ``[[a0.], [a1.], [0 0 1]]``."""
    a00, a01, a02, a10, a11, a12 = torch.broadcast_tensors(a00, a01, a02, a10, a11, a12)
    zero, one = torch.zeros_like(a00), torch.ones_like(a00)
    entries = torch.stack((a00, a01, a02, a10, a11, a12, zero, zero, one), dim=-1)
    return entries.reshape(*a00.shape, 3, 3)  # (N, 3, 3)


def rotation_matrix(theta_rad) -> torch.Tensor:
    """Keras's rotation matrix ``[[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]]``, ``(N, 3, 3)``.

    Read in (row, col) coordinates it rotates the CONTENT clockwise as displayed for positive
    ``theta``; after :func:`swap_axes` (what Keras does) it rotates it counter-clockwise.
    """
    theta = _vector(theta_rad)
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(theta)
    return _affine(cos, -sin, zero, sin, cos, zero)


def shift_matrix(tx, ty) -> torch.Tensor:
    """``[[1, 0, tx], [0, 1, ty], [0, 0, 1]]``: output pixel ``p`` samples input ``p + (tx, ty)``."""
    tx = _vector(tx)
    ty = _vector(ty, like=tx)
    zero, one = torch.zeros_like(tx), torch.ones_like(tx)
    return _affine(one, zero, tx, zero, one, ty)


def shear_matrix(shear_rad) -> torch.Tensor:
    """Keras's shear matrix ``[[1, -sin(s), 0], [0, cos(s), 0], [0, 0, 1]]``, ``(N, 3, 3)``."""
    shear = _vector(shear_rad)
    zero, one = torch.zeros_like(shear), torch.ones_like(shear)
    return _affine(one, -torch.sin(shear), zero, zero, torch.cos(shear), zero)


def zoom_matrix(zx, zy) -> torch.Tensor:
    """``diag(zx, zy, 1)``: a factor above 1 samples a larger area, i.e. zooms OUT (Keras's sense)."""
    zx = _vector(zx)
    zy = _vector(zy, like=zx)
    zero = torch.zeros_like(zx)
    return _affine(zx, zero, zero, zero, zy, zero)


def flip_matrix(flip_h, flip_v, height: int, width: int) -> torch.Tensor:
    """Flips in (row, col) pixel coordinates: ``flip_h`` mirrors columns (left-right, like
    ``np.flip(x, axis=1)``), ``flip_v`` mirrors rows (top-bottom). Both are ``(N,)`` booleans."""
    flip_h = torch.as_tensor(flip_h).reshape(-1).bool()
    flip_v = torch.as_tensor(flip_v, device=flip_h.device).reshape(-1).bool()
    one = torch.ones(flip_h.shape, dtype=torch.float64, device=flip_h.device)
    zero = torch.zeros_like(one)
    row_scale = torch.where(flip_v, -one, one)
    col_scale = torch.where(flip_h, -one, one)
    row_offset = torch.where(flip_v, one * (height - 1), zero)
    col_offset = torch.where(flip_h, one * (width - 1), zero)
    return _affine(row_scale, zero, row_offset, zero, col_scale, col_offset)


def center(matrix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Keras's ``transform_matrix_offset_center(matrix, height, width)``: ``T(o) @ M @ T(-o)`` with
    ``o = (height / 2 - 0.5, width / 2 - 0.5)`` on the (first, second) axes."""
    o = torch.tensor([height / 2 - 0.5, width / 2 - 0.5], dtype=matrix.dtype, device=matrix.device)
    to = torch.eye(3, dtype=matrix.dtype, device=matrix.device)
    back = to.clone()
    to[:2, 2], back[:2, 2] = o, -o
    return compose(compose(to, matrix), back)


def swap_axes(matrix: torch.Tensor) -> torch.Tensor:
    """``P @ M @ P`` with ``P`` swapping the first two axes: what Keras's ``apply_affine_transform``
    does to its centred matrix before calling scipy on channels-last images ("the matrix
    construction assumes x, y order")."""
    order = [1, 0, 2]
    return matrix[..., order, :][..., :, order]


def affine_params_to_transforms(
    params: dict[str, torch.Tensor], height: int, width: int, swap_xy: bool = True
) -> torch.Tensor:
    """``ImageDataGenerator.apply_transform`` as one float64 ``(n, 3, 3)`` matrix per image.

    ``params`` holds ``(n,)`` tensors as ``get_random_transform`` names them: ``theta`` and
    ``shear`` in degrees, ``tx``, ``ty`` in pixels, ``zx``, ``zy`` and boolean ``flip_horizontal``,
    ``flip_vertical``. Keras multiplies rotation @ shift @ shear @ zoom, centres the product,
    permutes its axes (``swap_xy``, see ``AffineSpec``), warps, then flips the warped array.

    Each image's matrix is its own: it does not depend on the other rows (the products are
    written out element by element, see :func:`compose`, and the rows are padded to a multiple
    of :data:`ROW_BLOCK` so that every one takes the trigonometry's vectorized loop, not its
    scalar tail, which rounds differently), so the parameters of several batches may be
    stacked into one call.
    """
    # every parameter as an (n,) tensor (numbers and one-element tensors broadcast), padded
    values = torch.broadcast_tensors(*(torch.as_tensor(value).reshape(-1)
                                       for value in params.values()))
    n = values[0].shape[0]
    padding = -n % ROW_BLOCK
    params = {key: torch.cat((value, value.new_zeros(padding))) if padding else value
              for key, value in zip(params, values)}
    matrix = compose(compose(compose(
        rotation_matrix(torch.deg2rad(params["theta"])),
        shift_matrix(params["tx"], params["ty"])),
        shear_matrix(torch.deg2rad(params["shear"]))),
        zoom_matrix(params["zx"], params["zy"]))
    matrix = center(matrix, height, width)
    if swap_xy:
        matrix = swap_axes(matrix)
    # Keras flips the WARPED array: output pixel -> flipped position -> affine -> input.
    flips = flip_matrix(params["flip_horizontal"], params["flip_vertical"], height, width)
    return compose(matrix, flips.to(device=matrix.device))[:n]


def keras3_fill_mode(fill_mode: str) -> str:
    """The :func:`warp` mode that behaves like a Keras 3 layer's ``fill_mode`` (their default is
    ``'reflect'``): ``'constant'`` -> ``'grid-constant'``, ``'wrap'`` -> ``'grid-wrap'``."""
    if fill_mode not in _KERAS3_FILL_MODES:
        raise unknown_name("keras3_fill_mode", "'fill_mode'", fill_mode, _KERAS3_FILL_MODES)
    return _KERAS3_FILL_MODES[fill_mode]


def _check_choice(where: str, argument: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise unknown_name(where, f"'{argument}'", value, choices)


# Fill modes that grid_sample's padding implements on the normalised grid alone.
_GRID_ONLY_MODES = {"nearest": "border", "reflect": "reflection", "grid-constant": "zeros"}


def compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for ``(..., 3, 3)`` matrices, written out element by element: a batched
    product's kernel depends on the batch's size, and a population's augmentation must give
    each image the same numbers whatever else is in its batch."""
    return (a[..., :, 0:1] * b[..., 0:1, :] + a[..., :, 1:2] * b[..., 1:2, :]
            + a[..., :, 2:3] * b[..., 2:3, :])


def _normalized_theta(matrices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N, 2, 3)`` ``affine_grid`` thetas equal to pixel-space ``matrices``.

    ``affine_grid`` maps normalised output ``(x, y, 1)`` (x along columns; pixel ``i`` at
    ``(2i + 1) / size - 1`` for ``align_corners=False``) to a normalised input point. Written as
    ``to_normalized @ M @ to_pixels``, with the (row, col) <-> (x, y) swap inside both.
    """
    dtype, device = matrices.dtype, matrices.device
    to_pixels = torch.tensor(  # (x, y, 1) -> (row, col, 1)
        [[0.0, height / 2, (height - 1) / 2], [width / 2, 0.0, (width - 1) / 2], [0.0, 0.0, 1.0]],
        dtype=dtype, device=device,
    )
    to_normalized = torch.tensor(  # (row, col, 1) -> (x, y, 1)
        [[0.0, 2 / width, 1 / width - 1], [2 / height, 0.0, 1 / height - 1], [0.0, 0.0, 1.0]],
        dtype=dtype, device=device,
    )
    return compose(compose(to_normalized, matrices), to_pixels)[:, :2, :]


def _scipy_wrap(coordinate: torch.Tensor, size: int) -> torch.Tensor:
    """scipy.ndimage's 'wrap' for one axis: period ``size - 1`` (first and last sample overlap),
    coordinates inside ``[0, size - 1]`` untouched; the same arithmetic as scipy's C code."""
    if size <= 1:
        return torch.zeros_like(coordinate)
    period = size - 1
    below = coordinate + period * (torch.floor(-coordinate / period) + 1)
    above = coordinate - period * torch.floor(coordinate / period)
    return torch.where(coordinate < 0, below, torch.where(coordinate > period, above, coordinate))


def _scipy_reflect(coordinate: torch.Tensor, size: int) -> torch.Tensor:
    """scipy.ndimage's 'reflect' for one axis (half-sample symmetric: d c b a | a b c d |
    d c b a), coordinates inside ``[0, size - 1]`` untouched; scipy's C arithmetic."""
    if size <= 1:
        return torch.zeros_like(coordinate)
    period = 2 * size
    low = coordinate + period * torch.trunc(-coordinate / period)  # in (-period, 0]
    low = torch.where(low < -size, low + period, -low - 1)
    high = coordinate - period * torch.trunc(coordinate / period)  # in [0, period)
    high = torch.where(high >= size, period - high - 1, high)
    return torch.where(coordinate < 0, low, torch.where(coordinate > size - 1, high, coordinate))


#: the fill modes whose nearest sampling follows scipy's rounding (ImageDataGenerator's)
_SCIPY_NEAREST_MODES = ("nearest", "reflect", "wrap", "constant")


def warp(
    images: torch.Tensor,
    transforms: torch.Tensor,
    fill_mode: str = "nearest",
    cval: float = 0.0,
    interpolation: str = "bilinear",
    ties: str = "up",
) -> torch.Tensor:
    """Warps each image by its own transform with one ``grid_sample`` call, ``(N, H, W, C)``.

    Output pixel ``p`` takes the input at ``transforms[n] @ p`` (scipy's convention, see the
    module docstring). With ``interpolation='bilinear'`` this equals, per channel,
    ``scipy.ndimage.affine_transform(x, M[:2, :2], M[:2, 2], order=1, mode=fill_mode, cval=cval)``.

    Args:
        images: ``(N, H, W, C)`` floating-point images, channels last.
        transforms: ``(N, 3, 3)`` matrices (any float dtype; sampling coordinates are computed
            in float64 and cast to the images' dtype).
        fill_mode: how points outside the input are filled, with scipy.ndimage's meanings:
            ``'nearest'`` (a a | a b c d | d d), ``'constant'`` (``cval`` wherever the sample point
            lies outside ``[0, H-1] x [0, W-1]``, no blending at the edge), ``'reflect'``
            (d c b a | a b c d | d c b a, half-sample symmetric), ``'wrap'`` (scipy's wrap:
            period ``size - 1``, the first and last samples overlap), ``'grid-constant'``
            (``cval`` beyond the edge, blended into the border pixels by the interpolation) and
            ``'grid-wrap'`` (truly periodic, a b c d | a b c d). Exactly at a multiple of the
            'wrap' period, scipy's own choice of sample is "not well defined"; this function
            uses scipy's arithmetic, so it differs from scipy only where the two compute a
            sample point that is off by a rounding error across such a seam.
        cval: fill value for ``'constant'`` and ``'grid-constant'``.
        interpolation: ``'bilinear'`` or ``'nearest'``.
        ties: how nearest sampling rounds an exact half-pixel tie: ``'up'``, as scipy's order
            0 does (ImageDataGenerator's ``interpolation_order=0``; the 'grid-' modes round
            half to even), or ``'even'``, torch's, as Keras 3's augmentation layers round on
            the torch backend.

    Returns:
        The warped images, ``(N, H, W, C)``, same dtype and device as ``images``.
    """
    _check_choice("warp", "fill_mode", fill_mode, FILL_MODES)
    _check_choice("warp", "interpolation", interpolation, INTERPOLATIONS)
    _check_choice("warp", "ties", ties, ("up", "even"))
    if images.ndim != 4 or not images.is_floating_point():
        raise ConfigError(
            "warp: 'images' must be a floating-point (N, H, W, C) tensor. "
            f"Got dtype {images.dtype} and shape {tuple(images.shape)!r}."
        )
    n, height, width, _ = images.shape
    if tuple(transforms.shape) != (n, 3, 3):
        raise ConfigError(
            f"warp: 'transforms' must have shape ({n}, 3, 3), one per image. "
            f"Got {tuple(transforms.shape)!r}."
        )
    grid_dtype = torch.float32 if images.device.type == "mps" else torch.float64
    matrices = transforms.to(device=images.device, dtype=grid_dtype)
    x = images.permute(0, 3, 1, 2)  # (N, C, H, W)
    if fill_mode in _GRID_ONLY_MODES and interpolation == "bilinear":
        # The sampling grid is affine in the output pixel, and separable: a column term plus a
        # row term, each computed in float64, added in the images' dtype. (F.affine_grid
        # computes the same grid ~5x slower on CPU.) Nearest sampling takes the path below,
        # whose float64 pixel coordinates keep scipy's exact half-pixel ties.
        theta = _normalized_theta(matrices, height, width)
        xs = torch.arange(width, dtype=grid_dtype, device=images.device)
        ys = torch.arange(height, dtype=grid_dtype, device=images.device)
        xs, ys = (2 * xs + 1) / width - 1, (2 * ys + 1) / height - 1
        coefficients = theta.permute(1, 0, 2)  # (2, N, 3): the (x, y) rows of each theta
        along_cols = (coefficients[..., 0:1] * xs).to(images.dtype)  # (2, N, W)
        along_rows = (coefficients[..., 1:2] * ys + coefficients[..., 2:3]).to(images.dtype)
        # Summed as (2, N, H, W), W innermost (a broadcast over a last axis of 2 is ~10x
        # slower); grid_sample takes the (N, H, W, 2) view with its strides.
        grid = (along_rows[..., :, None] + along_cols[..., None, :]).permute(1, 2, 3, 0)
        padding = _GRID_ONLY_MODES[fill_mode]
        if fill_mode == "grid-constant":
            x = x - cval
        result = F.grid_sample(
            x, grid, mode=interpolation, padding_mode=padding, align_corners=False
        )
        if fill_mode == "grid-constant":
            result = result + cval
        return result.permute(0, 2, 3, 1).contiguous()
    rows = torch.arange(height, dtype=grid_dtype, device=images.device)
    cols = torch.arange(width, dtype=grid_dtype, device=images.device)
    rows, cols = rows[None, :, None], cols[None, None, :]  # (1, H, 1), (1, 1, W)
    # (N, H, W): input (row, col) sampled at each output pixel, element by element (see compose).
    m = matrices[:, :2, :, None, None]  # (N, 2, 3, 1, 1)
    row_in = m[:, 0, 0] * rows + m[:, 0, 1] * cols + m[:, 0, 2]
    col_in = m[:, 1, 0] * rows + m[:, 1, 1] * cols + m[:, 1, 2]

    padding, outside, size = "border", None, (height, width)
    if fill_mode == "reflect":
        padding = "reflection"
    elif fill_mode == "wrap":
        row_in, col_in = _scipy_wrap(row_in, height), _scipy_wrap(col_in, width)
    elif fill_mode == "constant":
        outside = (row_in < 0) | (row_in > height - 1) | (col_in < 0) | (col_in > width - 1)
    elif fill_mode == "grid-constant":
        x, padding = x - cval, "zeros"
    elif fill_mode == "grid-wrap":
        # Periodic: fold into [-1/2, size - 1/2) and sample a copy padded by one wrapped pixel.
        row_in = torch.remainder(row_in + 0.5, height) + 0.5
        col_in = torch.remainder(col_in + 0.5, width) + 0.5
        x, size = F.pad(x, (1, 1, 1, 1), mode="circular"), (height + 2, width + 2)
    if interpolation == "nearest" and ties == "up" and fill_mode in _SCIPY_NEAREST_MODES:
        # scipy's order 0: the coordinate mapped by the mode, then rounded half up (torch's
        # nearest rounds a tie half to even: a shift by half a pixel took every other
        # column twice); the index clamped as scipy's edge handling keeps it in the image
        if fill_mode == "reflect":
            row_in, col_in = _scipy_reflect(row_in, height), _scipy_reflect(col_in, width)
        padding = "border"
        row_in = torch.floor(row_in + 0.5).clamp_(0, height - 1)
        col_in = torch.floor(col_in + 0.5).clamp_(0, width - 1)

    # Normalised grid for align_corners=False: pixel i sits at (2i + 1) / size - 1.
    grid = torch.stack([(2 * col_in + 1) / size[1] - 1, (2 * row_in + 1) / size[0] - 1], dim=-1)
    result = F.grid_sample(
        x, grid.to(images.dtype), mode=interpolation, padding_mode=padding, align_corners=False
    )
    if fill_mode == "grid-constant":
        result = result + cval
    if outside is not None:
        result = result.masked_fill(outside[:, None], cval)
    return result.permute(0, 2, 3, 1).contiguous()  # (N, H, W, C)
