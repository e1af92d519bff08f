"""``TerminateOnNaN``: Keras 3's callback that stops training on a NaN or infinite loss."""

from __future__ import annotations

import math

from reglab.callbacks.callback import Callback


class TerminateOnNaN(Callback):
    """Stops training when a batch's ``loss`` is NaN or infinite, as Keras 3.

    After each training batch it reads ``logs['loss']``; on NaN or inf it prints
    ``Batch {batch}: Invalid loss, terminating training`` and sets
    ``model.stop_training = True``: ``fit`` ends the epoch after that batch, as Keras 3
    (reglab itself stops a fit whose loss goes NaN or infinite, with the weights before
    the bad batch), and every callback's ``on_train_end`` still runs. With ``raise_error=True`` (Keras 3's later
    argument) it raises ``RuntimeError`` at once instead, skipping that cleanup.

    Cost: reading the loss after every batch waits for the device each batch, which
    slows training on a GPU. reglab's engine already checks every step: a member
    whose loss is not finite is frozen (keeping its last finite weights), and a model's
    ``fit`` ends there, after the bad batch's hooks, whose logs count it as Keras's
    running means do: this callback then sees its NaN or infinite ``loss`` and stops
    as in Keras.

    Args:
        raise_error: raise instead of stopping gracefully.

    Example:
        >>> TerminateOnNaN().raise_error
        False
    """

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if math.isnan(loss) or math.isinf(loss):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: "
                                   f"{loss}. Terminating training immediately.")
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True
