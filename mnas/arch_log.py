"""`ArchitectureLogger`: a search's decisions, epoch by epoch, to a JSON-lines file and to
TensorBoard (read back by `mnas.plots`).

Example:

>>> model.fit(x, y, epochs=10, callbacks=[
...     mnas.ResourceRegularizer(device="STM32F446RE", latency_ms=100),
...     mnas.ArchitectureLogger("search/architecture.jsonl")])  # doctest: +SKIP
"""

import json
import os

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mnas import layers as mlayers


class ArchitectureLogger(keras.callbacks.Callback):
    """Records each decision's probabilities and argmax per epoch, to a JSON-lines file and to
    TensorBoard.

    Args:
        path: File to append one JSON object per epoch to: `epoch`, `probabilities` (decision
            name -> list), `options` (decision name -> the options' widths, or skip / keep),
            `choices` (decision name -> argmax width, or keep/skip), and the epoch's logs.
            Defaults to None (keep the records in `history` only).
        log_dir: TensorBoard folder to write, per decision, each option's probability as a
            scalar (`architecture_<decision>/width_<width>`, or `.../skip` and `.../keep`)
            and the most probable option's probability (`architecture_<decision>/top`); a
            decision's scalars share a section. Defaults to None (no TensorBoard output).
    """

    def __init__(self, path=None, log_dir=None):
        super().__init__()
        self.path = path
        self.log_dir = log_dir
        self.history = []
        self._writer = None

    def on_train_begin(self, logs=None):
        if self.log_dir and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch, "probabilities": {}, "options": {}, "choices": {}}
        for layer in mlayers.searchable_layers(self.model):
            record["probabilities"][layer.name] = [
                float(p) for p in np.asarray(layer.probabilities())]
            options = getattr(layer, "choices", None) or getattr(layer, "OPTIONS", None)
            record["options"][layer.name] = list(options) if options else None
            record["choices"][layer.name] = layer.choice()
        record["logs"] = {k: float(v) for k, v in (logs or {}).items()
                          if np.ndim(v) == 0}
        self.history.append(record)
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            self._write_summaries(record)

    def _write_summaries(self, record):
        with self._writer.as_default(step=record["epoch"]):
            for name, probabilities in record["probabilities"].items():
                options = record["options"][name] or range(len(probabilities))
                for option, p in zip(options, probabilities):
                    label = option if isinstance(option, str) else f"width_{option}"
                    tf.summary.scalar(f"architecture_{name}/{label}", p)
                tf.summary.scalar(f"architecture_{name}/top", max(probabilities))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
