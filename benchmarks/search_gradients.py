"""Does the accuracy loss reach every width decision of the KWS search space?

At uniform architecture logits, prints the gradient of the cross-entropy on each decision's
logits (its norm), over a batch of the embedded keyword data, for the supernet as it is and
with the channel masks not re-applied after the depthwise batch norms (how the
depthwise-separable block used to work: the batch norm undid the previous layer's mask). Then
the same for the SRAM cost. Last line: `min_width_gradient_ratio=<x>`, the smallest ratio of a
width decision's cross-entropy gradient to the largest one.

    python benchmarks/search_gradients.py [--data_dir data/embedded/kws] [--examples 256]
"""

import mnas  # noqa: F401, I001
import argparse
from unittest import mock

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mnas import costs, datasets, layers, search_spaces


def gradient_norms(model, x, y, loss_fn):
    searchable = layers.searchable_layers(model)
    with tf.GradientTape() as tape:
        loss = loss_fn(model, x, y)
    grads = tape.gradient(loss, [layer.alpha for layer in searchable])
    return {layer.name: 0.0 if g is None else float(tf.norm(g))
            for layer, g in zip(searchable, grads)}


def cross_entropy(model, x, y):
    return keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))


def sram(model, x, y):
    return costs.expected_costs(model).sram_bytes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data/embedded/kws")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train = datasets.load_split("kws", args.data_dir, "train")
    pick = np.random.default_rng(args.seed).choice(len(train), args.examples, replace=False)
    x, y = tf.constant(train.x[pick]), tf.constant(train.y[pick])
    keras.utils.set_random_seed(args.seed)
    model = search_spaces.get("kws").build()
    now = gradient_norms(model, x, y, cross_entropy)
    with mock.patch.object(layers, "channel_mask", lambda inputs: None):
        before = gradient_norms(model, x, y, cross_entropy)
    memory = gradient_norms(model, x, y, sram)
    width = [layer.name for layer in layers.searchable_layers(model)
             if isinstance(layer, layers.WidthSearchMixin)]
    top_now, top_before = max(now[n] for n in width), max(before[n] for n in width)
    print(f"{'decision':10s} {'CE |g|':>10s} {'/max':>7s} {'unmasked':>10s} {'/max':>7s} "
          f"{'SRAM |g|':>10s}")
    for name in now:
        kind = "width" if name in width else "depth"
        print(f"{name:10s} {now[name]:10.3e} {now[name] / top_now if kind == 'width' else 0:7.3f} "
              f"{before[name]:10.3e} {before[name] / top_before if kind == 'width' else 0:7.3f} "
              f"{memory[name]:10.1f}  ({kind})")
    ratio_before = min(before[n] for n in width) / top_before
    print(f"without re-applied masks: min_width_gradient_ratio={ratio_before:.4f}")
    print(f"min_width_gradient_ratio={min(now[n] for n in width) / top_now:.4f}")


if __name__ == "__main__":
    main()
