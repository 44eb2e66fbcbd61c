"""tf.data training pipelines shared by the tasks.

An epoch's batches are a pure function of (seed, epoch): the order of the examples is a
stateless permutation keyed by both, and every random map gets a stateless seed keyed by
(seed, epoch, position). A run that resumes at epoch k therefore sees exactly the batches an
uninterrupted run sees at epoch k.

Example:

>>> with over_epochs(3, 10):                                  # doctest: +SKIP
...     data = batches(x, y, 100, seed=0)     # epochs 3..9, each ceil(len(y) / 100) batches
>>> model.fit(data, epochs=10, initial_epoch=3,
...           steps_per_epoch=steps_per_epoch(len(y), 100))   # doctest: +SKIP
"""

import contextlib
import math
import threading

import numpy as np

_range = threading.local()
# Offsets that keep the seeds of the per-example and per-batch maps apart.
_EXAMPLE, _BATCH = 0, 1


@contextlib.contextmanager
def over_epochs(first, last):
    """Makes `batches` called inside the block return epochs `first .. last - 1` back to back.

    Task readers build their training data with `batches`; this sets the epochs without a
    parameter threaded through each of them. Fit the result with `steps_per_epoch`.
    """
    if not 0 <= first <= last:
        raise ValueError(
            f"Invalid value for `first`, `last`: expected 0 <= first <= last, received "
            f"{first}, {last}.")
    previous = getattr(_range, "epochs", None)
    _range.epochs = (int(first), int(last))
    try:
        yield
    finally:
        _range.epochs = previous


def epoch_range():
    """The (first, last) epochs of the enclosing `over_epochs` block, or None outside one."""
    return getattr(_range, "epochs", None)


def steps_per_epoch(num_examples, batch_size):
    """Batches in one epoch of `batches` (the last one may be smaller)."""
    return max(1, math.ceil(num_examples / batch_size))


def batches(x, y, batch_size, seed, example_fn=None, batch_fn=None, epochs=None):
    """Shuffled batches of (x, y), a new order every epoch, with optional random maps.

    Random maps get a stateless seed (a tensor of two int64) fixed by `seed`, the epoch and
    the element's position in it, so runs are reproducible and epochs differ.

    Args:
        x: numpy features, first axis the examples.
        y: numpy labels.
        batch_size: examples per batch.
        seed: integer seed of the shuffle and of the random maps.
        example_fn: optional `(x, y, seed) -> (x, y)` applied to each example.
        batch_fn: optional `(x, y, seed) -> (x, y)` applied to each batch.
        epochs: optional `(first, last)`: the dataset holds epochs `first .. last - 1` back to
            back (fit it with `steps_per_epoch`). Defaults to the range of an enclosing
            `over_epochs` block, else one epoch per iteration: each iteration draws a new epoch
            key from a stream fixed by `seed`.

    Returns:
        A `tf.data.Dataset` of (x, y) batches.
    """
    import tensorflow as tf

    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"Invalid value for `batch_size`: expected a positive integer, received {batch_size!r}."
        )
    epochs = epochs if epochs is not None else getattr(_range, "epochs", None)
    count = len(y)
    features = tf.constant(x)
    labels = tf.constant(y)
    autotune = tf.data.AUTOTUNE

    def seeds(offset, epoch):
        """Stateless seeds for positions 0, 1, ... of an epoch."""
        key = tf.random.experimental.stateless_fold_in(
            tf.constant([seed, offset], tf.int64), epoch)
        return tf.data.Dataset.range(2**62).map(
            lambda i: tf.random.experimental.stateless_fold_in(key, i))

    def with_seeds(data, offset, epoch, fn):
        zipped = tf.data.Dataset.zip((data, seeds(offset, epoch)))
        return zipped.map(lambda xy, s: fn(xy[0], xy[1], s), num_parallel_calls=autotune)

    def one_epoch(epoch):
        epoch = tf.cast(epoch, tf.int64)
        key = tf.random.experimental.stateless_fold_in(tf.constant([seed, -1], tf.int64), epoch)
        order = tf.argsort(tf.random.stateless_uniform([count], key))
        data = tf.data.Dataset.from_tensor_slices(order).map(
            lambda i: (tf.gather(features, i), tf.gather(labels, i)))
        if example_fn is not None:
            data = with_seeds(data, _EXAMPLE, epoch, example_fn)
        data = data.batch(batch_size)
        if batch_fn is not None:
            data = with_seeds(data, _BATCH, epoch, batch_fn)
        return data

    if epochs is None:
        # Each iteration: one epoch, keyed by a draw that changes from iteration to iteration.
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    else:
        keys = tf.data.Dataset.range(*epochs)
    return keys.flat_map(one_epoch).prefetch(autotune)
