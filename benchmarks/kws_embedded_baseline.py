"""Trains a small plain Keras DS-CNN on the embedded spoken keywords; prints the figures.

Measures the time to generate the embedded keyword-spotting set, to extract its features
(first load, then cached), to train, and the accuracy on the test speakers, whose voice
variants training never hears.

Usage:
    python benchmarks/kws_embedded_baseline.py [--data_dir DIR] [--epochs 15]

Without --data_dir the set is generated afresh in a temporary folder, so the generation
time is measured.
"""

import tempfile
import time
from pathlib import Path

from absl import app, flags

import mnas  # noqa: F401  (Keras 2 for tf.keras)
from mnas import datasets


def _define_flags():
    flags.DEFINE_string("data_dir", None, "Embedded data root to use (generated if missing); "
                        "defaults to a fresh temporary folder.")
    flags.DEFINE_integer("epochs", 15, "Training epochs.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 100, "Batch size.", lower_bound=1)
    flags.DEFINE_integer("width", 64, "Channels of the DS-CNN.", lower_bound=4)
    flags.DEFINE_integer("seed", 0, "Seed of generation and training.")


def build_ds_cnn(input_shape, classes, width):
    """DS-CNN(S)-like model: a strided 10x4 conv and four depthwise-separable blocks."""
    import tensorflow as tf

    keras = tf.keras
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(width, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    for _ in range(4):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.Conv2D(width, 1, use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    values = flags.FLAGS
    root = Path(values.data_dir or tempfile.mkdtemp(prefix="mnas-embedded-"))
    started = time.time()
    datasets.generate_embedded(root, seed=values.seed, tasks=["kws"])
    generation = time.time() - started

    timings = {}
    splits = {}
    for attempt in ("first", "cached"):
        started = time.time()
        for name in datasets.SPLITS:
            splits[name] = datasets.load_split("kws", root / "kws", name)
        timings[attempt] = time.time() - started
    train, validation, test = (splits[name] for name in datasets.SPLITS)
    started = time.time()
    batches = datasets.training_dataset("kws", train, values.batch_size, values.seed)
    augment_time = time.time() - started

    tf.keras.utils.set_random_seed(values.seed)
    model = build_ds_cnn(train.x.shape[1:], len(train.labels), values.width)
    steps = values.epochs * int(np.ceil(len(train) / values.batch_size))
    schedule = tf.keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.01)
    model.compile(tf.keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    started = time.time()
    model.fit(batches, epochs=values.epochs, validation_data=(validation.x, validation.y),
              verbose=2)
    training = time.time() - started

    def accuracy(x, split):
        return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == split.y))

    # Per-tensor int8 quantization of the input, as a fully-int8 model sees its features.
    low, high = float(train.x.min()), float(train.x.max())
    scale = (high - low) / 255

    def int8_input(x):
        return np.round((x - low) / scale).clip(0, 255) * scale + low

    print(f"examples: train {len(train)}, validation {len(validation)}, test {len(test)}")
    print(f"generation of the embedded kws set: {generation:.1f} s")
    print(f"feature extraction, 3 splits: first {timings['first']:.1f} s, "
          f"cached {timings['cached']:.1f} s; augmented copies: {augment_time:.1f} s")
    print(f"training, {values.epochs} epochs: {training:.1f} s "
          f"({model.count_params()} parameters)")
    print(f"validation accuracy (held-out voices): {accuracy(validation.x, validation):.4f}")
    print(f"test accuracy (held-out voices): {accuracy(test.x, test):.4f}")
    print(f"test accuracy with int8-quantized input features: "
          f"{accuracy(int8_input(test.x), test):.4f}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
