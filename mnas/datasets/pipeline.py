"""tf.data training pipelines shared by the tasks."""

import numpy as np


def batches(x, y, batch_size, seed, example_fn=None, batch_fn=None):
    """Shuffled batches of (x, y), reshuffled every epoch, with optional random maps.

    Random maps get a stateless seed (a tensor of two int64) drawn from a stream that is fixed
    by `seed` and changes every epoch, so runs are reproducible and epochs differ.

    Args:
        x: numpy features, first axis the examples.
        y: numpy labels.
        batch_size: examples per batch.
        seed: integer seed of the shuffle and of the random maps.
        example_fn: optional `(x, y, seed) -> (x, y)` applied to each example.
        batch_fn: optional `(x, y, seed) -> (x, y)` applied to each batch.

    Returns:
        A `tf.data.Dataset` of (x, y) batches covering the data once per iteration.
    """
    import tensorflow as tf

    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"Invalid value for `batch_size`: expected a positive integer, received {batch_size!r}."
        )
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        len(y), seed=seed, reshuffle_each_iteration=True
    )
    autotune = tf.data.AUTOTUNE

    def with_seeds(data, offset, fn):
        seeds = tf.data.Dataset.random(seed=seed + offset, rerandomize_each_iteration=True)
        zipped = tf.data.Dataset.zip((data, seeds.batch(2)))
        return zipped.map(lambda xy, s: fn(xy[0], xy[1], s), num_parallel_calls=autotune)

    if example_fn is not None:
        dataset = with_seeds(dataset, 0, example_fn)
    dataset = dataset.batch(batch_size)
    if batch_fn is not None:
        dataset = with_seeds(dataset, 1, batch_fn)
    return dataset.prefetch(autotune)
