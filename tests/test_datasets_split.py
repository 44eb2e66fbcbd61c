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
