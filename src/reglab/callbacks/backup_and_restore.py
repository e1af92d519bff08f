"""``BackupAndRestore``: Keras 3's callback that lets an interrupted ``fit`` go on."""

from __future__ import annotations

import os
from pathlib import Path

from reglab.callbacks.callback import Callback
from reglab.errors import ConfigError
from reglab.utils import interrupts

BACKUP_FILE = "latest.pt"
PREVIOUS_FILE = "previous.pt"


class BackupAndRestore(Callback):
    """Backs training up at the end of every epoch; a ``fit`` that starts where a backup is
    goes on from the epoch after it, as Keras 3's callback does.

    The backup is the whole training state of the model (weights, the optimizer's slots
    and step count, early-stopping and averaging state, the epoch), written atomically to
    ``backup_dir/latest.pt``: a process killed at any moment leaves the last complete
    epoch's backup whole. The resumed training ends exactly as an uninterrupted one
    (with the same thread count), because every random draw is keyed by the epoch. The
    backup's seed goes on with it: a model built without a seed (which draws a new one in
    each process) resumes, as Keras's backup brings its seed generators' state. As Keras
    restores its optimizer's variables only, the resumed fit takes the backup's slots, step
    count and learning rate with the new compile's other hyperparameters (its momentum,
    weight decay), and a callback's early stop does not carry over (a kept backup of a
    stopped fit goes on at the next ``fit``). A backup of other weights (a layer's units),
    or one without the state this optimizer keeps (Adamax's after Adam, a loss scale), is
    refused before anything changes, naming it (Keras would drop its optimizer state with
    a warning). The learning rate backed up is the one that stands when this callback's
    ``on_epoch_end`` runs, as in Keras: a ``ReduceLROnPlateau`` listed before it has cut
    it, one listed after it has not yet.

    Args:
        backup_dir: a directory for the backup; created if missing.
        save_freq: 'epoch' (an integer, backing up every N batches, is not supported and
            raises ``ConfigError``; Keras supports it).
        double_checkpoint: also keep the backup before the last one
            (``backup_dir/previous.pt``), used when the last cannot be read.
        delete_checkpoint: delete the backup when training ends, and the directory if
            nothing else is in it (Keras deletes the directory whatever it holds; a
            training that was interrupted keeps it for the next ``fit``).

    As in Keras, callbacks' own state (``EarlyStopping``'s counters, say) is not backed up,
    and ``History`` holds the epochs trained by the resumed call only. Arrays and
    ``ImageDataGenerator.flow`` inputs are supported; a Python generator is not, nor a flow
    read batch by batch in Keras's order (``channel_shift_range``, ``brightness_range``,
    ``preprocessing_function``, ``zca_whitening``, samplewise standardization with a warp, or
    a constant fill that standardizes to different values per channel).

    Example:
        >>> callback = BackupAndRestore("/tmp/backup")
        >>> callback.save_freq
        'epoch'
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False,
                 delete_checkpoint=True):
        super().__init__()
        if isinstance(backup_dir, os.PathLike):
            backup_dir = os.fspath(backup_dir)
        if not isinstance(backup_dir, str) or not backup_dir:
            raise ConfigError("BackupAndRestore: 'backup_dir' must be a non-empty path. Got "
                              f"{backup_dir!r}.")
        if save_freq != "epoch":
            raise ConfigError("BackupAndRestore: 'save_freq' must be 'epoch' (backups every N "
                              f"batches are not supported). Got {save_freq!r}.")
        for name, value in (("double_checkpoint", double_checkpoint),
                            ("delete_checkpoint", delete_checkpoint)):
            if not isinstance(value, bool):
                raise ConfigError(f"BackupAndRestore: '{name}' must be True or False. Got "
                                  f"{value!r}.")
        self.backup_dir = backup_dir
        self.save_freq = save_freq
        self.double_checkpoint = double_checkpoint
        self.delete_checkpoint = delete_checkpoint
        self._completed = False
        self._learning_rate = None

    @property
    def _latest(self) -> Path:
        return Path(self.backup_dir) / BACKUP_FILE

    @property
    def _previous(self) -> Path:
        return Path(self.backup_dir) / PREVIOUS_FILE

    def on_train_begin(self, logs=None):
        """Hands the last backup (if any) to the model's ``fit``, which resumes from it."""
        import torch

        self._completed = False
        for path in (self._latest, self._previous):
            if not path.is_file():
                continue
            try:
                saved = torch.load(path, weights_only=False)
            except Exception:  # noqa: BLE001 - an unreadable backup: try the older one
                continue
            self.model._resume_state = saved
            return

    def on_epoch_begin(self, epoch, logs=None):
        self._learning_rate = None

    def on_epoch_end(self, epoch, logs=None):
        """Notes the learning rate as it stands here, after the callbacks listed before this
        one (a ``ReduceLROnPlateau``'s cut): Keras backs the optimizer up at this point."""
        optimizer = self.model.optimizer
        self._learning_rate = None if optimizer.schedule is not None else \
            float(optimizer.learning_rate)

    def backup(self, population) -> None:
        """Called by the model's ``fit`` when an epoch is complete."""
        import torch

        checkpoint = population.checkpoint()
        if self._learning_rate is not None:  # a copy: the checkpoint is the live state
            values = [dict(v) for v in checkpoint["optimizer_values"]]
            values[0]["learning_rate"] = self._learning_rate
            checkpoint = {**checkpoint, "optimizer_values": values}
        directory = Path(self.backup_dir)
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / (BACKUP_FILE + ".partial")
        # Ctrl-C inside torch's writer comes out of it as a RuntimeError ('unexpected pos'):
        # noted here, it stays Ctrl-C for the user (utils/interrupts.py)
        with interrupts.noted(), open(partial, "wb") as handle:
            try:
                torch.save(checkpoint, handle)
            except Exception as error:
                interrupts.reraise_if_interrupted(error)
                raise
            handle.flush()
            os.fsync(handle.fileno())
        if self.double_checkpoint and self._latest.is_file():
            os.replace(self._latest, self._previous)
        os.replace(partial, self._latest)

    def on_train_end(self, logs=None):
        self._completed = True
        if self.delete_checkpoint:
            for path in (self._latest, self._previous):
                path.unlink(missing_ok=True)
            # Keras removes the backup directory too; only where nothing else is in it here
            try:
                Path(self.backup_dir).rmdir()
            except OSError:  # missing, or holding a user's files: left as it is
                pass
