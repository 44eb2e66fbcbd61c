"""Epoch checkpoints that let an interrupted `fit` resume where it stopped.

`EpochCheckpoint` saves the model, its optimizer (step count included, so learning-rate
schedules continue) and any extra variables (e.g. `ResourceRegularizer.state_variables`) at
the end of every epoch, with `tf.train.CheckpointManager`, and restores them when training
begins. `resume_epoch(directory)` tells which epoch to pass to `fit` as `initial_epoch`.

Example:

>>> ckpt = EpochCheckpoint("run/search")                     # doctest: +SKIP
>>> model.fit(data, epochs=10, initial_epoch=resume_epoch("run/search"),
...           callbacks=[regularizer, ckpt])                # doctest: +SKIP
"""

import json
import os

import tensorflow as tf
import tf_keras as keras

_PROGRESS = "progress.json"


def resume_epoch(directory):
    """The number of epochs finished by the checkpoints in `directory` (0 when none)."""
    path = os.path.join(directory, _PROGRESS)
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return int(json.load(f)["epochs_done"])


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves training state every epoch and restores it when `fit` begins.

    Put it after the callbacks whose state it saves: they reset their state in
    `on_train_begin`, and this callback restores it afterwards.

    Args:
        directory: Folder of the checkpoints (created when missing).
        variables: Extra variables to save and restore, by name. Defaults to none.
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
        self._manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=1)
        if self._manager.latest_checkpoint and resume_epoch(self.directory):
            checkpoint.restore(self._manager.latest_checkpoint).expect_partial()

    def on_epoch_end(self, epoch, logs=None):
        self._manager.save(checkpoint_number=epoch + 1)
        # Written after the checkpoint: an interruption in between only repeats one epoch.
        path = os.path.join(self.directory, _PROGRESS)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"epochs_done": epoch + 1}, f)
        os.replace(tmp, path)
