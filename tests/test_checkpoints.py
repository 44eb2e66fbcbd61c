import numpy as np
import tensorflow as tf
import tf_keras as keras

from mnas import checkpoints


def model_and_data(rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(0.01, 100)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64)


def test_a_resumed_fit_continues_from_the_saved_weights_optimizer_and_variables(rng, tmp_path):
    folder = tmp_path / "ckpt"
    model, x, y = model_and_data(rng)
    extra = tf.Variable(0.0)

    class Bump(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            extra.assign_add(1.0)

    assert checkpoints.resume_epoch(folder) == 0
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[Bump(), checkpoints.EpochCheckpoint(folder, {"extra": extra})])
    assert checkpoints.resume_epoch(folder) == 2
    weights = [w.copy() for w in model.get_weights()]
    steps = int(model.optimizer.iterations.numpy())

    # A new process: fresh model and variable, restored when training begins.
    fresh, _, _ = model_and_data(rng)
    fresh_extra = tf.Variable(0.0)
    seen = {}

    class Look(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.setdefault("weights", [w.copy() for w in self.model.get_weights()])
            seen.setdefault("steps", int(self.model.optimizer.iterations.numpy()))
            seen.setdefault("epoch", epoch)

    fresh.fit(x, y, epochs=3, initial_epoch=2, verbose=0, callbacks=[
        checkpoints.EpochCheckpoint(folder, {"extra": fresh_extra}), Look()])
    assert seen["epoch"] == 2 and seen["steps"] == steps
    for a, b in zip(seen["weights"], weights):
        np.testing.assert_array_equal(a, b)
    assert float(fresh_extra.numpy()) == 2.0
    assert checkpoints.resume_epoch(folder) == 3
