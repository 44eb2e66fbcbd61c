"""A plain `model.fit` script with the ResourceRegularizer dropped in.

The model is built from mnas searchable layers; everything else is ordinary Keras: compile,
fit (with the callback), then derive the chosen architecture and build the plain model.

    python examples/fit_with_regularizer.py [--epochs 3] [--sram-bytes 60000] [--out arch.json]
"""

import argparse

import numpy as np

import mnas  # First: mnas makes `tf.keras` Keras 2 (tf_keras).
import tensorflow as tf


def make_data(n, rng):
    """A learnable synthetic task: the class sets which band of a 49x10 input is brighter."""
    y = rng.integers(0, 4, size=n)
    x = rng.normal(size=(n, 49, 10, 1)).astype("float32")
    for c in range(4):
        x[y == c, c * 12:(c + 1) * 12, :, 0] += 1.5
    return x, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--sram-bytes", type=float, default=60000)
    parser.add_argument("--out", default=None, help="where to save the derived spec (JSON)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x, y = make_data(1200, rng)

    inputs = tf.keras.Input((49, 10, 1))
    h = mnas.SearchableConv2D(mnas.width_choices(64, steps=4), (10, 4), name="stem")(inputs)
    for i, stride in enumerate([2, 1, 1]):
        block = mnas.SearchableDepthwiseSeparable(mnas.width_choices(64, steps=4), stride)
        h = mnas.SearchableSkip(block, name=f"block{i}")(h)
    h = tf.keras.layers.GlobalAveragePooling2D()(h)
    outputs = tf.keras.layers.Dense(4, activation="softmax")(h)
    model = tf.keras.Model(inputs, outputs)

    model.compile(tf.keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  ["accuracy"])
    model.fit(x, y, batch_size=50, epochs=args.epochs, validation_split=0.2, verbose=2,
              callbacks=[mnas.ResourceRegularizer(sram_bytes=args.sram_bytes, verbose=1)])

    spec = mnas.derive(model)
    plain = mnas.build(spec)
    print("derived widths:", spec.widths())
    print("expected SRAM of the derived model:",
          int(mnas.expected_costs(plain).numpy().sram_bytes), "bytes")
    if args.out:
        spec.save(args.out)


if __name__ == "__main__":
    main()
