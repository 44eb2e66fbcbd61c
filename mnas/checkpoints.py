"""Epoch checkpoints that let an interrupted `fit` resume where it stopped.

`EpochCheckpoint` saves the model, its optimizer (step count included, so learning-rate
schedules continue) and any extra variables (e.g. `ResourceRegularizer.state_variables`) at
the end of every epoch, with `tf.train.CheckpointManager`, and restores them when training
begins. `resume_epoch(directory)` tells which epoch to pass to `fit` as `initial_epoch`.

`progress.json` is written after the checkpoint it names, and the checkpoint before it is kept,
so an interruption at any moment leaves a `progress.json` whose checkpoint is complete.

Example:

>>> ckpt = EpochCheckpoint("run/search")                     # doctest: +SKIP
>>> model.fit(data, epochs=10, initial_epoch=resume_epoch("run/search"),
...           callbacks=[regularizer, ckpt])                # doctest: +SKIP
"""

import json
import os

import tensorflow as tf
import tf_keras as keras

from mnas import errors, files
from mnas.rundir import RESTART_HINT, read_json

_PROGRESS = "progress.json"
_PREFIX = "ckpt"


def _damaged(directory, detail):
    return errors.CorruptRunFileError(
        f"Damaged checkpoint in {directory}: {detail}; remove that folder to redo its stage "
        f"from the start, or {RESTART_HINT}.")


def resume_epoch(directory):
    """The number of epochs finished by the checkpoints in `directory` (0 when none).

    Raises:
        CorruptRunFileError: `progress.json` is damaged or names a missing checkpoint.
    """
    path = os.path.join(directory, _PROGRESS)
    if not os.path.exists(path):
        return 0
    progress = read_json(path, "checkpoint progress")
    done = progress.get("epochs_done") if isinstance(progress, dict) else None
    if isinstance(done, bool) or not isinstance(done, int) or done < 0:
        raise _damaged(directory, f"{path} holds {json.dumps(progress)[:60]}, not a count of "
                                  f"finished epochs")
    if done and not os.path.exists(checkpoint_prefix(directory, done) + ".index"):
        raise _damaged(directory, f"the checkpoint of epoch {done} is missing")
    return done


def checkpoint_prefix(directory, epochs_done):
    """The path prefix of the checkpoint saved after `epochs_done` epochs."""
    return os.path.join(directory, f"{_PREFIX}-{epochs_done}")


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves training state every epoch and restores it when `fit` begins.

    Put it after the callbacks whose state it saves: they reset their state in
    `on_train_begin`, and this callback restores it afterwards.

    Args:
        directory: Folder of the checkpoints (created when missing).
        variables: Extra variables to save and restore, by name. Defaults to none.

    Raises:
        CorruptRunFileError: (when `fit` begins) the checkpoint to resume from is damaged.
    """

    def __init__(self, directory, variables=None):
        super().__init__()
        self.directory = os.fspath(directory)
        self.variables = dict(variables or {})
        self._manager = None

    def _checkpoint(self):
        optimizer = self.model.optimizer
        # Slot variables are created lazily; build them so the checkpoint restores them now.
        if not optimizer.variables():
            optimizer.build(self.model.trainable_variables)
        return tf.train.Checkpoint(model=self.model, optimizer=optimizer, **self.variables)

    def on_train_begin(self, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        checkpoint = self._checkpoint()
        # Two kept: the one progress.json names survives the save of the next.
        self._manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=2,
                                                   checkpoint_name=_PREFIX)
        done = resume_epoch(self.directory)
        if done:
            try:
                checkpoint.restore(checkpoint_prefix(self.directory, done)).expect_partial()
            except (tf.errors.OpError, IndexError, ValueError) as e:
                reason = (getattr(e, "message", None) or str(e)).splitlines()[0][:120]
                raise _damaged(self.directory, f"the checkpoint of epoch {done} cannot be "
                                               f"read ({reason})") from None

    def on_epoch_end(self, epoch, logs=None):
        self._manager.save(checkpoint_number=epoch + 1)
        # Written after the checkpoint: an interruption in between only repeats one epoch.
        files.write_atomic(os.path.join(self.directory, _PROGRESS),
                           json.dumps({"epochs_done": epoch + 1}))
