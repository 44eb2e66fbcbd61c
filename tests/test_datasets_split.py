"""Tests of mnas.datasets.split: stable carving of splits."""

import pytest

from mnas.datasets import split


def test_carve_is_stable_and_follows_the_shares():
    names = [f"clip_{n:05d}.wav" for n in range(4000)]
    assigned = [split.carve(name, 0.1, 0.2) for name in names]
    assert assigned == [split.carve(name, 0.1, 0.2) for name in names]
    assert assigned.count("test") / 4000 == pytest.approx(0.2, abs=0.02)
    assert assigned.count("validation") / 4000 == pytest.approx(0.1, abs=0.02)
    # Growing the validation share only moves train files, never test files.
    grown = [split.carve(name, 0.2, 0.2) for name in names]
    assert all(g == "test" for a, g in zip(assigned, grown) if a == "test")
    assert all(g != "train" for a, g in zip(assigned, grown) if a == "validation")


def test_unit_hash_is_in_the_unit_interval():
    values = [split.unit_hash(str(n)) for n in range(1000)]
    assert 0 <= min(values) and max(values) < 1 and len(set(values)) == 1000


def test_moments_read_in_chunks_match_numpy():
    import numpy as np

    x = np.random.default_rng(0).normal(3, 2, (50, 7, 4, 1)).astype(np.float32)
    mean, std = split.moments(x, axis=(0, 1), chunk=8)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1), keepdims=True)[0], rtol=1e-5)
    np.testing.assert_allclose(std, x.std(axis=(0, 1), keepdims=True)[0], rtol=1e-4)


def test_standardize_once_only():
    import numpy as np

    data = split.Split("kws", "train", np.ones((2, 3, 1, 1), np.float32), np.zeros(2, np.int32),
                       ("a",))
    once = split.standardize(data, 0.5, 2.0)
    np.testing.assert_allclose(once.x, 0.25)
    with pytest.raises(ValueError, match="standardised already"):
        split.standardize(once, 0.5, 2.0)
