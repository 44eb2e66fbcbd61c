"""On-disk cache of computed features.

A cache entry is keyed by everything its arrays depend on: the task, the feature settings and
the list of source files with their sizes and modification times. Changing a setting or a file
gives a new key, so stale features are never used; old entries are left in place (nothing is
deleted behind the user's back) and can be removed with the cache folder.
"""

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

# Bump when the way features are computed changes without a change of settings.
FORMAT_VERSION = 2


def default_cache_dir(data_dir):
    """`$MNAS_CACHE_DIR` if set, else `.mnas_cache` inside the dataset directory."""
    if os.environ.get("MNAS_CACHE_DIR"):
        return Path(os.environ["MNAS_CACHE_DIR"])
    return Path(data_dir) / ".mnas_cache"


def cache_key(task, settings, sources):
    """A hex digest of the task, settings (JSON-serialisable) and source files."""
    described = []
    for path in sources:
        stat = Path(path).stat()
        described.append([str(path), stat.st_size, stat.st_mtime_ns])
    text = json.dumps(
        {"format": FORMAT_VERSION, "task": task, "settings": settings, "sources": described},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(text.encode()).hexdigest()


def cached(cache_dir, name, key, compute):
    """Loads the arrays stored under `name` and `key`, or computes and stores them.

    Args:
        cache_dir: the cache folder (created if missing); None disables the cache.
        name: a readable prefix of the file name (e.g. "kws-train").
        key: the digest from `cache_key`.
        compute: a function of no argument returning a dict of numpy arrays.

    Returns:
        The dict of arrays.
    """
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{name}-{key[:20]}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {k: stored[k] for k in stored.files}
        except (OSError, ValueError, EOFError) as error:
            warnings.warn(
                f"Ignoring unreadable feature cache {path} ({error}); recomputing.", stacklevel=2
            )
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written to a temporary file and renamed, so an interrupted run leaves no partial entry.
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return arrays
