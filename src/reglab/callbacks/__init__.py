"""Keras's callbacks: the protocol, History, EarlyStopping and the common others."""

from reglab.callbacks.backup_and_restore import BackupAndRestore
from reglab.callbacks.callback import Callback, CallbackList
from reglab.callbacks.csv_logger import CSVLogger
from reglab.callbacks.early_stopping import EarlyStopping
from reglab.callbacks.history import History
from reglab.callbacks.lambda_callback import LambdaCallback
from reglab.callbacks.learning_rate_scheduler import LearningRateScheduler
from reglab.callbacks.model_checkpoint import ModelCheckpoint
from reglab.callbacks.progbar_logger import ProgbarLogger
from reglab.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from reglab.callbacks.terminate_on_nan import TerminateOnNaN

__all__ = [
    "BackupAndRestore", "CSVLogger", "Callback", "CallbackList", "EarlyStopping", "History", "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint", "ProgbarLogger", "ReduceLROnPlateau", "TerminateOnNaN",
]
