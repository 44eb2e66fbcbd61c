"""Tests of mnas.datasets.cache: sharded entries, hits, invalidation, damaged entries."""

import numpy as np
import pytest

from mnas.datasets import cache


def counting(total, chunk=3):
    calls = []

    def chunks(skips):
        calls.append(1)
        for start in range(0, total, chunk):
            rows = np.arange(start, min(total, start + chunk))
            if start == 0:
                skips.skip("bad.wav", "unreadable")
            yield len(rows), {"x": np.stack([rows, -rows], 1).astype(np.float32),
                              "y": rows.astype(np.int32)}

    return chunks, calls


def test_entry_is_sharded_and_served_from_disk(tmp_path):
    source = tmp_path / "a.wav"
    source.write_bytes(b"1")
    key = cache.cache_key("t", {"n": 1}, [source])
    chunks, calls = counting(10)
    first = cache.sharded(tmp_path / "c", "t", key, chunks, 10, shard_examples=4)
    second = cache.sharded(tmp_path / "c", "t", key, chunks, 10, shard_examples=4)
    assert len(calls) == 1 and first.meta["shards"] == [4, 4, 2]
    x = second.array("x")
    assert x.shape == (10, 2) and len(x.shards) == 3
    np.testing.assert_array_equal(np.asarray(x)[:, 0], np.arange(10))
    np.testing.assert_array_equal(x[[9, 0, 5]][:, 0], [9, 0, 5])
    np.testing.assert_array_equal(x[3:6][:, 1], [-3, -4, -5])
    assert x[-1][0] == 9 and x[np.arange(10) % 4 == 0][:, 0].tolist() == [0, 4, 8]
    assert x[2, 1] == -2 and x[1:3, 0].tolist() == [1, 2]
    assert isinstance(x.shards[0], np.memmap)
    with pytest.raises(IndexError):
        x[10]
    assert second.skipped == 1
    with pytest.warns(UserWarning, match="Skipped 1 bad files under here .first: bad.wav"):
        second.warn_skipped("bad files", "here")


def test_transform_applies_to_every_read(tmp_path):
    chunks, _ = counting(5)
    entry = cache.sharded(tmp_path, "t", "k" * 20, chunks, 5)
    doubled = entry.array("x", lambda rows: rows * 2)
    assert doubled[2].tolist() == [4, -4] and np.asarray(doubled)[4, 0] == 8


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
    chunks, calls = counting(4)
    cache.sharded(tmp_path, "t", key, chunks, 4)
    next(tmp_path.glob("t-*/meta.json")).write_text("{garbage")
    with pytest.warns(UserWarning, match="Ignoring unreadable feature cache"):
        entry = cache.sharded(tmp_path, "t", key, chunks, 4)
    assert len(calls) == 2 and np.asarray(entry.array("y")).tolist() == [0, 1, 2, 3]


def test_interrupted_computation_leaves_no_entry(tmp_path):
    def failing(skips):
        yield 1, {"x": np.zeros((1, 2), np.float32)}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.sharded(tmp_path, "t", "k" * 20, failing, 2)
    assert list(tmp_path.iterdir()) == []


def test_default_cache_dir_is_outside_the_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("MNAS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_cache_dir() == tmp_path / "xdg" / "mnas"
    monkeypatch.setenv("MNAS_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache.default_cache_dir() == tmp_path / "elsewhere"


def test_computing_shows_progress(tmp_path, capsys):
    chunks, _ = counting(10)
    cache.sharded(tmp_path, "t", "k" * 20, chunks, 10)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("features t: 10/10 (100%") and len(lines) <= 11
    cache.sharded(tmp_path, "u", "k" * 20, chunks, None)
    assert capsys.readouterr().err.startswith("features u: ")


def test_take_and_map_are_views_of_the_shards(tmp_path):
    chunks, _ = counting(10)
    entry = cache.sharded(tmp_path, "t", "k" * 20, chunks, 10, shard_examples=4)
    picked = entry.array("x").take([9, 1, 5]).map(lambda rows: rows + 1)
    assert picked.shape == (3, 2) and picked[0].tolist() == [10, -8]
    np.testing.assert_array_equal(np.asarray(picked)[:, 0], [10, 2, 6])
    np.testing.assert_array_equal(picked.take([2, 0])[:, 0], [6, 10])
    np.testing.assert_array_equal(picked[1:][:, 1], [0, -4])
