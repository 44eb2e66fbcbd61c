"""Tests of mnas.datasets.cache: hits, invalidation, and damaged entries."""

import numpy as np
import pytest

from mnas.datasets import cache


def counting(value):
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.full(3, value, np.float32)}

    return compute, calls


def test_second_call_is_served_from_disk(tmp_path):
    source = tmp_path / "a.wav"
    source.write_bytes(b"1")
    key = cache.cache_key("t", {"n": 1}, [source])
    compute, calls = counting(1.0)
    first = cache.cached(tmp_path / "c", "t", key, compute)
    second = cache.cached(tmp_path / "c", "t", key, compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(first["x"], second["x"])
    assert len(list((tmp_path / "c").glob("t-*.npz"))) == 1


def test_key_changes_with_settings_and_with_files(tmp_path):
    source = tmp_path / "a.wav"
    source.write_bytes(b"1")
    key = cache.cache_key("t", {"n": 1}, [source])
    assert cache.cache_key("t", {"n": 2}, [source]) != key
    assert cache.cache_key("u", {"n": 1}, [source]) != key
    source.write_bytes(b"12")
    assert cache.cache_key("t", {"n": 1}, [source]) != key


def test_damaged_entry_is_recomputed_with_a_warning(tmp_path):
    key = cache.cache_key("t", {}, [])
    compute, calls = counting(2.0)
    cache.cached(tmp_path, "t", key, compute)
    next(tmp_path.glob("t-*.npz")).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="Ignoring unreadable feature cache"):
        arrays = cache.cached(tmp_path, "t", key, compute)
    assert len(calls) == 2 and arrays["x"][0] == 2.0


def test_no_cache_dir_always_computes(tmp_path):
    compute, calls = counting(0.0)
    cache.cached(None, "t", "k", compute)
    cache.cached(None, "t", "k", compute)
    assert len(calls) == 2


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MNAS_CACHE_DIR", raising=False)
    assert cache.default_cache_dir(tmp_path) == tmp_path / ".mnas_cache"
    monkeypatch.setenv("MNAS_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache.default_cache_dir(tmp_path) == tmp_path / "elsewhere"
