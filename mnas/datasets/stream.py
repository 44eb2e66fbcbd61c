"""Training batches streamed by tf.data from a sharded feature cache, or from arrays in RAM.

Every random choice of an epoch (the order of the shards, the shuffle, the per-example and
per-batch augmentation seeds) is a function of the seed and the epoch alone, so an epoch reads
the same batches whether the run started at epoch 0 or resumed at it.

From the cache, shards are read a block of rows at a time by memory map, interleaved across
shards in a seeded order and mixed by a bounded shuffle buffer, so memory stays bounded
whatever the dataset's size. From arrays, the examples are shuffled whole.
"""

import numpy as np

from mnas.datasets import cache

BLOCK_ROWS = 256
SHUFFLE_BUFFER = 16384
CYCLE_LENGTH = 4


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
            batch_size < 1):
        raise ValueError(
            f"Invalid value for `batch_size`: expected a positive integer, received {batch_size!r}."
        )


class _Blocks:
    """Row blocks of a cache entry's shards, read by memory map."""

    def __init__(self, entry, names):
        self.names = names
        self.arrays = [entry.array(name) for name in names]
        sizes = entry.meta["shards"]
        rows = []
        for shard, size in enumerate(sizes):
            rows += [(shard, start, min(size, start + BLOCK_ROWS))
                     for start in range(0, size, BLOCK_ROWS)]
        self.table = np.asarray(rows, np.int64).reshape(-1, 3)
        counts = np.bincount(self.table[:, 0], minlength=len(sizes))
        self.first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.counts = counts.astype(np.int64)
        self.specs = [(a.dtype, a.shape[1:]) for a in self.arrays]

    def read(self, block):
        shard, start, stop = self.table[int(block)]
        return tuple(np.asarray(a.shards[shard][start:stop]) for a in self.arrays)

    def dataset(self, order_seed):
        import tensorflow as tf

        table_first = tf.constant(self.first)
        table_counts = tf.constant(self.counts)
        shards = tf.random.experimental.stateless_shuffle(
            tf.range(len(self.counts), dtype=tf.int64), order_seed)

        def read(block):
            values = tf.numpy_function(self.read, [block],
                                       [tf.as_dtype(d) for d, _ in self.specs], stateful=False)
            for value, (_, shape) in zip(values, self.specs):
                value.set_shape((None,) + tuple(shape))
            return tuple(values)

        def one_shard(shard):
            first = tf.gather(table_first, shard)
            blocks = tf.data.Dataset.range(first, first + tf.gather(table_counts, shard))
            return blocks.map(read).unbatch()

        return tf.data.Dataset.from_tensor_slices(shards).interleave(
            one_shard, cycle_length=min(CYCLE_LENGTH, max(1, len(self.counts))),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def steps_per_epoch(size, batch_size):
    """Batches in one epoch of `size` examples."""
    return max(1, -(-int(size) // int(batch_size)))


def batches(source, batch_size, seed, example_fn=None, batch_fn=None, decode=None,
            epochs=None, initial_epoch=0, shuffle_buffer=SHUFFLE_BUFFER):
    """Shuffled (x, y) batches with seeded random maps, from the cache or from arrays.

    Args:
        source: a `cache.Entry` with arrays "x" and "y" (streamed from disk), or a pair of
            numpy arrays (x, y) held in RAM.
        batch_size: examples per batch.
        seed: integer seed of the order and of the random maps.
        example_fn: optional `(x, y, seed) -> (x, y)` applied to each example; `seed` is a
            stateless seed (two int64).
        batch_fn: optional `(x, y, seed) -> (x, y)` applied to each batch.
        decode: optional `x -> x` applied to each stored example before `example_fn` (e.g.
            uint8 pixels to float).
        epochs: with a number, the dataset holds epochs `initial_epoch` .. `epochs - 1` one
            after the other, each a function of (`seed`, epoch): pass `steps_per_epoch` to
            `fit`. Defaults to None: one epoch per iteration, a new one each time.
        initial_epoch: the first epoch, when `epochs` is given. Defaults to 0.
        shuffle_buffer: examples in the shuffle buffer when streaming. Defaults to
            `SHUFFLE_BUFFER`.

    Returns:
        A `tf.data.Dataset` of (x, y) batches.
    """
    import tensorflow as tf

    _check_batch_size(batch_size)
    if isinstance(source, cache.Entry):
        blocks = _Blocks(source, ["x", "y"])
        size = len(blocks.arrays[1])
    else:
        x_all, y_all = (tf.constant(np.asarray(a)) for a in source)
        size = len(source[1])
    seed_pair = tf.constant([int(seed), 0x5EED], tf.int64)

    def one_epoch(epoch):
        key = tf.random.experimental.stateless_fold_in(seed_pair, epoch)
        seeds = tf.random.experimental.stateless_split(key, 4)
        if isinstance(source, cache.Entry):
            data = _window_shuffle(blocks.dataset(seeds[0]), min(shuffle_buffer, max(1, size)),
                                   seeds[1])
        else:
            order = tf.random.experimental.stateless_shuffle(tf.range(size), seeds[1])
            data = tf.data.Dataset.from_tensor_slices(order).map(
                lambda i: (tf.gather(x_all, i), tf.gather(y_all, i)))
        if decode is not None:
            data = data.map(lambda a, b: (decode(a), b))
        if example_fn is not None:
            data = _with_seeds(data.enumerate(), seeds[2], example_fn)
        data = data.batch(batch_size)
        if batch_fn is not None:
            data = _with_seeds(data.enumerate(), seeds[3], batch_fn)
        return data

    if epochs is None:
        epoch_keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    else:
        epoch_keys = tf.data.Dataset.range(initial_epoch, epochs)
    return epoch_keys.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def _window_shuffle(data, window, key):
    """Permutes each run of `window` examples by a stateless draw from `key`: a bounded,
    seeded shuffle (tf.data's shuffle cannot take a seed that is a tensor under a global
    seed)."""
    import tensorflow as tf

    def permute(index, arrays):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(tf.shape(arrays[0])[0]), tf.random.experimental.stateless_fold_in(key, index))
        return tuple(tf.gather(a, order) for a in arrays)

    return data.batch(window).enumerate().map(permute).unbatch()


def _with_seeds(enumerated, key, fn):
    import tensorflow as tf

    def apply(index, xy):
        return fn(xy[0], xy[1], tf.random.experimental.stateless_fold_in(key, index))

    return enumerated.map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
