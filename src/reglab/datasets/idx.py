"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a big-endian header followed by the raw array::

    0x00 0x00 <dtype code> <ndim>    magic number, 4 bytes
    <dim 0> ... <dim ndim-1>         one unsigned 32-bit integer each
    <data>                           product(dims) items of the dtype

Files may be gzip-compressed; a gzip stream is recognised by its magic bytes
(``1f 8b``), so ``train-images-idx3-ubyte`` and ``train-images-idx3-ubyte.gz``
are read alike. Every inconsistency raises :class:`~reglab.errors.DataError`
naming the file: a reader of this module never gets a garbage array.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from reglab.errors import ConfigError, DataError

#: IDX dtype code → big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads one IDX file, gzip-compressed or plain.

    Args:
        path: The file to read.

    Returns:
        A writable array in native byte order with the shape and dtype the
        header declares.

    Raises:
        DataError: The file cannot be read, is not valid gzip, or its header
            or length do not match the IDX format.

    Example:
        >>> import tempfile, numpy as np
        >>> path = tempfile.mkdtemp() + "/x-idx1-ubyte.gz"
        >>> write_idx(path, np.arange(3, dtype=np.uint8))
        >>> read_idx(path)
        array([0, 1, 2], dtype=uint8)
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"read_idx({str(path)!r}): expected a readable file. Got {e}.") from e
    if raw.startswith(_GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(
                f"read_idx({str(path)!r}): expected a complete gzip stream. Got a corrupt or "
                f"truncated one ({type(e).__name__}: {e}). Delete the file and fetch it again."
            ) from e
    elif path.suffix == ".gz":
        raise DataError(
            f"read_idx({str(path)!r}): expected a gzip stream (starting with bytes 1f 8b) "
            f"since the name ends in '.gz'. Got first bytes {raw[:4]!r}."
        )
    return parse_idx(raw, source=str(path))


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parses the uncompressed bytes of one IDX file.

    Args:
        data: The whole file content, header included.
        source: What to call the data in error messages, usually its path.

    Returns:
        A writable array in native byte order.

    Raises:
        DataError: The magic number, dtype code, dimensions or data length are
            not those of a valid IDX file.
    """
    where = f"read_idx({source!r})"
    if len(data) < 4:
        raise DataError(f"{where}: expected a 4-byte IDX magic number. Got {len(data)} bytes.")
    zero0, zero1, code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{where}: expected an IDX magic number starting with bytes 00 00. "
            f"Got {data[:4].hex(' ')}. Is this an IDX file?"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{where}: expected an IDX dtype code in ({known}). Got 0x{code:02X}.")
    if ndim < 1:
        raise DataError(f"{where}: expected at least 1 dimension in the IDX header. Got 0.")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{where}: expected a {header_len}-byte header for {ndim} dimensions. "
            f"Got a file of {len(data)} bytes (truncated)."
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    if any(d == 0 for d in shape):
        raise DataError(f"{where}: expected positive dimensions. Got shape {shape}.")
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(data) - header_len
    if got != expected:
        problem = "truncated" if got < expected else "trailing bytes"
        raise DataError(
            f"{where}: expected {expected} data bytes for shape {shape} of {dtype.name}. "
            f"Got {got} ({problem})."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    # astype copies: the result is writable and in native byte order.
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Writes ``array`` as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

    Args:
        path: The file to write.
        array: An array of at least one dimension whose dtype is one the IDX
            format knows (uint8, int8, int16, int32, float32, float64).

    Raises:
        ConfigError: The array's dtype or shape cannot be stored as IDX.
    """
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        names = ", ".join(dt.name for dt in codes)
        raise ConfigError(f"write_idx: 'array' dtype must be one of {names}. Got {array.dtype}.")
    if array.ndim < 1 or array.ndim > 255:
        raise ConfigError(f"write_idx: 'array' must have 1 to 255 dimensions. Got {array.ndim}.")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(IDX_DTYPES[code]).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)


def read_labelled_images(
    images_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    *,
    image_shape: tuple[int, ...],
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads an IDX image file and its IDX label file, and checks they fit together.

    Args:
        images_path: IDX file of uint8 images of shape ``(N, *image_shape)``.
        labels_path: IDX file of ``N`` uint8 labels.
        image_shape: The shape each image must have, e.g. ``(28, 28)``.
        num_classes: Labels must lie in ``0 .. num_classes - 1``.

    Returns:
        ``(images, labels)``, both uint8.

    Raises:
        DataError: A file is invalid, or shapes, dtypes, counts or label
            values do not match.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    where = f"read_labelled_images({str(images_path)!r}, {str(labels_path)!r})"
    expected_images = f"uint8 images of shape (N, {', '.join(map(str, image_shape))})"
    if images.dtype != np.uint8 or images.shape[1:] != tuple(image_shape):
        raise DataError(
            f"{where}: expected {expected_images}. "
            f"Got {images.dtype} of shape {images.shape} in {str(images_path)!r}."
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{where}: expected uint8 labels of shape (N,). "
            f"Got {labels.dtype} of shape {labels.shape} in {str(labels_path)!r}."
        )
    if len(images) != len(labels):
        raise DataError(
            f"{where}: expected as many labels as images. "
            f"Got {len(images)} images and {len(labels)} labels."
        )
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise DataError(
            f"{where}: expected labels in 0..{num_classes - 1}. "
            f"Got {int(labels[bad[0]])} at index {int(bad[0])} in {str(labels_path)!r}."
        )
    return images, labels
