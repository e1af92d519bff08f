"""MNIST handwritten digits, loaded as ``keras.datasets.mnist.load_data`` returns them.

The files are the four original IDX files of LeCun, Cortes and Burges; see
:mod:`reglab.datasets.sources` for where they are looked for. The SHA-256
digests below are those of the original ``.gz`` files (9,912,422, 28,881,
1,648,877 and 4,542 bytes), as also pinned by TensorFlow Datasets and
torchvision's mirrors.
"""

from __future__ import annotations

import os

import numpy as np

from reglab.datasets import idx, sources

#: Download directory; ``$REGLAB_DATASET_MIRROR`` or ``load_data(base_url=...)`` override it.
BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: SHA-256 of each download.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

#: The four IDX files of the MNIST layout, shared by Fashion-MNIST.
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

Split = tuple[np.ndarray, np.ndarray]


def load_mnist_layout(
    spec: sources.DatasetSpec,
    path: str | os.PathLike[str] | None,
    base_url: str | None,
) -> tuple[Split, Split]:
    """Locates and reads a dataset stored in MNIST's four-file IDX layout.

    Args:
        spec: The dataset; its ``files`` must be :data:`FILES`.
        path: A directory to search first.
        base_url: Overrides the download location.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: uint8 images ``(N, 28, 28)``
        and uint8 labels ``(N,)`` in ``0..9``.
    """
    files = sources.locate(spec, path, base_url=base_url)
    train = idx.read_labelled_images(
        files[FILES[0]], files[FILES[1]], image_shape=(28, 28), num_classes=10
    )
    test = idx.read_labelled_images(
        files[FILES[2]], files[FILES[3]], image_shape=(28, 28), num_classes=10
    )
    return train, test


def load_data(
    path: str | os.PathLike[str] | None = None, *, base_url: str | None = None
) -> tuple[Split, Split]:
    """Loads the MNIST dataset of 60,000 training and 10,000 test digits.

    Unlike Keras, whose ``path`` names a file in its cache, ``path`` here is a
    directory holding the four IDX files; it is searched first.

    Args:
        path: A directory holding the IDX files (plain or ``.gz``), or None.
        base_url: Download from this URL directory instead of :data:`BASE_URL`.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: uint8 arrays of shapes
        ``(60000, 28, 28)``, ``(60000,)``, ``(10000, 28, 28)``, ``(10000,)``.

    Raises:
        DatasetNotFoundError: The files are nowhere and cannot be downloaded.
        DataError: A file is corrupt or a download fails its SHA-256 check.

    Example:
        >>> from reglab.datasets import mnist
        >>> (x_train, y_train), (x_test, y_test) = mnist.load_data()  # doctest: +SKIP
        >>> x_train.shape, y_train.dtype  # doctest: +SKIP
        ((60000, 28, 28), dtype('uint8'))
    """
    spec = sources.DatasetSpec(
        name="mnist",
        where="mnist.load_data",
        files=FILES,
        base_url=BASE_URL,
        sha256=SHA256,
    )
    return load_mnist_layout(spec, path, base_url)
