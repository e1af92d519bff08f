"""Datasets: Keras-style ``fashion_mnist`` and ``mnist``, and loaders for the user's own data.

Example:
    >>> from reglab.datasets import fashion_mnist
    >>> (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()  # doctest: +SKIP
"""

from reglab.datasets import fashion_mnist, mnist
from reglab.datasets.user_data import load_arrays, load_csv, load_npz

__all__ = ["fashion_mnist", "mnist", "load_arrays", "load_csv", "load_npz"]
