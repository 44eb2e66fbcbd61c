"""Training batches streamed by tf.data from a sharded feature cache, or from arrays in RAM.

From the cache, shards are read a block of rows at a time by memory map, interleaved across
shards in a seeded order and mixed by a bounded shuffle buffer, so memory stays bounded
whatever the dataset's size. Arrays in RAM go to `pipeline.batches`. Either way, every random
choice of an epoch (the order, the per-example and per-batch augmentation seeds) is a function
of the seed and the epoch alone, and the epochs are those of an enclosing
`pipeline.over_epochs` block, as `pipeline.batches` has them.
"""

import numpy as np

from mnas.datasets import cache, pipeline

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
    """Row blocks of a cache entry's shards, read by memory map (only `rows`, if given)."""

    def __init__(self, entry, names, rows=None):
        self.names = names
        self.arrays = [entry.array(name) for name in names]
        sizes = entry.meta["shards"]
        self.starts = np.cumsum([0] + list(sizes))
        self.keep = None
        self.size = int(self.starts[-1])
        if rows is not None:
            self.keep = np.zeros(self.size, bool)
            self.keep[np.asarray(rows, np.int64)] = True
            self.size = int(self.keep.sum())
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
        if self.keep is None:
            return tuple(np.asarray(a.shards[shard][start:stop]) for a in self.arrays)
        kept = np.flatnonzero(self.keep[self.starts[shard] + start:self.starts[shard] + stop])
        return tuple(np.asarray(a.shards[shard][start:stop][kept]) for a in self.arrays)

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


def batches(source, batch_size, seed, example_fn=None, batch_fn=None, decode=None,
            shuffle_buffer=SHUFFLE_BUFFER, rows=None, standardization=None):
    """Shuffled (x, y) batches with seeded random maps, from the cache or from arrays.

    Args:
        source: a `cache.Entry` with arrays "x" and "y" (streamed from disk), or a pair of
            numpy arrays (x, y) held in RAM (given to `pipeline.batches`).
        batch_size: examples per batch.
        seed: integer seed of the order and of the random maps.
        example_fn: optional `(x, y, seed) -> (x, y)` applied to each example; `seed` is a
            stateless seed (two int64).
        batch_fn: optional `(x, y, seed) -> (x, y)` applied to each batch.
        decode: optional `x -> x` applied to each stored example of the cache before
            `example_fn` (e.g. uint8 pixels to float); arrays are given decoded.
        shuffle_buffer: examples in the shuffle buffer when streaming. Defaults to
            `SHUFFLE_BUFFER`.
        rows: the rows of the cache entry to stream (`Split.rows`), or None for all.
        standardization: (mean, std) applied to each decoded example of the cache before
            `example_fn` (`Split.standardization`); arrays are given standardised.

    Returns:
        A `tf.data.Dataset` of (x, y) batches: the epochs of the enclosing
        `pipeline.over_epochs` block, else one epoch per iteration, a new one each time.
    """
    import tensorflow as tf

    if not isinstance(source, cache.Entry):
        return pipeline.batches(source[0], source[1], batch_size, seed, example_fn=example_fn,
                                batch_fn=batch_fn)
    _check_batch_size(batch_size)
    blocks = _Blocks(source, ["x", "y"], rows)
    size = blocks.size
    if standardization is not None:
        mean, std = (tf.constant(v, tf.float32) for v in standardization)
        decoded = decode or (lambda x: tf.cast(x, tf.float32))

        def decode(x):
            return (decoded(x) - mean) / std
    seed_pair = tf.constant([int(seed), 0x5EED], tf.int64)

    def one_epoch(epoch):
        key = tf.random.experimental.stateless_fold_in(seed_pair, epoch)
        seeds = tf.random.experimental.stateless_split(key, 4)
        data = _window_shuffle(blocks.dataset(seeds[0]), min(shuffle_buffer, max(1, size)),
                               seeds[1])
        if decode is not None:
            data = data.map(lambda a, b: (decode(a), b))
        if example_fn is not None:
            data = _with_seeds(data.enumerate(), seeds[2], example_fn)
        data = data.batch(batch_size)
        if batch_fn is not None:
            data = _with_seeds(data.enumerate(), seeds[3], batch_fn)
        return data

    epochs = pipeline.epoch_range()
    if epochs is None:
        epoch_keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    else:
        epoch_keys = tf.data.Dataset.range(*epochs)
    return epoch_keys.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def split_batches(split, batch_size, seed, in_memory=False, **options):
    """`batches` of a `Split`: streamed from its cache entry (its rows, standardised as its
    `x` is), or, with `in_memory`, from its features read into RAM."""
    if in_memory or split.entry is None:
        return batches((np.asarray(split.x), split.y), batch_size, seed, **options)
    return batches(split.entry, batch_size, seed, rows=split.rows,
                   standardization=split.standardization, **options)


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
