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


def test_an_epoch_is_the_same_whichever_epoch_the_dataset_starts_from():
    import tensorflow as tf

    def noisy(x, y, seed):
        return x + tf.random.stateless_uniform([], seed), y

    x, y = np.zeros(10, np.float32), np.arange(10)
    steps = pipeline.steps_per_epoch(len(y), 4)
    assert steps == 3
    whole = collect(pipeline.batches(x, y, 4, seed=5, example_fn=noisy, epochs=(0, 4)))
    with pipeline.over_epochs(2, 4):
        resumed = collect(pipeline.batches(x, y, 4, seed=5, example_fn=noisy))
    assert len(whole) == 4 * steps and len(resumed) == 2 * steps
    for (a, ya), (b, yb) in zip(whole[2 * steps:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)
    epochs = [np.concatenate([b[1] for b in whole[e * steps:(e + 1) * steps]]) for e in range(4)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert not np.array_equal(epochs[0], epochs[1])
    other_seed = collect(pipeline.batches(x, y, 4, seed=6, example_fn=noisy, epochs=(0, 1)))
    assert not np.array_equal(other_seed[0][1], whole[0][1])
