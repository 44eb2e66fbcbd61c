"""Tests of mnas.datasets.pipeline: shuffled batches and seeded random maps."""

import numpy as np

from mnas.datasets import pipeline


def collect(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_each_iteration_covers_the_data_once_in_a_new_order():
    x, y = np.arange(10, dtype=np.float32), np.arange(10)
    dataset = pipeline.batches(x, y, batch_size=4, seed=0)
    first, second = collect(dataset), collect(dataset)
    assert [len(b[1]) for b in first] == [4, 4, 2]
    assert sorted(np.concatenate([b[1] for b in first])) == list(range(10))
    assert not np.array_equal(first[0][1], second[0][1])
    same_seed = collect(pipeline.batches(x, y, batch_size=4, seed=0))
    np.testing.assert_array_equal(same_seed[0][1], first[0][1])


def test_random_maps_get_seeds_that_change_per_epoch():
    import tensorflow as tf

    def noisy(x, y, seed):
        return x + tf.random.stateless_uniform([], seed), y

    x, y = np.zeros(6, np.float32), np.arange(6)
    dataset = pipeline.batches(x, y, batch_size=6, seed=1, example_fn=noisy,
                               batch_fn=lambda bx, by, seed: (bx * 2, by))
    (a, ya), = collect(dataset)
    (b, _), = collect(dataset)
    assert len(set(a.tolist())) == 6 and np.all((a >= 0) & (a < 2))
    assert not np.allclose(np.sort(a), np.sort(b))
    (again, y_again), = collect(pipeline.batches(x, y, batch_size=6, seed=1, example_fn=noisy,
                                                 batch_fn=lambda bx, by, seed: (bx * 2, by)))
    np.testing.assert_array_equal(again, a)
    np.testing.assert_array_equal(y_again, ya)
