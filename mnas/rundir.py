"""A run's output directory: its lock, its state, and its per-epoch logs.

- `RunLock` holds an exclusive `flock` on `<out_dir>/.lock` for the whole run, with the
  holder's process id in the file. A second run into the same directory is refused at once,
  naming the holder; the kernel drops the lock of a process that dies (even by SIGKILL), so a
  stale lock is simply taken over.
- `State` is `state.json`: the resolved settings of the run (what its results depend on, not
  how they were spelled, and not where the directory is) and its finished stages.
- `trim_epoch_logs` cuts per-epoch logs back to the epochs a checkpoint holds, so an epoch
  that is repeated after an interruption appears once.

Example:

>>> with RunLock("runs/kws"):                             # doctest: +SKIP
...     state = State.load("runs/kws/state.json", settings)
"""

import csv
import errno
import fcntl
import io
import json
import os
import shutil

from mnas import errors, files

LOCK_NAME = ".lock"
RESTART_HINT = "run the same command with --restart to start the run over"


def _holder(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def _in_use(out_dir, pid):
    return errors.RunDirectoryError(
        f"Invalid value for `out_dir`: {out_dir} is in use by another run (process {pid}); "
        f"wait for it to end, or use another output directory.")


def check_not_locked(out_dir):
    """Raises `RunDirectoryError` if a live run holds `out_dir`; writes nothing."""
    path = os.path.join(out_dir, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _in_use(out_dir, _holder(path)) from None
        raise
    finally:
        os.close(fd)


class RunLock:
    """An exclusive lock on an output directory, held until `release()` or process exit.

    Args:
        out_dir: The run's output directory (it must exist).

    Raises:
        RunDirectoryError: (on `acquire`) another live process holds the lock.
    """

    def __init__(self, out_dir):
        self.out_dir = os.fspath(out_dir)
        self.path = os.path.join(self.out_dir, LOCK_NAME)
        self._fd = None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _in_use(self.out_dir, _holder(self.path)) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # Closing the descriptor drops the lock.
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def read_json(path, what="run file"):
    """Reads a JSON file of a run; a damaged one raises `CorruptRunFileError` naming it."""
    try:
        with open(path) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.CorruptRunFileError(
            f"Damaged {what} {path}: it is not valid JSON ({str(e).split(':')[0]}); remove it, "
            f"or {RESTART_HINT}.") from None


class State:
    """`state.json`: the run's resolved settings and its finished stages (with seconds)."""

    def __init__(self, path, settings, finished=None):
        self.path = os.fspath(path)
        self.settings = settings
        self.finished = dict(finished or {})

    @classmethod
    def load(cls, path, settings, ignore=(), defaults=None):
        """The state at `path`, or a fresh one; refuses a run with other settings.

        Args:
            path: `state.json` of the run.
            settings: The resolved settings (JSON values) of the run being started.
            ignore: Settings that change no result, so may differ on a resume.
            defaults: Default values of settings: a setting that the stored state lacks (a run
                started before the setting existed) counts as its default. Defaults to None.

        Raises:
            CorruptRunFileError: The file is damaged or not a state of mnas.
            RunDirectoryError: The directory holds a run with other settings.
        """
        if not os.path.exists(path):
            return cls(path, settings)
        state = read_json(path, "run state")
        if not (isinstance(state, dict) and isinstance(state.get("settings"), dict)
                and isinstance(state.get("finished", {}), dict)):
            raise errors.CorruptRunFileError(
                f"Damaged run state {path}: expected an object with `settings` and `finished`, "
                f"received {json.dumps(state)[:60]}; remove it, or {RESTART_HINT}.")
        before = dict(defaults or {}, **state["settings"])
        changed = sorted(k for k in set(before) | set(settings)
                         if k not in ignore and before.get(k) != settings.get(k))
        if changed:
            name = changed[0]
            raise errors.RunDirectoryError(
                f"Invalid value for `out_dir`: {os.path.dirname(path) or '.'} holds a run with "
                f"other settings ({name}={before.get(name)!r}, now {settings.get(name)!r}); "
                f"use another output directory, or {RESTART_HINT}.")
        return cls(path, settings, state.get("finished"))

    def save(self, config=None):
        content = {"settings": self.settings, "finished": self.finished}
        if config is not None:
            content["config"] = config
        files.write_atomic(self.path, json.dumps(content, indent=2) + "\n")


def discard(out_dir, names):
    """Removes the files and folders `names` of a previous run from `out_dir`."""
    for name in names:
        path = os.path.join(out_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    for name in os.listdir(out_dir):
        if name.startswith(files.TEMPORARY_PREFIX):
            discard(out_dir, [name])


def trim_epoch_logs(epochs, csv_paths=(), jsonl_paths=()):
    """Keeps only the rows of epochs `0 .. epochs - 1` in per-epoch logs (in place, atomically).

    `CSVLogger` files (`epoch` column) and JSON-lines files (an `epoch` field per line). Rows
    written after the last checkpoint, a second header, and a line cut off by an interruption
    are dropped, an epoch written twice keeps its last row, and a log left without rows is
    removed.
    """
    for path in csv_paths:
        if not os.path.exists(path):
            continue
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        header, kept = (rows[0] if rows else None), {}
        for row in rows[1:]:
            if row and row[0].isdigit() and int(row[0]) < epochs and len(row) == len(header):
                kept[int(row[0])] = row
        rows = [kept[k] for k in sorted(kept)]
        _rewrite(path, [header] + rows if rows else None, csv_format=True)
    for path in jsonl_paths:
        if not os.path.exists(path):
            continue
        kept = {}
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("epoch"), int) and (
                        record["epoch"] < epochs):
                    kept[record["epoch"]] = line if line.endswith("\n") else line + "\n"
        _rewrite(path, [kept[k] for k in sorted(kept)] or None)


def _rewrite(path, rows, csv_format=False):
    if rows is None:
        os.remove(path)
    elif csv_format:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        files.write_atomic(path, text.getvalue())
    else:
        files.write_atomic(path, "".join(rows))
