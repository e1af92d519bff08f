"""Keras's callbacks: the protocol, History, EarlyStopping and the common others."""

from reglab.callbacks.callback import Callback, CallbackList
from reglab.callbacks.early_stopping import EarlyStopping
from reglab.callbacks.history import History
from reglab.callbacks.progbar_logger import ProgbarLogger

__all__ = ["Callback", "CallbackList", "EarlyStopping", "History", "ProgbarLogger"]
