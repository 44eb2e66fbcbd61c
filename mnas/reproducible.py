"""Randomness of training as a function of (seed, stage, epoch), so a resumed run repeats.

- `make_deterministic()`: TensorFlow's deterministic kernels, and Keras layers (dropout)
  drawing from `tf.random.Generator`s whose state can be set.
- `stage_seed(seed, stage)`: the seed a stage starts from, whatever ran before it in the
  process.
- `EpochRandomness`: a callback that resets, when each epoch begins, the random generators of
  the model's layers from (seed, epoch): dropout masks of epoch k are the same whether the run
  started at epoch 0 or resumed at k.

Example:

>>> make_deterministic()                                            # doctest: +SKIP
>>> keras.utils.set_random_seed(stage_seed(0, "train"))             # doctest: +SKIP
>>> model.fit(data, epochs=5, callbacks=[EpochRandomness(0)])       # doctest: +SKIP
"""

import hashlib

import tensorflow as tf
import tf_keras as keras


def make_deterministic():
    """Turns on deterministic ops and settable layer generators (for the whole process).

    Call it before models are built. Deterministic ops cost some speed (see
    `benchmarks/kill_resume.py --measure_determinism`).
    """
    tf.config.experimental.enable_op_determinism()
    keras.backend.experimental.enable_tf_random_generator()


def stage_seed(seed, *names):
    """A 31-bit seed fixed by `seed` and `names` (e.g. a stage name, an epoch)."""
    text = "/".join(str(part) for part in (seed, *names))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") >> 1


def layer_generators(model):
    """The `tf.random.Generator` of every layer of `model` that draws random numbers."""
    generators = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        random_generator = getattr(layer, "_random_generator", None)
        if random_generator is None or not hasattr(random_generator, "_maybe_init"):
            continue
        random_generator._maybe_init()
        generator = getattr(random_generator, "_generator", None)
        if isinstance(generator, tf.random.Generator):
            generators.append(generator)
    return generators


class EpochRandomness(keras.callbacks.Callback):
    """Resets the model's layer generators from (seed, epoch) when each epoch begins.

    Args:
        seed: The run's seed.
        stage: A name that keeps the stages' streams apart. Defaults to `""`.
    """

    def __init__(self, seed, stage=""):
        super().__init__()
        self.seed = seed
        self.stage = stage

    def on_epoch_begin(self, epoch, logs=None):
        for i, generator in enumerate(layer_generators(self.model)):
            generator.reset_from_seed(stage_seed(self.seed, self.stage, epoch, i))
