"""Fashion-MNIST, loaded as ``keras.datasets.fashion_mnist.load_data`` returns it.

Zalando's 70,000 28x28 grayscale images of 10 clothing classes, in MNIST's
four-file IDX layout; see :mod:`reglab.datasets.sources` for where the files
are looked for. On Debian, ``apt-get install dataset-fashion-mnist`` puts them
in ``/usr/share/datasets/fashion-mnist``.

The SHA-256 digests below are those of the official downloads (26,421,880,
29,515, 4,422,102 and 5,148 bytes). Debian's copies hold the same compressed
streams under another gzip header (no file name, another mtime), so they have
other digests; local files are checked by IDX validation, not by digest.
"""

from __future__ import annotations

import os

from reglab.datasets import sources
from reglab.datasets.mnist import FILES, Split, load_mnist_layout

#: Download directory; ``$REGLAB_DATASET_MIRROR`` or ``load_data(base_url=...)`` override it.
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: SHA-256 of each official download.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}

#: Class index → name, as in the Fashion-MNIST README.
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def load_data(
    path: str | os.PathLike[str] | None = None, *, base_url: str | None = None
) -> tuple[Split, Split]:
    """Loads the Fashion-MNIST dataset of 60,000 training and 10,000 test images.

    Args:
        path: A directory holding the four IDX files (plain or ``.gz``),
            searched before all other places; or None.
        base_url: Download from this URL directory instead of :data:`BASE_URL`.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: uint8 arrays of shapes
        ``(60000, 28, 28)``, ``(60000,)``, ``(10000, 28, 28)``, ``(10000,)``.

    Raises:
        DatasetNotFoundError: The files are nowhere and cannot be downloaded.
        DataError: A file is corrupt or a download fails its SHA-256 check.

    Example:
        >>> from reglab.datasets import fashion_mnist
        >>> (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()  # doctest: +SKIP
        >>> x_train.shape, y_train.dtype  # doctest: +SKIP
        ((60000, 28, 28), dtype('uint8'))
    """
    spec = sources.DatasetSpec(
        name="fashion-mnist",
        where="fashion_mnist.load_data",
        files=FILES,
        base_url=BASE_URL,
        sha256=SHA256,
        install_hints=("apt-get install dataset-fashion-mnist",),
    )
    return load_mnist_layout(spec, path, base_url)
