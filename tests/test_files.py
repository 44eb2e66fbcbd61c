"""Tests of mnas.files: atomic writes, and telling a full disk."""

import errno
import os

import pytest
import tensorflow as tf

from mnas import files


def test_write_atomic_writes_text_and_bytes(tmp_path):
    path = tmp_path / "a.txt"
    assert files.write_atomic(path, "one") == str(path)
    assert path.read_text() == "one"
    files.write_atomic(path, b"\x00two")
    assert path.read_bytes() == b"\x00two"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_text("old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as raised:
        files.write_atomic(path, "new")
    assert files.is_disk_full(raised.value)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_is_disk_full():
    assert files.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert files.is_disk_full(tf.errors.ResourceExhaustedError(
        None, None, "/x/ckpt-1.data-00000-of-00001.tempstate; No space left on device"))
    assert not files.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not files.is_disk_full(ValueError("bad"))
    assert files.temporary_path("a/b.png") == os.path.join("a", ".tmp-b.png")
