"""A short supernet search under a tf.distribute strategy, run in its own process.

Used by tests/test_distribute.py: `python distribute_worker.py <strategy> <out.json> [ckpt]`.
"mirrored" splits the CPU into two logical devices and searches under MirroredStrategy, then
on one device, then under MirroredStrategy again, stopped after epoch 2 and resumed from its
checkpoint; "multi_worker" reads TF_CONFIG. Writes the strengths per replica (and after each
epoch), the temperatures, the derived widths and the expected costs as JSON.
"""

import json
import sys

import mnas  # noqa: F401  (first: tf.keras is Keras 2)
import numpy as np
import tensorflow as tf
import tf_keras as keras

from mnas import distribute, search_spaces

EPOCHS, BATCH, EXAMPLES = 3, 32, 128


class Strengths(keras.callbacks.Callback):
    """Records the penalty strengths (first replica) at the end of every epoch."""

    def __init__(self, regularizer):
        super().__init__()
        self.regularizer, self.epochs = regularizer, []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append({k: float(v.numpy())
                            for k, v in self.regularizer._strengths.items()})  # noqa: SLF001


class StopAfter(keras.callbacks.Callback):
    """Ends `fit` after `epochs` epochs, as an interruption would."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


def search(strategy, checkpoint_dir=None, stop_after=None, initial_epoch=0):
    """Searches (from `checkpoint_dir`'s epoch `initial_epoch` when resuming), and returns what
    the test compares."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 12, EXAMPLES).astype("int32")
    x = (rng.normal(size=(EXAMPLES, 49, 10, 1)) + y[:, None, None, None] / 4).astype("float32")
    data = distribute.shard_by_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH))
    with strategy.scope():
        # No dropout: its random masks are drawn per replica, so no split of a batch can
        # reproduce one device's draws.
        model = search_spaces.get("kws", max_width=32, num_blocks=3, steps=4,
                                  dropout=0.0).build(temperature=5.0)
        regularizer = mnas.ResourceRegularizer(
            sram_bytes=11000, flash_bytes=6500, warmup_epochs=1, temperature=(5.0, 1.0))
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    extra = [mnas.EpochCheckpoint(checkpoint_dir, regularizer.state_variables)] if (
        checkpoint_dir) else []
    extra += [StopAfter(stop_after)] if stop_after else []
    history = Strengths(regularizer)
    model.fit(data, epochs=EPOCHS, initial_epoch=initial_epoch,
              callbacks=[regularizer, history] + extra, verbose=0)
    strengths = {k: [float(v) for v in strategy.experimental_local_results(s)]
                 for k, s in regularizer.state_variables.items() if k in regularizer.targets}
    temperatures = sorted({float(t) for layer in mnas.searchable_layers(model)
                           for t in strategy.experimental_local_results(layer.temperature)})
    # The closed forms at the probabilities: continuous in them, unlike the exact correction,
    # which is taken at the argmax.
    expected = mnas.costs.smooth_costs(model).numpy()
    return {"replicas": strategy.num_replicas_in_sync, "strengths": strengths,
            "history": history.epochs,
            "temperatures": temperatures, "widths": mnas.derive(model).widths(),
            "probabilities": [[float(p) for p in layer.probabilities().numpy()]
                              for layer in mnas.searchable_layers(model)],
            "sram": float(expected.sram_bytes), "flash": float(expected.flash_bytes),
            "ops": float(expected.ops)}


def main(name, out, checkpoint_dir=None):
    if name == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        result = {"mirrored": search(mirrored), "single": search(tf.distribute.get_strategy())}
        # Interrupted after epoch 2 of 3, then resumed from the checkpoint in a new model.
        search(mirrored, checkpoint_dir, stop_after=2)
        result["resumed"] = search(mirrored, checkpoint_dir, initial_epoch=2)
    else:
        result = {name: search(distribute.get_strategy(name), checkpoint_dir)}
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
