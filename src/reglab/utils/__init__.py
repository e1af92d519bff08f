"""Small helpers with Keras's names: ``to_categorical``, ``normalize``, ``set_random_seed``,
``PyDataset`` (and its alias ``Sequence``)."""

from reglab.utils.numerical_utils import normalize, to_categorical
from reglab.utils.py_dataset import PyDataset, Sequence
from reglab.utils.random_seed import next_seed, set_random_seed

__all__ = ["PyDataset", "Sequence", "next_seed", "normalize", "set_random_seed",
           "to_categorical"]
