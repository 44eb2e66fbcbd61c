"""On-disk cache of computed features, in shards read by memory map.

A cache entry is a folder of `.npy` shards (`<array>-00000.npy`, ...) and a `meta.json`,
keyed by everything its arrays depend on: the task, the feature settings and the list of
source files with their sizes and modification times. Changing a setting or a file gives a new
key, so stale features are never used; old entries are left in place (nothing is deleted
behind the user's back) and can be removed with the cache folder. Features are computed a
chunk at a time and written shard by shard, so neither computing nor reading them needs the
whole dataset in memory. The number of source files skipped as unreadable is kept in the
entry, so every run that reads it reports them.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# Bump when the way features are computed changes without a change of settings.
FORMAT_VERSION = 4
SHARD_EXAMPLES = 8192
_META = "meta.json"


def default_cache_dir():
    """Where features are cached when no `cache_dir` is given.

    `$MNAS_CACHE_DIR` if set, else `$XDG_CACHE_HOME/mnas` (`~/.cache/mnas`): never inside the
    dataset, which may be read-only or shared.
    """
    if os.environ.get("MNAS_CACHE_DIR"):
        return Path(os.environ["MNAS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mnas"


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


class Sharded:
    """A read-only array stored as shards along its first axis, each read by memory map.

    Indexing with an int, a slice or an integer array gives numpy arrays;
    `np.asarray(sharded)` reads it all. `map` and `take` give new views without reading.
    """

    def __init__(self, shards, transform=None, rows=None):
        self.shards = list(shards)
        self.transform = transform
        self.rows = None if rows is None else np.asarray(rows, np.int64)
        first = self.shards[0]
        probe = first[:0] if transform is None else transform(first[:0])
        self.dtype = probe.dtype
        stored = sum(len(s) for s in self.shards)
        self.shape = (stored if rows is None else len(self.rows),) + probe.shape[1:]
        self._starts = np.cumsum([0] + [len(s) for s in self.shards])

    def map(self, fn):
        """This array with `fn` applied to its rows (after any transform) when they are read."""
        transform = self.transform
        return Sharded(self.shards, fn if transform is None else lambda rows: fn(transform(rows)),
                       self.rows)

    def take(self, indices):
        """The rows `indices` of this array, as a `Sharded` view."""
        indices = np.asarray(indices, np.int64)
        return Sharded(self.shards, self.transform,
                       indices if self.rows is None else self.rows[indices])

    def _out(self, rows):
        return np.asarray(rows) if self.transform is None else self.transform(rows)

    @property
    def ndim(self):
        return len(self.shape)

    def __len__(self):
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        if self.rows is None:
            out = self._out(np.concatenate([np.asarray(s) for s in self.shards]))
        else:
            out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, index):
        if isinstance(index, tuple):
            rows = self[index[0]]
            if isinstance(index[0], (int, np.integer)):
                return rows[index[1:]]
            return rows[(slice(None),) + index[1:]]
        if isinstance(index, (int, np.integer)):
            index = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= index < len(self):
                raise IndexError(f"index {index} is out of bounds for {len(self)} examples")
            index = index if self.rows is None else int(self.rows[index])
            shard = int(np.searchsorted(self._starts, index, side="right")) - 1
            return self._out(self.shards[shard][index - self._starts[shard]][None])[0]
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = np.where(index < 0, index + len(self), index)
        if self.rows is not None:
            index = self.rows[index]
        shard = np.searchsorted(self._starts, index, side="right") - 1
        rows = [self.shards[s][i - self._starts[s]] for s, i in zip(shard, index)]
        first = self.shards[0]
        stacked = np.stack(rows) if rows else np.zeros((0,) + first.shape[1:], first.dtype)
        return self._out(stacked)

    def __repr__(self):
        return f"Sharded(shape={self.shape}, dtype={self.dtype}, shards={len(self.shards)})"


class Entry:
    """A finished cache entry: its arrays (`Sharded`), shard files and skipped-file record."""

    def __init__(self, folder):
        self.folder = Path(folder)
        with open(self.folder / _META) as f:
            self.meta = json.load(f)
        self.names = list(self.meta["arrays"])

    def files(self, name):
        """Paths of the shards of array `name`, in order."""
        return [str(self.folder / f"{name}-{i:05d}.npy") for i in range(len(self.meta["shards"]))]

    def array(self, name, transform=None):
        """Array `name` as a `Sharded`, its rows passed through `transform` when read."""
        return Sharded((np.load(path, mmap_mode="r") for path in self.files(name)), transform)

    @property
    def skipped(self):
        return int(self.meta.get("skipped", 0))

    def warn_skipped(self, what, where):
        """Issues one warning naming how many source files were skipped, if any.

        Args:
            what: the kind of file, e.g. "corrupt or unreadable image files".
            where: the dataset folder.
        """
        if self.skipped:
            warnings.warn(
                f"Skipped {self.skipped} {what} under {where} "
                f"(first: {self.meta.get('first_skip')}).", stacklevel=3)


class _Progress:
    """A progress line on standard error: redrawn on a terminal, every 10% otherwise (every
    10,000 units when the total is not known)."""

    def __init__(self, title, total):
        self.title, self.total, self.done = title, total or None, 0
        self.started, self.tty = time.time(), sys.stderr.isatty()
        self._shown = -1

    def advance(self, count):
        self.done += count
        step = 10 * self.done // self.total if self.total else self.done // 10_000
        if not self.tty and step == self._shown:
            return
        self._shown = step
        elapsed = time.time() - self.started
        share = f"/{self.total:,} ({100 * self.done / self.total:.0f}%, " if self.total else " ("
        text = f"{self.title}: {self.done:,}{share}{elapsed:.0f} s)"
        sys.stderr.write(("\r" + text) if self.tty else text + "\n")
        sys.stderr.flush()

    def close(self):
        if self.tty:
            sys.stderr.write("\n")


def sharded(cache_dir, name, key, chunks, total, shard_examples=SHARD_EXAMPLES):
    """Opens the cache entry `name`/`key`, or computes it chunk by chunk and stores it.

    Args:
        cache_dir: the cache folder (created if missing).
        name: a readable prefix of the entry's folder (e.g. "kws-train").
        key: the digest from `cache_key`.
        chunks: a function of a `SkipLog` (it records skipped files) returning an iterable of
            (units done, dict of numpy arrays with the same first axis).
        total: the units of work `chunks` reports, for the progress line (None or 0 when
            not known).
        shard_examples: examples per shard. Defaults to `SHARD_EXAMPLES`.

    Returns:
        The `Entry`.
    """
    folder = Path(cache_dir) / f"{name}-{key[:20]}"
    if (folder / _META).exists():
        try:
            return Entry(folder)
        except (OSError, ValueError, KeyError) as error:
            warnings.warn(f"Ignoring unreadable feature cache {folder} ({error}); recomputing.",
                          stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Written in a temporary folder and renamed, so an interrupted run leaves no partial entry.
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        progress = _Progress(f"features {name}", total)
        meta = _write_shards(temporary, chunks, progress, shard_examples)
        progress.close()
        with open(temporary / _META, "w") as f:
            json.dump(meta, f, indent=1)
        try:
            os.replace(temporary, folder)
        except OSError:
            # Another process (a worker on the same host) finished the same entry first.
            if not (folder / _META).exists():
                raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return Entry(folder)


class SkipLog:
    """Counts the source files a reader skipped (each once), and remembers the first."""

    def __init__(self):
        self.count, self.first = 0, None

    def skip(self, path, reason):
        self.count += 1
        self.first = self.first or f"{path}: {reason}"


def _write_shards(folder, chunks, progress, shard_examples):
    pending, shards, skips, specs = {}, [], SkipLog(), {}

    def flush(size):
        for array_name, parts in pending.items():
            stacked = np.concatenate(parts)
            np.save(folder / f"{array_name}-{len(shards):05d}.npy", stacked[:size])
            pending[array_name] = [stacked[size:]]
        shards.append(size)

    for done, arrays in chunks(skips):
        for array_name, value in arrays.items():
            pending.setdefault(array_name, []).append(np.asarray(value))
            specs[array_name] = [list(np.shape(value)[1:]), np.asarray(value).dtype.str]
        while pending and sum(len(p) for p in next(iter(pending.values()))) >= shard_examples:
            flush(shard_examples)
        progress.advance(done)
    left = sum(len(p) for p in next(iter(pending.values()))) if pending else 0
    if left or not shards:
        if not pending:
            raise ValueError("Invalid value for `chunks`: expected at least one chunk of "
                             "arrays, received none.")
        flush(left)
    return {"format": FORMAT_VERSION, "shards": shards, "arrays": specs,
            "skipped": skips.count, "first_skip": skips.first}
