import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from mnas import checkpoints, errors


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


def test_an_interruption_between_checkpoint_and_progress_resumes_from_the_named_one(rng,
                                                                                      tmp_path):
    folder = tmp_path / "ckpt"
    model, x, y = model_and_data(rng)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoints.EpochCheckpoint(folder)])
    after_one = [w.copy() for w in model.get_weights()]
    # Epoch 2's checkpoint is saved, but the process dies before progress.json says so.
    model.fit(x, y, epochs=2, initial_epoch=1, verbose=0)
    tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(
        str(checkpoints.checkpoint_prefix(folder, 2)))
    assert checkpoints.resume_epoch(folder) == 1
    fresh, _, _ = model_and_data(rng)
    checkpoint = checkpoints.EpochCheckpoint(folder)
    checkpoint.set_model(fresh)
    checkpoint.on_train_begin()
    for a, b in zip(fresh.get_weights(), after_one):
        np.testing.assert_array_equal(a, b)


def test_damaged_checkpoints_are_one_line_naming_the_folder(rng, tmp_path):
    folder = tmp_path / "ckpt"
    model, x, y = model_and_data(rng)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoints.EpochCheckpoint(folder)])
    data = next(folder.glob("ckpt-1.data-*"))
    data.write_bytes(data.read_bytes()[:40])
    fresh, _, _ = model_and_data(rng)
    checkpoint = checkpoints.EpochCheckpoint(folder)
    checkpoint.set_model(fresh)
    with pytest.raises(errors.CorruptRunFileError) as raised:
        checkpoint.on_train_begin()
    text = str(raised.value)
    assert text.startswith(f"Damaged checkpoint in {folder}: the checkpoint of epoch 1 cannot "
                           f"be read") and "\n" not in text and "--restart" in text

    (folder / "progress.json").write_text('{"epochs_done": 1')
    with pytest.raises(errors.CorruptRunFileError, match=f"Damaged checkpoint progress "
                                                         f"{folder / 'progress.json'}"):
        checkpoints.resume_epoch(folder)
    (folder / "progress.json").write_text('{"epochs_done": 7}')
    with pytest.raises(errors.CorruptRunFileError, match="the checkpoint of epoch 7 is missing"):
        checkpoints.resume_epoch(folder)
